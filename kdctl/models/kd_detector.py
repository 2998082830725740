"""A single-stage student detector trained against a frozen teacher.

The student's parameters and state dict are exactly those of the plain student (the
teacher is held outside them), so every checkpoint this detector saves loads with
``strict=True`` into the plain student config. The teacher:

- is built from its own config and loaded strictly from its checkpoint;
- never receives gradients and stays in eval mode through every ``train()`` call, so its
  BatchNorm statistics never move;
- runs only as far as the KD losses need, under ``torch.no_grad()``: its classification
  branch for logit KD, its box branch too for box KD, its FPN maps for feature KD; no
  teacher loss, no box decoding, no NMS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS
from torch import Tensor, nn

from kdctl.errors import KdctlError
from kdctl.models.kd_losses import box_kd_loss, feature_kd_loss, logit_kd_loss

# the last classification conv of each supported head class
_CLS_CONV = {"ATSSHead": "atss_cls", "RetinaHead": "retina_cls", "FCOSHead": "conv_cls"}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise KdctlError(f"checkpoint not found: {path}", field="teacher.checkpoint")
    # MMEngine checkpoints pickle their message hub, which weights_only=True refuses;
    # a teacher checkpoint is the user's own training output, loaded as such
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise KdctlError(f"{path} holds no state dict (got {type(ckpt).__name__})",
                         field="teacher.checkpoint")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_strict(model: nn.Module, path: str | Path, field: str = "teacher.checkpoint") -> None:
    """Load a checkpoint with every key and shape matching, or explain what does not."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")

        raise KdctlError(
            f"{path} does not match the {type(model).__name__} built from the spec: "
            f"{len(missing)} missing keys [{some(missing)}], {len(unexpected)} unexpected "
            f"[{some(unexpected)}], {len(wrong_shape)} with the wrong shape "
            f"[{some(wrong_shape)}]; give a checkpoint trained with this spec's teacher "
            f"section (kdctl train-teacher)", field=field)
    model.load_state_dict(state, strict=True)


def cls_logits(head: nn.Module, feats: tuple[Tensor, ...]) -> list[Tensor]:
    """Run only the classification branch of a dense head on every level."""
    conv_name = _CLS_CONV.get(type(head).__name__)
    if conv_name is None:
        raise KdctlError(f"logit KD supports {', '.join(_CLS_CONV)}; got "
                         f"{type(head).__name__}", field="teacher.detector")
    final = getattr(head, conv_name)
    logits = []
    for x in feats:
        for conv in head.cls_convs:
            x = conv(x)
        logits.append(final(x))
    return logits


@MODELS.register_module()
class KDSingleStageDetector(SingleStageDetector):
    """Student detector (backbone, neck, bbox_head as usual) plus a frozen teacher."""

    def __init__(self, *, teacher: dict[str, Any], teacher_ckpt: str | None,
                 temperature: float = 4.0, kd_weight: float = 0.5,
                 logit_loss: str = "sigmoid_kl", feature_weight: float = 0.0,
                 kd_normalize: str = "locations", kd_focal_gamma: float = 0.0,
                 box_weight: float = 0.0, **student: Any) -> None:
        super().__init__(**student)
        if temperature <= 0:
            raise KdctlError(f"must be > 0 (got {temperature})", field="distill.temperature")
        if teacher_ckpt is None:
            raise KdctlError("a distilled student needs a trained teacher; pass --teacher "
                             "CKPT or set teacher.checkpoint", field="teacher.checkpoint")
        self.temperature = float(temperature)
        self.kd_weight = float(kd_weight)
        self.logit_loss = logit_loss
        self.feature_weight = float(feature_weight)
        self.box_weight = float(box_weight)
        self.kd_normalize = kd_normalize
        self.kd_focal_gamma = float(kd_focal_gamma)
        self.teacher_ckpt = str(teacher_ckpt)

        teacher_model = MODELS.build(teacher)
        load_strict(teacher_model, teacher_ckpt)
        teacher_model.requires_grad_(False)
        teacher_model.eval()
        # stored outside nn.Module's registries: not in parameters(), state_dict() or DDP
        self.__dict__["teacher"] = teacher_model

    @property
    def teacher_model(self) -> nn.Module:
        return self.__dict__["teacher"]

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> KDSingleStageDetector:
        super()._apply(fn, *args, **kwargs)
        self.teacher_model._apply(fn, *args, **kwargs)  # follow .to(device) / .half()
        return self

    def train(self, mode: bool = True) -> KDSingleStageDetector:
        super().train(mode)
        self.teacher_model.train(False)
        return self

    def _teacher_inputs(self, student_inputs: Tensor) -> Tensor:
        """Re-normalise the student's input for the teacher when their backbones expect
        different mean/std (e.g. an EfficientNet-Lite teacher and a ResNet student)."""
        s, t = self.data_preprocessor, self.teacher_model.data_preprocessor
        if not getattr(s, "_enable_normalize", False) or (
                torch.equal(s.mean, t.mean) and torch.equal(s.std, t.std)):
            return student_inputs
        return (student_inputs * s.std + s.mean - t.mean) / t.std

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict[str, Tensor]:
        student_feats = self.extract_feat(batch_inputs)
        outs = self.bbox_head(student_feats)
        gt_instances, gt_ignore, img_metas = unpack_gt_instances(batch_data_samples)
        losses = self.bbox_head.loss_by_feat(*outs, gt_instances, img_metas, gt_ignore)

        with torch.no_grad():
            teacher_feats = self.teacher_model.extract_feat(self._teacher_inputs(batch_inputs))
            if self.box_weight > 0:  # both branches: the box KD weights by the class scores
                teacher_scores, teacher_boxes = self.teacher_model.bbox_head(teacher_feats)[:2]
            elif self.kd_weight > 0:  # the classification branch only
                teacher_scores = cls_logits(self.teacher_model.bbox_head, teacher_feats)

        channels = self.bbox_head.cls_out_channels
        if self.kd_weight > 0:
            losses["loss_kd_logit"] = self.kd_weight * logit_kd_loss(
                list(outs[0]), teacher_scores, channels, self.temperature, self.logit_loss,
                self.kd_normalize, self.kd_focal_gamma)
        if self.box_weight > 0:
            losses["loss_kd_box"] = self.box_weight * box_kd_loss(
                list(outs[1]), list(teacher_boxes), list(teacher_scores), channels,
                self.logit_loss)
        if self.feature_weight > 0:
            losses["loss_kd_feat"] = self.feature_weight * feature_kd_loss(
                student_feats, teacher_feats)
        return losses
