"""Augmentation: RandomTranspose moves boxes with the pixels; the spec renders the
pipeline it asks for."""

import numpy as np
import pytest
import torch

from kdctl.render import render_config
from kdctl.spec import Spec

from tests.conftest import tiny_spec_dict


def _results(h: int = 40, w: int = 60) -> dict:
    from mmdet.structures.bbox import HorizontalBoxes

    img = np.zeros((h, w, 3), np.uint8)
    img[5:15, 30:50] = 255  # a 20 wide, 10 high patch at x 30-50, y 5-15
    boxes = HorizontalBoxes(torch.tensor([[30.0, 5.0, 50.0, 15.0]]))
    return dict(img=img, img_shape=(h, w), gt_bboxes=boxes)


def test_transpose_moves_boxes_with_pixels():
    from kdctl.models.transforms import RandomTranspose

    out = RandomTranspose(prob=1.0).transform(_results())
    assert out["img"].shape == (60, 40, 3)
    assert out["img_shape"] == (60, 40)
    x1, y1, x2, y2 = out["gt_bboxes"].tensor[0].int().tolist()
    assert (x1, y1, x2, y2) == (5, 30, 15, 50)
    patch = out["img"][y1:y2, x1:x2]
    assert patch.min() == 255 and out["img"].sum() == patch.sum()  # all white is inside


def test_transpose_prob_zero_is_identity_and_bad_prob_rejected():
    from kdctl.models.transforms import RandomTranspose

    res = _results()
    img = res["img"].copy()
    out = RandomTranspose(prob=0.0).transform(res)
    assert np.array_equal(out["img"], img)
    with pytest.raises(ValueError, match="prob"):
        RandomTranspose(prob=1.5)


def test_augment_section_renders_pipeline(tiny_data, tmp_path):
    d = tiny_spec_dict(tiny_data, tmp_path)
    plain = render_config(Spec.model_validate(d), "student", None, {})
    assert "direction='horizontal'" in plain
    assert "vertical" not in plain and "RandomTranspose" not in plain
    d["data"]["augment"] = dict(flip=["horizontal", "vertical"], rot90=True, color=True)
    cfg = render_config(Spec.model_validate(d), "student", None, {})
    for piece in ("RandomTranspose", "direction='vertical'", "PhotoMetricDistortion"):
        assert piece in cfg


def test_augment_rejects_repeated_direction(tiny_data, tmp_path):
    from pydantic import ValidationError

    d = tiny_spec_dict(tiny_data, tmp_path)
    d["data"]["augment"] = dict(flip=["vertical", "vertical"])
    with pytest.raises(ValidationError, match="each direction once"):
        Spec.model_validate(d)
