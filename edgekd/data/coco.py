"""`coco:PATH` — object detection data in the COCO instances format, read without pycocotools.

A JSON file with `images` (id, file_name), `annotations` (image_id, category_id, bbox [x, y, w, h]
in pixels, iscrowd) and `categories` (id, name). Images are found relative to the JSON's folder,
or in `[data] images`. Each image is letterboxed to `[data] image_size`: scaled to fit, aspect
kept, placed top-left and padded with zeros, so that a box maps by one multiplication. Category ids
become classes 0..C-1 in id order (their names are kept). Crowd boxes (iscrowd = 1) mark regions
of many objects, which COCO's evaluation ignores; they are left out here and counted in the log.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd._platform import fits_in_memory
from edgekd._progress import say
from edgekd.errors import DataError


def read_coco(path: Path, size: list[int] | None, images: Path | None, grayscale: bool, mean: list[float] | None,
              std: list[float] | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(x (N, C, H, W) float32, y (N, M, 5) [class, x1, y1, x2, y2] with class −1 padding, class names)."""
    document = _load(path)
    folder = images or path.parent
    if not size:
        raise DataError(f"{path}: a detection source needs [data] image_size = [height, width] (every image is letterboxed to it)")
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in document["categories"]}
    class_of = {cid: index for index, cid in enumerate(sorted(categories))}
    entries = {int(image["id"]): image for image in document["images"]}
    boxes: dict[int, list[list[float]]] = {image_id: [] for image_id in entries}
    crowd = 0
    for ann in document["annotations"]:
        image_id, category = int(ann.get("image_id", -1)), int(ann.get("category_id", -1))
        if image_id not in entries:
            raise DataError(f"{path}: annotation {ann.get('id')} names image_id {image_id}, which `images` does not list")
        if category not in class_of:
            raise DataError(f"{path}: annotation {ann.get('id')} has category_id {category}, which `categories` does not list "
                            f"(it lists {sorted(class_of)[:10]}); add the category or fix the id")
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if not (w > 0 and h > 0):
            raise DataError(f"{path}: annotation {ann.get('id')} has a box of no size (bbox {ann['bbox']}: width and height must be > 0)")
        boxes[image_id].append([class_of[category], x, y, x + w, y + h])
    if not any(boxes.values()):
        raise DataError(f"{path}: no annotation has a box; a detector needs labelled objects")
    if crowd:
        say(f"data: {path.name}: {crowd} crowd box(es) (iscrowd = 1) left out, as COCO's evaluation ignores them")
    ids = sorted(entries)
    channels, (height, width) = (1 if grayscale else 3), (int(size[0]), int(size[1]))
    if not fits_in_memory(len(ids) * channels * height * width * 4):
        raise DataError(f"{path}: {len(ids):,} images at [data] image_size = {size} do not fit in memory as float32; choose a smaller image_size")
    x = np.zeros((len(ids), channels, height, width), dtype=np.float32)
    y = np.full((len(ids), max(len(b) for b in boxes.values()), 5), -1.0, dtype=np.float32)
    for row, image_id in enumerate(ids):
        file = folder / str(entries[image_id].get("file_name", ""))
        scale, original = _letterbox(file, x[row], grayscale)
        for index, (cls, x1, y1, x2, y2) in enumerate(boxes[image_id]):
            if x1 < -1 or y1 < -1 or x2 > original[0] + 1 or y2 > original[1] + 1:
                raise DataError(f"{path}: image {file.name} ({original[0]}×{original[1]}) has a box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] "
                                "outside it; fix the annotation or clip it to the image")
            y[row, index] = [cls, *np.clip(np.array([x1, y1, x2, y2]) * scale, 0, [width, height, width, height])]
    _normalise(x, mean, std)
    return x, y, tuple(categories[c] for c in sorted(categories))


def _load(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"COCO annotation file not found: {path} (check the path)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(document, dict) or key not in document]
    if missing:
        raise DataError(f"{path}: not a COCO instances file: no {', '.join(repr(m) for m in missing)} (it needs images, annotations, categories)")
    if not document["images"]:
        raise DataError(f"{path}: the annotation file lists no images")
    return document


def _letterbox(file: Path, out: np.ndarray, grayscale: bool) -> tuple[float, tuple[int, int]]:
    """Read `file` into `out` (C, H, W), scaled to fit with its aspect kept, top-left; returns the
    scale and the original (width, height)."""
    from PIL import Image, UnidentifiedImageError

    if not file.is_file():
        raise DataError(f"{file}: image not found; COCO file names are read relative to the JSON's folder, or to [data] images")
    try:
        with Image.open(file) as image:
            image = image.convert("L" if grayscale else "RGB")
            scale = min(out.shape[1] / image.height, out.shape[2] / image.width)
            original = (image.width, image.height)
            resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
            array = np.asarray(resized, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{file}: not a readable image ({exc})") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    out[:, : array.shape[1], : array.shape[2]] = array
    return scale, original


def _normalise(x: np.ndarray, mean: list[float] | None, std: list[float] | None) -> None:
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != x.shape[1]:
            raise DataError(f"[data] {name} has {len(values)} values but the images have {x.shape[1]} channel(s)")
    if mean is not None:
        x -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
    if std is not None:
        x /= np.asarray(std, dtype=np.float32)[None, :, None, None]
