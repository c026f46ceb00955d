"""Token classification (NER) end to end: IOB2 files (jsonl, CoNLL), word tags on first sub-tokens,
entity F1 as seqeval scores it, per-token losses over batches cut to their own longest text, and a
tagger distilled, exported (sequence axis dynamic), quantized and gated on entity F1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli_checks import one_line_error, run_folder
from edgekd.cli import app
from edgekd.data import load_data
from edgekd.data.config import DataConfig
from edgekd.distill.losses import dense_positions
from edgekd.errors import DataError
from edgekd.inputs import concat_outputs
from edgekd.task import IGNORED, entity_spans, infer_task, tag_order, task
from text_data import tagged_sentences, tagging_tokenizer, write_conll, write_tagged_jsonl

TOKENS = task("token-classification")


def _encode(sentences_true, sentences_pred, types):
    """Tag-name sentences → ids (N, S) and one-hot logits (N, S, C) in edgekd's tag order, padded with IGNORED."""
    index = {t: i for i, t in enumerate(tag_order(types))}
    length = max(len(s) for s in sentences_true) + 2
    y = np.full((len(sentences_true), length), IGNORED)
    logits = np.zeros((len(sentences_true), length, len(index)), dtype=np.float32)
    for i, (truth, guess) in enumerate(zip(sentences_true, sentences_pred)):
        for j, (a, b) in enumerate(zip(truth, guess)):
            y[i, j + 1] = index[a]  # position 0: a special token, ignored
            logits[i, j + 1, index[b]] = 1
    return logits, y


def test_entity_f1_is_seqeval_s_on_its_own_example_and_on_random_tags():
    from seqeval.metrics import f1_score, precision_score, recall_score

    truth = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    guess = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert TOKENS.score(*_encode(truth, guess, ["MISC", "PER"]))["f1"] == pytest.approx(f1_score(truth, guess)) == 0.5
    rng = np.random.default_rng(0)
    tags = tag_order(["LOC", "ORG", "PER"])
    for _ in range(30):  # tagger output as it comes: I- after O or after another type included
        lengths = rng.integers(1, 12, size=8)
        truth = [[tags[k] for k in rng.integers(0, len(tags), n)] for n in lengths]
        guess = [[tags[k] for k in rng.integers(0, len(tags), n)] for n in lengths]
        scores = TOKENS.score(*_encode(truth, guess, ["LOC", "ORG", "PER"]))
        assert scores["f1"] == pytest.approx(f1_score(truth, guess), abs=1e-9)
        assert scores["precision"] == pytest.approx(precision_score(truth, guess), abs=1e-9)
        assert scores["recall"] == pytest.approx(recall_score(truth, guess), abs=1e-9)


def test_entities_are_read_from_tag_ids_alone():
    o, b_loc, i_loc, b_per, i_per = range(5)  # tag_order(["LOC", "PER"])
    assert tag_order(["LOC", "PER"]) == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    assert entity_spans(np.array([b_loc, i_loc, o, i_per, i_per, b_per])) == {(0, 2, 0), (3, 5, 1), (5, 6, 1)}
    assert entity_spans(np.array([b_loc, i_per])) == {(0, 1, 0), (1, 2, 1)}, "an I- of another type starts its own entity"


def test_the_paired_bootstrap_tells_a_worse_tagger_from_an_equal_one():
    rng = np.random.default_rng(2)
    tags = tag_order(["LOC", "PER"])
    truth = [[tags[k] for k in rng.integers(0, len(tags), 10)] for _ in range(120)]
    noisy = [[t if rng.random() > 0.4 else tags[rng.integers(0, len(tags))] for t in s] for s in truth]
    good, y = _encode(truth, truth, ["LOC", "PER"])
    bad, _ = _encode(truth, noisy, ["LOC", "PER"])
    same = TOKENS.paired(TOKENS.per_sample(good, y), TOKENS.per_sample(good, y))
    assert same.drop == 0 and same.p_value == 1.0
    worse = TOKENS.paired(TOKENS.per_sample(good, y), TOKENS.per_sample(bad, y))
    assert worse.drop == pytest.approx(1 - TOKENS.score(bad, y)["f1"]) and worse.p_value < 0.01 and worse.interval[0] > 0


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tagging_tokenizer(tmp_path_factory.mktemp("tok"))


def test_word_tags_go_to_the_first_sub_token_and_the_rest_is_ignored(tmp_path, tokenizer):
    sentences = [(["zorbanov", "visited", "new", "york"], ["B-PER", "O", "B-LOC", "I-LOC"])] + tagged_sentences(30)
    write_tagged_jsonl(tmp_path / "ner.jsonl", sentences)
    data = load_data(f"text:{tmp_path / 'ner.jsonl'}", options=DataConfig(tokenizer=str(tokenizer)), test_fraction=0.2)
    assert data.task == "token-classification" and data.classes == tag_order(["LOC", "ORG", "PER"]) and data.num_classes == 7
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tokenizer))(["zorbanov", "visited", "new", "york"], is_split_into_words=True)["input_ids"]
    splits = {name: (getattr(data, f"x_{name}")["input_ids"], getattr(data, f"y_{name}")) for name in ("train", "val", "test")}
    row = next((y[i] for x, y in splits.values() for i in range(len(x)) if list(x[i][: len(ids)]) == ids), None)
    assert row is not None
    per, loc, i_loc = (data.classes.index(t) for t in ("B-PER", "B-LOC", "I-LOC"))
    pieces = len(ids) - 5  # [CLS] zor ##b ... visited new york [SEP]
    assert row[0] == IGNORED and row[1] == per and (row[2 : 1 + pieces] == IGNORED).all(), "later sub-tokens of a word: ignored"
    assert list(row[1 + pieces : 4 + pieces]) == [0, loc, i_loc] and row[4 + pieces] == IGNORED


def test_conll_files_read_as_jsonl_does(tmp_path, tokenizer):
    sentences = tagged_sentences(40, seed=3)
    options = DataConfig(tokenizer=str(tokenizer))
    from_jsonl = load_data(f"text:{write_tagged_jsonl(tmp_path / 'a.jsonl', sentences)}", options=options)
    from_conll = load_data(f"conll:{write_conll(tmp_path / 'a.conll', sentences)}", options=options)
    assert np.array_equal(from_jsonl.y_train, from_conll.y_train) and from_jsonl.classes == from_conll.classes


@pytest.mark.parametrize("content, fragment", [
    ('{"tokens": ["a", "b"], "tags": ["O"]}\n', "line 1 has 2 tokens but 1 tags"),
    ('{"tokens": ["a", "b"], "tags": ["O", "B_PER"]}\n', "tag 'B_PER' is not IOB2"),
    ('{"tokens": ["a"], "tags": "O"}\n', 'line 1 needs "tokens" and "tags" lists'),
])
def test_bad_tag_files_are_named(tmp_path, tokenizer, content, fragment):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(DataError, match=fragment):
        load_data(f"text:{tmp_path / 'bad.jsonl'}", options=DataConfig(tokenizer=str(tokenizer)))


def test_an_i_tag_that_starts_an_entity_is_read_as_b_and_counted(tmp_path, tokenizer, capsys):
    from edgekd._progress import set_quiet

    sentences = tagged_sentences(30)
    sentences[0] = (["alice", "met", "carol"], ["I-PER", "O", "I-PER"])
    write_conll(tmp_path / "a.conll", sentences)
    set_quiet(False)
    try:
        data = load_data(f"conll:{tmp_path / 'a.conll'}", options=DataConfig(tokenizer=str(tokenizer)))
    finally:
        set_quiet(True)
    assert "2 I- tags that started an entity read as B-" in capsys.readouterr().err
    assert data.task == "token-classification"


def test_token_labels_are_inferred_from_the_ignore_index_and_checked_against_the_tokens():
    y = np.array([[-100, 1, 2, 0, -100], [-100, 0, 3, -100, -100]])
    assert infer_task(y) == "token-classification"
    x = {"input_ids": np.ones((2, 4), np.int64), "attention_mask": np.ones((2, 4), np.int64)}
    from edgekd.data import splits_from_arrays

    with pytest.raises(DataError, match="y_train has 5 tags per sample but the inputs have"):
        splits_from_arrays({"x_train": x, "y_train": y, "x_test": x, "y_test": y[:, :4]})


def test_per_token_losses_cut_labels_and_cached_teacher_outputs_to_the_batch_s_length():
    student = torch.randn(2, 3, 5)  # this batch's longest text: 3 tokens
    teacher = torch.randn(2, 7, 5)  # cached at the full width
    labels = torch.full((2, 7), IGNORED)
    labels[:, 1:3] = torch.tensor([[1, 2], [0, 3]])
    s, (t,), y, _, _ = dense_positions(student, [teacher], labels, -1, IGNORED)
    assert s.shape == t.shape == (4, 5) and y.tolist() == [1, 2, 0, 3]
    assert torch.equal(t[0], teacher[0, 1])


def test_outputs_of_batches_of_different_lengths_line_up_again():
    chunks = [np.ones((2, 3, 4)), np.ones((1, 5, 4))]
    stacked = concat_outputs(chunks)
    assert stacked.shape == (3, 5, 4) and stacked[0, 3:].sum() == 0 and stacked[2].sum() == 20
    assert concat_outputs([np.ones((2, 3)), np.ones((1, 3))]).shape == (3, 3), "one output per sample: as before"


@pytest.fixture(scope="module")
def tagging_run(tmp_path_factory, tokenizer):
    """`edgekd run` on generated NER sentences: transformer teacher and student, int8, gated on entity F1 (read only)."""
    folder = tmp_path_factory.mktemp("ner")
    write_tagged_jsonl(folder / "ner.jsonl", tagged_sentences(400, seed=1))
    return run_folder(folder, f'[data]\nsource = "text:ner.jsonl"\ntokenizer = "{tokenizer}"\nmax_length = 32\n'
                              '[teacher]\nargs = { layers = 2, hidden = 64, heads = 2, intermediate = 128 }\nepochs = 8\nlr = 0.003\n'
                              '[student]\nargs = { layers = 1, hidden = 32, heads = 2, intermediate = 64 }\n[distill]\nepochs = 6\nbatch_size = 32\n',
                      "max_f1_drop = 0.9")


@pytest.mark.slow
def test_a_tagger_runs_end_to_end_and_is_judged_by_entity_f1(tagging_run):
    run = tagging_run / "run"
    summary = json.loads((run / "distill.json").read_text())
    assert summary["task"] == "token-classification" and summary["metric"] == "f1"
    assert set(summary["distilled"]["best"]["metrics"]) == {"f1", "token_accuracy", "precision", "recall"}
    assert summary["teacher_scores"]["test"] > 0.5, "the teacher finds most generated entities"
    exported = json.loads((run / "export.json").read_text())
    assert exported["metric"] == "f1" and exported["student_parity"]["argmax_agreement"] > 0.99
    bench = json.loads((run / "bench.json").read_text())
    assert bench["task"] == "token-classification" and bench["classes"][:2] == ["O", "B-LOC"]
    verdicts = {v["budget"]: v for v in bench["verdicts"]}
    teacher, deployed = (next(v for v in bench["variants"] if v["role"] == r)["metrics"]["f1"] for r in ("teacher", bench["deployed_role"]))
    assert verdicts["max_f1_drop"]["measured"] == pytest.approx(teacher - deployed, abs=1e-9) and verdicts["max_f1_drop"]["passed"]


@pytest.mark.slow
def test_the_exported_tagger_answers_every_token_at_any_length(tagging_run, tmp_path, tokenizer):
    from edgekd.runtime.session import open_session

    session = open_session(tagging_run / "run" / "student.int8.onnx")
    for length in (3, 17):
        ids = np.ones((2, length), np.int64)
        (out,) = session.run(None, {"input_ids": ids, "attention_mask": ids})
        assert out.shape == (2, length, 7), "batch and sequence axes are dynamic; one row of tag logits per token"
    write_tagged_jsonl(tmp_path / "test.jsonl", tagged_sentences(40, seed=7))
    result = CliRunner().invoke(app, ["-q", "bench", str(tagging_run / "run" / "student.int8.onnx"), "--data", f"text:{tmp_path / 'test.jsonl'}",
                                      "--tokenizer", str(tokenizer), "--out", str(tmp_path), "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["task"] == "token-classification" and 0 <= report["variants"][0]["metrics"]["f1"] <= 1


def test_a_sequence_classifier_given_tags_is_refused_before_training(tmp_path, tokenizer):
    write_tagged_jsonl(tmp_path / "ner.jsonl", tagged_sentences(60))
    (tmp_path / "r.toml").write_text(f'[data]\nsource = "text:ner.jsonl"\ntokenizer = "{tokenizer}"\n'
                                     '[student]\nmodel = "transformer"\nargs = { pooling = "mean", layers = 1, hidden = 16, heads = 2, intermediate = 32 }\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(tmp_path / "r.toml"), "--out", str(tmp_path / "run")])
    one_line_error(result, "outputs shape (7,) per sample", "(sequence, tags) logits of 7 tags")
    assert not (tmp_path / "run").exists()


def test_an_encoder_teacher_gets_a_per_token_head_trained_on_its_frozen_token_features(tmp_path, tokenizer):
    """hf:FOLDER without a head (MiniLM's case) on tagged text: a head per token, trained alone on the
    encoder's per-token features (batches of different lengths padded back), the encoder kept as published."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from edgekd.distill.stage import distill
    from edgekd.models.checkpoint import read_checkpoint
    from edgekd.recipe import recipe_from_dict

    torch.manual_seed(0)
    vocab = len(AutoTokenizer.from_pretrained(str(tokenizer)))
    encoder = BertModel(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    encoder.save_pretrained(tmp_path / "enc")
    write_tagged_jsonl(tmp_path / "ner.jsonl", tagged_sentences(120))
    recipe = recipe_from_dict({"data": {"source": f"text:{tmp_path / 'ner.jsonl'}", "tokenizer": str(tokenizer), "max_length": 24},
                               "teacher": {"model": f"hf:{tmp_path / 'enc'}", "epochs": 2},
                               "student": {"args": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}},
                               "distill": {"epochs": 1, "batch_size": 16}})
    result = distill(recipe, tmp_path / "run")
    assert result.task == "token-classification" and result.teachers[0].source == "trained" and result.history["teacher"]
    saved = read_checkpoint(tmp_path / "run" / "teacher.pt")
    assert saved["spec"]["args"]["pooling"] == "none" and saved["state_dict"]["classifier.weight"].shape == (7, 32)
    assert torch.equal(saved["state_dict"]["encoder.embeddings.word_embeddings.weight"], encoder.embeddings.word_embeddings.weight)


@pytest.mark.slow
def test_a_tagger_is_fine_tuned_through_its_int8_model_and_judged_by_entity_f1(tagging_run, tmp_path):
    import shutil

    from edgekd.qad.stage import quantization_aware

    shutil.copytree(tagging_run / "run", tmp_path / "run")
    result = quantization_aware(tmp_path / "run", tagging_run / "target.toml", epochs=1)
    assert result.metric == "f1" and not result.skipped
    start, *trained = result.variants
    assert all(v.parity.agreement >= 0.99 and v.val_accuracy >= start.val_accuracy for v in trained), "per-token outputs of every length line up"
    assert "entity F1" in result.deployed_because


@pytest.mark.parametrize("kind", ["conll", "jsonl"])
def test_tagged_sentences_streamed_match_reading_the_file_whole(tmp_path, tokenizer, monkeypatch, capsys, kind):
    """Chunk by chunk into the cache's token store: the same tokens, tags, tag order and notes
    (duplicates, I- read as B-, words cut by max_length) as the file read whole, mapped from disk."""
    from edgekd._progress import set_quiet
    from edgekd.data import tokens
    from edgekd.data.text import read_text_file

    monkeypatch.setattr(tokens, "CHUNK", 4)  # duplicates and new entity types fall in later chunks
    sentences = tagged_sentences(14, seed=5)
    sentences += [sentences[1], (["alice", "met", "carol"], ["I-PER", "O", "I-PER"]), (["zorbanov"] * 30, ["B-ZZZ"] + ["I-ZZZ"] * 29)]
    path = write_conll(tmp_path / "a.conll", sentences) if kind == "conll" else write_tagged_jsonl(tmp_path / "a.jsonl", sentences)
    cfg = DataConfig(tokenizer=str(tokenizer), max_length=16)
    set_quiet(False)
    try:
        streamed = read_text_file(path, cfg, conll=kind == "conll")
        said_streamed = [line for line in capsys.readouterr().err.splitlines() if "duplicate sentences dropped" in line]
        whole = read_text_file(path, cfg, conll=kind == "conll", stream=False)
        said_whole = [line for line in capsys.readouterr().err.splitlines() if "duplicate sentences dropped" in line]
    finally:
        set_quiet(True)
    assert streamed["classes"] == whole["classes"] and "B-ZZZ" in streamed["classes"] and streamed["task"] == "token-classification"
    assert np.array_equal(streamed["y"], whole["y"]) and streamed["y"].dtype == np.int64
    for name in ("input_ids", "attention_mask"):
        assert np.array_equal(streamed["x"][name], whole["x"][name]), name
    assert not streamed["x"]["input_ids"].flags.owndata and not streamed["y"].flags.owndata, "mapped from the store"
    assert said_streamed == said_whole and "1 duplicate sentences dropped; 2 I- tags that started an entity read as B-" in said_whole[0]
    assert "words beyond max_length = 16 left out" in said_whole[0]


def test_a_bad_tag_in_a_later_chunk_stops_the_stream_and_leaves_no_store(tmp_path, tokenizer, monkeypatch):
    from edgekd._cache import cache_dir
    from edgekd.data import tokens

    monkeypatch.setattr(tokens, "CHUNK", 3)
    sentences = tagged_sentences(10) + [(["a", "b"], ["O", "PER"])]
    write_conll(tmp_path / "a.conll", sentences)
    before = set((cache_dir() / "tokens").iterdir()) if (cache_dir() / "tokens").is_dir() else set()
    with pytest.raises(DataError, match="tag 'PER' is not IOB2"):
        load_data(f"conll:{tmp_path / 'a.conll'}", options=DataConfig(tokenizer=str(tokenizer)))
    assert set((cache_dir() / "tokens").iterdir()) == before, "nothing stored, no temporary folder left"
