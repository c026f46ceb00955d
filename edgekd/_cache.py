"""edgekd's cache folder: trained teachers, teacher outputs, tokenized text (`EDGEKD_CACHE_DIR`,
default ~/.cache/edgekd). Everything in it can be deleted; it is rebuilt when needed."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR") or Path.home() / ".cache" / "edgekd")
