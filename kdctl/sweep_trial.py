"""One sweep trial: a distillation run with the proposed values, shared by both backends.

The trial's values become spec overrides (validated like the file), the run gets an
ordinary run folder with `sweep_id` set, and `SweepHook` keeps the store up to date:
epochs run after each epoch, the metric after each validation and, on the local backend,
hyperband's verdict. A stop takes effect through MMEngine's `train_loop.stop_training`
after the validation, so the epoch's checkpoint (saved before validating) and
metrics.json are kept and the trial ends as `stopped_early`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from mmengine.hooks import Hook
from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.metrics import complete
from kdctl.spec import Spec, with_overrides
from kdctl.sweep_config import trial_overrides
from kdctl.sweep_store import SweepStore, Trial

log = logging.getLogger(__name__)


class SweepHook(Hook):
    """Records a trial's progress in the store; asks the engine whether it must stop."""

    priority = "LOWEST"  # after MetricsHook has written metrics.json

    def __init__(self, store: SweepStore, index: int, early_stop: bool,
                 parent_pid: int | None = None) -> None:
        self.store = store
        self.index = index
        self.early_stop = early_stop
        self.parent_pid = parent_pid
        self.stopped = False

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        # an agent process outliving its `kdctl sweep` (killed) ends its trial too
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise KdctlError("the `kdctl sweep` process that started this agent is gone; "
                             "resume the sweep with --resume", field="sweep")

    def after_train_epoch(self, runner: Any) -> None:
        self.store.update_trial(self.index, epochs_run=runner.epoch + 1)

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        from kdctl.sweep_engine import stop_decision  # noqa: PLC0415

        with self.store.edit() as record:
            trial = record.trials[self.index]
            row = {"epoch": runner.epoch, record.metric: complete(metrics)[record.metric]}
            trial.history.append(row)
            last = runner.epoch >= runner.max_epochs
            stop, reason = (stop_decision(record.config, record.trials, self.index)
                            if self.early_stop and not last else (False, None))
            trial.stop_reason = reason
        log.debug("trial %d: %s", self.index, row)
        if stop:
            log.info("trial %d stops early: %s", self.index, reason)
            self.stopped = True
            runner.train_loop.stop_training = True


def run_trial(spec: Spec, store: SweepStore, index: int, console: Console,
              early_stop: bool = True, parent_pid: int | None = None,
              verbose: bool = False) -> Trial:
    """Train trial `index` of the store to its end (or hyperband's stop) and record it.

    A KdctlError (a value the spec rejects, a diverging loss) fails this trial only; any
    other exception, Ctrl-C included, marks it failed and propagates."""
    from kdctl.train import prepare_run, train_run  # noqa: PLC0415

    record = store.read()
    trial = record.trials[index]
    quiet = Console(quiet=True)  # the data were checked once when the sweep started
    hook = SweepHook(store, index, early_stop, parent_pid)
    try:
        trial_spec = with_overrides(spec, trial_overrides(trial.params))
        run = prepare_run(trial_spec, "distill", record.teacher_ckpt, quiet,
                          sweep_id=record.sweep_id, overrides=trial.params)
        store.update_trial(index, run_dir=run.run_dir, run_name=run.run_name,
                           state="running")
        train_run(trial_spec, run, quiet, verbose=verbose, extra_hooks=[hook],
                  progress=False)
    except KdctlError as exc:
        return _end(store, index, "failed", error=str(exc))
    except BaseException as exc:
        _end(store, index, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if hook.stopped:
        run.state = "stopped_early"
        run.save()
    return _end(store, index, "stopped_early" if hook.stopped else "finished")


def _end(store: SweepStore, index: int, state: str, error: str | None = None) -> Trial:
    return store.update_trial(index, state=state, error=error,
                              ended=time.strftime("%Y-%m-%d %H:%M:%S"))
