"""prepare_deepforest on the real images shipped with the deepforest 2.1.0 package."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from PIL import Image

from kdctl.data import deepforest
from kdctl.data.coco_checks import check_coco
from kdctl.data.deepforest import (
    DatasetSummary,
    SPLIT_BY_SOURCE,
    clip_to_tile,
    prepare_deepforest,
    tile_origins,
)
from kdctl.errors import KdctlError


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> DatasetSummary:
    return prepare_deepforest(tmp_path_factory.mktemp("quick"), quick=True)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> DatasetSummary:
    return prepare_deepforest(tmp_path_factory.mktemp("full"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(file_name: str) -> str:
    return file_name.rsplit("_x", 1)[0]


def test_tile_origins_cover_without_gaps() -> None:
    assert tile_origins(400, 400) == [0]
    assert tile_origins(300, 400) == [0]
    assert tile_origins(800, 400) == [0, 400]
    assert tile_origins(1249, 400) == [0, 400, 800, 849]


def test_clip_keeps_boxes_half_visible() -> None:
    boxes = [(390, 0, 410, 10),  # exactly half inside the tile [0, 400)
             (395, 0, 415, 10),  # a quarter inside
             (10, 10, 20, 30)]
    assert clip_to_tile(boxes, 0, 0, 400, 400, 0.5) == ((390, 0, 10, 10), (10, 10, 10, 20))


def test_quick_writes_four_and_two_tiles(quick: DatasetSummary) -> None:
    assert (quick.train_images, quick.val_images) == (4, 2)
    for ann in (quick.train_ann, quick.val_ann):
        for img in _load(ann)["images"]:
            assert (quick.image_dir / img["file_name"]).is_file()
    assert len(list(quick.image_dir.iterdir())) == 6


@pytest.mark.parametrize("name", ["quick", "full"])
def test_split_by_source_image(name: str, request: pytest.FixtureRequest) -> None:
    summary = request.getfixturevalue(name)
    train = {_source(i["file_name"]) for i in _load(summary.train_ann)["images"]}
    val = {_source(i["file_name"]) for i in _load(summary.val_ann)["images"]}
    assert train <= set(SPLIT_BY_SOURCE["train"]) and val <= set(SPLIT_BY_SOURCE["val"])
    assert not train & val


@pytest.mark.parametrize("name", ["quick", "full"])
def test_counts_match_json(name: str, request: pytest.FixtureRequest) -> None:
    summary = request.getfixturevalue(name)
    train, val = _load(summary.train_ann), _load(summary.val_ann)
    assert (summary.train_images, summary.train_boxes) == (
        len(train["images"]), len(train["annotations"]))
    assert (summary.val_images, summary.val_boxes) == (len(val["images"]), len(val["annotations"]))
    assert train["categories"] == [{"id": 1, "name": "Tree"}] == val["categories"]
    assert summary.classes == ["Tree"] and 10 < summary.median_box_px < 100


def test_full_tiles_and_boxes(full: DatasetSummary) -> None:
    # 2299x2472 -> 6x7 tiles; 1249x1035 -> 4x3; two 400x400 images -> 1 each.
    assert (full.train_images, full.val_images) == (42, 14)
    assert full.train_boxes + full.val_boxes >= 900

    for ann_file in (full.train_ann, full.val_ann):
        data = _load(ann_file)
        sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
        assert set(sizes.values()) == {(400, 400)}
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 400 and y + h <= 400
            assert ann["area"] == w * h and ann["iscrowd"] == 0
    with Image.open(full.image_dir / "OSBS_029_x0_y0.png") as im:
        assert (im.size, im.mode) == ((400, 400), "RGB")


def test_output_passes_coco_checks(full: DatasetSummary) -> None:
    for split, ann_file in (("train", full.train_ann), ("val", full.val_ann)):
        result = check_coco(ann_file, full.image_dir, split, classes=["Tree"])
        assert result.errors == []
        assert result.image_modes == {"RGB": result.num_images}


def test_rerun_same_params_reuses(quick: DatasetSummary) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in quick.image_dir.iterdir()}
    ann_mtime = quick.train_ann.stat().st_mtime_ns
    again = prepare_deepforest(quick.root, quick=True)
    assert again == quick
    assert {p.name: p.stat().st_mtime_ns for p in quick.image_dir.iterdir()} == before
    assert quick.train_ann.stat().st_mtime_ns == ann_mtime


def test_other_params_raise(quick: DatasetSummary) -> None:
    with pytest.raises(KdctlError) as info:
        prepare_deepforest(quick.root, tile_size=300, quick=True)
    msg = str(info.value)
    assert str(quick.root) in msg and "tile_size: 400 -> 300" in msg
    assert "pass --overwrite" in msg and "another --out" in msg


def test_overwrite_rebuilds_and_keeps_user_files(tmp_path: Path) -> None:
    prepare_deepforest(tmp_path, quick=True)
    (tmp_path / "images" / "mine.png").write_bytes(b"user file")
    (tmp_path / "notes.txt").write_text("keep me")

    summary = prepare_deepforest(tmp_path, tile_size=300, quick=True, overwrite=True)
    names = {i["file_name"] for s in ("train", "val")
             for i in _load(tmp_path / "annotations" / f"{s}.json")["images"]}
    on_disk = {p.name for p in summary.image_dir.iterdir()}
    assert on_disk == names | {"mine.png"}  # the 400 px tiles are gone, the user's file not
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_foreign_annotations_raise(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text("{}")
    with pytest.raises(KdctlError, match="not written by kdctl"):
        prepare_deepforest(tmp_path, quick=True)


def test_bad_tile_size_raises(tmp_path: Path) -> None:
    with pytest.raises(KdctlError, match="tile_size: must be an integer >= 32, got 0"):
        prepare_deepforest(tmp_path, tile_size=0)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(deepforest.importlib.metadata, "distribution", not_found)
    with pytest.raises(KdctlError, match="pip install --no-deps deepforest==2.1.0"):
        deepforest.deepforest_data_dir()
