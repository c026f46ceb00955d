"""`edgekd run` end to end, the way a user runs it: a real process, the built-in default."""

import hashlib
import json
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_edgekd_run_default_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = {v["budget"]: v for v in json.loads((out / "bench.json").read_text())["verdicts"]}
    assert all(verdicts[b]["passed"] for b in ("max_size_kb", "max_latency_ms", "max_accuracy_drop", "min_compression"))
    if "max_drop_vs_fp32" in verdicts:  # int8 ships (it was faster on this CPU): judged against fp32 too
        assert re.search(r"PASS: (all 7 budgets|6 of 7 checks) of target x86-cpu met", proc.stdout), proc.stdout
        assert verdicts["max_drop_vs_fp32"]["passed"] and not verdicts["deployed_vs_fp32_latency"]["blocking"]
    else:  # x86-cpu's "fastest" rule shipped the fp32 student, and the report says why
        assert "PASS: all 4 budgets of target x86-cpu met" in proc.stdout and "deployed: fp32 is faster" in proc.stdout, proc.stdout
    assert "test samples:" in proc.stdout and "exact McNemar p =" in proc.stdout

    manifest = json.loads((out / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert set(manifest["stages"]) == {"distill", "export", "bench"}
    assert {"torch", "onnx", "onnxruntime", "onnxsim", "edgekd", "python"} <= set(manifest["versions"])
    assert manifest["recipe"]["data"]["source"] == "digits" and manifest["target"]["name"] == "x86-cpu"

    distilled = json.loads((out / "distill.json").read_text())
    assert distilled["teacher_scores"]["test"] > 0.95
    assert distilled["distilled"]["best"]["test"] > 0.90 and distilled["scratch"]["best"]["test"] > 0.85
    sizes = distilled["split_sizes"]  # the demo: few labels for the students, the rest a transfer set; the teacher has all
    assert sizes["teacher_train"] == sizes["train"] + sizes["unlabeled"] and sizes["train"] < sizes["unlabeled"]
    assert distilled["distilled"]["best"]["test"] > distilled["scratch"]["best"]["test"], "the demo shows what the teacher adds"
    assert 1 <= distilled["distilled"]["best_epoch"] <= distilled["settings"]["epochs"]
    assert distilled["objective"]["terms"][0]["method"] == "kd" and distilled["teacher_cache"].startswith("computed")
    assert len(distilled["history"]["distilled"]) == distilled["settings"]["epochs"]
    report = json.loads((out / "bench.json").read_text())
    assert report["passed"] is True and len(report["variants"]) == (3 if "max_drop_vs_fp32" in verdicts else 2)  # fp32 shipped: no int8 file
    assert not (out / "checkpoints").exists(), "finished runs drop their resume state"


@pytest.mark.slow
def test_run_twice_reuses_the_cached_teacher(tmp_path, tiny_recipe):
    first = subprocess.run([sys.executable, "-m", "edgekd", "--quiet", "run", str(tiny_recipe), "--out", str(tmp_path / "a"), "--json"],
                           capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-m", "edgekd", "run", str(tiny_recipe), "--out", str(tmp_path / "b"), "--json"],
                            capture_output=True, text=True)
    assert first.returncode in (0, 1) and second.returncode in (0, 1), second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert b["distill"]["teachers"][0]["source"].startswith("cache ")
    assert b["distill"]["teacher_cache"].startswith("reused")
    assert a["distill"]["teacher_scores"] == b["distill"]["teacher_scores"]
    assert "reusing the cached teacher" in second.stderr


def test_run_resume_skips_finished_stages(exported_run, tmp_path):
    import shutil

    from edgekd.pipeline import run

    folder = tmp_path / "resumed"
    shutil.copytree(exported_run, folder)
    before = (folder / "student.pt").read_bytes(), (folder / "student.int8.onnx").read_bytes()
    result = run(None, out=folder, resume=True)
    assert ((folder / "student.pt").read_bytes(), (folder / "student.int8.onnx").read_bytes()) == before
    assert result.distill.teacher_scores.test > 0 and result.export.deployed == "student.int8.onnx"
    assert (folder / "bench.json").is_file()


@pytest.mark.parametrize("why", ["int8 misses", "asked"])
def test_qad_that_cannot_run_fails_only_when_asked_for(tmp_path, monkeypatch, why):
    """The default trigger keeps post-training int8 (a warning); a recipe or target that asks for
    quantization-aware distillation gets its one-line error."""
    import edgekd.qad.stage
    from edgekd.errors import QadError
    from edgekd.pipeline import _quantization_aware
    from edgekd.targets import load_target

    def unsupported(*args, **kwargs):
        raise QadError("quantization-aware training cannot run Einsum yet")

    monkeypatch.setattr(edgekd.qad.stage, "quantization_aware", unsupported)
    if why == "asked":
        with pytest.raises(QadError, match="Einsum"):
            _quantization_aware(tmp_path, load_target("x86-cpu"), False, why)
    else:
        assert _quantization_aware(tmp_path, load_target("x86-cpu"), False, why) is None
