"""mmdet's COCO metric as kdctl evaluates with it, and the precision-recall curve.

The numbers come from mmdet's CocoMetric, the same metric training logs after each
validation, so `kdctl eval` and metrics.json agree on the same checkpoint. The metric
dumps its detections to `<split>.bbox.json`; the precision-recall curve at IoU 0.5 is read
from pycocotools' COCOeval run on that file with the metric's own parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# COCOeval.stats entries CocoMetric reports; keys come out as <split>/bbox_<item>
METRIC_ITEMS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l", "AR@100")
METRICS = tuple(f"bbox_{item}" for item in METRIC_ITEMS)
PROPOSAL_NUMS = (100, 300, 1000)  # CocoMetric's default maxDets


def evaluator_cfg(split: str, ann_file: str, outfile_prefix: Path) -> dict[str, Any]:
    return dict(type="CocoMetric", ann_file=ann_file, metric="bbox", classwise=True,
                metric_items=list(METRIC_ITEMS), proposal_nums=PROPOSAL_NUMS,
                outfile_prefix=str(outfile_prefix), format_only=False, prefix=split)


def split_metrics(raw: dict[str, Any], split: str, classes: list[str]
                  ) -> tuple[dict[str, float], dict[str, float | None]]:
    """CocoMetric's flat output as (summary metrics, per-class AP).

    An empty dict (nothing detected above the score threshold) is a score of 0. COCO's
    -1 (no ground truth of that size) and NaN (no ground truth of that class) become None.
    """
    metrics = {f"{split}/{name}": _clean(raw.get(f"{split}/{name}", 0.0)) for name in METRICS}
    per_class = {c: _clean(raw.get(f"{split}/{c}_precision", 0.0 if not raw else None))
                 for c in classes}
    return metrics, per_class


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or value < 0 else value


def pr_curve(ann_file: str, results_file: Path) -> dict[str, list[float]] | None:
    """Precision at 101 recall points, IoU 0.5, all sizes, mean over classes with ground
    truth; None when nothing was detected."""
    from mmdet.datasets.api_wrappers import COCO, COCOeval  # noqa: PLC0415

    from kdctl.train import quiet_stdout  # noqa: PLC0415

    detections = json.loads(Path(results_file).read_text()) if results_file.is_file() else []
    if not detections:
        return None
    with quiet_stdout(verbose=False):
        gt = COCO(ann_file)
        coco_eval = COCOeval(gt, gt.loadRes(detections), "bbox")
        coco_eval.params.maxDets = list(PROPOSAL_NUMS)
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"][0, :, :, 0, -1]  # (recall, class)
    recall = coco_eval.params.recThrs
    points = []
    for row in precision:
        valid = row[row > -1]
        points.append(float(valid.mean()) if valid.size else 0.0)
    return {"recall": [round(float(r), 2) for r in recall],
            "precision": [round(p, 4) for p in points]}
