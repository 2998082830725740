"""Weights & Biases tracking: online with a configured key, offline otherwise.

A missing account never stops a run: `auto` and `online` without a key both log
offline into the run folder, to be uploaded later with `wandb sync`.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from kdctl.runs import RunInfo
from kdctl.spec import Spec


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode(spec: Spec) -> tuple[str, str | None]:
    """The mode to use and, when it differs from what was asked, why."""
    asked = spec.tracking.mode
    if asked == "disabled":
        return "disabled", None
    if asked == "offline":
        return "offline", None
    if has_wandb_key():
        return "online", None
    note = ("no W&B key configured (WANDB_API_KEY or `wandb login`): logging offline; "
            "upload later with `wandb sync`") if asked == "online" else None
    return "offline", note


def wandb_backend(spec: Spec, run: RunInfo, mode: str, group: str | None = None
                  ) -> dict[str, Any] | None:
    """The MMEngine WandbVisBackend entry for a run's visualizer, or None when disabled."""
    if mode == "disabled":
        return None
    return dict(
        type="WandbVisBackend",
        save_dir=str(Path(run.run_dir) / "wandb"),
        init_kwargs=dict(
            project=spec.tracking.project,
            entity=spec.tracking.entity,
            name=run.run_name,
            group=group or spec.name,
            job_type=run.role,
            config=spec.model_dump(mode="json"),
            dir=str(Path(run.run_dir)),
            mode=mode,
            reinit="finish_previous",
        ),
    )
