"""Roles: what a model is in a run, carried as a field; display names are made from it."""

import json

import pytest

from edgekd._io import to_jsonable
from edgekd.roles import Role, display_name


@pytest.mark.parametrize("role, kwargs, name", [
    (Role.teacher, {}, "teacher fp32"),
    (Role.student, {}, "student fp32"),
    (Role.ptq, {"scheme": "static-qdq"}, "student int8"),
    (Role.ptq, {"scheme": "dynamic"}, "student int8 dynamic"),
    (Role.ptq, {"scheme": "fp16"}, "student fp16"),
    (Role.ptq, {"scheme": "none", "ort_format": True}, "student fp32 (ORT format)"),
    (Role.ptq, {"scheme": "static-qdq", "beside_quantization_aware": True}, "student int8 (post-training)"),
    (Role.qat, {}, "student int8 QAT (labels only)"),
    (Role.qad, {}, "student int8 QAD"),
    (Role.model, {"file_name": "m.onnx"}, "m.onnx"),
])
def test_display_names_are_the_ones_reports_have_always_shown(role, kwargs, name):
    assert display_name(role, **kwargs) == name


def test_roles_are_written_to_json_as_their_values_also_as_keys():
    assert json.loads(json.dumps(to_jsonable({Role.ptq: [Role.teacher]}))) == {"ptq": ["teacher"]}
