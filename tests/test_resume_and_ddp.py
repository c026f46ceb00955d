"""Real processes: SIGKILL mid-training then --resume gives identical weights; torchrun with 2 CPU
processes (gloo) trains once and writes one set of artifacts."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgekd.models.checkpoint import read_checkpoint

RECIPE = """
[teacher]
model = "cnn"
args = { channels = [8, 16], hidden = 32 }
epochs = 3
[student]
model = "mlp"
args = { hidden = [32], dropout = 0.1 }
[distill]
epochs = 60
"""


def _edgekd(*args):
    return [sys.executable, "-m", "edgekd", "-q", *map(str, args)]


def _same_weights(a, b):
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    subprocess.run(_edgekd("distill", recipe, "--out", tmp_path / "straight"), check=True, capture_output=True)

    victim = tmp_path / "killed"
    proc = subprocess.Popen(_edgekd("distill", recipe, "--out", victim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = victim / "checkpoints" / "distilled.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (victim / "distill.json").exists() and not (victim / "student.pt").exists()
    epochs_done = len(torch.load(checkpoint, weights_only=True)["history"])
    assert 1 <= epochs_done < 60

    resumed = subprocess.run(_edgekd("distill", "--resume", "--out", victim), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("student.last.pt", "student.pt", "student.scratch.pt"):
        assert _same_weights(tmp_path / "straight" / name, victim / name), name


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_one_set_of_artifacts(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.replace("epochs = 60", "epochs = 10").replace("epochs = 3", "epochs = 10"))
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "edgekd", "distill", str(recipe), "--out", str(out), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    result = json.loads(done.stdout[done.stdout.index("{"):])  # rank 0 alone prints the result
    assert done.stdout.count('"run_dir"') == 1
    assert result["teacher_scores"]["test"] > 0.8 and result["scratch"]["best"]["test"] > 0.8 and result["distilled"]["best"]["test"] > 0.8
    files = sorted(p.name for p in out.iterdir())
    assert files == ["distill.json", "manifest.json", "recipe.json", "student.last.pt", "student.pt", "student.scratch.pt", "teacher.pt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(f for f in files if f != "manifest.json")
