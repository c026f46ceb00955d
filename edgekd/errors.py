"""Typed errors for the failures a user can fix.

The CLI turns every `EdgekdError` into one line on stderr and exit code 2; anything else is a bug
and may show a traceback. Subclasses carry the numbers behind the failure so callers can act on
them instead of parsing text.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type's name
    when it has none: what a one-line error quotes from a library or user code that failed."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class EdgekdError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""


class RecipeError(EdgekdError):
    """The recipe file is missing, malformed, or names something that does not exist."""


class TargetError(EdgekdError):
    """The target profile is unknown or invalid."""


class DataError(EdgekdError):
    """A data source cannot be read or does not have the arrays/labels it must have."""


class ModelError(EdgekdError):
    """A model cannot be built, loaded, or does not fit the data."""


class RunFolderError(EdgekdError):
    """A run folder lacks the artifact a stage needs, or an artifact changed since it was written."""


class OnnxModelError(EdgekdError):
    """An ONNX file is missing, corrupt, or cannot be run by ONNX Runtime."""


class TrainingError(EdgekdError):
    """Training diverged (NaN/inf loss); the last good checkpoint is kept."""


class QadError(EdgekdError):
    """Quantization-aware distillation cannot run on this student or target as it is."""


class MirrorError(QadError):
    """edgekd's PyTorch mirror of ONNX Runtime's int8 model cannot reproduce it for this student (an
    operator it does not run, or outputs that differ): a limit of edgekd, not bad input. The phase
    is skipped and post-training int8 stays deployed, with the reason in qad.json and the report."""


class ParityError(EdgekdError):
    """The exported model's outputs differ from PyTorch's by more than the allowed tolerance."""

    def __init__(self, model: str, measure: str, value: float, limit: float) -> None:
        self.model = model
        self.measure = measure  # "max |Δ|", "mean |Δ|" or "top-1 agreement"
        self.value = value
        self.limit = limit
        relation = "below" if measure == "top-1 agreement" else "above"
        super().__init__(
            f"{model}: ONNX Runtime vs PyTorch {measure} = {value:.3g}, {relation} the allowed {limit:.3g}; "
            f"the export is not faithful — check for ops that differ between train and eval, "
            f"or relax [export] parity thresholds in the target"
        )


class SearchError(EdgekdError):
    """A student search that cannot give a student: no candidate within the target's budgets, or none measurable."""
