"""`kdctl export RUN`: the distilled student alone, for deployment or mmdet's test tool.

Writes `<run>_student.pth` (the state dict and a `meta` block; no optimizer state, no
teacher) and `<run>_student.py`, the plain student config rendered from the run's own
spec. The checkpoint is loaded with strict=True into a model built from that config before
kdctl reports success, so `python tools/test.py <run>_student.py <run>_student.pth` in
mmdetection (with kdctl installed, for its custom imports) works as is.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

from kdctl import __version__
from kdctl.errors import KdctlError
from kdctl.io import atomic_write_bytes, atomic_write_text, file_sha256
from kdctl.render import render_config
from kdctl.runs import last_checkpoint, load_run
from kdctl.spec import load_spec


@dataclass
class Exported:
    checkpoint: Path
    config: Path
    size_bytes: int
    source_size_bytes: int


def export_student(run_dir: Path, out_dir: Path | None = None,
                   checkpoint: Path | None = None) -> Exported:
    """Export a student run's checkpoint (its last unless `checkpoint` is given)."""
    import torch  # noqa: PLC0415
    from mmengine.config import Config  # noqa: PLC0415
    from mmengine.registry import init_default_scope  # noqa: PLC0415
    from mmdet.registry import MODELS  # noqa: PLC0415

    from kdctl.models.kd_detector import load_strict, read_state_dict  # noqa: PLC0415

    run = load_run(run_dir)
    if run.role == "teacher":
        raise KdctlError(f"{run_dir} is a teacher run; export takes a distilled or plain "
                         "student run (its checkpoints are already plain)", field="export")
    source = Path(checkpoint) if checkpoint else last_checkpoint(Path(run_dir))
    if source is None or not source.is_file():
        raise KdctlError(f"{run_dir} has no checkpoint; is its training finished?",
                         field="export")
    spec = load_spec(Path(run_dir) / "spec.yaml")
    out_dir = Path(out_dir or Path(run_dir) / "export")
    config_file = out_dir / f"{run.run_name}_student.py"
    atomic_write_text(config_file, render_config(spec, "student"))

    init_default_scope("mmdet")
    import kdctl.models  # noqa: F401, PLC0415 (registers kdctl's backbones)

    model = MODELS.build(Config.fromfile(str(config_file)).model)
    load_strict(model, source, field="export checkpoint")  # no teacher keys, no missing keys
    meta = dict(kdctl_version=__version__, role=run.role, run_name=run.run_name,
                source_checkpoint=str(source), source_sha256=file_sha256(source),
                teacher_sha256=run.teacher_sha256, seed=run.seed,
                exported=time.strftime("%Y-%m-%d %H:%M:%S"),
                dataset_meta=dict(classes=tuple(spec.data.classes)))
    ckpt_file = out_dir / f"{run.run_name}_student.pth"
    buffer = io.BytesIO()
    torch.save({"state_dict": read_state_dict(source), "meta": meta}, buffer)
    atomic_write_bytes(ckpt_file, buffer.getvalue())
    return Exported(ckpt_file, config_file, ckpt_file.stat().st_size, source.stat().st_size)
