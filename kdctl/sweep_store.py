"""The run store of a local sweep: `WORK_DIR/sweeps/<sweep_id>/store.json`.

The store is the sweep's only state: its config, the fixed teacher checkpoint, the seed,
and one record per trial (proposed values, state, one history row per validation). Every
change is a read-modify-write under a file lock, written atomically, so agents in several
processes share it safely and a kill at any moment leaves the last complete version.
Trial run folders are ordinary run folders in WORK_DIR with `sweep_id` set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import socket
import string
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json, atomic_write_text

STORE_VERSION = 1
ACTIVE = ("created", "running")
INTERRUPTED = "interrupted: its agent stopped before the trial ended (not retried)"


@dataclass
class Trial:
    index: int
    params: dict[str, Any]
    state: str = "created"  # created, running, finished, stopped_early, failed
    run_dir: str | None = None
    run_name: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one row per validation
    epochs_run: int = 0
    stop_reason: str | None = None
    error: str | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    ended: str | None = None

    @property
    def name(self) -> str:
        return f"trial-{self.index}"

    def best(self, metric: str) -> float | None:
        values = [row[metric] for row in self.history if metric in row]
        return max(values) if values else None


@dataclass
class SweepRecord:
    sweep_id: str
    backend: str
    config: dict[str, Any]
    spec: dict[str, Any]
    teacher_ckpt: str
    teacher_sha256: str
    seed: int
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    trials: list[Trial] = field(default_factory=list)
    version: int = STORE_VERSION

    @property
    def metric(self) -> str:
        return self.config["metric"]["name"]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepRecord:
        trials = [Trial(**t) for t in data.pop("trials")]
        return cls(**data, trials=trials)


def new_sweep_id() -> str:
    """Eight lowercase letters and digits, like W&B's sweep ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def sweeps_root(work_dir: str | Path) -> Path:
    return Path(work_dir) / "sweeps"


class SweepStore:
    """One sweep's folder: store.json (the state), sweep.json and sweep.csv (results)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "store.json"
        self._lock = FileLock(str(self.folder / "store.lock"))

    @classmethod
    def create(cls, work_dir: str | Path, record: SweepRecord) -> SweepStore:
        store = cls(sweeps_root(work_dir) / record.sweep_id)
        store.folder.mkdir(parents=True, exist_ok=False)
        atomic_write_json(store.path, asdict(record))
        return store

    @classmethod
    def open(cls, work_dir: str | Path, sweep_id: str) -> SweepStore:
        store = cls(sweeps_root(work_dir) / sweep_id)
        if not store.path.is_file():
            known = sorted(p.parent.name for p in sweeps_root(work_dir).glob("*/store.json"))
            raise KdctlError(f"no sweep {sweep_id!r} in {sweeps_root(work_dir)}; sweeps "
                             f"there: {', '.join(known) or 'none'}", field="--resume")
        return store

    def read(self) -> SweepRecord:
        """A consistent snapshot without the lock (writes replace the file atomically)."""
        data = json.loads(self.path.read_text())
        if data.get("version") != STORE_VERSION:
            raise KdctlError(f"{self.path}: store version {data.get('version')} is not "
                             f"{STORE_VERSION}; start a new sweep", field="--resume")
        return SweepRecord.from_json(data)

    @contextlib.contextmanager
    def edit(self) -> Iterator[SweepRecord]:
        """Read, let the caller change the record, write it back; one writer at a time."""
        with self._lock:
            record = self.read()
            yield record
            atomic_write_json(self.path, asdict(record))

    def update_trial(self, index: int, **changes: Any) -> Trial:
        with self.edit() as record:
            trial = record.trials[index]
            for key, value in changes.items():
                setattr(trial, key, value)
        return trial

    def mark_interrupted(self) -> list[int]:
        """Trials whose agent process is gone become failed; their history is kept and
        the engine sees them as crashed runs. Returns their indices."""
        with self.edit() as record:
            dead = [t for t in record.trials if t.state in ACTIVE and not _alive(t)]
            for trial in dead:
                trial.state, trial.error = "failed", INTERRUPTED
                trial.ended = time.strftime("%Y-%m-%d %H:%M:%S")
                trial.run_dir = trial.run_dir or self._orphan_run(record, trial)
        for trial in dead:
            _mark_run_failed(trial.run_dir)
        return [t.index for t in dead]

    def _orphan_run(self, record: SweepRecord, trial: Trial) -> str | None:
        """The run folder of a trial killed between creating it and recording it here."""
        from kdctl.runs import find_runs  # noqa: PLC0415

        recorded = {t.run_dir for t in record.trials}
        for run in find_runs(self.folder.parent.parent, "distill"):  # WORK_DIR/sweeps/<id>
            if (run.sweep_id == record.sweep_id and run.overrides == trial.params
                    and run.run_dir not in recorded):
                return run.run_dir
        return None


def _alive(trial: Trial) -> bool:
    if trial.host != socket.gethostname():
        return True  # another machine's agent: it cannot be checked from here
    try:
        os.kill(trial.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_run_failed(run_dir: str | None) -> None:
    from kdctl.runs import load_run  # noqa: PLC0415

    if run_dir and (Path(run_dir) / "run.json").is_file():
        run = load_run(Path(run_dir))
        if run.state in ACTIVE:
            run.state = "failed"
            run.save()


# ---------------------------------------------------------------------------------------
# results: sweep.json and sweep.csv


def trial_rows(record: SweepRecord) -> list[dict[str, Any]]:
    """One flat row per trial: what the report plots (metric against each parameter)."""
    rows = []
    for t in record.trials:
        row = {"trial": t.index, "run": t.run_name, "state": t.state,
               "epochs_run": t.epochs_run, "stopped_early": t.state == "stopped_early",
               f"best {record.metric}": t.best(record.metric)}
        row.update(t.params)
        rows.append(row)
    return rows


def best_trial(record: SweepRecord) -> Trial | None:
    scored = [t for t in record.trials if t.best(record.metric) is not None
              and t.state in ("finished", "stopped_early")]
    return max(scored, key=lambda t: t.best(record.metric), default=None)


def write_results(store: SweepStore) -> SweepRecord:
    """sweep.json (config, trials, best) and sweep.csv (one row per trial)."""
    record = store.read()
    best = best_trial(record)
    rows = trial_rows(record)
    atomic_write_json(store.folder / "sweep.json", {
        "sweep_id": record.sweep_id, "backend": record.backend, "config": record.config,
        "metric": record.metric, "teacher_ckpt": record.teacher_ckpt, "seed": record.seed,
        "best": asdict(best) if best else None,
        "trials": [asdict(t) for t in record.trials]})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(store.folder / "sweep.csv", text.getvalue())
    return record
