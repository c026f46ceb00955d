"""Data sources by name: the built-in digits, an .npz file, or a user function.

`SOURCES` is the lookup of source kinds; `load_data` is the one entry point. Nothing downloads:
digits ship inside scikit-learn, and the other kinds read the user's own files or code.
"""

from __future__ import annotations

import importlib
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from edgekd.data.splits import DataSplits, checked_pair, checked_splits, stratified_split
from edgekd.errors import DataError

_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _digits(arg: str, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 real 8×8 handwritten digits, pixels scaled from 0..16 to 0..1."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_rest, y_rest, x_test, y_test = stratified_split(x, y, test_fraction, seed)
    return {"x_train": x_rest, "y_train": y_rest, "x_test": x_test, "y_test": y_test}


def _npz(arg: str, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Arrays x_train, y_train, x_test, y_test (and optionally x_val, y_val) in one .npz file."""
    return read_npz(Path(arg))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"npz file not found: {path} (check the path in [data] source or --data)")
    try:
        with np.load(path, allow_pickle=False) as archive:  # never unpickle user files
            return {key: archive[key] for key in archive.files if key in _NPZ_KEYS}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); save arrays with numpy.savez") from None


def _factory(arg: str, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A user function `package.module:function` returning a mapping with the npz array names."""
    fn = import_object(arg, DataError, "data source")
    result = fn()
    if not isinstance(result, Mapping):
        raise DataError(f"data source {arg} returned {type(result).__name__}; it must return a dict with x_train, y_train, x_test, y_test")
    return {k: np.asarray(v) for k, v in result.items() if k in _NPZ_KEYS}


SOURCES: dict[str, Callable[[str, float, float, int], dict[str, np.ndarray]]] = {
    "digits": _digits,
    "npz": _npz,
}


def load_data(source: str = "digits", val_fraction: float = 0.15, test_fraction: float = 0.2, split_seed: int = 0) -> DataSplits:
    """Load a source into fixed, validated train / val / test splits."""
    kind, arg = _parse(source)
    reader = SOURCES.get(kind, _factory) if kind else _factory
    arrays = reader(arg, val_fraction, test_fraction, split_seed)
    return checked_splits(source, arrays, val_fraction, split_seed)


def load_test_split(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Only the test inputs and labels: what `edgekd bench` needs (an npz may hold only these)."""
    kind, arg = _parse(source)
    if kind == "npz":
        return checked_pair(source, read_npz(Path(arg)), "test", required=True)
    splits = load_data(source)
    return splits.x_test, splits.y_test


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
        f"unknown data source '{source}'; use one of: {', '.join(SOURCES)}, npz:PATH, or package.module:function"
    )


def import_object(spec: str, error: type[Exception], what: str):
    """Import `package.module:attr`, also from the working directory, with a clear error."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise error(f"{what} '{spec}' must look like package.module:name")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} '{spec}': cannot import module '{module_name}' ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise error(f"{what} '{spec}': module '{module_name}' has no attribute '{attr}'") from None
