"""The report's numbers: per-role mean and spread over seeds, the KD gain, the share of
the teacher-student gap that distillation closed, and the warnings.

Everything here works on plain numbers, so it is tested without training anything.
`gap closed` is (S_kd - S) / (T - S) on the role means: 0 is no help, 1 is a student as
good as its teacher, above 1 a student better than its teacher. It is undefined (None)
when the teacher is not better than the plain student.
"""

from __future__ import annotations

import statistics
from typing import Any

PRIMARY = "bbox_mAP"  # warnings and the verdict are about this metric
_EPS = 1e-9


def stats(values: list[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (None below 2 values) and count, Nones dropped."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(kept) if len(kept) > 1 else None
    return {"mean": statistics.fmean(kept), "std": std, "n": len(kept), "values": kept}


def role_stats(per_role: dict[str, list[dict[str, float | None]]], metrics: tuple[str, ...]
               ) -> dict[str, dict[str, dict[str, Any]]]:
    """role -> metric -> stats over that role's runs (one per seed)."""
    return {role: {m: stats([run.get(m) for run in runs]) for m in metrics}
            for role, runs in per_role.items()}


def gap_closed(teacher: float | None, student: float | None,
               distilled: float | None) -> float | None:
    if teacher is None or student is None or distilled is None or teacher - student < _EPS:
        return None
    return (distilled - student) / (teacher - student)


def gain_row(groups: dict[str, dict[str, dict[str, Any]]], metric: str) -> dict[str, Any]:
    """Distilled minus plain student for one metric, with the seed spread it is judged by:
    the larger of the two groups' standard deviations (None with one seed each)."""
    def mean(role: str) -> float | None:
        return groups.get(role, {}).get(metric, {}).get("mean")

    def std(role: str) -> float | None:
        return groups.get(role, {}).get(metric, {}).get("std")

    t, s, s_kd = mean("teacher"), mean("student"), mean("distill")
    gain = s_kd - s if s is not None and s_kd is not None else None
    spreads = [x for x in (std("student"), std("distill")) if x is not None]
    spread = max(spreads) if spreads else None
    within = None if gain is None or spread is None else abs(gain) <= spread
    return {"teacher": t, "student": s, "distilled": s_kd, "gain": gain,
            "gap_closed": gap_closed(t, s, s_kd), "spread": spread,
            "within_spread": within}


def kd_gain(groups: dict[str, dict[str, dict[str, Any]]], metrics: tuple[str, ...]
            ) -> dict[str, dict[str, Any]]:
    if "student" not in groups or "distill" not in groups:
        return {}
    return {m: gain_row(groups, m) for m in metrics}


def verdict(gain: dict[str, dict[str, Any]], groups: dict[str, Any],
            metric: str = PRIMARY) -> str:
    """One plain sentence answering: did distillation help, and is it more than noise?"""
    if metric not in gain or gain[metric]["gain"] is None:
        return "no KD gain: evaluate a plain student and a distilled student together"
    row = gain[metric]
    n_s, n_kd = groups["student"][metric]["n"], groups["distill"][metric]["n"]
    text = f"distillation changed {metric} by {row['gain']:+.3f}"
    if row["gap_closed"] is not None:
        text += f", closing {row['gap_closed']:.0%} of the teacher-student gap"
    if row["spread"] is None:
        return (text + f"; with {n_s} plain and {n_kd} distilled run(s) the seed spread "
                "is unknown: train 3 seeds of each (runtime.seed) and run "
                "`kdctl eval --seeds`")
    if row["within_spread"]:
        return (text + f"; this is within the seed spread (±{row['spread']:.3f} over "
                f"{n_s}/{n_kd} seeds): not distinguishable from noise")
    return text + f"; this exceeds the seed spread (±{row['spread']:.3f})"


def warnings(groups: dict[str, dict[str, dict[str, Any]]], metric: str = PRIMARY
             ) -> list[str]:
    """Results that make the KD gain meaningless or suspicious."""
    def mean(role: str) -> float | None:
        return groups.get(role, {}).get(metric, {}).get("mean")

    t, s, s_kd = mean("teacher"), mean("student"), mean("distill")
    found = []
    if t is not None and s is not None and t - s < _EPS:
        found.append(f"the teacher ({metric} {t:.3f}) is not better than the plain student "
                     f"({s:.3f}): distillation from it cannot help; train the teacher "
                     "longer or pick a larger one")
    if t is not None and s_kd is not None and s_kd > t + _EPS:
        found.append(f"the distilled student ({metric} {s_kd:.3f}) beats its teacher "
                     f"({t:.3f}): check that the teacher is trained and that both were "
                     "evaluated on the same data")
    return found


def summarize(per_role: dict[str, list[dict[str, float | None]]],
              metrics: tuple[str, ...], prefix: str = "val/") -> dict[str, Any]:
    """Groups, gain, warnings and verdict of one split; `per_role` holds each run's
    metrics keyed `<prefix><metric>`."""
    plain = {role: [{m: run.get(prefix + m) for m in metrics} for run in runs]
             for role, runs in per_role.items()}
    groups = role_stats(plain, metrics)
    gain = kd_gain(groups, metrics)
    return {"groups": groups, "kd_gain": gain, "warnings": warnings(groups),
            "verdict": verdict(gain, groups)}
