"""The spec's `sweep` section: the W&B sweep format, checked before any trial runs.

The `sweeps` package (W&B's open-source engine) ships the JSON schema of the format;
kdctl adds the checks a schema cannot express: parameter names that map to a spec field,
metric names that kdctl really logs, and `min < max` with the parameter named.
"""

from __future__ import annotations

from typing import Any

from kdctl.metrics import LOGGED_METRICS

# sweep parameter name -> (spec section, field)
SWEEPABLE: dict[str, tuple[str, str]] = {
    "lr": ("optimizer", "lr"),
    "weight_decay": ("optimizer", "weight_decay"),
    "momentum": ("optimizer", "momentum"),
    "temperature": ("distill", "temperature"),
    "kd_weight": ("distill", "weight"),
    "feature_weight": ("distill", "feature_weight"),
    "epochs": ("schedule", "epochs"),
    "batch_size": ("schedule", "batch_size"),
}


METHODS = ("grid", "random", "bayes")


def sweep_problems(sweep: Any) -> list[str]:
    """Every problem of a sweep section, each as `sweep.path: what is wrong; fix`."""
    if not isinstance(sweep, dict):
        return [f"sweep: must be a mapping in the W&B sweep format (got {sweep!r})"]
    problems = _schema_problems(sweep)

    method = sweep.get("method")
    if method not in METHODS:
        problems.append(f"sweep.method: unknown method (got {method!r}); use one of "
                        f"{', '.join(METHODS)}")
    problems.extend(_metric_problems(sweep.get("metric")))
    params = sweep.get("parameters")
    if isinstance(params, dict):
        for name, cfg in params.items():
            problems.extend(_parameter_problems(name, cfg))
    return problems


def _schema_problems(sweep: dict[str, Any]) -> list[str]:
    from sweeps.config.cfg import schema_violations_from_proposed_config  # noqa: PLC0415

    try:
        found = schema_violations_from_proposed_config(sweep)
    except ValueError as exc:
        found = [str(exc)]
    # min/max and method are reported below with the field named; skip the schema's copies
    return [f"sweep: {m}" for m in found
            if "min" not in m.lower() and "method" not in m.lower()
            and "is not one of" not in m]


def _metric_problems(metric: Any) -> list[str]:
    if not isinstance(metric, dict):
        return [f"sweep.metric: missing or not a mapping (got {metric!r}); add "
                "`metric: {name: val/bbox_mAP_50, goal: maximize}`"]
    problems = []
    if metric.get("name") not in LOGGED_METRICS:
        problems.append(f"sweep.metric.name: kdctl never logs {metric.get('name')!r}; use one "
                        f"of {', '.join(LOGGED_METRICS)}")
    if metric.get("goal", "minimize") not in ("minimize", "maximize"):
        problems.append(f"sweep.metric.goal: got {metric.get('goal')!r}; use maximize or "
                        "minimize")
    return problems


def _parameter_problems(name: str, cfg: Any) -> list[str]:
    field = f"sweep.parameters.{name}"
    if name not in SWEEPABLE:
        return [f"{field}: maps to nothing in the spec; sweepable parameters are "
                f"{', '.join(SWEEPABLE)}"]
    if not isinstance(cfg, dict):
        return [f"{field}: must be a mapping such as {{min: 0.001, max: 0.01}} or "
                f"{{values: [...]}} (got {cfg!r})"]
    lo, hi = cfg.get("min"), cfg.get("max")
    if lo is not None and hi is not None:
        if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
            return [f"{field}: min and max must be numbers (got min={lo!r}, max={hi!r})"]
        if lo >= hi:
            return [f"{field}: min must be below max (got min={lo}, max={hi}); swap or "
                    "widen the range"]
    elif (lo is None) != (hi is None) and "value" not in cfg and "values" not in cfg:
        return [f"{field}: a range needs both min and max (got min={lo!r}, max={hi!r})"]
    return []
