"""Shared fixtures: a tiny real dataset (DeepForest quick tiles) and spec builders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train and 2 val 400x400 tiles of real DeepForest images, in COCO format."""
    from kdctl.data.deepforest import prepare_deepforest

    root = tmp_path_factory.mktemp("deepforest")
    prepare_deepforest(root, quick=True)
    return root


def tiny_spec_dict(data_root: Path, work_dir: Path, **sections: Any) -> dict[str, Any]:
    """A spec small enough to train in seconds on 2 CPU cores."""
    small = dict(detector="atss", num_levels=3, neck_channels=16,
                 head=dict(feat_channels=32, stacked_convs=1, anchor_scale=4))
    spec = dict(
        name="tiny",
        data=dict(train_ann=str(data_root / "annotations/train.json"),
                  train_images=str(data_root / "images"),
                  val_ann=str(data_root / "annotations/val.json"),
                  val_images=str(data_root / "images"),
                  classes=["Tree"], image_size=[128, 128]),
        teacher=dict(small, backbone=dict(name="resnet18")),
        student=dict(small, backbone=dict(name="resnet18")),
        optimizer=dict(lr=0.005, warmup_iters=2),
        schedule=dict(epochs=1, teacher_epochs=1, batch_size=2, num_workers=0),
        tracking=dict(mode="disabled"),
        runtime=dict(device="cpu", work_dir=str(work_dir)),
    )
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
