"""ORT-format packaging and NNAPI/CoreML coverage, with ONNX Runtime's own tools."""

import numpy as np

from edgekd.runtime.session import open_session, run_batches
from edgekd.data import load_data
from edgekd.export.mobile import package_ort
from edgekd.runtime.coverage import mobile_coverage


def test_ort_format_loads_and_gives_the_same_outputs(exported_run, tmp_path):
    package = package_ort(exported_run / "student.int8.onnx", tmp_path, ["CPUExecutionProvider"], None)
    assert package.ort_file.endswith("student.int8.ort") and package.optimization_style == "Fixed"
    x = load_data("digits").x_test
    ort_logits = run_batches(open_session(package.ort_file), x)
    onnx_logits = run_batches(open_session(exported_run / "student.int8.onnx"), x)
    assert np.array_equal(ort_logits.argmax(1), onnx_logits.argmax(1))
    config = (tmp_path / "student.int8.required_operators.config").read_text()
    assert "QuantizeLinear" in config


def test_mobile_providers_get_runtime_optimisation(exported_run, tmp_path):
    package = package_ort(exported_run / "student.sim.onnx", tmp_path, ["NnapiExecutionProvider", "CPUExecutionProvider"], "arm")
    assert package.optimization_style == "Runtime"
    assert run_batches(open_session(package.ort_file), load_data("digits").x_test[:3]).shape == (3, 10)


def test_dynamic_shapes_keep_nnapi_away_and_qdq_keeps_coreml_away(exported_run):
    coverage = {c.ep: c for c in mobile_coverage(exported_run / "student.int8.onnx")}
    assert coverage["NNAPI"].coverage < 1.0, "NNAPI takes no node whose input shape is dynamic"
    assert "ai.onnx:QuantizeLinear" in coverage["CoreML"].unsupported_ops


def test_android_target_export(android_run):
    import json

    result = json.loads((android_run / "export.json").read_text())
    assert result["deployed"] == "student.int8.ort" and result["fixed_batch"] == 1
    nnapi = next(c for c in result["mobile"] if c["ep"] == "NNAPI")
    assert nnapi["coverage"] == 1.0 and nnapi["partitions"] == 1
    assert result["quantized"]["settings"]["activation_type"] == "uint8"
    session = open_session(android_run / "student.int8.ort")
    assert session.get_inputs()[0].shape[0] == 1
    assert (android_run / "student.int8.required_operators.config").is_file()
