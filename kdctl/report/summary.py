"""Assemble report.json's content: every measured number, the gain per split, a check of
each evaluation against its training log, the spec and the package versions."""

from __future__ import annotations

import platform
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdctl import __version__
from kdctl.doctor import installed_versions
from kdctl.coco_eval import METRICS
from kdctl.evaluate import ModelEval
from kdctl.report.compute import summarize
from kdctl.report.sweeps import find_sweeps, read_sweep
from kdctl.spec import Spec

PACKAGES = ("torch", "mmcv", "mmdet", "mmengine", "pycocotools", "numpy", "matplotlib",
            "wandb")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(),
                                       "kdctl": __version__}
    versions.update(installed_versions(PACKAGES))
    return versions


def _checkpoint_epoch(checkpoint: str) -> int | None:
    match = re.fullmatch(r"epoch_(\d+)\.pth", Path(checkpoint).name)
    return int(match.group(1)) if match else None


def log_check(model: ModelEval) -> dict[str, Any]:
    """The evaluated val mAP next to the training log's for the same epoch; comparable
    only when the checkpoint is the one evaluated last during training."""
    final = model.train_log.get("final", {})
    epoch = _checkpoint_epoch(model.checkpoint)
    log_map = final.get("val/bbox_mAP")
    eval_map = model.metric("bbox_mAP")
    comparable = log_map is not None and epoch is not None and final.get("epoch") == epoch
    match = abs(log_map - (eval_map or 0.0)) < 5e-4 if comparable else None
    return {"run_name": model.run_name, "checkpoint": Path(model.checkpoint).name,
            "log_epoch": final.get("epoch"), "log_mAP": log_map, "eval_mAP": eval_map,
            "match": match}


def sweeps(work_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in find_sweeps(work_dir):
        trials, metric = read_sweep(path)
        if any(t["metric"] is not None for t in trials):  # at least one trial scored
            found.append({"path": str(path), "name": path.parent.name, "metric": metric,
                          "trials": trials})
    return found


def build_report(spec: Spec, results: dict[str, list[ModelEval]],
                 eval_dir: Path) -> dict[str, Any]:
    models = [m for runs in results.values() for m in runs]
    split_names = [k.split("/")[0] for k in models[0].metrics if k.endswith("/bbox_mAP")]
    per_role = {role: [m.metrics for m in runs] for role, runs in results.items()}
    split_summaries = {s: summarize(per_role, METRICS, prefix=f"{s}/") for s in split_names}
    checks = [log_check(m) for m in models]
    warnings = list(split_summaries["val"]["warnings"])
    warnings += [f"{c['run_name']}: val mAP {c['eval_mAP']} here but {c['log_mAP']} in its "
                 "training log for the same checkpoint; was it trained on another val set?"
                 for c in checks if c["match"] is False]
    return {
        "kdctl_version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "spec_name": spec.name,
        "verdict": split_summaries["val"]["verdict"],
        "warnings": warnings,
        "metrics": list(METRICS),
        "classes": list(spec.data.classes),
        "image_size": list(spec.data.image_size),
        "device": models[0].cost["latency_device"],
        "splits": split_summaries,
        "models": [asdict(m) for m in models],
        "log_check": checks,
        "sweeps": sweeps(Path(spec.runtime.work_dir)),
        "spec": spec.model_dump(mode="json"),
        "packages": package_versions(),
        "eval_dir": str(eval_dir),
    }
