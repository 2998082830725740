"""The multi-GPU path (torchrun, one process per device) exercised on CPU with gloo."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from kdctl.runs import load_run, read_metrics
from kdctl.spec import load_spec
from kdctl.train import prepare_run, train_distributed
from tests.conftest import tiny_spec_dict, write_spec


def test_two_process_run_trains_and_writes_one_set_of_results(tiny_data: Path,
                                                              tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(
        tiny_data, tmp_path / "work", schedule=dict(epochs=2))))
    quiet = Console(file=open(os.devnull, "w"))
    run = prepare_run(spec, "student", console=quiet)
    result = train_distributed(run, quiet, nproc=2)
    assert load_run(Path(run.run_dir)).state == "finished"
    assert result.checkpoint is not None and result.checkpoint.name == "epoch_2.pth"
    metrics = read_metrics(Path(run.run_dir))
    assert [row["epoch"] for row in metrics["val"]] == [1, 2]
    # 4 train images, batch 2 per process, 2 processes: one iteration per epoch
    assert metrics["train"][-1]["iter"] <= 2
