"""Guards during training: non-finite losses, secrets, data errors before any compute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.hooks import MetricsHook
from kdctl.spec import load_spec
from kdctl.train import train
from tests.conftest import tiny_spec_dict, write_spec


@pytest.mark.parametrize("name", ["loss", "loss_cls", "loss_kd_logit"])
def test_non_finite_loss_stops_with_iteration_name_and_checkpoint(tmp_path: Path,
                                                                  name: str) -> None:
    (tmp_path / "epoch_2.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    hook = MetricsHook(tmp_path, "distill")
    runner = SimpleNamespace(iter=41, epoch=2, work_dir=str(tmp_path))
    hook.after_train_iter(runner, 0, outputs={"loss": 1.0, "loss_cls": 0.5})
    with pytest.raises(KdctlError) as info:
        hook.after_train_iter(runner, 1, outputs={"loss": 1.0, name: float("nan")})
    text = str(info.value)
    assert f"non-finite {name} = nan at iteration 42 (epoch 3)" in text
    assert f"last good checkpoint: {tmp_path / 'epoch_2.pth'}" in text


def test_missing_image_file_fails_before_any_run_folder(tiny_data: Path, tmp_path: Path) -> None:
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    ann = json.loads((data / "annotations/train.json").read_text())
    for image in ann["images"][:2]:
        (data / "images" / image["file_name"]).unlink()
    spec_file = write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(data, tmp_path / "work"))
    out = subprocess.run([sys.executable, "-m", "kdctl.cli", "train-student", "--spec",
                          str(spec_file)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "2 image file(s)" in out.stderr or "missing" in out.stderr
    for image in ann["images"][:2]:
        assert image["file_name"] in out.stderr
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())


def test_no_secret_reaches_disk(tiny_data: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "kdctl-test-secret-7f3a9c2e1b"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec_file = write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(
        tiny_data, tmp_path / "work", tracking=dict(mode="offline")))
    result = train(load_spec(spec_file), "student", console=Console(file=open(os.devnull, "w")))
    run_dir = Path(result.run.run_dir)
    assert (run_dir / "wandb").exists() or list(run_dir.glob("**/wandb"))  # wandb did log
    leaks = [p for p in run_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []


def test_distill_options_are_validated_before_any_run_folder(tiny_data: Path,
                                                             tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(tiny_data, tmp_path / "work"))
    ckpt = tmp_path / "teacher.pth"
    ckpt.write_bytes(b"not reached")
    out = subprocess.run([sys.executable, "-m", "kdctl.cli", "distill", "--spec", str(spec_file),
                          "--teacher", str(ckpt), "--temp", "-1", "--box-weight", "-2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "distill.temperature" in out.stderr and "(got -1.0)" in out.stderr
    assert "distill.box_weight" in out.stderr and "(got -2.0)" in out.stderr
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())
