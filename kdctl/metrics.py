"""Names of the metrics kdctl logs, and how an empty evaluation is recorded."""

from __future__ import annotations

from typing import Any

# mmdet's CocoMetric with prefix 'val', logged after each validation
LOGGED_METRICS = [f"val/bbox_{k}" for k in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m",
                                             "mAP_l")]


def complete(metrics: dict[str, Any] | None) -> dict[str, float]:
    """CocoMetric returns nothing when a model detects nothing above its score threshold
    (early in training); that is a score of 0 on every metric, recorded as such."""
    out = {k: float(v) for k, v in (metrics or {}).items()}
    for name in LOGGED_METRICS:
        out.setdefault(name, 0.0)
    return out
