"""Read a sweep's `sweep.json` for the report: each trial's parameter values and metric.

The sweep writer is its own module; this reader accepts the shapes a trial list
reasonably takes (a list, or a dict with `trials`; parameters under `params`,
`parameters`, `config` or `overrides`; the metric as a number or a dict under `best`,
`best_metric`, `metric`, `value` or `score`, or the best of a `history` of validation
rows, as kdctl's sweeps write it) and skips what it cannot read, with a reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PARAM_KEYS = ("params", "parameters", "config", "overrides")
_METRIC_KEYS = ("best", "best_metric", "metric", "value", "score")
DEFAULT_METRIC = "val/bbox_mAP"


def find_sweeps(work_dir: Path) -> list[Path]:
    """sweep.json files one or two folders below the work dir, oldest first."""
    found = list(Path(work_dir).glob("*/sweep.json")) + list(
        Path(work_dir).glob("*/*/sweep.json"))
    return sorted(found, key=lambda p: p.stat().st_mtime)


def _metric_value(value: Any, metric: str) -> tuple[float | None, str]:
    if isinstance(value, bool):
        return None, metric
    if isinstance(value, (int, float)):
        return float(value), metric
    if isinstance(value, dict):
        if "name" in value and "value" in value:
            return _metric_value(value["value"], str(value["name"]))
        if metric in value:
            return _metric_value(value[metric], metric)
        for key, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "epoch" not in key:
                return float(v), key
    return None, metric


def _best_of_history(history: Any, metric: str) -> float | None:
    values = [row[metric] for row in history if isinstance(row, dict)
              and isinstance(row.get(metric), (int, float))] if isinstance(history, list) else []
    return float(max(values)) if values else None


def read_trial(trial: Any, metric: str = DEFAULT_METRIC) -> dict[str, Any] | None:
    """{'params': {...}, 'metric': float | None, 'metric_name': str}, or None."""
    if not isinstance(trial, dict):
        return None
    params = next((trial[k] for k in _PARAM_KEYS if isinstance(trial.get(k), dict)), None)
    if params is None:
        return None
    params = {k: v for k, v in params.items() if isinstance(v, (int, float, str))}
    for key in (*_METRIC_KEYS, metric):
        if key in trial:
            value, name = _metric_value(trial[key], metric)
            return {"params": params, "metric": value, "metric_name": name}
    # kdctl's own sweep.json: one history row per validation, the best is the trial's score
    return {"params": params, "metric": _best_of_history(trial.get("history"), metric),
            "metric_name": metric}


def _metric_name(data: Any) -> str:
    if not isinstance(data, dict):
        return DEFAULT_METRIC
    named = data.get("metric")
    if isinstance(named, str):
        return named
    if isinstance(named, dict) and "name" in named:
        return str(named["name"])
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("metric"), dict):
        return str(config["metric"].get("name", DEFAULT_METRIC))
    return DEFAULT_METRIC


def read_sweep(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The readable trials of a sweep.json and the metric's name."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("sweep file %s not read: %s", path, exc)
        return [], DEFAULT_METRIC
    raw = data.get("trials", []) if isinstance(data, dict) else data
    if not isinstance(raw, list):
        log.warning("sweep file %s: expected a list of trials, got %s", path,
                    type(raw).__name__)
        return [], DEFAULT_METRIC
    metric = _metric_name(data)
    trials = [t for t in (read_trial(x, metric) for x in raw) if t is not None]
    if len(trials) < len(raw):
        log.warning("sweep file %s: %d of %d trials had no parameters and were skipped",
                    path, len(raw) - len(trials), len(raw))
    if metric == DEFAULT_METRIC and trials:
        metric = trials[0]["metric_name"]
    return trials, metric
