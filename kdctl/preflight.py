"""Checks that run before any training step: the spec's data, image files and boxes.

Errors from every split are gathered into one SpecError; repairable problems (boxes to
clip or drop, empty images to drop) are fixed in a cleaned copy of the annotations that
the run trains on, and the user's files are never modified.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

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


def check_data(spec: Spec, out_dir: Path | None, console: Console) -> dict[str, str]:
    """Check every split; return `{split}_ann` overrides pointing at cleaned copies.

    Raises SpecError listing every data error. With `out_dir` None nothing is written.
    """
    results = check_splits(spec)
    errors = [e for r in results.values() for e in r.errors]
    if errors:
        raise SpecError(errors, source="data")

    overrides = {}
    for split, result in results.items():
        for warning in result.warnings:
            console.print(f"[yellow]warning[/] data.{split}_ann: {warning}")
        original = json.loads(Path(result.ann_file).read_text())
        if result.data != original and out_dir is not None:
            cleaned = out_dir / "data" / f"{split}.json"
            write_coco(result.data, cleaned)
            overrides[f"{split}_ann"] = str(cleaned)
            console.print(f"data.{split}_ann: training on the cleaned copy {cleaned}")
    return overrides
