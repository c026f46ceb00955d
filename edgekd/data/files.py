"""Readers for data set files: MNIST-format IDX, CSV tables, and folders of images.

Each returns plain numpy arrays; `sources.py` turns them into validated splits. Nothing here
downloads anything: these read what the user (or a Debian package) put on disk.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import numpy as np

from edgekd._io import read_text
from edgekd._platform import fits_in_memory
from edgekd.errors import DataError

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
ENCODING_FIX = ('save it as UTF-8, or give the encoding it was saved in (e.g. "latin-1" or "cp1252"): '
                '[data] encoding in a recipe, --encoding for edgekd bench')
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (the MNIST format: magic, dimensions, big-endian data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); expected MNIST-format files")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: the header is cut short; the file is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    item = np.dtype(_IDX_TYPES[raw[2]]).itemsize
    if (len(raw) - 4 - 4 * ndim) % item:
        raise DataError(f"{path}: the data is not a whole number of {np.dtype(_IDX_TYPES[raw[2]]).name} values; the file is truncated")
    data = np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=4 + 4 * ndim)
    if any(d < 0 for d in dims) or data.size != math.prod(dims):  # Python ints: no int32 overflow
        raise DataError(f"{path}: header says {dims} values but the file holds {data.size}; the file is truncated or not an IDX file")
    return data.reshape(dims)


def read_idx_dir(folder: Path) -> dict[str, np.ndarray]:
    """train/t10k images and labels from a folder in the MNIST layout (MNIST, Fashion-MNIST, KMNIST)."""
    if not folder.is_dir():
        raise DataError(f"idx folder not found: {folder} (check the path)")
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        name = path.name.lower()
        split = "train" if name.startswith("train") else "test" if name.startswith(("t10k", "test")) else None
        kind = "x" if "images" in name else "y" if "labels" in name else None
        if split and kind and "idx" in name:
            found[f"{kind}_{split}"] = path
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in found]
    if missing:
        raise DataError(f"{folder}: no IDX file for {', '.join(missing)}; expected train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    arrays = {}
    for key, path in found.items():
        array = read_idx(path)
        if key.startswith("x"):
            scale = 255.0 if array.dtype == np.uint8 else 1.0
            array = (array.astype(np.float32) / scale)
            if array.ndim == 3:  # (N, H, W) → (N, 1, H, W)
                array = array[:, None]
        arrays[key] = array
    return arrays


def read_csv(path: Path, label_column: str | None, encoding: str = "utf-8") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (every column but the label, as numbers) and labels: whole numbers as they are,
    other numbers as float32 (regression targets), strings → class indices."""
    text = read_text(path, DataError, "csv file", encoding, ENCODING_FIX)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable csv file ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not label_column:
        raise DataError(f"{path}: set [data] label_column to the column that holds the labels (columns: {', '.join(header)})")
    if label_column not in header:
        raise DataError(f"{path}: no column '{label_column}' (columns: {', '.join(header)}); fix [data] label_column")
    at = header.index(label_column)
    features = [i for i in range(len(header)) if i != at]
    try:
        x = np.array([[float(row[i]) for i in features] for row in body], dtype=np.float32)
    except (ValueError, IndexError):
        bad = next((header[i] for i in features for row in body if not _is_number(row[i] if i < len(row) else "")), "?")
        raise DataError(f"{path}: column '{bad}' holds a value that is not a number; every feature column must be numeric") from None
    raw = [row[at].strip() for row in body]
    if all(_is_int(v) for v in raw):
        return x, np.array([int(float(v)) for v in raw], dtype=np.int64), []
    if all(_is_number(v) for v in raw):
        return x, np.array([float(v) for v in raw], dtype=np.float32), []
    classes = sorted(set(raw))
    lookup = {c: i for i, c in enumerate(classes)}
    return x, np.array([lookup[v] for v in raw], dtype=np.int64), classes


def read_image_folder(folder: Path, size: list[int] | None, grayscale: bool, mean: list[float] | None, std: list[float] | None, labelled: bool = True):
    """Images under class sub-folders (or all images, unlabelled) → (N, C, H, W) floats, labels, classes."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (check the path)")
    if labelled:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"{folder}: no class sub-folders; put each class's images in a folder named after it")
        items = [(p, i) for i, c in enumerate(classes) for p in sorted((folder / c).rglob("*")) if p.suffix.lower() in _IMAGE_SUFFIXES]
    else:
        classes = []
        items = [(p, -1) for p in sorted(folder.rglob("*")) if p.suffix.lower() in _IMAGE_SUFFIXES]
    if not items:
        raise DataError(f"{folder}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    x = _read_images(folder, [path for path, _ in items], size, grayscale, mean, std)
    return x, np.array([label for _, label in items], dtype=np.int64), classes


def _read_images(folder: Path, paths: list[Path], size: list[int] | None, grayscale: bool, mean: list[float] | None,
                 std: list[float] | None) -> np.ndarray:
    """Image files → (N, C, H, W) float32 in 0..1, resized to `size` (bilinear), then normalised."""
    from PIL import Image, UnidentifiedImageError

    if size:
        needed = len(paths) * (1 if grayscale else 3) * int(size[0]) * int(size[1]) * 4  # float32 pixels
        if not fits_in_memory(needed):
            raise DataError(f"{folder}: {len(paths):,} images at [data] image_size = [{size[0]}, {size[1]}] need {needed / 2**30:,.1f} GiB "
                            "as float32, more than this machine has free; choose a smaller image_size")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if grayscale else "RGB")
                if size:
                    image = image.resize((int(size[1]), int(size[0])), Image.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        except Image.DecompressionBombError as exc:  # a huge (or hostile) image: PIL's own limit, not ours to lift silently
            raise DataError(f"{path}: {exc}; shrink the image, or check that it is the file you meant") from None
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{folder}: images have different sizes {sorted(shapes)[:3]}; set [data] image_size = [height, width]")
    x = np.stack(images)
    channels = x.shape[1]
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != channels:
            raise DataError(f"[data] {name} has {len(values)} values but the images have {channels} channel(s)")
    if mean is not None:
        x -= np.asarray(mean, dtype=np.float32)[None, :, None, None]
    if std is not None:
        x /= np.asarray(std, dtype=np.float32)[None, :, None, None]
    return x


def read_mask_folder(folder: Path, size: list[int] | None, grayscale: bool, mean: list[float] | None, std: list[float] | None):
    """DIR/images/* and DIR/masks/* with the same file stems → (N, C, H, W) floats and (N, H, W)
    class ids (a mask's pixel value is its class id; palette PNGs give their indices). Masks are
    resized with the images, by nearest neighbour, so that no pixel gets a class between two."""
    from PIL import Image, UnidentifiedImageError

    images_dir, masks_dir = folder / "images", folder / "masks"
    if not folder.is_dir():
        raise DataError(f"masks folder not found: {folder} (check the path)")
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DataError(f"{folder}: a masks source needs the sub-folders images/ and masks/ (same file names, mask pixel = class id)")
    images = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{images_dir}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    masks_by_stem = {p.relative_to(masks_dir).with_suffix(""): p for p in masks_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES}
    missing = [p for p in images if p.relative_to(images_dir).with_suffix("") not in masks_by_stem]
    if missing:
        raise DataError(f"{missing[0]}: no mask of the same name in {masks_dir} ({len(missing)} image(s) without one); "
                        f"give every image a mask, e.g. masks/{missing[0].stem}.png")
    labels = []
    for image_path in images:
        mask_path = masks_by_stem[image_path.relative_to(images_dir).with_suffix("")]
        try:
            with Image.open(image_path) as image:
                image_size = image.size
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{image_path}: not a readable image ({exc})") from None
        try:
            with Image.open(mask_path) as mask:
                if mask.mode not in ("L", "P", "I", "I;16", "1"):
                    raise DataError(f"{mask_path}: a mask must be a single-channel image of class ids (PNG mode L, P or I); it is {mask.mode}")
                if mask.size != image_size:
                    raise DataError(f"{mask_path}: the mask is {mask.size[0]}×{mask.size[1]} but its image {image_path.name} is "
                                    f"{image_size[0]}×{image_size[1]}; masks must match their images pixel for pixel")
                if size:
                    mask = mask.resize((int(size[1]), int(size[0])), Image.NEAREST)
                labels.append(np.asarray(mask, dtype=np.int64))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{mask_path}: not a readable image ({exc})") from None
    x = _read_images(images_dir, images, size, grayscale, mean, std)
    return x, np.stack(labels)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def _is_int(value: str) -> bool:
    return _is_number(value) and float(value) == int(float(value))
