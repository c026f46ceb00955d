"""Progress bars and status lines on stderr, so stdout stays clean for `--json`.

Bars render only when stderr is a terminal; in CI logs a stage prints one line when it ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)
_quiet = os.environ.get("EDGEKD_QUIET") == "1"


def set_quiet(quiet: bool) -> None:
    """Silence edgekd's status lines and progress bars, and the libraries' warnings and logs with them
    (Python warnings, ONNX Runtime's native log below errors): `-q` means quiet."""
    global _quiet
    _quiet = quiet
    if quiet:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.getLogger().setLevel(logging.ERROR)
        try:
            import onnxruntime

            onnxruntime.set_default_logger_severity(3)
        except ImportError:
            pass


@contextlib.contextmanager
def hushed() -> Iterator[None]:
    """No status lines inside: for a stage run many times as a step of another (the search's
    per-candidate quantization), whose own lines would drown the caller's."""
    global _quiet
    before, _quiet = _quiet, True
    try:
        yield
    finally:
        _quiet = before


def _main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports


def say(message: str) -> None:
    """One status line on stderr (silenced with set_quiet / EDGEKD_QUIET=1)."""
    if not _quiet and _main_rank():
        console.print(message, soft_wrap=True, markup=False)  # messages name [sections]: not rich markup


def bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=_quiet or not console.is_terminal or not _main_rank(),
    )
