"""`kdctl sweep`: search distillation hyperparameters with W&B's sweep format.

Two backends share the trial (`kdctl.sweep_trial.run_trial`):

- `local`: W&B's open-source engine (`kdctl.sweep_engine`) proposes values and decides
  hyperband stops over the run store in `WORK_DIR/sweeps/<sweep_id>/` (`kdctl.sweep_store`).
  No server. `--agents K` runs K agent processes that share the store.
- `wandb`: `wandb.sweep` + `wandb.agent` against the W&B server, which proposes and stops;
  the store mirrors the trials for the live table and sweep.json/sweep.csv.

A sweep is resumable at any moment: trials that were running when it was killed are marked
failed (not retried: the engine treats them as crashed runs, and their history still
counts for hyperband), finished trials are kept, and proposals continue from the whole
recorded history.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from kdctl.errors import KdctlError
from kdctl.io import file_sha256
from kdctl.spec import Spec
from kdctl.sweep_config import hyperband_bands, validations_per_trial
from kdctl.sweep_store import (
    SweepRecord,
    SweepStore,
    Trial,
    best_trial,
    new_sweep_id,
    write_results,
)
from kdctl.sweep_view import epochs_summary, reproduce_command, trials_table

log = logging.getLogger(__name__)

BACKENDS = ("local", "wandb")
NO_KEY = ("the wandb backend runs the sweep on the W&B server, which needs a W&B key "
          "(set WANDB_API_KEY or run `wandb login`); without one, run the same sweep here "
          "with `kdctl sweep --backend local` (W&B's own engine, no server)")


@dataclass
class SweepOutcome:
    store: SweepStore
    record: SweepRecord
    best: Trial | None


def run_sweep(spec: Spec, spec_path: Path, count: int, backend: str | None = None,
              agents: int = 1, resume: str | None = None, teacher: str | None = None,
              console: Console | None = None, verbose: bool = False) -> SweepOutcome:
    """Run `count` more trials of the spec's sweep; print the plan, a live table and the
    best trial with the command that reproduces it."""
    console = console or Console()
    if spec.sweep is None:
        raise KdctlError("the spec has no sweep section; add one in the W&B sweep format "
                         "(method, metric, parameters, early_terminate)", field="sweep")
    backend = resolve_backend(spec, backend)
    teacher_ckpt = _teacher(spec, teacher)
    _check_data_once(spec, console)

    sweep_id = _create_wandb_sweep(spec) if backend == "wandb" and resume is None else None
    store = open_or_create(spec, teacher_ckpt, backend, resume, sweep_id)
    interrupted = store.mark_interrupted()
    if interrupted:
        console.print(f"[yellow]trials {interrupted} were interrupted: marked failed (not "
                      "retried); their validations still count for hyperband")
    console.print(plan_line(spec, store.read(), count, agents))

    _run_agents(spec, store, count, agents, backend, console, verbose)
    record = write_results(store)
    _print_summary(spec, spec_path, store, record, console)
    return SweepOutcome(store, record, best_trial(record))


def resolve_backend(spec: Spec, backend: str | None) -> str:
    """`wandb` when asked for (a key is then required) or, by default, when a key is set
    and tracking is online-capable; `local` otherwise."""
    from kdctl.tracking import has_wandb_key  # noqa: PLC0415

    if backend not in (None, *BACKENDS):
        raise KdctlError(f"unknown backend {backend!r}; use local or wandb", field="--backend")
    online = spec.tracking.mode in ("auto", "online")
    if backend is None:
        return "wandb" if has_wandb_key() and online else "local"
    if backend == "wandb" and not has_wandb_key():
        raise KdctlError(NO_KEY, field="--backend")
    if backend == "wandb" and not online:
        raise KdctlError(f"the wandb backend logs every trial to the W&B server, but "
                         f"tracking.mode is {spec.tracking.mode}; set it to auto or online, "
                         "or use --backend local", field="tracking.mode")
    return backend


def _create_wandb_sweep(spec: Spec) -> str:
    """The sweep on the W&B server; its id names the local folder that mirrors it."""
    import wandb  # noqa: PLC0415

    return wandb.sweep(sweep=spec.sweep, project=spec.tracking.project,
                       entity=spec.tracking.entity)


def _teacher(spec: Spec, teacher: str | None) -> str:
    ckpt = teacher or spec.teacher.checkpoint
    if not ckpt:
        raise KdctlError("a sweep distils every trial from one trained teacher: pass "
                         "--teacher CKPT or set teacher.checkpoint", field="teacher.checkpoint")
    if not Path(ckpt).is_file():
        raise KdctlError(f"file not found: {ckpt}", field="teacher.checkpoint")
    return str(Path(ckpt).resolve())


def _check_data_once(spec: Spec, console: Console) -> None:
    from kdctl.preflight import check_data  # noqa: PLC0415

    check_data(spec, console)  # trials then check quietly


# ---------------------------------------------------------------------------------------
# the store: a new sweep, or the one to resume


def _compared_spec(spec: Spec) -> dict[str, Any]:
    """The spec a sweep's trials share; tracking may change between invocations."""
    return spec.model_dump(mode="json", exclude={"sweep", "tracking"})


def open_or_create(spec: Spec, teacher_ckpt: str, backend: str,
                   resume: str | None, sweep_id: str | None = None) -> SweepStore:
    work_dir = spec.runtime.work_dir
    if resume is None or not (Path(work_dir) / "sweeps" / resume).is_dir():
        if resume is not None and backend == "local":
            SweepStore.open(work_dir, resume)  # raises, listing the sweeps there
        record = SweepRecord(sweep_id=sweep_id or resume or new_sweep_id(), backend=backend,
                             config=spec.sweep or {}, spec=_compared_spec(spec),
                             teacher_ckpt=teacher_ckpt, teacher_sha256=file_sha256(teacher_ckpt),
                             seed=spec.runtime.seed)
        return SweepStore.create(work_dir, record)

    store = SweepStore.open(work_dir, resume)
    record = store.read()
    problems = _resume_problems(spec, record, teacher_ckpt, file_sha256(teacher_ckpt))
    if problems:
        raise KdctlError("; ".join(problems) + "; restore them, or start a new sweep "
                         "without --resume", field="--resume")
    return store


def _resume_problems(spec: Spec, record: SweepRecord, teacher_ckpt: str,
                     teacher_sha256: str) -> list[str]:
    problems = []
    if spec.sweep != record.config:
        changed = _changed(record.config, spec.sweep or {})
        problems.append(f"sweep {record.sweep_id} began with another sweep section "
                        f"(changed: {', '.join('sweep.' + c for c in changed)})")
    changed = _changed(record.spec, _compared_spec(spec))
    if changed:
        problems.append(f"the spec changed since sweep {record.sweep_id} began: "
                        f"{', '.join(changed[:5])}")
    if teacher_ckpt != record.teacher_ckpt or teacher_sha256 != record.teacher_sha256:
        problems.append(f"the sweep's teacher is {record.teacher_ckpt} (sha256 "
                        f"{record.teacher_sha256[:12]}), got {teacher_ckpt} "
                        f"({teacher_sha256[:12]})")
    return problems


def _changed(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = dict.fromkeys([*old, *new])
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found


# ---------------------------------------------------------------------------------------
# plan, agents, summary


def plan_line(spec: Spec, record: SweepRecord, count: int, agents: int) -> str:
    """How many trials this invocation runs and the sweep will hold, and hyperband's bands."""
    before = len(record.trials)
    total = before + count
    cap = record.config.get("run_cap")
    capped = f", capped by run_cap {cap}" if cap and cap < total else ""
    total = min(total, cap) if cap else total
    line = (f"sweep [cyan]{record.sweep_id}[/] ({record.backend}, "
            f"{record.config['method']} over {', '.join(record.config['parameters'])}): "
            f"{_n(min(count, total - before), 'trial')} now on {_n(agents, 'agent')}, "
            f"{before} before -> {_n(total, 'trial')} in total{capped}")
    if record.config["method"] == "grid":
        line += " (fewer when the grid is exhausted)"
    et = record.config.get("early_terminate")
    if et and record.backend == "local":
        n_val = validations_per_trial(record.config, spec.schedule)
        bands = hyperband_bands(et, n_val)
        line += (f"; hyperband compares trials at validations {bands} of {n_val} "
                 f"(eta {et.get('eta', 3)})")
    return line


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _run_agents(spec: Spec, store: SweepStore, count: int, agents: int, backend: str,
                console: Console, verbose: bool) -> None:
    from kdctl.sweep_agents import local_agent, spawn_agents, wandb_agent  # noqa: PLC0415

    # bound to the real stdout: training runs inside quiet_stdout; the final table is
    # printed by the summary, so the live one is transient
    view = Console(file=sys.stdout, force_terminal=console.is_terminal, width=console.width)
    epochs = spec.schedule.epochs
    with Live(get_renderable=lambda: trials_table(store.read(), epochs), console=view,
              refresh_per_second=1, transient=True, redirect_stdout=False,
              redirect_stderr=True):
        if agents > 1:
            spawn_agents(spec, store, count, agents, backend, verbose)
        elif backend == "local":
            local_agent(spec, store, count, verbose=verbose)
        else:
            wandb_agent(spec, store, count, verbose=verbose)


def _print_summary(spec: Spec, spec_path: Path, store: SweepStore, record: SweepRecord,
                   console: Console) -> None:
    console.print(trials_table(record, spec.schedule.epochs))
    failed = [t for t in record.trials if t.state == "failed"]
    for t in failed[-3:]:
        console.print(f"[red]trial {t.index} failed:[/] {t.error}")
    if record.config.get("early_terminate"):
        console.print(epochs_summary(record, spec.schedule.epochs))
    best = best_trial(record)
    if best is None:
        console.print(f"no trial has a {record.metric} yet")
    else:
        values = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
        console.print(f"[bold]best trial {best.index}[/] {best.run_name}: {record.metric} "
                      f"{best.best(record.metric):.4f} with {values}")
        console.print("reproduce it with:")
        for line in reproduce_command(best, str(spec_path), record.teacher_ckpt):
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(f"results: {store.folder / 'sweep.json'} and sweep.csv; resume with "
                  f"`kdctl sweep --resume {record.sweep_id}`")
