"""Evaluate teacher, plain student and distilled student with mmdet's COCO metric.

A distilled student is evaluated with the *plain student* config, loaded strictly: that
both measures it and proves its checkpoint carries no teacher keys.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json, atomic_write_text
from kdctl.metrics import complete
from kdctl.render import render_config
from kdctl.runs import ROLE_TITLES, RunInfo, find_runs, last_checkpoint, load_run
from kdctl.spec import Spec

METRICS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75")


@dataclass
class ModelEval:
    role: str
    run_name: str
    checkpoint: str
    params: int
    metrics: dict[str, float]

    def metric(self, name: str) -> float:
        return self.metrics[f"val/{name}"]


def _config_role(role: str) -> str:
    return "student" if role == "distill" else role


def evaluate_checkpoint(spec: Spec, role: str, ckpt: Path, out_dir: Path) -> tuple[dict, int]:
    """COCO metrics of one checkpoint on the val set, and its parameter count."""
    from mmengine.config import Config  # noqa: PLC0415

    from kdctl.models.kd_detector import load_strict  # noqa: PLC0415
    from kdctl.train import build_quiet_runner, quiet_stdout, resolve_device  # noqa: PLC0415

    resolve_device(spec.runtime.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / f"{_config_role(role)}.py"
    atomic_write_text(config_file, render_config(spec, _config_role(role)))
    cfg = Config.fromfile(str(config_file))
    cfg.work_dir = str(out_dir)
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    runner = build_quiet_runner(cfg, verbose=False)
    load_strict(runner.model, ckpt, field=f"{role} checkpoint")
    with quiet_stdout(verbose=False):
        metrics = runner.test()
    params = sum(p.numel() for p in runner.model.parameters())
    return complete(metrics), params


def latest_runs(spec: Spec) -> dict[str, RunInfo]:
    """The newest finished run of each role in the spec's work_dir."""
    found: dict[str, RunInfo] = {}
    for run in find_runs(Path(spec.runtime.work_dir)):
        if run.state == "finished" and run.sweep_id is None:
            found[run.role] = run
    return found


def collect(spec: Spec, run_dirs: list[Path] | None) -> dict[str, RunInfo]:
    if not run_dirs:
        runs = latest_runs(spec)
    else:
        runs = {}
        for d in run_dirs:
            run = load_run(d)
            runs[run.role] = run
    if not runs:
        raise KdctlError(f"no finished runs in {spec.runtime.work_dir}; train some with "
                         "`kdctl train-teacher`, `train-student` and `distill`, or pass run "
                         "folders")
    return runs


def evaluate(spec: Spec, run_dirs: list[Path] | None = None,
             console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    runs = collect(spec, run_dirs)
    out_root = Path(spec.runtime.work_dir) / "eval" / time.strftime("%Y%m%d_%H%M%S")
    results: dict[str, ModelEval] = {}
    for role in ("teacher", "student", "distill"):
        run = runs.get(role)
        if run is None:
            continue
        ckpt = last_checkpoint(Path(run.run_dir))
        if ckpt is None:
            raise KdctlError(f"{run.run_dir} has no checkpoint", field=f"{role} run")
        console.print(f"evaluating {ROLE_TITLES[role]} {run.run_name} ({ckpt.name})")
        metrics, params = evaluate_checkpoint(spec, role, ckpt, out_root / role)
        results[role] = ModelEval(role, run.run_name, str(ckpt), params, metrics)

    summary = {"models": {r: asdict(e) for r, e in results.items()},
               "kd_gain": kd_gain(results)}
    atomic_write_json(out_root / "eval.json", summary)
    summary["path"] = str(out_root / "eval.json")
    return summary


def kd_gain(results: dict[str, ModelEval]) -> dict[str, dict[str, float | None]]:
    """Distilled minus plain student per metric, and the share of the teacher gap closed."""
    if "student" not in results or "distill" not in results:
        return {}
    gain: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        s = results["student"].metric(name)
        s_kd = results["distill"].metric(name)
        t = results["teacher"].metric(name) if "teacher" in results else None
        closed = (s_kd - s) / (t - s) if t is not None and t - s > 1e-9 else None
        gain[name] = {"gain": s_kd - s, "gap_closed": closed}
    return gain


def table_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for role, e in summary["models"].items():
        m = e["metrics"]
        rows.append([ROLE_TITLES[role], e["run_name"], f"{e['params'] / 1e6:.2f}M",
                     *(m.get(f"val/{k}") for k in METRICS)])
    gain = summary.get("kd_gain")
    if gain:
        rows.append(["KD gain (distilled - plain)", "", "",
                     *(f"{gain[k]['gain']:+.3f}" for k in METRICS)])
        rows.append(["teacher gap closed", "", "",
                     *(f"{gain[k]['gap_closed']:.0%}" if gain[k]["gap_closed"] is not None
                       else "-" for k in METRICS)])
    return rows
