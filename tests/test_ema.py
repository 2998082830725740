"""optimizer.ema: MMEngine's EMAHook averages the student's weights; the checkpoint holds
the average, which still loads strictly into the plain student."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from rich.console import Console

from kdctl.render import render_config
from kdctl.spec import Spec, load_spec
from kdctl.train import train
from tests.conftest import tiny_spec_dict, write_spec


def test_ema_renders_only_when_asked(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path)
    assert "EMAHook" not in render_config(Spec.model_validate(d), "student", None, {})
    d["optimizer"]["ema"] = 0.05
    cfg = render_config(Spec.model_validate(d), "student", None, {})
    assert "type='EMAHook'" in cfg and "momentum=0.05" in cfg


def test_distilled_checkpoint_holds_the_average_and_loads_strictly(
        tiny_data: Path, tmp_path: Path) -> None:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    spec = load_spec(write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(
        tiny_data, tmp_path / "work", optimizer=dict(lr=0.005, warmup_iters=2, ema=0.3))))
    quiet = Console(file=open(os.devnull, "w"))
    teacher = train(spec, "teacher", console=quiet)
    distilled = train(spec, "distill", teacher_ckpt=str(teacher.checkpoint), console=quiet)

    ckpt = torch.load(distilled.checkpoint, map_location="cpu", weights_only=False)
    saved, ema = ckpt["state_dict"], ckpt["ema_state_dict"]
    assert int(ema["steps"]) >= 2
    # MMEngine swaps the two: `state_dict` holds the moving average (what is evaluated
    # and deployed), `ema_state_dict` the raw weights of the last step
    raw = {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}
    assert set(raw) == set(saved)
    moved = [k for k, v in saved.items() if v.is_floating_point() and not torch.equal(v, raw[k])]
    assert any("bbox_head" in k for k in moved) and any("backbone" in k for k in moved)
    student = MODELS.build(Config.fromstring(
        render_config(spec, "student", None, {}), ".py").model)
    student.load_state_dict(saved, strict=True)
