"""Plumbing for ONNX Runtime's quantization tools: the calibration reader they iterate, one cached
session per prepared file, and a quiet working folder for the files they dump."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from edgekd.runtime.session import feeds, fixed_batch, open_session
from edgekd.inputs import Inputs


def session_of(prepared: Path):
    """A session of the prepared model (for its input names, types and fixed batch), opened once
    per file version rather than at every exclusion step and candidate."""
    stat = Path(prepared).stat()
    return _cached_session(str(prepared), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _cached_session(path: str, _mtime_ns: int, _size: int):
    return open_session(Path(path))


@contextlib.contextmanager
def quiet_ort(work: Path | None = None):
    """ORT's tools log and print what the result already says; `work` becomes the working folder,
    because its symbolic shape inference dumps sym_shape_infer_temp.onnx into the current folder
    when it fails (it does on dynamic-sequence transformers): the dump goes with the work folder.
    Every path the tools are given must then be absolute (a relative one once made ORT's
    pre-processing fail silently)."""
    import io
    import logging
    import os

    if work is not None and not Path(work).is_absolute():  # relative paths would point elsewhere once inside
        raise ValueError(f"quiet_ort needs an absolute work folder, got {work}: resolve the caller's paths first")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    before = os.getcwd()
    try:
        if work is not None:
            os.chdir(work)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.chdir(before)
        root.setLevel(level)


class Batches:
    """Calibration/activation data for ORT: the inputs in batches the model accepts, fed by name."""

    def __init__(self, prepared: Path, x: Inputs, batch: int = 32) -> None:
        session = session_of(prepared)
        batch = fixed_batch(session) or batch
        count = len(x) // batch if len(x) >= batch else 1
        self._batches = (feeds(session, x.rows(i * batch, batch).trimmed()) for i in range(count))  # built as consumed

    def get_next(self):
        return next(self._batches, None)

    def __iter__(self):  # ORT's QDQ debugging tools iterate the reader
        return self._batches
