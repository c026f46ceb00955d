"""What a model is in a run: its role. Results carry roles as fields; the names people read
("teacher fp32", "student int8 QAD") are made from them, only for display.

A budget compares the deployed model with the teacher (accuracy drop, compression) and with the
fp32 student it came from (quantization drop, slower than fp32): the code finds those by role,
never by a display name or by the order of a dict.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    teacher = "teacher"  # the budgets' reference: the teacher, the teachers' ensemble, or bench's --teacher file
    scratch = "scratch"  # the student trained from the hard labels alone: what distillation is measured against
    student = "student"  # the distilled student in fp32
    ptq = "ptq"  # the student quantized after training (static int8, dynamic int8 or fp16)
    qat = "qat"  # the student fine-tuned through its int8 graph on the labels alone
    qad = "qad"  # the student fine-tuned through its int8 graph against the teacher (quantization-aware distillation)
    model = "model"  # a bare ONNX file given to `edgekd bench`


_SCHEME_WORDS = {"static-qdq": "int8", "dynamic": "int8 dynamic", "fp16": "fp16", "none": "fp32"}


def display_name(role: Role, scheme: str | None = None, file_name: str = "", ort_format: bool = False,
                 beside_quantization_aware: bool = False) -> str:
    """The name a report shows for a model of `role`.

    `scheme` is the post-training scheme (for `ptq`), `file_name` names a bare model, `ort_format`
    marks an ORT-format artifact, and `beside_quantization_aware` tells post-training int8 apart
    when a quantization-aware model is shown beside it."""
    if role is Role.model:
        return file_name or "model"
    name = {
        Role.teacher: "teacher fp32",
        Role.scratch: "student fp32 (scratch)",
        Role.student: "student fp32",
        Role.ptq: f"student {_SCHEME_WORDS.get(scheme or '', 'quantized')}",
        Role.qat: "student int8 QAT (labels only)",
        Role.qad: "student int8 QAD",
    }[role]
    if role is Role.ptq and beside_quantization_aware:
        name += " (post-training)"
    return name + (" (ORT format)" if ort_format else "")
