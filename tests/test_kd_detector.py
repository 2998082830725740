"""The KD detector: teacher outside the student, frozen, in eval mode, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from kdctl.errors import KdctlError, SpecError
from kdctl.models.kd_detector import KDSingleStageDetector, load_strict
from kdctl.render import render_config
from kdctl.spec import load_spec
from tests.conftest import tiny_spec_dict, write_spec


def _build(cfg_text: str, tmp_path: Path, name: str) -> torch.nn.Module:
    import kdctl.models  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS

    path = tmp_path / f"{name}.py"
    path.write_text(cfg_text)
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg.model)


@pytest.fixture()
def setup(tiny_data: Path, tmp_path: Path):
    torch.manual_seed(0)
    spec = load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(tiny_data, tmp_path)))
    teacher = _build(render_config(spec, "teacher"), tmp_path, "teacher")
    ckpt = tmp_path / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict(), "meta": {}}, ckpt)
    kd = _build(render_config(spec, "distill", str(ckpt)), tmp_path, "distill")
    return spec, teacher, ckpt, kd


def _batch(model: torch.nn.Module) -> dict:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                             pad_shape=(128, 128), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 20.0, 110.0, 58.0]]),
            labels=torch.tensor([0, 0]))
        samples.append(sample)
    inputs = [torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8) for _ in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def test_teacher_is_outside_parameters_and_state_dict(setup) -> None:
    spec, teacher, _, kd = setup
    assert isinstance(kd, KDSingleStageDetector)
    assert not any(k.startswith("teacher") for k in kd.state_dict())
    own = {id(p) for p in kd.parameters()}
    assert not any(id(p) in own for p in kd.teacher_model.parameters())
    # the teacher weights equal its checkpoint
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, kd.teacher_model.state_dict()[k])


def test_teacher_frozen_eval_and_bit_identical_after_training(setup) -> None:
    _, _, _, kd = setup
    kd.train()
    assert kd.training and not kd.teacher_model.training
    assert all(not m.training for m in kd.teacher_model.modules())
    before = {k: v.clone() for k, v in kd.teacher_model.state_dict().items()}
    optim = build_optim_wrapper(kd, dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)))
    student_before = {k: v.clone() for k, v in kd.state_dict().items()}
    for _ in range(3):
        log_vars = kd.train_step(_batch(kd), optim)
    assert "loss_kd_logit" in log_vars and log_vars["loss_kd_logit"].item() > 0
    for k, v in kd.teacher_model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm buffers
    assert all(p.grad is None for p in kd.teacher_model.parameters())
    changed = [k for k, v in kd.state_dict().items() if not torch.equal(v, student_before[k])]
    assert any("backbone" in k for k in changed) and any("bbox_head" in k for k in changed)
    assert not kd.teacher_model.training


def test_kd_gradient_reaches_student_only(setup) -> None:
    _, _, _, kd = setup
    kd.train()
    data = kd.data_preprocessor(_batch(kd), True)
    losses = kd.loss(data["inputs"], data["data_samples"])
    losses["loss_kd_logit"].backward()
    grads = [p.grad for p in kd.bbox_head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in kd.teacher_model.parameters())


def test_student_checkpoint_loads_strictly_into_plain_student(setup, tmp_path: Path) -> None:
    spec, _, _, kd = setup
    ckpt = tmp_path / "student.pth"
    torch.save({"state_dict": kd.state_dict()}, ckpt)
    plain = _build(render_config(spec, "student"), tmp_path, "student")
    load_strict(plain, ckpt)
    for k, v in kd.state_dict().items():
        assert torch.equal(v, plain.state_dict()[k])


def test_wrong_teacher_checkpoint_is_named_and_counted(setup, tmp_path: Path) -> None:
    _, teacher, _, _ = setup
    state = teacher.state_dict()
    state.pop("bbox_head.atss_cls.bias")
    state["extra.weight"] = torch.zeros(1)
    state["neck.fpn_convs.0.conv.weight"] = torch.zeros(1, 1, 1, 1)
    bad = tmp_path / "bad_teacher.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(KdctlError) as info:
        load_strict(teacher, bad)
    text = str(info.value)
    assert text.startswith("teacher.checkpoint: ") and "bad_teacher.pth" in text
    assert "1 missing keys [bbox_head.atss_cls.bias]" in text
    assert "1 unexpected [extra.weight]" in text
    assert "1 with the wrong shape [neck.fpn_convs.0.conv.weight]" in text


def test_teacher_input_renormalised_when_mean_std_differ(setup) -> None:
    _, _, _, kd = setup
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(kd._teacher_inputs(x), x)  # same normalisation: untouched
    t = kd.teacher_model.data_preprocessor
    t.mean.fill_(127.0)
    t.std.fill_(128.0)
    s = kd.data_preprocessor
    raw = x * s.std + s.mean
    assert torch.allclose(kd._teacher_inputs(x), (raw - 127.0) / 128.0, atol=1e-5)


def test_box_kd_runs_the_teacher_box_branch_and_trains_the_student_only(
        tiny_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(
        tiny_data, tmp_path, distill=dict(losses=["logit", "box"], box_weight=2.0))))
    teacher = _build(render_config(spec, "teacher"), tmp_path, "teacher")
    ckpt = tmp_path / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict()}, ckpt)
    kd = _build(render_config(spec, "distill", str(ckpt)), tmp_path, "distill")
    assert kd.box_weight == 2.0
    kd.train()
    data = kd.data_preprocessor(_batch(kd), True)
    losses = kd.loss(data["inputs"], data["data_samples"])
    assert losses["loss_kd_box"].item() > 0
    losses["loss_kd_box"].backward()
    reg = kd.bbox_head.atss_reg.weight.grad
    assert reg is not None and reg.abs().sum() > 0
    assert kd.bbox_head.atss_cls.weight.grad is None  # box KD does not touch the classifier
    assert all(p.grad is None for p in kd.teacher_model.parameters())


def test_feature_kd_alone_leaves_the_teacher_head_unrun(tiny_data: Path,
                                                      tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(
        tiny_data, tmp_path, distill=dict(losses=["feature"], feature_weight=0.5))))
    teacher = _build(render_config(spec, "teacher"), tmp_path, "teacher")
    ckpt = tmp_path / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict()}, ckpt)
    kd = _build(render_config(spec, "distill", str(ckpt)), tmp_path, "distill")
    assert (kd.kd_weight, kd.box_weight, kd.feature_weight) == (0.0, 0.0, 0.5)
    head_calls = []
    kd.teacher_model.bbox_head.register_forward_hook(lambda *_: head_calls.append(1))
    kd.train()
    data = kd.data_preprocessor(_batch(kd), True)
    losses = kd.loss(data["inputs"], data["data_samples"])
    assert losses["loss_kd_feat"].item() > 0
    assert "loss_kd_logit" not in losses and "loss_kd_box" not in losses
    assert head_calls == []
    cls_conv = kd.teacher_model.bbox_head.atss_cls
    cls_conv.register_forward_hook(lambda *_: head_calls.append(2))
    kd.loss(data["inputs"], data["data_samples"])
    assert head_calls == []


def test_box_kd_needs_an_anchor_based_head(tiny_data: Path, tmp_path: Path) -> None:
    fcos = dict(detector="fcos", num_levels=3, neck_channels=16,
                head=dict(feat_channels=32, stacked_convs=1))
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(
            tiny_data, tmp_path, teacher=fcos, student=fcos,
            distill=dict(losses=["logit", "box"]))))
    assert "distill.losses: box KD" in str(info.value) and "fcos" in str(info.value)
