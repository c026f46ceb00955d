"""The run folder: every artifact of a run plus `manifest.json` describing each one.

The manifest records which stage wrote each file, its sha256 and size, the recipe and target
used, and the versions of the libraries involved, so any stage can start from a folder an earlier
stage left, and can tell when an artifact was changed behind its back.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from edgekd._config import validate
from edgekd._io import read_json as _read_json
from edgekd._io import sha256_file, to_jsonable, write_json, write_portable_json
from edgekd.errors import RunFolderError
from edgekd.recipe import Recipe, recipe_from_dict

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
# What the stages leave in a run folder, named once here: each stage writes its own and reads the earlier ones'.
DISTILL_RESULT = "distill.json"
LABELS = "labels.json"  # label names by class index, for sources that name their labels
EXPORT_RESULT = "export.json"
QAD_RESULT = "qad.json"
TEACHER_ONNX = "teacher.onnx"
STUDENT_ONNX = "student.onnx"
STUDENT_SIMPLIFIED = "student.sim.onnx"
LOCK = ".edgekd.lock"
CHECKPOINTS = "checkpoints"  # epoch checkpoints of unfinished training: what --resume continues from
_HELD: set[str] = set()  # run folders this process holds the lock of (nested holds pass through)
SCHEMA_VERSION = 1
T = TypeVar("T")
_PACKAGES = ("edgekd", "torch", "onnx", "onnxruntime", "onnxsim", "numpy", "scikit-learn")


@contextlib.contextmanager
def locked(run_dir: Path, create: bool = False):
    """Only one edgekd process writes a run folder at a time: a second one (two `edgekd run --out X`
    at once) gets a one-line error instead of interleaving files. An advisory lock (flock) on
    `.edgekd.lock` in the folder, released when the stage ends or the process dies; re-entrant
    within one process (`edgekd run` holds it across distill, export and bench). A folder that does
    not exist is created only with `create` (distill); a folder that is not a run folder (no
    manifest) gets no lock file: the stage reports what it lacks."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the folder is not locked there
        fcntl = None
    if fcntl is None or not (create or (run_dir / MANIFEST).is_file()):  # only run folders get a lock file
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(run_dir / LOCK, run_dir, fcntl)
    except BaseException:
        _remove_if_empty(run_dir, created)
        raise
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir / LOCK)  # while still locked: the folder is left as it was
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        _remove_if_empty(run_dir, created)  # a run that failed before writing anything leaves no folder


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        with contextlib.suppress(OSError):  # not empty (or another process is in it): it stays
            folder.rmdir()


@contextlib.contextmanager
def rollback_on_failure(folder: Path, names: Collection[str] | None = None, keep: Callable[[str], bool] = lambda name: False):
    """On any failure, Ctrl-C included, put `folder` back as the stage found it: entries the stage
    added are removed and files it replaced get their earlier contents back, except what `keep`
    names (a resumable checkpoint). `names` limits this to those entries (a bench writing into a
    folder of the user's); None means the whole folder (a run folder the stage holds the lock of).

    Every writer replaces a file by renaming a new one onto it, so a hard link taken on entry keeps
    the earlier contents at no cost (a copy where the file system has no hard links)."""
    folder = Path(folder)
    if names is None and not folder.is_dir():  # no run folder yet: the stage itself says so
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    backup = Path(tempfile.mkdtemp(prefix=".edgekd-rollback-", dir=folder))
    watched = (lambda name: name in names) if names is not None else (lambda name: name != backup.name and name != LOCK)
    before = {p.name for p in folder.iterdir() if watched(p.name)}
    failed = False
    try:
        for name in before:
            path = folder / name
            if path.is_file() and not path.is_symlink():
                try:
                    os.link(path, backup / name)
                except OSError:
                    shutil.copy2(path, backup / name)
        yield
    except BaseException:
        failed = True
        for path in folder.iterdir():
            if watched(path.name) and path.name not in before and not keep(path.name):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for saved in backup.iterdir():
            os.replace(saved, folder / saved.name)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
        if failed:
            _remove_if_empty(folder, created)


def holds_resume_state(run_dir: Path) -> bool:
    """The folder holds something --resume continues from: checkpoints, or finished stages."""
    return (Path(run_dir) / CHECKPOINTS).is_dir() or (Path(run_dir) / MANIFEST).is_file()


def _acquire(path: Path, run_dir: Path, fcntl) -> int:
    """Lock `path`, retrying when the file was removed by its previous holder between our open and
    our lock (then our lock is on a file nobody else will open)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"{run_dir} is being written by another edgekd process (pid {holder}); "
                                 "wait for it to finish, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries behind the artifacts, read without importing them."""
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_result(folder: Path, name: str, result: Any) -> None:
    """Write a stage result as `folder/name`, its paths relative to the folder (`_io.write_portable_json`)."""
    write_portable_json(Path(folder) / name, result)


def read_json(path: Path) -> Any:
    """A JSON file of a run folder; a damaged one is a one-line RunFolderError naming it."""
    return _read_json(Path(path), RunFolderError, "run folder file", "the run folder is damaged — rerun the stage that wrote it")


def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "files": {}, "stages": {}}
    return read_json(path)


def stage_files(run_dir: Path, stage: str) -> list[str]:
    """The files a finished stage recorded (none when it has not run)."""
    return load_manifest(run_dir).get("stages", {}).get(stage, {}).get("files", [])


def record(run_dir: Path, stage: str, files: list[str], **context: Any) -> None:
    """Add `files` (names inside run_dir) as written by `stage`; `context` sets recipe/target."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["versions"] = versions()
    for key, value in context.items():
        manifest[key] = to_jsonable(value)
    for name in files:
        path = run_dir / name
        manifest["files"][name] = {"stage": stage, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest.setdefault("stages", {})[stage] = {"finished": now, "files": files}
    write_json(run_dir / MANIFEST, manifest)


def refresh(run_dir: Path, name: str) -> None:
    """A recorded file rewritten in place (a tool editing a copied run's recipe): its manifest hash
    follows it, and the stage that wrote it keeps its list of files (`record` would replace it)."""
    manifest = load_manifest(run_dir)
    path = Path(run_dir) / name
    if name not in manifest["files"] or not path.is_file():
        raise RunFolderError(f"{run_dir} has no recorded {name} to refresh; only a file a stage wrote can be")
    manifest["files"][name].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    write_json(Path(run_dir) / MANIFEST, manifest)


def artifact(run_dir: Path, name: str, needed_by: str) -> Path:
    """Path of an artifact an earlier stage wrote, checked against the manifest's sha256."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder not found: {run_dir} (run `edgekd distill --out {run_dir}` first)")
    path = run_dir / name
    entry = load_manifest(run_dir)["files"].get(name)
    if not path.is_file() or entry is None:
        raise RunFolderError(f"{run_dir} has no {name}, which {needed_by} needs; run the earlier stage into this folder first")
    if sha256_file(path) != entry["sha256"]:
        raise RunFolderError(f"{path} changed since the {entry['stage']} stage wrote it (sha256 differs); rerun that stage")
    return path


def read_result(run_dir: Path, name: str, cls: type[T], needed_by: str) -> T:
    """An earlier stage's typed result, read back from its JSON in the run folder (hash-checked).

    A result written by a newer edgekd (a higher `schema_version` than `cls` has) is refused:
    its fields may mean something this version cannot know. An older one is read through the
    class's `upgrade(data)` where the layout changed."""
    path = artifact(run_dir, name, needed_by)
    data = read_json(path)
    current = cls.__dataclass_fields__["schema_version"].default
    found = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(found, int) or isinstance(found, bool) or found > current:
        raise RunFolderError(f"{path}: {cls.__name__} schema_version {found!r}, but this edgekd reads versions up to {current}; "
                             "rerun the stage that wrote it with this edgekd, or upgrade edgekd")
    if found < current and hasattr(cls, "upgrade"):  # an older result: its class knows how to read it
        data = cls.upgrade(data)
    return validate(cls, data, f"{path}: not a {cls.__name__}, the run folder is damaged (rerun the stage that wrote it)", RunFolderError)


def load_run_recipe(run_dir: Path) -> Recipe:
    """The recipe a run folder was made with (written by the distill stage)."""
    path = Path(run_dir) / RECIPE
    if not path.is_file():
        raise RunFolderError(f"{run_dir} has no {RECIPE}; it is not an edgekd run folder (run `edgekd distill --out {run_dir}` first)")
    return recipe_from_dict(read_json(path), str(path))
