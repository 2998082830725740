"""Run folders: `WORK_DIR/<timestamp>_<5-char code>/` with run.json, config, logs, metrics.

A run folder is created once and never reused; run.json records what the run is (role,
model, teacher checkpoint and its hash) so `kdctl eval` can find runs by role.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json

_ALPHABET = string.ascii_lowercase + string.digits
ROLE_TITLES = {"teacher": "teacher", "student": "plain student", "distill": "distilled student"}


def new_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(5))


@dataclass
class RunInfo:
    role: str
    model: str
    code: str
    run_dir: str
    spec_name: str
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    state: str = "created"  # created, running, finished, failed, stopped_early
    teacher_ckpt: str | None = None
    teacher_sha256: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    sweep_id: str | None = None
    seed: int = 0

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    @property
    def run_name(self) -> str:
        return f"{self.model}_{self.code}"

    def save(self) -> None:
        atomic_write_json(self.path / "run.json", asdict(self))


def create_run_dir(work_dir: Path) -> tuple[Path, str]:
    work_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        code = new_code()
        run_dir = work_dir / f"{time.strftime('%Y%m%d_%H%M%S')}_{code}"
        try:
            run_dir.mkdir()
            return run_dir, code
        except FileExistsError:
            continue
    raise KdctlError(f"could not create a new run folder in {work_dir}")


def load_run(run_dir: Path) -> RunInfo:
    info_file = Path(run_dir) / "run.json"
    if not info_file.is_file():
        raise KdctlError(f"{run_dir} is not a kdctl run folder (no run.json)")
    return RunInfo(**json.loads(info_file.read_text()))


def find_runs(work_dir: Path, role: str | None = None) -> list[RunInfo]:
    """Runs in `work_dir`, oldest first, optionally of one role."""
    runs = []
    for info_file in sorted(Path(work_dir).glob("*/run.json")):
        run = load_run(info_file.parent)
        if role is None or run.role == role:
            runs.append(run)
    return runs


def last_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint MMEngine saved last (its `last_checkpoint` file names it)."""
    pointer = Path(run_dir) / "last_checkpoint"
    if pointer.is_file():
        ckpt = Path(pointer.read_text().strip())
        if ckpt.is_file():
            return ckpt
    ckpts = sorted(Path(run_dir).glob("epoch_*.pth"),
                   key=lambda p: int(p.stem.split("_")[1]))
    return ckpts[-1] if ckpts else None


def read_metrics(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
