"""`kdctl init` and `kdctl validate`'s summary: the starter spec and a readable digest."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kdctl.render import TEMPLATE_DIR
from kdctl.spec import Spec, logit_loss_kind


def write_starter(path: Path, force: bool) -> Path | None:
    """Copy the commented starter spec to `path`; an existing file is kept as a backup."""
    from kdctl.errors import KdctlError  # noqa: PLC0415

    backup = None
    if path.exists():
        if not force:
            raise KdctlError(f"{path} exists; pass --force to replace it (a backup is kept) "
                             "or give another path")
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d_%H%M%S')}.bak")
        path.rename(backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE_DIR / "kdctl.yaml", path)
    return backup


def _model_row(m) -> str:  # noqa: ANN001
    pre = f", pretrained {m.backbone.pretrained}" if m.backbone.pretrained else ""
    return (f"{m.detector} {m.backbone.name}{pre}; FPN {m.neck_channels} ch x "
            f"{m.num_levels} levels; head {m.head.feat_channels} ch x {m.head.stacked_convs}")


def _distill_row(spec: Spec) -> str:
    kd = spec.distill
    parts = []
    if "logit" in kd.losses:
        parts.append(f"logit: {logit_loss_kind(spec)} at T={kd.temperature}, weight "
                     f"{kd.weight}")
    if "box" in kd.losses:
        parts.append(f"box: weight {kd.box_weight}")
    if "feature" in kd.losses:
        parts.append(f"feature: weight {kd.feature_weight}")
    return "; ".join(parts)


def summary_rows(spec: Spec) -> list[tuple[str, str]]:
    d, o, s = spec.data, spec.optimizer, spec.schedule
    kd = spec.distill
    return [
        ("name", spec.name),
        ("data", f"{len(d.classes)} classes {d.classes}; train {d.train_ann}; val {d.val_ann}"),
        ("image size", f"{d.image_size[0]} x {d.image_size[1]}"),
        ("teacher", _model_row(spec.teacher)),
        ("teacher checkpoint", spec.teacher.checkpoint or "-"),
        ("student", _model_row(spec.student)),
        ("distillation", _distill_row(spec)),
        ("optimizer", f"{o.type} lr {o.lr}"
                      + (f", momentum {o.momentum}" if o.type == "SGD" else "")
                      + f", weight decay {o.weight_decay}"
                      + (f", EMA momentum {o.ema}" if o.ema else "")),
        ("schedule", f"{s.epochs} epochs (teacher {spec.teacher_epochs()}), batch {s.batch_size}"),
        ("tracking", f"wandb project {spec.tracking.project!r}, mode {spec.tracking.mode}"),
        ("runtime", f"device {spec.runtime.device}, seed {spec.runtime.seed}, work dir "
                    f"{spec.runtime.work_dir}"),
        ("sweep", f"{spec.sweep.get('method')} over {', '.join(spec.sweep.get('parameters', {}))}"
                  if spec.sweep else "-"),
    ]
