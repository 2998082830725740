"""What a sweep shows: the live trials table, the plan line and the closing summary."""

from __future__ import annotations

import shlex
from typing import Any

from rich import box
from rich.table import Table

from kdctl.console import fmt
from kdctl.sweep_config import SWEEPABLE
from kdctl.sweep_store import SweepRecord, Trial

_STATE_STYLE = {"created": "dim", "running": "cyan", "finished": "green",
                "stopped_early": "yellow", "failed": "red"}
# sweep parameter -> `kdctl distill` option; the others are set in the spec
_DISTILL_OPTIONS = {"lr": "--lr", "weight_decay": "--weight-decay", "temperature": "--temp",
                    "kd_weight": "--weight", "box_weight": "--box-weight",
                    "epochs": "--epochs"}


def trials_table(record: SweepRecord, default_epochs: int) -> Table:
    """One row per trial: values, best metric so far, state (stopped early or not),
    epochs run."""
    names = list(record.config["parameters"])
    model = next((tr.run_name.rsplit("_", 1)[0] for tr in record.trials if tr.run_name), "")
    t = Table(title=f"sweep {record.sweep_id} ({record.config['method']}, "
              f"{record.backend}): {len(record.trials)} trials, runs {model}_<code>",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    short = record.metric.removeprefix("val/bbox_")
    widths = {**{n: len(n) for n in names}, "state": 8, "epochs": 6, "#": 2}
    for col in ["#", "code", *names, f"best {short}", "state", "epochs"]:
        t.add_column(col, justify="left" if col in ("code", "state") else "right",
                     no_wrap=col != "state", min_width=widths.get(col))
    scores = [tr.best(record.metric) for tr in record.trials]
    best = max((s for s in scores if s is not None), default=None)
    for tr, score in zip(record.trials, scores):
        shown = f"[bold]{fmt(score)}" if score is not None and score == best else fmt(score)
        style = _STATE_STYLE.get(tr.state, "")
        epochs = tr.params.get("epochs", default_epochs)
        code = tr.run_name.rsplit("_", 1)[-1] if tr.run_name else "-"
        t.add_row(str(tr.index), code, *(_value(tr.params.get(n)) for n in names),
                  shown, f"[{style}]{tr.state.replace('_', ' ')}", f"{tr.epochs_run}/{epochs}")
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
