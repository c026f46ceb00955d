"""The one object every data source returns: fixed train / val / test splits of named inputs.

Numpy arrays rather than torch datasets, so the export and bench stages (which must not need
torch) read the same data as training. Each split's inputs are an `Inputs` (one array per input
name, dtypes kept: a single-array source is one float32 input named `input`; text is int64
`input_ids` + `attention_mask`); labels are what the task says (edgekd/task.py): int64 class
indices 0..num_classes-1 for classification, int64 (samples, height, width) class ids for
segmentation (ignored pixels: task.IGNORED), float32 (samples, targets) for regression.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from edgekd.errors import DataError
from edgekd._progress import say
from edgekd.inputs import Inputs, TensorSpec, as_inputs, joined_rows, take_rows
from edgekd.task import Task, task, task_for


@dataclass(frozen=True)
class DataSplits:
    name: str  # the source string it came from, for reports
    x_train: Inputs
    y_train: np.ndarray
    x_val: Inputs
    y_val: np.ndarray
    x_test: Inputs
    y_test: np.ndarray
    num_classes: int  # the model's outputs: classes (1 + the largest training label), or regression targets
    x_unlabeled: Inputs | None = None  # inputs without labels: teacher soft targets only
    classes: tuple[str, ...] = ()  # label names by class index, when the source has names
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (the student's embedding rows)
    task: str = "classification"  # the task table's entry (edgekd/task.py): what the labels are
    # [data] label_fraction < 1: the whole labelled training split, which a teacher edgekd trains learns
    # from; x_train / y_train are the students' share of it, and the rest is in x_unlabeled.
    teacher_train: tuple[Inputs, np.ndarray] | None = None

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The named, typed inputs every model of this data takes."""
        return self.x_train.spec

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape of the first input (an image net's input_shape)."""
        return self.x_test.per_sample_shape

    def for_teacher(self) -> "DataSplits":
        """The splits a teacher edgekd trains learns from: every training label, also those that
        [data] label_fraction withheld from the students."""
        if self.teacher_train is None:
            return self
        x_train, y_train = self.teacher_train
        return replace(self, x_train=x_train, y_train=y_train, x_unlabeled=None, teacher_train=None)

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


def checked_splits(name: str, arrays: dict, val_fraction: float, seed: int, classes: tuple[str, ...] = (), vocab_size: int | None = None,
                   task_name: str | None = None, ignore_index: int | None = None) -> DataSplits:
    """Validate raw inputs (dtypes, lengths, labels, NaN) and fill a missing val split from train.

    Each `x_*` is an array (the one-input case) or named arrays; `x_unlabeled`, when present,
    must have the same inputs and per-sample shapes as the labelled inputs. `task_name` None: the
    task the training labels make unambiguous (whole numbers: classification; per pixel:
    segmentation; else regression). `ignore_index` None: the task's default ([data] ignore_index).
    """
    kind = task_for(task_name, arrays.get("y_train"))
    if task_name is None and kind.name != "classification":
        say(f"data: {name}: the labels are {kind.labels}, so the task is {kind.name} (set task = \"{kind.name}\" to say so)")
    x_train, y_train = checked_pair(name, arrays, "train", required=True, kind=kind, ignore_index=ignore_index)
    x_test, y_test = checked_pair(name, arrays, "test", required=True, kind=kind, ignore_index=ignore_index)
    x_val, y_val = checked_pair(name, arrays, "val", required=False, kind=kind, ignore_index=ignore_index)
    if x_val is None:
        x_train, y_train, x_val, y_val = kind.split(x_train, y_train, val_fraction, seed)
    if len({_layout(x) for x in (x_train, x_val, x_test)}) != 1:
        shapes = sorted({_shapes(x) for x in (x_train, x_val, x_test)})
        raise DataError(f"{name}: train/val/test inputs have different shapes {shapes}; all must match")
    num_classes = kind.outputs_of(name, y_train)
    for split, labels in (("val", y_val), ("test", y_test)):
        kind.check_split(name, split, labels, num_classes)
    x_unlabeled = arrays.get("x_unlabeled")
    if x_unlabeled is not None:
        x_unlabeled = checked_inputs(name, x_unlabeled, "unlabeled")
        if _layout(x_unlabeled) != _layout(x_train):
            raise DataError(f"{name}: unlabeled inputs have shape {_shapes(x_unlabeled)} per sample but the labelled ones {_shapes(x_train)}; they must match")
    return DataSplits(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes, x_unlabeled, tuple(classes), vocab_size, kind.name)


def withhold_labels(data: DataSplits, fraction: float, seed: int) -> DataSplits:
    """The students keep the labels of `fraction` of the training split (the task's split: stratified
    for classes); the other training inputs join the unlabelled ones. The whole split stays, for a
    teacher edgekd trains (`DataSplits.for_teacher`). Validation and test are untouched."""
    if fraction >= 1:
        return data
    count = len(data.y_train)
    try:
        # only the indices are kept: labels per pixel or token (split at random) stand in as zeros, so
        # that labels mapped from a store are not gathered into a rows file here
        labels = data.y_train if np.ndim(data.y_train) == 1 else np.zeros(count, dtype=np.int64)
        _, _, kept, _ = task(data.task).split(np.arange(count), labels, fraction, seed)
    except ValueError as exc:  # scikit-learn: a share too small for the split (or for one per class)
        raise DataError(f"{data.name}: [data] label_fraction = {fraction:g} of {count} training samples is too few to split "
                        f"({exc}); raise label_fraction") from None
    kept = np.sort(kept)
    withheld = np.setdiff1d(np.arange(count), kept)
    if len(kept) < 2 or not len(withheld):
        raise DataError(f"{data.name}: [data] label_fraction = {fraction:g} keeps {len(kept)} of {count} training labels; "
                        "choose a share that keeps at least 2 and withholds at least 1")
    unlabeled = take_rows(data.x_train, withheld)
    if data.x_unlabeled is not None:
        unlabeled = joined(unlabeled, data.x_unlabeled)
    say(f"data: {data.name}: the students keep the labels of {len(kept):,} of {count:,} training samples "
        f"([data] label_fraction = {fraction:g}); the other {len(withheld):,} join the unlabelled inputs")
    return replace(data, x_train=take_rows(data.x_train, kept), y_train=take_rows(data.y_train, kept), x_unlabeled=unlabeled,
                   teacher_train=(data.x_train, data.y_train))


def joined(first: Inputs, second: Inputs) -> Inputs:
    """The samples of both, in order; sequence inputs padded to the longer of the two widths. Inputs
    mapped from edgekd's stores (a streamed transfer set and the withheld rows of a streamed
    labelled file) are joined on disk (`joined_rows`), not in memory."""
    widths = [x[s.name].shape[1] for x in (first, second) for s in x.spec if s.is_sequence]
    width = max(widths) if widths else None
    return Inputs({s.name: joined_rows(first[s.name], second[s.name], width if s.is_sequence else None) for s in first.spec}, first.spec)


def _layout(x: Inputs) -> tuple:
    """What must match between splits: names, dtypes, and the fixed per-sample dims."""
    return tuple((s.name, s.dtype, s.dims) for s in x.spec)


def _shapes(x: Inputs) -> str:
    """Per-sample shapes for messages: "(3,)" for one input, "input_ids int64 (sequence,), ..." for several."""
    if len(x.spec) == 1 and not x.spec[0].is_sequence:
        return str(tuple(x.spec[0].dims[1:]))
    return ", ".join(f"{s.name} {s.dtype} {tuple(s.dims[1:])}" for s in x.spec)


def checked_inputs(name: str, x, split: str) -> Inputs:
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


def checked_pair(name: str, arrays: dict[str, np.ndarray | None], split: str, required: bool, kind: Task | None = None,
                 ignore_index: int | None = None):
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    if x is None or y is None:
        if required or (x is None) != (y is None):
            missing = f"x_{split}" if x is None else f"y_{split}"
            have = ", ".join(k for k, v in arrays.items() if v is not None) or "nothing"
            raise DataError(f"{name}: no array '{missing}' (has: {have}); provide x_train, y_train, x_test, y_test")
        return None, None
    x = checked_inputs(name, x, split)
    kind = kind or task("classification")
    ignore = ignore_index if ignore_index is not None else kind.ignore_default
    y = kind.check_labels(name, split, np.asarray(y), x[x.names[0]].shape, ignore)
    if len(x) == 0:
        raise DataError(f"{name}: x_{split} is empty")
    return x, y
