"""Checkpoint I/O for kdctl's runs, plugged into MMEngine.

- `AtomicLocalBackend` ("kdctl_atomic"): rendered configs give it to the CheckpointHook,
  so a crash while a checkpoint or the `last_checkpoint` pointer is written leaves the
  previous file intact instead of a truncated one that `--resume` would choke on.
- The "kdctl-run://" checkpoint scheme: MMEngine checkpoints pickle its message hub
  (HistoryBuffer, numpy scalars), which torch >= 2.6 refuses to load with its default
  `weights_only=True`, so a resume would fail. kdctl resumes only from checkpoints it wrote
  itself into a run folder, and loads those (and only those) with `weights_only=False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_bytes

RUN_SCHEME = "kdctl-run://"


@register_backend("kdctl_atomic", force=True)
class AtomicLocalBackend(LocalBackend):
    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(Path(filepath), obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(Path(filepath), obj.encode(encoding))


def run_checkpoint_uri(path: Path) -> str:
    return RUN_SCHEME + str(Path(path).resolve())


@CheckpointLoader.register_scheme(prefixes=RUN_SCHEME, force=True)
def load_run_checkpoint(filename: str, map_location: Any = None) -> Any:
    path = Path(filename.removeprefix(RUN_SCHEME))
    if not (path.parent / "run.json").is_file():
        raise KdctlError(f"{path} is not in a kdctl run folder; only kdctl's own checkpoints "
                         "are resumed", field="--from")
    return torch.load(path, map_location=map_location, weights_only=False)
