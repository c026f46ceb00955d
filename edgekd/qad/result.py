"""What the quantization-aware phase returns and leaves in qad.json: torch-free, so that
`edgekd bench` (which imports no torch) reads it back typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgekd.paired import PairedDrop

QadPhase = Literal["post-training", "post-training-exclusions", "qat", "qad"]


@dataclass(frozen=True)
class QadParity:
    """The fake-quantized PyTorch model against ONNX Runtime's int8 execution of the exported file."""

    max_abs: float
    mean_abs: float
    largest_logit: float
    agreement: float  # share of test inputs with the same top-1


@dataclass(frozen=True)
class QadVariant:
    role: QadPhase  # "post-training" (with or without exclusions), "qat" (labels only) or "qad" (against the teacher)
    name: str  # what the tables call it (NAMES[role])
    file: str  # the file it ships as (.onnx, or .ort for ORT-format targets); "" for the post-training model (export's own artifact)
    val_accuracy: float
    test_accuracy: float
    drop_vs_fp32: PairedDrop  # test images, paired against the fp32 student
    bytes: int
    parity: QadParity | None = None  # None for the post-training model (ORT made it, nothing to compare)
    history: list = field(default_factory=list)
    best_epoch: int = 0


@dataclass(frozen=True)
class QadResult:
    run_dir: str
    target: str
    settings: dict  # epochs, lr, batch size, objective
    fp32_val_accuracy: float
    fp32_test_accuracy: float
    variants: list[QadVariant]
    seconds: float
    deployed: str = ""  # the file the run ships after this phase: the QAD file, or export's deployed artifact
    deployed_because: str = ""
    schema_version: int = 1
