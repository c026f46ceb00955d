"""Child process of edgekd.bench.memory: run by path so it imports numpy and onnxruntime only.

Its inputs are a real batch that the parent's feeds builder wrote to an .npz file.

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


def main(path: str, providers: str, feed_file: str, runs: int) -> None:
    with np.load(feed_file, allow_pickle=False) as archive:  # loaded before the baseline is taken
        feed = {name: archive[name] for name in archive.files}
    reset = _reset_peak()
    baseline = _status_mb("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    session = ort.InferenceSession(path, providers=providers.split(","))
    for _ in range(runs):
        session.run(None, feed)
    peak = (_status_mb("VmHWM") if reset else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "growth_mb": max(0.0, peak - baseline)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
