"""The device install, measured: a fresh virtual environment, `pip install edgekd` (the core, no
extras), its size on disk by distribution, and a bench of an ONNX file in it (time to the verdict).

Goal (issue 29): the core environment ≤ 250 MB. pip takes the packages from its configured indexes
(this machine's are on disk). Writes docs/results/install-size.md and prints it.

    python tools/install_size.py                 # a few minutes: pip builds the venv from scratch
    python tools/install_size.py --extra train   # the same for an extra, for comparison (not written)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, provenance, write_page

ROOT = Path(__file__).resolve().parents[1]
GOAL_MB = 250


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", help="measure edgekd[EXTRA] instead of the core (printed, not written)")
    parser.add_argument("--write", type=Path, default=RESULTS / "install-size.md")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        spec = f"{ROOT}[{args.extra}]" if args.extra else str(ROOT)
        extra = ["torch==2.13.0"] if args.extra else []
        subprocess.run([str(python), "-m", "pip", "install", "-q", *extra, spec], check=True)
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        baseline = {"pip", "setuptools", "_distutils_hack", "distutils-precedence.pth", "pkg_resources"}
        by_top: dict[str, int] = {}
        for entry in site.iterdir():
            name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
            if name in baseline or entry.name.startswith(("pip-", "setuptools-")):
                continue
            by_top[name] = by_top.get(name, 0) + (_size(entry) if entry.is_dir() else entry.stat().st_size)
        total = sum(by_top.values())
        imports = {name: subprocess.run([str(python), "-c", f"import {name}"], capture_output=True).returncode == 0
                   for name in ("torch", "sklearn", "scipy", "matplotlib")}
        bench_seconds, verdict = _bench(python, Path(folder))
    seconds = time.perf_counter() - began
    largest = sorted(by_top.items(), key=lambda kv: -kv[1])[:8]
    what = f"edgekd[{args.extra}]" if args.extra else "edgekd (core)"
    lines = [
        "# The device install", "",
        provenance("install_size.py", seconds, []), "",
        f"`pip install {'torch==2.13.0 ' if args.extra else ''}{what}` into a fresh virtual environment: "
        f"**{total / 1e6:.0f} MB** of installed packages (pip and setuptools, which every venv has, left out); "
        f"goal ≤ {GOAL_MB} MB: **{'met' if total / 1e6 <= GOAL_MB else 'NOT met'}**.", "",
        "| package (top-level folder) | MB |", "|---|---|",
        *(f"| {name} | {size / 1e6:.1f} |" for name, size in largest), "",
        "Importable in it: " + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in imports.items()) + ".", "",
        f"`edgekd bench model.onnx --data npz:test.npz` in it (a 64-16-10 MLP, 200 test rows): {verdict}, "
        f"{bench_seconds:.1f} s from the command to the verdict (no bench.png without matplotlib; the line says so).",
    ]
    page = "\n".join(lines) + "\n"
    if args.extra:
        print(page)
    else:
        write_page(args.write, page)


def _bench(python: Path, folder: Path) -> tuple[float, str]:
    """An ONNX MLP built with the onnx helper (no torch here) benched on generated test data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(64, 16)).astype(np.float32), rng.normal(size=(16, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"])], "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, folder / "model.onnx")
    x = rng.normal(size=(200, 64)).astype(np.float32)
    np.savez(folder / "test.npz", x_test=x, y_test=(x @ w1).clip(0).dot(w2).argmax(1))
    began = time.perf_counter()
    done = subprocess.run([str(python), "-m", "edgekd", "bench", str(folder / "model.onnx"), "--data", f"npz:{folder / 'test.npz'}",
                           "--target", "x86-cpu"], capture_output=True, text=True, cwd=folder)
    spent = time.perf_counter() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"bench failed in the core venv (exit {done.returncode}): {done.stderr[-800:]}")
    return spent, f"exit {done.returncode} ({'PASS' if done.returncode == 0 else 'budget missed'})"


if __name__ == "__main__":
    main()
