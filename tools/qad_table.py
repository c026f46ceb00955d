"""Quantization-aware distillation, measured: what fine-tuning through the int8 model wins back.

Each seed's distilled student is deployed five ways under static QDQ int8 *per-tensor* (the
int8-fragile setting):

- fp32 student (the reference of every drop);
- post-training int8 (ORT's quant_pre_process + quantize_static, 256 calibration inputs);
- post-training int8 with exclusions (max_drop_vs_fp32 = 0: nodes kept in fp32 while the paired
  drop on held-out inputs is significant, up to 8);
- quantization-aware training on labels alone (the same int8 model, fine-tuned, no teacher);
- quantization-aware distillation (the same, against the fp32 teacher, with the recipe's objective).

Two students (`--part`):

- vision: the run folders `tools/vision_table.py --part distill --out DIR` leaves (a MobileNetV3-
  style student distilled from a ResNet-style teacher on 3×32×32 Fashion-MNIST, one per seed);
  exclusions are validated on the 40,000 unused training images.
- text: the 2-layer × 128 BERT student distilled from MiniLM on Rotten Tomatoes snippets
  (`tools/text_table.py`'s recipe, made here into DIR/text-STUDENT-seedN when missing, ≈7 min per
  seed), or with `--student minilm-2x384` a DistilBERT-style student: MiniLM's width, its
  embeddings and every third layer copied before distillation (`init_from_teacher`); exclusions
  are validated on the 1,000 validation snippets.

Test top-1 with the paired drop against the fp32 student, size, and p50 latency at batch 1 on one
thread, every file timed interleaved with the fp32 model in one process. Each run folder is
copied first: the originals are not changed.

    python tools/vision_table.py --part distill --out runs/vision   # the vision run folders (≈12 min per seed)
    python tools/qad_table.py --out runs/vision                      # the vision table (≈20 min per seed)
    python tools/qad_table.py --part text --out runs/text            # the text table, 2×128 student
    python tools/qad_table.py ... --qad ce_weight=0.5 --qad teacher=student   # the phase with other [qad] keys
    python tools/qad_table.py --part text --student minilm-2x384 --distill-epochs 3 --out runs/text

Goal (the QAD issue): quantization-aware distillation within 0.5 points of the fp32 student at the
latency of the fully quantized model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

Row = tuple[float, float, float, float, int]  # accuracy, drop, p50 ratio, KiB, nodes excluded
TEXT_STUDENTS = {
    "bert-2x128": {"model": "transformer", "args": {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512, "max_position": 128}},
    "minilm-2x384": {"model": "transformer", "init_from_teacher": True,
                     "args": {"layers": 2, "hidden": 384, "heads": 12, "intermediate": 1536, "max_position": 512}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["vision", "text"], default="vision")
    parser.add_argument("--out", type=Path, required=True,
                        help="vision: the --out of `tools/vision_table.py --part distill`; text: where the run folders are kept")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=20_000, help="vision: as given to vision_table.py")
    parser.add_argument("--distill-epochs", type=int, default=10, help="text: epochs of distillation when a run folder is made")
    parser.add_argument("--student", choices=sorted(TEXT_STUDENTS), default="bert-2x128",
                        help="text: bert-2x128 (text_table.py's, from scratch) or minilm-2x384 (MiniLM's embeddings and every "
                             "third layer, as DistilBERT was initialised: the teacher's outliers come with them)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each quantization-aware phase")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per model")
    parser.add_argument("--qad", action="append", default=[], metavar="KEY=VALUE",
                        help="a [qad] recipe key for the phase, e.g. --qad ce_weight=0.5 --qad teacher=student (repeatable)")
    args = parser.parse_args()

    from edgekd._progress import set_quiet

    set_quiet(True)
    rows: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory() as folder:
        print(f"## Quantization-aware distillation ({args.part}): static QDQ int8 per-tensor, {args.epochs} epochs per phase at 1/10 "
              f"of the distillation learning rate{''.join('; [qad] ' + pair for pair in args.qad)}; test top-1, paired drop against the fp32 student\n")
        print("| seed | model | test top-1 | drop vs fp32 [95% CI], p | KiB | p50 ms × fp32 | phase time |")
        print("|---|---|---|---|---|---|---|")
        if args.part == "vision":
            vision(args, Path(folder), rows)
        else:
            text(args, Path(folder), rows)
    summarise(rows, len(args.seeds))


def vision(args, folder: Path, rows: dict[str, list[Row]]) -> None:
    from vision_table import _subset, fashion, per_tensor_target, rgb, write_fashion32

    from edgekd import runfolder
    from edgekd.data import load_data

    npz = write_fashion32(folder, args.train)
    data = load_data(f"npz:{npz}", val_fraction=0.1)
    images, labels = fashion("train")
    unused = np.setdiff1d(np.arange(len(labels)), _subset(labels, args.train))
    x_val, y_val = rgb(images[unused], 32), labels[unused]
    for seed in args.seeds:
        source = args.out / f"fashion32-seed{seed}"
        if not source.is_dir():
            raise SystemExit(f"{source} not found: run `python tools/vision_table.py --part distill --out {args.out} --seeds {seed}` first")
        run = folder / f"seed{seed}"
        shutil.copytree(source, run)
        recipe = json.loads((run / "recipe.json").read_text())
        recipe["data"]["source"] = f"npz:{npz}"  # the same data; part 2's temporary copy is gone
        (run / "recipe.json").write_text(json.dumps(recipe))
        runfolder.refresh(run, "recipe.json")
        measure(seed, run, per_tensor_target(), data, x_val, y_val, args, rows)


def text_target():
    from edgekd.targets import Scheme, load_target

    base = load_target("x86-cpu-text")  # one thread, per-tensor weights; static QDQ instead of dynamic int8
    quantization = dataclasses.replace(base.quantization, scheme=Scheme.static_qdq, per_channel=False, max_drop_vs_fp32=0.01,
                                       max_excluded_nodes=8, calibration_samples=256)
    return dataclasses.replace(base, name="x86-cpu-text-static", quantization=quantization)


def text(args, folder: Path, rows: dict[str, list[Row]]) -> None:
    from text_table import recipe as text_recipe

    from edgekd.data import load_recipe_data
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export
    from edgekd.recipe import recipe_from_dict
    from edgekd.runfolder import load_run_recipe

    target = text_target()
    for seed in args.seeds:
        source = args.out / f"text-{args.student}-seed{seed}"
        if not (source / "export.json").is_file():
            began = time.perf_counter()
            recipe = text_recipe(seed, args.distill_epochs, 2.0, 0.9)
            recipe["student"] = TEXT_STUDENTS[args.student]
            recipe["distill"]["baseline"] = "none"  # the scratch twin is text_table.py's question, not this table's
            distill(recipe_from_dict(recipe), source, force=True)
            export(source, target)
            print(f"(seed {seed}: distilled and exported in {time.perf_counter() - began:.0f} s)", flush=True)
        run = folder / f"seed{seed}"
        shutil.copytree(source, run)
        data = load_recipe_data(load_run_recipe(run).data)
        measure(seed, run, target, data, data.x_val, data.y_val, args, rows)


def set_qad_keys(run: Path, pairs: list[str]) -> None:
    """--qad KEY=VALUE pairs written into the run folder's [qad] recipe section (values read as JSON
    when they parse, e.g. 0.5, else as strings), its manifest hash refreshed."""
    from edgekd import runfolder

    if not pairs:
        return
    recipe = json.loads((run / "recipe.json").read_text())
    section = recipe.setdefault("qad", {})  # run folders from before [qad] existed have none
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            section[key] = json.loads(value)
        except json.JSONDecodeError:
            section[key] = value
    (run / "recipe.json").write_text(json.dumps(recipe))
    runfolder.refresh(run, "recipe.json")


def measure(seed: int, run: Path, target, data, x_val, y_val, args, rows: dict[str, list[Row]]) -> None:
    """The five deployments of one seed's student, printed as table rows and added to `rows`."""
    from edgekd.runtime.metrics import file_correct
    from edgekd.export.quantize import quantize_model, time_against_fp32
    from edgekd.paired import paired_drop
    from edgekd.qad.stage import quantization_aware
    from edgekd.targets import RuntimeConfig

    set_qad_keys(run, args.qad)
    began = time.perf_counter()
    qad = quantization_aware(run, target, epochs=args.epochs, baseline=True)
    qad_seconds = time.perf_counter() - began
    (run / "excl").mkdir()
    began = time.perf_counter()
    excluded = quantize_model(run / "student.sim.onnx", run / "excl", dataclasses.replace(target.quantization, max_drop_vs_fp32=0.0),
                        data.calibration(256, seed=0), x_val, y_val)
    excl_seconds = time.perf_counter() - began
    ptq_dir = run / "ptq"
    ptq_dir.mkdir()
    ptq = quantize_model(run / "student.sim.onnx", ptq_dir, dataclasses.replace(target.quantization, max_excluded_nodes=0),
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
        rows.setdefault("post-training int8 + exclusions" if "excluded" in name else name, []).append(
            (float(hits.mean()), drop.drop, ratio, path.stat().st_size / 1024, len(excluded.excluded_nodes)))
        print(f"| {seed} | {name} | {hits.mean():.2%} | {drop.drop:+.2%} [{drop.interval[0]:+.2%}, {drop.interval[1]:+.2%}], p = {drop.p_value:.2g} | "
              f"{path.stat().st_size / 1024:.0f} | {ratio:.2f} | {spent} |", flush=True)
    print(f"| {seed} | (deployed by the QAD phase: {qad.deployed}) | | | | | |", flush=True)


def summarise(rows: dict[str, list[Row]], seeds: int) -> None:
    def summary(values):
        return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}" if len(values) > 1 else f"{values[0]:.2%}"

    print(f"\n{seeds} seed(s), mean ± sd:\n")
    print("| model | test top-1 | drop vs fp32 | p50 × fp32 | KiB |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        accuracy, drop, ratio, kib, _ = zip(*values)
        print(f"| {name} | {summary(accuracy)} | {summary(drop)} | {statistics.mean(ratio):.2f} | {statistics.mean(kib):.0f} |")
    qad_drop = statistics.mean(v[1] for v in rows["quantization-aware distillation"])
    print(f"\ngoal: quantization-aware distillation within 0.5 points of the fp32 student: {'met' if qad_drop <= 0.005 else 'NOT met'} "
          f"({qad_drop * 100:+.2f} points)")


if __name__ == "__main__":
    main()
