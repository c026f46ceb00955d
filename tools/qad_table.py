"""Quantization-aware distillation, measured: what fine-tuning through the int8 model wins back.

On the run folders `tools/vision_table.py --part distill --out DIR` leaves (a MobileNetV3-style
student distilled from a ResNet-style teacher on 3×32×32 Fashion-MNIST, one folder per seed), each
seed's student is deployed five ways under static QDQ int8 *per-tensor* (the int8-fragile setting):

- fp32 student (the reference of every drop);
- post-training int8 (ORT's quant_pre_process + quantize_static, 256 calibration images);
- post-training int8 with exclusions (max_drop_vs_fp32 = 0: nodes kept in fp32 while the paired
  drop on the 40,000 unused training images is significant, up to 8);
- quantization-aware training on labels alone (the same int8 model, fine-tuned, no teacher);
- quantization-aware distillation (the same, against the fp32 teacher: kd 0.7 / ce 0.3, T = 4).

Test top-1 on the 10,000 test images with the paired drop against the fp32 student, size, and p50
latency at batch 1 on one thread, every file timed interleaved with the fp32 model in one process.
Each run folder is copied first: the originals are not changed.

    python tools/vision_table.py --part distill --out runs/vision   # the run folders (≈12 min per seed)
    python tools/qad_table.py --out runs/vision                      # this table (≈5 min per seed)

Goal (the QAD issue): quantization-aware distillation within 0.5 points of the fp32 student at the
latency of the fully quantized model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vision_table import _subset, fashion, per_tensor_target, rgb, write_fashion32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the --out of `tools/vision_table.py --part distill`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=20_000, help="as given to vision_table.py")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each quantization-aware phase")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model")
    args = parser.parse_args()

    import dataclasses

    from edgekd._io import sha256_file
    from edgekd._progress import set_quiet
    from edgekd.bench.accuracy import file_correct
    from edgekd.data import load_data
    from edgekd.export.quantize import quantize, time_against_fp32
    from edgekd.paired import paired_drop
    from edgekd.qad.stage import quantization_aware
    from edgekd.targets import RuntimeConfig

    set_quiet(True)
    target = per_tensor_target()
    rows: dict[str, list[tuple[float, float, float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        npz = write_fashion32(Path(folder), args.train)
        data = load_data(f"npz:{npz}", val_fraction=0.1)
        images, labels = fashion("train")
        unused = np.setdiff1d(np.arange(len(labels)), _subset(labels, args.train))
        x_val, y_val = rgb(images[unused], 32), labels[unused]
        print(f"## Quantization-aware distillation: static QDQ int8 per-tensor, {args.epochs} epochs per phase at 1/10 of the "
              "distillation learning rate; test top-1 on 10,000 images, paired drop against the fp32 student\n")
        print("| seed | model | test top-1 | drop vs fp32 [95% CI], p | KiB | p50 ms × fp32 | phase time |")
        print("|---|---|---|---|---|---|---|")
        for seed in args.seeds:
            source = args.out / f"fashion32-seed{seed}"
            if not source.is_dir():
                raise SystemExit(f"{source} not found: run `python tools/vision_table.py --part distill --out {args.out} --seeds {seed}` first")
            run = Path(folder) / f"seed{seed}"
            shutil.copytree(source, run)
            recipe = json.loads((run / "recipe.json").read_text())
            recipe["data"]["source"] = f"npz:{npz}"  # the same data; part 2's temporary copy is gone
            (run / "recipe.json").write_text(json.dumps(recipe))
            manifest = json.loads((run / "manifest.json").read_text())
            manifest["files"]["recipe.json"]["sha256"] = sha256_file(run / "recipe.json")
            (run / "manifest.json").write_text(json.dumps(manifest))
            began = time.perf_counter()
            qad = quantization_aware(run, target, epochs=args.epochs, baseline=True)
            qad_seconds = time.perf_counter() - began
            (run / "excl").mkdir()
            began = time.perf_counter()
            excluded = quantize(run / "student.sim.onnx", run / "excl", dataclasses.replace(target.quantization, max_drop_vs_fp32=0.0),
                                data.calibration(256, seed=0), x_val, y_val)
            excl_seconds = time.perf_counter() - began
            ptq_dir = run / "ptq"
            ptq_dir.mkdir()
            ptq = quantize(run / "student.sim.onnx", ptq_dir, dataclasses.replace(target.quantization, max_excluded_nodes=0),
                           data.calibration(256, seed=0), x_val, y_val)
            files = {
                "fp32 student": run / "student.sim.onnx",
                "post-training int8": Path(ptq.path),
                f"post-training int8, {len(excluded.excluded_nodes)} node(s) excluded": Path(excluded.path),
                "quantization-aware training (labels only)": run / "student.int8-qat.onnx",
                "quantization-aware distillation": run / "student.int8-qad.onnx",
            }
            stats = time_against_fp32(files["fp32 student"], {k: v for k, v in files.items() if k != "fp32 student"},
                                      data.x_test[:256], ["CPUExecutionProvider"], RuntimeConfig(intra_op_threads=1), warmup=20, runs=args.runs)
            fp32_hits = file_correct(files["fp32 student"], data.x_test, data.y_test)
            times = {"post-training int8, ": excl_seconds, "quantization-aware": qad_seconds}
            for name, path in files.items():
                hits = fp32_hits if name == "fp32 student" else file_correct(path, data.x_test, data.y_test)
                drop = paired_drop(fp32_hits, hits)
                ratio = stats[name].p50_ms / stats["fp32"].p50_ms if name != "fp32 student" else 1.0
                spent = next((f"{s:.0f} s" for prefix, s in times.items() if name.startswith(prefix)), "")
                rows.setdefault("post-training int8 + exclusions" if "excluded" in name else name, []).append((float(hits.mean()), drop.drop, ratio, path.stat().st_size / 1024, len(excluded.excluded_nodes)))
                print(f"| {seed} | {name} | {hits.mean():.2%} | {drop.drop:+.2%} [{drop.interval[0]:+.2%}, {drop.interval[1]:+.2%}], p = {drop.p_value:.2g} | "
                      f"{path.stat().st_size / 1024:.0f} | {ratio:.2f} | {spent} |", flush=True)
            print(f"| {seed} | (deployed by the QAD phase: {qad.deployed}) | | | | | |", flush=True)
    print(f"\n{len(args.seeds)} seed(s), mean ± sd:\n")
    print("| model | test top-1 | drop vs fp32 | p50 × fp32 | KiB |")
    print("|---|---|---|---|---|")

    def summary(values):
        return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}" if len(values) > 1 else f"{values[0]:.2%}"

    for name, values in rows.items():
        accuracy, drop, ratio, kib, _ = zip(*values)
        print(f"| {name} | {summary(accuracy)} | {summary(drop)} | {statistics.mean(ratio):.2f} | {statistics.mean(kib):.0f} |")
    qad_drop = statistics.mean(v[1] for v in rows["quantization-aware distillation"])
    print(f"\ngoal: quantization-aware distillation within 0.5 points of the fp32 student: {'met' if qad_drop <= 0.005 else 'NOT met'} "
          f"({qad_drop * 100:+.2f} points)")


if __name__ == "__main__":
    main()
