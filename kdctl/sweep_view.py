"""What a sweep shows: the live trials table, the plan line and the closing summary."""

from __future__ import annotations

import shlex
from typing import Any

from rich.table import Table

from kdctl.console import fmt
from kdctl.sweep_config import SWEEPABLE
from kdctl.sweep_store import SweepRecord, Trial

_STATE_STYLE = {"created": "dim", "running": "cyan", "finished": "green",
                "stopped_early": "yellow", "failed": "red"}
# sweep parameter -> `kdctl distill` option; the others are set in the spec
_DISTILL_OPTIONS = {"lr": "--lr", "weight_decay": "--weight-decay", "temperature": "--temp",
                    "kd_weight": "--weight", "epochs": "--epochs"}


def trials_table(record: SweepRecord, default_epochs: int) -> Table:
    """One row per trial: values, best metric so far, state, epochs run, early stop."""
    names = list(record.config["parameters"])
    t = Table(title=f"sweep {record.sweep_id} ({record.config['method']}, "
              f"{record.backend}): {len(record.trials)} trials", title_justify="left")
    for col in ["#", "run", *names, f"best {record.metric}", "state", "epochs", "stopped"]:
        t.add_column(col, justify="left" if col in ("run", "state") else "right")
    scores = [tr.best(record.metric) for tr in record.trials]
    best = max((s for s in scores if s is not None), default=None)
    for tr in record.trials:
        score = tr.best(record.metric)
        shown = fmt(score) if score != best or score is None else f"[bold]{fmt(score)}"
        style = _STATE_STYLE.get(tr.state, "")
        epochs = tr.params.get("epochs", default_epochs)
        t.add_row(str(tr.index), tr.run_name or "-", *(_value(tr.params.get(n)) for n in names),
                  shown, f"[{style}]{tr.state}", f"{tr.epochs_run}/{epochs}",
                  "yes" if tr.state == "stopped_early" else "")
    return t


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else fmt(value)


def epochs_summary(record: SweepRecord, default_epochs: int) -> str:
    """`hyperband stopped 2 of 6 trials: 30 epochs run of 48 for full trials (38% saved)`."""
    ended = [t for t in record.trials if t.state in ("finished", "stopped_early")]
    run = sum(t.epochs_run for t in ended)
    full = sum(int(t.params.get("epochs", default_epochs)) for t in ended)
    stopped = sum(t.state == "stopped_early" for t in ended)
    saved = f" ({1 - run / full:.0%} saved)" if full else ""
    return (f"hyperband stopped {stopped} of {len(ended)} ended trials: {run} epochs run "
            f"of {full} for full trials{saved}")


def reproduce_command(trial: Trial, spec_path: str, teacher_ckpt: str) -> list[str]:
    """The `kdctl distill` command with the trial's values, and spec edits for values that
    `kdctl distill` has no option for."""
    args = ["kdctl", "distill", "--spec", spec_path, "--teacher", teacher_ckpt]
    edits = []
    for name, value in trial.params.items():
        if name in _DISTILL_OPTIONS:
            args += [_DISTILL_OPTIONS[name], repr(value)]
        else:
            section, key = SWEEPABLE[name]
            edits.append(f"set {section}.{key}: {value} in {spec_path}")
    return [shlex.join(args), *edits]
