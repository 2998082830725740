"""Check a COCO annotation file before training and return a cleaned copy plus a report.

Problems that would make training wrong or crash it are errors; problems that can be
repaired safely (degenerate or out-of-image boxes, missing `area`/`iscrowd`) are repaired
in the cleaned copy and reported as warnings. Every message names the file, the ids
involved and the fix. Nothing here raises on bad data: the caller decides what to do
with `result.errors`.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json

EMPTY_POLICIES = ("keep", "drop")
SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("images", "annotations", "categories")
RECORD_KEYS = {
    "images": ("id", "file_name", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
MAX_LISTED = 20


@dataclass
class CocoCheckResult:
    """What `check_coco` found. `data` is the cleaned COCO dict, safe to write and train on
    only when `errors` is empty."""

    ann_file: Path
    split: str
    data: dict[str, Any]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    num_images: int = 0
    num_boxes: int = 0
    num_empty_images: int = 0
    num_clipped_boxes: int = 0
    num_dropped_boxes: int = 0
    image_modes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_coco(
    ann_file: Path,
    img_dir: Path,
    split: str,
    empty_policy: str = "keep",
    strict: bool = False,
    classes: list[str] | None = None,
) -> CocoCheckResult:
    """Check `ann_file` against the images in `img_dir` and return a cleaned copy.

    `empty_policy` ("keep" or "drop") applies to images without boxes on the train split
    only; evaluation splits always keep them. `strict` turns dropped zero-size boxes into
    errors. `classes`, when given, must equal the category names in file order.
    """
    if split not in SPLITS:
        raise KdctlError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}", "split")
    if empty_policy not in EMPTY_POLICIES:
        raise KdctlError(
            f"unknown policy {empty_policy!r}; use one of {', '.join(EMPTY_POLICIES)}",
            "empty_policy",
        )
    ann_file, img_dir = Path(ann_file), Path(img_dir)
    result = CocoCheckResult(ann_file=ann_file, split=split, data={})

    data = _load(ann_file, result)
    if data is None or not _check_structure(data, result):
        return result

    _check_duplicate_ids(data, result)
    _check_classes(data, classes, result)
    _drop_unlinked_annotations(data, result)
    _fix_boxes(data, strict, result)
    _apply_empty_policy(data, empty_policy, result)
    _check_image_files(data, img_dir, result)

    result.data = data
    result.num_images = len(data["images"])
    result.num_boxes = len(data["annotations"])
    return result


def write_coco(data: dict[str, Any], path: Path) -> None:
    """Write a COCO dict to `path` atomically (a reader never sees a half-written file)."""
    atomic_write_json(Path(path), data)


# ---------------------------------------------------------------------------------------
# Loading and structure


def _load(ann_file: Path, result: CocoCheckResult) -> dict[str, Any] | None:
    if not ann_file.is_file():
        result.errors.append(f"{ann_file}: annotation file not found; check the path")
        return None
    try:
        with ann_file.open(encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        result.errors.append(
            f"{ann_file}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the file or export it again"
        )
        return None
    except (OSError, UnicodeDecodeError) as exc:
        result.errors.append(f"{ann_file}: cannot be read ({exc})")
        return None
    if not isinstance(data, dict):
        result.errors.append(
            f"{ann_file}: top level is a {type(data).__name__}, a COCO file is an object "
            f"with keys {', '.join(REQUIRED_KEYS)}"
        )
        return None
    return data


def _check_structure(data: dict[str, Any], result: CocoCheckResult) -> bool:
    """Check keys and field types; later checks rely on them, so any problem here stops."""
    name = result.ann_file
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        result.errors.append(
            f"{name}: missing or not a list: {', '.join(missing)}; a COCO file needs "
            f"top-level lists {', '.join(REQUIRED_KEYS)}"
        )
        return False

    problems = [p for key in REQUIRED_KEYS for p in _record_problems(data[key], key)]
    problems += _id_problems(data) + _value_problems(data)
    if problems:
        shown = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        result.errors.append(f"{name}: malformed records: {shown}{more}")
        return False
    return True


def _record_problems(records: list[Any], key: str) -> list[str]:
    problems = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            problems.append(f"{key}[{i}] is not an object")
            continue
        lacking = [k for k in RECORD_KEYS[key] if k not in rec]
        if lacking:
            problems.append(f"{key}[{i}] (id={rec.get('id')!r}) lacks {', '.join(lacking)}")
    return problems


def _complete(data: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    """Records of `data[key]` that have every required key; the rest are reported already."""
    required = RECORD_KEYS[key]
    return [(i, rec) for i, rec in enumerate(data[key])
            if isinstance(rec, dict) and all(k in rec for k in required)]


def _id_problems(data: dict[str, Any]) -> list[str]:
    id_keys = {"images": ("id",), "annotations": ("id", "image_id", "category_id"),
               "categories": ("id",)}
    problems = []
    for key, keys in id_keys.items():
        for i, rec in _complete(data, key):
            bad = [f"{k}={rec[k]!r}" for k in keys if not _is_id(rec[k])]
            if bad:
                problems.append(
                    f"{key}[{i}] has {', '.join(bad)}; ids must be integers or strings"
                )
    return problems


def _value_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for _, img in _complete(data, "images"):
        if not isinstance(img["file_name"], str):
            problems.append(f"image id={img['id']!r} has file_name={img['file_name']!r}")
        if not all(_is_int(img[k]) and img[k] > 0 for k in ("width", "height")):
            problems.append(
                f"image id={img['id']!r} has width={img['width']!r}, height={img['height']!r};"
                " both must be positive integers"
            )
    for _, ann in _complete(data, "annotations"):
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            problems.append(
                f"annotation id={ann['id']!r} has bbox={bbox!r}; expected [x, y, w, h] numbers"
            )
    return problems


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------
# Ids, categories and links


def _check_duplicate_ids(data: dict[str, Any], result: CocoCheckResult) -> None:
    for key, what in (("images", "image"), ("annotations", "annotation"),
                      ("categories", "category")):
        counts = Counter(rec["id"] for rec in data[key])
        dups = sorted((i for i, n in counts.items() if n > 1), key=str)
        if dups:
            result.errors.append(
                f"{result.ann_file}: duplicate {what} ids {_list(dups)}; "
                f"give every {what} a unique id"
            )


def _check_classes(
    data: dict[str, Any], classes: list[str] | None, result: CocoCheckResult
) -> None:
    # mmdet numbers labels in the file's category order, so the order must match too.
    names = [c["name"] for c in data["categories"]]
    if classes is not None and list(classes) != names:
        result.errors.append(
            f"data.classes: {list(classes)} differ from the category names {names} in "
            f"{result.ann_file}; list the file's category names, in the same order"
        )


def _drop_unlinked_annotations(data: dict[str, Any], result: CocoCheckResult) -> None:
    """Remove annotations that point at a missing category or image; both are errors."""
    cat_ids = {c["id"] for c in data["categories"]}
    img_ids = {img["id"] for img in data["images"]}
    bad_cat: dict[Any, list[Any]] = defaultdict(list)
    bad_img: dict[Any, list[Any]] = defaultdict(list)
    kept = []
    for ann in data["annotations"]:
        if ann["category_id"] not in cat_ids:
            bad_cat[ann["category_id"]].append(ann["id"])
        elif ann["image_id"] not in img_ids:
            bad_img[ann["image_id"]].append(ann["id"])
        else:
            kept.append(ann)
    data["annotations"] = kept

    for cat_id, ann_ids in bad_cat.items():
        result.errors.append(
            f"{result.ann_file}: annotations {_list(ann_ids)} use category_id {cat_id!r}, "
            f"which is not in categories (ids {_list(sorted(cat_ids, key=str))}); "
            "fix the category_id or add the category"
        )
    for img_id, ann_ids in bad_img.items():
        result.errors.append(
            f"{result.ann_file}: annotations {_list(ann_ids)} use image_id {img_id!r}, "
            "which is not in images; fix the image_id or add the image"
        )


# ---------------------------------------------------------------------------------------
# Boxes and empty images


def _fix_boxes(data: dict[str, Any], strict: bool, result: CocoCheckResult) -> None:
    """Drop zero-size and fully-outside boxes, clip partly-outside ones, fill area/iscrowd."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    degenerate, outside, clipped, filled = [], [], [], []
    kept = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            degenerate.append(ann["id"])
            continue
        box = _clip(x, y, w, h, *sizes[ann["image_id"]])
        if box is None:
            outside.append(ann["id"])
            continue
        if box != [x, y, w, h]:
            clipped.append(ann["id"])
            ann["bbox"], ann["area"] = box, box[2] * box[3]
        if "area" not in ann or "iscrowd" not in ann:
            filled.append(ann["id"])
            ann.setdefault("area", w * h)
            ann.setdefault("iscrowd", 0)
        kept.append(ann)
    data["annotations"] = kept
    result.num_clipped_boxes = len(clipped)
    result.num_dropped_boxes = len(degenerate) + len(outside)
    _report_boxes(result, strict, degenerate, outside, clipped, filled)


def _clip(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> list[float] | None:
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def _report_boxes(
    result: CocoCheckResult,
    strict: bool,
    degenerate: list[Any],
    outside: list[Any],
    clipped: list[Any],
    filled: list[Any],
) -> None:
    name = result.ann_file
    if degenerate:
        msg = (f"{name}: {len(degenerate)} boxes with zero or negative width/height "
               f"(annotation ids {_list(degenerate)})")
        if strict:
            result.errors.append(f"{msg}; fix or remove them (strict mode)")
        else:
            result.warnings.append(f"{msg} were dropped; fix them in the file to keep them")
    if outside:
        result.warnings.append(
            f"{name}: {len(outside)} boxes lie fully outside their image and were dropped "
            f"(annotation ids {_list(outside)}); check the image sizes or the box coordinates"
        )
    if clipped:
        result.warnings.append(
            f"{name}: {len(clipped)} boxes reach past their image border and were clipped "
            f"to it (annotation ids {_list(clipped)})"
        )
    if filled:
        result.warnings.append(
            f"{name}: {len(filled)} annotations lacked area or iscrowd; filled with w*h and 0 "
            f"(annotation ids {_list(filled)})"
        )


def _apply_empty_policy(data: dict[str, Any], policy: str, result: CocoCheckResult) -> None:
    with_boxes = {ann["image_id"] for ann in data["annotations"]}
    empty = [img["id"] for img in data["images"] if img["id"] not in with_boxes]
    result.num_empty_images = len(empty)
    if not empty:
        return
    if result.split != "train":
        result.notes.append(
            f"{result.ann_file}: {len(empty)} of {len(data['images'])} {result.split} images "
            "have no boxes; kept, since evaluation must see them"
        )
        return
    if policy == "drop":
        data["images"] = [img for img in data["images"] if img["id"] in with_boxes]
        action = "dropped (empty_policy=drop)"
    else:
        action = "kept as background-only images (empty_policy=keep; use drop to remove them)"
    result.warnings.append(
        f"{result.ann_file}: {len(empty)} train images have no boxes "
        f"(image ids {_list(empty)}); {action}"
    )


# ---------------------------------------------------------------------------------------
# Image files


def _check_image_files(data: dict[str, Any], img_dir: Path, result: CocoCheckResult) -> None:
    """Open every image lazily (header only) to check it exists, opens, and matches."""
    if not img_dir.is_dir():
        result.errors.append(
            f"{result.ann_file}: image folder {img_dir} not found; check the image path"
        )
        return
    missing: list[str] = []
    modes: Counter[str] = Counter()
    for img in data["images"]:
        path = img_dir / img["file_name"]
        if not path.is_file():
            missing.append(img["file_name"])
            continue
        mode = _check_one_image(img, path, result)
        if mode is not None:
            modes[mode] += 1
    result.image_modes = dict(sorted(modes.items()))
    _report_missing(missing, img_dir, result)
    _report_modes(result)


def _check_one_image(img: dict[str, Any], path: Path, result: CocoCheckResult) -> str | None:
    try:
        # PIL warns above MAX_IMAGE_PIXELS and raises above twice that; we report both.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode, (width, height) = im.mode, im.size
    except Image.DecompressionBombError as exc:
        result.errors.append(f"{path}: {exc} {_pixel_limit_fix()}")
        return None
    except (UnidentifiedImageError, OSError) as exc:
        result.errors.append(
            f"{path}: PIL cannot open this image ({exc}); replace the file or remove "
            f"image id {img['id']!r} from {result.ann_file.name}"
        )
        return None

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        result.errors.append(
            f"{path}: {width}x{height} = {width * height} pixels exceeds PIL's limit of "
            f"{limit} pixels. {_pixel_limit_fix()}"
        )
    if (width, height) != (img["width"], img["height"]):
        result.errors.append(
            f"{result.ann_file}: image id {img['id']!r} ({img['file_name']}) says "
            f"{img['width']}x{img['height']} but the file is {width}x{height}; fix "
            "width/height in the JSON (boxes may be scaled wrongly too)"
        )
    return mode


def _pixel_limit_fix() -> str:
    return (
        "Tile the image into smaller images, or, if you trust the file, raise the limit "
        "with PIL.Image.MAX_IMAGE_PIXELS = <pixels> (None disables it) before loading."
    )


def _report_missing(missing: list[str], img_dir: Path, result: CocoCheckResult) -> None:
    if missing:
        result.errors.append(
            f"{result.ann_file}: {len(missing)} image files not found in {img_dir}: "
            f"{_list(missing)}; check the image folder or the file_name entries"
        )


def _report_modes(result: CocoCheckResult) -> None:
    other = {m: n for m, n in result.image_modes.items() if m != "RGB"}
    if other:
        listed = ", ".join(f"{m}: {n}" for m, n in other.items())
        result.warnings.append(
            f"{result.ann_file}: images not in RGB mode ({listed}); they will be loaded as "
            "3-channel 8-bit RGB, so 16-bit precision, alpha and CMYK colours are lost"
        )


def _list(items: list[Any]) -> str:
    """The first MAX_LISTED items, comma-separated, with the total when there are more."""
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        return f"{shown}, ... ({len(items)} in all)"
    return shown
