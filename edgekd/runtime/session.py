"""ONNX Runtime sessions, feeds and batched inference, shared by the export and bench stages.

No torch here: a build machine that only benches an ONNX file needs onnxruntime alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekd.errors import DataError, OnnxModelError, TargetError, first_line
from edgekd.inputs import Inputs, as_inputs, concat_outputs
from edgekd.targets import RuntimeConfig, provider_names_problem


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def usable_providers(wanted: list[str]) -> tuple[list[str], list[str]]:
    """Split the target's providers into (installed, missing); the first one must be installed.

    A missing preferred provider is an error, never silently replaced by another: a figure
    measured on the CPU must not pass for an NNAPI or CUDA figure.
    """
    if not wanted:
        raise TargetError("no execution provider given; name at least one, in preference order (e.g. CPUExecutionProvider)")
    problem = provider_names_problem(wanted)
    if problem:
        raise TargetError(problem)
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
        chosen = providers or ["CPUExecutionProvider"]
        return ort.InferenceSession(str(path), options, providers=chosen,
                                    provider_options=[dict(runtime.provider_options.get(p, {})) for p in chosen])
    except Exception as exc:  # ORT raises its own pybind exception types for bad models
        reason = first_line(exc, 300)
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it ({reason}); re-export the model") from None


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def feeds(session, inputs: Inputs | np.ndarray) -> dict[str, np.ndarray]:
    """The one place arrays become an ONNX Runtime feed: by name, in the dtype the model declares.

    A model with one input takes a one-input source whatever the names; `token_type_ids` that the
    data lacks is all zeros (one segment), as BERT tokenizers give for a single text.
    """
    inputs = as_inputs(inputs)
    metas = session.get_inputs()
    fixed_length = next((m.shape[1] for m in metas if len(m.shape) == 2 and isinstance(m.shape[1], int)), None)
    if fixed_length is not None and any(s.is_sequence for s in inputs.spec):
        inputs = inputs.at_length(fixed_length)  # a model exported with a fixed sequence length
    if len(metas) == 1 and len(inputs.names) == 1:
        arrays = {metas[0].name: inputs.single()}
    else:
        arrays = dict(inputs.items())
    out = {}
    for meta in metas:
        array = arrays.get(meta.name)
        if array is None and meta.name == "token_type_ids" and "input_ids" in arrays:
            array = np.zeros_like(arrays["input_ids"])
        if array is None:
            raise OnnxModelError(f"the model needs input '{meta.name}' but the data has only {', '.join(arrays)}; "
                                 f"give data with the model's inputs ({', '.join(m.name for m in metas)})")
        out[meta.name] = np.ascontiguousarray(_cast_without_loss(array, _ORT_TYPES.get(meta.type, array.dtype), meta.name))
    return out


def _cast_without_loss(array: np.ndarray, dtype, name: str) -> np.ndarray:
    """`array` in the model's dtype; data that would change in the cast (fractions or NaN into an
    integer input, values beyond the input type's range) is refused rather than silently scored.
    Float to a narrower float (float64 → float32) is a rounding a model is expected to take."""
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    lossy = None
    if dtype.kind in "iub" and array.dtype.kind in "fc":
        flat = array.ravel()
        changed = flat[~np.isfinite(flat) | (flat != np.round(flat))]
        if changed.size:
            lossy = f"holds fractions such as {changed[0]:g}" if np.isfinite(changed[0]) else f"holds {changed[0]}"
    if lossy is None and dtype.kind in "iu" and array.size and array.dtype.kind in "iufb":
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
        if array.min() < low or array.max() > high:
            lossy = f"holds values outside {dtype}'s range {low}..{high}"
    if lossy is None and dtype.kind == "b" and array.dtype.kind != "b" and not np.isin(array, (0, 1)).all():
        lossy = "holds values other than 0 and 1"
    if lossy is not None:
        raise DataError(f"input '{name}': the model takes {dtype} but the data is {array.dtype} and {lossy}, which the cast would change; "
                        f"give data of the model's input type (e.g. token ids as integers), or bench the model this data was made for")
    return array.astype(dtype, copy=False)


def fixed_batch(session) -> int | None:
    """The batch size a model was exported with, or None when its batch axis is dynamic."""
    first = session.get_inputs()[0].shape[0]
    return first if isinstance(first, int) else None


def run_batches(session, x: Inputs | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """First output of the model for every sample of `x`, run in batches (see `run_batch_outputs`)."""
    return concat_outputs(list(run_batch_outputs(session, x, batch_size)))  # per-token outputs padded back to the longest


def run_batch_outputs(session, x: Inputs | np.ndarray, batch_size: int = 256) -> Iterator[np.ndarray]:
    """First output of the model for each batch of `x`, in order.

    Each batch's sequence inputs are cut to its own longest row. A model with a fixed batch size
    gets batches of exactly that size; the last one is padded by repeating rows, and the
    padding's outputs are dropped.
    """
    x = as_inputs(x)
    fixed = fixed_batch(session)
    batch = fixed or batch_size
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch].trimmed()
        rows = len(chunk)
        if fixed and rows < batch:
            chunk = chunk[np.concatenate([np.arange(rows), np.full(batch - rows, rows - 1)])]
        try:
            output = session.run(None, feeds(session, chunk))[0][:rows]
        except (OnnxModelError, DataError):
            raise
        except Exception as exc:
            expected = ", ".join(f"{m.name} {m.shape}" for m in session.get_inputs())
            given = ", ".join(f"{k} {list(v.shape[1:])}" for k, v in x.items())
            reason = first_line(exc)
            raise OnnxModelError(f"the model expects inputs {expected} but got {given} per sample ({reason}); use data that fits the model") from None
        yield output
