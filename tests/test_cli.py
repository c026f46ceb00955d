"""The command line: exit codes, one-line errors without tracebacks, nothing half-written."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from cli_checks import one_line_error
from edgekd import runfolder
from edgekd.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["-q", *map(str, args)])


BAD_RECIPES = {
    "malformed": ("[distill\n", "not valid TOML"),
    "unknown_key": ("[distill]\ntemprature = 2\n", "unknown key 'temprature'"),
    "unknown_family": ('[student]\nmodel = "vit"\n', "unknown model family 'vit'"),
    "class_mismatch": ('[teacher]\nargs = { num_classes = 5 }\n', "10 classes"),
    "bad_shape": ('[student]\nmodel = "tests_fixture_missing:factory"\n', "cannot import module"),
    "teachers_unknown_key": ('[[teachers]]\nmodel = "cnn"\nwieght = 2\n', "[[teachers]] #1 unknown key 'wieght' — did you mean 'weight'? valid keys: model, args"),
    "loss_unknown_key": ('[[distill.loss]]\nmethod = "kd"\ntemprature = 2\n', "[[distill.loss]] #1 unknown key 'temprature' — did you mean 'temperature'?"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_exits_2_and_writes_nothing(tmp_path, case):
    text, fragment = BAD_RECIPES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    out = tmp_path / "out"
    one_line_error(_invoke("distill", recipe, "--out", out), fragment)
    assert not out.exists(), "a failed distill must not leave a folder behind"


def test_missing_recipe(tmp_path):
    one_line_error(_invoke("run", tmp_path / "nope.toml", "--out", tmp_path / "o"), "recipe file not found")
    assert not (tmp_path / "o").exists()


def test_npz_without_x_train(tmp_path):
    np.savez(tmp_path / "d.npz", x_test=np.zeros((4, 64), np.float32), y_test=np.zeros(4, int))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nsource = "npz:d.npz"\n')
    one_line_error(_invoke("distill", recipe, "--out", tmp_path / "o"), "no array 'x_train'")
    assert not (tmp_path / "o").exists()


def test_corrupt_onnx(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"this is not onnx")
    one_line_error(_invoke("bench", tmp_path / "m.onnx"), "m.onnx")
    assert not (tmp_path / "bench.json").exists()


def test_unknown_target_lists_known(exported_run, tmp_path):
    one_line_error(_invoke("bench", exported_run, "--target", "x86cpu", "--out", tmp_path), "unknown target 'x86cpu'", "x86-cpu")


def test_impossible_budget_exits_1_and_names_it(exported_run, tmp_path):
    target = tmp_path / "tight.toml"
    target.write_text('description = "impossible"\n[budgets]\nmax_size_kb = 0.001\nmin_compression = 2\n')
    result = _invoke("bench", exported_run, "--target", target, "--out", tmp_path)
    assert result.exit_code == 1
    assert "FAIL: max_size_kb measured" in result.stdout and "allowed 0.001" in result.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["passed"] is False
    assert [v["passed"] for v in report["verdicts"] if v["budget"] in ("max_size_kb", "min_compression")] == [False, True]


def test_bench_json_output_is_pure_json(exported_run, tmp_path):
    result = _invoke("bench", exported_run, "--out", tmp_path, "--json")
    assert result.exit_code in (0, 1)
    assert json.loads(result.stdout)["schema_version"] == 3


def test_existing_run_folder_is_not_overwritten(exported_run):
    before = (exported_run / "manifest.json").read_text()
    one_line_error(_invoke("distill", "--out", exported_run), "already holds a run", "--resume", "--force")
    assert (exported_run / "manifest.json").read_text() == before


def test_changed_artifact_is_detected(exported_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported_run, copy)
    (copy / "student.int8.onnx").write_bytes(b"tampered")
    one_line_error(_invoke("bench", copy), "changed since the export stage wrote it")


def test_targets_list_and_show():
    listed = _invoke("targets")
    assert listed.exit_code == 0 and "x86-cpu" in listed.stdout
    shown = _invoke("targets", "show", "x86-cpu")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["budgets"]["max_size_kb"] > 0
    one_line_error(_invoke("targets", "show", "nope"), "unknown target 'nope'")


def test_help_explains_every_command_and_imports_no_torch():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom edgekd.cli import app\n"
        "for cmd in ([], ['run'], ['distill'], ['export'], ['bench'], ['targets']):\n"
        "    r = CliRunner().invoke(app, [*cmd, '--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "    print(r.output)\n"
        "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "TORCH False False" in out
    for option in ("--target", "--json", "--resume", "--data", "--teacher", "--out"):
        assert option in out
    listed = [line.split()[0] for line in out.split("Commands:", 1)[1].split("Usage:", 1)[0].splitlines() if line.startswith("  ")]
    assert listed[:5] == ["run", "search", "distill", "export", "bench"], "run first, then the stages in the order data flows"


def test_run_for_a_device_this_machine_is_not_fails_before_training(tmp_path):
    result = _invoke("run", "--target", "android-arm64-nnapi", "--out", tmp_path / "o")
    one_line_error(result, "NnapiExecutionProvider", "--providers")
    assert not (tmp_path / "o").exists()


def test_misspelt_providers_option_is_refused_before_anything_runs(tmp_path):
    result = _invoke("run", "--providers", "CPUExecutionProvider,CUDAExecutonProvider", "--out", tmp_path / "o")
    one_line_error(result, "did you mean 'CUDAExecutionProvider'?")
    assert not (tmp_path / "o").exists()


def test_export_parity_failure_exits_2_with_the_figures(exported_run, tmp_path, export_off_by):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    target = tmp_path / "strict.toml"
    target.write_text('description = "x"\n[export]\nparity_max_abs = 1e-4\nparity_max_rel = 1e-9\n')
    export_off_by(1e-3)
    one_line_error(_invoke("export", run, "--target", target), "teacher: ONNX Runtime vs PyTorch max |Δ| = 0.001", "allowed 0.0001")
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize(
    "text,fragments",
    [
        ('description = "x"\n[budgets]\nmax_latncy_ms = 1\n', ["[budgets] unknown key 'max_latncy_ms'", "did you mean 'max_latency_ms'"]),
        ('description = "x"\n[budgets]\nmax_size_kb = "small"\n', ["[budgets] max_size_kb", "valid number"]),
        ('description = "x"\n[budgets]\nmin_compression = -2\n', ["[budgets] min_compression", "greater than 0"]),
    ],
)
def test_malformed_target_file_exits_2_naming_file_and_key(exported_run, tmp_path, text, fragments):
    target = tmp_path / "bad-target.toml"
    target.write_text(text)
    one_line_error(_invoke("bench", exported_run, "--target", target, "--out", tmp_path), str(target), *fragments)
    assert not (tmp_path / "bench.json").exists()


def test_run_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    one_line_error(_invoke("run", "--out", tmp_path / "o"), "under torchrun, launch `edgekd distill`")
    assert not (tmp_path / "o").exists()


def test_damaged_recipe_in_run_folder(exported_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "recipe.json").write_text("{not json")
    one_line_error(_invoke("export", run), "recipe.json: not valid JSON")


def test_an_internal_error_exits_3_and_names_the_traceback_file(tmp_path):
    """A bug is never read as a verdict (1) or a pass (0): exit 3, one line, the traceback in a file."""
    code = ("import sys, edgekd.schema as s\n"
            "def broken(kind):\n    raise ZeroDivisionError('division by zero in a deliberately broken build')\n"
            "s.json_schema = broken\n"
            "from edgekd.cli import main\n"
            "sys.argv = ['edgekd', 'schema', 'recipe']\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error (ZeroDivisionError: division by zero"), done.stderr
    assert "Traceback" not in done.stderr
    crash = next(tmp_path.glob("edgekd-crash-*.txt"))
    assert str(crash) in lines[0]
    text = crash.read_text()
    assert "Traceback (most recent call last)" in text and "deliberately broken" in text and "command: edgekd schema recipe" in text


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS"])
def test_a_full_disk_or_read_only_folder_is_one_line_and_exit_2(tmp_path, monkeypatch, errno_name):
    import errno

    import edgekd.schema

    def full(kind):
        raise OSError(getattr(errno, errno_name), __import__("os").strerror(getattr(errno, errno_name)), str(tmp_path / "run" / "student.pt"))

    monkeypatch.setattr(edgekd.schema, "json_schema", full)
    result = _invoke("schema", "recipe")
    one_line_error(result, str(tmp_path / "run" / "student.pt"))


def test_torchs_full_disk_message_is_one_line_and_exit_2(monkeypatch):
    import edgekd.schema

    def full(kind):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: PytorchStreamWriter failed writing file data/0")

    monkeypatch.setattr(edgekd.schema, "json_schema", full)
    one_line_error(_invoke("schema", "recipe"), "disk is full")


def test_ctrl_c_resume_hint_repeats_every_option(tmp_path, monkeypatch):
    import edgekd.pipeline

    def interrupted(*args, **kwargs):
        (tmp_path / "r" / "checkpoints").mkdir(parents=True)  # what a run interrupted mid-training keeps
        raise KeyboardInterrupt

    monkeypatch.setattr(edgekd.pipeline, "run", interrupted)
    result = _invoke("run", "--target", "arm64-cpu", "--scheme", "dynamic", "--providers", "CPUExecutionProvider", "--sweep", "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert "complete checkpoints are kept" in result.stderr
    hint = result.stderr.strip().split("continue with: ", 1)[1]
    assert hint == f"edgekd run --target arm64-cpu --scheme dynamic --providers CPUExecutionProvider --sweep --resume --out {tmp_path / 'r'}"


def test_ctrl_c_before_anything_was_kept_says_so(tmp_path, monkeypatch):
    import edgekd.distill.stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgekd.distill.stage, "distill", interrupted)
    result = _invoke("distill", "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted; nothing was kept: run the same command again"


@pytest.mark.parametrize("kind", ["model", "data"])
def test_user_code_that_raises_is_named_in_one_line(tmp_path, monkeypatch, kind):
    module = tmp_path / "user_code_raises.py"
    module.write_text("def factory(input_shape, num_classes):\n    raise RuntimeError('weights server unreachable')\n"
                      "def data():\n    raise KeyError('x_train')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[student]\nmodel = "user_code_raises:factory"\n' if kind == "model" else '[data]\nsource = "user_code_raises:data"\n')
    result = _invoke("distill", recipe, "--out", tmp_path / "run")
    fragment = "model factory 'user_code_raises:factory' raised RuntimeError: weights server unreachable" if kind == "model" \
        else "data source 'user_code_raises:data' raised KeyError"
    one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


BAD_NUMBERS = {
    "epochs_bool": ("[distill]\nepochs = true\n", "[distill] epochs: Input should be a valid integer (got True)"),
    "temperature_inf": ("[distill]\ntemperature = inf\n", "[distill] temperature: Input should be a finite number"),
    "kd_weight_inf": ("[distill]\nkd_weight = inf\n", "[distill] kd_weight: Input should be a finite number"),
    "lr_nan": ("[distill]\nlr = nan\n", "[distill] lr: Input should be a finite number"),
    "lr_inf": ("[distill]\nlr = inf\n", "[distill] lr: Input should be a finite number"),
    "negative_split_seed": ("[data]\nsplit_seed = -1\n", "[data] split_seed: Input should be greater than or equal to 0"),
    "augment_int": ("[data]\naugment = 1\n", "[data] augment: Input should be a valid boolean"),
}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
def test_non_finite_numbers_and_booleans_as_integers_are_refused_at_the_door(tmp_path, case):
    text, fragment = BAD_NUMBERS[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    one_line_error(_invoke("distill", recipe, "--out", tmp_path / "run"), fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("text", "fragment"), [
    ("[bench]\nsweep_batches = [0]\n", "[bench] sweep_batches[0]: Input should be greater than or equal to 1"),
    ("[bench]\nsweep_batches = [8, -4]\n", "[bench] sweep_batches[1]: Input should be greater than or equal to 1"),
    ("[quantization]\nper_channel = 1\n", "[quantization] per_channel: Input should be a valid boolean"),
    ("[budgets]\nmax_latency_ms = inf\n", "[budgets] max_latency_ms: Input should be a finite number"),
])
def test_target_fields_are_range_checked(exported_run, tmp_path, text, fragment):
    target = tmp_path / "t.toml"
    target.write_text('description = "x"\n' + text)
    one_line_error(_invoke("bench", exported_run, "--target", target, "--out", tmp_path), fragment)
    assert not (tmp_path / "bench.json").exists()


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from edgekd import runfolder
with runfolder.locked(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_writer_of_a_run_folder_gets_exit_2(exported_run, tmp_path):
    """Two edgekd processes on one --out: the second is refused in one line, and the first's files are untouched."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".edgekd.lock"}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run), "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        one_line_error(_invoke("export", run), "is being written by another edgekd process", f"pid {holder.pid}")
        one_line_error(_invoke("bench", run), "is being written by another edgekd process")
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".edgekd.lock"} == before
    finally:
        holder.kill()
        holder.wait()
    from edgekd import runfolder

    with runfolder.locked(run):  # the lock died with its process
        pass


def test_unsafe_loading_advice_is_never_passed_on(tmp_path):
    """torch and numpy suggest weights_only=False / allow_pickle=True; edgekd says how to save the file safely instead."""
    import collections

    import torch

    from edgekd.data import load_data
    from edgekd.errors import DataError, ModelError
    from edgekd.models.checkpoint import read_checkpoint

    torch.save({"weights": collections.OrderedDict(), "args": __import__("argparse").Namespace(lr=0.1)}, tmp_path / "m.pt")
    with pytest.raises(ModelError) as caught:
        read_checkpoint(tmp_path / "m.pt")
    message = str(caught.value)
    assert "weights_only=True only" in message and "torch.save(model.state_dict(), PATH)" in message
    assert "weights_only=False" not in message and "trust" not in message
    np.savez(tmp_path / "d.npz", x_train=np.array([{"a": 1}] * 3, dtype=object), y_train=np.array([0, 1, 1]),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(DataError) as caught:
        load_data(f"npz:{tmp_path / 'd.npz'}")
    assert "object arrays" in str(caught.value) and "allow_pickle=True" not in str(caught.value)


@pytest.mark.parametrize(("args", "fragment"), [
    (["run", "--scheme", "int4"], "Invalid value for '--scheme'"),
    (["bogus"], "No such command 'bogus'"),
    (["bench", "--no-such-option"], "No such option: --no-such-option"),
])
def test_usage_errors_are_one_line_and_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0] and "--help" in lines[0], result.stderr


def test_quiet_works_after_the_subcommand_too(exported_run, tmp_path):
    before = runner.invoke(app, ["-q", "targets"])
    after = runner.invoke(app, ["targets", "-q"])
    assert before.exit_code == after.exit_code == 0 and before.stdout == after.stdout
    result = runner.invoke(app, ["bench", str(exported_run), "--out", str(tmp_path), "-q"])
    assert result.exit_code in (0, 1) and result.stderr.strip() == "", "no status lines, no library warnings"


@pytest.mark.parametrize("command", ["distill", "run"])
def test_out_naming_a_file_is_one_line(tmp_path, command):
    (tmp_path / "afile").write_text("keep me")
    one_line_error(_invoke(command, "--out", tmp_path / "afile"), "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_diverging_run_says_what_it_kept_and_how_to_start_over(tmp_path):
    """The teacher's checkpoint stays; the message must not say that nothing was written beside it."""
    recipe = tmp_path / "r.toml"
    recipe.write_text('[teacher]\nmodel = "cnn"\nargs = { channels = [8, 16], hidden = 32 }\nepochs = 1\n'
                      '[student]\nmodel = "mlp"\nargs = { hidden = [16] }\n[distill]\nepochs = 2\nlr = 1e30\n')
    result = _invoke("distill", recipe, "--out", tmp_path / "run")
    one_line_error(result, "student (scratch): loss became nan", "no checkpoint of student (scratch) was written yet",
                           "start over with --force")
    assert not (tmp_path / "run" / "student.pt").exists() and not (tmp_path / "run" / "manifest.json").exists()


def test_a_damaged_json_file_in_a_run_folder_is_one_line(exported_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "distill.json").write_text('{"reference": ')
    one_line_error(_invoke("bench", run, "--out", tmp_path), "distill.json changed since the distill stage wrote it")
    runfolder.refresh(run, "distill.json")  # damaged where the manifest cannot tell: the JSON itself
    one_line_error(_invoke("bench", run, "--out", tmp_path), "distill.json: not valid JSON", "the run folder is damaged")
