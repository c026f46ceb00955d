"""The text path: named int64 inputs from file to ONNX Runtime, transformer students and teachers,
two-input export at several lengths, dynamic int8, bench by name, hints on padded hidden states.

Everything is made here: sentences, a WordPiece tokenizer trained in well under a second, and
tiny randomly initialised BERT configurations. Nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from text_data import TEXT_RECIPE, sentences, write_csv, write_jsonl  # noqa: E402

from edgekd.data import load_data  # noqa: E402
from edgekd.errors import DataError, ModelError, RecipeError  # noqa: E402
from edgekd.inputs import Inputs, TensorSpec  # noqa: E402
from edgekd.models import ModelSpec, build_model  # noqa: E402
from edgekd.data.config import DataConfig  # noqa: E402

TINY = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 160}


@pytest.fixture(scope="session")
def text_data(corpus):
    csv_path, tokenizer = corpus
    return load_data(f"text:{csv_path}", options=DataConfig(tokenizer=str(tokenizer), max_length=48))


def _one_epoch_recipe(folder: Path, corpus, teacher: str) -> Path:
    """The tiny text recipe with another [teacher] (its model lines) and one distillation epoch."""
    text = TEXT_RECIPE.format(csv=corpus[0], tokenizer=corpus[1])
    tiny_teacher = 'model = "transformer"\nargs = { layers = 2, hidden = 64, heads = 4, intermediate = 128, max_position = 64 }\nepochs = 6'
    assert tiny_teacher in text
    path = folder / "r.toml"
    path.write_text(text.replace(tiny_teacher, teacher).replace("[distill]\nepochs = 6", "[distill]\nepochs = 1"))
    return path


def _spec(data, **args) -> ModelSpec:
    return ModelSpec("transformer", {**TINY, **args}, data.input_shape, data.num_classes, data.inputs, data.vocab_size)


# --- the text source ---------------------------------------------------------------------------


def test_text_source_keeps_int64_ids_names_labels_and_pads_to_the_longest(text_data, corpus):
    from transformers import AutoTokenizer

    assert text_data.x_train.names == ["input_ids", "attention_mask"]
    assert all(text_data.x_train[n].dtype == np.int64 for n in text_data.x_train.names), "ids are never cast to float"
    assert [s.dims for s in text_data.inputs] == [("batch", "sequence"), ("batch", "sequence")]
    assert text_data.classes == ("fresh", "rotten") and text_data.num_classes == 2
    lengths = text_data.x_train.lengths()
    assert text_data.x_train["input_ids"].shape[1] == lengths.max() <= 48, "padded to the longest text, not to max_length"
    assert text_data.vocab_size == len(AutoTokenizer.from_pretrained(str(corpus[1]))), "the student's embedding rows"
    assert len(text_data.x_train) + len(text_data.x_val) + len(text_data.x_test) == 600


@pytest.mark.parametrize("kind", ["tsv", "jsonl"])
def test_tsv_and_jsonl_with_integer_labels(tmp_path, corpus, kind):
    rows = [(text, 0 if label == "fresh" else 1) for text, label in sentences(80, seed=3)]
    path = write_csv(tmp_path / "r.tsv", rows, delimiter="\t") if kind == "tsv" else write_jsonl(tmp_path / "r.jsonl", rows)
    data = load_data(f"text:{path}", options=DataConfig(tokenizer=str(corpus[1])))
    assert data.classes == ("0", "1") and set(np.unique(data.y_train)) == {0, 1}


def test_labels_filter_order_and_duplicates(tmp_path, corpus):
    rows = sentences(60, seed=1) + [("a plot summary that is not a review", "plot")] * 3 + sentences(10, seed=1)
    path = write_csv(tmp_path / "r.csv", rows)
    data = load_data(f"text:{path}", options=DataConfig(tokenizer=str(corpus[1]), labels=["rotten", "fresh"]))
    assert data.classes == ("rotten", "fresh"), "[data] labels fixes the class order"
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 60, "plot rows and the 10 duplicate texts dropped"


@pytest.mark.parametrize("options, message", [
    ({"text_column": "review"}, "no column 'review'"),
    ({"label_column": "stars"}, "no column 'stars'"),
    ({"tokenizer": None}, "needs a tokenizer"),
    ({"tokenizer": "/nowhere/tok"}, "is not a folder"),
])
def test_bad_text_settings_name_the_fix(corpus, options, message):
    cfg = DataConfig(**{"tokenizer": str(corpus[1]), **options})
    with pytest.raises(DataError, match=message):
        load_data(f"text:{corpus[0]}", options=cfg)


def test_dict_items_of_a_torch_dataset_keep_their_dtypes(tmp_path, monkeypatch):
    (tmp_path / "tokensets.py").write_text(
        "import torch\n"
        "class Rows(torch.utils.data.Dataset):\n"
        "    def __init__(self, n): self.n = n\n"
        "    def __len__(self): return self.n\n"
        "    def __getitem__(self, i):\n"
        "        ids = torch.arange(2, 4 + i % 5)\n"
        "        return {'input_ids': ids, 'attention_mask': torch.ones_like(ids)}, i % 2\n"
        "def load():\n"
        "    return {'train': Rows(40), 'test': Rows(10)}\n"
    )
    monkeypatch.chdir(tmp_path)
    data = load_data("tokensets:load")
    assert data.x_train["input_ids"].dtype == np.int64 and data.x_train["input_ids"].shape[1] == 6
    assert data.inputs[0].is_sequence and data.x_train.lengths().max() == 6


def test_batches_are_cut_to_their_own_longest_row():
    x = Inputs({"input_ids": np.array([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]]), "attention_mask": np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])})
    assert x.trimmed()["input_ids"].shape == (2, 2)
    assert x[1:].trimmed()["input_ids"].tolist() == [[7]]
    assert x.at_length(7)["attention_mask"].tolist()[0] == [1, 1, 0, 0, 0, 0, 0]


# --- models --------------------------------------------------------------------------------------


def test_transformer_student_is_called_by_name(text_data):
    from edgekd.models.call import predict

    model = build_model(_spec(text_data))
    logits = predict(model, text_data.x_test[:5])
    assert logits.shape == (5, 2) and np.isfinite(logits).all()


def test_factories_get_data_facts_only_through_named_parameters(tmp_path, monkeypatch):
    """torchvision's builders take **kwargs and forward them to a class that rejects unknown keywords."""
    (tmp_path / "visionlike.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, num_classes=1000, width=4):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(64, num_classes)\n"
        "    def forward(self, x): return self.fc(x.flatten(1))\n"
        "def resnet18(*, weights=None, progress=True, **kwargs):\n"
        "    return Net(**kwargs)\n"
    )
    monkeypatch.chdir(tmp_path)
    model = build_model(ModelSpec("visionlike:resnet18", {"num_classes": 10}, (1, 8, 8), 10))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_text_model_on_image_data_says_what_it_needs():
    with pytest.raises(ModelError, match="needs vocab_size"):
        build_model(ModelSpec("transformer", {}, (1, 8, 8), 10))


def test_init_from_teacher_copies_embeddings_and_every_kth_layer(text_data):
    from edgekd.models.text import init_from_teacher

    teacher = build_model(_spec(text_data, layers=4))
    student = build_model(_spec(text_data, layers=2))
    copied = init_from_teacher(student, teacher)
    assert copied > 0
    assert torch.equal(student.encoder.embeddings.word_embeddings.weight, teacher.encoder.embeddings.word_embeddings.weight)
    t_layer = teacher.encoder.encoder.layer[2].attention.self.query.weight
    assert torch.equal(student.encoder.encoder.layer[1].attention.self.query.weight, t_layer), "student layer 1 ← teacher layer 2"
    narrow = build_model(_spec(text_data, hidden=16, intermediate=32))
    with pytest.raises(ModelError, match="no teacher weights fit"):
        init_from_teacher(narrow, teacher)


def test_hf_folders_with_and_without_a_head(tmp_path, text_data):
    """A sequence-classification folder is used as it is; an encoder folder gets a head, trained alone."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from edgekd.models.call import predict
    from edgekd.models.text import freeze_encoder

    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    BertModel(config).save_pretrained(tmp_path / "enc")
    spec = lambda folder: ModelSpec(f"hf:{tmp_path / folder}", {}, (), 2, text_data.inputs, 300)  # noqa: E731
    with_head, encoder = build_model(spec("clf")), build_model(spec("enc"))
    for model in (with_head, encoder):
        assert predict(model, text_data.x_test[:4]).shape == (4, 2)
    assert freeze_encoder(encoder) == 32 * 2 + 2, "only the new head trains"
    with pytest.raises(ModelError, match="classifies 2 labels but the data has 3"):
        build_model(ModelSpec(f"hf:{tmp_path / 'clf'}", {}, (), 3, text_data.inputs, 300))
    with pytest.raises(ModelError, match="no config.json"):
        build_model(ModelSpec(f"hf:{tmp_path}", {}, (), 2, text_data.inputs, 300))


# --- losses on hidden states -------------------------------------------------------------------


def test_hint_and_at_ignore_padded_tokens():
    from edgekd.distill.losses import at_loss, hint_loss

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    s, t = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    s2, t2 = s.clone(), t.clone()
    s2[mask == 0], t2[mask == 0] = 100.0, -100.0  # whatever sits on the padding
    assert torch.allclose(hint_loss(s, t, mask), hint_loss(s2, t2, mask))
    assert torch.allclose(at_loss(s, t, mask), at_loss(s2, t2, mask))
    real = (s - t)[mask.bool()]  # the mean over real tokens and hidden units
    assert torch.allclose(hint_loss(s, t, mask), real.pow(2).mean())


def test_hint_on_transformer_layers_trains_a_per_token_adapter(text_data):
    from edgekd.distill.objective import Objective
    from edgekd.models.call import take, to_tensors, trim
    from edgekd.recipe import LossTerm

    teacher = build_model(_spec(text_data, hidden=64, heads=4)).eval()
    student = build_model(_spec(text_data, layers=1))
    terms = [LossTerm(method="hint", weight=1.0, teacher_layer="encoder.encoder.layer.1", student_layer="encoder.encoder.layer.0"),
             LossTerm(method="at", weight=1.0, teacher_layer="encoder.encoder.layer.1", student_layer="encoder.encoder.layer.0")]
    batch = trim(take(to_tensors(text_data.x_train), slice(0, 8)), text_data.inputs)
    objective = Objective(terms, 1.0, 4.0, student, teacher, [1.0], batch)
    assert isinstance(objective.adapters["0"], torch.nn.Linear) and objective.adapters["0"].in_features == 32
    from edgekd.models.call import forward

    with torch.no_grad():
        forward(teacher, batch)
    loss, parts = objective(forward(student, batch), None, torch.as_tensor(text_data.y_train[:8]), mask=batch["attention_mask"])
    loss.backward()
    assert set(parts) == {"ce", "hint", "at"} and torch.isfinite(loss)
    assert objective.adapters["0"].weight.grad is not None
    objective.close()


def test_mixup_and_shifts_refuse_token_inputs(tmp_path, corpus):
    from edgekd.distill.stage import distill

    recipe = tmp_path / "r.toml"
    recipe.write_text(TEXT_RECIPE.format(csv=corpus[0], tokenizer=corpus[1]).replace("max_length = 48", "max_length = 48\nmixup = 0.4"))
    with pytest.raises(RecipeError, match="mixup blends float images"):
        distill(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "refused before anything is written"
    recipe.write_text(TEXT_RECIPE.format(csv=corpus[0], tokenizer=corpus[1]).replace("max_length = 48", "max_length = 48\naugment = true"))
    with pytest.raises(RecipeError, match="augment shifts images"):
        distill(recipe, tmp_path / "out")


# --- export, quantization, bench ---------------------------------------------------------------


def test_two_input_export_runs_at_lengths_1_7_and_128(tmp_path, text_data):
    from edgekd.runtime.session import open_session, run_batches
    from edgekd.export.onnx import check_parity, export_onnx
    from edgekd.models.call import predict
    from edgekd.targets import ExportConfig

    torch.manual_seed(0)
    model = build_model(_spec(text_data)).eval()
    info = export_onnx(model, text_data.x_test, tmp_path / "t.onnx", 18)
    session = open_session(tmp_path / "t.onnx")
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("input_ids", "tensor(int64)", ["batch", "sequence"]), ("attention_mask", "tensor(int64)", ["batch", "sequence"])]
    assert session.get_outputs()[0].name == "logits" and info.exporter in ("dynamo", "torchscript")
    for length in (1, 7, 128):
        x = text_data.x_test[:3].at_length(length)
        assert np.abs(run_batches(session, x) - predict(model, x)).max() < 1e-4
    parity = check_parity(model, tmp_path / "t.onnx", text_data.x_test, ExportConfig(), "student", lengths=(1, 18, 48))
    assert parity.samples == len(text_data.x_test) + 3 * min(64, len(text_data.x_test)) and parity.argmax_agreement == 1.0


def test_feeds_are_built_by_name_not_by_position(text_data, tmp_path):
    """A model that declares attention_mask first still gets each array under its own name."""
    from edgekd.runtime.session import feeds, open_session, run_batches
    from edgekd.export.onnx import export_onnx

    class MaskFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build_model(_spec(text_data))

        def forward(self, attention_mask, input_ids):
            return self.inner(input_ids, attention_mask)

    torch.manual_seed(0)
    model = MaskFirst().eval()
    swapped = Inputs({"attention_mask": text_data.x_test["attention_mask"], "input_ids": text_data.x_test["input_ids"]})
    export_onnx(model, swapped, tmp_path / "m.onnx", 18)
    session = open_session(tmp_path / "m.onnx")
    assert [i.name for i in session.get_inputs()] == ["attention_mask", "input_ids"]
    fed = feeds(session, text_data.x_test[:2])
    assert np.array_equal(fed["input_ids"], text_data.x_test[:2]["input_ids"])
    expected = model.inner.eval()(torch.as_tensor(text_data.x_test[:4]["input_ids"]), torch.as_tensor(text_data.x_test[:4]["attention_mask"]))
    assert np.allclose(run_batches(session, text_data.x_test[:4]), expected.detach().numpy(), atol=1e-4)


def test_text_run_exports_quantizes_dynamic_int8_and_keeps_accuracy(text_run):
    from edgekd.runtime.session import open_session

    result = json.loads((text_run / "export.json").read_text())
    assert result["quantized"]["scheme"] == "dynamic" and result["deployed"] == "student.int8-dynamic.onnx"
    assert "symbolic" in result["quantized"]["preprocess"] or result["quantized"]["preprocess"] == "quant_pre_process"
    figures = f"fp32 {result['fp32_test_accuracy']:.2%}, deployed {result['deployed_test_accuracy']:.2%}"
    assert result["deployed_test_accuracy"] >= result["fp32_test_accuracy"] - 0.05, f"int8 keeps the accuracy: {figures}"
    assert result["deployed_test_accuracy"] > 0.7, f"the tiny student learns the cue words (chance: 50%): {figures}"
    ops = {n.op_type for n in __import__("onnx").load(str(text_run / "student.int8-dynamic.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}, "really int8"
    session = open_session(text_run / "student.int8-dynamic.onnx")
    assert [i.type for i in session.get_inputs()] == ["tensor(int64)", "tensor(int64)"]
    assert json.loads((text_run / "labels.json").read_text()) == {"classes": ["fresh", "rotten"]}


def test_bench_of_a_text_run_names_its_classes(text_run, tmp_path):
    from edgekd.folders.bench import bench

    report = bench(text_run, out=tmp_path, memory=False)
    assert report.classes == ["fresh", "rotten"] and "0 = fresh, 1 = rotten" in (tmp_path / "bench.md").read_text()
    from edgekd.data import load_recipe_data
    from edgekd.runfolder import load_run_recipe

    test_texts = load_recipe_data(load_run_recipe(text_run).data).x_test
    assert report.variants[-1].sequence_length == int(np.median(test_texts.lengths())), "latency at the median test text"


def test_bench_a_text_onnx_file_with_data_and_tokenizer(text_run, corpus, tmp_path):
    from typer.testing import CliRunner

    from edgekd.cli import app

    result = CliRunner().invoke(app, ["-q", "bench", str(text_run / "student.int8-dynamic.onnx"), "--data", f"text:{corpus[0]}",
                                      "--tokenizer", str(corpus[1]), "--teacher", str(text_run / "teacher.onnx"),
                                      "--target", "x86-cpu-text", "--out", str(tmp_path), "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    deployed = report["variants"][-1]
    assert deployed["accuracy"] > 0.7 and deployed["sequence_length"] > 1
    assert set(deployed["length_sweep"]) == {"16", "64"}, "128 tokens exceed the models' 64 positions: left out, not a crash"
    assert 0 < deployed["profile"]["embedding_bytes"] < deployed["profile"]["bytes"] and deployed["profile"]["macs"] > 0
    assert "Text model: size split" in (tmp_path / "bench.md").read_text()
    missing = CliRunner().invoke(app, ["-q", "bench", str(text_run / "student.int8-dynamic.onnx"), "--data", f"text:{corpus[0]}"])
    assert missing.exit_code == 2 and "--tokenizer" in missing.output


def test_spec_of_the_student_is_saved_with_its_inputs(text_run):
    from edgekd.models.checkpoint import read_checkpoint

    spec = ModelSpec.from_dict(read_checkpoint(text_run / "student.pt")["spec"])
    assert spec.inputs == (TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("attention_mask", "int64", ("batch", "sequence")))
    assert spec.vocab_size > 100 and spec.outputs == ("logits",)


@pytest.mark.slow
def test_edgekd_run_on_text_end_to_end(tmp_path, corpus):
    """The CLI, start to finish: distill (teacher trained, scratch and distilled students), export with
    parity at several lengths, dynamic int8, bench with a sequence sweep, budgets of x86-cpu-text."""
    import subprocess

    recipe = tmp_path / "text.toml"
    recipe.write_text(TEXT_RECIPE.format(csv=corpus[0], tokenizer=corpus[1]))
    done = subprocess.run([sys.executable, "-m", "edgekd", "run", str(recipe), "--out", str(tmp_path / "run"), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["distill"]["classes"] == ["fresh", "rotten"]
    assert result["export"]["student_parity"]["argmax_agreement"] == 1.0
    assert result["bench"]["deployed"] == "student int8 dynamic"
    assert {v["budget"] for v in result["bench"]["verdicts"]} >= {"max_size_kb", "max_latency_ms", "max_accuracy_drop", "min_compression"}
    assert "paired on the" not in done.stdout  # --json: tables stay off stdout


def test_encoder_teacher_trains_only_its_head_on_pooled_features(tmp_path, corpus):
    """An hf: encoder without a head (MiniLM's case): edgekd gives it a head, trains the head alone on
    the frozen encoder's pooled features, keeps the encoder's published weights, and caches it."""
    from transformers import BertConfig, BertModel

    from edgekd.distill.stage import distill

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    encoder.save_pretrained(tmp_path / "enc")
    recipe = _one_epoch_recipe(tmp_path, corpus, f'model = "hf:{tmp_path / "enc"}"\nepochs = 3')
    result = distill(recipe, tmp_path / "run")
    assert result.teachers[0].source == "trained" and result.history["teacher"], "the head was trained"
    from edgekd.models.checkpoint import read_checkpoint

    saved = read_checkpoint(tmp_path / "run" / "teacher.pt")["state_dict"]
    assert torch.equal(saved["encoder.embeddings.word_embeddings.weight"], encoder.embeddings.word_embeddings.weight), "encoder frozen"
    again = distill(recipe, tmp_path / "again")
    assert again.teachers[0].source.startswith("cache "), "a trained head is cached like any trained teacher"
    with torch.no_grad():
        encoder.embeddings.word_embeddings.weight.add_(0.1)
    encoder.save_pretrained(tmp_path / "enc")  # new weights, same folder: not the cached teacher
    assert distill(recipe, tmp_path / "changed").teachers[0].source == "trained"


def test_torchscript_fallback_keeps_the_sequence_axis_dynamic(tmp_path, text_data):
    """A data-dependent branch stops the dynamo exporter; the TorchScript fallback must still give a
    model that runs at any batch and sequence length."""
    from edgekd.runtime.session import open_session, run_batches
    from edgekd.export.onnx import export_onnx
    from edgekd.models.call import predict

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = build_model(_spec(text_data))

        def forward(self, input_ids, attention_mask):
            logits = self.inner(input_ids, attention_mask)
            return logits if attention_mask.sum() >= 0 else -logits

    torch.manual_seed(0)
    model = Branchy().eval()
    info = export_onnx(model, text_data.x_test, tmp_path / "b.onnx", 18)
    assert info.exporter == "torchscript" and info.fallback_reason
    session = open_session(tmp_path / "b.onnx")
    assert [i.shape for i in session.get_inputs()] == [["batch", "sequence"], ["batch", "sequence"]]
    for rows, length in ((1, 1), (5, 7), (3, 128)):
        x = text_data.x_test[:rows].at_length(length)
        assert np.abs(run_batches(session, x) - predict(model, x)).max() < 1e-4


def test_an_onnx_text_teacher_is_fed_by_name(tmp_path, text_run, corpus):
    from edgekd.distill.stage import distill

    recipe = _one_epoch_recipe(tmp_path, corpus, f'model = "{text_run / "teacher.onnx"}"')
    result = distill(recipe, tmp_path / "run")
    assert result.teachers[0].source.startswith("onnx ")
    exported = json.loads((text_run / "distill.json").read_text())
    assert abs(result.teacher_scores.test - exported["teacher_scores"]["test"]) < 0.02, "the same teacher, through ONNX Runtime"
    assert json.loads((text_run / "export.json").read_text())["inputs"][0] == {"name": "input_ids", "dtype": "int64", "dims": ["batch", "sequence"]}


@pytest.mark.slow
def test_auto_on_a_text_model_measures_static_dynamic_and_fused_candidates(tmp_path, text_run):
    """Static QDQ is tried and measured, not assumed; ORT's transformer fusions are one more candidate."""
    import shutil

    from edgekd.export.stage import export

    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    result = export(run, "x86-cpu-text", scheme="auto")
    names = {c.name for c in result.quantized.candidates}
    assert {"static-qdq per-channel", "dynamic", "dynamic + transformer fusions"} <= names
    (kept,) = [c for c in result.quantized.candidates if c.kept]
    assert result.quantized.scheme == kept.scheme and result.quantized.budget_met, "what ships meets the target's budget"
    # The contract, not one CPU's int8 kernels: every candidate faster than the one kept lost more than the budget.
    assert all(c.drop > result.quantized.budget for c in result.quantized.candidates if c.p50_ms < kept.p50_ms)
    assert result.quantized.settings.get("fusions", False) == (kept.name == "dynamic + transformer fusions")


def test_unlabeled_text_is_a_transfer_set_for_the_teacher(tmp_path, corpus):
    """[data] unlabeled = "text:PATH": texts without labels, tokenized like the labelled ones, that the
    distilled student learns from through the teacher's soft targets alone."""
    from edgekd.distill.stage import distill

    write_jsonl(tmp_path / "more.jsonl", [(text, None) for text, _ in sentences(50, seed=9)])
    recipe = _one_epoch_recipe(tmp_path, corpus, 'model = "transformer"\nargs = { layers = 1, hidden = 32, heads = 2, intermediate = 64, max_position = 64 }\nepochs = 1')
    recipe.write_text(recipe.read_text().replace("max_length = 48", f'max_length = 48\nunlabeled = "text:{tmp_path / "more.jsonl"}"'))
    result = distill(recipe, tmp_path / "run")
    assert result.split_sizes["unlabeled"] == 50
    assert any("(unlabeled)" in key for key in result.history["distilled"][0].terms), "the student saw the unlabelled texts"


def test_quantizing_a_text_model_leaves_the_working_folder_alone(text_run, tmp_path, monkeypatch):
    """ORT's symbolic shape inference fails on dynamic-sequence transformers and dumps
    sym_shape_infer_temp.onnx into the current folder; edgekd's pre-processing runs in its work folder."""
    import shutil

    from edgekd.export.quantize import quantize_model
    from edgekd.targets import QuantizationConfig, Scheme

    out, cwd = tmp_path / "out", tmp_path / "cwd"
    out.mkdir(), cwd.mkdir()
    shutil.copyfile(text_run / "student.sim.onnx", out / "student.sim.onnx")
    monkeypatch.chdir(cwd)
    from edgekd.data import load_recipe_data
    from edgekd.runfolder import load_run_recipe

    splits = load_recipe_data(load_run_recipe(text_run).data)
    result = quantize_model(out / "student.sim.onnx", out, QuantizationConfig(scheme=Scheme.dynamic, if_slower_than_fp32="warn"), splits.calibration(8), splits.x_val, splits.y_val)
    assert "symbolic" in result.preprocess, "the failing path ran"
    assert list(cwd.iterdir()) == [], "nothing written to the working folder"
    assert sorted(p.name for p in out.iterdir()) == ["student.int8-dynamic.onnx", "student.sim.onnx"]
