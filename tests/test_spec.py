"""Spec validation: every problem reported at once, each naming its field and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdctl.errors import SpecError
from kdctl.spec import Spec, load_spec, with_overrides
from tests.conftest import tiny_spec_dict, write_spec


def _problems(path: Path, spec: dict) -> str:
    """The problems a spec is rejected with, one per line."""
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(path, spec))
    return "\n".join(info.value.problems)


def test_valid_spec_resolves_paths_and_defaults(tiny_data: Path, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(tiny_data, tmp_path)))
    assert spec.num_classes == 1
    assert Path(spec.data.train_ann).is_absolute()
    assert spec.distill.temperature == 4.0 and spec.distill.weight == 0.5
    assert spec.optimizer.momentum == 0.9 and spec.optimizer.type == "SGD"
    assert spec.tracking.project == "Object Detection"


def test_relative_paths_are_relative_to_the_spec_file(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path)
    d["data"]["train_ann"] = "annotations/train.json"
    spec = load_spec(write_spec(tiny_data / "rel.yaml", d))
    assert spec.data.train_ann == str((tiny_data / "annotations/train.json").resolve())


def test_three_problems_reported_in_one_run(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path, distill=dict(temperature=-1.0))
    d["teacher"]["checkpoint"] = str(tmp_path / "missing.pth")
    d["teacher"]["head"] = dict(d["teacher"]["head"], num_classes=3)
    d["student"]["head"] = dict(d["student"]["head"], num_classes=2)
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "bad.yaml", d))
    text = "\n".join(info.value.problems)
    assert "distill.temperature: Input should be greater than 0 (got -1.0)" in text
    assert "teacher.checkpoint: file not found" in text and "missing.pth" in text
    assert "teacher.head.num_classes, student.head.num_classes" in text
    assert "teacher has 3 and student has 2 classes but the dataset has 1" in text
    assert len(info.value.problems) == 3


def test_unknown_field_and_bad_choice(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path, optimizer=dict(lr=0.01, momentun=0.9))
    d["student"]["backbone"] = dict(name="resnet51")
    text = _problems(tmp_path / "bad.yaml", d)
    assert ("optimizer.momentun: Extra inputs are not permitted (got 0.9); did you mean "
            "'momentum'?") in text
    assert "student.backbone.name: unknown backbone; choose one of" in text
    assert "(got 'resnet51')" in text


def test_kd_weight_negative_and_softmax_on_sigmoid_head(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path, distill=dict(weight=-0.5))
    with pytest.raises(SpecError, match=r"distill.weight: Input should be greater than or "):
        load_spec(write_spec(tmp_path / "w.yaml", d))
    d = tiny_spec_dict(tiny_data, tmp_path, distill=dict(logit_loss="softmax_kl"))
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "s.yaml", d))
    assert "distill.logit_loss: softmax_kl does not fit a atss head" in info.value.problems[0]
    assert "use sigmoid_kl or auto" in info.value.problems[0]
    d = tiny_spec_dict(tiny_data, tmp_path, distill=dict(focal_gamma=2.0))
    d["student"]["detector"] = d["teacher"]["detector"] = "retinanet"
    d["student"]["head"] = dict(d["student"]["head"], use_sigmoid=False)
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "f.yaml", d))
    assert info.value.problems == [
        "distill.focal_gamma: 2.0 applies to sigmoid heads only, and the student has "
        "student.head.use_sigmoid: false; set focal_gamma: 0"]


def test_class_list_must_match_dataset(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path)
    d["data"]["classes"] = ["Tree", "Shrub"]
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "c.yaml", d))
    assert any(p.startswith("data.classes: 2 classes listed but") for p in info.value.problems)


def test_sweep_section_checks(tiny_data: Path, tmp_path: Path) -> None:
    sweep = dict(method="bayes", metric=dict(name="val/mAP", goal="maximize"),
                 parameters=dict(lr=dict(min=0.01, max=0.001), dropout=dict(min=0, max=1)))
    d = tiny_spec_dict(tiny_data, tmp_path, sweep=sweep)
    text = _problems(tmp_path / "sw.yaml", d)
    assert "sweep.parameters.lr: min must be below max (got min=0.01, max=0.001)" in text
    assert "sweep.parameters.dropout: maps to nothing in the spec" in text
    assert "sweep.metric.name: kdctl never logs 'val/mAP'; use one of val/bbox_mAP" in text


def test_overrides_are_validated_like_the_file(tiny_data: Path, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "k.yaml", tiny_spec_dict(tiny_data, tmp_path)))
    assert with_overrides(spec, {"distill.temperature": 2.0}).distill.temperature == 2.0
    with pytest.raises(SpecError, match="distill.temperature: Input should be greater than 0"):
        with_overrides(spec, {"distill.temperature": 0.0})


def _kdctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdctl.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_validate_exit_1_without_traceback(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path, distill=dict(temperature=-1.0))
    d["teacher"]["checkpoint"] = "nope.pth"
    d["student"]["head"] = dict(d["student"]["head"], num_classes=2)
    write_spec(tmp_path / "kdctl.yaml", d)
    out = _kdctl("validate", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    for field in ("distill.temperature", "teacher.checkpoint", "student.head.num_classes"):
        assert field in out.stderr


def test_cli_validate_prints_summary(tiny_data: Path, tmp_path: Path) -> None:
    write_spec(tmp_path / "kdctl.yaml", tiny_spec_dict(tiny_data, tmp_path))
    out = _kdctl("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout and "sigmoid_kl at T=4.0" in out.stdout


def test_help_imports_no_torch_or_mmdet() -> None:
    code = ("import sys; from kdctl.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'mmdet', 'mmengine', 'pydantic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_init_writes_starter_that_refuses_overwrite(tmp_path: Path) -> None:
    assert _kdctl("init", cwd=tmp_path).returncode == 0
    text = (tmp_path / "kdctl.yaml").read_text()
    assert "temperature: 4.0" in text
    again = _kdctl("init", cwd=tmp_path)
    assert again.returncode == 1 and "pass --force" in again.stderr
    forced = _kdctl("init", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert len(list(tmp_path.glob("kdctl.yaml.*.bak"))) == 1


def test_kd_weight_zero_is_allowed_with_a_warning(tiny_data: Path, tmp_path: Path) -> None:
    from kdctl.preflight import spec_warnings

    spec = load_spec(write_spec(tmp_path / "z.yaml", tiny_spec_dict(
        tiny_data, tmp_path, distill=dict(weight=0.0))))
    assert spec.distill.weight == 0.0
    [note] = spec_warnings(spec, "distill")
    assert note.startswith("distill.weight: 0 turns the logit KD loss off")
    assert note.endswith("will train like the plain student")
    assert spec_warnings(spec, "teacher") == []
    with_box = with_overrides(spec, {"distill.losses": ["logit", "box"]})
    [note] = spec_warnings(with_box, "distill")
    assert note.endswith("only the box KD remains")


def test_losses_choose_what_the_distilled_config_computes(tiny_data: Path,
                                                         tmp_path: Path) -> None:
    from kdctl.render import render_config

    spec = load_spec(write_spec(tmp_path / "z.yaml", tiny_spec_dict(
        tiny_data, tmp_path, distill=dict(losses=["box"], weight=0.7, box_weight=1.5))))
    cfg = render_config(spec, "distill", str(tmp_path / "t.pth"))
    assert "kd_weight=0.0," in cfg and "box_weight=1.5," in cfg
    spec = with_overrides(spec, {"distill.losses": ["logit"]})
    cfg = render_config(spec, "distill", str(tmp_path / "t.pth"))
    assert "kd_weight=0.7," in cfg and "box_weight=0.0," in cfg


def test_teacher_and_student_outputs_must_pair(tiny_data: Path, tmp_path: Path) -> None:
    d = tiny_spec_dict(tiny_data, tmp_path)
    d["student"]["detector"] = "retinanet"
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "p.yaml", d))
    assert info.value.problems[0].startswith("student.detector: the logit KD pairs teacher")
    assert "(got teacher atss/3 levels, student retinanet/3 levels)" in info.value.problems[0]


def test_cli_validate_loads_the_teacher_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import kdctl.models  # noqa: F401  (registers kdctl's modules)
    from kdctl.render import render_config

    d = tiny_spec_dict(tiny_data, tmp_path)
    spec = Spec.model_validate(d)
    with DefaultScope.overwrite_default_scope("mmdet"):
        teacher = MODELS.build(Config.fromstring(render_config(spec, "teacher"), ".py").model)
    torch.save({"state_dict": teacher.state_dict()}, tmp_path / "good.pth")
    state = teacher.state_dict()
    state.pop("bbox_head.atss_cls.bias")
    torch.save({"state_dict": state}, tmp_path / "other.pth")

    d["teacher"]["checkpoint"] = "good.pth"
    write_spec(tmp_path / "kdctl.yaml", d)
    out = _kdctl("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"all {len(teacher.state_dict())} tensors match" in out.stdout

    d["teacher"]["checkpoint"] = "other.pth"
    write_spec(tmp_path / "kdctl.yaml", d)
    out = _kdctl("validate", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "teacher.checkpoint:" in out.stderr and "1 missing keys" in out.stderr
