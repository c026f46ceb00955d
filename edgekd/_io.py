"""Atomic file writes, hashing, and text reads that name the byte a decoder choked on.

Every writer goes to a temporary name in the destination folder, then `os.replace`s it into
place, which is atomic on POSIX and Windows when both names are on the same filesystem. Every
text file edgekd reads (recipes, targets, csv and text data, reports) is decoded by `decode_text`,
so a file in the wrong encoding is one line naming the file, the byte offset and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; artifacts get the usual mode
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `dest`; only if the block succeeds does it take `dest`'s
    place (an older `dest` is renamed aside first, then removed), so `dest` is only ever absent or
    complete — an interrupted build leaves nothing to mistake for a finished one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield work
        old = dest.with_name(f"{work.name}.old")
        if dest.exists():
            os.replace(dest, old)
        os.replace(work, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(dest: Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, paths and numpy scalars into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def write_json(dest: Path, obj: Any) -> None:
    write_text(dest, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


# The fields of stage results that hold a file or folder path (OnnxExport.path, QadVariant.file, ...).
PATH_FIELDS = frozenset({"run_dir", "path", "file", "ort_file", "required_operators"})


def write_portable_json(dest: Path, result: Any) -> None:
    """Write a result as the JSON file `dest`, every path in it relative to dest's folder when the file
    lies inside it (so the folder can move, and a build script reading the JSON from anywhere
    finds the files), absolute otherwise. The object in memory keeps its paths as they were.

    A path field holds an absolute path, a path relative to the working folder ("demo/student.onnx"),
    or a bare file name, which stage results use for the folder's own files."""
    write_json(dest, _portable(to_jsonable(result), Path(dest).parent.resolve()))


def _portable(value: Any, folder: Path, field: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _portable(v, folder, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, folder, field) for v in value]
    if field in PATH_FIELDS and isinstance(value, str) and value and (field == "run_dir" or Path(value).parent != Path(".")):
        return folder_relative(value, folder)
    return value


def folder_relative(path: str | Path, folder: Path) -> str:
    """`path` (absolute, or relative to the working folder) as a JSON file in `folder` records it:
    relative to the folder when inside it, else absolute."""
    resolved, folder = Path(path).resolve(), Path(folder).resolve()
    return (resolved.relative_to(folder).as_posix() or ".") if resolved.is_relative_to(folder) else str(resolved)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decode_text(raw: bytes, path: Path, error: type[EdgekdError], encoding: str = "utf-8", fix: str = "save it as UTF-8") -> str:
    """`raw` decoded as `encoding`; a byte that does not decode raises `error` naming the file,
    its offset and `fix` (a UTF-8 byte-order mark is dropped, as editors on Windows write one)."""
    try:
        return raw.decode("utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: byte {exc.start} (0x{raw[exc.start]:02x}) is not valid {encoding} text; {fix}") from None


def read_text(path: Path, error: type[EdgekdError], what: str, encoding: str = "utf-8", fix: str = "save it as UTF-8") -> str:
    """A whole text file: a missing file, an unreadable one or a bad byte raise `error` in one line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path} (check the path)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return decode_text(raw, path, error, encoding, fix)


def read_json(path: Path, error: type[EdgekdError], what: str, fix: str) -> Any:
    """A JSON file; a missing, undecodable or malformed one raises `error` naming it and `fix`."""
    text = read_text(path, error, what, fix=fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc}); {fix}") from None
