"""`kdctl eval` and `kdctl export` end to end on the tiny dataset: train teacher, plain and
distilled student for one epoch, evaluate, and check the report against the logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kdctl.runs import RunInfo, read_metrics
from kdctl.spec import Spec, load_spec
from tests.conftest import tiny_spec_dict, write_spec

PLOTS = ("val_map.png", "losses.png", "ap_by_size.png", "pr_curve.png", "sweep_s1.png")


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Spec, dict[str, RunInfo]]:
    from kdctl.train import train

    root = tmp_path_factory.mktemp("eval")
    ann, images = str(tiny_data / "annotations/val.json"), str(tiny_data / "images")
    spec_file = write_spec(root / "kdctl.yaml", tiny_spec_dict(
        tiny_data, root / "work", data=dict(test_ann=ann, test_images=images)))
    spec = load_spec(spec_file)
    teacher = train(spec, "teacher")
    runs = {"teacher": teacher.run, "student": train(spec, "student").run,
            "distill": train(spec, "distill", teacher_ckpt=str(teacher.checkpoint)).run}

    sweep_dir = root / "work" / "sweeps" / "s1"  # as a sweep would leave it
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps([
        {"params": {"temperature": t, "kd_weight": w}, "best": {"val/bbox_mAP": m}}
        for t, w, m in ((1.0, 0.5, 0.1), (4.0, 1.0, 0.2), (8.0, 2.0, 0.15))]))
    return spec_file, spec, runs


@pytest.fixture(scope="module")
def report(trained: tuple[Path, Spec, dict[str, RunInfo]]) -> dict[str, Any]:
    from kdctl.evaluate import evaluate

    return evaluate(trained[1])


def test_report_files_and_plots(report: dict[str, Any]) -> None:
    folder = Path(report["path"]).parent
    for name in ("report.json", "report.md", "report.html", *(f"plots/{p}" for p in PLOTS)):
        assert (folder / name).is_file(), name
    md = (folder / "report.md").read_text()
    assert all(f"(plots/{p})" in md for p in PLOTS)
    assert "| mAP | " in md and "gap closed" in md
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert 'src="plots/' not in html  # self-contained
    assert (Path(report["eval_dir"]) / "report.json").is_file()


def test_report_numbers_match_training_logs(report: dict[str, Any]) -> None:
    saved = json.loads(Path(report["path"]).read_text())
    assert len(saved["models"]) == 3
    for model in saved["models"]:
        last_val = read_metrics(Path(model["run_dir"]))["val"][-1]
        assert model["metrics"]["val/bbox_mAP"] == last_val["val/bbox_mAP"]
        assert model["metrics"]["val/bbox_mAP_50"] == last_val["val/bbox_mAP_50"]
    assert all(c["match"] is True for c in saved["log_check"])


def test_report_json_holds_everything(report: dict[str, Any]) -> None:
    from kdctl.io import file_sha256

    saved = json.loads(Path(report["path"]).read_text())
    assert set(saved["splits"]) == {"val", "test"}
    for model in saved["models"]:
        assert model["sha256"] == file_sha256(model["checkpoint"])
        assert model["cost"]["params"] > 0 and model["cost"]["flops"] > 0
        assert model["cost"]["latency_ms"] > 0
        assert "val/bbox_AR@100" in model["metrics"] and "test/bbox_mAP" in model["metrics"]
        assert set(model["per_class"]["val"]) == {"Tree"}
    assert saved["packages"]["mmdet"] == "3.3.0"
    assert saved["spec"]["name"] == "tiny"
    assert saved["sweeps"][0]["trials"][1]["params"]["temperature"] == 4.0


def test_report_gain_is_distilled_minus_plain(report: dict[str, Any]) -> None:
    by_role = {m["role"]: m["metrics"] for m in report["models"]}
    for metric, row in report["splits"]["val"]["kd_gain"].items():
        s, s_kd, t = (by_role[r][f"val/{metric}"] for r in ("student", "distill", "teacher"))
        if s is None or s_kd is None:
            continue
        assert row["gain"] == pytest.approx(s_kd - s)
        if t is not None and t - s > 1e-9:
            assert row["gap_closed"] == pytest.approx((s_kd - s) / (t - s))


def test_export_loads_strictly_into_plain_student(trained: tuple, tmp_path: Path) -> None:
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    from kdctl.export import export_student

    _, _, runs = trained
    out = export_student(Path(runs["distill"].run_dir), tmp_path)
    init_default_scope("mmdet")
    model = MODELS.build(Config.fromfile(str(out.config)).model)
    ckpt = torch.load(out.checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    assert set(ckpt) == {"state_dict", "meta"}
    assert ckpt["meta"]["role"] == "distill" and ckpt["meta"]["teacher_sha256"]
    weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert out.size_bytes < 1.1 * weights + 100_000  # the student alone
    assert out.size_bytes < out.source_size_bytes  # no optimizer state


def test_export_runs_in_mmdet_test_tool(trained: tuple, report: dict[str, Any],
                                        tmp_path: Path) -> None:
    """mmdet's own tools/test.py loads the exported pair and scores what kdctl eval did."""
    import re
    import sys

    import mmdet

    from kdctl.export import export_student

    tool = Path(mmdet.__file__).parent / ".mim" / "tools" / "test.py"
    if not tool.is_file():
        pytest.skip(f"mmdet's test tool is not packaged at {tool}")
    out = export_student(Path(trained[2]["distill"].run_dir), tmp_path)
    done = subprocess.run([sys.executable, str(tool), str(out.config), str(out.checkpoint),
                           "--work-dir", str(tmp_path / "mmdet_test")],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    found = re.search(r"val/bbox_mAP: (-?[\d.]+)", log)
    distilled = next(m for m in report["models"] if m["role"] == "distill")
    if found is None:  # a one-epoch model may detect nothing: CocoMetric says so, no mAP
        assert "results of the whole dataset is empty" in log, log[-2000:]
        assert distilled["metrics"]["val/bbox_mAP"] == 0.0
    else:
        assert float(found.group(1)) == pytest.approx(distilled["metrics"]["val/bbox_mAP"])


def test_wandb_offline_logs_report(report: dict[str, Any], trained: tuple,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from kdctl.report.wandb_log import log_report

    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = trained[1].model_copy(update={"tracking": trained[1].tracking.model_copy(
        update={"mode": "offline"})})
    folder = Path(report["path"]).parent
    where = log_report(spec, report, folder)
    assert where is not None and "offline-run" in where
    assert list(Path(where).glob("*.wandb"))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_COUNT_IMAGES = """<script>
window.addEventListener('load', () => {
  const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = 'images-loaded:' + ok + '/' + document.images.length;
});
</script>"""


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless browser: apt-get install "
                                             "chromium")
def test_html_renders_in_headless_browser(report: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    from kdctl.report.render import render_html

    folder = Path(report["path"]).parent
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,3000",
               (folder / "report.html").as_uri()], tmp_path)
    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables and plots, not blank

    probe = tmp_path / "probe.html"  # a copy that reports how many images decoded
    probe.write_text(render_html(json.loads(Path(report["path"]).read_text()), folder,
                                 extra_head=_COUNT_IMAGES))
    dom = _chromium(["--dump-dom", "--virtual-time-budget=5000", probe.as_uri()],
                    tmp_path).stdout
    assert f"images-loaded:{len(PLOTS)}/{len(PLOTS)}" in dom


# last: it replaces the module's report folder with a one-model report
def test_eval_json_prints_only_json(trained: tuple) -> None:
    from kdctl.cli import app

    spec_file, _, runs = trained
    ckpt = Path(runs["distill"].run_dir) / "epoch_1.pth"
    result = CliRunner().invoke(app, ["eval", "--spec", str(spec_file), "--json", str(ckpt)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert [m["role"] for m in data["models"]] == ["distill"]
    assert data["models"][0]["checkpoint"] == str(ckpt)
    assert data["splits"]["val"]["kd_gain"] == {}  # no plain student to compare with
