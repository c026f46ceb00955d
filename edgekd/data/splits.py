"""The one object every data source returns: fixed train / val / test splits of named inputs.

Numpy arrays rather than torch datasets, so the export and bench stages (which must not need
torch) read the same data as training. Each split's inputs are an `Inputs` (one array per input
name, dtypes kept: a single-array source is one float32 input named `input`; text is int64
`input_ids` + `attention_mask`); labels are int64 class indices 0..num_classes-1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgekd.errors import DataError
from edgekd.inputs import Inputs, TensorSpec, as_inputs


MAX_LABEL = 2**31 - 1  # a class index beyond this is a mistake (ids, hashes), never a class count


@dataclass(frozen=True)
class DataSplits:
    name: str  # the source string it came from, for reports
    x_train: Inputs
    y_train: np.ndarray
    x_val: Inputs
    y_val: np.ndarray
    x_test: Inputs
    y_test: np.ndarray
    num_classes: int  # 1 + the largest training label
    x_unlabeled: Inputs | None = None  # inputs without labels: teacher soft targets only
    classes: tuple[str, ...] = ()  # label names by class index, when the source has names
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (the student's embedding rows)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The named, typed inputs every model of this data takes."""
        return self.x_train.spec

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape of the first input (an image net's input_shape)."""
        return self.x_test.per_sample_shape

    def calibration(self, count: int, seed: int = 0) -> Inputs:
        """A fixed random subset of the *training* inputs for quantization calibration."""
        rng = np.random.default_rng(seed)
        take = min(count, len(self.x_train))
        return self.x_train[np.sort(rng.choice(len(self.x_train), size=take, replace=False))]

    def fingerprint(self, splits: tuple[str, ...] = ("train", "val", "test")) -> str:
        """sha256 over the named splits' bytes: what a cached teacher was trained on."""
        digest = hashlib.sha256()
        for split in splits:
            getattr(self, "x_" + split).update_digest(digest)
            labels = np.ascontiguousarray(getattr(self, "y_" + split))
            digest.update(str(labels.shape).encode() + labels.dtype.str.encode())
            digest.update(labels.tobytes())
        return digest.hexdigest()


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off `fraction` of (x, y) with class proportions kept; returns (x_a, y_a, x_b, y_b)."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(y, return_counts=True)  # not bincount: its array is as long as the largest label
    stratify = y if counts.min() >= 2 else None  # tiny classes cannot be stratified
    a, b = train_test_split(np.arange(len(y)), test_size=fraction, random_state=seed, stratify=stratify)
    return x[a], y[a], x[b], y[b]


def checked_splits(name: str, arrays: dict, val_fraction: float, seed: int, classes: tuple[str, ...] = (), vocab_size: int | None = None) -> DataSplits:
    """Validate raw inputs (dtypes, lengths, labels, NaN) and fill a missing val split from train.

    Each `x_*` is an array (the one-input case) or named arrays; `x_unlabeled`, when present,
    must have the same inputs and per-sample shapes as the labelled inputs.
    """
    x_train, y_train = checked_pair(name, arrays, "train", required=True)
    x_test, y_test = checked_pair(name, arrays, "test", required=True)
    x_val, y_val = checked_pair(name, arrays, "val", required=False)
    if x_val is None:
        x_train, y_train, x_val, y_val = stratified_split(x_train, y_train, val_fraction, seed)
    if len({_layout(x) for x in (x_train, x_val, x_test)}) != 1:
        shapes = sorted({_shapes(x) for x in (x_train, x_val, x_test)})
        raise DataError(f"{name}: train/val/test inputs have different shapes {shapes}; all must match")
    num_classes = _checked_classes(name, y_train)
    for split, labels in (("val", y_val), ("test", y_test)):
        if len(labels) and labels.max() >= num_classes:
            raise DataError(
                f"{name}: {split} labels go up to {int(labels.max())} but training labels only span "
                f"0..{num_classes - 1}; every class must appear in the training split"
            )
    x_unlabeled = arrays.get("x_unlabeled")
    if x_unlabeled is not None:
        x_unlabeled = _checked_inputs(name, x_unlabeled, "unlabeled")
        if _layout(x_unlabeled) != _layout(x_train):
            raise DataError(f"{name}: unlabeled inputs have shape {_shapes(x_unlabeled)} per sample but the labelled ones {_shapes(x_train)}; they must match")
    return DataSplits(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes, x_unlabeled, tuple(classes), vocab_size)


def _label_text(value) -> str:
    """A label as a user would write it: 1099511627776, not 1.099511627776e+12."""
    return str(int(value)) if np.isfinite(value) and abs(value) < 1e15 else f"{float(value):.3g}"


def _checked_classes(name: str, y_train: np.ndarray) -> int:
    """The number of classes the labels make: 1 + the largest. One class, or labels that leave
    most of 0..max empty (20, 21, 22 would make a 23-class model), are refused with the remap."""
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"{name}: every training label is {int(present[0])}; a classifier needs at least two classes")
    num_classes = int(present[-1]) + 1
    if len(present) < num_classes / 2:
        shown = ", ".join(str(int(c)) for c in present[:5]) + (", ..." if len(present) > 5 else "")
        raise DataError(f"{name}: the training labels ({shown}) use {len(present)} of the {num_classes} classes 0..{num_classes - 1} "
                        f"they imply; remap them to 0..{len(present) - 1} (numpy: np.unique(y, return_inverse=True)[1])")
    return num_classes


def _layout(x: Inputs) -> tuple:
    """What must match between splits: names, dtypes, and the fixed per-sample dims."""
    return tuple((s.name, s.dtype, s.dims) for s in x.spec)


def _shapes(x: Inputs) -> str:
    """Per-sample shapes for messages: "(3,)" for one input, "input_ids int64 (sequence,), ..." for several."""
    if len(x.spec) == 1 and not x.spec[0].is_sequence:
        return str(tuple(x.spec[0].dims[1:]))
    return ", ".join(f"{s.name} {s.dtype} {tuple(s.dims[1:])}" for s in x.spec)


def _checked_inputs(name: str, x, split: str) -> Inputs:
    """One array (cast to float32, as every array source always was) or named arrays (dtypes kept)."""
    if isinstance(x, (Inputs, dict)):
        inputs = as_inputs(x)
    else:
        x = np.asarray(x)
        if np.iscomplexobj(x):
            raise DataError(f"{name}: x_{split} holds complex numbers; give real-valued inputs (e.g. magnitude and phase as two features)")
        if x.ndim < 2:
            raise DataError(f"{name}: x_{split} has shape {x.shape}; expected (samples, features...)")
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{name}: x_{split} has dtype {x.dtype}; expected numbers")
        inputs = as_inputs(x.astype(np.float32, copy=False))
    for key, array in inputs.items():
        if array.ndim < 2:
            raise DataError(f"{name}: x_{split} input '{key}' has shape {array.shape}; expected (samples, features...)")
        if np.iscomplexobj(array):
            raise DataError(f"{name}: x_{split} input '{key}' holds complex numbers; give real-valued inputs")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DataError(f"{name}: x_{split} input '{key}' has dtype {array.dtype}; expected numbers")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{name}: x_{split} contains NaN or inf; clean the data first")
    return inputs


def checked_pair(name: str, arrays: dict[str, np.ndarray | None], split: str, required: bool):
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    if x is None or y is None:
        if required or (x is None) != (y is None):
            missing = f"x_{split}" if x is None else f"y_{split}"
            have = ", ".join(k for k, v in arrays.items() if v is not None) or "nothing"
            raise DataError(f"{name}: no array '{missing}' (has: {have}); provide x_train, y_train, x_test, y_test")
        return None, None
    x = _checked_inputs(name, x, split)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {len(x)} samples; expected ({len(x)},)")
    if np.iscomplexobj(y) or not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise DataError(f"{name}: y_{split} must hold integer class indices (got dtype {y.dtype})")
    if len(y) and y.min() < 0:
        raise DataError(f"{name}: y_{split} has negative labels; labels must be class indices 0..C-1")
    if len(y) and y.max() > MAX_LABEL:  # before anything is sized by it (or a float label overflows int64)
        raise DataError(f"{name}: y_{split} holds the label {_label_text(y.max())}, but labels are class indices 0..C-1 "
                        "(at most 2^31 - 1); remap them to 0..C-1 (numpy: np.unique(y, return_inverse=True)[1])")
    y = y.astype(np.int64)
    if len(x) == 0:
        raise DataError(f"{name}: x_{split} is empty")
    return x, y
