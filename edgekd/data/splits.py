"""The one object every data source returns: fixed train / val / test splits as numpy arrays.

Arrays rather than torch datasets so the export and bench stages (which must not need torch)
read the same data as training. Inputs are float32 shaped (N, *input_shape); labels are int64
class indices 0..num_classes-1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgekd.errors import DataError


@dataclass(frozen=True)
class DataSplits:
    name: str  # the source string it came from, for reports
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int  # 1 + the largest training label
    x_unlabeled: np.ndarray | None = None  # inputs without labels: teacher soft targets only

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_test.shape[1:])

    def calibration(self, count: int, seed: int = 0) -> np.ndarray:
        """A fixed random subset of the *training* images for quantization calibration."""
        rng = np.random.default_rng(seed)
        take = min(count, len(self.x_train))
        return self.x_train[np.sort(rng.choice(len(self.x_train), size=take, replace=False))]

    def fingerprint(self, splits: tuple[str, ...] = ("train", "val", "test")) -> str:
        """sha256 over the named splits' bytes: what a cached teacher was trained on."""
        digest = hashlib.sha256()
        for split in splits:
            for prefix in ("x_", "y_"):
                array = np.ascontiguousarray(getattr(self, prefix + split))
                digest.update(str(array.shape).encode() + array.dtype.str.encode())
                digest.update(array.tobytes())
        return digest.hexdigest()


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off `fraction` of (x, y) with class proportions kept; returns (x_a, y_a, x_b, y_b)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None  # tiny classes cannot be stratified
    x_a, x_b, y_a, y_b = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
    return x_a, y_a, x_b, y_b


def checked_splits(name: str, arrays: dict[str, np.ndarray | None], val_fraction: float, seed: int) -> DataSplits:
    """Validate raw arrays (dtypes, lengths, labels, NaN) and fill a missing val split from train.

    `x_unlabeled`, when present, must have the same per-sample shape as the labelled inputs.
    """
    x_train, y_train = checked_pair(name, arrays, "train", required=True)
    x_test, y_test = checked_pair(name, arrays, "test", required=True)
    x_val, y_val = checked_pair(name, arrays, "val", required=False)
    if x_val is None:
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, val_fraction, seed)
    shapes = {x.shape[1:] for x in (x_train, x_val, x_test)}
    if len(shapes) != 1:
        raise DataError(f"{name}: train/val/test inputs have different shapes {sorted(shapes)}; all must match")
    num_classes = int(y_train.max()) + 1
    for split, labels in (("val", y_val), ("test", y_test)):
        if len(labels) and labels.max() >= num_classes:
            raise DataError(
                f"{name}: {split} labels go up to {int(labels.max())} but training labels only span "
                f"0..{num_classes - 1}; every class must appear in the training split"
            )
    x_unlabeled = arrays.get("x_unlabeled")
    if x_unlabeled is not None:
        x_unlabeled = np.asarray(x_unlabeled)
        if x_unlabeled.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{name}: unlabeled inputs have shape {x_unlabeled.shape[1:]} per sample but the labelled ones {x_train.shape[1:]}; they must match")
        x_unlabeled = x_unlabeled.astype(np.float32, copy=False)
        if not np.isfinite(x_unlabeled).all():
            raise DataError(f"{name}: x_unlabeled contains NaN or inf; clean the data first")
    return DataSplits(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes, x_unlabeled)


def checked_pair(name: str, arrays: dict[str, np.ndarray | None], split: str, required: bool):
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    if x is None or y is None:
        if required or (x is None) != (y is None):
            missing = f"x_{split}" if x is None else f"y_{split}"
            have = ", ".join(k for k, v in arrays.items() if v is not None) or "nothing"
            raise DataError(f"{name}: no array '{missing}' (has: {have}); provide x_train, y_train, x_test, y_test")
        return None, None
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        raise DataError(f"{name}: x_{split} has shape {x.shape}; expected (samples, features...)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{name}: x_{split} has dtype {x.dtype}; expected numbers")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataError(f"{name}: x_{split} contains NaN or inf; clean the data first")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {len(x)} samples; expected ({len(x)},)")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise DataError(f"{name}: y_{split} must hold integer class indices (got dtype {y.dtype})")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{name}: y_{split} has negative labels; labels must be class indices 0..C-1")
    if len(x) == 0:
        raise DataError(f"{name}: x_{split} is empty")
    return x, y
