"""MMEngine hooks kdctl adds to every training run it launches.

- `ProgressHook`: a rich progress display of epochs, iterations and losses.
- `MetricsHook`: metrics.json after each validation and epoch (atomic), and a stop at
  the first non-finite loss, naming the iteration, the loss and the last checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json
from kdctl.metrics import complete
from kdctl.runs import last_checkpoint


def _scalars(outputs: Any) -> dict[str, float]:
    if not isinstance(outputs, dict):
        return {}
    return {k: float(v.detach()) if hasattr(v, "detach") else float(v)
            for k, v in outputs.items() if "loss" in k}


class ProgressHook(Hook):
    priority = "LOW"

    def __init__(self, title: str, console: Console) -> None:
        self.title = title
        self.console = console
        self.progress: Progress | None = None

    def before_train(self, runner: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, transient=False)
        self.progress.start()
        self.epoch_task = self.progress.add_task(
            f"{self.title} epochs", total=runner.max_epochs, completed=runner.epoch, info="")
        self.iter_task = self.progress.add_task(
            "iterations", total=len(runner.train_dataloader), info="")

    def before_train_epoch(self, runner: Any) -> None:
        if self.progress:
            self.progress.reset(self.iter_task, total=len(runner.train_dataloader), info="")

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        if self.progress:
            info = "  ".join(f"{k.removeprefix('loss_') or k} {v:.3f}"
                             for k, v in _scalars(outputs).items())
            self.progress.update(self.iter_task, advance=1, info=info)

    def after_train_epoch(self, runner: Any) -> None:
        if self.progress:
            self.progress.update(self.epoch_task, completed=runner.epoch)

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        if self.progress and metrics:
            shown = {k.removeprefix("val/"): v for k, v in metrics.items()
                     if k in ("val/bbox_mAP", "val/bbox_mAP_50", "val/bbox_mAP_75")}
            text = "  ".join(f"{k} {v:.3f}" for k, v in shown.items())
            self.progress.update(self.epoch_task, info=text)

    def after_train(self, runner: Any) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None

    def after_run(self, runner: Any) -> None:
        self.after_train(runner)  # also on error paths that skip after_train


class MetricsHook(Hook):
    priority = "VERY_LOW"

    def __init__(self, run_dir: Path, role: str) -> None:
        self.path = Path(run_dir) / "metrics.json"
        self.role = role
        self.data: dict[str, Any] = {"role": role, "val": [], "train": [], "final": {}}
        self._window: dict[str, list[float]] = {}
        self._last_iter = 0
        self._t0 = time.time()

    def before_train(self, runner: Any) -> None:
        if self.path.is_file():  # a resumed run keeps its history
            import json  # noqa: PLC0415

            self.data = json.loads(self.path.read_text())

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        losses = _scalars(outputs)
        for name, value in losses.items():
            if not math.isfinite(value):
                ckpt = last_checkpoint(Path(runner.work_dir))
                raise KdctlError(
                    f"non-finite {name} = {value} at iteration {runner.iter + 1} (epoch "
                    f"{runner.epoch + 1}); last good checkpoint: {ckpt or 'none yet'}. "
                    f"Lower optimizer.lr or distill.weight, or keep optimizer.grad_clip on",
                    field="training")
            self._window.setdefault(name, []).append(value)
        self._last_iter = runner.iter + 1  # the loop counts this iteration after the hooks
        if self._last_iter % 5 == 0:
            self._flush_window(runner)

    def _flush_window(self, runner: Any) -> None:
        if not self._window:
            return
        row = {"iter": self._last_iter, "epoch": runner.epoch + 1}
        row.update({k: sum(v) / len(v) for k, v in self._window.items()})
        self.data["train"].append(row)
        self._window = {}

    def after_train_epoch(self, runner: Any) -> None:
        self._flush_window(runner)
        self.data["epochs_done"] = runner.epoch + 1  # the loop counts it after this hook
        self.data["train_seconds"] = round(time.time() - self._t0, 1)
        if is_main_process():
            atomic_write_json(self.path, self.data)

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        row = {"epoch": runner.epoch, **complete(metrics)}
        self.data["val"] = [r for r in self.data["val"] if r["epoch"] != runner.epoch] + [row]
        self.data["final"] = row
        best = self.data.get("best", {})
        if row.get("val/bbox_mAP", -1) > best.get("val/bbox_mAP", -1):
            self.data["best"] = row
        if is_main_process():
            atomic_write_json(self.path, self.data)
