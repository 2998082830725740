"""The KD-gain report: did distillation help, by how much, and is it more than noise?

`write_report` turns the evaluations of `kdctl eval` into WORK_DIR/report/: report.json
(all numbers, checkpoint hashes, spec, package versions), report.md, a self-contained
report.html and plots/*.png, and logs them to W&B when tracking is on.

- compute: mean and spread over seeds, KD gain, gap closed, warnings, verdict
- summary: report.json's content
- plots: matplotlib figures
- tables: the tables shared by terminal, markdown and HTML
- render: the documents
- sweeps: reading a sweep's sweep.json
- wandb_log: W&B logging of the report
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kdctl.evaluate import ModelEval
from kdctl.report import plots
from kdctl.report.render import write_documents
from kdctl.report.summary import build_report
from kdctl.runs import ROLE_TITLES
from kdctl.spec import Spec



def _label(m: ModelEval, results: dict[str, list[ModelEval]]) -> str:
    several = len(results[m.role]) > 1
    return f"{ROLE_TITLES[m.role]} seed {m.seed}" if several else ROLE_TITLES[m.role]


def draw_plots(report: dict[str, Any], results: dict[str, list[ModelEval]],
               plot_dir: Path) -> dict[str, str]:
    """Title -> path relative to the report folder of each plot drawn."""
    models = [m for runs in results.values() for m in runs]
    histories = [(m.role, _label(m, results), m.train_log) for m in models]
    drawn = {
        "Validation mAP over epochs": plots.val_map_plot(histories, plot_dir / "val_map.png"),
        "Training losses: task vs KD": plots.loss_plot(histories, plot_dir / "losses.png"),
        "AP by object size": plots.size_plot(report["splits"]["val"]["groups"],
                                             plot_dir / "ap_by_size.png"),
        "Precision-recall at IoU 0.5": plots.pr_plot(
            [(m.role, _label(m, results), m.pr_curves.get("val")) for m in models],
            plot_dir / "pr_curve.png"),
    }
    for sweep in report["sweeps"]:
        drawn[f"Sweep {sweep['name']}: {sweep['metric']} vs parameters"] = plots.sweep_plot(
            sweep["trials"], sweep["metric"], plot_dir / f"sweep_{sweep['name']}.png")
    return {title: str(path.relative_to(plot_dir.parent)) for title, path in drawn.items()}


def write_report(spec: Spec, results: dict[str, list[ModelEval]], report_dir: Path,
                 eval_dir: Path) -> dict[str, Any]:
    """Write the report folder (replacing the previous report) and return its numbers."""
    from kdctl.report.wandb_log import log_report  # noqa: PLC0415

    report = build_report(spec, results, eval_dir)
    if (report_dir / "plots").is_dir():
        shutil.rmtree(report_dir / "plots")  # no stale plots of an earlier sweep
    report["plots"] = draw_plots(report, results, report_dir / "plots")
    paths = write_documents(report, report_dir)
    shutil.copy2(paths["json"], eval_dir / "report.json")  # the history of evaluations

    report["wandb"] = log_report(spec, report, report_dir)
    report["paths"] = {k: str(v) for k, v in paths.items()}
    report["path"] = str(paths["json"])
    return report
