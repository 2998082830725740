"""Checks that run before any training step: the spec's data, image files and boxes.

Errors from every split are gathered into one SpecError; repairable problems (boxes to
clip or drop, empty images to drop) are fixed in a cleaned copy of the annotations that
the run trains on, and the user's files are never modified.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from kdctl.data.coco_checks import CocoCheckResult, check_coco, write_coco
from kdctl.errors import SpecError
from kdctl.spec import Spec


def _splits(spec: Spec) -> list[tuple[str, str, str]]:
    d = spec.data
    splits = [("train", d.train_ann, d.train_images), ("val", d.val_ann, d.val_images)]
    if d.test_ann and d.test_images:
        splits.append(("test", d.test_ann, d.test_images))
    return splits


def check_splits(spec: Spec) -> dict[str, CocoCheckResult]:
    results = {}
    for split, ann, images in _splits(spec):
        results[split] = check_coco(Path(ann), Path(images), split,
                                    empty_policy=spec.data.empty_train_images,
                                    strict=spec.data.strict, classes=spec.data.classes)
    return results


def check_data(spec: Spec, console: Console) -> dict[str, CocoCheckResult]:
    """Check every split; raise one SpecError listing every data error, print warnings."""
    results = check_splits(spec)
    errors = [e for r in results.values() for e in r.errors]
    if errors:
        raise SpecError(errors, source="data")
    for split, result in results.items():
        for warning in result.warnings:
            console.print(f"[yellow]warning[/] data.{split}_ann: {escape(warning)}")
    return results


def write_cleaned(results: dict[str, CocoCheckResult], out_dir: Path,
                  console: Console) -> dict[str, str]:
    """Write the repaired copy of each split that needed repairs into `out_dir/data/`;
    return `{split}_ann` overrides pointing at them."""
    overrides = {}
    for split, result in results.items():
        original = json.loads(Path(result.ann_file).read_text())
        if result.data != original:
            cleaned = out_dir / "data" / f"{split}.json"
            write_coco(result.data, cleaned)
            overrides[f"{split}_ann"] = str(cleaned)
            console.print(f"data.{split}_ann: training on the repaired copy {cleaned}")
    return overrides


def spec_warnings(spec: Spec, role: str | None = None) -> list[str]:
    """Legal settings that are probably not what the user meant."""
    notes = []
    kd = spec.distill
    if kd.weight == 0 and "logit" in kd.losses and role in (None, "distill"):
        others = [loss for loss in kd.losses if loss != "logit"]
        notes.append("distill.weight: 0 turns the logit KD loss off; " + (
            f"only the {' and '.join(others)} KD remains" if others
            else "the distilled student will train like the plain student"))
    return notes


def check_teacher_checkpoint(spec: Spec, checkpoint: str) -> int:
    """Build the teacher the spec describes and load `checkpoint` into it strictly, so a
    checkpoint of another architecture is refused by `validate`, not hours into a run.
    Returns the number of tensors loaded; raises KdctlError naming teacher.checkpoint."""
    import kdctl.models  # noqa: F401, PLC0415  (registers kdctl's modules into mmdet)
    from mmengine.config import Config  # noqa: PLC0415
    from mmengine.registry import DefaultScope  # noqa: PLC0415
    from mmdet.registry import MODELS  # noqa: PLC0415

    from kdctl.models.kd_detector import load_strict  # noqa: PLC0415
    from kdctl.render import render_config  # noqa: PLC0415

    cfg = Config.fromstring(render_config(spec, "teacher"), ".py")
    with DefaultScope.overwrite_default_scope("mmdet"):
        teacher = MODELS.build(cfg.model)
    load_strict(teacher, checkpoint)
    return len(teacher.state_dict())
