"""Why the bench times models in blocks, measured: a small model's latency alone, and beside a large
one timed call by call in turn (how edgekd timed until 2026-12-07) or in blocks of runs
(edgekd.runtime.timing.BLOCK, each block opened by an untimed run).

The pairs are those a bench sees: a student next to its teacher. Small: an MLP 128-256-256-2 and
a 2-layer BERT-style student (hidden 128) at sequence length 32; large: a 6 × 1024² MLP (24 MB of
weights) and a 6-layer BERT-style teacher (hidden 384, MiniLM's shape, random weights). fp32 ONNX,
batch 1, one thread, 2,000 timed runs per model.

Writes docs/results/timing-blocks.md (command, date, machine, versions, then the table) and prints it.

    python tools/timing_blocks.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, provenance, write_page

from edgekd.runtime.timing import BLOCK, session_call, summarize, time_interleaved


def _export(model, example, path: Path, names: list[str]) -> Path:
    import torch

    torch.onnx.export(model, example, str(path), input_names=names, dynamo=False)
    return path


def _mlps(folder: Path) -> tuple[Path, Path, dict, dict]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    large = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(1024, 1024), nn.ReLU())])
    return (_export(small, torch.randn(1, 128), folder / "mlp-small.onnx", ["x"]), _export(large, torch.randn(1, 1024), folder / "mlp-large.onnx", ["x"]),
            {"x": np.random.default_rng(0).random((64, 128), dtype=np.float32)}, {"x": np.random.default_rng(0).random((64, 1024), dtype=np.float32)})


def _berts(folder: Path) -> tuple[Path, Path, dict, dict]:
    import torch

    from edgekd.inputs import Inputs
    from edgekd.models import ModelSpec, build_model

    ids = np.random.default_rng(0).integers(1, 30000, size=(64, 32))
    x = Inputs({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    paths = []
    for name, args in (("bert-small", {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512}),
                       ("bert-large", {"layers": 6, "hidden": 384, "heads": 12, "intermediate": 1536})):
        torch.manual_seed(0)
        model = build_model(ModelSpec("transformer", args, (), 2, x.spec, 30522)).eval()
        example = (torch.as_tensor(ids[:1]), torch.as_tensor(np.ones_like(ids[:1])))
        paths.append(_export(model, example, folder / f"{name}.onnx", ["input_ids", "attention_mask"]))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    return paths[0], paths[1], feeds, feeds


def _p50s(small: Path, large: Path, x_small, x_large, runs: int) -> dict[str, float]:
    from edgekd.inputs import Inputs
    from edgekd.runtime.session import open_session
    from edgekd.targets import RuntimeConfig

    sessions = {n: open_session(p, runtime=RuntimeConfig(intra_op_threads=1)) for n, p in (("small", small), ("large", large))}
    call = {"small": session_call(sessions["small"], Inputs(x_small), 1), "large": session_call(sessions["large"], Inputs(x_large), 1)}
    alone = summarize(time_interleaved({"small": call["small"]}, 50, runs)["small"], 1).p50_ms
    in_turn = time_interleaved(call, 50, runs, block=1)
    blocks = time_interleaved(call, 50, runs)
    return {"alone": alone, "in turn": summarize(in_turn["small"], 1).p50_ms, "blocks": summarize(blocks["small"], 1).p50_ms,
            "large in turn": summarize(in_turn["large"], 1).p50_ms, "large blocks": summarize(blocks["large"], 1).p50_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--write", type=Path, default=RESULTS / "timing-blocks.md")
    args = parser.parse_args()
    began = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for what, make in (("MLP 128-256-256-2 beside a 6 × 1024² MLP", _mlps), ("BERT 2 × 128 beside BERT 6 × 384", _berts)):
            p = _p50s(*make(Path(folder)), args.runs)
            rows.append((what, p))
            print(what, p, flush=True)
    lines = [
        "# Timing a small model beside a large one — measured", "",
        provenance("timing_blocks.py", time.perf_counter() - began, []), "",
        f"p50 latency of the small model (fp32 ONNX, batch 1, one thread, {args.runs:,} timed runs) alone, and timed beside the "
        "large model as the bench times a student beside its teacher: *in turn*, one run of each model after the other "
        f"(edgekd until 2026-12-07), or in *blocks* of {BLOCK} runs of one model, each block opened by an untimed run "
        "(edgekd.runtime.timing). In turn, every run of the small model starts with caches the large one has just filled.", "",
        "| small model beside large model | alone p50 ms | in turn p50 ms | × alone | blocks p50 ms | × alone | large model in turn / blocks p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, p in rows:
        lines.append(f"| {what} | {p['alone']:.4f} | {p['in turn']:.4f} | {p['in turn'] / p['alone']:.2f}× | {p['blocks']:.4f} | "
                     f"{p['blocks'] / p['alone']:.2f}× | {p['large in turn']:.4f} / {p['large blocks']:.4f} |")
    write_page(args.write, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
