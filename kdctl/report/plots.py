"""The report's PNG plots, drawn with matplotlib's Agg backend (no display needed).

Every plot has a title, axis labels with units and a legend; each role keeps one colour
across plots (teacher blue, plain student orange, distilled student green).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kdctl.runs import ROLE_TITLES  # noqa: E402

COLORS = {"teacher": "tab:blue", "student": "tab:orange", "distill": "tab:green"}
SIZES = (("bbox_mAP_s", "small"), ("bbox_mAP_m", "medium"), ("bbox_mAP_l", "large"))
_DPI = 100

# a run as the plots see it: (role, label, metrics.json contents)
History = tuple[str, str, dict[str, Any]]


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def val_map_plot(histories: Iterable[History], path: Path) -> Path:
    """Validation mAP after each evaluated epoch, one line per run."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for role, label, log in histories:
        rows = [r for r in log.get("val", []) if "val/bbox_mAP" in r]
        ax.plot([r["epoch"] for r in rows], [r["val/bbox_mAP"] for r in rows], marker="o",
                color=COLORS[role], label=label)
    ax.set(title="Validation mAP over training", xlabel="epoch",
           ylabel="COCO bbox mAP@[.5:.95] (0-1)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def task_and_kd_loss(row: dict[str, float]) -> tuple[float, float | None]:
    """(task loss, KD loss) of one metrics.json train row; KD is None for a plain run."""
    kd = [v for k, v in row.items() if k.startswith("loss_kd")]
    task = sum(v for k, v in row.items() if k.startswith("loss_") and not
               k.startswith("loss_kd"))
    return task, (sum(kd) if kd else None)


def loss_plot(histories: Iterable[History], path: Path) -> Path:
    """Task loss (solid) and KD loss (dashed) against the training iteration."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for role, label, log in histories:
        rows = log.get("train", [])
        iters = [r["iter"] for r in rows]
        pairs = [task_and_kd_loss(r) for r in rows]
        marker = "o" if len(rows) < 20 else None  # a short run is a few points
        ax.plot(iters, [p[0] for p in pairs], color=COLORS[role], marker=marker,
                label=f"{label}: task")
        if any(p[1] is not None for p in pairs):
            ax.plot(iters, [p[1] for p in pairs], color=COLORS[role], linestyle="--",
                    marker=marker, label=f"{label}: KD")
    ax.set(title="Training losses: task (detection) vs knowledge distillation",
           xlabel="iteration", ylabel="loss (mean over 5 iterations)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def size_plot(groups: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """AP by object size, bars at each role's mean with the seed spread as error bars."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(len(groups), 1)
    for i, (role, metrics) in enumerate(groups.items()):
        means = [metrics[k]["mean"] for k, _ in SIZES]
        stds = [metrics[k]["std"] or 0.0 for k, _ in SIZES]
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(SIZES))]
        ax.bar(xs, [m or 0.0 for m in means], width, yerr=stds, capsize=3,
               color=COLORS[role], label=ROLE_TITLES[role])
        for x, m in zip(xs, means):
            if m is None:
                ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize="small")
    ax.set_xticks(range(len(SIZES)), [f"{name}" for _, name in SIZES])
    ax.set(title="AP by object size (COCO areas: small < 32², medium < 96², large above, px²)",
           xlabel="object size", ylabel="COCO bbox AP@[.5:.95] (0-1)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def pr_plot(curves: Iterable[tuple[str, str, dict[str, list[float]] | None]],
            path: Path) -> Path:
    """Precision against recall at IoU 0.5, one curve per run."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for role, label, curve in curves:
        if curve is None:
            ax.plot([], [], color=COLORS[role], label=f"{label} (no detections)")
            continue
        ax.plot(curve["recall"], curve["precision"], color=COLORS[role], label=label)
    ax.set(title="Precision-recall at IoU 0.5 (val, mean over classes)",
           xlabel="recall (0-1)", ylabel="precision (0-1)", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def sweep_plot(trials: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """The sweep's metric against each swept parameter, one panel per parameter."""
    params = sorted({p for t in trials for p in t["params"]})
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 4), squeeze=False)
    for ax, name in zip(axes[0], params):
        points = [(t["params"][name], t["metric"]) for t in trials
                  if name in t["params"] and t["metric"] is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=COLORS["distill"],
                   label=f"trial ({len(points)})")
        numeric = all(isinstance(p[0], (int, float)) for p in points)
        if numeric and points and min(p[0] for p in points) > 0 and (
                max(p[0] for p in points) / min(p[0] for p in points) >= 100):
            ax.set_xscale("log")
        ax.set(title=f"{metric} vs {name}", xlabel=f"{name} (swept value)",
               ylabel=f"{metric} (0-1)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Sweep: best metric of each trial")
    return _save(fig, path)
