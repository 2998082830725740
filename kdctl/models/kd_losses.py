"""Logit, box and feature distillation losses for dense detectors.

ATSS, RetinaNet and FCOS classify with one sigmoid per class, so the teacher's soft
target at a location is a set of independent Bernoulli probabilities, not a categorical
distribution: the matching KD objective is the per-class binary KL divergence. A softmax
KL over those logits would invent a competition between classes that the heads never
learnt. Heads that do use a softmax (RetinaNet with ``use_sigmoid=False``) get the
softmax KL. Both are scaled by T^2 so their gradients keep the same size as T changes.

Class scores say where the objects are; the box KD passes on where their edges are: an L1
between the two heads' box regressions, weighted by the teacher's confidence that there is
an object at that location (on the DeepForest demo it gives most of the KD gain).

All losses are computed in float32, whatever the autocast dtype, so that logits of
+-60 at T=0.05 or T=100 stay finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOGIT_LOSSES = ("sigmoid_kl", "softmax_kl")


def sigmoid_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
               focal_gamma: float = 0.0) -> Tensor:
    """Binary KL(teacher || student) per class at temperature T, times T^2.

    With ``focal_gamma`` > 0 each term is weighted by |p_s - p_t|^gamma, as the focal
    loss weights its terms: the many background locations on which student and teacher
    already agree stop drowning out the few where they differ.

    Inputs are (..., C) logits; returns the elementwise KL, same shape.
    """
    s = student_logits.float() / temperature
    t = teacher_logits.float() / temperature
    p_t = torch.sigmoid(t)
    # log p = logsigmoid(x) and log(1 - p) = logsigmoid(-x) are exact for any |x|
    kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (
        F.logsigmoid(-t) - F.logsigmoid(-s))
    if focal_gamma > 0:
        kl = kl * (torch.sigmoid(s) - p_t).abs().pow(focal_gamma)
    return kl * temperature**2


def softmax_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) of the softmax over the last dim at temperature T, times T^2.

    Returns one value per location, shape (...,).
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1)
    return kl * temperature**2


def flatten_levels(cls_scores: list[Tensor], channels: int) -> Tensor:
    """(N, A*C, H, W) maps of every FPN level -> (locations, C) in one tensor."""
    flat = [s.permute(0, 2, 3, 1).reshape(-1, channels) for s in cls_scores]
    return torch.cat(flat, dim=0)


def teacher_fg_prob(teacher_logits: Tensor, kind: str) -> Tensor:
    """Per location, the teacher's probability that something is there (T=1)."""
    t = teacher_logits.float()
    if kind == "sigmoid_kl":
        return torch.sigmoid(t).max(dim=-1).values
    return 1 - torch.softmax(t, dim=-1)[..., -1]  # mmdet puts background last


def teacher_foreground(teacher_logits: Tensor, kind: str, num_images: int) -> Tensor:
    """How many locations the teacher calls foreground, softly: the sum over locations of
    its top class probability at T=1 (for softmax heads, 1 - background probability),
    at least one per image. It plays the role of the focal loss's number of positives."""
    return teacher_fg_prob(teacher_logits, kind).sum().clamp(min=float(num_images))


def logit_kd_loss(student_scores: list[Tensor], teacher_scores: list[Tensor],
                  channels: int, temperature: float, kind: str,
                  normalize: str = "locations", focal_gamma: float = 0.0) -> Tensor:
    """KL summed over classes, averaged over anchor locations (`normalize="locations"`),
    or summed over locations and divided by the teacher's soft foreground count
    (`normalize="teacher_fg"`, on the scale of the task's focal loss, and far stronger on
    sparse scenes)."""
    if kind not in LOGIT_LOSSES:
        raise ValueError(f"logit loss must be one of {LOGIT_LOSSES}, got {kind!r}")
    s = flatten_levels(student_scores, channels)
    t = flatten_levels(teacher_scores, channels)
    if focal_gamma > 0 and kind != "sigmoid_kl":
        raise ValueError("focal_gamma applies to sigmoid_kl only")
    per_location = (sigmoid_kl(s, t, temperature, focal_gamma).sum(-1)
                    if kind == "sigmoid_kl"
                    else softmax_kl(s, t, temperature))
    if normalize == "locations":
        return per_location.mean()
    num_images = student_scores[0].shape[0]
    return per_location.sum() / teacher_foreground(t, kind, num_images)


def box_kd_loss(student_boxes: list[Tensor], teacher_boxes: list[Tensor],
                teacher_scores: list[Tensor], channels: int, kind: str) -> Tensor:
    """L1 between the student's and the teacher's box regressions, location by location,
    weighted by the teacher's foreground probability there and averaged by those weights.

    The heads regress deltas against anchors; teacher and student share their anchor
    generator (the spec's pairing rule), so equal deltas mean equal boxes. The teacher's
    boxes on locations it considers background carry no information and get no weight.
    """
    s = flatten_levels(student_boxes, 4).float()
    t = flatten_levels(teacher_boxes, 4).float()
    w = teacher_fg_prob(flatten_levels(teacher_scores, channels), kind)
    return (w * (s - t).abs().sum(-1)).sum() / w.sum().clamp(min=1e-6)


def feature_kd_loss(student_feats: tuple[Tensor, ...],
                    teacher_feats: tuple[Tensor, ...]) -> Tensor:
    """Mean squared error between FPN maps, averaged over levels."""
    losses = [F.mse_loss(s.float(), t.float()) for s, t in zip(student_feats, teacher_feats)]
    return torch.stack(losses).mean()
