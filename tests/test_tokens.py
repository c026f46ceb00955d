"""Unlabelled text streamed into memory-mapped token arrays: the same tokens as reading the file
whole, built once, rebuilt when the file changes, and never left half-written."""

import json

import numpy as np
import pytest

from edgekd.data import tokens
from edgekd.data.text import load_tokenizer, tokenize
from edgekd.errors import DataError


@pytest.fixture
def tokenizer(corpus):
    return load_tokenizer(str(corpus[1]))


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


TEXTS = ["a great film", "the plot was dull", "", "a great film", "charming cast and music " * 3, "boring", "the plot was dull", "sharp"]


def test_the_same_tokens_as_reading_the_file_whole_across_chunks(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(tokens, "CHUNK", 3)  # duplicates fall in other chunks, widths differ per chunk
    stored = tokens.tokenized_file(_jsonl(tmp_path / "u.jsonl", TEXTS), "text", tokenizer, 12)
    distinct = list(dict.fromkeys(t for t in TEXTS if t.strip()))  # first occurrences, in file order
    whole = tokenize(tokenizer, distinct, 12)
    for name in ("input_ids", "attention_mask"):
        assert stored[name].dtype == np.int64 and np.array_equal(stored[name], whole[name]), name
    assert not stored["input_ids"].flags.owndata, "mapped from the cache file, not read into memory"


def test_csv_and_tsv_stream_too(tmp_path, tokenizer):
    path = tmp_path / "u.tsv"
    path.write_text("id\ttext\n1\ta great film\n2\tboring\n", encoding="utf-8")
    assert len(tokens.tokenized_file(path, "text", tokenizer, 12)) == 2
    with pytest.raises(DataError, match="no column 'body'.*set \\[data\\] text_column"):
        tokens.tokenized_file(path, "body", tokenizer, 12)


def test_built_once_and_rebuilt_when_the_file_changes(tmp_path, tokenizer, monkeypatch):
    path = _jsonl(tmp_path / "u.jsonl", TEXTS)
    first = tokens.tokenized_file(path, "text", tokenizer, 12)
    built = []
    real = tokens._build
    monkeypatch.setattr(tokens, "_build", lambda *args: (built.append(1), real(*args)))
    again = tokens.tokenized_file(path, "text", tokenizer, 12)
    assert built == [] and np.array_equal(first["input_ids"], again["input_ids"])
    _jsonl(path, TEXTS + ["a new sentence"])
    assert len(tokens.tokenized_file(path, "text", tokenizer, 12)) == len(first) + 1 and built == [1]
    assert len(tokens.tokenized_file(path, "text", tokenizer, 8)["input_ids"][0]) <= 8 and built == [1, 1], "max_length is in the key"


def test_an_interrupted_build_leaves_nothing_behind(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(tokens, "CHUNK", 2)

    class Failing:  # the tokenizer, interrupted (Ctrl-C) in its second chunk
        calls = 0

        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, texts, **kwargs):
            Failing.calls += 1
            if Failing.calls == 2:
                raise KeyboardInterrupt
            return tokenizer(texts, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        tokens.tokenized_file(_jsonl(tmp_path / "u.jsonl", TEXTS), "text", Failing(), 12)
    from edgekd._cache import cache_dir

    stores = list((cache_dir() / "tokens").iterdir())
    assert not [f for f in stores if f.name.endswith((".tmp", ".old"))], "no temporary folder left"
    whole = ({"input_ids.npy", "attention_mask.npy"}, {"input_ids.npy", "attention_mask.npy", "labels.npy", "table.json"})
    assert all({p.name for p in f.iterdir()} - {"rows"} in whole for f in stores), "no half store (rows/: splits of a whole store)"


@pytest.mark.parametrize("label_fraction", [1.0, 0.5])
def test_the_splits_of_a_streamed_text_file_stay_on_disk(tmp_path, corpus, monkeypatch, label_fraction):
    """Every split (and the transfer set, joined with the withheld rows) is mapped from files beside the store,
    with the same rows as gathering them into memory; a later load maps the same files again."""
    import edgekd.inputs
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    monkeypatch.setattr(edgekd.inputs, "ROWS_CHUNK", 7)  # several chunks per split
    path = _csv(tmp_path / "t.csv", [(f"sentence number {i} " + "word " * (i % 5), "pos" if i % 3 else "neg") for i in range(60)])
    transfer = _jsonl(tmp_path / "u.jsonl", [f"an unlabelled sentence {i} " + "more " * (i % 7) for i in range(25)])
    options = DataConfig(tokenizer=str(corpus[1]), max_length=12, label_fraction=label_fraction, unlabeled=f"text:{transfer}")
    mapped = load_data(f"text:{path}", options=options)
    splits = ["x_train", "x_val", "x_test", "x_unlabeled"]  # with label_fraction: the withheld rows joined to the transfer set
    for split in splits:
        assert all(_mapped(a) for a in getattr(mapped, split).values()), f"{split} is held in memory"
    rows = {f.name for f in (tokens.cache_dir() / "tokens").glob("*/rows/*.npy")}
    assert load_data(f"text:{path}", options=options).fingerprint() == mapped.fingerprint()
    assert {f.name for f in (tokens.cache_dir() / "tokens").glob("*/rows/*.npy")} == rows, "the same split maps the same files"

    def unwritable(*_):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(edgekd.inputs, "atomic_path", unwritable)
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / "fresh"))  # a new store whose rows cannot be written
    held = load_data(f"text:{path}", options=options)
    for split in splits:
        ours, theirs = getattr(mapped, split), getattr(held, split)
        if split != "x_unlabeled" or label_fraction < 1:  # the transfer set alone is its own store
            assert not _mapped(theirs["input_ids"]), "a rows file that cannot be written: gathered into memory"
        for name in ours:
            assert np.array_equal(ours[name], theirs[name]), (split, name)
    assert np.array_equal(mapped.y_train, held.y_train) and np.array_equal(mapped.y_test, held.y_test)


def test_take_rows_of_arrays_not_mapped_whole_is_plain_indexing(tmp_path):
    from edgekd.inputs import take_rows

    np.save(tmp_path / "a.npy", np.arange(40).reshape(20, 2))
    whole = np.asarray(np.load(tmp_path / "a.npy", mmap_mode="c"))
    index = np.array([5, 1, 19, 1])
    part = whole[2:10]  # a view: its rows are not the file's, so never keyed by the file
    assert np.array_equal(take_rows(part, np.array([0, 3])), np.arange(40).reshape(20, 2)[[2, 5]])
    assert not (tmp_path / "rows").exists()
    taken = take_rows(whole, index)
    assert np.array_equal(taken, np.arange(40).reshape(20, 2)[index]) and _mapped(taken)
    again = take_rows(taken, np.array([2, 0]))  # rows of rows: the same folder
    assert np.array_equal(again, np.arange(40).reshape(20, 2)[[19, 5]]) and len(list((tmp_path / "rows").iterdir())) == 2
    assert np.array_equal(take_rows(np.arange(6), np.array([4, 2])), [4, 2])


@pytest.mark.parametrize("content,expected", [
    (b'{"text": "ok"}\nnot json\n', "line 2 is not JSON"),
    (b'{"body": "ok"}\n', "line 1 has no 'text'"),
    (b'{"text": "caf\xe9"}\n', "not valid utf-8 text.*encoding"),
])
def test_bad_files_are_one_line_errors(tmp_path, tokenizer, content, expected):
    path = tmp_path / "u.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        tokens.tokenized_file(path, "text", tokenizer, 12)


def _mapped(array) -> bool:
    import mmap

    while array is not None and not isinstance(array, (np.memmap, mmap.mmap)):
        array = getattr(array, "base", None)
    return array is not None


ROWS = [("a great film", "pos"), ("the plot was dull", "neg"), ("a great film", "neg"), ("so so", "meh"),
        ("charming cast and music " * 3, "pos"), ("boring", "neg"), ("", "pos"), ("sharp", "pos"), ("so so", "pos")]


def _csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("labels", [None, ["pos", "neg"], ["neg", "pos"]])
def test_labelled_texts_streamed_match_reading_the_file_whole(tmp_path, tokenizer, monkeypatch, labels):
    from edgekd.data.text import read_text_table

    monkeypatch.setattr(tokens, "CHUNK", 3)  # duplicates and filtered rows fall in other chunks
    path = _csv(tmp_path / "t.csv", ROWS)
    x, y, classes, duplicates, other = tokens.tokenized_table(path, "text", "label", labels, tokenizer, 12)
    whole = read_text_table(path, "text", "label", labels)
    expected = tokenize(tokenizer, whole.texts, 12)
    assert _mapped(x["input_ids"]), "the inputs are read from the cache's file, not held in memory"
    assert np.array_equal(x["input_ids"], expected["input_ids"]) and np.array_equal(x["attention_mask"], expected["attention_mask"])
    assert np.array_equal(y, whole.labels) and classes == whole.classes
    assert (duplicates, other) == (whole.dropped_duplicates, whole.dropped_labels)
    again = tokens.tokenized_table(path, "text", "label", labels, tokenizer, 12)
    assert np.array_equal(again[1], y) and again[2:] == (classes, duplicates, other), "reused from the cache as built"


def test_integer_labels_streamed(tmp_path, tokenizer):
    path = _csv(tmp_path / "t.csv", [("one", "1"), ("zero", "0.0"), ("three", "3")])
    _, y, classes, _, _ = tokens.tokenized_table(path, "text", "label", None, tokenizer, 12)
    assert classes == ("0", "1", "2", "3") and y.tolist() == [1, 0, 3]


def test_the_text_source_streams_its_labelled_rows(tmp_path, corpus):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    path = _csv(tmp_path / "t.csv", [(f"sentence number {i}", "pos" if i % 3 else "neg") for i in range(60)])
    folder = tokens.cache_dir() / "tokens"
    before = set(folder.iterdir()) if folder.is_dir() else set()
    data = load_data(f"text:{path}", options=DataConfig(tokenizer=str(corpus[1]), max_length=12))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60 and data.classes == ("neg", "pos")
    built = [f for f in set(folder.iterdir()) - before if (f / "labels.npy").is_file()]
    assert len(built) == 1 and len(np.load(built[0] / "labels.npy")) == 60, "the labelled rows went through a token store"


@pytest.mark.parametrize("content,expected", [
    ("text,category\nok,a\n", "no column 'label'.*label_column"),
    ("text,label\nok,\n", "row 2 lacks a text or a label"),
    ("text,label\nok,a\n", r"no rows left with labels \['b'\]"),
])
def test_bad_labelled_files_are_one_line_errors(tmp_path, tokenizer, content, expected):
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        tokens.tokenized_table(path, "text", "label", ["b"] if "rows left" in expected else None, tokenizer, 12)


def test_a_damaged_labelled_store_is_rebuilt(tmp_path, tokenizer):
    path = _csv(tmp_path / "t.csv", ROWS)
    first = tokens.tokenized_table(path, "text", "label", None, tokenizer, 12)
    stores = [f for f in (tokens.cache_dir() / "tokens").iterdir() if (f / "table.json").is_file()]
    for store in stores:
        (store / "table.json").write_text("damaged", encoding="utf-8")
    again = tokens.tokenized_table(path, "text", "label", None, tokenizer, 12)
    assert np.array_equal(again[0]["input_ids"], first[0]["input_ids"]) and np.array_equal(again[1], first[1]) and again[2:] == first[2:]


def test_a_cache_that_cannot_be_written_reads_the_files_whole(tmp_path, corpus, monkeypatch):
    from edgekd.data.config import DataConfig
    from edgekd.data.text import read_text_file, read_text_table, read_unlabeled_texts

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("EDGEKD_CACHE_DIR", str(blocked))  # every store under it fails to be created
    cfg = DataConfig(tokenizer=str(corpus[1]), max_length=12)
    path = _csv(tmp_path / "t.csv", ROWS)
    table = read_text_file(path, cfg)
    whole = read_text_table(path, "text", "label")
    assert np.array_equal(table["y"], whole.labels) and table["classes"] == whole.classes
    assert not _mapped(table["x"]["input_ids"])
    unlabeled = read_unlabeled_texts(_jsonl(tmp_path / "u.jsonl", TEXTS), cfg)
    assert len(unlabeled) == len({t for t in TEXTS if t.strip()})
    conll = tmp_path / "t.conll"
    conll.write_text("a O\ngreat B-X\nfilm I-X\n\nthe O\nplot B-Y\n", encoding="utf-8")
    tagged = read_text_file(conll, cfg, conll=True)
    assert tagged["classes"] == ("O", "B-X", "I-X", "B-Y", "I-Y") and len(tagged["y"]) == 2 and not _mapped(tagged["y"])


@pytest.mark.parametrize("name, conll", [("missing.csv", False), ("missing.conll", True)])
def test_a_missing_text_file_is_named_not_taken_for_an_unwritable_cache(tmp_path, corpus, capsys, name, conll):
    from edgekd._progress import set_quiet
    from edgekd.data.config import DataConfig
    from edgekd.data.text import read_text_file

    set_quiet(False)
    try:
        with pytest.raises(DataError, match=f"{name}: cannot read it .*check the path"):
            read_text_file(tmp_path / name, DataConfig(tokenizer=str(corpus[1]), max_length=12), conll=conll)
    finally:
        set_quiet(True)
    assert "cannot store its tokens" not in capsys.readouterr().err
