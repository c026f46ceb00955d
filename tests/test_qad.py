"""Quantization-aware distillation: the fake-quantized model is ORT's int8 model, the export keeps
the learned scales, a resumed phase ends where an uninterrupted one does, and a short phase wins
back accuracy that post-training int8 lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from edgekd import runfolder
from edgekd._io import sha256_file
from edgekd.runtime.session import open_session, run_batches
from edgekd.cli import app
from edgekd.data import load_data
from edgekd.errors import QadError, RecipeError
from edgekd.export.quantize import scheme_settings
from edgekd.qad.graph import FakeQuantGraph, read_plan
from edgekd.roles import Role
from edgekd.qad.stage import check_qad_parity, export_qdq, post_training_plan, quantization_aware
from edgekd.targets import QuantizationConfig, Scheme
from edgekd.task import task

DIGITS = load_data("digits")
# Per-tensor weights and one calibration image: activation ranges that clip, an int8-fragile model.
_FRAGILE = 'description = "fragile int8"\n[quantization]\nper_channel = false\ncalibration_samples = 1\nif_slower_than_fp32 = "warn"\n'  # int8 ships: what these tests check


def _ptq(run: Path, work: Path, **settings) -> tuple[Path, Path, dict]:
    chosen = scheme_settings(Scheme.static_qdq, QuantizationConfig(**settings))
    prepared, ptq, _ = post_training_plan(run / "student.sim.onnx", work, chosen, DIGITS.calibration(settings.get("calibration_samples", 64)))
    return prepared, ptq, chosen


def _written_scales(path: Path) -> dict[str, float]:
    """The activation scales a QDQ file quantizes with, by tensor (its QuantizeLinear nodes)."""
    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0].removesuffix("_QuantizeLinear_Input"): float(init[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _one_step(graph: FakeQuantGraph, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training step's output and the gradients it leaves on the graph's parameters."""
    from edgekd.models.call import forward

    out = forward(graph.train(), batch).float()
    out.logsumexp(1).sum().backward()
    return out.detach(), {n: p.grad for n, p in graph.named_parameters() if p.grad is not None}


def _text_mirror(text_run: Path, folder: Path, **quantization):
    """The text student's prepared graph and quantizer plan, and a training batch of 16."""
    from edgekd.data import load_recipe_data
    from edgekd.models.call import take, to_tensors, trim

    data = load_recipe_data(runfolder.load_run_recipe(text_run).data)
    settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(**quantization))
    prepared, _, plan = post_training_plan(text_run / "student.sim.onnx", folder, settings, data.calibration(32))
    return prepared, plan, trim(take(to_tensors(data.x_train, torch.device("cpu")), slice(0, 16)), data.x_train.spec)


def _exact_on_ort_qdq_ops(graph, path: Path, x):
    """The mirror's promise: the same tensors quantized, the same scales, the same rounding. It is
    checked where ONNX Runtime executes the QDQ model as written (QuantizeLinear, DequantizeLinear
    and fp32 ops: optimisation level "basic"), which is exact whatever the CPU. At level "all" (what
    ships) ORT fuses the pattern into int8 kernels chosen per CPU, which now and then put a value one
    step away at a rounding tie (~1 model in 10 here): there the stage's own gate is the contract."""
    from edgekd.models.call import predict
    from edgekd.qad.stage import PARITY_MAX_MEAN_REL, PARITY_MIN_AGREEMENT
    from edgekd.targets import RuntimeConfig

    graph.fused_kernels = False  # at level "basic" ORT runs no fused int8 kernel
    try:
        ours = predict(graph, x)
    finally:
        graph.fused_kernels = True
    theirs = run_batches(open_session(path, runtime=RuntimeConfig(intra_op_threads=1, graph_optimization="basic")), x)
    assert (ours.argmax(1) == theirs.argmax(1)).all() and np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    shipped = check_qad_parity(graph, path, x, "classification")  # raises beyond the gate
    assert shipped.agreement >= PARITY_MIN_AGREEMENT and shipped.mean_abs <= PARITY_MAX_MEAN_REL * shipped.largest_logit
    return shipped


@pytest.mark.parametrize("settings", [{"per_channel": True}, {"per_channel": False}, {"weight_type": "uint8", "activation_type": "uint8"},
                                      {"reduce_range": True}, {"activation_type": "uint8", "per_channel": False}],
                         ids=["per-channel", "per-tensor", "uint8-weights", "reduce-range", "uint8-activations"])
def test_the_fake_quantized_graph_is_ort_s_int8_model(exported_run, tmp_path, settings):
    prepared, ptq, _ = _ptq(exported_run, tmp_path, **settings)
    graph = FakeQuantGraph(prepared, read_plan(ptq)).eval()
    parity = _exact_on_ort_qdq_ops(graph, ptq, DIGITS.x_test)
    plain = FakeQuantGraph(prepared, read_plan(ptq), fake_quant=False).eval()  # the same graph in fp32
    fp32 = run_batches(open_session(prepared), DIGITS.x_test)
    from edgekd.models.call import predict

    assert np.abs(predict(plain, DIGITS.x_test) - fp32).max() < 1e-4
    assert np.abs(predict(graph, DIGITS.x_test) - fp32).max() > 1e-3 * parity.largest_logit, "int8 is not fp32: the test can tell them apart"


def test_the_export_writes_the_learned_scales_and_ort_runs_it_as_int8(exported_run, tmp_path):
    prepared, ptq, settings = _ptq(exported_run, tmp_path)
    graph = FakeQuantGraph(prepared, read_plan(ptq))
    with torch.no_grad():
        for scale in graph.scales.values():
            scale.mul_(1.3)  # as if training had moved every activation scale
    export_qdq(graph, prepared, tmp_path / "qad.onnx", settings, DIGITS.calibration(64), tmp_path)
    written = _written_scales(tmp_path / "qad.onnx")
    learned = graph.learned_scales()
    assert set(written) == set(learned)
    assert all(np.isclose(written[name], scale, rtol=1e-6) for name, (scale, _) in learned.items())
    session = open_session(tmp_path / "qad.onnx")
    assert session.get_providers() == ["CPUExecutionProvider"]
    check_qad_parity(graph.eval(), tmp_path / "qad.onnx", DIGITS.x_test, "classification")


def test_an_unsupported_operator_is_refused_before_training(exported_run, tmp_path):
    prepared, ptq, _ = _ptq(exported_run, tmp_path)
    model = onnx.load(str(prepared))
    model.graph.node[0].op_type = "Einsum"
    onnx.save(model, str(tmp_path / "odd.onnx"))
    with pytest.raises(QadError, match="cannot run Einsum"):
        FakeQuantGraph(tmp_path / "odd.onnx", read_plan(ptq))


def test_an_ensemble_teacher_gives_its_members_soft_targets_not_its_average_softened_again(exported_run, tmp_path):
    from edgekd.models.build import ENSEMBLE, ModelSpec
    from edgekd.models.checkpoint import load_model, save_checkpoint
    from edgekd.models.ensemble import Ensemble, ensemble_args
    from edgekd.qad.stage import _teachers

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    teacher, spec = load_model(run / "teacher.pt")
    ensemble = ModelSpec(ENSEMBLE, ensemble_args([spec.to_dict(), spec.to_dict()], [1.0, 3.0]), spec.input_shape, spec.num_classes, spec.inputs)
    save_checkpoint(Ensemble([teacher, teacher], [1.0, 3.0]), ensemble, run / "teacher.pt")  # as distill writes several teachers
    runfolder.record(run, "distill", ["teacher.pt"])
    teachers = _teachers(run)
    assert teachers.weights == [1.0, 3.0] and all(m.model is not None for m in teachers.members)


def _fragile_run(exported_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (tmp_path / "fragile.toml").write_text(_FRAGILE)
    return run, tmp_path / "fragile.toml"


def test_a_short_phase_wins_back_what_post_training_int8_lost(exported_run, tmp_path):
    run, target = _fragile_run(exported_run, tmp_path)
    result = quantization_aware(run, target, epochs=2, baseline=True)
    ptq, qat, qad = result.variants
    assert [v.name for v in result.variants] == ["post-training int8", "quantization-aware training", "quantization-aware distillation"]
    assert ptq.drop_vs_fp32.drop > 0.03, "the fixture must be int8-fragile for this test to mean anything"
    assert qad.test_accuracy > ptq.test_accuracy + 0.02  # a loose bound: tools/qad_table.py measures the gain
    assert qad.parity.agreement >= 0.99 and (run / qad.file).is_file() and (run / qat.file).is_file()
    manifest = runfolder.load_manifest(run)
    assert {"student.int8-qad.onnx", "student.int8-qat.onnx", "qad.json"} <= set(manifest["stages"]["qad"]["files"])
    assert not (run / "checkpoints").exists()


def test_the_bench_shows_every_int8_model_side_by_side_and_ships_the_chosen_one(exported_run, tmp_path):
    from edgekd.folders.bench import bench

    run, target = _fragile_run(exported_run, tmp_path)
    result = quantization_aware(run, target, epochs=2)
    report = bench(run, target=target, memory=False)
    names = [v.name for v in report.variants]
    _, qat, qad = result.variants
    best = qat if qat.val_accuracy > qad.val_accuracy else qad  # the better one on validation ships; QAD on ties
    assert result.deployed == best.file, result.deployed_because
    label = {"qat": "student int8 QAT (labels only)", "qad": "student int8 QAD"}
    other = qad if best is qat else qat
    assert names == ["teacher fp32", "student fp32", "student int8 (post-training)", label[other.role], label[best.role]]
    assert report.deployed == label[best.role] and result.deployed_role is best.role is report.deployed_role
    assert any(v.budget == "deployed_vs_fp32_latency" for v in report.verdicts)


@pytest.mark.slow
def test_run_fine_tunes_through_int8_when_the_recipe_asks(tmp_path):
    from edgekd.pipeline import run

    recipe = tmp_path / "r.toml"
    recipe.write_text('[teacher]\nmodel = "cnn"\nargs = { channels = [8, 16], hidden = 32 }\nepochs = 2\n'
                      '[student]\nmodel = "mlp"\nargs = { hidden = [32] }\n[distill]\nepochs = 2\n[qad]\nwhen = "always"\nepochs = 1\n')
    result = run(recipe, out=tmp_path / "run")
    assert result.qad is not None and (tmp_path / "run" / "qad.json").is_file()
    assert "student int8 QAD" in [v.name for v in result.bench.variants]


def test_a_resumed_phase_ends_with_the_weights_of_an_uninterrupted_one(exported_run, tmp_path, monkeypatch, interrupt_at_validation):
    straight, target = _fragile_run(exported_run, tmp_path / "a")
    quantization_aware(straight, target, epochs=3, baseline=False)
    interrupted, _ = _fragile_run(exported_run, tmp_path / "b")
    interrupt_at_validation(2)
    with pytest.raises(KeyboardInterrupt):
        quantization_aware(interrupted, target, epochs=3, baseline=False)
    assert (interrupted / "checkpoints" / "qad.ckpt").is_file() and not (interrupted / "qad.json").exists()
    monkeypatch.undo()
    quantization_aware(interrupted, target, epochs=3, baseline=False, resume=True)

    def weights(path: Path) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}

    a, b = weights(straight / "student.int8-qad.onnx"), weights(interrupted / "student.int8-qad.onnx")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_distill_qad_on_the_command_line(exported_run, tmp_path):
    run, target = _fragile_run(exported_run, tmp_path)
    result = CliRunner().invoke(app, ["distill", "--qad", "--out", str(run), "--target", str(target), "--qad-epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [v["name"] for v in printed["variants"]][-1] == "quantization-aware distillation" and printed["settings"]["epochs"] == 1
    written = json.loads((run / "qad.json").read_text())
    assert written["run_dir"] == "." and Path(printed["run_dir"]) == run  # the file names the folder it lies in relative to itself
    assert {**written, "run_dir": printed["run_dir"]} == printed
    table = CliRunner().invoke(app, ["distill", "--qad", "--out", str(run), "--target", str(target), "--qad-epochs", "1"])
    assert table.exit_code == 0 and "student.int8-qad.onnx" in table.stdout, table.output


def test_distill_qad_before_export_says_what_to_run(tiny_recipe, exported_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "student.sim.onnx").unlink()
    result = CliRunner().invoke(app, ["distill", "--qad", "--out", str(run)])
    assert result.exit_code == 2 and "edgekd export" in result.stderr, result.output


def test_a_mobile_target_gets_its_qad_model_in_ort_format_checked_as_it_ships(android_run, tmp_path):
    """android-arm64: uint8 weights and activations per tensor, a fixed batch of 1, ORT format."""
    run = tmp_path / "run"
    shutil.copytree(android_run, run)
    result = quantization_aware(run, "android-arm64-nnapi", epochs=1, baseline=False)
    qad = result.variants[-1]
    assert qad.file == "student.int8-qad.ort" and qad.parity.agreement >= 0.99
    assert (run / "student.int8-qad.required_operators.config").is_file()
    assert result.deployed in ("student.int8-qad.ort", "student.int8.ort"), result.deployed_because
    assert {"student.int8-qad.onnx", "student.int8-qad.ort", "qad.json"} <= set(runfolder.load_manifest(run)["stages"]["qad"]["files"])
    plan = read_plan(run / "student.int8-qad.onnx")
    assert {str(numpy_helper.to_array(i).dtype) for i in onnx.load(str(run / "student.int8-qad.onnx")).graph.initializer
            if i.name.endswith("_quantized") and i.name.removesuffix("_quantized") in plan.weights} == {"uint8"}


def test_a_transformer_student_is_mirrored_exactly_and_keeps_parity_after_training(text_run, tmp_path):
    """Embeddings (Gather), LayerNorm, GELU (Erf), attention masks and the shape arithmetic; tensors
    that share a scale in ORT's model (a Reshape's input and output, a Gather and its table) stay
    shared when training moves them apart."""
    from edgekd.data import load_recipe_data

    data = load_recipe_data(runfolder.load_run_recipe(text_run).data)
    settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False))
    prepared, ptq, plan = post_training_plan(text_run / "student.sim.onnx", tmp_path, settings, data.calibration(64))
    assert any(q.follows for q in plan.activations.values()), "a Gather output takes its table's scale"
    assert len({q.shared for q in plan.activations.values()}) < len(plan.activations), "some tensors share one scale"
    graph = FakeQuantGraph(prepared, plan).eval()
    _exact_on_ort_qdq_ops(graph, ptq, data.x_test)
    for seed in range(3):  # as if training had moved everything, further each time: each shared scale and every weight its own way
        torch.manual_seed(seed)
        with torch.no_grad():
            for scale in graph.scales.values():
                scale.mul_(float(torch.empty(()).uniform_(0.7, 1.4)))
            for weight in graph.params.values():
                weight.add_(0.02 * torch.randn_like(weight))
        export_qdq(graph, prepared, tmp_path / "qad.onnx", settings, data.calibration(64), tmp_path)
        _exact_on_ort_qdq_ops(graph, tmp_path / "qad.onnx", data.x_test)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_fine_tune_through_int8_and_write_one_set_of_files(exported_run, tmp_path):
    import subprocess
    import sys

    run, target = _fragile_run(exported_run, tmp_path)
    before = set(p.name for p in run.iterdir())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "edgekd", "distill", "--qad", "--out", str(run), "--target", str(target), "--qad-epochs", "2", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('"variants"') == 1, "rank 0 alone prints"
    result = json.loads(done.stdout[done.stdout.index("{"):])
    qad = result["variants"][-1]
    assert qad["role"] == "qad" and qad["parity"]["agreement"] >= 0.99 and len(qad["history"]) == 2
    added = set(p.name for p in run.iterdir()) - before
    assert added == {"student.int8-qat.onnx", "student.int8-qad.onnx", "qad.json"}, "no temporary folder or checkpoint left behind"


def test_post_training_int8_with_exclusions_is_one_of_the_alternatives(exported_run, tmp_path):
    from edgekd.export.stage import export

    run, target = _fragile_run(exported_run, tmp_path)
    target.write_text(_FRAGILE + "max_drop_vs_fp32 = 0.0\nmax_excluded_nodes = 2\n")
    exported = export(run, target)
    assert exported.quantized.excluded_nodes, "the fragile model keeps nodes in fp32 at a zero budget"
    result = quantization_aware(run, target, epochs=1, baseline=False)
    assert [v.phase for v in result.variants] == ["post-training", "post-training-exclusions", "qad"]
    assert [v.role for v in result.variants] == [Role.ptq, Role.ptq, Role.qad]
    excluded = result.variants[1]
    assert excluded.file == Path(exported.quantized.path).name
    assert excluded.test_accuracy == pytest.approx(exported.deployed_test_accuracy)


def test_the_fp32_student_can_be_its_own_teacher(exported_run, tmp_path):
    """[qad] teacher = "student": self-distillation, for a student that has overtaken its teacher; the
    phase's own weights for the hard-label and soft-target terms are the ones it trains with."""
    from edgekd.qad.stage import _onnx_teacher

    run, target = _fragile_run(exported_run, tmp_path)
    qad = {"teacher": "student", "ce_weight": 0.6, "kd_weight": 0.3}
    distilled = runfolder.stage_files(run, "distill")
    (run / "recipe.json").write_text(json.dumps({**json.loads((run / "recipe.json").read_text()), "qad": qad}))
    runfolder.refresh(run, "recipe.json")
    assert runfolder.stage_files(run, "distill") == distilled, "the teacher distillation recorded is still found"
    result = quantization_aware(run, target, epochs=1, baseline=False)
    assert result.settings["teacher"] == "student" and result.variants[-1].parity.agreement >= 0.99
    assert (result.settings["ce_weight"], result.settings["kd_weight"]) == (0.6, pytest.approx(0.3))
    (epoch,) = result.variants[-1].history
    assert epoch.loss == pytest.approx(0.6 * epoch.terms["ce"] + 0.3 * epoch.terms["kd"], rel=1e-4)
    with pytest.raises(QadError, match="'teacher' or 'student'"):
        quantization_aware(run, target, epochs=1, teacher="studnet")
    recipe = json.loads((run / "recipe.json").read_text())
    (run / "recipe.json").write_text(json.dumps({**recipe, "distill": {**recipe["distill"], "ce_weight": 0.0}, "qad": {"kd_weight": 0.0}}))
    with pytest.raises(RecipeError, match="nothing to train on"):  # [distill] ce_weight 0 and [qad] kd_weight 0
        quantization_aware(run, target, epochs=1)
    soft = _onnx_teacher(run / "student.sim.onnx").members[0]
    assert soft.session is not None and soft.identity == sha256_file(run / "student.sim.onnx")


def test_the_better_trained_model_on_validation_ships_and_qad_wins_ties():
    from edgekd.paired import PairedDrop
    from edgekd.qad.stage import QadVariant, best_trained

    from edgekd.qad.result import PHASE_ROLES

    def variant(phase, val):
        return QadVariant(PHASE_ROLES[phase], phase, phase, f"{phase}.onnx" if phase != "post-training" else "", val, val,
                          PairedDrop(0.0, [0.0, 0.0], 1.0, 0, 0, 10), 1)

    top1 = task("classification")
    assert best_trained([variant("post-training", 0.99), variant("qat", 0.80), variant("qad", 0.78)], top1).role == "qat"
    assert best_trained([variant("post-training", 0.5), variant("qat", 0.80), variant("qad", 0.80)], top1).role == "qad"
    assert best_trained([variant("post-training", 0.5), variant("qad", 0.70)], top1).role == "qad"


def test_quantization_aware_model_works_on_objects_without_a_run_folder(exported_run, tmp_path):
    """The pure stage: an fp32 ONNX file, a teacher module, splits and a target in; the QDQ files
    in the output folder and each phase paired against the fp32 model out."""
    from edgekd.distill.model import distill_settings
    from edgekd.models.checkpoint import load_model
    from edgekd.qad.stage import quantization_aware_model
    from edgekd.recipe import LossTerm
    from edgekd.targets import load_target

    teacher, _ = load_model(exported_run / "teacher.pt")
    settings = distill_settings(epochs=1, lr=3e-4, ce_weight=0.5, terms=(LossTerm(method="kd", weight=0.5, temperature=4.0),))
    result = quantization_aware_model(exported_run / "student.sim.onnx", teacher, DIGITS, load_target("x86-cpu"), tmp_path, settings,
                                      baseline=False, calibration=DIGITS.calibration(32))
    assert [v.phase for v in result.variants] == ["post-training", "qad"]
    qad = result.variants[-1]
    assert result.deployed_role is (Role.qad if result.deployed else Role.ptq)
    assert (tmp_path / qad.file).is_file() and qad.parity.agreement >= 0.99 and len(qad.history) == 1
    assert result.deployed in ("", qad.file) and result.settings["terms"] == ["kd"]
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.glob(".edgekd-qad-*"))


def test_a_phase_that_training_hurts_keeps_its_starting_point(exported_run, tmp_path):
    """Never worse than the start: post-training int8's weights and scales are a candidate too, so
    a phase whose training wrecks the model (a learning rate far too high) ends where it began."""
    from edgekd.distill.model import distill_settings
    from edgekd.models.checkpoint import load_model
    from edgekd.qad.stage import quantization_aware_model
    from edgekd.recipe import LossTerm
    from edgekd.targets import load_target

    teacher, _ = load_model(exported_run / "teacher.pt")
    settings = distill_settings(epochs=1, lr=50.0, ce_weight=0.5, terms=(LossTerm(method="kd", weight=0.5, temperature=4.0),))
    result = quantization_aware_model(exported_run / "student.sim.onnx", teacher, DIGITS, load_target("x86-cpu"), tmp_path, settings,
                                      baseline=False, calibration=DIGITS.calibration(32))
    start, qad = result.variants
    assert qad.history and qad.history[-1].val_metric < start.val_accuracy - 0.2, "the training step did wreck the model"
    assert qad.best_epoch == 0 and qad.val_accuracy >= start.val_accuracy


def test_a_mirror_that_parts_from_ort_is_caught_and_the_tensor_named(exported_run, tmp_path):
    from edgekd.errors import MirrorError

    prepared, ptq, _ = _ptq(exported_run, tmp_path)
    graph = FakeQuantGraph(prepared, read_plan(ptq)).eval()
    check_qad_parity(graph, ptq, DIGITS.calibration(64), "classification")  # as ORT placed the quantizers: they agree
    name, q = next((n, q) for n, q in graph.plan.activations.items() if not q.follows and n != graph.output_name and n in graph.activation_index)
    with torch.no_grad():
        graph.scales[f"a{graph.activation_index[name]}"].mul_(10.0)  # the mirror's scale for one tensor, far from ORT's (3× stayed within the tolerance for the student one CPU trains)
    with pytest.raises(MirrorError, match=f"before training.*first apart at '{name}'"):
        check_qad_parity(graph, ptq, DIGITS.calibration(64), "classification", when="before training")


PIXEL_SHUFFLE_STUDENT = '''
import torch
from torch import nn


def student(num_classes=10, in_channels=1, **_):
    """A student with an operator the mirror does not run (DepthToSpace) before its head."""
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, num_classes))
'''


@pytest.mark.slow
def test_a_student_the_mirror_cannot_run_keeps_post_training_int8_and_the_report_says_why(tmp_path, monkeypatch):
    """`[qad] when = "always"` on a student with an operator the mirror lacks: the run finishes, exits
    by its budgets (0 or 1, never 2), ships post-training int8, and qad.json and bench.md say why."""
    from cli_checks import quick_target

    (tmp_path / "shuffle_student.py").write_text(PIXEL_SHUFFLE_STUDENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[teacher]\nmodel = "cnn"\nargs = { channels = [8, 16], hidden = 32 }\nepochs = 1\n[student]\nmodel = "shuffle_student:student"\n'
                      '[distill]\nepochs = 1\n[qad]\nwhen = "always"\nepochs = 1\n')
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run"), "--target", str(quick_target(tmp_path / "target.toml", "max_accuracy_drop = 0.5"))])
    assert result.exit_code in (0, 1), result.output
    qad = json.loads((tmp_path / "run" / "qad.json").read_text())
    assert "DepthToSpace" in qad["skipped"] and [v["phase"] for v in qad["variants"]] == ["post-training"]
    assert "quantization-aware distillation was skipped" in (tmp_path / "run" / "bench.md").read_text()
    assert not list((tmp_path / "run").glob("student.int8-q*.onnx"))


def test_skipping_quantizers_of_values_already_on_their_grid_changes_no_number(text_run, tmp_path):
    """A Reshape's or Transpose's output that ORT quantizes with its input's scale is skipped by the
    mirror: outputs and weight gradients are bit for bit those of quantizing it again, step-size
    gradients the same to float rounding."""
    prepared, plan, batch = _text_mirror(text_run, tmp_path)
    every = FakeQuantGraph(prepared, plan)
    every.already_on_grid = set()
    (skipped_out, skipped_grads), (full_out, full_grads) = _one_step(FakeQuantGraph(prepared, plan), batch), _one_step(every, batch)
    assert FakeQuantGraph(prepared, plan).already_on_grid, "the text student has reshapes whose quantizer is skipped"
    assert torch.equal(skipped_out, full_out) and skipped_grads.keys() == full_grads.keys()
    weights = [n for n in full_grads if not n.startswith("scales.")]
    assert weights and all(torch.equal(skipped_grads[n], full_grads[n]) for n in weights)
    # Step sizes: PyTorch's kernel, quantizing a value already on the grid again, adds a spurious edge
    # term at the top step for a negative zero point (it rounds the zero point toward zero after adding ½)
    assert all(torch.allclose(skipped_grads[n], full_grads[n], rtol=1e-4, atol=1e-9) for n in full_grads if n.startswith("scales."))


def test_frozen_scales_give_lsq_s_outputs_and_weight_gradients_and_leave_the_scales_alone(exported_run, tmp_path):
    """[qad] learn_scales = false runs PyTorch's fixed-scale fake quantizer: the forward LSQ's kernel
    computes, the same straight-through mask for the inputs' gradients, and no step-size gradient."""
    from edgekd.models.call import take, to_tensors, trim

    prepared, ptq, _ = _ptq(exported_run, tmp_path)
    batch = trim(take(to_tensors(DIGITS.x_train, torch.device("cpu")), slice(0, 32)), DIGITS.x_train.spec)
    frozen = FakeQuantGraph(prepared, read_plan(ptq), learn_scales=False)
    (learned_out, learned_grads), (frozen_out, frozen_grads) = _one_step(FakeQuantGraph(prepared, read_plan(ptq)), batch), _one_step(frozen, batch)
    assert torch.equal(learned_out, frozen_out)
    assert any(n.startswith("scales.") for n in learned_grads) and not any(n.startswith("scales.") for n in frozen_grads)
    weights = [n for n in learned_grads if not n.startswith("scales.")]
    assert weights and frozen_grads.keys() == set(weights)
    assert all(torch.equal(learned_grads[n], frozen_grads[n]) for n in weights)
    assert not any(p.requires_grad for p in frozen.scales.values()), "the optimiser leaves them at the calibration's values"


def test_a_phase_with_frozen_scales_ships_the_calibration_s_scales_and_new_weights(exported_run, tmp_path):
    from edgekd.distill.model import distill_settings
    from edgekd.models.checkpoint import load_model
    from edgekd.qad.stage import quantization_aware_model
    from edgekd.recipe import LossTerm
    from edgekd.targets import load_target

    def int8_weights(path: Path) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
                if i.data_type == onnx.TensorProto.INT8 and np.prod(i.dims) > 16}

    teacher, _ = load_model(exported_run / "teacher.pt")
    target = load_target("x86-cpu")
    settings = distill_settings(epochs=1, lr=1e-3, ce_weight=0.3, terms=(LossTerm(method="kd", weight=0.7, temperature=4.0),))
    calibration = DIGITS.calibration(32)
    result = quantization_aware_model(exported_run / "student.sim.onnx", teacher, DIGITS, target, tmp_path, settings,
                                      baseline=False, calibration=calibration, learn_scales=False)
    assert result.settings["learn_scales"] is False
    start, qad = result.variants
    assert qad.parity.agreement >= 0.99
    (tmp_path / "ptq").mkdir()
    _, ptq, _ = post_training_plan(exported_run / "student.sim.onnx", tmp_path / "ptq", scheme_settings(Scheme.static_qdq, target.quantization),
                                   calibration)
    ptq_weights, qad_weights = int8_weights(ptq), int8_weights(tmp_path / qad.file)
    assert _written_scales(tmp_path / qad.file) == _written_scales(ptq) and _written_scales(ptq)
    if qad.best_epoch:  # trained weights shipped (a phase that ended below its start keeps post-training int8's)
        assert any(not np.array_equal(ptq_weights[n], qad_weights[n]) for n in ptq_weights)


def test_an_embedding_table_s_rows_are_quantized_where_they_are_looked_up_with_the_same_numbers(text_run, tmp_path, monkeypatch):
    """The mirror quantizes the rows a Gather looks up rather than the whole table: the same
    outputs and the same gradients, table included."""
    prepared, plan, batch = _text_mirror(text_run, tmp_path, per_channel=False)
    rows, table = FakeQuantGraph(prepared, plan), FakeQuantGraph(prepared, plan)
    assert any(rows._looks_up_rows(op, inputs) for op, inputs, *_ in rows.nodes), "the text student looks up an embedding table"
    monkeypatch.setattr(table, "_looks_up_rows", lambda op, inputs: False)
    (rows_out, rows_grads), (table_out, table_grads) = _one_step(rows, batch), _one_step(table, batch)
    assert torch.equal(rows_out, table_out) and rows_grads.keys() == table_grads.keys()
    assert all(torch.equal(rows_grads[n], table_grads[n]) for n in table_grads)


def test_the_compiled_quantizers_change_no_number_of_a_training_step(text_run, tmp_path):
    """A step of the text student with numba's loops (fake quantizers, LSQ's backward, the int8
    softmax) gives the outputs and the gradients, step sizes included, of PyTorch's own kernels."""
    from edgekd.qad import loops

    if loops.compiled() is None:
        pytest.skip("numba is not installed: only PyTorch's kernels run")
    prepared, plan, batch = _text_mirror(text_run, tmp_path, per_channel=False)
    for learn_scales in (True, False):
        fast = _one_step(FakeQuantGraph(prepared, plan, learn_scales=learn_scales), batch)
        with loops.switched_off():
            slow = _one_step(FakeQuantGraph(prepared, plan, learn_scales=learn_scales), batch)
        assert torch.equal(fast[0], slow[0]) and fast[1].keys() == slow[1].keys()
        assert all(torch.equal(fast[1][n], slow[1][n]) for n in slow[1]), learn_scales
        assert any(n.startswith("scales.") for n in fast[1]) == learn_scales


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_constant_s_scale_and_zero_point_are_what_ort_computes_from_its_values(per_channel):
    """`constant_scale` against ORT's own `compute_scale_zp`, for each of its rules (symmetric or not,
    full or reduced range, int8 and uint8), ranges that do and do not hold 0, and all-zero constants."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    from edgekd.qad.graph import ConstantRule, constant_scale

    rng = np.random.default_rng(2)
    for case in range(120):
        w = (rng.standard_normal((6, 50)) * 10 ** rng.uniform(-6, 2) + rng.uniform(-1, 1) * (case % 3)).astype(np.float32)
        if case % 17 == 0:
            w[:] = 0.0
        elem_type, symmetric, reduce_range = (TensorProto.INT8, TensorProto.UINT8)[case % 2], case % 3 == 0, case % 5 == 0
        qmin, qmax = get_qmin_qmax_for_qType(elem_type, reduce_range=reduce_range, symmetric=symmetric)
        rule = ConstantRule(symmetric, int(qmin), int(qmax), *(int(v) for v in get_qmin_qmax_for_qType(elem_type)))
        scale, zero = constant_scale(torch.from_numpy(w), 0 if per_channel else None, rule)
        rows = w if per_channel else w.reshape(1, -1)
        theirs = [compute_scale_zp(row.min(), row.max(), qmin, qmax, symmetric) for row in rows]
        assert scale.dtype == zero.dtype == torch.float32 and scale.ndim == int(per_channel), case
        assert np.array_equal(scale.numpy().ravel(), np.array([float(s) for _, s in theirs], dtype=np.float32)), case
        assert np.array_equal(zero.numpy().ravel(), np.array([float(z) for z, _ in theirs], dtype=np.float32)), case
