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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._cache import cache_dir
from edgekd._io import atomic_folder, sha256_file
from edgekd._platform import release_freed_memory
from edgekd._progress import say
from edgekd.data.files import ENCODING_FIX
from edgekd.data.text import json_rows, text_format
from edgekd.errors import DataError
from edgekd.inputs import Inputs

CHUNK = 10_000  # texts tokenized at a time
_FORMAT = 1  # bump when the stored layout changes: older stores are then rebuilt
_NAMES = ("input_ids", "attention_mask")


def stream_texts(path: Path, column: str, encoding: str = "utf-8") -> Iterator[str]:
    """The non-empty `column` of every row of a csv / tsv / jsonl file (optionally .gz / .bz2), one
    row in memory at a time; a bad byte, a line that is not JSON or a missing column is a DataError."""
    path = Path(path)
    opener, kind = text_format(path)
    utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    number = 0
    try:
        with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig" if utf8 else encoding, newline="") as fh:
            if kind == ".jsonl":
                for number, row in json_rows(fh, path):
                    yield from _text_of(row, column, path, number)
            else:
                reader = csv.DictReader(fh, delimiter="\t" if kind == ".tsv" else ",")
                if reader.fieldnames is not None and column not in reader.fieldnames:
                    raise DataError(f"{path}: no column '{column}' (columns: {', '.join(reader.fieldnames)}); set [data] text_column")
                for number, row in enumerate(reader, start=2):
                    yield from _text_of(row, column, path, number)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: near line {number + 1}, a byte is not valid {encoding} text ({exc.reason}); {ENCODING_FIX}") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable {kind.lstrip('.')} file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from None


def _text_of(row: dict[str, Any], column: str, path: Path, number: int) -> Iterator[str]:
    if column not in row:
        raise DataError(f"{path}: line {number} has no '{column}' (it has: {', '.join(map(str, row)) or 'nothing'}); set [data] text_column")
    text = str(row[column] if row[column] is not None else "")
    if text.strip():
        yield text


def tokenized_file(path: Path, column: str, tokenizer, max_length: int, encoding: str = "utf-8", spec: str = "") -> Inputs:
    """Every distinct non-empty text of the file's `column` (first occurrences, in file order),
    tokenized and truncated at `max_length`: int64 `input_ids` and `attention_mask`, padded to the
    longest, as memory-mapped arrays built once in the cache. `spec` names the tokenizer in messages."""
    folder = cache_dir() / "tokens" / _key(Path(path), column, tokenizer, max_length, encoding)
    if not folder.is_dir():
        _build(Path(path), column, tokenizer, max_length, encoding, folder)
    else:
        say(f"data: {Path(path).name}: reusing its tokens in {folder}")
    # copy-on-write: training may not write to the file, and torch wants writable arrays
    return Inputs({name: np.load(folder / f"{name}.npy", mmap_mode="c") for name in _NAMES})


def _key(path: Path, column: str, tokenizer, max_length: int, encoding: str) -> str:
    digest = hashlib.sha256(sha256_file(path).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    digest.update(hashlib.sha256(vocabulary.encode()).digest())
    digest.update(json.dumps([column, max_length, encoding, type(tokenizer).__name__, _FORMAT]).encode())
    return digest.hexdigest()[:24]


def _build(path: Path, column: str, tokenizer, max_length: int, encoding: str, folder: Path) -> None:
    """Tokenize chunk by chunk into chunk files, then copy the distinct rows into one array per
    input; the store appears only when complete (an interrupted build leaves nothing)."""
    with atomic_folder(folder) as work:
        hashes, widths, chunks = _tokenize_chunks(path, column, tokenizer, max_length, encoding, work)
        every = np.concatenate(hashes)
        _, first = np.unique(every, return_index=True)  # the first row of each distinct text
        keep = np.zeros(len(every), dtype=bool)
        keep[first] = True
        stored = {name: np.lib.format.open_memmap(work / f"{name}.npy", mode="w+", dtype=np.int64, shape=(int(keep.sum()), widths))
                  for name in _NAMES}
        start = row = 0
        for index in range(chunks):
            parts = {name: work / f"chunk{index}.{name}.npy" for name in _NAMES}
            arrays = {name: np.load(file) for name, file in parts.items()}
            kept = keep[start:start + len(arrays["input_ids"])]
            count = int(kept.sum())
            for name, array in arrays.items():
                stored[name][row:row + count] = 0
                stored[name][row:row + count, :array.shape[1]] = array[kept]
            start, row = start + len(kept), row + count
            for file in parts.values():
                file.unlink()
        for array in stored.values():
            array.flush()
        del stored
    dropped = len(every) - int(keep.sum())
    say(f"data: {path.name}: tokenized {len(every):,} texts in {chunks} chunk(s) into {folder}"
        + (f"; dropped {dropped:,} duplicate texts" if dropped else ""))


def _tokenize_chunks(path: Path, column: str, tokenizer, max_length: int, encoding: str, work: Path) -> tuple[list[np.ndarray], int, int]:
    """Each CHUNK of texts tokenized into `work`/chunkN.<input>.npy; returns the texts' 8-byte hashes
    per chunk, the widest chunk and the chunk count."""
    from edgekd._progress import bar

    hashes, widths, chunks = [], 0, 0
    with bar() as progress:
        task = progress.add_task(f"tokenizing {path.name}", total=None, info="")
        for texts in _chunks(stream_texts(path, column, encoding)):
            encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="np")
            for name, dtype in (("input_ids", np.int64), ("attention_mask", np.int8)):
                np.save(work / f"chunk{chunks}.{name}.npy", np.asarray(encoded[name], dtype=dtype))
            hashes.append(np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts],
                                   dtype=np.uint64))
            widths, chunks = max(widths, encoded["input_ids"].shape[1]), chunks + 1
            progress.update(task, advance=len(texts))
            release_freed_memory()
    if not chunks:
        raise DataError(f"{path}: no non-empty '{column}' in any row")
    return hashes, widths, chunks


def _chunks(texts: Iterator[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
