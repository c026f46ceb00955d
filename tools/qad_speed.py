"""What a quantization-aware training step costs, measured side by side in one process.

One training step (forward and backward, batch B, one thread) of an exported run's student five
ways, interleaved so that the machine's load falls on all of them alike:

- the PyTorch student as distillation trained it (student.pt);
- the prepared ONNX graph run op by op in PyTorch without fake quantization (BatchNorm folded);
- the same graph fake-quantized where ONNX Runtime's static QDQ model quantizes (what QAD trains),
  and the same again with every quantizer run, even those of values already on their grid;
- the same with the activations' scales frozen at the calibration's (`[qad] learn_scales = false`:
  PyTorch's fixed-scale fake quantizer, the same forward, no step-size gradient).

    python tools/qad_speed.py --run runs/vision/fashion32-seed0 --data npz:fashion32.npz   # any run folder after `edgekd export`
    python tools/qad_speed.py --run runs/text/text-seed0 --batch 32 --per-tensor
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder `edgekd export` has written")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each (after one warm-up step)")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default: per channel)")
    parser.add_argument("--data", help="the run's data source when its recipe's has moved (vision_table.py's temporary npz, say)")
    args = parser.parse_args()

    import torch

    from edgekd._progress import set_quiet
    from edgekd.data import load_recipe_data
    from edgekd.export.quantize import scheme_settings
    from edgekd.inputs import as_inputs
    from edgekd.models.call import forward, take, to_tensors, trim
    from edgekd.models.checkpoint import load_model
    from edgekd.qad.graph import FakeQuantGraph
    from edgekd.qad.stage import post_training_plan
    from edgekd.runfolder import load_run_recipe
    from edgekd.targets import QuantizationConfig, Scheme

    set_quiet(True)
    torch.set_num_threads(1)
    recipe = load_run_recipe(args.run).data
    data = load_recipe_data(dataclasses.replace(recipe, source=args.data) if args.data else recipe)
    x = as_inputs(data.x_train)
    batch = trim(take(to_tensors(x, torch.device("cpu")), slice(0, args.batch)), x.spec)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder).resolve()
        settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(scheme=Scheme.static_qdq, per_channel=not args.per_tensor))
        prepared, _, plan = post_training_plan((args.run / "student.sim.onnx").resolve(), work, settings, data.calibration(64))
        student, _ = load_model(args.run / "student.pt")
        every = FakeQuantGraph(prepared, plan)
        every.already_on_grid = set()  # as before the mirror skipped quantizers of values already on their grid
        models = {"PyTorch student": student, "ONNX graph, fp32": FakeQuantGraph(prepared, plan, fake_quant=False),
                  "ONNX graph, fake-quantized, every quantizer run": every,
                  "ONNX graph, fake-quantized (QAD)": FakeQuantGraph(prepared, plan),
                  "ONNX graph, fake-quantized, scales frozen": FakeQuantGraph(prepared, plan, learn_scales=False)}
        times: dict[str, list[float]] = {name: [] for name in models}
        for step in range(args.steps + 1):
            for name, model in models.items():
                model.train()
                began = time.perf_counter()
                forward(model, batch).float().logsumexp(1).sum().backward()
                if step:  # the first step warms up
                    times[name].append(time.perf_counter() - began)
    base = statistics.median(times["PyTorch student"])
    print(f"{args.run}: one training step at batch {args.batch}, one thread, median of {args.steps} interleaved; "
          f"{len(plan.activations)} activation and {len(plan.weights)} constant quantizers")
    print("| model | ms per step | × PyTorch student |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1000:.0f} | {statistics.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
