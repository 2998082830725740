"""Log the report's tables and plots to Weights & Biases.

The report goes to a new W&B run in the experiment's group with job_type "report" (not
into the training runs: resuming three finished runs by id would be fragile). With no key
configured it is written offline under the report folder, to upload with `wandb sync`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdctl.report.tables import all_tables
from kdctl.spec import Spec
from kdctl.tracking import wandb_mode


def _summary(report: dict[str, Any]) -> dict[str, float]:
    values = {}
    for metric, row in report["splits"]["val"]["kd_gain"].items():
        for key in ("gain", "gap_closed"):
            if row[key] is not None:
                values[f"distill/{key}/{metric}"] = row[key]
    return values


def log_report(spec: Spec, report: dict[str, Any], report_dir: Path) -> str | None:
    """Log to W&B per the spec's tracking mode; the offline run folder (to sync) or the
    online run's URL, None when tracking is disabled."""
    mode, _ = wandb_mode(spec)
    if mode == "disabled":
        return None
    import wandb  # noqa: PLC0415

    run = wandb.init(project=spec.tracking.project, entity=spec.tracking.entity,
                     group=spec.name, job_type="report", name=f"report-{spec.name}",
                     dir=str(report_dir), mode=mode, reinit="finish_previous",
                     config={"spec": report["spec"], "packages": report["packages"]})
    try:
        logged: dict[str, Any] = {}
        for i, (title, columns, rows) in enumerate(all_tables(report)):
            logged[f"report/table_{i}"] = wandb.Table(columns=columns, data=rows)
        for title, rel in report["plots"].items():
            logged[f"report/{Path(rel).stem}"] = wandb.Image(str(report_dir / rel),
                                                             caption=title)
        run.log(logged)
        run.summary.update(_summary(report))
        where = run.url if mode == "online" else str(Path(run.dir).parent)
    finally:
        run.finish()
    return where
