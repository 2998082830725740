"""The `kdctl` command line. Commands parse their arguments and hand off; nothing heavy
(torch, mmdet) is imported until a command needs it, so `kdctl --help` is instant."""

from __future__ import annotations

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
DEFAULT_SPEC = Path("kdctl.yaml")
_state = {"verbose": False}


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                                help="debug logging")] = False) -> None:
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
                                                     "files")] = True) -> None:
    """Check a spec (and its data) and print a summary."""
    from kdctl.preflight import check_data  # noqa: PLC0415
    from kdctl.starter import summary_rows  # noqa: PLC0415

    s = _load(spec)
    if data:
        check_data(s, None, console)
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
    out = out or Path(s.runtime.work_dir) / "configs"
    paths, backups = render_all(s, out, str(teacher) if teacher else None)
    for b in backups:
        console.print(f"[yellow]you had edited a rendered config; kept it as {b}")
    for role, p in paths.items():
        console.print(f"{role:8s} {p}")


@data_app.command("deepforest")
def data_deepforest(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/deepforest"),
    tile_size: Annotated[int, typer.Option(min=64)] = 400,
    quick: Annotated[bool, typer.Option(help="a few tiles only")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a dataset made with other "
                                                 "parameters")] = False,
) -> None:
    """Tile DeepForest's annotated aerial images into a COCO dataset."""
    from kdctl.data.deepforest import prepare_deepforest  # noqa: PLC0415

    summary = prepare_deepforest(out, tile_size=tile_size, quick=quick, overwrite=overwrite)
    console.print(table(f"DeepForest tiles in {summary.root}", ["", ""], summary.rows()))


@app.command("train-teacher")
def train_teacher(spec: SpecOpt = DEFAULT_SPEC,
                  epochs: Annotated[Optional[int], typer.Option(min=1)] = None) -> None:
    """Train the teacher."""
    from kdctl.train import train  # noqa: PLC0415

    s = _override(_load(spec), {"schedule.teacher_epochs": epochs})
    result = train(s, "teacher", console=console, verbose=_state["verbose"])
    console.print(f"teacher checkpoint: [cyan]{result.checkpoint}")


@app.command("train-student")
def train_student(spec: SpecOpt = DEFAULT_SPEC,
                  epochs: Annotated[Optional[int], typer.Option(min=1)] = None) -> None:
    """Train the plain student: the baseline that distillation is measured against."""
    from kdctl.train import train  # noqa: PLC0415

    s = _override(_load(spec), {"schedule.epochs": epochs})
    result = train(s, "student", console=console, verbose=_state["verbose"])
    console.print(f"student checkpoint: [cyan]{result.checkpoint}")


@app.command()
def distill(
    spec: SpecOpt = DEFAULT_SPEC,
    teacher: Annotated[Optional[Path], typer.Option(help="trained teacher checkpoint "
                                                         "(default: teacher.checkpoint)")] = None,
    temp: Annotated[Optional[float], typer.Option(help="temperature T > 0")] = None,
    weight: Annotated[Optional[float], typer.Option(help="KD loss weight >= 0")] = None,
    lr: Annotated[Optional[float], typer.Option()] = None,
    weight_decay: Annotated[Optional[float], typer.Option()] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1)] = None,
) -> None:
    """Train the student against the frozen teacher."""
    from kdctl.train import train  # noqa: PLC0415

    s = _override(_load(spec), {
        "distill.temperature": temp, "distill.weight": weight, "optimizer.lr": lr,
        "optimizer.weight_decay": weight_decay, "schedule.epochs": epochs,
        "teacher.checkpoint": str(teacher) if teacher else None})
    result = train(s, "distill", console=console, verbose=_state["verbose"])
    console.print(f"distilled student checkpoint: [cyan]{result.checkpoint}")


@app.command("eval")
def eval_(spec: SpecOpt = DEFAULT_SPEC,
          runs: Annotated[Optional[list[Path]], typer.Argument(
              help="run folders (default: the newest of each role)")] = None) -> None:
    """Evaluate teacher, plain student and distilled student; print the KD gain."""
    from kdctl.evaluate import evaluate, table_rows  # noqa: PLC0415

    summary = evaluate(_load(spec), runs, console=console)
    _print_eval(summary)


def _print_eval(summary: dict) -> None:
    from kdctl.evaluate import table_rows  # noqa: PLC0415

    console.print(table("COCO bbox metrics on the val set",
                        ["model", "run", "params", "mAP", "mAP_50", "mAP_75"],
                        table_rows(summary)))
    console.print(f"numbers: {summary['path']}")


@app.command()
def demo(out: Annotated[Path, typer.Option(help="demo folder")] = Path("kdctl-demo"),
         quick: Annotated[bool, typer.Option(help="a few tiles, 1-2 epochs")] = False,
         seed: int = 0) -> None:
    """Prepare DeepForest tiles, train teacher and student, distil, evaluate."""
    from kdctl.demo import run_demo  # noqa: PLC0415

    summary = run_demo(out, quick=quick, seed=seed, console=console,
                       verbose=_state["verbose"])
    _print_eval(summary)


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
