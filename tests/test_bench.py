"""Bench: statistics, warm-up exclusion, budgets at their boundaries, bare-ONNX benching."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekd.runtime.timing import summarize, time_interleaved
from edgekd.folders.bench import bench
from edgekd.bench.verify import BudgetFigures, check_budgets
from edgekd.data import load_data
from edgekd.errors import DataError
from edgekd.targets import Budgets


def test_percentiles_on_known_timings():
    stats = summarize([i * 1_000_000 for i in range(1, 101)], batch=1)  # 1..100 ms
    assert stats.runs == 100
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)


def test_warmup_runs_are_excluded():
    seen = []

    def slow_at_first(i):
        seen.append(i)
        if len(seen) <= 5:
            time.sleep(0.02)

    times = time_interleaved({"m": slow_at_first}, warmup=5, runs=20)
    assert len(times["m"]) == 20 and len(seen) == 25
    assert max(times["m"]) < 10_000_000, "the 20 ms warm-up calls must not be in the timed runs"


def test_models_are_timed_interleaved_in_blocks():
    """Each model runs a block in a row, opened by an untimed run that refills the caches the other
    model evicted; the blocks alternate, so drift hits both alike."""
    order = []
    times = time_interleaved({"a": lambda i: order.append(f"a{i}"), "b": lambda i: order.append(f"b{i}")}, warmup=0, runs=5, block=2)
    assert order == ["a0", "a0", "a1", "b0", "b0", "b1", "a2", "a2", "a3", "b2", "b2", "b3", "a4", "a4", "b4", "b4"]
    assert len(times["a"]) == len(times["b"]) == 5



@pytest.mark.parametrize(
    "budgets,passed",
    [
        (Budgets(max_size_kb=10.0), True),  # exactly at the limit passes
        (Budgets(max_size_kb=9.99), False),
        (Budgets(max_latency_ms=2.0), True),
        (Budgets(max_latency_ms=1.999), False),
        (Budgets(max_accuracy_drop=0.05), True),
        (Budgets(max_accuracy_drop=0.049), False),
        (Budgets(min_compression=8.0), True),
        (Budgets(min_compression=8.01), False),
    ],
)
def test_budget_boundaries(budgets, passed):
    (verdict,) = check_budgets(budgets, BudgetFigures(size_bytes=10 * 1024, latency_ms=2.0, accuracy=0.90, teacher_accuracy=0.95, teacher_bytes=80 * 1024))
    assert verdict.passed is passed
    assert (verdict.margin >= 0) is passed


def test_unmeasurable_budgets_fail_closed_unless_the_target_allows_them():
    from edgekd.bench.verify import run_passed

    verdicts = check_budgets(Budgets(max_accuracy_drop=0.01, min_compression=2), BudgetFigures(1024, 1.0, None))
    assert [v.passed for v in verdicts] == [None, None] and all(v.blocking for v in verdicts)
    assert all(v.note.startswith("not checked") and "fails closed" in v.note for v in verdicts)
    assert not run_passed(verdicts), "a gate does not pass on what it did not see"
    allowed = check_budgets(Budgets(max_accuracy_drop=0.01, min_compression=2, allow_unchecked=True), BudgetFigures(1024, 1.0, None))
    assert [v.passed for v in allowed] == [None, None] and not any(v.blocking for v in allowed) and run_passed(allowed)


def test_a_failing_mobile_checker_is_named_and_fails_closed():
    from edgekd.bench.verify import MobileFigures, run_passed

    verdicts = check_budgets(Budgets(min_mobile_coverage=0.9), BudgetFigures(
        1024, 1.0, None, mobile=MobileFigures("NNAPI", 0.0, 0, error="checker raised KeyError: 'Conv'")))
    assert "ONNX Runtime's NNAPI usability checker failed (checker raised KeyError: 'Conv')" in verdicts[0].note
    assert not run_passed(verdicts)


def test_bench_run_folder(exported_run, tmp_path):
    report = bench(exported_run, out=tmp_path)
    names = [v.name for v in report.variants]
    assert names == ["teacher fp32", "student fp32", "student int8"] and report.deployed == "student int8"
    assert all(v.accuracy > 0.5 for v in report.variants)  # 4-epoch tiny models; chance is 0.1
    assert all(v.latency.runs == 300 and v.latency.p50_ms <= v.latency.p90_ms <= v.latency.p99_ms for v in report.variants)
    assert {v.budget for v in report.verdicts} == {"max_size_kb", "max_latency_ms", "max_accuracy_drop", "min_compression",
                                                   "deployed_vs_fp32_latency", "deployed_vs_fp32_size", "max_drop_vs_fp32"}
    quantization = next(v for v in report.verdicts if v.budget == "max_drop_vs_fp32")
    assert quantization.allowed == 0.01 and quantization.interval and quantization.blocking, "the quantization drop is a verdict, not a dropped warning"
    drop = next(v for v in report.verdicts if v.budget == "max_accuracy_drop")
    low, high = drop.interval
    assert low <= drop.measured <= high and "paired test samples" in drop.unit, "the drop vs the teacher carries its paired interval"
    size = next(v for v in report.verdicts if v.budget == "deployed_vs_fp32_size")
    assert size.passed and size.measured < 1 and not size.blocking, "x86-cpu only warns when int8 does not pay"
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["schema_version"] == 3 and data["environment"]["onnxruntime"]
    assert "| student int8 (deployed) |" in (tmp_path / "bench.md").read_text()


def test_bench_bare_onnx_with_npz(exported_run, tmp_path):
    digits = load_data("digits")
    np.savez(tmp_path / "test.npz", x_test=digits.x_test, y_test=digits.y_test)
    model = tmp_path / "model.onnx"
    model.write_bytes((exported_run / "student.int8.onnx").read_bytes())
    report = bench(model, data=f"npz:{tmp_path / 'test.npz'}")
    assert report.variants[0].accuracy > 0.5
    assert (tmp_path / "bench.json").is_file()
    skipped = {v.budget for v in report.verdicts if v.passed is None}
    assert skipped == {"max_accuracy_drop", "min_compression"}, "no teacher: these cannot be judged"


def test_bench_imports_no_torch(exported_run, tmp_path):
    code = (
        "import sys\n"
        "from edgekd.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, ['-q', 'bench', r'{exported_run}', '--out', r'{tmp_path}', '--json'])\n"
        "assert r.exit_code in (0, 1), r.output\n"
        "print('torch' in sys.modules or 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", "bench of an image model imports neither torch nor transformers"


def test_mobile_target_needs_its_provider(android_run, tmp_path):
    from edgekd.errors import TargetError

    with pytest.raises(TargetError, match="NnapiExecutionProvider is not in this onnxruntime build"):
        bench(android_run, out=tmp_path)


def test_mobile_budgets_from_the_export_stage(android_run, tmp_path):
    report = bench(android_run, out=tmp_path, providers=["CPUExecutionProvider"])
    assert report.providers == ["CPUExecutionProvider"]
    assert report.deployed == "student int8 (ORT format)" and report.variants[-1].file.endswith(".ort")
    assert report.variants[-1].latency.batch == 1, "a fixed-batch model is timed at its own batch"
    verdicts = {v.budget: v for v in report.verdicts}
    assert verdicts["min_mobile_coverage"].passed is True and verdicts["min_mobile_coverage"].measured == 1.0
    assert verdicts["max_mobile_partitions"].passed is True and verdicts["max_mobile_partitions"].measured == 1
    assert "max_latency_ms" not in verdicts, "the android target leaves latency to the device"


def test_mobile_budget_fails_on_a_dynamic_shape_model(exported_run, tmp_path):
    target = tmp_path / "nnapi.toml"
    target.write_text('description = "x"\n[budgets]\nmobile_ep = "NNAPI"\nmin_mobile_coverage = 0.9\n')
    model = tmp_path / "m.onnx"
    model.write_bytes((exported_run / "student.int8.onnx").read_bytes())
    report = bench(model, target=str(target))
    (verdict,) = report.verdicts
    assert verdict.passed is False and verdict.measured < 0.9


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_runs():
    rng = np.random.default_rng(0)
    few = summarize(rng.gamma(4, 1e5, 50), batch=1)
    many = summarize(rng.gamma(4, 1e5, 5000), batch=1)
    for stats in (few, many):
        for p in (50, 90, 99):
            low, high = stats.ci95_ms[f"p{p}"]
            assert low <= stats.percentile(p) <= high
    width = lambda s: s.ci95_ms["p90"][1] - s.ci95_ms["p90"][0]  # noqa: E731
    assert width(many) < width(few)


@pytest.mark.parametrize(
    "interval,passed,close",
    [([0.5, 0.9], True, False), ([0.9, 1.2], True, True), ([1.1, 1.3], False, False)],
)
def test_latency_fails_only_when_the_interval_lies_beyond_the_budget(interval, passed, close):
    (verdict,) = check_budgets(Budgets(max_latency_ms=1.0), BudgetFigures(1024, sum(interval) / 2, None, latency_ci=interval))
    assert verdict.passed is passed and verdict.too_close_to_call is close
    if close:
        assert "too close to call" in verdict.note


def test_minimum_time_extends_the_runs():
    times = time_interleaved({"m": lambda i: None}, warmup=0, runs=10, min_seconds=0.05)
    assert len(times["m"]) > 10


def test_top5_on_known_logits(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgekd.runtime.session import open_session
    from edgekd.runtime.metrics import top_k

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "id.onnx")
    logits = np.tile(np.arange(10, dtype=np.float32), (4, 1))  # class 9 best, then 8, 7, ...
    labels = np.array([9, 7, 5, 0])  # ranks 1, 3, 5, 10
    top1, top5 = top_k(open_session(tmp_path / "id.onnx"), logits, labels, "id")
    assert top1 == 0.25 and top5 == 0.75


def test_macs_of_the_teacher_by_hand(exported_run):
    from edgekd.runtime.graph import read_profile

    # tiny teacher: conv 1→8 and 8→16 (3×3, pad 1, each followed by 2×2 pooling), 16·2·2 → 32 → 10
    expected = 8 * 8 * 8 * 9 + 16 * 4 * 4 * (8 * 9) + 64 * 32 + 32 * 10
    assert read_profile(exported_run / "teacher.onnx").macs == expected
    assert read_profile(exported_run / "student.int8.onnx").macs == 64 * 32 + 32 * 10


def test_missing_secondary_provider_is_reported_not_replaced(exported_run, tmp_path):
    target = tmp_path / "t.toml"
    target.write_text('description = "x"\n[runtime]\nproviders = ["CPUExecutionProvider", "CUDAExecutionProvider"]\n'
                      'graph_optimization = "basic"\n[bench]\nruns = 20\nsweep_batches = [1, 4]\n')
    report = bench(exported_run, target=str(target), out=tmp_path, memory=False)
    assert report.providers == ["CPUExecutionProvider"] and report.missing_providers == ["CUDAExecutionProvider"]
    assert "not installed: CUDAExecutionProvider" in (tmp_path / "bench.md").read_text()
    assert set(report.variants[0].sweep) == {"1", "4"}


def test_session_options_come_from_the_target(exported_run):
    import onnxruntime as ort

    from edgekd.runtime.session import open_session
    from edgekd.targets import RuntimeConfig

    session = open_session(exported_run / "student.sim.onnx", None, RuntimeConfig(intra_op_threads=2, inter_op_threads=2, graph_optimization="basic", execution_mode="parallel"))
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL


def test_session_memory_is_measured(exported_run):
    from edgekd.runtime.session import feeds, open_session
    from edgekd.bench.memory import session_memory

    path = exported_run / "teacher.onnx"
    feed = feeds(open_session(path), load_data("digits").x_test.rows(0, 64))
    stats = session_memory(path, ["CPUExecutionProvider"], feed)
    assert stats.baseline_mb > 10 and stats.peak_mb >= stats.baseline_mb and stats.growth_mb > 0


def test_io_binding_path_gives_the_same_outputs(exported_run):
    from edgekd.runtime.session import open_session
    from edgekd.bench.measure import bound_call

    session = open_session(exported_run / "student.sim.onnx")
    x = load_data("digits").x_test[:8]
    binding = bound_call(session, x, batch=8, device="cpu")(0)
    bound = binding.copy_outputs_to_cpu()[0]
    assert np.allclose(bound, session.run(None, {"input": np.asarray(x)})[0], atol=1e-6)


@pytest.mark.parametrize(
    ("lost", "gained", "passed", "close"),
    [(10, 0, True, False),  # 2.5% of 400 images (95% CI about 1.1% to 3.9%) within a 5% budget
     (20, 0, True, True),  # 5% lost: the interval straddles 5%
     (40, 0, False, False)],  # 10% lost: the whole interval lies above
)
def test_accuracy_drop_fails_only_when_its_paired_interval_lies_beyond_the_budget(lost, gained, passed, close):
    from edgekd.paired import paired_drop

    teacher = np.ones(400, bool)
    student = teacher.copy()
    student[:lost] = False
    drop = paired_drop(teacher, student)
    (verdict,) = check_budgets(Budgets(max_accuracy_drop=0.05), BudgetFigures(1024, 1.0, float(student.mean()), 1.0, drop=drop))
    assert verdict.passed is passed and verdict.too_close_to_call is close
    assert verdict.measured == lost / 400 and verdict.interval == drop.interval


@pytest.mark.parametrize("policy", ["warn", "fail", "fallback", "fastest"])
def test_a_deployed_model_slower_than_fp32_is_a_verdict_the_target_decides(policy):
    from edgekd.runtime.timing import LatencyStats
    from edgekd.bench.report import verdict_line
    from edgekd.runtime.timing import versus_fp32
    from edgekd.targets import QuantizationConfig

    def stats(p50, ci):
        return LatencyStats(1, 300, p50, p50, p50, p50, 0.0, {"p50": ci})

    figures = versus_fp32("CPUExecutionProvider", stats(2.0, [1.9, 2.1]), stats(1.0, [0.95, 1.05]), 500, 1000)
    assert figures.slower and not figures.larger
    latency, size = check_budgets(Budgets(), BudgetFigures(500, 2.0, None, versus_fp32=figures),
                                  quantization=QuantizationConfig(if_slower_than_fp32=policy))
    assert latency.passed is False and latency.measured == 2.0 and "slower than the fp32 student" in latency.note
    assert size.passed and size.measured == 0.5
    non_blocking = policy in ("warn", "fastest")  # fastest: int8 ships slower only where fp32 misses a size budget
    assert latency.blocking is not non_blocking

    class Report:
        target, verdicts = "x", [latency, size]

    line = verdict_line(Report())
    assert line.startswith("FAIL") is not non_blocking
    if non_blocking:
        assert "warning: deployed_vs_fp32_latency" in line


def test_overlapping_latency_against_fp32_is_too_close_to_call():
    from edgekd.runtime.timing import VersusFp32
    from edgekd.targets import QuantizationConfig

    figures = VersusFp32("CPUExecutionProvider", 1.02, [0.98, 1.06], 1.0, [0.97, 1.03], 900, 1000, slower=False, larger=False)
    latency, _ = check_budgets(Budgets(), BudgetFigures(900, 1.02, None, versus_fp32=figures),
                               quantization=QuantizationConfig(if_slower_than_fp32="fail"))
    assert latency.passed and latency.too_close_to_call


def test_the_core_install_needs_no_torch():
    """pip install edgekd (no extra) pulls ONNX Runtime, not torch: the training stack is the [train] extra."""
    from importlib.metadata import requires

    core = [r for r in requires("edgekd") if "extra ==" not in r]
    assert not any(r.split(">")[0].split("=")[0].strip() in ("torch", "onnxsim", "onnxscript", "transformers") for r in core), core
    assert any(r.startswith("onnxruntime") for r in core)
    train = [r for r in requires("edgekd") if r.replace('"', "'").endswith("extra == 'train'")]
    # numba: quantization-aware training's compiled loops (edgekd/qad/loops.py)
    assert {r.split(">")[0] for r in train} == {"torch", "onnxscript", "onnxsim", "scikit-learn", "matplotlib", "numba"}
    heavy = ("scikit-learn", "scipy", "matplotlib")  # issue 29: the device install stays lean; they are extras with hints
    assert not any(r.split(">")[0].split("=")[0].strip() in heavy for r in core), core


def _core_distributions() -> set[str]:
    """edgekd's core requirements and theirs, recursively: what `pip install edgekd` pulls."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    names, todo = set(), ["edgekd"]
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # an optional dependency of a dependency that is not installed
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in names:
            continue
        names.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return names


def _venv_with_core_install(root: Path) -> Path:
    """A real virtual environment holding edgekd's core install and nothing else (no torch): its
    distributions are linked from this environment's, so it builds offline in seconds."""
    from importlib.metadata import distribution

    import edgekd

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name in _core_distributions() - {"edgekd"}:
        dist = distribution(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".." and not str(f).endswith(".pth")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    (site / "edgekd").symlink_to(Path(edgekd.__file__).resolve().parent)  # this checkout, not an installed copy
    return python


@pytest.mark.slow
def test_bench_with_npz_and_junit_runs_in_a_venv_without_torch(exported_run, tmp_path):
    """A device or build step with the core install only: bench an ONNX file on real data, JUnit out, exit 0/1."""
    python = _venv_with_core_install(tmp_path / "venv")
    for module in ("torch", "onnxsim", "onnxscript", "transformers"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is importable in the core venv"
    digits = load_data("digits")
    np.savez(tmp_path / "test.npz", x_test=np.asarray(digits.x_test), y_test=digits.y_test)
    model = tmp_path / "student.int8.onnx"
    model.write_bytes((exported_run / "student.int8.onnx").read_bytes())
    done = subprocess.run([str(python), "-m", "edgekd", "-q", "bench", str(model), "--data", f"npz:{tmp_path / 'test.npz'}",
                           "--teacher", str(exported_run / "teacher.onnx"), "--junit", str(tmp_path / "junit.xml")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert (tmp_path / "bench.json").is_file() and "<testsuite" in (tmp_path / "junit.xml").read_text()
    distill = subprocess.run([str(python), "-m", "edgekd", "-q", "distill", "--out", str(tmp_path / "run")],
                             capture_output=True, text=True, cwd=tmp_path)
    assert distill.returncode == 2 and "pip install 'edgekd[train]'" in distill.stderr, distill.stderr
    assert not (tmp_path / "run").exists()


def test_distill_without_torch_names_the_extra(tmp_path):
    code = ("import sys\nsys.modules['torch'] = None\nfrom edgekd.cli import main\n"
            f"sys.argv = ['edgekd', '-q', 'distill', '--out', r'{tmp_path / 'run'}']\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "pip install 'edgekd[train]'" in done.stderr


def test_bench_models_measures_files_by_role_and_writes_nothing(exported_run, tmp_path):
    """The pure stage: files by role in, a typed report out; budgets judged on the deployed role,
    against the teacher and the fp32 student found by role."""
    import shutil

    from edgekd.bench.stage import bench_models
    from edgekd.roles import Role
    from edgekd.targets import load_target

    for name in ("teacher.onnx", "student.sim.onnx", "student.int8.onnx"):
        shutil.copyfile(exported_run / name, tmp_path / name)
    before = set(tmp_path.iterdir())
    digits = load_data("digits")
    models = {Role.ptq: tmp_path / "student.int8.onnx", Role.teacher: tmp_path / "teacher.onnx", Role.student: tmp_path / "student.sim.onnx"}
    report = bench_models(models, load_target("x86-cpu"), digits.x_test, digits.y_test, deployed=Role.ptq, memory=False)
    assert set(tmp_path.iterdir()) == before
    assert [v.role for v in report.variants] == [Role.teacher, Role.student, Role.ptq]  # the deployed one last, whatever the order given
    assert report.deployed_role is Role.ptq and report.deployed == report.variant(Role.ptq).name
    budgets = {v.budget for v in report.verdicts}
    assert {"max_accuracy_drop", "min_compression", "max_drop_vs_fp32", "deployed_vs_fp32_latency"} <= budgets
    alone = bench_models({Role.model: tmp_path / "student.sim.onnx"}, load_target("x86-cpu"), deployed=Role.model, memory=False)
    assert alone.variant(Role.model).accuracy is None and "random inputs" in alone.inputs
    with pytest.raises(DataError, match="deployed role 'qad' is not among the models given"):
        bench_models(models, load_target("x86-cpu"), deployed=Role.qad)
