"""What a quantization-aware training step costs, measured side by side in one process.

One training step (forward and backward, batch B, one thread) of a student several ways,
interleaved so that the machine's load falls on all of them alike:

- the PyTorch student;
- its exported, simplified ONNX graph run op by op in PyTorch without fake quantization (BatchNorm folded);
- the same graph fake-quantized where ONNX Runtime's static QDQ model quantizes, with learned
  activation scales (LSQ: what QAD trains by default), and the same again with every quantizer
  run, even those of values already on their grid;
- the same with the activations' scales frozen at the calibration's (`[qad] learn_scales = false`:
  the same forward values, no step-size gradient);
- both again with PyTorch's own kernels instead of numba's compiled loops (edgekd/qad/loops.py):
  what an install without numba runs, the same numbers;
- both again with each activation quantizer replaced by the least any quantizer that is not fused
  into the operation producing its tensor must do: forwards a copy of the tensor; backwards nothing
  (frozen scales) or, for LSQ, a copy of dY and dY · x summed in one pass (the step size's gradient
  reads both).
  Wrong numbers, a floor: what a faster quantizer of the same design could at best reach. Timed in a
  second round against the PyTorch student again (what else is interleaved moves the ratios).

The student is the recipe's, built with random weights (a step costs what the architecture costs,
whatever the weights) and exported as `edgekd export` exports it; `--run` times a run folder's own.

    python tools/qad_speed.py --student mobilenetv2 --write docs/results/qad-speed-mobilenetv2.md   # the demo recipe's digits
    python tools/qad_speed.py --recipe tools/text.toml --batch 32 --per-tensor --write docs/results/qad-speed-text.md
    python tools/qad_speed.py --run runs/vision/fashion32-seed0 --data npz:fashion32.npz   # a run folder after `edgekd export`
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from _pages import provenance, write_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--recipe", type=Path, help="the recipe whose student is timed (default: the built-in demo recipe)")
    source.add_argument("--run", type=Path, help="a run folder `edgekd export` has written: its own student")
    parser.add_argument("--student", help="a built-in family replacing the recipe's [student] model (its default args)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each (after one warm-up step)")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default: per channel)")
    parser.add_argument("--data", help="the run's data source when its recipe's has moved (vision_table.py's temporary npz, say)")
    parser.add_argument("--write", type=Path, help="also write the table as a results page")
    args = parser.parse_args()
    if args.run and args.student:
        parser.error("--student replaces a recipe's student; a run folder times its own")

    import torch

    from edgekd._progress import set_quiet
    from edgekd.data import load_recipe_data
    from edgekd.export.quantize import scheme_settings
    from edgekd.inputs import as_inputs
    from edgekd.models.call import take, to_tensors, trim
    from edgekd.qad import loops
    from edgekd.qad.graph import FakeQuantGraph
    from edgekd.qad.stage import post_training_plan
    from edgekd.recipe import with_task_models
    from edgekd.targets import QuantizationConfig, Scheme

    began = time.perf_counter()
    set_quiet(True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder).resolve()
        recipe = _recipe(args)
        data = load_recipe_data(dataclasses.replace(recipe.data, source=args.data) if args.data else recipe.data, recipe.task)
        recipe = with_task_models(recipe, data.task)  # the task's built-in student where the recipe names none
        student, simplified = _student(args, recipe, data, work)
        x = as_inputs(data.x_train)
        batch = trim(take(to_tensors(x, torch.device("cpu")), slice(0, args.batch)), x.spec)
        settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(scheme=Scheme.static_qdq, per_channel=not args.per_tensor))
        prepared, _, plan = post_training_plan(simplified, work, settings, data.calibration(64))
        every = FakeQuantGraph(prepared, plan)
        every.already_on_grid = set()  # as before the mirror skipped quantizers of values already on their grid
        default, frozen = FakeQuantGraph(prepared, plan), FakeQuantGraph(prepared, plan, learn_scales=False)
        plain, kernels, floor = contextlib.nullcontext, loops.switched_off, _copies
        models = {"PyTorch student": (student, plain), "ONNX graph, fp32": (FakeQuantGraph(prepared, plan, fake_quant=False), plain),
                  "ONNX graph, fake-quantized, learned scales, every quantizer run": (every, plain),
                  "ONNX graph, fake-quantized, learned scales (QAD's default)": (default, plain),
                  "ONNX graph, fake-quantized, scales frozen (`[qad] learn_scales = false`)": (frozen, plain),
                  "ONNX graph, fake-quantized, learned scales, PyTorch's kernels (no numba)": (default, kernels),
                  "ONNX graph, fake-quantized, scales frozen, PyTorch's kernels (no numba)": (frozen, kernels)}
        floors = {"PyTorch student": (student, plain),
                  "floor: learned scales, each quantizer a copy (backwards a copy of dY and the dot product dY · x)": (default, floor),
                  "floor: scales frozen, each quantizer a copy (backwards nothing)": (frozen, floor)}
        # Two rounds, each against its own PyTorch student: what else runs interleaved moves the ratios (caches, allocator).
        ratios = _timed(models, batch, args.steps)
        ratios |= {name: value for name, value in _timed(floors, batch, args.steps).items() if name not in ratios}
    args_shown = f" {recipe.student.args}" if recipe.student.args else ""
    described = f"`{args.run}`" if args.run else f"{recipe.student.model}{args_shown} on {recipe.data.source}, random weights"
    lines = [f"{described}: one training step (forward and backward) at batch {args.batch}, one thread, median of {args.steps} "
             f"interleaved; {len(plan.activations)} activation and {len(plan.weights)} constant quantizers, "
             f"{'per-tensor' if args.per_tensor else 'per-channel'} weights; {_numba()}.", "",
             "| model | ms per step | × PyTorch student |", "|---|---|---|"]
    lines += [f"| {name} | {milliseconds:.0f} | {ratio:.2f} |" for name, (milliseconds, ratio) in ratios.items()]
    if args.write:
        write_page(args.write, "\n".join(["# A quantization-aware training step — measured", "",
                                          provenance("qad_speed.py", time.perf_counter() - began, []), "", *lines, ""]))
    else:
        print("\n".join(lines))


def _timed(models: dict, batch, steps: int) -> dict[str, tuple[float, float]]:
    """name → (median ms per step, × the PyTorch student's median), the models' steps interleaved."""
    from edgekd.models.call import forward

    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(steps + 1):
        for name, (model, context) in models.items():
            model.train()
            with context():
                start = time.perf_counter()
                forward(model, batch).float().logsumexp(1).sum().backward()
                if step:  # the first step warms up
                    times[name].append(time.perf_counter() - start)
    base = statistics.median(times["PyTorch student"])
    return {name: (statistics.median(values) * 1000, statistics.median(values) / base) for name, values in times.items()}


def _numba() -> str:
    try:
        import numba
    except ImportError:
        return "numba not installed (every row runs PyTorch's kernels)"
    return f"numba {numba.__version__} compiles the loops"


@contextlib.contextmanager
def _copies():
    """Each activation quantizer of FakeQuantGraph replaced by its floor (see the module's docstring);
    the constants' quantization stays."""
    import torch

    from edgekd.qad import graph

    class Copy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, *rest):
            ctx.learned = bool(rest)
            if ctx.learned:
                ctx.save_for_backward(x)
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            if not ctx.learned:
                return grad, None
            return grad.clone(), torch.dot(grad.reshape(-1), ctx.saved_tensors[0].reshape(-1)).reshape(1)

    saved = graph.fixed_fake_quant, graph.learned_fake_quant
    graph.fixed_fake_quant = lambda x, *_: Copy.apply(x)
    graph.learned_fake_quant = lambda x, scale, *_: Copy.apply(x, scale)
    try:
        yield
    finally:
        graph.fixed_fake_quant, graph.learned_fake_quant = saved


def _recipe(args):
    """The run folder's recipe, or the recipe file's (the built-in demo's by default) with `--student`
    replacing its student."""
    from edgekd.recipe import load_recipe
    from edgekd.runfolder import load_run_recipe

    if args.run:
        return load_run_recipe(args.run)
    recipe = load_recipe(args.recipe)
    if args.student:
        recipe = dataclasses.replace(recipe, student=dataclasses.replace(recipe.student, model=args.student, args={}))
    return recipe


def _student(args, recipe, data, work: Path):
    """The PyTorch student and its simplified ONNX file: a run folder's, or the recipe's student
    built with random weights (seed 0) and exported as `edgekd export` does."""
    import torch

    from edgekd.export.stage import export_model
    from edgekd.models.build import build_model, spec_for
    from edgekd.models.checkpoint import load_model
    from edgekd.recipe import recipe_target

    if args.run:
        return load_model(args.run / "student.pt")[0], (args.run / "student.sim.onnx").resolve()
    torch.manual_seed(0)
    student = build_model(spec_for(recipe.student.model, recipe.student.args, data))
    exported = export_model(student.eval(), data.x_test[:64], recipe_target(recipe).export, work, name="student", task=data.task)
    return student, exported.path


if __name__ == "__main__":
    main()
