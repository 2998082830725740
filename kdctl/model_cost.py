"""What a detector costs to run: parameters, FLOPs and latency per image.

FLOPs come from MMEngine's FlopAnalyzer (fvcore's counter), which traces the network
(backbone, neck, head; no NMS) at the spec's image size and counts one fused multiply-add
as one FLOP, as fvcore and most detection papers do. Latency is wall time per image of the
whole test step (preprocessing, network, box decoding and NMS) on the current device,
after two untimed warm-up iterations (the median of up to 20 timed ones).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

WARMUP_ITERS = 2
TIMED_ITERS = 20
TIME_BUDGET_S = 3.0


@dataclass
class ModelCost:
    params: int
    flops: int | None  # None when the network cannot be traced
    image_size: tuple[int, int]  # width, height
    latency_ms: float
    latency_device: str


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, image_size: tuple[int, int]) -> int | None:
    """FLOPs of one forward pass of a (1, 3, height, width) image."""
    from mmengine.analysis import FlopAnalyzer  # noqa: PLC0415

    width, height = image_size
    device = next(model.parameters()).device
    inputs = (torch.randn(1, 3, height, width, device=device),)
    model.eval()
    try:
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analyzer.total())
    except Exception as exc:  # noqa: BLE001 (a model that cannot be traced still gets a report)
        log.warning("FLOPs not counted for %s: %s", type(model).__name__, exc)
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def measure_latency(model: nn.Module, batch: dict[str, Any], warmup: int = WARMUP_ITERS,
                    iters: int = TIMED_ITERS, budget_s: float = TIME_BUDGET_S) -> float:
    """Median milliseconds per image of `model.test_step` on a batch of one image: at
    least 3 timed iterations, at most `iters`, stopping early once `budget_s` is spent
    (the median resists other processes sharing the CPU)."""
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.eval()
    times: list[float] = []
    with torch.no_grad():
        for _ in range(warmup):
            model.test_step(batch)
        started = time.perf_counter()
        while len(times) < iters and (len(times) < 3 or
                                      time.perf_counter() - started < budget_s):
            sync()
            start = time.perf_counter()
            model.test_step(batch)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / len(batch["inputs"])


def model_cost(model: nn.Module, batch: dict[str, Any],
               image_size: tuple[int, int]) -> ModelCost:
    device = next(model.parameters()).device
    latency = measure_latency(model, batch)
    return ModelCost(count_params(model), count_flops(model, image_size),
                     tuple(image_size), round(latency, 2), device_name(device))
