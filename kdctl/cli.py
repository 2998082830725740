"""The `kdctl` command line. Commands parse their arguments and hand off; nothing heavy
(torch, mmdet) is imported until a command needs it, so `kdctl --help` is instant."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from kdctl.console import console, print_error, setup_logging, table
from kdctl.errors import KdctlError

app = typer.Typer(
    help="Knowledge distillation experiments for MMDetection object detectors.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

SpecOpt = Annotated[Path, typer.Option("--spec", "-s", help="experiment spec (YAML)")]
ResumeOpt = Annotated[bool, typer.Option(help="continue the newest interrupted run of this "
                                              "kind from its last checkpoint")]
FromOpt = Annotated[Optional[Path], typer.Option(
    "--from", help="with --resume: the run folder or checkpoint to continue")]
DEFAULT_SPEC = Path("kdctl.yaml")
_state = {"verbose": False}


@app.callback()
def _main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="show MMEngine's and W&B's own output and debug logs")] = False
          ) -> None:
    _state["verbose"] = verbose
    setup_logging(verbose)


def _load(spec: Path):  # noqa: ANN202 (kdctl.spec is imported lazily)
    from kdctl.spec import load_spec  # noqa: PLC0415

    return load_spec(spec)


def _override(spec_obj, updates: dict):  # noqa: ANN001, ANN202
    from kdctl.spec import with_overrides  # noqa: PLC0415

    return with_overrides(spec_obj, {k: v for k, v in updates.items() if v is not None})


@app.command()
def init(path: Annotated[Path, typer.Argument(help="where to write the spec")] = DEFAULT_SPEC,
         force: Annotated[bool, typer.Option(help="replace an existing file (a backup "
                                                   "is kept)")] = False) -> None:
    """Write a commented starter spec."""
    from kdctl.starter import write_starter  # noqa: PLC0415

    backup = write_starter(path, force)
    if backup:
        console.print(f"kept the previous file as {backup}")
    console.print(f"wrote {path}; edit it, then run `kdctl validate --spec {path}`")


@app.command()
def validate(spec: SpecOpt = DEFAULT_SPEC,
             data: Annotated[bool, typer.Option(help="also check annotations and image "
                                                     "files")] = True,
             teacher: Annotated[bool, typer.Option(
                 help="also load teacher.checkpoint into the teacher the spec describes "
                      "(imports torch and mmdet)")] = True) -> None:
    """Check a spec (its data and its teacher checkpoint) and print a summary."""
    from kdctl.preflight import (  # noqa: PLC0415
        check_data, check_teacher_checkpoint, spec_warnings)
    from kdctl.starter import summary_rows  # noqa: PLC0415

    s = _load(spec)
    if data:
        check_data(s, console)
    if teacher and s.teacher.checkpoint:
        tensors = check_teacher_checkpoint(s, s.teacher.checkpoint)
        console.print(f"teacher.checkpoint: all {tensors} tensors match the teacher section")
    for note in spec_warnings(s):
        console.print(f"[yellow]warning[/] {note}")
    console.print(table(f"{spec}: valid", ["section", "value"], summary_rows(s)))


@app.command()
def render(spec: SpecOpt = DEFAULT_SPEC,
           teacher: Annotated[Optional[Path], typer.Option(help="teacher checkpoint for the "
                                                                 "distill config")] = None,
           out: Annotated[Optional[Path], typer.Option(help="folder (default: "
                                                            "WORK_DIR/configs)")] = None,
           ) -> None:
    """Write the MMDetection configs of teacher, plain student and distilled student."""
    from kdctl.render import render_all  # noqa: PLC0415

    s = _load(spec)
    if teacher is not None and not teacher.is_file():
        raise KdctlError(f"file not found: {teacher}; give an existing teacher checkpoint",
                         field="--teacher")
    out = out or Path(s.runtime.work_dir) / "configs"
    paths, backups = render_all(s, out, str(teacher) if teacher else None)
    if teacher is None and s.teacher.checkpoint is None:
        console.print("[yellow]warning[/] distill.py has no teacher checkpoint yet; pass "
                      "--teacher CKPT or set teacher.checkpoint")
    for b in backups:
        console.print(f"[yellow]you had edited a rendered config; kept it as {b}")
    for role, p in paths.items():
        console.print(f"{role:8s} {p}")


@data_app.command("deepforest")
def data_deepforest(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/deepforest"),
    tile_size: Annotated[int, typer.Option(min=64, help="tile width and height in pixels "
                                                        "of the original images")] = 400,
    quick: Annotated[bool, typer.Option(help="a few tiles only")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a dataset made with other "
                                                 "parameters")] = False,
) -> None:
    """Tile DeepForest's annotated aerial images into a COCO dataset."""
    from kdctl.data.deepforest import prepare_deepforest  # noqa: PLC0415

    summary = prepare_deepforest(out, tile_size=tile_size, quick=quick, overwrite=overwrite)
    console.print(table(f"DeepForest tiles in {summary.root}", ["", ""], summary.rows()))


def _train_or_resume(spec: Path, role: str, updates: dict, resume: bool,
                     from_: Optional[Path]) -> None:
    from kdctl.train import resume as resume_run  # noqa: PLC0415
    from kdctl.train import train  # noqa: PLC0415

    s = _load(spec)
    if resume:
        result = resume_run(Path(s.runtime.work_dir), role, from_, console=console,
                            verbose=_state["verbose"])
    else:
        if from_ is not None:
            raise KdctlError("--from only goes with --resume", field="--from")
        result = train(_override(s, updates), role, console=console,
                       verbose=_state["verbose"])
    console.print(f"{role} checkpoint: [cyan]{result.checkpoint}")


@app.command("train-teacher")
def train_teacher(spec: SpecOpt = DEFAULT_SPEC,
                  epochs: Annotated[Optional[int], typer.Option(min=1)] = None,
                  resume: ResumeOpt = False, from_: FromOpt = None) -> None:
    """Train the teacher."""
    _train_or_resume(spec, "teacher", {"schedule.teacher_epochs": epochs}, resume, from_)


@app.command("train-student")
def train_student(spec: SpecOpt = DEFAULT_SPEC,
                  epochs: Annotated[Optional[int], typer.Option(min=1)] = None,
                  resume: ResumeOpt = False, from_: FromOpt = None) -> None:
    """Train the plain student: the baseline that distillation is measured against."""
    _train_or_resume(spec, "student", {"schedule.epochs": epochs}, resume, from_)


@app.command()
def distill(
    spec: SpecOpt = DEFAULT_SPEC,
    teacher: Annotated[Optional[Path], typer.Option(help="trained teacher checkpoint "
                                                         "(default: teacher.checkpoint)")] = None,
    temp: Annotated[Optional[float], typer.Option(help="temperature T > 0")] = None,
    weight: Annotated[Optional[float], typer.Option(help="KD loss weight >= 0")] = None,
    box_weight: Annotated[Optional[float], typer.Option(
        help="box KD weight >= 0 (distill.box_weight; used when losses include box)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (optimizer.lr)")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(
        help="weight decay (optimizer.weight_decay)")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="epochs (schedule.epochs)")
                      ] = None,
    resume: ResumeOpt = False,
    from_: FromOpt = None,
) -> None:
    """Train the student against the frozen teacher."""
    _train_or_resume(spec, "distill", {
        "distill.temperature": temp, "distill.weight": weight,
        "distill.box_weight": box_weight, "optimizer.lr": lr,
        "optimizer.weight_decay": weight_decay, "schedule.epochs": epochs,
        "teacher.checkpoint": str(teacher) if teacher else None}, resume, from_)


@app.command()
def sweep(
    spec: SpecOpt = DEFAULT_SPEC,
    count: Annotated[int, typer.Option(min=1, help="trials this invocation runs")] = 20,
    backend: Annotated[Optional[str], typer.Option(
        help="local (W&B's engine, no server) or wandb (needs a W&B key); default: wandb "
             "when a key is configured, else local")] = None,
    agents: Annotated[int, typer.Option(min=1, help="trials at once (one per GPU where "
                                                    "there are GPUs)")] = 1,
    resume: Annotated[Optional[str], typer.Option(help="SWEEP_ID to continue")] = None,
    teacher: Annotated[Optional[Path], typer.Option(help="trained teacher checkpoint "
                                                         "(default: teacher.checkpoint)")] = None,
) -> None:
    """Search the spec's sweep section: distil one student per trial from one teacher."""
    from kdctl.sweep import run_sweep  # noqa: PLC0415

    run_sweep(_load(spec), spec, count, backend=backend, agents=agents, resume=resume,
              teacher=str(teacher) if teacher else None, console=console,
              verbose=_state["verbose"])


@app.command("eval")
def eval_(spec: SpecOpt = DEFAULT_SPEC,
          runs: Annotated[Optional[list[Path]], typer.Argument(
              metavar="RUN_OR_CKPT", help="run folders or checkpoints inside them "
              "(default: the newest finished run of each role)")] = None,
          seeds: Annotated[bool, typer.Option(
              "--seeds", help="the newest finished run of each role and seed: mean and "
              "spread over seeds")] = False,
          json_: Annotated[bool, typer.Option("--json", help="print only the report's "
                                                              "JSON")] = False) -> None:
    """Evaluate teacher, plain and distilled student; write the KD-gain report."""
    import json  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from kdctl.evaluate import evaluate  # noqa: PLC0415

    progress = Console(stderr=True, quiet=json_)
    # with --json, stdout carries the JSON alone: library warnings go to stderr
    with contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext():
        report = evaluate(_load(spec), runs, seeds=seeds, console=progress)
    if json_:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_eval(report)


def _print_eval(report: dict) -> None:
    from kdctl.report.tables import all_tables  # noqa: PLC0415

    for title, columns, rows in all_tables(report):
        console.print(table(title, columns, rows))
    for warning in report["warnings"]:
        console.print(f"[yellow]warning[/] {warning}")
    console.print(f"[bold]{report['verdict']}")
    console.print(f"report: {report['paths']['html']} (also report.md, report.json, plots/)")
    if report.get("wandb"):
        console.print(f"W&B: {report['wandb']}")


@app.command()
def export(run: Annotated[Path, typer.Argument(help="a distilled (or plain) student run "
                                                     "folder")],
           out: Annotated[Optional[Path], typer.Option(help="folder (default: "
                                                            "RUN/export)")] = None,
           checkpoint: Annotated[Optional[Path], typer.Option(
               help="checkpoint of the run to export (default: its last)")] = None) -> None:
    """Write the student alone: a plain checkpoint and config for mmdet's test tool."""
    from kdctl.export import export_student  # noqa: PLC0415

    result = export_student(run, out, checkpoint)
    console.print(f"checkpoint: [cyan]{result.checkpoint}[/] "
                  f"({result.size_bytes / 1e6:.1f} MB; the training checkpoint is "
                  f"{result.source_size_bytes / 1e6:.1f} MB)", soft_wrap=True)
    console.print(f"config:     [cyan]{result.config}", soft_wrap=True)
    console.print(f"test it in mmdetection: python tools/test.py {result.config} "
                  f"{result.checkpoint}", soft_wrap=True)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="demo folder")] = Path("kdctl-demo"),
         quick: Annotated[bool, typer.Option(help="a few tiles, 1-2 epochs")] = False,
         seed: int = 0) -> None:
    """Prepare DeepForest tiles, train teacher and student, distil, evaluate."""
    from kdctl.demo import run_demo  # noqa: PLC0415

    summary = run_demo(out, quick=quick, seed=seed, console=console,
                       verbose=_state["verbose"])
    _print_eval(summary)


@app.command()
def doctor() -> None:
    """Check the installed stack (torch, numpy, mmcv, mmengine, mmdet) for conflicts."""
    from kdctl.doctor import (build_record, diagnose, import_check,  # noqa: PLC0415
                              installed_versions)

    versions, record = installed_versions(), build_record()
    console.print(table("installed", ["package", "version", "mmcv built against"],
                        [(k, v, record.get(k, "")) for k, v in versions.items()]))
    import torch  # noqa: PLC0415

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f"cuda, {gpus} GPU(s)" if gpus else "cpu (no GPU visible)"
    console.print(f"training device: {device}")
    findings = diagnose(versions, record, import_check())
    for f in findings:
        console.print(f"[red]problem[/] {f}")
    if findings:
        raise typer.Exit(1)
    console.print("[green]no conflicts found")


def main() -> None:
    try:
        app()
    except KdctlError as exc:
        print_error(exc)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
