"""Named, typed model inputs: the contract every stage shares.

A model declares its inputs as `TensorSpec`s (name, dtype, dims with symbolic `batch` and
`sequence` axes) and a data split holds one array per input name, dtypes kept: an image net is
the one-input case (`input`, float32, (batch, C, H, W)); a BERT classifier the `input_ids` +
`attention_mask` case (int64, (batch, sequence)). Torch-free: export and bench read it too.

Sequence inputs are stored padded to their split's longest row; `Inputs.trimmed()` cuts a batch
to its own longest row, so a batch of short texts costs what short texts cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgekd._io import atomic_path
from edgekd.errors import DataError

BATCH = "batch"
SEQUENCE = "sequence"
DEFAULT_INPUT = "input"  # the name of a single-array source's one input
MASK = "attention_mask"  # marks the real tokens of sequence inputs (1) and the padding (0)
Dim = Union[int, str]


@dataclass(frozen=True)
class TensorSpec:
    name: str  # the model's argument name, and the ONNX input's name
    dtype: str  # numpy dtype name: "float32", "int64", ...
    dims: tuple[Dim, ...]  # with the batch axis first: ("batch", 1, 8, 8) or ("batch", "sequence")

    @property
    def is_sequence(self) -> bool:
        return len(self.dims) > 1 and self.dims[1] == SEQUENCE

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "TensorSpec":
        return TensorSpec(str(data["name"]), str(data["dtype"]), tuple(data["dims"]))


def image_spec(per_sample: tuple[int, ...], name: str = DEFAULT_INPUT) -> tuple[TensorSpec, ...]:
    """The one-input spec of an array source: float32, fixed per-sample dims."""
    return (TensorSpec(name, "float32", (BATCH, *(int(d) for d in per_sample))),)


class Inputs(Mapping):
    """Named arrays that share their first (sample) axis, with the spec that types them.

    `inputs["input_ids"]` is one array; `inputs[3:9]` or `inputs[index_array]` is the same
    samples of every input. A one-input `Inputs` also converts to its array (`np.asarray`).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], spec: tuple[TensorSpec, ...] | None = None) -> None:
        if not arrays:
            raise DataError("a model needs at least one input; got none")
        self._arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
        counts = {k: len(v) if v.ndim else -1 for k, v in self._arrays.items()}
        if len(set(counts.values())) != 1 or -1 in counts.values():
            raise DataError(f"inputs must share their sample axis; got sample counts {counts}")
        self.spec = spec if spec is not None else infer_spec(self._arrays)
        missing = [s.name for s in self.spec if s.name not in self._arrays]
        if missing:
            raise DataError(f"inputs lack {', '.join(missing)} (have {', '.join(self._arrays)})")

    # Mapping: name -> array
    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._arrays[key]
        return Inputs({k: v[key] for k, v in self._arrays.items()}, self.spec)

    def __array__(self, dtype=None, copy=None):
        array = self.single()
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self._arrays.items())
        return f"Inputs({shapes})"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.spec]

    def single(self) -> np.ndarray:
        """The array of a one-input model; image-only code calls this and refuses the rest."""
        if len(self._arrays) != 1:
            raise DataError(f"this step works on one input array, but the data has {len(self._arrays)} ({', '.join(self._arrays)})")
        return next(iter(self._arrays.values()))

    @property
    def one_float_input(self) -> bool:
        """One float input of fixed dims (an image or a table row): what shifts and mixup may transform."""
        return len(self.spec) == 1 and np.issubdtype(np.dtype(self.spec[0].dtype), np.floating) and not self.spec[0].is_sequence

    @property
    def per_sample_shape(self) -> tuple[int, ...]:
        """The first input's fixed dims without the sample axis (an image net's input_shape); () for sequences."""
        first = self.spec[0]
        return () if first.is_sequence else tuple(int(d) for d in first.dims[1:])

    def rows(self, start: int, size: int) -> "Inputs":
        """Exactly `size` samples from `start` on, wrapping round to the first: a full batch from any data."""
        return self[np.arange(start, start + size) % len(self)]

    def sized(self, length: int | None) -> "Inputs":
        """Sequence inputs at a stated `length`, or (None) cut to this batch's longest row."""
        return self.at_length(length) if length else self.trimmed()

    def lengths(self) -> np.ndarray | None:
        """Real tokens per sample (from attention_mask), or None without sequence inputs."""
        if MASK not in self._arrays or not any(s.is_sequence for s in self.spec):
            return None
        mask = self._arrays[MASK]
        used = mask != 0
        return np.where(used.any(axis=1), used.shape[1] - np.argmax(used[:, ::-1], axis=1), 0)

    def trimmed(self) -> "Inputs":
        """The same samples with sequence inputs cut to the longest real row (at least 1 token)."""
        lengths = self.lengths()
        if lengths is None or not len(lengths):
            return self
        return self.at_length(max(1, int(lengths.max())))

    def at_length(self, length: int) -> "Inputs":
        """Sequence inputs cut or zero-padded (mask 0) to exactly `length` tokens."""
        out = {}
        for spec in self.spec:
            array = self._arrays[spec.name]
            if spec.is_sequence:
                if array.shape[1] >= length:
                    array = array[:, :length]
                else:
                    pad = [(0, 0), (0, length - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
                    array = np.pad(array, pad)
            out[spec.name] = array
        return Inputs(out, self.spec)

    def update_digest(self, digest) -> None:
        """Feed names, shapes, dtypes and bytes to a hashlib digest (cache keys, fingerprints)."""
        for name in sorted(self._arrays):
            array = np.ascontiguousarray(self._arrays[name])
            digest.update(name.encode() + str(array.shape).encode() + array.dtype.str.encode())
            digest.update(memoryview(array).cast("B"))  # the array's own bytes: no copy of a memory-mapped set

    def sha256(self) -> str:
        digest = hashlib.sha256()
        self.update_digest(digest)
        return digest.hexdigest()


def infer_spec(arrays: Mapping[str, np.ndarray]) -> tuple[TensorSpec, ...]:
    """Specs from arrays: integer 2-D inputs beside an attention_mask are sequences; the rest fixed."""
    sequence = MASK in arrays
    specs = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if sequence and array.ndim == 2 and np.issubdtype(array.dtype, np.integer):
            dims: tuple[Dim, ...] = (BATCH, SEQUENCE)
        else:
            dims = (BATCH, *(int(d) for d in array.shape[1:]))
        specs.append(TensorSpec(name, array.dtype.name, dims))
    return tuple(specs)


def as_inputs(x: Inputs | np.ndarray | Mapping[str, np.ndarray]) -> Inputs:
    """Accept the one-input case as a bare array (named `input`) or a dict of named arrays."""
    if isinstance(x, Inputs):
        return x
    if isinstance(x, Mapping):
        return Inputs(x)
    return Inputs({DEFAULT_INPUT: np.asarray(x)})



def concat_outputs(chunks: list[np.ndarray]) -> np.ndarray:
    """Outputs of batches that were cut to their own longest sequence, as one array: a per-token
    output (batch, sequence, ...) is zero-padded along its sequence axis to the longest batch's, so
    that token i of every sample lines up with its input (and its label) again."""
    if len(chunks) > 1 and chunks[0].ndim >= 3 and len({c.shape[1] for c in chunks}) > 1:
        longest = max(c.shape[1] for c in chunks)
        chunks = [np.pad(c, [(0, 0), (0, longest - c.shape[1])] + [(0, 0)] * (c.ndim - 2)) for c in chunks]
    return np.concatenate(chunks)


ROWS_CHUNK = 65_536  # rows gathered per step into a mapped rows file


def take_rows(x: Inputs | np.ndarray, index: np.ndarray) -> Inputs | np.ndarray:
    """`x[index]` for splitting data (Inputs or one array). An array mapped whole from one of
    edgekd's on-disk stores (the token store of a big text file) keeps its rows on disk: they are
    gathered, a chunk at a time, into a file beside the store (`rows/`, once per index: a later run
    with the same split maps it again) and mapped in turn, so the splits of a file larger than
    memory cost disk, not memory. Other arrays — and a store whose folder cannot be written — are
    gathered into memory as `x[index]` would."""
    if isinstance(x, Inputs):
        return Inputs({name: _take(array, index) for name, array in x.items()}, x.spec)
    return _take(x, index)


def _take(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    source = _mapped_file(array)
    if source is None:
        return array[index]
    index = np.asarray(index, dtype=np.int64)
    digest = hashlib.sha256(index.tobytes() + repr((array.shape, array.dtype.str)).encode()).hexdigest()[:24]
    return _stored_rows(_rows_path(source, digest), (len(index), *array.shape[1:]), array.dtype,
                        lambda out: _copy_rows(out, 0, array, index), lambda: array[index])


def joined_rows(first: np.ndarray, second: np.ndarray, width: int | None = None) -> np.ndarray:
    """The rows of `first`, then those of `second`; `width`: sequences zero-padded to that many
    tokens (at least either's). Two arrays mapped whole from edgekd's stores are joined into a
    mapped file beside the first (once per pair), as `take_rows` gathers; others in memory."""
    sources = (_mapped_file(first), _mapped_file(second))
    if None in sources:
        return _joined_in_memory(first, second, width)
    key = repr([(str(f), a.shape, a.dtype.str, width) for f, a in zip(sources, (first, second))])
    digest = "join-" + hashlib.sha256(key.encode()).hexdigest()[:24]

    def fill(out: np.ndarray) -> None:
        _copy_rows(out, 0, first, np.arange(len(first)))
        _copy_rows(out, len(first), second, np.arange(len(second)))

    shape = (len(first) + len(second), *((width,) if width is not None else ()), *first.shape[1 + (width is not None):])
    return _stored_rows(_rows_path(sources[0], digest), shape, first.dtype, fill, lambda: _joined_in_memory(first, second, width))


def _joined_in_memory(first: np.ndarray, second: np.ndarray, width: int | None) -> np.ndarray:
    if width is None:
        return np.concatenate([first, second])
    return np.concatenate([np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in (first, second)])


def _mapped_file(array: np.ndarray) -> Path | None:
    """The .npy file `array` is mapped from as a whole (None: an array in memory, or part of a file)."""
    mapped = getattr(array, "base", None)
    whole = (isinstance(mapped, np.memmap) and mapped.filename is not None and array.shape == mapped.shape
             and array.strides == mapped.strides and array.ctypes.data == mapped.ctypes.data)
    return Path(mapped.filename) if whole else None


def _rows_path(source: Path, digest: str) -> Path:
    folder = source.parent if source.parent.name == "rows" else source.parent / "rows"
    return folder / f"{source.stem.split('.')[0]}.{digest}.npy"


def _stored_rows(path: Path, shape: tuple, dtype, fill, in_memory) -> np.ndarray:
    """The array stored at `path` (written by `fill(out)` first if absent), mapped copy-on-write
    (training may not write to the file); `in_memory()` where it cannot be written or read."""
    try:
        if not path.is_file():
            with atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
                fill(out)
                out.flush()
                del out
        return np.asarray(np.load(path, mmap_mode="c"))
    except (OSError, ValueError):  # a read-only or full cache, a damaged rows file: in memory
        return in_memory()


def _copy_rows(out: np.ndarray, at: int, array: np.ndarray, index: np.ndarray) -> None:
    """out[at + i] = array[index[i]], a chunk of ROWS_CHUNK rows at a time; with a wider `out`, the
    rest of each row is zero (sequence padding)."""
    width = array.shape[1] if array.ndim > 1 else None
    for start in range(0, len(index), ROWS_CHUNK):
        rows = array[index[start:start + ROWS_CHUNK]]
        target = out[at + start:at + start + len(rows)]
        if width is not None and out.shape[1] != width:
            target[...] = 0
            target[:, :width] = rows
        else:
            target[...] = rows
