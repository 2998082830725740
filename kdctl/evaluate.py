"""Evaluate teacher, plain student and distilled student(s), then write the KD-gain report.

Each run's last checkpoint is measured on the val set (and the test set when the spec has
one) with mmdet's COCO metric, plus its parameters, FLOPs and latency. A distilled
student is evaluated with the *plain student* config, loaded strictly: that both measures
it and proves its checkpoint carries no teacher keys.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from kdctl.coco_eval import METRICS, evaluator_cfg, pr_curve, split_metrics
from kdctl.errors import KdctlError
from kdctl.io import atomic_write_text, file_sha256
from kdctl.render import render_config
from kdctl.runs import ROLE_TITLES, RunInfo, find_runs, last_checkpoint, load_run, read_metrics
from kdctl.spec import Spec

ROLES = ("teacher", "student", "distill")
__all__ = ["METRICS", "ModelEval", "evaluate", "collect"]


@dataclass
class ModelEval:
    """Everything measured for one checkpoint of one run."""

    role: str
    run_name: str
    run_dir: str
    seed: int
    checkpoint: str
    sha256: str
    metrics: dict[str, float | None]  # "<split>/bbox_mAP", ...
    per_class: dict[str, dict[str, float | None]]  # split -> class -> AP
    pr_curves: dict[str, dict[str, list[float]] | None]  # split -> recall/precision
    cost: dict[str, Any]  # kdctl.model_cost.ModelCost as a dict
    train_log: dict[str, Any] = field(default_factory=dict)  # metrics.json of the run

    def metric(self, name: str, split: str = "val") -> float | None:
        return self.metrics.get(f"{split}/{name}")


@dataclass
class Target:
    """A run and the checkpoint of it to evaluate."""

    run: RunInfo
    checkpoint: Path


def splits(spec: Spec) -> dict[str, tuple[str, str]]:
    """Split name -> (annotation file, image folder)."""
    found = {"val": (spec.data.val_ann, spec.data.val_images)}
    if spec.data.test_ann and spec.data.test_images:
        found["test"] = (spec.data.test_ann, spec.data.test_images)
    return found


def _config_role(role: str) -> str:
    return "student" if role == "distill" else role


def _dataloader_cfg(cfg: Any, ann_file: str, images: str) -> dict[str, Any]:
    loader = cfg.val_dataloader.copy()
    loader["dataset"] = {**loader["dataset"], "ann_file": ann_file,
                         "data_prefix": dict(img=images.rstrip("/") + "/")}
    return loader


def build_eval_runner(spec: Spec, role: str, ckpt: Path, out_dir: Path) -> Any:
    """MMEngine's Runner on the plain config of `role`, with `ckpt` loaded strictly."""
    from mmengine.config import Config  # noqa: PLC0415

    from kdctl.models.kd_detector import load_strict  # noqa: PLC0415
    from kdctl.train import build_quiet_runner, resolve_device  # noqa: PLC0415

    resolve_device(spec.runtime.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / f"{_config_role(role)}.py"
    atomic_write_text(config_file, render_config(spec, _config_role(role)))
    cfg = Config.fromfile(str(config_file))
    cfg.work_dir = str(out_dir)
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    runner = build_quiet_runner(cfg, verbose=False)
    load_strict(runner.model, ckpt, field=f"{role} checkpoint")
    return runner


def evaluate_checkpoint(spec: Spec, target: Target, out_dir: Path) -> ModelEval:
    """COCO metrics on every split, the PR curve, and the model's cost."""
    from mmengine.runner import TestLoop  # noqa: PLC0415

    from kdctl.model_cost import model_cost  # noqa: PLC0415
    from kdctl.train import quiet_stdout  # noqa: PLC0415

    run = target.run
    runner = build_eval_runner(spec, run.role, target.checkpoint, out_dir)
    metrics: dict[str, float | None] = {}
    per_class, curves = {}, {}
    runner.call_hook("before_run")  # what Runner.test does; the logger hook needs it
    for split, (ann_file, images) in splits(spec).items():
        with quiet_stdout(verbose=False):
            loop = TestLoop(runner, _dataloader_cfg(runner.cfg, ann_file, images),
                            evaluator_cfg(split, ann_file, out_dir / split))
            raw = loop.run()
        metrics_split, per_class[split] = split_metrics(raw, split, spec.data.classes)
        metrics.update(metrics_split)
        curves[split] = pr_curve(ann_file, out_dir / f"{split}.bbox.json")
        if split == "val":
            batch = next(iter(loop.dataloader))
    runner.call_hook("after_run")

    cost = model_cost(runner.model, batch, tuple(spec.data.image_size))
    return ModelEval(run.role, run.run_name, run.run_dir, run.seed, str(target.checkpoint),
                     file_sha256(target.checkpoint), metrics, per_class, curves, asdict(cost),
                     read_metrics(Path(run.run_dir)))


# ---------------------------------------------------------------------------------------
# which runs


def latest_runs(spec: Spec, per_seed: bool = False) -> list[RunInfo]:
    """The newest finished run of each role (of each role and seed with `per_seed`),
    sweep trials excluded."""
    found: dict[tuple[str, int | None], RunInfo] = {}
    for run in find_runs(Path(spec.runtime.work_dir)):
        if run.state == "finished" and run.sweep_id is None:
            found[(run.role, run.seed if per_seed else None)] = run
    return list(found.values())


def _target(path: Path) -> Target:
    """A run folder (its last checkpoint) or a checkpoint file inside a run folder."""
    if path.is_file():
        if not (path.parent / "run.json").is_file():
            raise KdctlError(f"{path} is not inside a kdctl run folder (no run.json next to "
                             "it, which says whether it is a teacher or a student); pass "
                             "its run folder", field="eval")
        return Target(load_run(path.parent), path)
    run = load_run(path)
    ckpt = last_checkpoint(path)
    if ckpt is None:
        raise KdctlError(f"{path} has no checkpoint; is its training finished?",
                         field=f"{run.role} run")
    return Target(run, ckpt)


def collect(spec: Spec, paths: list[Path] | None, seeds: bool = False
            ) -> dict[str, list[Target]]:
    """Runs to evaluate grouped by role: the given run folders or checkpoints, else the
    newest finished run of each role (every seed's newest with `seeds`)."""
    if paths:
        targets = [_target(Path(p)) for p in paths]
    else:
        targets = [_target(Path(r.run_dir)) for r in latest_runs(spec, per_seed=seeds)]
    if not targets:
        raise KdctlError(f"no finished runs in {spec.runtime.work_dir}; train some with "
                         "`kdctl train-teacher`, `train-student` and `distill`, or pass run "
                         "folders", field="eval")
    grouped: dict[str, list[Target]] = {}
    for t in sorted(targets, key=lambda t: (ROLES.index(t.run.role), t.run.seed)):
        grouped.setdefault(t.run.role, []).append(t)
    return grouped


def evaluate(spec: Spec, paths: list[Path] | None = None, seeds: bool = False,
             console: Console | None = None) -> dict[str, Any]:
    """Evaluate the runs, write WORK_DIR/report/ and return the report's numbers."""
    from kdctl.report import write_report  # noqa: PLC0415

    console = console or Console(stderr=True)
    grouped = collect(spec, paths, seeds)
    eval_dir = Path(spec.runtime.work_dir) / "eval" / time.strftime("%Y%m%d_%H%M%S")
    results: dict[str, list[ModelEval]] = {}
    for role, targets in grouped.items():
        for target in targets:
            run = target.run
            console.print(f"evaluating {ROLE_TITLES[role]} {run.run_name} seed {run.seed} "
                          f"({target.checkpoint.name})")
            results.setdefault(role, []).append(
                evaluate_checkpoint(spec, target, eval_dir / run.run_name))
    return write_report(spec, results, Path(spec.runtime.work_dir) / "report", eval_dir)
