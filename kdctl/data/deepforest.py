"""Turn the aerial tree-crown images shipped with deepforest 2.1.0 into a tiled COCO dataset.

The package is found through its installed files only: importing deepforest would pull in
torch, lightning and more. Its four annotated images (Pascal VOC XML, about 950 trees) are
cut into square tiles and split by source image, so no scene is in both train and val.
"""

from __future__ import annotations

import importlib.metadata
import json
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from kdctl.data.coco_checks import write_coco
from kdctl.errors import KdctlError
from kdctl.io import atomic_write_json

# Whole source images go to one split; a scene never appears in both.
SPLIT_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "train": (
        "2019_YELL_2_528000_4978000_image_crop2",  # 2299x2472 px, 574 trees
    ),
    "val": (
        "2019_YELL_2_541000_4977000_image_crop",  # 1249x1035 px, 279 trees
        "OSBS_029",  # 400x400 px, 61 trees
        "SOAP_061",  # 400x400 px, 37 trees labelled Alive/Dead
    ),
}
# Every object is a tree crown; SOAP_061's "Alive"/"Dead" labels are merged into it.
CLASS_NAME = "Tree"
QUICK_TILES = {"train": 4, "val": 2}
RECORD_NAME = "kdctl_dataset.json"
RECORD_FORMAT = 1
INSTALL_HINT = "pip install --no-deps deepforest==2.1.0"

VOC_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Tile:
    """One square window of a source image and the boxes it keeps, in tile pixels."""

    stem: str
    x: int
    y: int
    width: int
    height: int
    boxes: tuple[Box, ...]  # (x, y, w, h)

    @property
    def file_name(self) -> str:
        return f"{self.stem}_x{self.x}_y{self.y}.png"


@dataclass
class DatasetSummary:
    """Where a prepared dataset lives and what is in it."""

    root: Path
    train_ann: Path
    val_ann: Path
    image_dir: Path
    classes: list[str]
    train_images: int
    train_boxes: int
    val_images: int
    val_boxes: int
    median_box_px: float  # median of sqrt(w * h) over all boxes

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a two-column table."""
        return [
            ("root", str(self.root)),
            ("images", str(self.image_dir)),
            ("train annotations", str(self.train_ann)),
            ("val annotations", str(self.val_ann)),
            ("classes", ", ".join(self.classes)),
            ("train tiles / boxes", f"{self.train_images} / {self.train_boxes}"),
            ("val tiles / boxes", f"{self.val_images} / {self.val_boxes}"),
            ("median box size", f"{self.median_box_px:.1f} px"),
        ]


def prepare_deepforest(
    out_dir: Path,
    tile_size: int = 400,
    quick: bool = False,
    overwrite: bool = False,
    min_visible_fraction: float = 0.5,
) -> DatasetSummary:
    """Write the tiled deepforest dataset to `out_dir`, or reuse it if already there.

    Writes images/<stem>_x<X>_y<Y>.png, annotations/{train,val}.json and kdctl_dataset.json.
    `quick` keeps the 4 train and 2 val tiles with the most boxes. A box cut by a tile edge
    is kept, clipped, when at least `min_visible_fraction` of its area is inside the tile.
    """
    _validate_params(tile_size, min_visible_fraction)
    out_dir = Path(out_dir)
    data_dir = deepforest_data_dir()
    params = {
        "source": f"deepforest=={_deepforest_version()}",
        "tile_size": tile_size,
        "quick": quick,
        "min_visible_fraction": min_visible_fraction,
    }

    record = _read_record(out_dir)
    if record is not None and record["complete"] and record["params"] == params:
        if _outputs_exist(out_dir):
            return _summary(out_dir, record["summary"])
    old_files = _claim_folder(out_dir, record, params, overwrite)

    tiles = plan_tiles(data_dir, tile_size, min_visible_fraction)
    if quick:
        tiles = {split: select_busiest(split_tiles, QUICK_TILES[split])
                 for split, split_tiles in tiles.items()}
    return _write_dataset(out_dir, data_dir, tiles, params, old_files)


def deepforest_data_dir() -> Path:
    """The installed deepforest/data folder, found without importing deepforest."""
    try:
        dist = importlib.metadata.distribution("deepforest")
    except importlib.metadata.PackageNotFoundError:
        raise KdctlError(
            f"the deepforest package is not installed; run `{INSTALL_HINT}`", "dataset"
        ) from None
    data_dir = Path(str(dist.locate_file("deepforest/data")))
    if not data_dir.is_dir():
        raise KdctlError(
            f"deepforest is installed but {data_dir} is missing; reinstall with "
            f"`{INSTALL_HINT}`",
            "dataset",
        )
    return data_dir


def _deepforest_version() -> str:
    return importlib.metadata.version("deepforest")


def _validate_params(tile_size: int, min_visible_fraction: float) -> None:
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 32:
        raise KdctlError(f"must be an integer >= 32, got {tile_size!r}", "tile_size")
    if not 0 < min_visible_fraction <= 1:
        raise KdctlError(
            f"must be in (0, 1], got {min_visible_fraction!r}", "min_visible_fraction"
        )


# ---------------------------------------------------------------------------------------
# Reading and tiling


def read_voc_boxes(xml_path: Path) -> tuple[int, int, list[Box]]:
    """Image width, height and boxes as (xmin, ymin, xmax, ymax) from a Pascal VOC file."""
    try:
        root = ET.parse(xml_path).getroot()
        width = int(root.findtext("size/width", ""))
        height = int(root.findtext("size/height", ""))
        boxes = [
            tuple(float(obj.findtext(f"bndbox/{k}", "")) for k in VOC_BOX_KEYS)
            for obj in root.iter("object")
        ]
    except (ET.ParseError, ValueError, OSError) as exc:
        raise KdctlError(
            f"cannot read Pascal VOC annotations from {xml_path} ({exc}); reinstall with "
            f"`{INSTALL_HINT}`",
            "dataset",
        ) from None
    return width, height, boxes  # type: ignore[return-value]


def tile_origins(length: int, tile_size: int) -> list[int]:
    """Tile starts 0, s, 2s, ... with the last one moved back to end at the border."""
    if length <= tile_size:
        return [0]
    return list(range(0, length - tile_size, tile_size)) + [length - tile_size]


def clip_to_tile(
    boxes: Iterable[Box], x: int, y: int, width: int, height: int, min_visible: float
) -> tuple[Box, ...]:
    """Boxes (xmin, ymin, xmax, ymax) seen through a tile, as (x, y, w, h) in tile pixels.

    A box is kept only when the part inside the tile is at least `min_visible` of its area.
    """
    kept = []
    for x0, y0, x1, y1 in boxes:
        area = (x1 - x0) * (y1 - y0)
        cx0, cy0 = max(x0, x), max(y0, y)
        cx1, cy1 = min(x1, x + width), min(y1, y + height)
        visible = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
        if area > 0 and visible > 0 and visible >= min_visible * area:
            kept.append((cx0 - x, cy0 - y, cx1 - cx0, cy1 - cy0))
    return tuple(kept)


def plan_tiles(
    data_dir: Path, tile_size: int, min_visible: float
) -> dict[str, list[Tile]]:
    """Every tile of every source image, by split, in row-major order."""
    plan: dict[str, list[Tile]] = {}
    for split, stems in SPLIT_BY_SOURCE.items():
        plan[split] = [t for stem in stems for t in _tiles_of(data_dir, stem, tile_size,
                                                              min_visible)]
    return plan


def _tiles_of(data_dir: Path, stem: str, tile_size: int, min_visible: float) -> list[Tile]:
    width, height, boxes = read_voc_boxes(data_dir / f"{stem}.xml")
    _check_source_image(_source_png(data_dir, stem), width, height)

    tiles = []
    tile_w, tile_h = min(tile_size, width), min(tile_size, height)
    for y in tile_origins(height, tile_size):
        for x in tile_origins(width, tile_size):
            kept = clip_to_tile(boxes, x, y, tile_w, tile_h, min_visible)
            tiles.append(Tile(stem, x, y, tile_w, tile_h, kept))
    return tiles


def _source_png(data_dir: Path, stem: str) -> Path:
    # OSBS_029.xml names OSBS_029.tif; the .png next to it holds the same pixels, and
    # every source image ships as .png, so the .png is always the one we read.
    return data_dir / f"{stem}.png"


def _check_source_image(path: Path, width: int, height: int) -> None:
    if not path.is_file():
        raise KdctlError(f"source image {path} is missing; reinstall with `{INSTALL_HINT}`",
                         "dataset")
    with Image.open(path) as im:
        size = im.size
    if size != (width, height):
        raise KdctlError(
            f"{path} is {size[0]}x{size[1]} but its annotations say {width}x{height}; "
            f"reinstall with `{INSTALL_HINT}`",
            "dataset",
        )


def select_busiest(tiles: list[Tile], count: int) -> list[Tile]:
    """The `count` tiles with the most boxes (ties by name), kept in their original order."""
    ranked = sorted(tiles, key=lambda t: (-len(t.boxes), t.stem, t.y, t.x))[:count]
    chosen = set(ranked)
    return [t for t in tiles if t in chosen]


# ---------------------------------------------------------------------------------------
# The output folder and its record


def _read_record(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        raise KdctlError(
            f"{path} cannot be read ({exc}); delete it, or choose another folder", "out_dir"
        ) from None
    keys = ("format", "complete", "params", "files", "summary")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        raise KdctlError(
            f"{path} is not a kdctl dataset record (expected keys {', '.join(keys)}); "
            "choose another folder",
            "out_dir",
        )
    return record


def _outputs_exist(out_dir: Path) -> bool:
    return all((out_dir / "annotations" / f"{s}.json").is_file() for s in SPLIT_BY_SOURCE)


def _claim_folder(
    out_dir: Path, record: dict[str, Any] | None, params: dict[str, Any], overwrite: bool
) -> list[str]:
    """Check we may write into `out_dir`; return the tile names an earlier run wrote."""
    if record is None:
        ours = [out_dir / "annotations" / f"{s}.json" for s in SPLIT_BY_SOURCE]
        foreign = [str(p) for p in ours if p.exists()]
        if foreign and not overwrite:
            raise KdctlError(
                f"{out_dir} already holds {', '.join(foreign)}, not written by kdctl; "
                "pass --overwrite to replace them, or choose another --out",
                "--out",
            )
        return []

    if record["complete"] and record["params"] != params and not overwrite:
        changed = [
            f"{k}: {record['params'].get(k)!r} -> {v!r}"
            for k, v in params.items() if record["params"].get(k) != v
        ]
        raise KdctlError(
            f"{out_dir} holds a dataset made with other parameters ({'; '.join(changed)}); "
            "pass --overwrite to rebuild it there, or choose another --out",
            "--out",
        )
    return [str(name) for name in record["files"]]


def _write_dataset(
    out_dir: Path,
    data_dir: Path,
    tiles: dict[str, list[Tile]],
    params: dict[str, Any],
    old_files: list[str],
) -> DatasetSummary:
    new_files = [t.file_name for split_tiles in tiles.values() for t in split_tiles]

    # Until the run completes, the record claims old and new tiles, so a rerun after a
    # crash still knows which files are ours to replace.
    claimed = sorted(set(old_files) | set(new_files))
    atomic_write_json(out_dir / RECORD_NAME, _record(params, claimed, {}, complete=False))

    image_dir = out_dir / "images"
    _write_tile_images(data_dir, image_dir, [t for ts in tiles.values() for t in ts])
    for split, split_tiles in tiles.items():
        write_coco(build_coco(split_tiles), out_dir / "annotations" / f"{split}.json")
    _remove_stale_tiles(image_dir, set(old_files) - set(new_files))

    counts = _count(tiles)
    atomic_write_json(out_dir / RECORD_NAME, _record(params, new_files, counts, complete=True))
    return _summary(out_dir, counts)


def _write_tile_images(data_dir: Path, image_dir: Path, tiles: list[Tile]) -> None:
    image_dir.mkdir(parents=True, exist_ok=True)
    for stem in dict.fromkeys(t.stem for t in tiles):
        with Image.open(_source_png(data_dir, stem)) as source:
            rgb = source.convert("RGB")
        for t in (t for t in tiles if t.stem == stem):
            rgb.crop((t.x, t.y, t.x + t.width, t.y + t.height)).save(image_dir / t.file_name)


def _remove_stale_tiles(image_dir: Path, names: set[str]) -> None:
    """Delete tiles an earlier run of ours wrote and this one did not; nothing else."""
    for name in names:
        if Path(name).name == name:  # a plain file name, never a path out of the folder
            (image_dir / name).unlink(missing_ok=True)


def build_coco(tiles: list[Tile]) -> dict[str, Any]:
    """A COCO dict for one split: one image per tile, ids from 1, one category."""
    images, annotations = [], []
    for image_id, tile in enumerate(tiles, start=1):
        images.append({"id": image_id, "file_name": tile.file_name,
                       "width": tile.width, "height": tile.height})
        for x, y, w, h in tile.boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "bbox": [x, y, w, h], "area": w * h,
                                "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": CLASS_NAME}]}


def _count(tiles: dict[str, list[Tile]]) -> dict[str, Any]:
    """The numbers a summary reports; stored in the record so a rerun needs no recount."""
    sides = [(w * h) ** 0.5 for ts in tiles.values() for t in ts for _, _, w, h in t.boxes]
    return {
        "classes": [CLASS_NAME],
        "train_images": len(tiles["train"]),
        "train_boxes": sum(len(t.boxes) for t in tiles["train"]),
        "val_images": len(tiles["val"]),
        "val_boxes": sum(len(t.boxes) for t in tiles["val"]),
        "median_box_px": round(statistics.median(sides), 2) if sides else 0.0,
    }


def _summary(out_dir: Path, counts: dict[str, Any]) -> DatasetSummary:
    return DatasetSummary(
        root=out_dir,
        train_ann=out_dir / "annotations" / "train.json",
        val_ann=out_dir / "annotations" / "val.json",
        image_dir=out_dir / "images",
        classes=list(counts["classes"]),
        train_images=counts["train_images"],
        train_boxes=counts["train_boxes"],
        val_images=counts["val_images"],
        val_boxes=counts["val_boxes"],
        median_box_px=counts["median_box_px"],
    )


def _record(
    params: dict[str, Any], files: list[str], counts: dict[str, Any], complete: bool
) -> dict[str, Any]:
    return {"format": RECORD_FORMAT, "complete": complete, "params": params,
            "files": files, "summary": counts}
