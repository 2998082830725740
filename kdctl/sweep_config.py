"""The spec's `sweep` section: the W&B sweep format, checked before any trial runs.

The `sweeps` package (W&B's open-source engine) ships the JSON schema of the format;
kdctl reports its violations with the field named, and adds the checks a schema cannot
express: parameter names that map to a spec field, values that field accepts, metric names
that kdctl really logs, `min < max`, grid searches over discrete values only, and hyperband
bands that a trial reaches.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from pydantic import BaseModel, ValidationError

from kdctl.metrics import LOGGED_METRICS

# sweep parameter name -> (spec section, field)
SWEEPABLE: dict[str, tuple[str, str]] = {
    "lr": ("optimizer", "lr"),
    "weight_decay": ("optimizer", "weight_decay"),
    "momentum": ("optimizer", "momentum"),
    "temperature": ("distill", "temperature"),
    "kd_weight": ("distill", "weight"),
    "box_weight": ("distill", "box_weight"),
    "feature_weight": ("distill", "feature_weight"),
    "epochs": ("schedule", "epochs"),
    "batch_size": ("schedule", "batch_size"),
}

METHODS = ("grid", "random", "bayes")
# keys of the W&B format that kdctl uses; `program`, `command` and the like configure W&B's
# own launcher, which kdctl replaces (it runs each trial itself)
KEYS = ("name", "description", "method", "metric", "parameters", "early_terminate", "run_cap")
_DISCRETE = ("param_single_value", "param_categorical", "param_categorical_w_probabilities",
             "param_int_uniform")
_GRID = ("param_single_value", "param_categorical", "param_int_uniform", "param_quniform")


def trial_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """Sweep parameter values as dotted spec fields, for `kdctl.spec.with_overrides`."""
    return {".".join(SWEEPABLE[name]): value for name, value in params.items()}


def sweep_problems(sweep: Any, schedule: Any = None) -> list[str]:
    """Every problem of a sweep section, each as `sweep.path: what is wrong; fix`.
    `schedule` (a ScheduleSpec) enables the check that hyperband can stop a trial."""
    if not isinstance(sweep, dict):
        return [f"sweep: must be a mapping in the W&B sweep format (got {sweep!r})"]
    problems = _key_problems(sweep) + _schema_problems(sweep)

    method = sweep.get("method")
    if method not in METHODS:
        problems.append(f"sweep.method: unknown method (got {method!r}); use one of "
                        f"{', '.join(METHODS)}")
    problems.extend(_metric_problems(sweep.get("metric")))
    params = sweep.get("parameters")
    if not isinstance(params, dict) or not params:
        problems.append("sweep.parameters: missing or empty; add e.g. "
                        "`parameters: {lr: {min: 0.0001, max: 0.003}}`")
        return problems
    for name, cfg in params.items():
        found = _parameter_problems(name, cfg)
        if not found and method == "grid":
            found = _grid_problems(name, cfg)
        problems.extend(found)
    if schedule is not None and isinstance(sweep.get("early_terminate"), dict):
        problems.extend(_hyperband_problems(sweep, schedule))
    return problems


def _key_problems(sweep: dict[str, Any]) -> list[str]:
    return [f"sweep.{key}: not used by kdctl, which runs each trial itself (W&B project "
            f"and entity come from the tracking section); remove it. Keys: {', '.join(KEYS)}"
            for key in sweep if key not in KEYS]


def _import_engine() -> None:
    """Import `sweeps` once, without the warning its pydantic-v1 style config raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps  # noqa: F401, PLC0415 (slow import: scipy, sklearn)


def _schema_problems(sweep: dict[str, Any]) -> list[str]:
    """The schema's violations with their field path; method, metric name and parameters
    are reported by kdctl's own checks, with the allowed values listed."""
    _import_engine()
    from sweeps.config.schema import validator  # noqa: PLC0415

    problems = []
    for error in validator.iter_errors(sweep):
        path = [str(p) for p in error.absolute_path]
        if not path or path[0] in ("method", "parameters") or path[:2] in (
                ["metric", "name"], ["metric", "goal"]):
            continue  # unknown top-level keys: _key_problems
        if error.context:  # oneOf/anyOf: the closest branch says what is wrong
            from jsonschema.exceptions import best_match  # noqa: PLC0415

            error = best_match(error.context)
            path = [str(p) for p in error.absolute_path] or path
        problems.append(f"sweep.{'.'.join(path)}: {error.message}")
    return problems


def _metric_problems(metric: Any) -> list[str]:
    if not isinstance(metric, dict):
        return [f"sweep.metric: missing or not a mapping (got {metric!r}); add "
                "`metric: {name: val/bbox_mAP_50, goal: maximize}`"]
    problems = []
    name = metric.get("name")
    if name not in LOGGED_METRICS:
        problems.append(f"sweep.metric.name: kdctl never logs {name!r}; use one "
                        f"of {', '.join(LOGGED_METRICS)}")
    goal = metric.get("goal")
    if goal not in ("minimize", "maximize"):
        problems.append(f"sweep.metric.goal: got {goal!r}; the W&B default is minimize, but "
                        f"every metric kdctl logs (COCO mAP) is better higher: set maximize")
    elif goal == "minimize":
        problems.append(f"sweep.metric.goal: minimize would search for the worst {name}; "
                        "COCO mAP is better higher: set maximize")
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
    kind, problem = _engine_kind(name, cfg)
    if problem:
        return [f"{field}: {problem}"]
    return _value_problems(name, cfg, kind)


def _engine_kind(name: str, cfg: dict[str, Any]) -> tuple[str | None, str | None]:
    """The engine's parameter type (`param_uniform`, ...), or why it accepts none."""
    from sweeps.config.schema import check_for_deprecated_distributions  # noqa: PLC0415
    from sweeps.config.schema import validate_categorical_prob  # noqa: PLC0415
    from sweeps.params import HyperParameter  # noqa: PLC0415

    try:
        kind = HyperParameter(name, cfg).type
        validate_categorical_prob(name, cfg)
        check_for_deprecated_distributions(name, cfg)
    except Exception as exc:  # noqa: BLE001 (the engine raises several types)
        text = str(exc.args[0]) if exc.args else str(exc)
        if "invalid hyperparameter configuration" in text:
            text = ("not a W&B parameter: give `value: x`, `values: [...]`, or `min`/`max` "
                    "with an optional `distribution` (uniform, log_uniform_values, "
                    f"int_uniform, q_uniform, normal, ...) (got {cfg!r})")
        return None, text.removeprefix(f"{name}: ").removeprefix(f"Parameter {name}: ")
    return kind, None


def _value_problems(name: str, cfg: dict[str, Any], kind: str | None) -> list[str]:
    """Bounds and listed values must be values the spec field accepts."""
    section, key = SWEEPABLE[name]
    model = _section_model(section)
    field = f"sweep.parameters.{name}"
    integer = model.model_fields[key].annotation is int
    if integer and kind not in _DISCRETE and "q" not in cfg:
        return [f"{field}: {section}.{key} takes whole numbers; use integer min/max "
                f"(int_uniform) or values: [...]"]
    candidates = {k: cfg[k] for k in ("min", "max", "value") if k in cfg}
    if kind in ("param_loguniform", "param_inv_loguniform"):
        candidates = {k: math.exp(v) for k, v in candidates.items() if k != "value"}
    candidates.update({f"values[{i}]": v for i, v in enumerate(cfg.get("values") or [])})
    problems = []
    for where, value in candidates.items():
        try:
            model.model_validate({key: value})
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            problems.append(f"{field}.{where}: {value!r} is not a valid {section}.{key} "
                            f"({msg}); " + ("remove or replace that value"
                                            if where.startswith("values[") else
                                            "narrow the range"))
    return problems


def _section_model(section: str) -> type[BaseModel]:
    from kdctl.spec import DistillSpec, OptimizerSpec, ScheduleSpec  # noqa: PLC0415

    return {"optimizer": OptimizerSpec, "distill": DistillSpec,
            "schedule": ScheduleSpec}[section]


def _grid_problems(name: str, cfg: dict[str, Any]) -> list[str]:
    kind, _ = _engine_kind(name, cfg)
    if kind in _GRID:
        return []
    return [f"sweep.parameters.{name}: grid search needs discrete values; use "
            "values: [...] (without probabilities), integer min/max, or q_uniform"]


def hyperband_bands(early_terminate: dict[str, Any], up_to: int) -> list[int]:
    """The validations at which hyperband compares trials (the engine's own rule), up to
    `up_to` validations."""
    eta = early_terminate.get("eta", 3)
    if "max_iter" in early_terminate:
        band, bands = float(early_terminate["max_iter"]), []
        for _ in range(int(early_terminate.get("s", 0))):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return sorted(b for b in bands if b <= up_to)
    band, bands = float(early_terminate.get("min_iter", 1)), []
    while band <= up_to:
        bands.append(int(band))
        band *= eta
    return bands


def validations_per_trial(sweep: dict[str, Any], schedule: Any) -> int:
    """Validations of the longest trial: epochs (the largest swept value, when epochs is
    swept) / val_interval."""
    epochs_cfg = (sweep.get("parameters") or {}).get("epochs")
    if not isinstance(epochs_cfg, dict):
        return schedule.epochs // schedule.val_interval
    candidates = [epochs_cfg.get("max"), epochs_cfg.get("value"),
                  *(epochs_cfg.get("values") or [])]
    swept = [int(e) for e in candidates if isinstance(e, (int, float))]
    return max(swept or [schedule.epochs]) // schedule.val_interval


def _hyperband_problems(sweep: dict[str, Any], schedule: Any) -> list[str]:
    et = sweep["early_terminate"]
    if et.get("type") != "hyperband":
        return []  # the schema reports it
    n_val = validations_per_trial(sweep, schedule)
    if hyperband_bands(et, n_val):
        return []
    return [f"sweep.early_terminate: hyperband first compares trials after "
            f"{et.get('min_iter', et.get('max_iter'))} validations, but a trial validates only "
            f"{n_val} times (schedule.epochs / schedule.val_interval), so no trial would "
            "ever stop early; lower min_iter (or max_iter), or validate more often"]
