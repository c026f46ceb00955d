"""ONNX Runtime sessions and batched inference, shared by the export and bench stages.

No torch here: a build machine that only benches an ONNX file needs onnxruntime alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import OnnxModelError, TargetError
from edgekd.targets import RuntimeConfig


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def usable_providers(wanted: list[str]) -> tuple[list[str], list[str]]:
    """Split the target's providers into (installed, missing); the first one must be installed.

    A missing preferred provider is an error, never silently replaced by another: a figure
    measured on the CPU must not pass for an NNAPI or CUDA figure.
    """
    have = available_providers()
    usable = [p for p in wanted if p in have]
    missing = [p for p in wanted if p not in have]
    if not wanted or wanted[0] not in have:
        first = wanted[0] if wanted else "(none)"
        raise TargetError(
            f"execution provider {first} is not in this onnxruntime build (available: {', '.join(have)}); "
            f"install the onnxruntime package that has it, run `edgekd bench` on the device, "
            f"or pass --providers to measure with another provider"
        )
    return usable, missing


def open_session(path: Path, providers: list[str] | None = None, runtime: RuntimeConfig | None = None):
    """An InferenceSession with the target's session options (threads, graph optimisation,
    execution mode), and a one-line error for missing, corrupt or unrunnable files."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX file not found: {path} (check the path)")
    runtime = runtime or RuntimeConfig(intra_op_threads=0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = runtime.intra_op_threads
    options.inter_op_num_threads = runtime.inter_op_threads
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[runtime.graph_optimization]
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if runtime.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings would clutter the user's terminal
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind exception types for bad models
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it ({reason}); re-export the model") from None


def input_name(session) -> str:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise OnnxModelError(f"edgekd benches single-input models; this one has {len(inputs)} inputs ({', '.join(i.name for i in inputs)})")
    return inputs[0].name


def fixed_batch(session) -> int | None:
    """The batch size a model was exported with, or None when its batch axis is dynamic."""
    first = session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def run_batches(session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """First output of the model for every row of `x`, run in batches.

    A model with a fixed batch size gets batches of exactly that size; the last one is padded
    by repeating rows, and the padding's outputs are dropped.
    """
    name = input_name(session)
    fixed = fixed_batch(session)
    batch = fixed or batch_size
    outs = []
    try:
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch]
            rows = len(chunk)
            if fixed and rows < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
            outs.append(session.run(None, {name: chunk})[0][:rows])
    except Exception as exc:
        expected = session.get_inputs()[0].shape
        reason = str(exc).strip().splitlines()[0][:200]
        raise OnnxModelError(f"the model expects input {expected} but got {list(x.shape[1:])} per sample ({reason}); use data that fits the model") from None
    return np.concatenate(outs)
