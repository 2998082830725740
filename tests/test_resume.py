"""Interruptions: kill -9 mid-run, resume, and what resume refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.runs import find_runs, load_run, read_metrics
from kdctl.spec import load_spec
from kdctl.train import resume, train
from tests.conftest import tiny_spec_dict, write_spec


class _Capture(Hook):
    def __init__(self) -> None:
        self.start_epoch = None
        self.teacher_state: dict = {}

    def before_train(self, runner) -> None:  # noqa: ANN001
        self.start_epoch = runner.epoch

    def after_train(self, runner) -> None:  # noqa: ANN001
        model = runner.model
        self.teacher_state = {k: v.clone() for k, v in model.teacher_model.state_dict().items()}


@pytest.fixture(scope="module")
def teacher_setup(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("resume")
    spec_file = write_spec(tmp / "kdctl.yaml", tiny_spec_dict(
        tiny_data, tmp / "work", schedule=dict(epochs=3, teacher_epochs=1)))
    spec = load_spec(spec_file)
    quiet = Console(file=open(os.devnull, "w"))
    teacher = train(spec, "teacher", console=quiet)
    return spec_file, spec, teacher.checkpoint


def test_kill_9_then_resume_continues_without_redoing_epochs(teacher_setup) -> None:
    spec_file, spec, teacher_ckpt = teacher_setup
    work = Path(spec.runtime.work_dir)
    before = {r.run_dir for r in find_runs(work)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdctl.cli", "distill", "--spec", str(spec_file),
         "--teacher", str(teacher_ckpt)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    run_dir = None
    deadline = time.time() + 240
    while time.time() < deadline:
        new = [r for r in find_runs(work) if r.run_dir not in before]
        if new and (Path(new[0].run_dir) / "epoch_1.pth").is_file():
            run_dir = Path(new[0].run_dir)
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_dir is not None, "the distillation never saved its first checkpoint"
    done = len(list(run_dir.glob("epoch_*.pth")))
    assert load_run(run_dir).state == "running"  # killed: never marked finished

    capture = _Capture()
    result = resume(work, "distill", console=Console(file=open(os.devnull, "w")),
                    extra_hooks=[capture])
    assert result.run.run_dir == str(run_dir)  # same folder, same run
    assert capture.start_epoch == done >= 1  # epochs before the kill are not redone
    teacher_file = torch.load(teacher_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert capture.teacher_state.keys() == teacher_file.keys()
    for k, v in teacher_file.items():
        assert torch.equal(capture.teacher_state[k], v), k
    assert load_run(run_dir).state == "finished"
    epochs = [row["epoch"] for row in read_metrics(run_dir)["val"]]
    # a kill between the checkpoint and its validation loses only that validation
    assert epochs == sorted(set(epochs)) and set(range(done + 1, 4)) <= set(epochs)
    assert read_metrics(run_dir)["epochs_done"] == 3


def test_resume_refuses_a_plain_student_run_for_distillation(teacher_setup) -> None:
    _, spec, _ = teacher_setup
    quiet = Console(file=open(os.devnull, "w"))
    student = train(spec, "student", console=quiet)
    with pytest.raises(KdctlError) as info:
        resume(Path(spec.runtime.work_dir), "distill", target=student.checkpoint,
               console=quiet)
    text = str(info.value)
    assert "is a plain student run, not a distilled student run" in text
    assert "records none of them" in text and "kdctl train-student --resume" in text


def test_resume_refuses_a_changed_teacher(teacher_setup, tmp_path: Path) -> None:
    from kdctl.runs import RunInfo

    _, spec, teacher_ckpt = teacher_setup
    copy = tmp_path / "teacher.pth"
    copy.write_bytes(Path(teacher_ckpt).read_bytes())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from kdctl.io import file_sha256

    RunInfo(role="distill", model="m", code="abcde", run_dir=str(run_dir), spec_name="x",
            state="running", teacher_ckpt=str(copy), teacher_sha256=file_sha256(copy)).save()
    copy.write_bytes(copy.read_bytes() + b"changed")
    with pytest.raises(KdctlError, match=r"teacher.checkpoint: .*teacher.pth changed since"):
        resume(tmp_path, "distill", target=run_dir, console=Console(file=open(os.devnull, "w")))
