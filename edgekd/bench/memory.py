"""Peak memory of an ONNX Runtime session, measured in a fresh process of its own.

Resident-set growth inside the benching process would mix every model's allocations and the
allocator's reuse; a child process per model gives each its own clean measurement: the peak
resident set while loading and running the session, minus the resident set before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import OnnxModelError


@dataclass(frozen=True)
class MemoryStats:
    baseline_mb: float  # resident set of a process that imported onnxruntime and numpy
    peak_mb: float  # peak resident set while loading the session and running it
    growth_mb: float  # what the session itself cost: peak − baseline


def session_memory(path: Path, providers: list[str], batch: int, length: int = 128, runs: int = 20) -> MemoryStats:
    """Measure `path` in a child process that imports numpy and onnxruntime only; free dims other
    than the batch (a text model's sequence) get `length`."""
    child = Path(__file__).with_name("_memory_child.py")
    command = [sys.executable, str(child), str(path), ",".join(providers), str(batch), str(runs), str(length)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise OnnxModelError(f"{path}: measuring session memory failed ({reason})")
    return MemoryStats(**json.loads(done.stdout.strip().splitlines()[-1]))
