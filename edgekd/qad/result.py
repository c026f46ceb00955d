"""What the quantization-aware phase returns and leaves in qad.json: torch-free, so that
`edgekd bench` (which imports no torch) reads it back typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgekd.paired import PairedDrop
from edgekd.roles import Role

QadPhase = Literal["post-training", "post-training-exclusions", "qat", "qad"]
PHASE_ROLES: dict[str, Role] = {"post-training": Role.ptq, "post-training-exclusions": Role.ptq, "qat": Role.qat, "qad": Role.qad}


@dataclass(frozen=True)
class QadParity:
    """The fake-quantized PyTorch model against ONNX Runtime's int8 execution of the exported file."""

    max_abs: float
    mean_abs: float
    largest_logit: float
    agreement: float  # share of test inputs with the same top-1


@dataclass(frozen=True)
class QadVariant:
    role: Role  # ptq (post-training int8, with or without exclusions), qat (labels only) or qad (against the teacher)
    phase: QadPhase  # which of the phase's models: the role, with post-training int8 told apart from its exclusions variant
    name: str  # what the tables call it (NAMES[phase])
    file: str  # the file it ships as (.onnx, or .ort for ORT-format targets); "" for the post-training model (export's own artifact)
    val_accuracy: float  # the task's primary metric (QadResult.metric: accuracy, miou, entity_f1, rmse) on the validation split
    test_accuracy: float
    drop_vs_fp32: PairedDrop  # test split, paired against the fp32 student by the task's paired comparison
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
    deployed_role: Role = Role.ptq  # the role of the file that ships: ptq (export's artifact, whatever its scheme), qat or qad
    metric: str = "accuracy"  # the primary metric the variants' val_accuracy and test_accuracy hold
    skipped: str = ""  # why the phase did not train (edgekd's mirror cannot reproduce ORT's int8 model): post-training int8 ships
    kept_fp32: dict[str, str] = field(default_factory=dict)  # nodes left in fp32 in the phase's files, and why
    schema_version: int = 2  # 2: variants carry their role (Role) and phase, the result its deployed_role

    @staticmethod
    def upgrade(data: dict) -> dict:
        """A version-1 qad.json, read as version 2: its variants' `role` was the phase."""
        if data.get("schema_version") == 1:
            variants = [{**v, "phase": v.get("role"), "role": PHASE_ROLES.get(v.get("role"), v.get("role"))} for v in data.get("variants", [])]
            shipped = next((v["role"] for v in variants if v.get("file") and v.get("file") == data.get("deployed")), Role.ptq)
            data = {**data, "variants": variants, "deployed_role": shipped, "schema_version": 2}
        return data
