"""Launch one training run (teacher, plain student or distilled student) through MMEngine.

The steps, in order: apply overrides and re-validate, check the data, create the run
folder, render its config, build MMEngine's Runner with kdctl's hooks, train, and write
metrics.json. Nothing heavy is imported before the checks pass.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_text, file_sha256
from kdctl.render import render_config
from kdctl.runs import ROLE_TITLES, RunInfo, create_run_dir, last_checkpoint, read_metrics
from kdctl.spec import EFFICIENTNET_LITES, Spec

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run: RunInfo
    checkpoint: Path | None
    metrics: dict[str, Any]


def model_name(spec: Spec, role: str) -> str:
    model = spec.teacher if role == "teacher" else spec.student
    backbone = model.backbone.name
    if backbone in EFFICIENTNET_LITES:
        backbone = EFFICIENTNET_LITES[backbone]
    return f"{model.detector}-{backbone}" + ("-kd" if role == "distill" else "")


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA when present; 'cpu' hides GPUs from this process."""
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return "cpu"
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise KdctlError("cuda was asked for but torch sees no GPU (torch "
                         f"{torch.__version__}); use device: auto or cpu",
                         field="runtime.device")
    return "cpu"


def prepare_run(spec: Spec, role: str, teacher_ckpt: str | None = None,
                console: Console | None = None, sweep_id: str | None = None,
                overrides: dict[str, Any] | None = None) -> RunInfo:
    """Check everything, then create the run folder with its spec and rendered config."""
    from kdctl.doctor import require_healthy_environment  # noqa: PLC0415
    from kdctl.preflight import check_data, spec_warnings, write_cleaned  # noqa: PLC0415

    console = console or Console()
    require_healthy_environment()
    teacher_ckpt = teacher_ckpt or (spec.teacher.checkpoint if role == "distill" else None)
    if role == "distill" and not teacher_ckpt:
        raise KdctlError("distillation needs a trained teacher: pass --teacher CKPT or set "
                         "teacher.checkpoint (train one with `kdctl train-teacher`)",
                         field="teacher.checkpoint")
    if teacher_ckpt and not Path(teacher_ckpt).is_file():
        raise KdctlError(f"file not found: {teacher_ckpt}", field="teacher.checkpoint")

    checked = check_data(spec, console)
    for note in spec_warnings(spec, role):
        console.print(f"[yellow]warning[/] {note}")

    run_dir, code = create_run_dir(Path(spec.runtime.work_dir))
    data_override = write_cleaned(checked, run_dir, console)
    run = RunInfo(role=role, model=model_name(spec, role), code=code, run_dir=str(run_dir),
                  spec_name=spec.name, seed=spec.runtime.seed, sweep_id=sweep_id,
                  overrides=overrides or {})
    if teacher_ckpt:
        run.teacher_ckpt = str(Path(teacher_ckpt).resolve())
        run.teacher_sha256 = file_sha256(teacher_ckpt)

    atomic_write_text(run_dir / "spec.yaml",
                      yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    atomic_write_text(run_dir / "config.py",
                      render_config(spec, role, run.teacher_ckpt, data_override))
    run.save()
    return run


@contextlib.contextmanager
def quiet_stdout(verbose: bool) -> Iterator[None]:
    """Keep MMEngine's INFO lines and pycocotools' prints out of the terminal (the run's
    log file has them all); the rich display and warnings still reach it."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def build_quiet_runner(cfg: Any, verbose: bool) -> Any:
    """MMEngine's Runner, whose console handler shows only warnings unless verbose."""
    from mmengine.runner import Runner  # noqa: PLC0415

    real_stdout = sys.stdout
    with quiet_stdout(verbose):
        runner = Runner.from_cfg(cfg)
    for handler in runner.logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(real_stdout)
            handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
            handler.addFilter(_drop_noise)
    return runner


_NOISE = (
    # CocoMetric logs an ERROR when nothing is detected above the score threshold, which
    # is normal early in training; kdctl records it as mAP 0 (kdctl.metrics.complete)
    "results of the whole dataset is empty",
    # MMEngine's own deprecation notices about its internals (FileClient, backends)
    "will be deprecated in future",
)


def _drop_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _NOISE)


def build_runner(spec: Spec, run: RunInfo, console: Console, resume: bool = False,
                 verbose: bool = False, progress: bool = True,
                 checkpoint: Path | None = None, launcher: str = "none") -> Any:
    from mmengine.config import Config  # noqa: PLC0415

    from kdctl.hooks import MetricsHook, ProgressHook  # noqa: PLC0415
    from kdctl.tracking import wandb_backend, wandb_mode  # noqa: PLC0415

    cfg = Config.fromfile(str(Path(run.run_dir) / "config.py"))
    cfg.work_dir = run.run_dir
    cfg.experiment_name = run.run_name
    cfg.resume = resume
    cfg.launcher = launcher
    if launcher != "none":
        import torch  # noqa: PLC0415

        cfg.env_cfg.dist_cfg = dict(backend="nccl" if torch.cuda.is_available() else "gloo")
        if not torch.cuda.is_available():  # DDP on CPU takes no device ids
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                         broadcast_buffers=False)
    if resume and checkpoint is not None:
        from kdctl.models.checkpoint_io import run_checkpoint_uri  # noqa: PLC0415

        cfg.load_from = run_checkpoint_uri(checkpoint)
    mode, note = wandb_mode(spec)
    if not verbose:
        os.environ.setdefault("WANDB_SILENT", "true")
    if note:
        console.print(f"[yellow]tracking.mode: {note}")
    backend = wandb_backend(spec, run, mode, group=run.sweep_id)
    if backend:
        cfg.visualizer.vis_backends = list(cfg.visualizer.vis_backends) + [backend]

    runner = build_quiet_runner(cfg, verbose)
    runner.register_hook(MetricsHook(Path(run.run_dir), run.role))
    if progress:
        # bound to the real stdout: training runs inside quiet_stdout
        bound = Console(file=sys.stdout, force_terminal=console.is_terminal)
        runner.register_hook(ProgressHook(f"{run.role} {run.run_name}", bound))
    return runner


def train_run(spec: Spec, run: RunInfo, console: Console, resume: bool = False,
              verbose: bool = False, extra_hooks: list[Any] | None = None,
              checkpoint: Path | None = None, progress: bool = True) -> TrainResult:
    device = resolve_device(spec.runtime.device)
    if device == "cuda" and spec.runtime.gpus > 1:
        if extra_hooks:
            raise KdctlError("a run with its own hooks (a sweep trial) uses one GPU; set "
                             "runtime.gpus: 1 and give the sweep --agents instead",
                             field="runtime.gpus")
        return train_distributed(run, console, spec.runtime.gpus, resume, checkpoint,
                                 verbose)
    runner = build_runner(spec, run, console, resume=resume, verbose=verbose,
                          progress=progress, checkpoint=checkpoint)
    for hook in extra_hooks or []:
        runner.register_hook(hook)
    run.state = "running"
    run.save()
    try:
        with quiet_stdout(verbose):
            runner.train()
    except BaseException:
        run.state = "failed"
        run.save()
        raise
    finally:
        _finish_wandb(console)
    run.state = "finished"
    run.save()
    return TrainResult(run, last_checkpoint(Path(run.run_dir)), read_metrics(Path(run.run_dir)))


def train_distributed(run: RunInfo, console: Console, nproc: int, resume: bool = False,
                      checkpoint: Path | None = None, verbose: bool = False) -> TrainResult:
    """One process per GPU through torchrun (gloo on CPU, which the tests use); each
    process runs `kdctl.worker` on the same run folder. The batch size is per process."""
    import torch  # noqa: PLC0415

    if torch.cuda.is_available() and torch.cuda.device_count() < nproc:
        raise KdctlError(f"{nproc} GPUs asked for, {torch.cuda.device_count()} visible; "
                         "lower runtime.gpus", field="runtime.gpus")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "kdctl.worker", run.run_dir]
    cmd += ["--resume"] if resume else []
    cmd += ["--checkpoint", str(checkpoint)] if checkpoint else []
    cmd += ["--verbose"] if verbose else []
    console.print(f"launching {nproc} processes: {' '.join(cmd[2:])}")
    run.state = "running"
    run.save()
    status = subprocess.run(cmd).returncode
    if status != 0:
        run.state = "failed"
        run.save()
        raise KdctlError(f"distributed training exited with status {status}; the log is in "
                         f"{run.run_dir}", field="training")
    run.state = "finished"
    run.save()
    return TrainResult(run, last_checkpoint(Path(run.run_dir)), read_metrics(Path(run.run_dir)))


def _finish_wandb(console: Console) -> None:
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    offline, run_dir = wandb.run.settings._offline, wandb.run.dir
    wandb.finish()
    if offline:  # one line instead of W&B's banner (WANDB_SILENT; --verbose shows it)
        console.print(f"W&B offline run saved; upload with `wandb sync "
                      f"{Path(run_dir).parent}`", soft_wrap=True)


def train(spec: Spec, role: str, teacher_ckpt: str | None = None,
          console: Console | None = None, verbose: bool = False) -> TrainResult:
    console = console or Console()
    run = prepare_run(spec, role, teacher_ckpt, console)
    console.print(f"[bold]{role}[/] run [cyan]{run.run_name}[/] in {run.run_dir}")
    return train_run(spec, run, console, verbose=verbose)


def _run_to_resume(work_dir: Path, role: str, target: Path | None) -> tuple[RunInfo, Path | None]:
    """The run to continue and, when a checkpoint file was named, that checkpoint."""
    from kdctl.runs import find_runs, load_run  # noqa: PLC0415

    ckpt = None
    if target is not None and target.is_file():
        ckpt, target = target, target.parent
    if target is not None:
        run = load_run(target)
    else:
        unfinished = [r for r in find_runs(work_dir, role)
                      if r.state != "finished" and r.sweep_id is None]
        if not unfinished:
            raise KdctlError(f"no unfinished {role} run in {work_dir} to resume; pass the run "
                             "folder or checkpoint with --from")
        run = unfinished[-1]
    if run.role != role:
        raise KdctlError(_role_mismatch(run, role), field="--resume")
    return run, ckpt


def _role_mismatch(run: RunInfo, role: str) -> str:
    text = (f"{run.run_dir} is a {ROLE_TITLES[run.role]} run, not a {ROLE_TITLES[role]} "
            "run.")
    if role == "distill" and run.role == "student":
        text += (" A distillation run resumes from its own checkpoints, which continue the "
                 "same student against the same teacher, temperature and KD weight; a plain "
                 "student checkpoint records none of them. Resume it with `kdctl "
                 "train-student --resume`, or start a distillation with `kdctl distill`")
    else:
        command = {"teacher": "train-teacher", "student": "train-student",
                   "distill": "distill"}[run.role]
        text += f" Resume it with `kdctl {command} --resume --from {run.run_dir}`"
    return text


def check_teacher_unchanged(run: RunInfo) -> None:
    """The teacher is reloaded from its own file, which must be the one the run started with."""
    if not run.teacher_ckpt:
        return
    if not Path(run.teacher_ckpt).is_file():
        raise KdctlError(f"the run's teacher {run.teacher_ckpt} is gone; restore it to resume",
                         field="teacher.checkpoint")
    digest = file_sha256(run.teacher_ckpt)
    if digest != run.teacher_sha256:
        raise KdctlError(f"{run.teacher_ckpt} changed since the run started (sha256 "
                         f"{digest[:12]} now, {str(run.teacher_sha256)[:12]} then); restore "
                         "that teacher, or start a new run with `kdctl distill`",
                         field="teacher.checkpoint")


def resume(work_dir: Path, role: str, target: Path | None = None,
           console: Console | None = None, verbose: bool = False,
           extra_hooks: list[Any] | None = None) -> TrainResult:
    """Continue an interrupted run in its own folder, from its last checkpoint."""
    from kdctl.doctor import require_healthy_environment  # noqa: PLC0415
    from kdctl.spec import load_spec  # noqa: PLC0415

    console = console or Console()
    require_healthy_environment()
    run, ckpt = _run_to_resume(work_dir, role, target)
    check_teacher_unchanged(run)
    spec = load_spec(Path(run.run_dir) / "spec.yaml")
    ckpt = ckpt or last_checkpoint(Path(run.run_dir))
    console.print(f"resuming {role} run [cyan]{run.run_name}[/] from "
                  f"{ckpt.name if ckpt else 'the start (no checkpoint yet)'}")
    return train_run(spec, run, console, resume=ckpt is not None, verbose=verbose,
                     extra_hooks=extra_hooks, checkpoint=ckpt)
