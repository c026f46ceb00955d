"""Does edgekd's measuring loop add overhead? Its p50 vs a bare InferenceSession.run loop.

Same model, same session, same inputs, same process. The loops alternate in blocks (edgekd,
bare, floor, edgekd, bare, floor, ...) so drift on a shared machine hits all three alike. The
floor is ONNX Runtime's own per-call cost: an Identity model with the same input.

    python tools/bench_overhead.py                       # the demo's int8 student (trained if needed)
    python tools/bench_overhead.py model.onnx --runs 20000
Goal: edgekd / bare ≤ 1.03.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _identity_model(path: Path, shape: list) -> None:
    import onnx
    from onnx import TensorProto, helper

    dims = ["n" if not isinstance(d, int) else d for d in shape]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _bare(session, name, x, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, {name: x})
        times.append(time.perf_counter_ns() - start)
    return times


def _demo_model(work: Path) -> Path:
    from edgekd._progress import set_quiet
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export

    set_quiet(True)
    distill(None, work / "run")
    return Path(export(work / "run").quantized.path)


def main() -> None:
    from edgekd.runtime.session import open_session
    from edgekd.runtime.timing import session_call, time_interleaved
    from edgekd.targets import RuntimeConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=5000, help="timed runs per loop and block")
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        model = args.model or _demo_model(work)
        runtime = RuntimeConfig(intra_op_threads=1)
        session = open_session(model, ["CPUExecutionProvider"], runtime)
        meta = session.get_inputs()[0]
        shape = [1 if not isinstance(d, int) else d for d in meta.shape]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        _identity_model(work / "identity.onnx", meta.shape)
        floor = open_session(work / "identity.onnx", ["CPUExecutionProvider"], runtime)
        edgekd_times, bare_times, floor_times = [], [], []
        call = session_call(session, x, batch=1)
        for _ in range(args.blocks):
            edgekd_times += time_interleaved({"m": call}, warmup=100, runs=args.runs)["m"]
            bare_times += _bare(session, meta.name, x, args.runs)
            floor_times += _bare(floor, "x", x, args.runs)
    p50 = {k: float(np.median(v)) / 1e3 for k, v in (("edgekd", edgekd_times), ("bare", bare_times), ("floor", floor_times))}
    print(f"model: {model.name}; {args.blocks} blocks × {args.runs} runs per loop, batch 1, 1 thread")
    print(f"p50 µs: edgekd loop {p50['edgekd']:.2f}, bare InferenceSession.run loop {p50['bare']:.2f}, identity model (ORT floor) {p50['floor']:.2f}")
    print(f"edgekd / bare = {p50['edgekd'] / p50['bare']:.3f}  (goal ≤ 1.03)")
    print(f"model / ORT floor = {p50['bare'] / p50['floor']:.2f}  (how much of the latency is the model, not the call)")


if __name__ == "__main__":
    main()
