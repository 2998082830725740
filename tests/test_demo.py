"""`kdctl demo --quick`: the whole chain on real DeepForest tiles, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_quick_runs_the_whole_chain(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "kdctl.cli", "demo", "--quick", "--out",
                          str(tmp_path / "demo")], capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr

    work = tmp_path / "demo" / "work_dirs"
    runs = [json.loads(p.read_text()) for p in sorted(work.glob("*/run.json"))]
    assert [r["role"] for r in runs] == ["teacher", "student", "distill"]
    assert all(r["state"] == "finished" for r in runs)
    assert runs[2]["teacher_sha256"] and runs[2]["teacher_ckpt"].endswith(".pth")

    report = json.loads((work / "report" / "report.json").read_text())
    models = {m["role"]: m for m in report["models"]}
    assert set(models) == {"teacher", "student", "distill"}
    # the student has at most half the teacher's parameters; KD adds none to it
    params = {role: m["cost"]["params"] for role, m in models.items()}
    assert params["student"] <= params["teacher"] / 2
    assert params["distill"] == params["student"]
    for m in models.values():
        assert 0.0 <= m["metrics"]["val/bbox_mAP_50"] <= 1.0
    gain = report["splits"]["val"]["kd_gain"]["bbox_mAP_50"]
    expected = (models["distill"]["metrics"]["val/bbox_mAP_50"]
                - models["student"]["metrics"]["val/bbox_mAP_50"])
    assert abs(gain["gain"] - expected) < 1e-9
    assert (work / "report" / "report.html").is_file()
    assert "KD gain" in out.stdout
