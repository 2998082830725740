"""Render MMDetection configs from the spec and the Jinja templates in `templates/`.

Three roles: the teacher, the plain student (the baseline KD is measured against) and
the distilled student. The rendered files are plain MMDetection 3.x configs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jinja2

from kdctl import __version__
from kdctl.errors import KdctlError
from kdctl.io import atomic_write_text
from kdctl.spec import EFFICIENTNET_LITES, RESNETS, ModelSpec, Spec, logit_loss_kind

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
ROLES = ("teacher", "student", "distill")
_STRIDES = [8, 16, 32, 64, 128]
_FCOS_RANGES = [(-1, 64), (64, 128), (128, 256), (256, 512), (512, 100000000)]
# input normalisation (RGB) that each backbone family's pretrained weights expect
_IMAGENET_MEAN_STD = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
_EFFICIENTNET_LITE_MEAN_STD = ([127.0, 127.0, 127.0], [128.0, 128.0, 128.0])
_TITLES = {"teacher": "Teacher", "student": "Plain student (the KD baseline)"}


def _environment() -> jinja2.Environment:
    if not (TEMPLATE_DIR / "detector.py.j2").is_file():
        raise KdctlError(f"templates not found in {TEMPLATE_DIR}; install kdctl from its "
                         "repository with `pip install -e .`")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["py"] = repr
    return env


def _backbone_context(model: ModelSpec) -> dict[str, Any]:
    b = model.backbone
    if b.name in RESNETS:
        depth = RESNETS[b.name]
        init_cfg = dict(type="Pretrained", checkpoint=b.pretrained) if b.pretrained else None
        if b.pretrained == "packaged":
            raise KdctlError("'packaged' weights exist for efficientnet_lite backbones only; "
                             "give a local ResNet weights file",
                             field="backbone.pretrained")
        return dict(kind="resnet", depth=depth, init_cfg=init_cfg,
                    frozen_stages=b.frozen_stages, norm_eval=b.norm_eval,
                    out_channels=[128, 256, 512] if depth < 50 else [512, 1024, 2048])

    from kdctl.models.efficientnet_lite import out_channels, packaged_weights  # noqa: PLC0415

    arch = EFFICIENTNET_LITES[b.name]
    pretrained = str(packaged_weights(arch)) if b.pretrained == "packaged" else b.pretrained
    return dict(kind="efficientnet_lite", arch=arch, pretrained=pretrained,
                frozen_stages=b.frozen_stages, norm_eval=b.norm_eval,
                out_channels=out_channels(arch))


def model_context(model: ModelSpec, num_classes: int) -> dict[str, Any]:
    n = model.num_levels
    backbone = _backbone_context(model)
    mean, std = (_IMAGENET_MEAN_STD if backbone["kind"] == "resnet"
                 else _EFFICIENTNET_LITE_MEAN_STD)
    return dict(
        detector=model.detector,
        mmdet_type={"atss": "ATSS", "retinanet": "RetinaNet", "fcos": "FCOS"}[model.detector],
        num_classes=model.head.num_classes or num_classes,
        backbone=backbone,
        pixel_mean=mean,
        pixel_std=std,
        neck_channels=model.neck_channels,
        num_levels=n,
        strides=_STRIDES[:n],
        regress_ranges=_FCOS_RANGES[: n - 1] + [(_FCOS_RANGES[n - 1][0], 100000000)],
        head=model.head.model_dump(),
    )


def render_config(spec: Spec, role: str, teacher_ckpt: str | None = None,
                  data_override: dict[str, str] | None = None) -> str:
    """The text of one MMDetection config. `data_override` swaps checked annotation files."""
    if role not in ROLES:
        raise KdctlError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    data = spec.data.model_dump()
    data.update(data_override or {})
    data["filter_empty"] = spec.data.empty_train_images == "drop"
    data["classes"] = tuple(spec.data.classes)
    data["image_size"] = tuple(spec.data.image_size)
    for key in ("train_images", "val_images"):
        data[key] = data[key].rstrip("/") + "/"

    ctx: dict[str, Any] = dict(
        name=spec.name, version=__version__, role_title=_TITLES.get(role, role),
        data=data, schedule=spec.schedule, optimizer=spec.optimizer, runtime=spec.runtime,
        epochs=spec.teacher_epochs() if role == "teacher" else spec.schedule.epochs,
    )
    env = _environment()
    if role == "distill":
        ckpt = teacher_ckpt or spec.teacher.checkpoint
        ctx.update(
            teacher=model_context(spec.teacher, spec.num_classes),
            student=model_context(spec.student, spec.num_classes),
            teacher_ckpt=str(Path(ckpt).resolve()) if ckpt else None,
            distill=spec.distill, logit_loss=logit_loss_kind(spec),
            kd_weight=spec.distill.loss_weight("logit"),
            box_weight=spec.distill.loss_weight("box"),
            feature_weight=spec.distill.loss_weight("feature"),
        )
        return env.get_template("distill.py.j2").render(**ctx)
    model = spec.teacher if role == "teacher" else spec.student
    ctx["model"] = model_context(model, spec.num_classes)
    return env.get_template("detector.py.j2").render(**ctx)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_rendered(path: Path, text: str) -> Path | None:
    """Write a rendered config; a copy the user edited since kdctl wrote it is kept aside.

    Returns the backup path when one was made.
    """
    record_file = path.parent / ".kdctl-rendered.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    backup = None
    if path.is_file():
        current = path.read_text()
        if current != text and record.get(path.name) != _digest(current):
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d_%H%M%S')}.bak")
            path.rename(backup)
    atomic_write_text(path, text)
    record[path.name] = _digest(text)
    atomic_write_text(record_file, json.dumps(record, indent=2))
    return backup


def render_all(spec: Spec, out_dir: Path, teacher_ckpt: str | None = None
               ) -> tuple[dict[str, Path], list[Path]]:
    """Render the three configs into `out_dir`; return their paths and any backups made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, backups = {}, []
    for role in ROLES:
        path = out_dir / f"{role}.py"
        backup = write_rendered(path, render_config(spec, role, teacher_ckpt))
        if backup:
            backups.append(backup)
        paths[role] = path
    return paths, backups
