"""The report's tables as (title, columns, rows) of strings: one source for the terminal
(rich), report.md and report.html, so the three always show the same numbers."""

from __future__ import annotations

from typing import Any

from kdctl.runs import ROLE_TITLES

Table = tuple[str, list[str], list[list[str]]]
SHORT = {"bbox_mAP": "mAP", "bbox_mAP_50": "mAP_50", "bbox_mAP_75": "mAP_75",
         "bbox_mAP_s": "mAP_s", "bbox_mAP_m": "mAP_m", "bbox_mAP_l": "mAP_l",
         "bbox_AR@100": "AR@100"}


def num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def mean_std(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    return num(stat["mean"]) + (f" ± {stat['std']:.3f}" if stat["std"] is not None else "")


def cost_table(report: dict[str, Any]) -> Table:
    """One row per evaluated run: size, FLOPs and latency."""
    columns = ["model", "run", "seed", "params (M)", "GFLOPs", "latency (ms/image)"]
    rows = []
    for m in report["models"]:
        cost = m["cost"]
        flops = "-" if cost["flops"] is None else f"{cost['flops'] / 1e9:.2f}"
        rows.append([ROLE_TITLES[m["role"]], m["run_name"], str(m["seed"]),
                     f"{cost['params'] / 1e6:.2f}", flops, f"{cost['latency_ms']:.1f}"])
    width, height = report["image_size"]
    return (f"Model cost: FLOPs at {width}x{height}, latency on {report['device']}",
            columns, rows)


def metrics_table(report: dict[str, Any], split: str = "val") -> Table:
    """One row per evaluated run: its COCO metrics."""
    metrics = report["metrics"]
    rows = [[ROLE_TITLES[m["role"]], str(m["seed"]),
             *(num(m["metrics"].get(f"{split}/{k}")) for k in metrics)]
            for m in report["models"]]
    return (f"COCO bbox metrics on the {split} set",
            ["model", "seed", *(SHORT[k] for k in metrics)], rows)


def gain_table(report: dict[str, Any], split: str = "val") -> Table:
    """Per metric: role means (± seed std), the KD gain and the gap closed."""
    summary = report["splits"][split]
    groups, gain = summary["groups"], summary["kd_gain"]
    columns = ["metric", "teacher", "plain student", "distilled student", "KD gain",
               "gap closed", "within spread"]
    rows = []
    for metric in report["metrics"]:
        row = gain.get(metric, {})
        closed = row.get("gap_closed")
        within = row.get("within_spread")
        rows.append([
            SHORT[metric],
            *(mean_std(groups[r][metric]) if r in groups else "-"
              for r in ("teacher", "student", "distill")),
            num(row.get("gain"), sign=True),
            "-" if closed is None else f"{closed:.0%}",
            "n/a" if within is None else ("yes" if within else "no")])
    return f"KD gain on the {split} set (mean ± std over seeds)", columns, rows


def per_class_table(report: dict[str, Any], split: str = "val") -> Table:
    classes = report["classes"]
    rows = [[ROLE_TITLES[m["role"]], str(m["seed"]),
             *(num(m["per_class"].get(split, {}).get(c)) for c in classes)]
            for m in report["models"]]
    return f"AP@[.5:.95] per class ({split})", ["model", "seed", *classes], rows


def log_check_table(report: dict[str, Any]) -> Table:
    rows = [[c["run_name"], c["checkpoint"], num(c["log_mAP"]), num(c["eval_mAP"]),
             {True: "yes", False: "NO", None: "not comparable"}[c["match"]]]
            for c in report["log_check"]]
    return ("Val mAP: this evaluation vs the training log",
            ["run", "checkpoint", "training log", "kdctl eval", "match"], rows)


def all_tables(report: dict[str, Any]) -> list[Table]:
    tables = [cost_table(report)]
    for split in report["splits"]:
        tables.append(metrics_table(report, split))
        if report["splits"][split]["kd_gain"]:
            tables.append(gain_table(report, split))
        tables.append(per_class_table(report, split))
    tables.append(log_check_table(report))
    return tables
