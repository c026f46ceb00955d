"""Peak memory of an ONNX Runtime session, measured in a fresh process of its own.

Resident-set growth inside the benching process would mix every model's allocations and the
allocator's reuse; a child process per model gives each its own clean measurement: the peak
resident set while loading and running the session, minus the resident set before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import OnnxModelError


@dataclass(frozen=True)
class MemoryStats:
    baseline_mb: float  # resident set of a process that imported onnxruntime and numpy
    peak_mb: float  # peak resident set while loading the session and running it
    growth_mb: float  # what the session itself cost: peak − baseline


def session_memory(path: Path, providers: list[str], feed: dict[str, np.ndarray], runs: int = 20) -> MemoryStats:
    """Measure `path` in a child process that imports numpy and onnxruntime only, running `feed`:
    one real batch as the feeds builder made it, passed to the child through an .npz file."""
    child = Path(__file__).with_name("_memory_child.py")
    with tempfile.TemporaryDirectory(prefix="edgekd-memory-") as folder:
        feed_file = Path(folder) / "feed.npz"
        np.savez(feed_file, **feed)
        command = [sys.executable, str(child), str(path), ",".join(providers), str(feed_file), str(runs)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise OnnxModelError(f"{path}: measuring session memory failed ({reason})")
    return MemoryStats(**json.loads(done.stdout.strip().splitlines()[-1]))
