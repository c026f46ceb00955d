"""Child process of edgekd.bench.memory: run by path so it imports numpy and onnxruntime only.

Its inputs are a real batch that the parent's feeds builder wrote to an .npz file; without one
(a direct call) it makes inputs of the declared types.

Prints one JSON line: the resident set before the session, and its peak while loading and
running it. On Linux the peak counter is reset after the imports (/proc/self/clear_refs), so
import-time spikes do not hide the session's own cost.
"""

import json
import resource
import sys

import numpy as np
import onnxruntime as ort


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def _feed(session, batch: int, length: int) -> dict:
    """Inputs of the declared types: the batch axis gets `batch`, other free dims `length`;
    integer inputs (token ids, masks) are ones: valid ids and a full attention mask."""
    rng = np.random.default_rng(0)
    feed = {}
    for meta in session.get_inputs():
        shape = [d if isinstance(d, int) else (batch if i == 0 else length) for i, d in enumerate(meta.shape)]
        dtype = _TYPES.get(meta.type, np.float32)
        feed[meta.name] = rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating) else np.ones(shape, dtype)
    return feed


def main(path: str, providers: str, batch: int, runs: int, length: int, feed_file: str = "") -> None:
    given = {}
    if feed_file:  # a real batch from edgekd's feeds builder, loaded before the baseline is taken
        with np.load(feed_file, allow_pickle=False) as archive:
            given = {name: archive[name] for name in archive.files}
    reset = _reset_peak()
    baseline = _status_mb("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    session = ort.InferenceSession(path, providers=providers.split(","))
    feed = given or _feed(session, batch, length)
    for _ in range(runs):
        session.run(None, feed)
    peak = (_status_mb("VmHWM") if reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "growth_mb": max(0.0, peak - baseline)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 128,
         sys.argv[6] if len(sys.argv) > 6 else "")
