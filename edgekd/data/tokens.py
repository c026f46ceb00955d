"""Texts that need not fit in memory: read row by row, tokenized a chunk at a time, stored once as
memory-mapped arrays in edgekd's cache.

An unlabelled transfer set (`[data] unlabeled = "text:PATH"`) is often 10^5–10^7 sentences. Read
whole and tokenized at once it would hold every row, every Python string and every token in
memory; here the file is streamed, `CHUNK` texts are tokenized at a time into temporary chunk
files, then copied into one `.npy` per input, which later runs map again without tokenizing
(the key is the file's bytes, the tokenizer, max_length and the column). Memory while building is
one chunk plus 8 bytes per row (the duplicate check); training gathers each batch from the
mapped arrays and the operating system pages them in and out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._cache import cache_dir
from edgekd._io import atomic_folder, sha256_file, write_text
from edgekd._platform import release_freed_memory
from edgekd._progress import say
from edgekd.data.files import ENCODING_FIX
from edgekd.data.text import class_indices, compressed_opener, json_rows, text_and_label, text_format
from edgekd.errors import DataError
from edgekd.inputs import Inputs

CHUNK = 10_000  # texts tokenized at a time
_FORMAT = 1  # bump when the stored layout changes: older stores are then rebuilt
_NAMES = ("input_ids", "attention_mask")


def stream_rows(path: Path, encoding: str = "utf-8", columns: tuple[str, ...] = (), fix: str = "set [data] text_column") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of every row of a csv / tsv / jsonl file (optionally .gz / .bz2), one row in
    memory at a time; a bad byte, a line that is not JSON, or `columns` missing from the csv header
    or the first JSON row is a DataError (`fix` says which setting names them)."""
    path = Path(path)
    _, kind = text_format(path)
    lines = stream_lines(path, encoding, newline="")  # csv reads quoted line breaks itself
    try:
        if kind == ".jsonl":
            for number, row in json_rows(lines, path):
                if columns and number == 1:
                    _check_columns(path, columns, list(row), fix)
                yield number, row
        else:
            reader = csv.DictReader(lines, delimiter="\t" if kind == ".tsv" else ",")
            if columns and reader.fieldnames is not None:
                _check_columns(path, columns, reader.fieldnames, fix)
            yield from enumerate(reader, start=2)
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable {kind.lstrip('.')} file ({exc})") from None


def stream_lines(path: Path, encoding: str = "utf-8", newline: str | None = None) -> Iterator[str]:
    """The lines of a text file (optionally .gz / .bz2), one in memory at a time; a bad byte or an
    unreadable file is a DataError naming it."""
    path = Path(path)
    utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    number = 0
    try:
        with compressed_opener(path)(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig" if utf8 else encoding, newline=newline) as fh:
            for number, line in enumerate(fh, start=1):
                yield line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: near line {number + 1}, a byte is not valid {encoding} text ({exc.reason}); {ENCODING_FIX}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None


def _check_columns(path: Path, columns: tuple[str, ...], present: list[str], fix: str) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{path}: no column '{missing[0]}' (columns: {', '.join(map(str, present))}); {fix}")


def stream_texts(path: Path, column: str, encoding: str = "utf-8") -> Iterator[str]:
    """The non-empty `column` of every row, one row in memory at a time (see `stream_rows`)."""
    for number, row in stream_rows(path, encoding, (column,) if text_format(Path(path))[1] != ".jsonl" else ()):
        yield from _text_of(row, column, Path(path), number)


def _text_of(row: dict[str, Any], column: str, path: Path, number: int) -> Iterator[str]:
    if column not in row:
        raise DataError(f"{path}: line {number} has no '{column}' (it has: {', '.join(map(str, row)) or 'nothing'}); set [data] text_column")
    text = str(row[column] if row[column] is not None else "")
    if text.strip():
        yield text


def tokenized_file(path: Path, column: str, tokenizer, max_length: int, encoding: str = "utf-8") -> Inputs:
    """Every distinct non-empty text of the file's `column` (first occurrences, in file order),
    tokenized and truncated at `max_length`: int64 `input_ids` and `attention_mask`, padded to the
    longest, as memory-mapped arrays built once in the cache."""
    path = Path(path)
    folder = cache_dir() / "tokens" / _key(path, [column], tokenizer, max_length, encoding)
    return _stored(path, folder, _mapped,
                   lambda: _build(path, folder, lambda work: _tokenize_chunks(path, stream_texts(path, column, encoding), tokenizer, max_length,
                                                                              work, f"no non-empty '{column}' in any row")))


def tokenized_table(path: Path, text_column: str, label_column: str, labels: list[str] | None, tokenizer, max_length: int,
                    encoding: str = "utf-8") -> tuple[Inputs, np.ndarray, tuple[str, ...], int, int]:
    """The labelled `text:PATH` source, streamed like `tokenized_file`: the rows whose label is among
    `labels` (all: None), distinct texts only (first occurrences), tokenized once into the cache.
    Returns the mapped inputs, int64 class indices, the class names, and how many duplicate texts
    and rows with other labels were dropped. Memory while building: one chunk of texts plus 16
    bytes per row (the duplicate check and the label)."""
    path = Path(path)
    folder = cache_dir() / "tokens" / _key(path, [text_column, label_column, labels], tokenizer, max_length, encoding)

    def build() -> None:
        names: dict[str, int] = {}
        label_ids: list[int] = []
        other = [0]

        def texts() -> Iterator[str]:
            for number, row in stream_rows(path, encoding, (text_column, label_column), "set [data] text_column / label_column"):
                text, label = text_and_label(row, number, path, text_column, label_column)
                if labels is not None and label not in labels:
                    other[0] += 1
                    continue
                label_ids.append(names.setdefault(label, len(names)))
                yield text

        def store_labels(work: Path, keep: np.ndarray) -> None:
            kept = np.asarray(label_ids, dtype=np.int64)[keep]
            by_id = list(names)
            present = [by_id[i] for i in np.unique(kept)]
            classes, index = class_indices(present, labels)
            np.save(work / "labels.npy", np.array([index.get(name, -1) for name in by_id], dtype=np.int64)[kept])  # -1: only on duplicates
            write_text(work / "table.json", json.dumps({"classes": classes, "dropped_duplicates": int(len(keep) - keep.sum()),
                                                       "dropped_labels": other[0]}))

        empty = (f"no rows left with labels {labels}" if labels is not None else f"no rows with a '{text_column}' and a '{label_column}'")
        _build(path, folder, lambda work: _tokenize_chunks(path, texts(), tokenizer, max_length, work, empty), store_labels)

    def load(folder: Path) -> tuple[Inputs, np.ndarray, tuple[str, ...], int, int]:
        table = json.loads((folder / "table.json").read_text(encoding="utf-8"))
        y = np.load(folder / "labels.npy")
        return _mapped(folder), y, tuple(table["classes"]), int(table["dropped_duplicates"]), int(table["dropped_labels"])

    return _stored(path, folder, load, build)


def tokenized_tagged(path: Path, sentences: Callable[[], Iterator[tuple[str, list[str], list[str]]]], tokenizer, max_length: int,
                     ignore_index: int, encoding: str = "utf-8") -> dict[str, Any]:
    """Tagged sentences (token classification: `sentences()` yields (where, words, IOB2 tags), read
    from `path` one at a time) streamed into a store like `tokenized_file`'s: distinct sentences
    (first occurrences), the words split into sub-tokens, each word's tag id on its first sub-token
    and `ignore_index` on the rest, on special tokens and on padding. Tag ids follow
    edgekd.task.tag_order over the entity types found. Returns the mapped inputs and labels, the
    tag names, and the counts a reader is told of (duplicates, I- tags read as B-, words cut by
    `max_length`). Memory while building: one chunk of sentences plus 12 bytes a sentence."""
    from edgekd.task import tag_order

    path = Path(path)
    folder = cache_dir() / "tokens" / _key(path, ["tagged", ignore_index], tokenizer, max_length, encoding)

    def build() -> None:
        seen_tags: dict[str, int] = {}  # tag name -> id while reading; the final ids come at the end
        counts = {"repaired": 0}
        cut: list[np.ndarray] = []

        def tokenized(work: Path) -> tuple[list[np.ndarray], int, int]:
            return _tokenize_tagged_chunks(path, sentences(), tokenizer, max_length, work, seen_tags, counts, cut)

        def store_tags(work: Path, keep: np.ndarray) -> None:
            order = tag_order(sorted({name[2:] for name in seen_tags if name != "O"}))
            final = {name: i for i, name in enumerate(order)}
            remap = np.array([ignore_index] + [final[name] for name in seen_tags], dtype=np.int64)  # read id + 1 (-1: not scored) -> tag id
            labels = np.load(work / "labels.npy", mmap_mode="r+")
            for start in range(0, len(labels), CHUNK):
                labels[start:start + CHUNK] = remap[labels[start:start + CHUNK] + 1]
            labels.flush()
            del labels
            write_text(work / "table.json", json.dumps({"classes": order, "dropped_duplicates": int(len(keep) - keep.sum()),
                                                       "repaired": counts["repaired"], "cut": int(np.concatenate(cut)[keep].sum())}))

        _build(path, folder, tokenized, store_tags, {"labels": -1})

    def load(folder: Path) -> dict[str, Any]:
        table = json.loads((folder / "table.json").read_text(encoding="utf-8"))
        return {"x": _mapped(folder), "y": np.asarray(np.load(folder / "labels.npy", mmap_mode="c")), "classes": tuple(table["classes"]),
                "vocab_size": len(tokenizer), "dropped_duplicates": int(table["dropped_duplicates"]), "repaired": int(table["repaired"]),
                "cut": int(table["cut"])}

    return _stored(path, folder, load, build)


def _tokenize_tagged_chunks(path: Path, sentences: Iterator[tuple[str, list[str], list[str]]], tokenizer, max_length: int, work: Path,
                            seen_tags: dict[str, int], counts: dict[str, int], cut: list[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """Each CHUNK of checked sentences tokenized into `work`/chunkN.{input_ids,attention_mask,labels}.npy
    (labels: the tag's id in `seen_tags`, which grows as tags appear, or -1 for tokens not scored); per chunk, the sentences' 8-byte hashes and how many words each lost to `max_length`."""
    from edgekd._progress import bar
    from edgekd.data.text import checked_sentence, tag_first_subtokens

    def read_id(tag: str) -> int:
        return seen_tags.setdefault(tag, len(seen_tags))

    hashes, widths, chunks = [], 0, 0
    with bar() as progress:
        task = progress.add_task(f"tokenizing {path.name}", total=None, info="")
        chunk: list[tuple[list[str], list[str]]] = []
        for last, item in _with_last(sentences):
            if item is not None:
                where, words, tags = item
                fixed, repaired = checked_sentence(path, where, words, tags)
                counts["repaired"] += repaired
                if words:
                    chunk.append((words, fixed))
            if chunk and (len(chunk) == CHUNK or last):
                encoded = tokenizer([w for w, _ in chunk], is_split_into_words=True, truncation=True, max_length=max_length,
                                    padding="longest", return_tensors="np")
                labels = np.full(encoded["input_ids"].shape, -1, dtype=np.int64)
                lost = np.zeros(len(chunk), dtype=np.int32)
                for row, (words, fixed) in enumerate(chunk):
                    lost[row] = len(words) - tag_first_subtokens(encoded.word_ids(row), fixed, read_id, labels[row])
                _save_chunk(work, chunks, encoded, labels)
                hashes.append(_hashes("\x00".join(words) for words, _ in chunk))
                cut.append(lost)
                widths, chunks = max(widths, encoded["input_ids"].shape[1]), chunks + 1
                progress.update(task, advance=len(chunk))
                chunk = []
                release_freed_memory()
    if not chunks:
        raise DataError(f"{path}: no sentences")
    return hashes, widths, chunks


def _with_last(items: Iterator[Any]) -> Iterator[tuple[bool, Any]]:
    """(is it the last, item) for each item; (True, None) once at the end, so a final partial chunk is flushed."""
    for item in items:
        yield False, item
    yield True, None


def _stored(path: Path, folder: Path, load: Callable[[Path], Any], build: Callable[[], None]) -> Any:
    """`load(folder)`, building the store first when it is absent — or unreadable (damaged by hand, a
    full disk, an older layout): a cache is never worth a failed run."""
    if folder.is_dir():
        try:
            loaded = load(folder)
            say(f"data: {path.name}: reusing its tokens in {folder}")
            return loaded
        except (ValueError, OSError, EOFError, KeyError, TypeError):
            say(f"data: {path.name}: its token store {folder} is unreadable; tokenizing it again")
    build()
    return load(folder)


def _mapped(folder: Path) -> Inputs:
    # copy-on-write: training may not write to the file, and torch wants writable arrays
    return Inputs({name: np.load(folder / f"{name}.npy", mmap_mode="c") for name in _NAMES})


def _key(path: Path, columns: list, tokenizer, max_length: int, encoding: str) -> str:
    try:
        content = sha256_file(path)
    except OSError as exc:  # the source's to fix, not a cache that cannot be written (read_text_file's fallback)
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc}); check the path") from None
    digest = hashlib.sha256(content.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    digest.update(hashlib.sha256(vocabulary.encode()).digest())
    digest.update(json.dumps([*columns, max_length, encoding, type(tokenizer).__name__, _FORMAT]).encode())
    return digest.hexdigest()[:24]


def _build(path: Path, folder: Path, tokenized: Callable[[Path], tuple[list[np.ndarray], int, int]],
           finish: Callable[[Path, np.ndarray], None] | None = None, pads: dict[str, int] | None = None) -> None:
    """`tokenized(work)` writes chunk files (chunkN.<name>.npy, one per input and per entry of
    `pads`) and returns each chunk's row hashes, the widest chunk and the chunk count; the distinct
    rows are then copied into one int64 array per name, padded with 0 (`pads`: another value, such
    as the ignore index of per-token labels); `finish(work, keep)` adds what else the store holds
    (the labels of the kept rows). The store appears only when complete (an interrupted build
    leaves nothing)."""
    pads = {**dict.fromkeys(_NAMES, 0), **(pads or {})}
    with atomic_folder(folder) as work:
        hashes, widths, chunks = tokenized(work)
        every = np.concatenate(hashes)
        _, first = np.unique(every, return_index=True)  # the first row of each distinct text
        keep = np.zeros(len(every), dtype=bool)
        keep[first] = True
        stored = {name: np.lib.format.open_memmap(work / f"{name}.npy", mode="w+", dtype=np.int64, shape=(int(keep.sum()), widths))
                  for name in pads}
        start = row = 0
        for index in range(chunks):
            parts = {name: work / f"chunk{index}.{name}.npy" for name in pads}
            arrays = {name: np.load(file) for name, file in parts.items()}
            kept = keep[start:start + len(arrays["input_ids"])]
            count = int(kept.sum())
            for name, array in arrays.items():
                stored[name][row:row + count] = pads[name]
                stored[name][row:row + count, :array.shape[1]] = array[kept]
            start, row = start + len(kept), row + count
            for file in parts.values():
                file.unlink()
        for array in stored.values():
            array.flush()
        del stored
        if finish is not None:
            finish(work, keep)
    dropped = len(every) - int(keep.sum())
    say(f"data: {path.name}: tokenized {len(every):,} {'sentences' if 'labels' in pads else 'texts'} in {chunks} chunk(s) into {folder}"
        + (f"; dropped {dropped:,} duplicates" if dropped else ""))


def _tokenize_chunks(path: Path, texts: Iterator[str], tokenizer, max_length: int, work: Path, empty: str) -> tuple[list[np.ndarray], int, int]:
    """Each CHUNK of `texts` tokenized into `work`/chunkN.<input>.npy; returns the texts' 8-byte hashes
    per chunk, the widest chunk and the chunk count (none: a DataError, `empty` says why)."""
    from edgekd._progress import bar

    hashes, widths, chunks = [], 0, 0
    with bar() as progress:
        task = progress.add_task(f"tokenizing {path.name}", total=None, info="")
        for chunk in _chunks(texts):
            encoded = tokenizer(chunk, truncation=True, max_length=max_length, padding="longest", return_tensors="np")
            _save_chunk(work, chunks, encoded)
            hashes.append(_hashes(chunk))
            widths, chunks = max(widths, encoded["input_ids"].shape[1]), chunks + 1
            progress.update(task, advance=len(chunk))
            release_freed_memory()
    if not chunks:
        raise DataError(f"{path}: {empty}")
    return hashes, widths, chunks


def _save_chunk(work: Path, number: int, encoded, labels: np.ndarray | None = None) -> None:
    """One tokenized chunk as work/chunkN.<name>.npy (the mask as int8: it is copied into the store's int64)."""
    for name, dtype in (("input_ids", np.int64), ("attention_mask", np.int8)):
        np.save(work / f"chunk{number}.{name}.npy", np.asarray(encoded[name], dtype=dtype))
    if labels is not None:
        np.save(work / f"chunk{number}.labels.npy", labels)


def _hashes(texts: Iterable[str]) -> np.ndarray:
    """An 8-byte hash of each text: the duplicate check, 8 bytes a row."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts], dtype=np.uint64)


def _chunks(texts: Iterator[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
