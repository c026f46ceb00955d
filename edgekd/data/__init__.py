"""Data sources. Each returns fixed train / val / test splits; nothing downloads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.data.sources import SOURCES, load_data, load_test_split
from edgekd.data.splits import DataSplits

if TYPE_CHECKING:
    from edgekd.data.config import DataConfig


def load_recipe_data(cfg: DataConfig) -> DataSplits:
    """The splits a recipe's [data] section describes (every stage reads them the same way)."""
    return load_data(cfg.source, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg)


__all__ = ["SOURCES", "DataSplits", "load_data", "load_recipe_data", "load_test_split"]
