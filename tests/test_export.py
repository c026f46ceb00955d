"""Export, simplify and quantize on real digits, checked with real ONNX Runtime sessions."""

import json

import numpy as np
import onnx
import pytest
import torch

from edgekd.runtime.session import open_session, run_batches
from edgekd.data import load_data
from edgekd.errors import OnnxModelError, ParityError
from edgekd.export.onnx import check_parity, export_onnx
from edgekd.models.checkpoint import load_model
from edgekd.targets import ExportConfig, load_target


def test_export_result_and_parity(exported_run):
    result = json.loads((exported_run / "export.json").read_text())
    for key in ("teacher_parity", "student_parity"):
        assert result[key]["max_abs"] <= 1e-4
        assert result[key]["argmax_agreement"] == 1.0
        assert result[key]["samples"] == 360
    assert result["student"]["exporter"] == "dynamo" and result["student"]["fallback_reason"] is None


@pytest.mark.parametrize("name", ["teacher.onnx", "student.onnx", "student.sim.onnx", "student.int8.onnx"])
@pytest.mark.parametrize("batch", [1, 64])
def test_dynamic_batch_axis(exported_run, name, batch):
    session = open_session(exported_run / name)
    assert not isinstance(session.get_inputs()[0].shape[0], int), "batch axis must be symbolic"
    x = load_data("digits").x_test[:batch]
    assert run_batches(session, x, batch_size=batch).shape == (batch, 10)


def test_parity_on_real_digits_directly(exported_run):
    model, _ = load_model(exported_run / "student.pt")
    parity = check_parity(model, exported_run / "student.onnx", load_data("digits").x_test, ExportConfig(), "student")
    assert parity.max_abs <= 1e-4 and parity.mean_abs <= 1e-5 and parity.argmax_agreement == 1.0


def _shifted(model, delta: float):
    """The same model with every logit moved by `delta`: a known difference from the exported file
    that no kernel's rounding can hide or create (fp32 kernels differ by ~1e-6 on these logits)."""
    with torch.no_grad():
        model.classifier.bias += delta
    return model


@pytest.mark.parametrize(
    "cfg,measure",
    [  # logits shifted by 1e-3; the relative limit set tiny so the absolute limit alone decides
        (ExportConfig(parity_max_abs=1e-4, parity_max_mean_abs=1.0, parity_max_rel=1e-9), "max |Δ|"),
        (ExportConfig(parity_max_abs=1.0, parity_max_mean_abs=1e-4, parity_max_rel=1e-9), "mean |Δ|"),
    ],
)
def test_parity_failure_raises_with_the_numbers(exported_run, cfg, measure):
    model, _ = load_model(exported_run / "student.pt")
    with pytest.raises(ParityError) as info:
        check_parity(_shifted(model, 1e-3), exported_run / "student.onnx", load_data("digits").x_test, cfg, "student")
    assert info.value.measure == measure and info.value.limit == 1e-4
    assert info.value.value == pytest.approx(1e-3, rel=0.05), "the error carries the difference that was made"
    assert measure in str(info.value)


def test_a_difference_within_the_limits_passes_and_is_reported(exported_run):
    model, _ = load_model(exported_run / "student.pt")
    parity = check_parity(_shifted(model, 2e-5), exported_run / "student.onnx", load_data("digits").x_test,
                          ExportConfig(parity_max_abs=1e-4, parity_max_mean_abs=1e-4), "student")
    assert parity.max_abs == pytest.approx(2e-5, rel=0.25) and parity.argmax_agreement == 1.0


def test_parity_catches_a_model_that_is_not_the_one_exported(exported_run):
    model, _ = load_model(exported_run / "student.pt")
    with torch.no_grad():
        model.classifier.bias += torch.linspace(-5, 5, 10)  # changes the top-1 class of many images
    with pytest.raises(ParityError):
        check_parity(model, exported_run / "student.onnx", load_data("digits").x_test, ExportConfig(), "student")


class DataDependent(torch.nn.Module):
    """Branches on its input's values: torch.export cannot capture that, tracing records one branch."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        h = self.fc(x.flatten(1))
        if x.sum() >= self.threshold:
            return h
        return -h


def test_dynamo_failure_falls_back_to_torchscript_and_says_why(tmp_path):
    torch.manual_seed(0)
    model = DataDependent(threshold=0.0).eval()  # the zero example and real digits take the same branch
    info = export_onnx(model, (1, 8, 8), tmp_path / "dd.onnx", 18)
    assert info.exporter == "torchscript"
    assert info.fallback_reason and len(info.fallback_reason) < 400
    parity = check_parity(model, tmp_path / "dd.onnx", load_data("digits").x_test, ExportConfig(), "dd")
    assert parity.max_abs <= 1e-4


def test_fallback_that_traced_the_wrong_branch_is_caught_by_parity(tmp_path):
    torch.manual_seed(0)
    model = DataDependent(threshold=1e-3).eval()  # the zero example takes the other branch than real digits
    assert export_onnx(model, (1, 8, 8), tmp_path / "dd.onnx", 18).exporter == "torchscript"
    with pytest.raises(ParityError) as info:
        check_parity(model, tmp_path / "dd.onnx", load_data("digits").x_test, ExportConfig(), "dd")
    assert info.value.measure == "max |Δ|"


def test_fixed_batch_export(exported_run, tmp_path):
    model, _ = load_model(exported_run / "student.pt")
    export_onnx(model, (1, 8, 8), tmp_path / "fixed.onnx", 18, batch=1)
    session = open_session(tmp_path / "fixed.onnx")
    assert session.get_inputs()[0].shape[0] == 1
    parity = check_parity(model, tmp_path / "fixed.onnx", load_data("digits").x_test, ExportConfig(fixed_batch=1), "student")
    assert parity.samples == 360 and parity.max_abs <= 1e-4


def test_simplified_model_gives_the_same_outputs(exported_run):
    x = load_data("digits").x_test
    raw = run_batches(open_session(exported_run / "student.onnx"), x)
    simplified = run_batches(open_session(exported_run / "student.sim.onnx"), x)
    assert np.abs(raw - simplified).max() <= 1e-5


def test_int8_is_really_quantized_and_keeps_accuracy(exported_run):
    model = onnx.load(str(exported_run / "student.int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert int8_weights, "weights are stored as int8"
    scales = [i for i in model.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1]
    assert scales, "per-channel weight scales"
    result = json.loads((exported_run / "export.json").read_text())
    quantized = result["quantized"]  # the promise is the target's budget, met on validation; not one CPU's int8 margin
    assert quantized["budget_met"] and quantized["budget"] == load_target("x86-cpu").quantization.max_drop_vs_fp32
    assert result["quantized"]["calibration_samples"] == 256 and result["deployed"] == "student.int8.onnx"


def test_export_writes_files_atomically_and_records_them(exported_run):
    manifest = json.loads((exported_run / "manifest.json").read_text())
    for name in ("teacher.onnx", "student.onnx", "student.sim.onnx", "student.int8.onnx", "export.json"):
        assert manifest["files"][name]["stage"] == "export"
    assert not list(exported_run.glob(".*.tmp")), "no temporary file left behind"


def test_bn_dropout_residual_model_keeps_parity(tmp_path):
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.drop = torch.nn.Dropout(0.5)
            self.head = torch.nn.Linear(4 * 64, 10)

        def forward(self, x):
            y = self.drop(torch.relu(self.bn(self.conv(x)))) + x
            return self.head(y.flatten(1))

    torch.manual_seed(0)
    model = Residual().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    info = export_onnx(model, (1, 8, 8), tmp_path / "r.onnx", 18)
    parity = check_parity(model, tmp_path / "r.onnx", load_data("digits").x_test, ExportConfig(), "residual")
    assert info.nodes > 0 and parity.max_abs <= 1e-4


def test_corrupt_onnx_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(OnnxModelError, match="ONNX Runtime cannot load it"):
        open_session(path)


@pytest.mark.parametrize("family", ["resnet", "mobilenetv2", "mobilenetv3"])
def test_builtin_conv_families_export_with_parity(tmp_path, family):
    from edgekd.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(family, {}, (1, 8, 8), 10)).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    info = export_onnx(model, (1, 8, 8), tmp_path / f"{family}.onnx", 18)
    parity = check_parity(model, tmp_path / f"{family}.onnx", load_data("digits").x_test, ExportConfig(), family)
    assert info.exporter == "dynamo" and parity.max_abs <= 1e-4 and parity.argmax_agreement == 1.0


def test_parity_is_judged_against_the_logits_scale(tmp_path):
    """Logits in the hundreds: a difference far above the absolute limit passes by its size relative
    to the largest logit, and the relative limit really decides. The difference is made (every logit
    moved by 1e-5 of the largest), not left to fp32 kernels, which may reproduce PyTorch exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    with torch.no_grad():
        for layer in (model[1], model[3]):
            layer.weight.mul_(40.0)
    export_onnx(model, (1, 8, 8), tmp_path / "big.onnx", 18)
    x = load_data("digits").x_test
    with torch.no_grad():
        scale = float(model(torch.as_tensor(np.asarray(x))).abs().max())
    assert scale > 100
    with torch.no_grad():
        model[3].bias += 1e-5 * scale
    strict_abs = ExportConfig(parity_max_abs=1e-12, parity_max_mean_abs=1e-12, parity_max_rel=1e-3)
    parity = check_parity(model, tmp_path / "big.onnx", x, strict_abs, "big")
    assert parity.max_abs > 1e-3 and parity.max_rel == pytest.approx(1e-5, rel=0.3)
    with pytest.raises(ParityError) as info:
        check_parity(model, tmp_path / "big.onnx", x, ExportConfig(parity_max_abs=1e-12, parity_max_mean_abs=1e-12, parity_max_rel=1e-6), "big")
    assert info.value.limit == pytest.approx(1e-6 * parity.scale)


def test_a_student_that_cannot_be_exported_fails_before_training(tmp_path, monkeypatch):
    from edgekd.distill.stage import distill

    (tmp_path / "branchy.py").write_text(
        "import torch\n"
        "class Branchy(torch.nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(64, num_classes)\n"
        "    def forward(self, x):\n"
        "        h = self.fc(x.flatten(1))\n"
        "        return h if x.sum() > 42 else -h  # batches of real digits fall either side: tracing records one branch\n"
        "def make(num_classes):\n"
        "    return Branchy(num_classes)\n"
    )
    (tmp_path / "r.toml").write_text('[student]\nmodel = "branchy:make"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParityError, match="initialised student"):
        distill(tmp_path / "r.toml", tmp_path / "out")
    assert not (tmp_path / "out").exists(), "no run folder claimed"


def test_a_wrong_hint_path_fails_before_training_and_claims_no_folder(tmp_path):
    from edgekd.distill.stage import distill
    from edgekd.errors import ModelError

    (tmp_path / "r.toml").write_text('[[distill.loss]]\nmethod = "hint"\nteacher_layer = "features.3"\nstudent_layer = "features.9"\n')
    with pytest.raises(ModelError, match="student has no layer 'features.9'"):
        distill(tmp_path / "r.toml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", [32, 224])
def test_mobilenetv3_exports_with_parity_at_32_and_224(tmp_path, size):
    """The MobileNetV3-style family (hardswish, squeeze-excite) at CIFAR and ImageNet sizes, BatchNorm
    statistics as after training, on random RGB images."""
    import numpy as np

    from edgekd.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec("mobilenetv3", {}, (3, size, size), 10)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32)
    info = export_onnx(model, x, tmp_path / "m3.onnx", 18)
    parity = check_parity(model, tmp_path / "m3.onnx", x, ExportConfig(), "mobilenetv3")
    assert parity.argmax_agreement == 1.0 and parity.max_rel < 1e-4
    ops = {n.op_type for n in __import__("onnx").load(str(tmp_path / "m3.onnx")).graph.node}
    assert {"HardSwish", "HardSigmoid"} <= ops or "HardSwish" in ops, f"hardswish exported as such: {sorted(ops)}"
    assert info.exporter in ("dynamo", "torchscript")


def test_export_model_takes_a_model_defined_inline_and_checks_it(tmp_path):
    """The pure stage: a module built right here (no factory, no run folder) → ONNX, parity, onnxsim."""
    from edgekd.export.stage import export_model
    from edgekd.targets import ExportConfig

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    x = load_data("digits").x_test[:100]
    exported = export_model(model, x, ExportConfig(), tmp_path, name="inline")
    assert exported.path == tmp_path / "inline.sim.onnx" and (tmp_path / "inline.onnx").is_file()
    assert exported.parity.samples == 100 and exported.parity.max_abs <= ExportConfig().parity_max_abs
    assert [s.name for s in exported.inputs] == ["input"] and exported.simplified.applied
    np.testing.assert_allclose(run_batches(open_session(exported.path), x), model(torch.as_tensor(x.single())).detach().numpy(), atol=1e-4)
    bare = export_model(model, x, ExportConfig(), tmp_path, name="bare", simplify_graph=False)
    assert bare.simplified is None and bare.path == tmp_path / "bare.onnx"


def test_export_model_refuses_what_onnx_runtime_does_not_reproduce(tmp_path, export_off_by):
    from edgekd.export.stage import export_model
    from edgekd.targets import ExportConfig

    export_off_by(1e-2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ParityError) as failure:
        export_model(model, load_data("digits").x_test[:50], ExportConfig(), tmp_path, name="shifted")
    assert failure.value.measure == "max |Δ|" and failure.value.value == pytest.approx(1e-2, rel=1e-3)
