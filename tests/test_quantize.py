"""Every scheme through ONNX Runtime's quantizers, the accuracy-aware loop, and `auto`."""

import shutil

import onnx
import pytest

from edgekd._ort import open_session, run_batches
from edgekd.data import load_data
from edgekd.export.quantize import ARTIFACTS, FP32_CANDIDATE, quantize, rank_nodes_by_error
from edgekd.targets import QuantizationConfig, Scheme

DIGITS = load_data("digits")


def _quantize(run, tmp_path, **settings):
    cfg = QuantizationConfig(**settings)
    source = tmp_path / "student.sim.onnx"
    shutil.copyfile(run / "student.sim.onnx", source)
    return quantize(source, tmp_path, cfg, DIGITS.calibration(cfg.calibration_samples), DIGITS.x_val, DIGITS.y_val)


@pytest.mark.parametrize("scheme", [Scheme.static_qdq, Scheme.dynamic, Scheme.fp16])
def test_each_scheme_runs_in_ort_and_keeps_accuracy(exported_run, tmp_path, scheme):
    result = _quantize(exported_run, tmp_path, scheme=scheme)
    assert result.path == str(tmp_path / ARTIFACTS[scheme]) and result.scheme == scheme.value
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    expected_op = {Scheme.static_qdq: "QuantizeLinear", Scheme.dynamic: "DynamicQuantizeLinear", Scheme.fp16: "Cast"}[scheme]
    assert expected_op in ops
    logits = run_batches(open_session(result.path), DIGITS.x_test)
    fp32 = run_batches(open_session(tmp_path / "student.sim.onnx"), DIGITS.x_test)
    assert abs((logits.argmax(1) == DIGITS.y_test).mean() - (fp32.argmax(1) == DIGITS.y_test).mean()) <= 0.02
    assert result.bytes < (tmp_path / "student.sim.onnx").stat().st_size


def test_scheme_none_deploys_fp32(exported_run, tmp_path):
    result = _quantize(exported_run, tmp_path, scheme=Scheme.none)
    assert result.path is None and result.budget_met and result.drop_vs_fp32 == 0


def test_calibration_and_types_are_recorded(exported_run, tmp_path):
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, activation_type="uint8", weight_type="uint8",
                       per_channel=False, calibration_method="percentile", calibration_samples=64)
    assert result.settings == {"per_channel": False, "reduce_range": False, "activation_type": "uint8",
                               "weight_type": "uint8", "calibration_method": "percentile"}
    assert result.calibration_samples == 64
    model = onnx.load(result.path)
    assert any(i.data_type == onnx.TensorProto.UINT8 for i in model.graph.initializer)


def test_nodes_ranked_worst_first(exported_run, tmp_path):
    bad = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_excluded_nodes=0)
    from edgekd.export.quantize import _prepare

    prepared, _ = _prepare(tmp_path / "student.sim.onnx", tmp_path)
    ranking = rank_nodes_by_error(prepared, bad.path, DIGITS.calibration(64), tmp_path)
    names = {n.name for n in onnx.load(str(prepared)).graph.node}
    assert {node for node, _ in ranking} == names, "every node can be excluded"
    sqnr = [value for _, value in ranking]
    assert sqnr == sorted(sqnr), "lowest signal-to-quantization-noise ratio first"
    assert sqnr[0] < float("inf"), "measured nodes come first"


def test_tight_budget_excludes_nodes_until_it_holds(exported_run, tmp_path):
    # One calibration image gives poor activation ranges: int8 loses accuracy that exclusion recovers.
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_drop_vs_fp32=0.0)
    assert result.steps[0].drop > 0 and result.steps[0].excluded == []
    assert result.excluded_nodes and result.budget_met and result.drop_vs_fp32 <= 0.0
    assert [len(s.excluded) for s in result.steps] == list(range(len(result.steps)))
    assert result.steps[-1].excluded == result.excluded_nodes


def test_impossible_budget_stops_with_a_verdict(exported_run, tmp_path):
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_drop_vs_fp32=0.0, max_excluded_nodes=1)
    assert not result.budget_met and len(result.excluded_nodes) == 1
    assert any("even with 1 node(s) excluded" in w for w in result.warnings)


def test_auto_times_every_candidate_and_keeps_the_fastest_within_budget(exported_run, tmp_path):
    result = _quantize(exported_run, tmp_path, scheme=Scheme.auto, max_drop_vs_fp32=0.02)
    names = [c.name for c in result.candidates]
    assert names == ["static-qdq per-tensor", "static-qdq per-channel", "static-qdq per-channel reduce-range", "dynamic", FP32_CANDIDATE]
    assert result.requested == "auto" and sum(c.kept for c in result.candidates) == 1
    kept = next(c for c in result.candidates if c.kept)
    within = [c for c in result.candidates if c.drop <= 0.02]
    assert kept.p50_ms == min(c.p50_ms for c in within), "fp32 is a candidate: nothing slower than it ships"
    assert result.scheme == kept.scheme and result.fp32_p50_ms > 0
    assert result.cpu["int8_dot_product"] in ("yes", "no")
    if kept.name == FP32_CANDIDATE:
        assert result.path is None and any("deploying the fp32 model" in w for w in result.warnings)


@pytest.mark.parametrize("fastest", ["fp32", "static-qdq per-channel"])
def test_auto_ships_int8_only_when_it_is_faster_than_fp32(exported_run, tmp_path, monkeypatch, fastest):
    """The choice, with timings fixed (tests check logic, not wall-clock): the fastest model within budget ships."""
    import edgekd.bench.latency as latency

    def fixed_times(calls, warmup, runs, min_seconds=0.0):
        return {name: [1_000 if name == fastest else 2_000] * runs for name in calls}

    monkeypatch.setattr(latency, "time_interleaved", fixed_times)
    result = _quantize(exported_run, tmp_path, scheme=Scheme.auto, max_drop_vs_fp32=1.0)
    kept = next(c for c in result.candidates if c.kept)
    if fastest == "fp32":
        assert kept.name == FP32_CANDIDATE and result.scheme == "none" and result.path is None
    else:
        assert kept.name == fastest and result.scheme == "static-qdq" and result.path


def test_auto_does_not_try_dynamic_int8_on_a_convolution_dominated_graph(exported_run, tmp_path):
    cfg = QuantizationConfig(scheme=Scheme.auto, max_drop_vs_fp32=1.0, calibration_samples=32)
    source = tmp_path / "teacher.onnx"  # the CNN teacher: Conv layers outnumber its Gemms
    shutil.copyfile(exported_run / "teacher.onnx", source)
    result = quantize(source, tmp_path, cfg, DIGITS.calibration(32), DIGITS.x_val, DIGITS.y_val)
    assert "dynamic" not in {c.name for c in result.candidates}
    assert any("convolution-dominated" in w for w in result.warnings)
