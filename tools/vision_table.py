"""Vision models, measured: what each int8 scheme costs and gains at 224×224, and one distillation
at 3×32×32 Fashion-MNIST whose per-tensor int8 student is put through the accuracy-aware exclusion loop.

Part 1 — quantization at 3×224×224 (`--part quant`). The zoo's ResNet-, MobileNetV2- and
MobileNetV3-style nets (default arguments, random initial weights: latency and size do not depend
on training) are exported and simplified, then quantized by edgekd as static QDQ per-channel,
static QDQ per-tensor and dynamic int8, and beside them by a plain ONNX Runtime recipe
(`quant_pre_process` + `quantize_static`, QDQ, per-channel, MinMax). All are calibrated on the
same 256 real Fashion-MNIST training images (padded, upsampled to 224, three channels) and timed
interleaved with the fp32 model in one process: batch 1, one thread, CPU execution provider.
Then `--scheme auto` runs on the fp32 model, and the table says what it deploys.
Goals (the vision issue): the deployed artifact is never slower than fp32; edgekd's static int8 is
within 1.05× of the plain recipe's latency.

Part 2 — distillation (`--part distill`). Fashion-MNIST from Debian's dataset-fashion-mnist
(`apt-get install dataset-fashion-mnist`), 28×28 padded to 32×32 and repeated to three channels;
a stratified subset of the 60,000 training images (`--train`, default 20,000; a validation split is
held out of it) and all 10,000 test images. Teacher: ResNet-style (widths 32/64/128), trained
once (fixed seed, cached). Student: MobileNetV3-Small-style (width 0.5, 256-wide head), T = 4,
kd 0.7 / ce 0.3; its scratch twin has the same initial weights, batches and epochs. Every seed's
student is exported with static QDQ int8 *per-tensor* (the int8-fragile setting) and a 1-point
validation budget: the table shows what the exclusion loop excluded, the accuracy at each step and
the time it took. Part 3 (`--part exclusion`, on part 2's run folders) pushes the loop to work:
a zero-drop budget, so nodes are excluded for as long as int8 is significantly worse than fp32.

    python tools/vision_table.py --out runs/vision       # all parts (about 60 minutes on 2 cores)
    python tools/vision_table.py --part quant --runs 50 # a quick look at part 1
    python tools/vision_table.py --part exclusion --out runs/vision   # part 3 on part 2's run folders
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
FAMILIES = ("resnet", "mobilenetv2", "mobilenetv3")


def fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (uint8, N×28×28) and labels from the Debian package's IDX files."""
    prefix = {"train": "train", "test": "t10k"}[split]
    paths = [FASHION / f"{prefix}-images-idx3-ubyte.gz", FASHION / f"{prefix}-labels-idx1-ubyte.gz"]
    if not all(p.is_file() for p in paths):
        raise SystemExit(f"Fashion-MNIST not found under {FASHION}: apt-get install dataset-fashion-mnist")
    images = np.frombuffer(gzip.open(paths[0]).read(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.open(paths[1]).read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def rgb(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 28×28 → float32 3×size×size: zero-padded to 32×32, upsampled bilinearly when size > 32,
    normalised with Fashion-MNIST's mean and standard deviation, repeated over three channels."""
    import torch

    x = torch.as_tensor(np.pad(images, ((0, 0), (2, 2), (2, 2))), dtype=torch.float32)[:, None] / 255.0
    if size != 32:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.2860) / 0.3530
    return x.repeat(1, 3, 1, 1).numpy()


# ---------------------------------------------------------------- part 1: schemes at 224×224


def quant_part(args) -> None:
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekd.runtime.session import feeds, open_session
    from edgekd._platform import cpu_info
    from edgekd.export.onnx import export_onnx
    from edgekd.export.quantize import quantize_model, time_against_fp32
    from edgekd.export.simplify import simplify
    from edgekd.inputs import as_inputs
    from edgekd.models import ModelSpec, build_model
    from edgekd.targets import QuantizationConfig, RuntimeConfig, Scheme

    train_images, train_labels = fashion("train")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(train_images), 256 + 64, replace=False)
    calibration = rgb(train_images[picked[:256]], 224)
    x_val, y_val = rgb(train_images[picked[256:]], 224), train_labels[picked[256:]]  # auto's accuracy check (random weights)
    info = cpu_info()
    print(f"\n## Part 1: int8 schemes at 3×224×224 — batch 1, one thread, CPU EP, {args.runs} interleaved runs after 20 warm-up")
    print(f"CPU: {info['cpu']} ({info['int8_features']}; int8 dot product: {info['int8_dot_product']})\n")
    print("| net | params | GMACs | variant | MB | size × fp32 | p50 ms [95% CI] | latency × fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    deployed_rows = []
    with tempfile.TemporaryDirectory() as folder:
        for family in FAMILIES:
            work = Path(folder) / family
            work.mkdir()
            torch.manual_seed(0)
            model = build_model(ModelSpec(family, {}, (3, 224, 224), 10)).eval()
            export_onnx(model, calibration[:4], work / "raw.onnx", 18)
            simplify(work / "raw.onnx", work / "fp32.onnx", calibration[:8], 1e-3)
            files = {"fp32": work / "fp32.onnx"}
            began = {}
            for name, cfg in (("edgekd static per-channel", QuantizationConfig(scheme=Scheme.static_qdq, per_channel=True)),
                              ("edgekd static per-tensor", QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False)),
                              ("edgekd dynamic", QuantizationConfig(scheme=Scheme.dynamic, per_channel=False))):
                out = work / name.replace(" ", "_")
                out.mkdir()
                t0 = time.perf_counter()
                result = quantize_model(files["fp32"], out, dataclasses.replace(cfg, max_excluded_nodes=0, max_drop_vs_fp32=1.0), calibration, x_val, y_val)
                began[name] = time.perf_counter() - t0
                files[name] = Path(result.path)
            # The plain recipe, as ONNX Runtime's documentation gives it.
            t0 = time.perf_counter()
            quant_pre_process(str(files["fp32"]), str(work / "plain.pre.onnx"))
            session = open_session(work / "plain.pre.onnx")

            class Reader:
                def __init__(self):
                    self.batches = iter([feeds(session, calibration[i : i + 1]) for i in range(len(calibration))])

                def get_next(self):
                    return next(self.batches, None)

            quantize_static(str(work / "plain.pre.onnx"), str(work / "plain.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
            began["plain ORT recipe (QDQ per-channel MinMax)"] = time.perf_counter() - t0
            files["plain ORT recipe (QDQ per-channel MinMax)"] = work / "plain.int8.onnx"
            variants = {n: p for n, p in files.items() if n != "fp32"}
            stats = time_against_fp32(files["fp32"], variants, as_inputs(calibration), ["CPUExecutionProvider"],
                                      RuntimeConfig(intra_op_threads=1), warmup=20, runs=args.runs)
            params = sum(p.numel() for p in model.parameters())
            from edgekd.runtime.graph import read_profile

            macs = read_profile(files["fp32"]).macs
            for name, path in files.items():
                s = stats[name]
                ci = s.ci95_ms["p50"]
                size = path.stat().st_size
                print(f"| {family} | {params / 1e6:.2f}M | {macs / 1e9:.2f} | {name} | {size / 1e6:.2f} | {size / files['fp32'].stat().st_size:.2f} | "
                      f"{s.p50_ms:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {s.p50_ms / stats['fp32'].p50_ms:.2f} |", flush=True)
            t0 = time.perf_counter()
            (work / "auto").mkdir()
            auto = quantize_model(files["fp32"], work / "auto", QuantizationConfig(scheme=Scheme.auto, max_drop_vs_fp32=1.0, max_excluded_nodes=0),
                            calibration, x_val, y_val, ["CPUExecutionProvider"], RuntimeConfig(intra_op_threads=1))
            kept = next(c for c in auto.candidates if c.kept)
            fp32 = next(c for c in auto.candidates if c.scheme == "none")
            plain = stats["plain ORT recipe (QDQ per-channel MinMax)"].p50_ms
            same = same_graph(files["edgekd static per-channel"], files["plain ORT recipe (QDQ per-channel MinMax)"])
            deployed_rows.append((family, kept.name, kept.p50_ms / fp32.p50_ms, stats["edgekd static per-channel"].p50_ms / plain,
                                  same, time.perf_counter() - t0, [c.name for c in auto.candidates]))
    print("\n| net | auto deploys | its p50 × fp32 (auto's own timing) | edgekd static per-channel p50 × plain recipe | same ops and scales as the plain recipe | auto took | candidates |")
    print("|---|---|---|---|---|---|---|")
    for family, kept, vs_fp32, vs_plain, same, seconds, names in deployed_rows:
        print(f"| {family} | {kept} | {vs_fp32:.2f} | {vs_plain:.3f} | {'yes' if same else 'NO'} | {seconds:.0f} s | {', '.join(names)} |")
    print("\ngoals: deployed never slower than fp32: " + ("met" if all(r[2] <= 1.0 for r in deployed_rows) else "NOT met")
          + "; edgekd static per-channel within 1.05× of the plain recipe: "
          + ("met" if all(r[3] <= 1.05 for r in deployed_rows) else "NOT met")
          + " (where the graphs are the same, the ratio is timing noise)")


def same_graph(a: Path, b: Path) -> bool:
    """The same operators, as many of each, and the same quantization scales: two files ONNX Runtime
    runs alike, so a latency ratio between them is the machine's noise (node names may differ)."""
    import collections

    import onnx
    from onnx import numpy_helper

    def signature(path: Path):
        model = onnx.load(str(path))
        scales = sorted(float(v) for v in (numpy_helper.to_array(i) for i in model.graph.initializer)
                        if v.dtype == np.float32 and v.size == 1 and v.ndim == 0)
        return collections.Counter(n.op_type for n in model.graph.node), np.asarray(scales)

    (ops_a, scales_a), (ops_b, scales_b) = signature(a), signature(b)
    return ops_a == ops_b and scales_a.shape == scales_b.shape and bool(np.allclose(scales_a, scales_b, rtol=1e-6, atol=0))


# ---------------------------------------------------------------- part 2: distillation at 32×32


def _subset(labels: np.ndarray, train: int) -> np.ndarray:
    """The stratified training subset's indices into the 60,000 (fixed: seed 0)."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), train // 10, replace=False) for c in range(10)])


def write_fashion32(folder: Path, train: int) -> Path:
    """The npz edgekd reads: a stratified training subset and the whole test set, 3×32×32."""
    images, labels = fashion("train")
    test_images, test_labels = fashion("test")
    keep = _subset(labels, train)
    path = folder / "fashion32.npz"
    np.savez(path, x_train=rgb(images[keep], 32), y_train=labels[keep], x_test=rgb(test_images, 32), y_test=test_labels)
    return path


def recipe(data: Path, seed: int, epochs: int, teacher_epochs: int) -> dict:
    return {
        "data": {"source": f"npz:{data}", "val_fraction": 0.1},
        "teacher": {"model": "resnet", "args": {"widths": [32, 64, 128]}, "epochs": teacher_epochs, "lr": 3e-3, "seed": 0},
        "student": {"model": "mobilenetv3", "args": {"width": 0.5, "last": 256}},
        "distill": {"epochs": epochs, "batch_size": 128, "lr": 3e-3, "seed": seed, "temperature": 4.0, "kd_weight": 0.7, "ce_weight": 0.3},
    }


def per_tensor_target():
    from edgekd.targets import ExportConfig, QuantizationConfig, RuntimeConfig, Scheme, Target

    return Target(name="fashion32-per-tensor", description="x86 CPU, one thread, static QDQ int8 per-tensor, 1-point validation budget",
                  runtime=RuntimeConfig(intra_op_threads=1), export=ExportConfig(),
                  quantization=QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False, max_drop_vs_fp32=0.01, max_excluded_nodes=8))


def distill_part(args) -> None:
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export
    from edgekd.recipe import recipe_from_dict

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = args.out or Path(folder)
        data = write_fashion32(Path(folder), args.train)
        for seed in args.seeds:
            t0 = time.perf_counter()
            run = root / f"fashion32-seed{seed}"
            result = distill(recipe_from_dict(recipe(data, seed, args.epochs, args.teacher_epochs)), run, force=True)
            trained = time.perf_counter() - t0
            exported = export(run, per_tensor_target())
            rows.append((seed, result, exported, trained))
            q = exported.quantized
            print(f"seed {seed}: teacher {result.teacher_scores.test:.2%}  scratch {result.scratch.best.test:.2%}  "
                  f"distilled {result.distilled.best.test:.2%}  deployed {exported.deployed_test_accuracy:.2%} "
                  f"({len(q.excluded_nodes)} node(s) kept fp32)  {trained:.0f} s training", flush=True)
    first = rows[0][1]
    print(f"\n## Part 2: Fashion-MNIST 3×32×32 — {first.split_sizes['train']:,} train / {first.split_sizes['val']:,} val / "
          f"{first.split_sizes['test']:,} test; {args.epochs} epochs (teacher {args.teacher_epochs}); test top-1 at the best validation epoch\n")

    def summary(values):
        return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}" if len(values) > 1 else f"{values[0]:.2%}"

    print("| model | params | test top-1 |")
    print("|---|---|---|")
    print(f"| teacher: ResNet-style 32/64/128 | {first.teachers[0].parameters:,} | {summary([r[1].teacher_scores.test for r in rows])} |")
    print(f"| student: MobileNetV3-style ×0.5, scratch | {first.student.parameters:,} | {summary([r[1].scratch.best.test for r in rows])} |")
    print(f"| student, distilled | {first.student.parameters:,} | {summary([r[1].distilled.best.test for r in rows])} |")
    print(f"| student, distilled, fp32 in ONNX Runtime | {first.student.parameters:,} | {summary([r[2].fp32_test_accuracy for r in rows])} |")
    print(f"| student, deployed: static int8 per-tensor + exclusions | {first.student.parameters:,} | {summary([r[2].deployed_test_accuracy for r in rows])} |")
    print("\n| seed | distilled vs scratch: only distilled / only scratch right, McNemar p | int8 val drop before → after | "
          "excluded (in the order kept in fp32) | steps: val top-1 | exclusion time |")
    print("|---|---|---|---|---|---|")
    for seed, result, exported, _ in rows:
        q, p = exported.quantized, result.kd_gain_test
        steps = " → ".join(f"{s.val_accuracy:.2%}" for s in q.steps)
        print(f"| {seed} | {p.only_first} / {p.only_second}, p = {p.p_value:.2g} | {q.steps[0].drop:+.2%} (p = {q.steps[0].p_value:.2g}) → "
              f"{q.drop_vs_fp32:+.2%} | {', '.join(q.excluded_nodes) or 'none'} | {steps} | {q.steps[-1].seconds:.0f} s |")


def exclusion_part(args) -> None:
    """The accuracy-aware loop pushed to work: each seed's distilled student (the run folders part 2
    left in --out) quantized per-tensor with a zero-drop budget, so nodes are excluded for as long
    as int8 is *significantly* worse than fp32 on the validation images (paired test), up to 8."""
    import resource

    from edgekd.runtime.metrics import file_top1
    from edgekd.data import load_data
    from edgekd.export.quantize import quantize_model
    from edgekd.targets import QuantizationConfig, Scheme

    if args.out is None:
        raise SystemExit("--part exclusion reads the run folders of --part distill: pass the same --out")
    with tempfile.TemporaryDirectory() as folder:
        source = write_fashion32(Path(folder), args.train)
        data = load_data(f"npz:{source}", val_fraction=0.1)  # the split part 2's recipe made: calibration from its train split
        images, labels = fashion("train")
        unused = np.setdiff1d(np.arange(len(labels)), _subset(labels, args.train))
        x_val, y_val = rgb(images[unused], 32), labels[unused]  # training images no model saw: a large validation set
        print(f"\n## Exclusion at work: per-tensor static int8, max_drop_vs_fp32 = 0 (exclude while the paired drop is significant), "
              f"at most 8 nodes; validation: the {len(y_val):,} Fashion-MNIST training images outside part 2's subset "
              "(a sub-point drop is visible on that many); 256 calibration images\n")
        print("| seed | val top-1 at each step (fp32 → int8 → …) | drop, p at the start → end | nodes kept in fp32 | test top-1 fp32 / int8 / final | time |")
        print("|---|---|---|---|---|---|")
        for seed in args.seeds:
            run = args.out / f"fashion32-seed{seed}"
            work = Path(folder) / f"seed{seed}"
            work.mkdir()
            cfg = QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False, max_drop_vs_fp32=0.0, max_excluded_nodes=8)
            t0 = time.perf_counter()
            result = quantize_model(run / "student.sim.onnx", work, cfg, data.calibration(256, seed=0), x_val, y_val)
            seconds = time.perf_counter() - t0
            first, last = result.steps[0], result.steps[-1]
            raw = QuantizationConfig(scheme=Scheme.static_qdq, per_channel=False, max_excluded_nodes=0)
            (work / "raw").mkdir()
            plain = quantize_model(run / "student.sim.onnx", work / "raw", raw, data.calibration(256, seed=0), x_val, y_val)
            tests = [file_top1(run / "student.sim.onnx", data.x_test, data.y_test), file_top1(plain.path, data.x_test, data.y_test),
                     file_top1(result.path, data.x_test, data.y_test)]
            steps = " → ".join([f"{result.fp32_val_accuracy:.2%}"] + [f"{s.val_accuracy:.2%}" for s in result.steps])
            print(f"| {seed} | {steps} | {first.drop:+.2%} (p = {first.p_value:.2g}) → {last.drop:+.2%} (p = {last.p_value:.2g}) | "
                  f"{', '.join(result.excluded_nodes) or 'none'} | {tests[0]:.2%} / {tests[1]:.2%} / {tests[2]:.2%} | {seconds:.0f} s |", flush=True)
        print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["quant", "distill", "exclusion", "both"], default="both",
                        help="both = quant + distill + exclusion")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per variant in part 1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=20_000, help="training images in part 2 (stratified subset of 60,000)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None, help="keep part 2's run folders here (default: a temporary folder)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    from edgekd._progress import set_quiet

    set_quiet(not args.verbose)
    began = time.perf_counter()
    if args.part in ("quant", "both"):
        quant_part(args)
    if args.part in ("distill", "both"):
        distill_part(args)
    if args.part in ("exclusion", "both") and args.out is not None:
        exclusion_part(args)
    print(f"\n{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
