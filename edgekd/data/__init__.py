"""Data sources. Each returns fixed train / val / test splits; nothing downloads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from edgekd._io import to_jsonable
from edgekd.data.sources import SOURCES, load_data, load_test_split
from edgekd.data.splits import DataSplits, checked_splits

if TYPE_CHECKING:
    from edgekd.data.config import DataConfig


def splits_from_arrays(arrays: Mapping[str, Any], name: str = "arrays", val_fraction: float = 0.15, seed: int = 0,
                       task: str | None = None, ignore_index: int | None = None) -> DataSplits:
    """Splits from arrays held in memory: `x_train`, `y_train`, `x_test`, `y_test` (and optionally
    `x_val`, `y_val`, `x_unlabeled`), each x an array or a dict of named arrays; validated as any
    source is, a missing val split drawn from train (stratified for classification). `task`:
    "classification", "segmentation" or "regression" (None: what the labels make unambiguous);
    `ignore_index`: the label of unlabelled pixels (None: the task's default, 255 for segmentation)."""
    return checked_splits(name, dict(arrays), val_fraction, seed, task_name=task, ignore_index=ignore_index)


_SHARED: ContextVar[dict[str, DataSplits] | None] = ContextVar("edgekd_shared_data", default=None)


@contextlib.contextmanager
def shared_data() -> Iterator[None]:
    """Within this block a [data] section is read (and tokenized) once: the stages of one
    `edgekd run` share the splits instead of each loading them again."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def load_recipe_data(cfg: DataConfig, task: str | None = None) -> DataSplits:
    """The splits a recipe's [data] section describes for its `task` (every stage reads them the same way)."""
    shared = _SHARED.get()
    key = json.dumps([to_jsonable(cfg), task], sort_keys=True)
    if shared is not None and key in shared:
        return shared[key]
    splits = load_data(cfg.source, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg, task)
    if shared is not None:
        shared[key] = splits
    return splits


__all__ = ["SOURCES", "DataSplits", "load_data", "load_recipe_data", "load_test_split", "splits_from_arrays"]
