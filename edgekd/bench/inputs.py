"""Inputs for benching a model without data: random tensors shaped like its inputs.

Latency, throughput, size and the graph profile need no labels, as `onnxruntime_perf_test` and
`trtexec` show: a model of any task benches on random inputs. Free dimensions (height, width, a
sequence) take the sizes `--shape NAME=DIMS` (or the target's `[bench] input_shapes`) gives;
metric budgets are then reported as not checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgekd.errors import DataError
from edgekd.inputs import BATCH, Inputs, TensorSpec

_NUMPY = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(int64)": "int64",
          "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def parse_shapes(texts: Sequence[str]) -> dict[str, list[int]]:
    """`--shape x=1x3x640x640` (repeatable) → {"x": [1, 3, 640, 640]}; a bad one is named."""
    shapes: dict[str, list[int]] = {}
    for text in texts:
        name, sep, dims = text.partition("=")
        try:
            values = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            values = []
        if not sep or not name.strip() or not values or min(values) < 1:
            raise DataError(f"--shape {text!r}: write NAME=DIMS with positive sizes, e.g. --shape x=1x3x640x640 (or x=3x640x640 without the batch)")
        shapes[name.strip()] = values
    return shapes


def random_inputs(session, shapes: Mapping[str, Sequence[int]], largest_batch: int) -> tuple[Inputs, str]:
    """Random samples for every input of `session` (normal floats; integer inputs all ones, which
    any token id, mask or index accepts), free dimensions sized by `shapes`: 256 of them, or as
    many as 256 MB hold, but never fewer than the largest batch the bench runs."""
    metas = session.get_inputs()
    unknown = sorted(set(shapes) - {m.name for m in metas})
    if unknown:
        raise DataError(f"--shape names {', '.join(unknown)}, but the model's inputs are {', '.join(m.name for m in metas)}")
    for meta in metas:
        if meta.type not in _NUMPY:
            raise DataError(f"the model's input '{meta.name}' is {meta.type}; pass --data with real inputs")
    spec = tuple(TensorSpec(m.name, _NUMPY[m.type], (BATCH, *_per_sample(m, shapes.get(m.name)))) for m in metas)
    per_sample = sum(np.dtype(s.dtype).itemsize * int(np.prod(s.dims[1:])) for s in spec)
    samples = max(largest_batch, min(256, 2**28 // max(per_sample, 1)))
    rng = np.random.default_rng(0)
    arrays = {s.name: rng.standard_normal((samples, *s.dims[1:])).astype(s.dtype) if s.dtype.startswith("float")
              else np.ones((samples, *s.dims[1:]), s.dtype) for s in spec}
    given = " shaped " + ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in shapes.items()) if shapes else ""
    return Inputs(arrays, spec), f"random inputs{given} (no --data given; metrics not measured)"


def _per_sample(meta, given: Sequence[int] | None) -> tuple[int, ...]:
    """One sample's dims: the model's fixed ones, or `given` (with or without the batch)."""
    declared = list(meta.shape[1:])
    if given is not None:
        if len(given) == len(meta.shape):
            given = given[1:]  # a full shape: the bench chooses its own batches
        if len(given) != len(declared):
            raise DataError(f"--shape {meta.name}: {len(given)} dims, but the input is {meta.shape} "
                            f"({len(declared)} dims besides the batch)")
        clash = [(d, g) for d, g in zip(declared, given) if isinstance(d, int) and d != g]
        if clash:
            raise DataError(f"--shape {meta.name}: the model fixes {clash[0][0]} where the shape gives {clash[0][1]} ({meta.shape})")
        return tuple(int(g) for g in given)
    if any(not isinstance(d, int) for d in declared):
        raise DataError(f"the model's input '{meta.name}' has free dimensions {meta.shape}: give their sizes with "
                        f"--shape {meta.name}=1x{'x'.join(str(d) if isinstance(d, int) else 'N' for d in declared)} "
                        "(or [bench] input_shapes in the target), or pass --data with real inputs")
    return tuple(declared)
