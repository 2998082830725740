"""The KD losses against values computed by hand, and their numerical range."""

from __future__ import annotations

import math

import pytest
import torch

from kdctl.models.kd_losses import box_kd_loss, logit_kd_loss, sigmoid_kl, softmax_kl


def _binary_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sigmoid_kl_matches_hand_computation() -> None:
    t, s, temp = 2.0, -1.0, 4.0
    expected = _binary_kl(_sig(t / temp), _sig(s / temp)) * temp**2
    got = sigmoid_kl(torch.tensor([s]), torch.tensor([t]), temp)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # by hand: p=sigmoid(0.5)=0.622459, q=sigmoid(-0.25)=0.437823
    assert expected == pytest.approx(16 * 0.068707, rel=1e-4)


def test_softmax_kl_matches_hand_computation() -> None:
    t = [1.0, 0.0, -1.0]
    s = [0.0, 0.5, 0.0]
    temp = 2.0

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x / temp) for x in v]
        return [x / sum(e) for x in e]

    p, q = softmax(t), softmax(s)
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * temp**2
    got = softmax_kl(torch.tensor([s]), torch.tensor([t]), temp)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_for_equal_logits_and_positive_otherwise() -> None:
    x = torch.randn(50, 3)
    assert sigmoid_kl(x, x, 4.0).abs().max().item() < 1e-6
    assert softmax_kl(x, x, 4.0).abs().max().item() < 1e-6
    y = x + torch.randn(50, 3)
    assert sigmoid_kl(y, x, 4.0).min().item() >= -1e-6
    assert sigmoid_kl(y, x, 4.0).sum().item() > 0.1


@pytest.mark.parametrize("temp", [0.05, 100.0])
@pytest.mark.parametrize("kind", ["sigmoid_kl", "softmax_kl"])
def test_losses_finite_at_extreme_logits_and_temperatures(temp: float, kind: str) -> None:
    s = torch.tensor([[60.0, -60.0, 60.0]], requires_grad=True)
    t = torch.tensor([[-60.0, 60.0, 60.0]])
    scores_s = [s.view(1, 3, 1, 1)]
    scores_t = [t.view(1, 3, 1, 1)]
    loss = logit_kd_loss(scores_s, scores_t, 3, temp, kind)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert torch.isfinite(s.grad).all()


def test_losses_are_float32_under_half_inputs() -> None:
    s = torch.randn(4, 2).half()
    t = torch.randn(4, 2).half()
    assert sigmoid_kl(s, t, 4.0).dtype == torch.float32
    assert softmax_kl(s, t, 4.0).dtype == torch.float32


def test_logit_kd_reductions() -> None:
    s = torch.randn(2, 6, 3, 3)  # 2 anchors x 3 classes per location
    t = torch.randn(2, 6, 3, 3)
    flat_s = s.permute(0, 2, 3, 1).reshape(-1, 3)
    flat_t = t.permute(0, 2, 3, 1).reshape(-1, 3)
    kl = sigmoid_kl(flat_s, flat_t, 2.0).sum(-1)
    assert flat_s.shape[0] == 2 * 3 * 3 * 2
    got = logit_kd_loss([s], [t], 3, 2.0, "sigmoid_kl")  # default: mean over locations
    assert got.item() == pytest.approx(kl.mean().item(), rel=1e-6)
    # KL sum over the teacher's soft foreground count (its top class probability)
    fg = torch.sigmoid(flat_t).max(-1).values.sum()
    got = logit_kd_loss([s], [t], 3, 2.0, "sigmoid_kl", normalize="teacher_fg")
    assert got.item() == pytest.approx((kl.sum() / fg).item(), rel=1e-6)


def test_teacher_foreground_count_is_at_least_one_per_image() -> None:
    s = torch.zeros(2, 1, 4, 4)
    t = torch.full((2, 1, 4, 4), -30.0)  # a teacher that sees nothing
    s[0, 0, 0, 0] = 5.0
    got = logit_kd_loss([s], [t], 1, 1.0, "sigmoid_kl", normalize="teacher_fg")
    kl = sigmoid_kl(s.permute(0, 2, 3, 1).reshape(-1, 1), t.permute(0, 2, 3, 1).reshape(-1, 1),
                    1.0).sum()
    assert got.item() == pytest.approx(kl.item() / 2, rel=1e-5)


def test_focal_gamma_weights_each_term_by_disagreement() -> None:
    s = torch.tensor([[2.0], [-3.0], [0.5]])
    t = torch.tensor([[-1.0], [-3.0], [4.0]])
    T = 2.0
    plain = sigmoid_kl(s, t, T)
    focal = sigmoid_kl(s, t, T, focal_gamma=2.0)
    weight = (torch.sigmoid(s / T) - torch.sigmoid(t / T)).abs() ** 2
    assert torch.allclose(focal, plain * weight)
    assert focal[1].item() == 0.0  # agreement costs nothing
    assert torch.equal(sigmoid_kl(s, t, T, focal_gamma=0.0), plain)
    with pytest.raises(ValueError, match="sigmoid_kl only"):
        logit_kd_loss([s.view(1, 1, 3, 1)], [t.view(1, 1, 3, 1)], 1, T, "softmax_kl",
                      focal_gamma=1.0)


def test_box_kd_is_l1_weighted_by_teacher_foreground() -> None:
    # one image, one level of 1x2 locations, one class: (N, 4, H, W) boxes, (N, 1, H, W) logits
    student = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]).T.reshape(1, 4, 1, 2)
    teacher = torch.tensor([[0.5, -0.5, 0.0, 1.0], [1.0, 1.0, 1.0, 3.0]]).T.reshape(1, 4, 1, 2)
    logits = torch.tensor([2.0, -1.0]).reshape(1, 1, 1, 2)
    w = [_sig(2.0), _sig(-1.0)]
    l1 = [0.5 + 0.5 + 0.0 + 1.0, 2.0]
    expected = (w[0] * l1[0] + w[1] * l1[1]) / (w[0] + w[1])
    got = box_kd_loss([student], [teacher], [logits], 1, "sigmoid_kl")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # equal boxes: nothing to learn
    assert box_kd_loss([teacher], [teacher], [logits], 1, "sigmoid_kl").item() == 0.0


def test_box_kd_ignores_where_the_teacher_sees_background() -> None:
    boxes_s, boxes_t = torch.zeros(1, 4, 1, 2), torch.zeros(1, 4, 1, 2)
    boxes_t[..., 1] = 5.0  # the teacher disagrees only at the second location...
    logits = torch.tensor([3.0, -40.0]).reshape(1, 1, 1, 2)  # ...which it calls background
    assert box_kd_loss([boxes_s], [boxes_t], [logits], 1, "sigmoid_kl").item() < 1e-12
