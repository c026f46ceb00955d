"""Reports: bench.json against its JSON Schema, bench.png, JUnit XML, --compare, `edgekd schema`."""

import json
from xml.etree import ElementTree

import jsonschema
import pytest
from typer.testing import CliRunner

from edgekd.folders.bench import bench
from edgekd.cli import app
from edgekd.schema import json_schema

runner = CliRunner()


@pytest.fixture(scope="module")
def report_dir(exported_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    target = out / "t.toml"
    target.write_text('description = "x"\n[budgets]\nmax_size_kb = 1000\nmax_accuracy_drop = 0.0001\nmin_compression = 2\n')
    bench(exported_run, target=str(target), out=out, junit=out / "junit.xml")
    return out


def test_bench_json_validates_against_its_schema(report_dir):
    jsonschema.validate(json.loads((report_dir / "bench.json").read_text()), json_schema("bench"))


def test_bench_png_is_a_real_png(report_dir):
    import matplotlib.image

    data = (report_dir / "bench.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(report_dir / "bench.png").shape
    assert width > 500 and height > 200


def test_junit_has_one_case_per_budget(report_dir):
    suite = ElementTree.parse(report_dir / "junit.xml").getroot()
    report = json.loads((report_dir / "bench.json").read_text())
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [v["budget"] for v in report["verdicts"]]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {v["budget"] for v in report["verdicts"] if v["passed"] is False and v["blocking"]}
    assert suite.get("failures") == str(len(failed))
    assert any(p.get("name") == "onnxruntime" for p in suite.find("properties"))


def test_markdown_shows_intervals_sweep_and_memory(report_dir):
    text = (report_dir / "bench.md").read_text()
    assert "p50 ms [95% CI]" in text and "## Batch sweep" in text and "session MB" in text and "GFLOP/s" in text


def _shifted(report, factor, accuracy_delta=0.0):
    changed = json.loads(json.dumps(report))
    for v in changed["variants"]:
        v["latency"]["p50_ms"] *= factor
        v["latency"]["ci95_ms"]["p50"] = [x * factor for x in v["latency"]["ci95_ms"]["p50"]]
        if v["accuracy"] is not None:
            v["accuracy"] += accuracy_delta
    return changed


@pytest.mark.parametrize(
    "factor,accuracy_delta,exit_code,verdict",
    [(1.0, 0.0, 0, "same"), (2.0, 0.0, 1, "worse"), (0.5, 0.0, 0, "better"), (1.0, -0.02, 1, "worse")],
)
def test_compare_is_a_regression_gate(report_dir, tmp_path, factor, accuracy_delta, exit_code, verdict):
    before = json.loads((report_dir / "bench.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(_shifted(before, factor, accuracy_delta)))
    result = runner.invoke(app, ["-q", "bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"])
    assert result.exit_code == exit_code, result.output
    changes = json.loads(result.stdout)["changes"]
    figure = "top-1" if accuracy_delta else "p50 latency (ms)"
    assert {c["verdict"] for c in changes if c["figure"] == figure} == {verdict}


def test_compare_within_noise_is_too_close_to_call(report_dir, tmp_path):
    before = json.loads((report_dir / "bench.json").read_text())
    after = _shifted(before, 1.5)
    for v in after["variants"]:  # wide intervals that overlap the old ones
        v["latency"]["ci95_ms"]["p50"] = [0.0, 1e3]
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    result = runner.invoke(app, ["-q", "bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"])
    assert result.exit_code == 0
    assert {c["verdict"] for c in json.loads(result.stdout)["changes"] if c["figure"].startswith("p50")} == {"too close to call"}


def test_compare_bad_file(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    result = runner.invoke(app, ["-q", "bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")])
    assert result.exit_code == 2 and "not an edgekd bench report" in result.stderr


def _broken(report: dict, case: str):
    if case == "no_latency":
        del report["variants"][0]["latency"]
        return report, "not a valid bench report"
    if case == "variants_is_a_number":
        report["variants"] = 5
        return report, "not a valid bench report"
    if case == "other_schema_version":
        report["schema_version"] = 99
        return report, "schema_version 99, but this edgekd reads versions up to 3"
    if case == "zero_latency":  # was a ZeroDivisionError (exit 3) when the other report was divided by it
        report["variants"][1]["latency"]["p50_ms"] = 0.0
        return report, "p50_ms: Input should be greater than 0"
    if case == "accuracy_above_one":
        report["variants"][0]["accuracy"] = 97.5  # a percentage where a share belongs
        return report, "accuracy: Input should be less than or equal to 1"
    if case == "negative_interval":
        report["variants"][0]["latency"]["ci95_ms"]["p50"] = [-1.0, 2.0]
        return report, "ci95_ms"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no_latency", "variants_is_a_number", "other_schema_version", "binary", "zero_latency",
                                  "accuracy_above_one", "negative_interval"])
def test_compare_validates_reports_before_reading_them(report_dir, tmp_path, case):
    good = tmp_path / "good.json"
    good.write_text((report_dir / "bench.json").read_text())
    bad = tmp_path / "bad.json"
    if case == "binary":
        bad.write_bytes(bytes(range(256)) * 4)
        expected = "byte 128 (0x80) is not valid utf-8 text"
    else:
        report, expected = _broken(json.loads(good.read_text()), case)
        bad.write_text(json.dumps(report))
    for pair in ((good, bad), (bad, good)):
        result = runner.invoke(app, ["-q", "bench", "--compare", *map(str, pair)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.stderr
        assert str(bad) in lines[0], "the file that is wrong is named"


def test_compare_refuses_reports_that_share_no_model(report_dir, tmp_path):
    before = json.loads((report_dir / "bench.json").read_text())
    after = json.loads((report_dir / "bench.json").read_text())
    for v in after["variants"]:
        v["name"] = "other " + v["name"]
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    result = runner.invoke(app, ["-q", "bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == 2 and "share no model" in result.stderr


@pytest.mark.parametrize("kind", ["recipe", "target", "bench"])
def test_schema_command(kind):
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == f"edgekd {kind}"


def test_shipped_targets_validate_against_the_target_schema():
    import tomllib

    from edgekd.targets import builtin_targets

    schema = json_schema("target")
    for name, path in builtin_targets().items():
        jsonschema.validate({"name": name, **tomllib.loads(path.read_text())}, schema)
