"""check_coco: one test per rule, on tiny COCO files and images made in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kdctl.data.coco_checks import check_coco, write_coco
from kdctl.errors import KdctlError


def _image(img_dir: Path, name: str, size: tuple[int, int] = (20, 10), mode: str = "RGB"):
    img_dir.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(img_dir / name)


def _coco(images: list[dict], anns: list[dict], cats: list[str] = ("tree",)) -> dict:
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n} for i, n in enumerate(cats, start=1)],
    }


def _img(image_id: int, name: str, size: tuple[int, int] = (20, 10)) -> dict:
    return {"id": image_id, "file_name": name, "width": size[0], "height": size[1]}


def _ann(ann_id: int, image_id: int, bbox: list[float], cat: int = 1) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0}


def _check(tmp_path: Path, data: Any, split: str = "train", **kwargs: Any):
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(data if isinstance(data, str) else json.dumps(data))
    return check_coco(ann_file, tmp_path / "img", split, **kwargs)


@pytest.fixture
def two_images(tmp_path: Path) -> list[dict]:
    _image(tmp_path / "img", "a.png")
    _image(tmp_path / "img", "b.png")
    return [_img(1, "a.png"), _img(2, "b.png")]


def test_clean_file_passes(tmp_path: Path, two_images: list[dict]) -> None:
    data = _coco(two_images, [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 2, [0, 0, 20, 10])])
    result = _check(tmp_path, data, classes=["tree"])
    assert result.ok and result.warnings == [] and result.notes == []
    assert (result.num_images, result.num_boxes, result.num_empty_images) == (2, 2, 0)
    assert result.image_modes == {"RGB": 2}
    assert result.data == data


# --- file-level problems -------------------------------------------------------------


def test_missing_annotation_file(tmp_path: Path) -> None:
    result = check_coco(tmp_path / "nope.json", tmp_path, "train")
    assert result.errors == [f"{tmp_path / 'nope.json'}: annotation file not found; check the path"]


def test_malformed_json_is_one_error(tmp_path: Path) -> None:
    result = _check(tmp_path, '{"images": [\n  {"id": 1,}\n]}')
    assert len(result.errors) == 1
    assert "not valid JSON (line 2" in result.errors[0]
    assert result.data == {}


def test_missing_top_level_keys(tmp_path: Path) -> None:
    result = _check(tmp_path, {"images": [], "annotations": {}})
    assert len(result.errors) == 1
    assert "missing or not a list: annotations, categories" in result.errors[0]


def test_top_level_not_an_object(tmp_path: Path) -> None:
    result = _check(tmp_path, [1, 2])
    assert len(result.errors) == 1 and "top level is a list" in result.errors[0]


def test_records_lacking_keys_or_bad_values(tmp_path: Path) -> None:
    data = _coco([{"id": 1, "file_name": "a.png", "width": 20}, _img(2, "b.png")],
                 [{"id": 7, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3]},
                  {"id": [8], "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    result = _check(tmp_path, data)
    assert len(result.errors) == 1
    err = result.errors[0]
    assert "images[0] (id=1) lacks height" in err
    assert "annotation id=7 has bbox=[1, 2, 3]" in err
    assert "annotations[1] has id=[8]" in err


# --- ids, categories and links -------------------------------------------------------


def test_duplicate_image_and_annotation_ids(tmp_path: Path, two_images: list[dict]) -> None:
    images = two_images + [_img(2, "a.png")]
    anns = [_ann(5, 1, [1, 1, 2, 2]), _ann(5, 2, [1, 1, 2, 2]), _ann(6, 2, [1, 1, 2, 2])]
    result = _check(tmp_path, _coco(images, anns))
    assert any("duplicate image ids 2;" in e for e in result.errors)
    assert any("duplicate annotation ids 5;" in e for e in result.errors)


def test_unknown_category(tmp_path: Path, two_images: list[dict]) -> None:
    anns = [_ann(1, 1, [1, 1, 2, 2]), _ann(2, 1, [1, 1, 2, 2], cat=9),
            _ann(3, 2, [1, 1, 2, 2], cat=9)]
    result = _check(tmp_path, _coco(two_images, anns))
    assert result.errors == [
        f"{tmp_path / 'ann.json'}: annotations 2, 3 use category_id 9, which is not in "
        "categories (ids 1); fix the category_id or add the category"
    ]
    assert [a["id"] for a in result.data["annotations"]] == [1]


def test_annotation_on_missing_image(tmp_path: Path, two_images: list[dict]) -> None:
    anns = [_ann(1, 1, [1, 1, 2, 2]), _ann(4, 42, [1, 1, 2, 2])]
    result = _check(tmp_path, _coco(two_images, anns))
    assert len(result.errors) == 1
    assert "annotations 4 use image_id 42, which is not in images" in result.errors[0]
    assert [a["id"] for a in result.data["annotations"]] == [1]


def test_classes_differ_from_categories(tmp_path: Path, two_images: list[dict]) -> None:
    data = _coco(two_images, [_ann(1, 1, [1, 1, 2, 2])], cats=["tree", "shrub"])
    result = _check(tmp_path, data, classes=["shrub", "tree"])
    assert len(result.errors) == 1
    assert result.errors[0].startswith(
        "data.classes: ['shrub', 'tree'] differ from the category names ['tree', 'shrub'] in ")
    assert _check(tmp_path, data, classes=["tree", "shrub"]).ok


# --- boxes ---------------------------------------------------------------------------


def test_zero_size_boxes_dropped_or_strict_error(tmp_path: Path, two_images: list[dict]) -> None:
    anns = [_ann(1, 1, [1, 1, 0, 3]), _ann(2, 1, [1, 1, 3, -1]), _ann(3, 2, [1, 1, 2, 2])]
    data = _coco(two_images, anns)

    result = _check(tmp_path, data)
    assert result.ok and result.num_dropped_boxes == 2
    assert "2 boxes with zero or negative width/height (annotation ids 1, 2)" in result.warnings[0]
    assert [a["id"] for a in result.data["annotations"]] == [3]

    strict = _check(tmp_path, data, strict=True)
    assert len(strict.errors) == 1 and "(annotation ids 1, 2)" in strict.errors[0]
    assert "strict" in strict.errors[0]


def test_boxes_outside_image_clipped_or_dropped(tmp_path: Path, two_images: list[dict]) -> None:
    anns = [_ann(1, 1, [-2, 4, 6, 10]),  # partly left and below of a 20x10 image
            _ann(2, 1, [25, 1, 3, 3]),  # fully right of it
            _ann(3, 2, [2, 2, 3, 3])]
    result = _check(tmp_path, _coco(two_images, anns))
    assert result.ok
    assert (result.num_clipped_boxes, result.num_dropped_boxes) == (1, 1)
    clipped = result.data["annotations"][0]
    assert clipped["bbox"] == [0, 4, 4, 6] and clipped["area"] == 24
    assert [a["id"] for a in result.data["annotations"]] == [1, 3]
    assert any("1 boxes lie fully outside their image and were dropped (annotation ids 2)"
               in w for w in result.warnings)
    assert any("1 boxes reach past their image border and were clipped to it "
               "(annotation ids 1)" in w for w in result.warnings)


def test_missing_area_and_iscrowd_filled(tmp_path: Path, two_images: list[dict]) -> None:
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 3]}
    result = _check(tmp_path, _coco(two_images[:1], [ann]))
    assert result.data["annotations"][0]["area"] == 6
    assert result.data["annotations"][0]["iscrowd"] == 0
    assert "1 annotations lacked area or iscrowd" in result.warnings[0]


# --- empty images --------------------------------------------------------------------


def test_empty_train_images_keep_and_drop(tmp_path: Path, two_images: list[dict]) -> None:
    data = _coco(two_images, [_ann(1, 1, [1, 1, 2, 2])])

    kept = _check(tmp_path, data, empty_policy="keep")
    assert kept.num_empty_images == 1 and kept.num_images == 2
    assert "1 train images have no boxes (image ids 2); kept" in kept.warnings[0]

    dropped = _check(tmp_path, data, empty_policy="drop")
    assert dropped.num_empty_images == 1 and dropped.num_images == 1
    assert [img["id"] for img in dropped.data["images"]] == [1]
    assert "dropped (empty_policy=drop)" in dropped.warnings[0]


def test_empty_val_images_always_kept(tmp_path: Path, two_images: list[dict]) -> None:
    result = _check(tmp_path, _coco(two_images, []), split="val", empty_policy="drop")
    assert result.ok and result.warnings == []
    assert result.num_images == 2 and result.num_empty_images == 2
    assert "2 of 2 val images have no boxes; kept" in result.notes[0]


def test_bad_policy_or_split_raises(tmp_path: Path) -> None:
    with pytest.raises(KdctlError, match="empty_policy: unknown policy 'skip'"):
        check_coco(tmp_path / "a.json", tmp_path, "train", empty_policy="skip")
    with pytest.raises(KdctlError, match="split: unknown split 'dev'"):
        check_coco(tmp_path / "a.json", tmp_path, "dev")


# --- image files ---------------------------------------------------------------------


def test_missing_files_are_one_error(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    images = [_img(i, f"m{i:02d}.png") for i in range(1, 26)]
    result = _check(tmp_path, _coco(images, []), split="val")
    assert len(result.errors) == 1
    err = result.errors[0]
    assert "25 image files not found" in err and "(25 in all)" in err
    assert "m01.png" in err and "m20.png" in err and "m21.png" not in err


def test_missing_image_folder(tmp_path: Path) -> None:
    result = _check(tmp_path, _coco([_img(1, "a.png")], []), split="val")
    assert result.errors == [
        f"{tmp_path / 'ann.json'}: image folder {tmp_path / 'img'} not found; "
        "check the image path"
    ]


def test_non_rgb_modes_counted_and_warned(tmp_path: Path) -> None:
    img_dir = tmp_path / "img"
    _image(img_dir, "gray.png", mode="L")
    _image(img_dir, "deep.png", mode="I;16")
    _image(img_dir, "print.jpg", mode="CMYK")
    _image(img_dir, "rgb.png")
    images = [_img(1, "gray.png"), _img(2, "deep.png"), _img(3, "print.jpg"), _img(4, "rgb.png")]
    anns = [_ann(i, i, [1, 1, 2, 2]) for i in range(1, 5)]
    result = _check(tmp_path, _coco(images, anns))
    assert result.ok
    assert result.image_modes == {"CMYK": 1, "I;16": 1, "L": 1, "RGB": 1}
    assert len(result.warnings) == 1
    assert "(CMYK: 1, I;16: 1, L: 1)" in result.warnings[0]
    assert "3-channel 8-bit RGB" in result.warnings[0]


def test_too_many_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    _image(tmp_path / "img", "warn.png", size=(12, 12))  # 144 px: PIL only warns
    _image(tmp_path / "img", "bomb.png", size=(20, 20))  # 400 px: PIL raises
    images = [_img(1, "warn.png", (12, 12)), _img(2, "bomb.png", (20, 20))]
    anns = [_ann(1, 1, [1, 1, 2, 2]), _ann(2, 2, [1, 1, 2, 2])]
    result = _check(tmp_path, _coco(images, anns))
    assert len(result.errors) == 2
    warn_err, bomb_err = sorted(result.errors, key=lambda e: "bomb" in e)
    assert "warn.png: 12x12 = 144 pixels exceeds PIL's limit of 100" in warn_err
    assert "bomb.png" in bomb_err and "400 pixels" in bomb_err
    assert all("PIL.Image.MAX_IMAGE_PIXELS" in e for e in result.errors)


def test_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "junk.png").write_bytes(b"not an image")
    result = _check(tmp_path, _coco([_img(3, "junk.png")], []), split="val")
    assert len(result.errors) == 1
    assert "junk.png: PIL cannot open this image" in result.errors[0]
    assert "image id 3" in result.errors[0]


def test_size_mismatch(tmp_path: Path) -> None:
    _image(tmp_path / "img", "a.png", size=(30, 10))
    data = _coco([_img(1, "a.png", (20, 10))], [_ann(1, 1, [1, 1, 2, 2])])
    result = _check(tmp_path, data)
    assert len(result.errors) == 1
    assert "image id 1 (a.png) says 20x10 but the file is 30x10" in result.errors[0]


# --- writing -------------------------------------------------------------------------


def test_write_coco_round_trips_and_leaves_no_temp(tmp_path: Path) -> None:
    data = _coco([_img(1, "a.png")], [_ann(1, 1, [1, 1, 2, 2])])
    path = tmp_path / "out" / "clean.json"
    write_coco(data, path)
    write_coco(data, path)
    assert json.loads(path.read_text()) == data
    assert [p.name for p in path.parent.iterdir()] == ["clean.json"]


def test_non_rgb_images_load_as_3_channel_8_bit(tmp_path: Path) -> None:
    """What the rendered pipeline's LoadImageFromFile(color_type='color') gives for them."""
    import numpy as np
    from mmcv.transforms import LoadImageFromFile

    load = LoadImageFromFile(color_type="color")
    for name, mode in (("gray.png", "L"), ("deep.png", "I;16"), ("print.jpg", "CMYK")):
        _image(tmp_path, name, mode=mode)
        out = load(dict(img_path=str(tmp_path / name)))
        assert out["img"].shape == (10, 20, 3), name
        assert out["img"].dtype == np.uint8, name
