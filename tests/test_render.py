"""Rendered configs are ordinary MMDetection configs: they load and mmdet builds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from kdctl.render import render_all
from kdctl.spec import load_spec
from tests.conftest import tiny_spec_dict, write_spec


def _spec(tiny_data: Path, tmp_path: Path, detector: str, backbone: str = "resnet18"):
    d = tiny_spec_dict(tiny_data, tmp_path)
    for role in ("teacher", "student"):
        d[role]["detector"] = detector
        d[role]["backbone"] = dict(name=backbone)
    return load_spec(write_spec(tmp_path / "k.yaml", d))


@pytest.mark.parametrize("detector,backbone", [
    ("atss", "resnet18"), ("retinanet", "resnet18"), ("fcos", "resnet18"),
    ("atss", "efficientnet_lite0")])
def test_rendered_configs_load_and_build(tiny_data: Path, tmp_path: Path, detector: str,
                                         backbone: str) -> None:
    import kdctl.models  # noqa: F401
    from mmdet.registry import DATASETS, MODELS

    spec = _spec(tiny_data, tmp_path, detector, backbone)
    with DefaultScope.overwrite_default_scope("mmdet"):
        teacher_cfg = None
        paths, _ = render_all(spec, tmp_path / "configs", teacher_ckpt=None)
        teacher_cfg = Config.fromfile(str(paths["teacher"]))
        teacher = MODELS.build(teacher_cfg.model)
        ckpt = tmp_path / "t.pth"
        torch.save({"state_dict": teacher.state_dict()}, ckpt)
        paths, _ = render_all(spec, tmp_path / "configs", teacher_ckpt=str(ckpt))
        for role, path in paths.items():
            cfg = Config.fromfile(str(path))
            model = MODELS.build(cfg.model)
            assert type(model).__name__ == {
                "distill": "KDSingleStageDetector",
                "teacher": teacher_cfg.model.type}.get(role, teacher_cfg.model.type)
            assert cfg.model.bbox_head.num_classes == 1
        dataset = DATASETS.build(Config.fromfile(str(paths["student"])).train_dataloader.dataset)
        assert len(dataset) == 4 and dataset.metainfo["classes"] == ("Tree",)


def test_rerender_keeps_a_user_edited_config(tiny_data: Path, tmp_path: Path) -> None:
    spec = _spec(tiny_data, tmp_path, "atss")
    out = tmp_path / "configs"
    paths, backups = render_all(spec, out)
    assert backups == []
    assert render_all(spec, out)[1] == []  # unchanged files are simply rewritten
    paths["student"].write_text(paths["student"].read_text() + "\n# my edit\n")
    _, backups = render_all(spec, out)
    assert len(backups) == 1 and "# my edit" in backups[0].read_text()
    assert "# my edit" not in paths["student"].read_text()
