"""Data sources. Each returns fixed train / val / test splits; nothing downloads."""

from edgekd.data.sources import SOURCES, load_data, load_test_split
from edgekd.data.splits import DataSplits

__all__ = ["SOURCES", "DataSplits", "load_data", "load_test_split"]
