"""Every scheme through ONNX Runtime's quantizers, the accuracy-aware loop, and `auto`."""

import shutil
from pathlib import Path

import onnx
import pytest

from edgekd.runtime.session import open_session, run_batches
from edgekd.data import load_data
from edgekd.export.exclusion import rank_nodes_by_error
from edgekd.export.quantize import FP32_CANDIDATE, quantize_model

from edgekd.targets import QuantizationConfig, Scheme

# The run folder's names of the quantized student (made from student.sim.onnx)
ARTIFACTS = {Scheme.static_qdq: "student.int8.onnx", Scheme.dynamic: "student.int8-dynamic.onnx", Scheme.fp16: "student.fp16.onnx"}

DIGITS = load_data("digits")


def _quantize(run, tmp_path, size_limit=None, **settings):
    # These tests are about the quantized file: "warn" keeps it even where the tiny student runs faster in fp32.
    cfg = QuantizationConfig(**{"if_slower_than_fp32": "warn", **settings})
    source = tmp_path / "student.sim.onnx"
    shutil.copyfile(run / "student.sim.onnx", source)
    return quantize_model(source, tmp_path, cfg, DIGITS.calibration(cfg.calibration_samples), DIGITS.x_val, DIGITS.y_val, size_limit=size_limit)


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


def test_relative_paths_get_ort_pre_processing(exported_run, tmp_path, monkeypatch):
    """ORT's tools run inside the work folder: a relative path must not silently skip pre-processing."""
    shutil.copyfile(exported_run / "student.sim.onnx", tmp_path / "student.sim.onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    result = quantize_model("student.sim.onnx", "out", QuantizationConfig(scheme=Scheme.static_qdq, if_slower_than_fp32="warn"), DIGITS.calibration(64), DIGITS.x_val, DIGITS.y_val)
    assert result.preprocess == "quant_pre_process", result.preprocess


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
    from edgekd.export.quantize import prepare

    prepared, _ = prepare(tmp_path / "student.sim.onnx", tmp_path)
    ranking = rank_nodes_by_error(prepared, bad.path, DIGITS.calibration(64), tmp_path)
    names = {n.name for n in onnx.load(str(prepared)).graph.node}
    assert {node for node, _ in ranking} == names, "every node can be excluded"
    ops = {n.name: n.op_type for n in onnx.load(str(prepared)).graph.node}
    weight = [value for node, value in ranking if ops[node] in ("Conv", "Gemm", "MatMul") and value > float("-inf")]
    other = [value for node, value in ranking if ops[node] not in ("Conv", "Gemm", "MatMul") and value > float("-inf")]
    kinds = [ops[node] in ("Conv", "Gemm", "MatMul") for node, value in ranking if value > float("-inf")]
    assert kinds == sorted(kinds, reverse=True), "weight-bearing nodes first: their rounding goes only with them"
    assert weight == sorted(weight, reverse=True) and other == sorted(other, reverse=True), "then by the SQNR lost across each node"
    assert weight and weight[0] > 0, "measured nodes come first, and the worst one loses accuracy"


def test_output_effect_ranks_what_brings_the_logits_nearest_fp32_first(exported_run, tmp_path):
    from edgekd.export.exclusion import rank_by_output_effect
    from edgekd.export.quantize import prepare, produce_variant

    bad = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_excluded_nodes=0)
    prepared, _ = prepare(tmp_path / "student.sim.onnx", tmp_path)
    nodes = [n.name for n in onnx.load(str(prepared)).graph.node]
    settings = {"per_channel": True, "reduce_range": False, "activation_type": "int8", "weight_type": "int8", "calibration_method": "minmax"}
    groups = [[name] for name in nodes] + [nodes]  # each node alone, and everything: the fp32 model itself

    def produce(path, group):
        produce_variant(prepared, path, Scheme.static_qdq, settings, DIGITS.calibration(1), exclude=group)

    ranked = rank_by_output_effect(prepared, Path(bad.path), groups, tmp_path, produce, DIGITS.x_val)
    gains = [gain for _, gain in ranked]
    assert sorted(map(tuple, (g for g, _ in ranked))) == sorted(map(tuple, groups)) and gains == sorted(gains, reverse=True)
    assert ranked[0][0] == nodes and gains[0] > 60, "nothing quantized: the logits are fp32's (to float rounding)"


def test_tight_budget_excludes_nodes_until_it_holds(exported_run, tmp_path):
    # One calibration image gives poor activation ranges: int8 loses accuracy that exclusion recovers.
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_drop_vs_fp32=0.0)
    first, last = result.steps[0], result.steps[-1]
    assert first.drop > 0 and first.excluded == [] and first.p_value < 0.05, "the loop starts only on a real drop"
    assert result.excluded_nodes and result.budget_met and last.drop < first.drop
    assert last.drop <= 0.0 or last.p_value >= 0.05, "it stops once the drop is within budget or no longer distinguishable from noise"
    assert all(s.p_value < 0.05 for s in result.steps[:-1]), "it goes on only while the drop is real"
    counts = [len(s.excluded) for s in result.steps]
    assert counts[0] == 0 and counts == sorted(set(counts)), "each step keeps more nodes in fp32 (a node with its consumers)"
    assert last.excluded == result.excluded_nodes
    assert result.drop_interval == last.drop_interval and result.drop_interval[0] <= result.drop_vs_fp32 <= result.drop_interval[1]


def test_a_drop_of_a_few_images_is_too_close_to_call_and_excludes_nothing(exported_run, tmp_path):
    """Two validation images lost of 40 is beyond a zero budget, but it is noise: nothing is excluded."""
    import numpy as np

    from edgekd.runtime.metrics import file_correct

    raw = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_excluded_nodes=0)
    fp32_hits = file_correct(tmp_path / "student.sim.onnx", DIGITS.x_val, DIGITS.y_val)
    int8_hits = file_correct(raw.path, DIGITS.x_val, DIGITS.y_val)
    lost, both = np.flatnonzero(fp32_hits & ~int8_hits), np.flatnonzero(fp32_hits & int8_hits)
    assert len(lost) >= 2, "one calibration image makes int8 lose some validation images"
    subset = np.concatenate([lost[:2], both[:38]])
    cfg = QuantizationConfig(scheme=Scheme.static_qdq, calibration_samples=1, max_drop_vs_fp32=0.0, if_slower_than_fp32="warn")
    result = quantize_model(tmp_path / "student.sim.onnx", tmp_path, cfg, DIGITS.calibration(1), DIGITS.x_val[subset], DIGITS.y_val[subset])
    assert result.drop_vs_fp32 == 2 / 40 and result.drop_p_value == 0.5
    assert result.too_close_to_call and result.budget_met and result.excluded_nodes == [] and len(result.steps) == 1
    assert any("too close to call" in w for w in result.warnings)


def test_a_budget_that_exclusion_may_not_reach_stops_with_a_verdict(exported_run, tmp_path):
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, calibration_samples=1, max_drop_vs_fp32=0.0, max_excluded_nodes=0)
    assert not result.budget_met and result.excluded_nodes == [] and result.drop_p_value < 0.05
    assert any("even with 0 node(s) excluded" in w for w in result.warnings)


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
    import edgekd.runtime.timing as latency

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
    result = quantize_model(source, tmp_path, cfg, DIGITS.calibration(32), DIGITS.x_val, DIGITS.y_val)
    assert "dynamic" not in {c.name for c in result.candidates}
    assert any("convolution-dominated" in w for w in result.warnings)


@pytest.mark.parametrize("policy", ["warn", "fallback", "fail"])
def test_a_fixed_scheme_slower_than_fp32_is_measured_and_acted_on(exported_run, tmp_path, monkeypatch, policy):
    """Timings fixed (tests check logic, not wall-clock): int8 three times slower than fp32."""
    import edgekd.runtime.timing as latency

    def fixed_times(calls, warmup, runs, min_seconds=0.0):
        return {name: [1_000 if name == "fp32" else 3_000] * runs for name in calls}

    monkeypatch.setattr(latency, "time_interleaved", fixed_times)
    result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, if_slower_than_fp32=policy)
    versus = result.versus_fp32
    assert versus.slower and not versus.larger and versus.p50_ms == 3 * versus.fp32_p50_ms and versus.provider == "CPUExecutionProvider"
    assert versus.fp32_bytes == (tmp_path / "student.sim.onnx").stat().st_size
    if policy == "fallback":
        assert result.scheme == "none" and result.path is None and "slower" in result.fell_back
        assert not (tmp_path / ARTIFACTS[Scheme.static_qdq]).exists(), "the int8 file that does not pay is not left behind"
        assert result.val_accuracy == result.fp32_val_accuracy and result.bytes == versus.fp32_bytes
    else:
        assert result.scheme == "static-qdq" and result.path and not result.fell_back
        assert any("slower" in w for w in result.warnings)


@pytest.mark.parametrize("fp32_fits", [True, False])
def test_fastest_ships_fp32_when_it_is_faster_and_small_enough_else_says_why_int8_ships(exported_run, tmp_path, monkeypatch, fp32_fits):
    """if_slower_than_fp32 = "fastest" (timings fixed): int8 three times slower; fp32 ships unless it misses the size budget."""
    import edgekd.runtime.timing as latency

    monkeypatch.setattr(latency, "time_interleaved", lambda calls, warmup, runs, min_seconds=0.0: {n: [1_000 if n == "fp32" else 3_000] * runs for n in calls})
    fp32_bytes = (exported_run / "student.sim.onnx").stat().st_size
    limit = (fp32_bytes * (2 if fp32_fits else 0.5), "max_size_kb = 1")
    result = _quantize(exported_run, tmp_path, size_limit=limit, scheme=Scheme.static_qdq, if_slower_than_fp32="fastest")
    if fp32_fits:
        assert result.scheme == "none" and result.path is None and "fp32 is faster" in result.deployed_because \
            and "on the validation split: accuracy" in result.deployed_because
        assert "meet the size budgets (max_size_kb = 1)" in result.deployed_because
        assert not (tmp_path / ARTIFACTS[Scheme.static_qdq]).exists()
    else:
        assert result.scheme == "static-qdq" and result.path and not result.fell_back
        assert "misses the size budget" in result.deployed_because and "max_size_kb = 1" in result.deployed_because


def test_a_fixed_scheme_that_pays_is_recorded_without_a_warning(exported_run, tmp_path, monkeypatch):
    import edgekd.runtime.timing as latency

    monkeypatch.setattr(latency, "time_interleaved", lambda calls, warmup, runs, min_seconds=0.0: {n: [2_000 if n == "fp32" else 1_000] * runs for n in calls})
    for policy in ("fallback", "fastest"):
        result = _quantize(exported_run, tmp_path, scheme=Scheme.static_qdq, if_slower_than_fp32=policy)
        assert result.scheme == "static-qdq" and not result.versus_fp32.slower and not result.versus_fp32.larger
        assert not any("than the fp32 model" in w for w in result.warnings)
    assert "not slower than fp32" in result.deployed_because


_RANK_IN_CHILD = """
import json, resource, sys
from pathlib import Path
import numpy as np
from edgekd.export.exclusion import rank_nodes_by_error
work, count = Path(sys.argv[1]), int(sys.argv[2])
x = np.load(work / "inputs.npy")[:count]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ranking = rank_nodes_by_error(work / "prepared.onnx", work / "qdq.onnx", x, work)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "before_kib": before, "ranked": len(ranking)}))
"""


def test_ranking_memory_is_bounded_by_the_model_not_by_the_images(tmp_path):
    """Peak RSS of the ranking, measured in child processes, at 16 and at 256 inputs of a net with
    many large activations. Holding every tensor of every input (as ORT's collect_activations does)
    would add ~240 × one input's activations; accumulating input by input adds nothing."""
    import json
    import subprocess
    import sys

    import numpy as np
    import onnxruntime as ort
    import torch

    from edgekd.export.onnx import export_onnx
    from edgekd.export.quantize import prepare, produce_variant
    from edgekd.inputs import as_inputs
    from edgekd.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec("mobilenetv2", {}, [3, 64, 64], 10)).eval()
    x = np.random.default_rng(0).standard_normal((256, 3, 64, 64)).astype(np.float32)
    export_onnx(model, x[:4], tmp_path / "fp32.onnx", 18)
    prepared, _ = prepare(tmp_path / "fp32.onnx", tmp_path)
    qdq = tmp_path / "qdq.onnx"
    produce_variant(prepared, qdq, Scheme.static_qdq, {"per_channel": False, "reduce_range": False, "activation_type": "int8",
                                                "weight_type": "int8", "calibration_method": "minmax"}, as_inputs(x[:8]), exclude=[])
    np.save(tmp_path / "inputs.npy", x)
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    modify_model_output_intermediate_tensors(str(qdq), str(tmp_path / "aug.onnx"))
    augmented = ort.InferenceSession(str(tmp_path / "aug.onnx"), providers=["CPUExecutionProvider"])
    per_input_kib = sum(o.nbytes for o in augmented.run(None, {augmented.get_inputs()[0].name: x[:1]})) / 1024
    assert per_input_kib > 1024, "the test needs activations large enough to show"

    def peak(count: int) -> dict:
        done = subprocess.run([sys.executable, "-c", _RANK_IN_CHILD, str(tmp_path), str(count)], capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    few, many = peak(16), peak(256)
    assert few["ranked"] == many["ranked"] > 30, "every node ranked"
    growth_kib = many["peak_kib"] - few["peak_kib"]
    print(f"peak RSS {few['peak_kib']:,} KiB at 16 inputs, {many['peak_kib']:,} KiB at 256; one input's activations {per_input_kib:,.0f} KiB")
    assert growth_kib < 0.1 * 240 * per_input_kib, f"peak RSS grew {growth_kib:,} KiB from 16 to 256 inputs (keeping them would be ~{240 * per_input_kib:,.0f} KiB)"


def test_onnx_runtime_s_quantizer_logs_do_not_reach_the_user(text_run, tmp_path, caplog):
    """Per-channel static int8 of a transformer: ORT logs a warning for each LayerNorm weight (no
    channel axis), which the user cannot act on; the result says what was quantized."""
    from edgekd.data import load_recipe_data
    from edgekd.export.quantize import prepare, produce_variant, scheme_settings
    from edgekd.runfolder import load_run_recipe

    data = load_recipe_data(load_run_recipe(text_run).data)
    prepared, _ = prepare(text_run / "student.sim.onnx", tmp_path)
    settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(per_channel=True))
    with caplog.at_level("DEBUG"):
        produce_variant(prepared, tmp_path / "q.onnx", Scheme.static_qdq, settings, data.calibration(8), [])
    assert (tmp_path / "q.onnx").is_file()
    assert not [r.getMessage() for r in caplog.records if r.name == "root"], "ORT's own log reached the user"
