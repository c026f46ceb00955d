"""onnxsim, verified: a simplified graph is kept only when it gives the same outputs.

When onnxsim fails or changes the outputs, the unsimplified model is kept and the reason
recorded; simplification is an optimisation, never a reason to ship a different model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._io import atomic_path
from edgekd.runtime.metrics import compare_outputs
from edgekd.runtime.session import open_session, run_batches
from edgekd.errors import first_line


@dataclass(frozen=True)
class SimplifyResult:
    path: str
    applied: bool  # False: the input model was kept as is
    reason: str | None  # why it was not applied
    nodes_before: int
    nodes_after: int
    max_abs: float  # |original − simplified| on the check inputs
    bytes: int


def simplify(source: Path, dest: Path, x_check: np.ndarray, tolerance: float) -> SimplifyResult:
    """Run onnxsim on `source`, write `dest`, and compare outputs on real inputs `x_check`."""
    import onnx
    import onnxsim

    original = onnx.load(str(source))
    before = len(original.graph.node)
    reason = None
    max_abs = 0.0
    with atomic_path(Path(dest)) as tmp:
        try:
            simplified, ok = onnxsim.simplify(original)
            reason = None if ok else "onnxsim's own check failed"
        except Exception as exc:  # onnxsim raises RuntimeError and others from its C++ core
            simplified, reason = None, f"onnxsim failed: {first_line(exc, 300)}"
        if reason is None:
            onnx.save(simplified, str(tmp))
            reference = run_batches(open_session(source), x_check)
            max_abs = compare_outputs(reference, run_batches(open_session(tmp), x_check)).max_abs
            if max_abs > tolerance:
                reason = f"outputs changed by max |Δ| = {max_abs:.3g} (> {tolerance:.3g})"
        if reason is not None:
            shutil.copyfile(source, tmp)
    after = len(onnx.load(str(dest)).graph.node)
    return SimplifyResult(str(dest), reason is None, reason, before, after, max_abs, Path(dest).stat().st_size)
