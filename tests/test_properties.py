"""Property-based: whatever a recipe, target or bench report holds, parsing gives a result or an
EdgekdError (one line for the user), never another exception (a traceback, exit 3)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekd.bench.compare import _load as load_report
from edgekd.bench.compare import compare_reports
from edgekd.errors import EdgekdError
from edgekd.recipe import load_recipe
from edgekd.targets import load_target

# Real keys, so that the generated tables reach the validators of real fields, and some noise.
SECTIONS = ["data", "teacher", "teachers", "student", "distill", "export", "target", "runtime", "quantization", "bench", "budgets", "loss"]
KEYS = ["source", "model", "args", "epochs", "lr", "seed", "temperature", "kd_weight", "ce_weight", "batch_size", "weight",
        "split_seed", "val_fraction", "augment", "max_shift", "mixup", "labels", "max_length", "scheme", "per_channel",
        "providers", "intra_op_threads", "opset", "fixed_batch", "sweep_batches", "runs", "max_size_kb", "max_latency_ms",
        "latency_percentile", "max_accuracy_drop", "allow_unchecked", "if_slower_than_fp32", "name", "description", "method",
        "teacher_layer", "student_layer", "baseline", "checkpoint", "x", "?"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["digits", "cnn", "mlp", "static-qdq", "auto", "kd", "hint", "none", "x86-cpu", "warn", "npz:missing.npz"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
tables = st.dictionaries(st.sampled_from(SECTIONS + KEYS), values, max_size=6)


def _toml_value(value) -> str:
    """A TOML rendering of a generated value (inf/nan included; None becomes an empty string)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml(data: dict) -> str:
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FAST
@given(data=tables)
def test_any_recipe_parses_or_is_a_one_line_error(tmp_path, data):
    path = tmp_path / "r.toml"
    path.write_text(_toml(data), encoding="utf-8")
    try:
        load_recipe(path)
    except EdgekdError as exc:
        assert "\n" not in str(exc).strip() and str(exc)


@FAST
@given(data=tables)
def test_any_target_parses_or_is_a_one_line_error(tmp_path, data):
    path = tmp_path / "t.toml"
    path.write_text(_toml({"description": "fuzzed", **data}), encoding="utf-8")
    try:
        load_target(path)
    except EdgekdError as exc:
        assert "\n" not in str(exc).strip() and str(exc)


@FAST
@given(text=st.text(max_size=200))
def test_any_text_as_a_recipe_or_target_is_a_result_or_one_line(tmp_path, text):
    for kind, load in (("r", load_recipe), ("t", load_target)):
        path = tmp_path / f"{kind}.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load(path)
        except EdgekdError as exc:
            assert str(exc)


@pytest.fixture(scope="module")
def real_report(exported_run, tmp_path_factory) -> dict:
    from edgekd.folders.bench import bench

    out = tmp_path_factory.mktemp("report")
    bench(exported_run, out=out, memory=False)
    return json.loads((out / "bench.json").read_text())


def _mutations():
    """A path into a real report and what to put there (or delete)."""
    paths = st.sampled_from([("variants",), ("variants", 0), ("variants", 0, "latency"), ("variants", 0, "latency", "p50_ms"),
                             ("variants", 0, "latency", "ci95_ms"), ("variants", 0, "accuracy"), ("variants", 0, "name"),
                             ("verdicts",), ("verdicts", 0, "passed"), ("environment",), ("schema_version",), ("target",)])
    return st.tuples(paths, st.one_of(st.just("<delete>"), values))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutations(), min_size=1, max_size=3))
def test_any_bench_report_is_read_or_refused_in_one_line(real_report, tmp_path, mutations):
    report = json.loads(json.dumps(real_report))
    for path, value in mutations:
        node = report
        try:
            for part in path[:-1]:
                node = node[part]
            if value == "<delete>":
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    path, real = tmp_path / "bench.json", tmp_path / "real.json"
    path.write_text(json.dumps(report, allow_nan=True), encoding="utf-8")
    real.write_text(json.dumps(real_report), encoding="utf-8")
    for read in (lambda: load_report(path), lambda: compare_reports(real, path), lambda: compare_reports(path, real)):
        try:  # a report that loads can be compared: its figures were range-checked on read
            read()
        except EdgekdError as exc:
            assert "\n" not in str(exc).strip()
