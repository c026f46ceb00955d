"""A stage that fails, Ctrl-C included, leaves its folder as it found it, except the complete
checkpoints (and the recipe) that `--resume` continues from."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd import runfolder
from edgekd._io import sha256_file
from edgekd.cli import app
from edgekd.errors import EdgekdError

# With `export_off_by(1e-3)`, every export misses this target's parity (max |Δ| 1e-3 > 1e-4 of logits).
_STRICT_PARITY = 'description = "parity the shifted export misses"\n[export]\nparity_max_abs = 1e-4\nparity_max_rel = 1e-9\n'


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry of the folder, with the sha256 of each file (folders: their own snapshot)."""
    return {p.name: sha256_file(p) if p.is_file() else str(_snapshot(p)) for p in sorted(folder.iterdir())}


def test_rollback_restores_replaced_files_and_removes_new_ones(tmp_path):
    (tmp_path / "kept.txt").write_text("before")
    (tmp_path / "untouched.txt").write_text("same")
    before = _snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt), runfolder.rollback_on_failure(tmp_path, keep=lambda name: name == "checkpoints"):
        (tmp_path / "kept.txt.tmp").write_text("after")
        (tmp_path / "kept.txt.tmp").replace(tmp_path / "kept.txt")  # how every edgekd writer replaces a file
        (tmp_path / "new.onnx").write_bytes(b"half")
        (tmp_path / "sub").mkdir()
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "student.ckpt").write_bytes(b"complete")
        raise KeyboardInterrupt
    after = _snapshot(tmp_path)
    assert after.pop("checkpoints") and after == before


def test_rollback_of_named_outputs_leaves_the_rest_of_the_folder_alone(tmp_path):
    (tmp_path / "bench.json").write_text("old report")
    with pytest.raises(OSError), runfolder.rollback_on_failure(tmp_path, ("bench.json", "bench.md")):
        (tmp_path / "bench.md").write_text("new")
        (tmp_path / "users-own-file.txt").write_text("not ours to remove")
        (tmp_path / "bench.json").unlink()
        raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "users-own-file.txt"]
    assert (tmp_path / "bench.json").read_text() == "old report"


def test_a_failed_export_leaves_the_run_folder_as_it_was(exported_run, tmp_path, export_off_by):
    from edgekd.export.stage import export

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (tmp_path / "strict.toml").write_text(_STRICT_PARITY)
    export_off_by(1e-3)
    before = _snapshot(run)
    with pytest.raises(EdgekdError, match="parity"):
        export(run, tmp_path / "strict.toml")  # fails after teacher.onnx was written again
    assert _snapshot(run) == before


def test_a_failed_first_export_adds_no_file(exported_run, tmp_path, export_off_by):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    manifest = runfolder.load_manifest(run)
    for name in manifest["stages"].pop("export")["files"]:  # back to the folder distill left
        (run / name).unlink()
        manifest["files"].pop(name)
    manifest["stages"].pop("bench", None)
    runfolder.write_json(run / runfolder.MANIFEST, manifest)
    (tmp_path / "strict.toml").write_text(_STRICT_PARITY)
    export_off_by(1e-3)
    before = _snapshot(run)
    result = CliRunner().invoke(app, ["export", str(run), "--target", str(tmp_path / "strict.toml")])
    assert result.exit_code == 2, result.output
    assert _snapshot(run) == before


def test_a_bench_that_fails_while_writing_keeps_the_earlier_reports(exported_run, tmp_path, monkeypatch):
    import edgekd.bench.plot

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "bench.json").write_text('{"earlier": "report"}')
    before = _snapshot(run)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "bench.png"))

    monkeypatch.setattr(edgekd.bench.plot, "write_plot", disk_full)
    result = CliRunner().invoke(app, ["bench", str(run), "--junit", str(tmp_path / "junit.xml")])
    assert result.exit_code == 2 and "No space left on device" in result.stderr, result.output
    assert _snapshot(run) == before and not (tmp_path / "junit.xml").exists()


def test_a_distill_that_crashes_before_any_checkpoint_leaves_no_folder(tiny_recipe, tmp_path, monkeypatch):
    import edgekd.distill.stage

    def crash(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(edgekd.distill.stage, "train_teachers", crash)
    result = CliRunner().invoke(app, ["distill", str(tiny_recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    assert not (tmp_path / "run").exists()


def test_a_distill_that_fails_writing_its_models_keeps_only_what_resume_needs(tiny_recipe, tmp_path, monkeypatch):
    import edgekd.distill.stage

    real = edgekd.distill.stage.save_checkpoint
    calls = []

    def full_after_the_first(*args, **kwargs):
        calls.append(args[-1])
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(edgekd.distill.stage, "save_checkpoint", full_after_the_first)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["distill", str(tiny_recipe), "--out", str(run)])
    assert result.exit_code == 2, result.output
    assert "complete checkpoints are kept: continue with: edgekd distill" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "recipe.json"]  # teacher.pt (written) is gone

    monkeypatch.setattr(edgekd.distill.stage, "save_checkpoint", real)
    resumed = CliRunner().invoke(app, ["distill", str(tiny_recipe), "--resume", "--out", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert (run / "student.pt").is_file() and not (run / "checkpoints").exists()
