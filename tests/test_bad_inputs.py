"""Bad inputs a new user gives: each ends with exit 2 and one line naming the problem and the fix.

Files in the wrong encoding, labels whose range would size an allocation, user modules that do
not import, data whose dtype the model's input cannot take without changing it, an empty
provider list. (Damaged bench reports: tests/test_report.py and tests/test_properties.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli_checks import one_line_error
from edgekd.cli import app
from edgekd.data import load_data
from edgekd.errors import DataError, ModelError, RecipeError

runner = CliRunner()


def _distill(tmp_path, recipe_text: str):
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text)
    result = runner.invoke(app, ["-q", "distill", str(recipe), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists(), "a refused input claims no run folder"
    return result


# --- labels: their range is checked before anything is sized by it --------------------------------

def _npz(path, y_train, y_test):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((len(y_train), 8), dtype=np.float32), y_train=np.asarray(y_train),
             x_test=rng.random((len(y_test), 8), dtype=np.float32), y_test=np.asarray(y_test))


@pytest.mark.parametrize("split", ["train", "test"])
def test_one_huge_label_is_refused_before_any_array_is_sized_by_it(tmp_path, split):
    labels = np.arange(40) % 4
    huge = labels.copy()
    huge[7] = 2**40
    _npz(tmp_path / "d.npz", huge if split == "train" else labels, huge[:20] if split == "test" else labels[:20])
    line = one_line_error(_distill(tmp_path, '[data]\nsource = "npz:d.npz"\n'), f"y_{split} holds the label 1099511627776", "remap")
    assert "MemoryError" not in line


def test_labels_that_are_not_finite_or_beyond_int64_are_refused(tmp_path):
    _npz(tmp_path / "d.npz", np.array([0.0, 1.0, np.inf, 1.0] * 5), np.array([0.0, 1.0]))
    one_line_error(_distill(tmp_path, '[data]\nsource = "npz:d.npz"\n'), "y_train holds the label inf")
    _npz(tmp_path / "d.npz", np.array([0, 1, 2**64 - 1, 1] * 5, dtype=np.uint64), np.array([0, 1]))
    one_line_error(_distill(tmp_path, '[data]\nsource = "npz:d.npz"\n'), "y_train holds the label 1.84e+19")


def test_a_csv_with_a_huge_label_is_refused(tmp_path):
    rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(30)] + ["5,5,1099511627776"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    one_line_error(_distill(tmp_path, '[data]\nsource = "csv:t.csv"\nlabel_column = "label"\n'), "the label 1099511627776")


# --- encodings: which file, which byte, and the fix -------------------------------------------------

def _latin1_csv(path):
    rows = ["caf\xe9,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(40)]
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))


def test_a_csv_that_is_not_utf8_names_the_byte_and_the_fix(tmp_path):
    _latin1_csv(tmp_path / "t.csv")
    one_line_error(_distill(tmp_path, '[data]\nsource = "csv:t.csv"\nlabel_column = "label"\n'),
                    "t.csv: byte 3 (0xe9) is not valid utf-8 text", "save it as UTF-8", "[data] encoding")


def test_data_encoding_reads_a_latin1_csv(tmp_path):
    from edgekd.data.config import DataConfig

    _latin1_csv(tmp_path / "t.csv")
    splits = load_data(f"csv:{tmp_path / 't.csv'}", options=DataConfig(label_column="label", encoding="latin-1"))
    assert splits.num_classes == 2 and splits.input_shape == (2,)


def test_an_unknown_encoding_is_a_recipe_error(tmp_path):
    one_line_error(_distill(tmp_path, '[data]\nencoding = "utf9"\n'), "unknown text encoding 'utf9'")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv.gz"])
def test_a_text_file_that_is_not_utf8_names_the_byte(tmp_path, suffix):
    import gzip

    from edgekd.data.text import read_text_table

    raw = '{"text": "d\xe9j\xe0 vu", "label": "a"}\n'.encode("latin-1") if suffix == ".jsonl" else "text,label\nna\xefve,a\n".encode("cp1252")
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    with pytest.raises(DataError, match=r"is not valid utf-8 text; save it as UTF-8, or give the encoding it was saved in .*\[data\] encoding"):
        read_text_table(path, "text", "label")
    table = read_text_table(path, "text", "label", encoding="cp1252")
    assert table.texts[0] in ("d\xe9j\xe0 vu", "na\xefve")


def test_recipe_and_target_files_that_are_not_utf8(tmp_path):
    (tmp_path / "t.toml").write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    one_line_error(runner.invoke(app, ["-q", "targets", "show", str(tmp_path / "t.toml")]),
                    "byte 18 (0xe9) is not valid utf-8 text", "TOML files are UTF-8")
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(b"[distill]\nepochs = 1 # \xff\n")
    one_line_error(runner.invoke(app, ["-q", "distill", str(recipe), "--out", str(tmp_path / "o")]), "r.toml: byte 23 (0xff)")


# --- settings that size an allocation --------------------------------------------------------------

def test_model_args_too_large_for_memory_are_the_users_to_fix(tmp_path):
    one_line_error(_distill(tmp_path, '[student]\nmodel = "mlp"\nargs = { hidden = [1000000000000] }\n'),
                    "model 'mlp' with args", "needs more memory than this machine has free", "use smaller args")


def test_an_image_size_too_large_for_memory_is_refused_before_reading(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / label / "x.png")
    one_line_error(_distill(tmp_path, '[data]\nsource = "imagefolder:imgs"\nimage_size = [200000, 200000]\n'),
                    "2 images at [data] image_size = [200000, 200000] need", "GiB", "choose a smaller image_size")


def test_an_idx_header_whose_dims_overflow_int32_is_refused(tmp_path):
    import struct

    from edgekd.data.files import read_idx

    (tmp_path / "x.idx").write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">iii", 65536, 65536, 1) + b"\0" * 10)
    with pytest.raises(DataError, match=r"header says \(65536, 65536, 1\) values but the file holds 10"):
        read_idx(tmp_path / "x.idx")  # 65536² is 0 in int32: the check must not wrap


# --- user modules: every way an import can fail is the user's, with file and line ------------------

MODULES = {
    "syntax": ("def make(num_classes:\n    pass\n", "line 1: SyntaxError"),
    "indentation": ("def make(num_classes):\nreturn None\n", "line 2: IndentationError"),
    "raises": ("import os\nraise RuntimeError('set MY_DATA first')\n", "raised RuntimeError at"),
    "missing_dependency": ("import edgekd_no_such_package\n", "cannot import 'edgekd_no_such_package'"),
    "missing_attribute": ("x = 1\n", "has no attribute 'make'"),
    "exits_on_import": ("import sys\nsys.exit(0)\n", "raised SystemExit at"),  # exit 0 would read as "budgets met"
    "exits_when_called": ("import sys\ndef make(*args, **kwargs):\n    sys.exit(1)\n", "raised SystemExit"),  # 1: "budget missed"
}


@pytest.mark.parametrize("case", sorted(MODULES))
@pytest.mark.parametrize("section", ["student", "data"])
def test_a_user_module_that_does_not_import_exits_2_naming_file_and_line(tmp_path, monkeypatch, case, section):
    text, fragment = MODULES[case]
    name = f"user_{case}_{section}"
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    recipe = f'[student]\nmodel = "{name}:make"\n' if section == "student" else f'[data]\nsource = "{name}:make"\n'
    line = one_line_error(_distill(tmp_path, recipe), f"'{name}:make'", fragment)
    if case in ("syntax", "indentation", "raises", "exits_on_import"):
        assert f"{name}.py" in line and "line " in line, "the user's file and line"
    if case == "raises":
        assert "line 2" in line and "set MY_DATA first" in line


def test_import_errors_keep_their_own_error_type(tmp_path, monkeypatch):
    from edgekd._user import import_object

    (tmp_path / "user_typed.py").write_text("def f(:\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="user_typed.py, line 1"):
        import_object("user_typed:f", ModelError, "model factory")
    with pytest.raises(RecipeError, match="user_typed.py, line 1"):
        import_object("user_typed:f", RecipeError, "loss")


def test_a_tokenizer_function_that_raises_is_the_users_error(tmp_path, monkeypatch):
    from edgekd.data.text import load_tokenizer

    (tmp_path / "user_tok.py").write_text("def make():\n    raise OSError('vocab.txt missing')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="tokenizer 'user_tok:make' raised OSError: vocab.txt missing"):
        load_tokenizer("user_tok:make")


# --- data of the wrong dtype for the model's input ---------------------------------------------------

def _int64_model(path):
    """A real ONNX model whose input is int64 token ids (batch, 4): Cast, MatMul → 3 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["f", "w"], ["logits"])],
        "ids", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_bench_refuses_float_data_for_an_int64_input(tmp_path):
    _int64_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_test=rng.random((32, 4), dtype=np.float32) * 5, y_test=rng.integers(0, 3, 32))
    result = runner.invoke(app, ["-q", "bench", str(tmp_path / "m.onnx"), "--data", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "o")])
    one_line_error(result, "input 'input_ids': the model takes int64 but the data is float32", "fractions")
    assert not (tmp_path / "o" / "bench.json").exists()


@pytest.mark.parametrize("values,fragment", [
    (np.array([[1.0, 2.0, np.nan, 0.0]], np.float32), "holds nan"),
    (np.array([[1, 2, 2**40, 0]], np.int64), None),  # fits int64: fine
    (np.array([[1, 2, 3, 3]], np.uint64) * np.uint64(2**62), "outside int64's range"),
    (np.array([[1.0, 2.0, 3.0, 4.0]], np.float64), None),  # whole numbers: the cast changes nothing
])
def test_the_feeds_builder_casts_only_without_loss(tmp_path, values, fragment):
    from edgekd.runtime.session import feeds, open_session

    _int64_model(tmp_path / "m.onnx")
    session = open_session(tmp_path / "m.onnx")
    if fragment is None:
        fed = feeds(session, values)["input_ids"]
        assert fed.dtype == np.int64 and (fed == values).all()
    else:
        with pytest.raises(DataError, match=fragment):
            feeds(session, values)


# --- execution providers -------------------------------------------------------------------------

@pytest.mark.parametrize("value", [" , ", ""])
def test_an_empty_providers_option_is_a_usage_error(exported_run, tmp_path, value):
    bench = runner.invoke(app, ["-q", "bench", str(exported_run), "--providers", value, "--out", str(tmp_path / "b")])
    one_line_error(bench, "names no execution provider")
    assert not (tmp_path / "b").exists()
    run = runner.invoke(app, ["-q", "run", "--providers", value, "--out", str(tmp_path / "r")])
    one_line_error(run, "names no execution provider")
    assert not (tmp_path / "r").exists()


def test_the_api_refuses_an_empty_provider_list(exported_run, tmp_path):
    from edgekd.folders.bench import bench
    from edgekd.errors import TargetError

    with pytest.raises(TargetError, match="no execution provider given"):
        bench(exported_run, out=tmp_path, providers=[], memory=False)
    assert not (tmp_path / "bench.json").exists()


def test_a_damaged_result_on_resume_is_a_run_folder_error(exported_run, tmp_path):
    """`edgekd run --resume` reads the finished stages' results back: a damaged one is named."""
    import shutil

    from edgekd import runfolder

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    distilled = json.loads((run / "distill.json").read_text())
    distilled["kd_gain"] = "lots"
    (run / "distill.json").write_text(json.dumps(distilled))
    runfolder.refresh(run, "distill.json")  # the manifest agrees: the content itself is what is wrong
    result = runner.invoke(app, ["-q", "run", "--resume", "--out", str(run)])
    assert result.exit_code == 2, result.output
    assert "distill.json: not a DistillResult" in result.stderr and "kd_gain" in result.stderr and "Traceback" not in result.output


def test_bench_reads_a_text_file_in_another_encoding_with_encoding(text_run, corpus, tmp_path):
    """`edgekd bench --data text:FILE` has no recipe: --encoding says how the file was saved, and
    --max-length is checked like the recipe's key (it was a pydantic traceback, exit 3)."""
    rows = corpus[0].read_text(encoding="utf-8").splitlines()
    path = tmp_path / "reviews-cp1252.csv"
    path.write_bytes(("\n".join([rows[0], rows[1].replace("the", "th\xe9", 1), *rows[2:60]]) + "\n").encode("cp1252"))
    model = str(text_run / "student.int8-dynamic.onnx")
    args = ["-q", "bench", model, "--data", f"text:{path}", "--tokenizer", str(corpus[1]), "--target", "x86-cpu-text"]
    one_line_error(runner.invoke(app, [*args, "--out", str(tmp_path / "a")]), "is not valid utf-8 text", "--encoding for edgekd bench")
    one_line_error(runner.invoke(app, [*args, "--encoding", "cp1252", "--max-length", "0", "--out", str(tmp_path / "b")]),
                    "bench data: max_length: Input should be greater than or equal to 2")
    result = runner.invoke(app, [*args, "--encoding", "cp1252", "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["variants"][-1]["accuracy"] is not None
