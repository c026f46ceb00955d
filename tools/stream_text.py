"""Unlabelled text that does not fit in memory, measured: peak memory and training speed of the
streamed transfer set (tokenized chunk by chunk into memory-mapped arrays, edgekd.data.tokens)
against the in-memory path (the whole file read, then tokenized at once, as edgekd did before).

For each size (10^4, 10^5, 10^6 generated sentences by default) and each path, a fresh process
with an empty cache: loads the unlabelled sentences (tokenizing them), computes a small teacher's
soft targets on them (edgekd's teacher-output cache), then times STEPS distillation steps (or one epoch, if shorter) of a
2-layer BERT student on 2,000 labelled sentences + the unlabelled ones (one labelled and one
unlabelled batch of 64 per step). A sampler thread records the peak of the process's resident
memory (VmRSS) and of its anonymous part (RssAnon: what the process itself allocated; the rest is
file pages the kernel may drop at any time). The streamed path runs again with batches bucketed by
length (`[distill] bucket_by_length`). Sentences: random words of MiniLM's vocabulary, 4–40
per sentence, seeded.

Writes docs/results/streaming-text.md (command, date, machine, versions, then the table) and prints it.

    python tools/stream_text.py                              # 10^4, 10^5, 10^6: about 15 minutes on 2 cores
    python tools/stream_text.py --sizes 10000 --memory-up-to 10000
    python tools/stream_text.py --labelled                   # docs/results/streaming-labelled-text.md

`--labelled` measures the labelled `text:PATH` source instead: for each size, a fresh process with an
empty cache loads the file into train / val / test splits (`edgekd.data.load_data`, labels stratified)
read whole and tokenized at once (*memory*), streamed into the token store with the splits gathered
into memory (*stream, splits held*: edgekd on 2026-12-06) or streamed with the splits' rows in mapped
files beside the store (*stream*); peak memory and seconds of the load alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LABELLED = 2_000
DEFAULT_PAGE = HERE.parent / "docs" / "results" / "streaming-text.md"
BATCH = 64


def _words() -> list[str]:
    from edgekd.data.text import pretrained_dir

    vocabulary = (pretrained_dir("minilm") / "vocab.txt").read_text(encoding="utf-8").split()
    return [w for w in vocabulary if w.isalpha() and w.isascii() and len(w) > 2][:8000]


def _sentences(count: int, seed: int, words: list[str]) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 41, size=count)
    picks = rng.integers(0, len(words), size=int(lengths.sum()))
    out, start = [], 0
    for length in lengths:
        out.append(" ".join(words[i] for i in picks[start:start + length]))
        start += length
    return out


def _write_corpus(folder: Path, size: int, labelled: bool = False) -> Path:
    """`size` generated sentences as jsonl rows of "text" (and, `labelled`, a "label" of two classes)."""
    words = _words()
    path = folder / f"{'labelled' if labelled else 'unlabelled'}-{size}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for start in range(0, size, 100_000):
            for number, text in enumerate(_sentences(min(100_000, size - start), start, words), start=start):
                fh.write(json.dumps({"text": text, **({"label": "ab"[number % 2]} if labelled else {})}) + "\n")
    return path


class _Peak(threading.Thread):
    """Samples /proc/self/status every 10 ms; keeps the largest VmRSS and RssAnon (kB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"VmRSS": 0, "RssAnon": 0}
        self.running = True

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(0.01)

    def sample(self) -> None:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(value.split()[0]))


def _child(corpus: Path, mode: str, steps: int, bucketed: bool) -> dict:
    """One measurement, in this (fresh) process; returns the figures."""
    import torch

    from edgekd._progress import set_quiet
    from edgekd.data.splits import DataSplits
    from edgekd.data.text import _rows, load_tokenizer, tokenize
    from edgekd.data.tokens import tokenized_file
    from edgekd.distill import trainer
    from edgekd.distill.teacher import Teacher, TeacherSet, cache_teacher_logits
    from edgekd.distill.trainer import TrainSettings
    from edgekd.models import ModelSpec, build_model
    from edgekd.recipe import LossTerm

    set_quiet(True)
    torch.set_num_threads(os.cpu_count() or 1)
    peak = _Peak()
    peak.start()
    tokenizer = load_tokenizer("minilm")
    words = _words()
    labelled = tokenize(tokenizer, _sentences(LABELLED + 400, 10**9, words), 128)
    labels = np.random.default_rng(0).integers(0, 2, size=LABELLED + 400)
    began = time.perf_counter()
    if mode == "memory":  # what edgekd did before: the whole file read, every text tokenized at once
        texts = list(dict.fromkeys(str(r["text"]) for r in _rows(corpus)))
        unlabelled = tokenize(tokenizer, texts, 128)
        del texts
    else:
        unlabelled = tokenized_file(corpus, "text", tokenizer, 128)
    load_seconds = time.perf_counter() - began
    data = DataSplits("generated", labelled[:LABELLED], labels[:LABELLED], labelled[LABELLED:LABELLED + 200], labels[LABELLED:LABELLED + 200],
                      labelled[LABELLED + 200:], labels[LABELLED + 200:], 2, unlabelled, vocab_size=len(tokenizer))
    spec = ModelSpec("transformer", {"layers": 1, "hidden": 64, "heads": 2, "intermediate": 128}, (), 2, data.inputs, len(tokenizer))
    torch.manual_seed(0)
    teachers = TeacherSet([Teacher("given", 1.0, model=build_model(spec).eval())])
    began = time.perf_counter()
    teachers = cache_teacher_logits(teachers, data, enabled=True, augment=False)
    teacher_seconds = time.perf_counter() - began
    student = build_model(ModelSpec("transformer", {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512}, (), 2, data.inputs, len(tokenizer)))
    settings = TrainSettings(epochs=1, batch_size=BATCH, lr=1e-3, seed=0, ce_weight=0.3, terms=(LossTerm(method="kd", weight=0.7),),
                             bucket_by_length=bucketed)
    loop = trainer._prepare(student, data.x_train, data.y_train, settings, "student", teachers, data.x_unlabeled, None)
    loop.steps = steps = min(steps, loop.steps)  # a fixed number of steps, not an epoch over 10^6 sentences
    began = time.perf_counter()
    trainer._train_epoch(loop, 1)
    train_seconds = time.perf_counter() - began
    loop.objective.close()
    peak.running = False
    peak.sample()
    return {"rows": len(unlabelled), "steps": steps, "width": int(unlabelled["input_ids"].shape[1]), "load_s": load_seconds, "teacher_s": teacher_seconds,
            "steps_per_s": steps / train_seconds, "peak_rss_mb": peak.peak["VmRSS"] / 1024, "peak_anon_mb": peak.peak["RssAnon"] / 1024}


def _child_labelled(corpus: Path, mode: str) -> dict:
    """Load a labelled file into splits, in this (fresh) process: read whole (`memory`, edgekd before
    2026-12-06) or streamed; returns seconds and peak memory of the load."""
    from edgekd._progress import set_quiet
    from edgekd.data import load_data, text
    from edgekd.data.config import DataConfig

    set_quiet(True)
    peak = _Peak()
    peak.start()
    if mode == "memory":  # the source as it was: every row read, then every text tokenized at once
        text.streamed_text_source = text.read_text_source
    if mode == "stream-held":  # the splits gathered into memory, as when their rows files cannot be written
        import edgekd.inputs

        def unwritable(*_):
            raise OSError(30, "not written: measuring the splits held in memory")

        edgekd.inputs.atomic_path = unwritable
    began = time.perf_counter()
    data = load_data(f"text:{corpus}", options=DataConfig(tokenizer="minilm", max_length=128))
    seconds = time.perf_counter() - began
    peak.running = False
    peak.sample()
    rows = len(data.y_train) + len(data.y_val) + len(data.y_test)
    return {"rows": rows, "width": int(data.x_train["input_ids"].shape[1]), "load_s": seconds,
            "peak_rss_mb": peak.peak["VmRSS"] / 1024, "peak_anon_mb": peak.peak["RssAnon"] / 1024}


def _labelled_page(args, rows: list, seconds: float) -> str:
    from _pages import provenance

    lines = [
        "# Labelled text, streamed — measured", "",
        provenance("stream_text.py", seconds, []), "",
        "Each row a fresh process with an empty cache loading a `text:` file of generated labelled sentences (jsonl, two "
        "classes) into stratified train / val / test splits with MiniLM's tokenizer, max_length 128 (`edgekd.data.load_data`). "
        "*memory*: every row read, then every text tokenized at once (edgekd until 2026-12-06); *stream*: read row by row "
        "and tokenized 10,000 at a time into memory-mapped arrays in the cache (edgekd.data.tokens), each split's rows then "
        "gathered a chunk at a time into a mapped file beside the store (edgekd.inputs.take_rows); *stream, splits held*: the "
        "same with the splits gathered into memory (edgekd on 2026-12-06: int64 ids and mask, 16 bytes per token of each "
        "split; still what happens when the cache cannot be written). Peak RSS counts the file pages the "
        "kernel maps in; peak anonymous memory is what the process itself holds.", "",
        "| sentences | path | padded width | load + tokenize + split s | peak RSS MB | peak anonymous MB |",
        "|---|---|---|---|---|---|",
    ]
    names = {"stream-held": "stream, splits held"}
    for size, mode, f in rows:
        lines.append(f"| {f['rows']:,} | {names.get(mode, mode)} | {f['width']} | {f['load_s']:.1f} | {f['peak_rss_mb']:.0f} | {f['peak_anon_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def _measure(command: list[str], what: str) -> dict:
    """Run one measurement in a fresh process with an empty cache; its figures."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, __file__, *command], capture_output=True, text=True, env={**os.environ, "EDGEKD_CACHE_DIR": cache})
    if out.returncode:
        raise SystemExit(f"{what}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--memory-up-to", type=int, default=1_000_000, help="largest size also run through the in-memory path")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--write", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--labelled", action="store_true", help="measure the labelled text: source (its own page)")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.labelled:
        print(json.dumps(_child_labelled(Path(args.child[0]), args.child[1])))
        return
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), args.child[1].removesuffix("-bucketed"), args.steps, args.child[1].endswith("-bucketed"))))
        return
    sys.path.insert(0, str(HERE))
    from _pages import provenance, write_page

    began = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            corpus = _write_corpus(Path(folder), size, args.labelled)
            if args.labelled:
                modes = ("memory", "stream-held", "stream") if size <= args.memory_up_to else ("stream-held", "stream")
            else:
                modes = ("memory", "stream", "stream-bucketed") if size <= args.memory_up_to else ("stream", "stream-bucketed")
            for mode in modes:
                command = ["--child", str(corpus), mode, *(["--labelled"] if args.labelled else ["--steps", str(args.steps)])]
                figures = _measure(command, f"{mode} at {size}")
                rows.append((size, mode, figures))
                print(size, mode, figures, flush=True)
    if args.labelled:
        out = args.write if args.write != DEFAULT_PAGE else DEFAULT_PAGE.with_name("streaming-labelled-text.md")
        write_page(out, _labelled_page(args, rows, time.perf_counter() - began))
        return
    memory = {size: f for size, mode, f in rows if mode == "memory"}
    lines = [
        "# Unlabelled text, streamed — measured", "",
        provenance("stream_text.py", time.perf_counter() - began, []), "",
        f"Each row a fresh process with an empty cache: load the unlabelled sentences (tokenized with MiniLM's tokenizer, "
        f"max_length 128), compute a 1-layer teacher's soft targets on them (edgekd's teacher-output cache), then {args.steps} "
        f"distillation steps of a 2-layer BERT student (hidden 128) on {LABELLED:,} labelled sentences + the unlabelled ones, one "
        f"batch of {BATCH} of each per step. *memory*: the whole file read, then tokenized at once (edgekd before 2026-12-06); "
        "*stream*: read row by row and tokenized 10,000 at a time into memory-mapped arrays (edgekd.data.tokens). Peak RSS "
        "counts the file pages the kernel maps in (and may drop at any time); peak anonymous memory is what the process "
        "itself holds. *stream-bucketed*: the same with `[distill] bucket_by_length = true` (batches of similar lengths, "
        "each cut to its longest sentence). Steps: as many as asked, or one epoch if that is shorter.", "",
        "| sentences | path | padded width | load + tokenize s | teacher outputs s | steps | steps/s | × memory | peak RSS MB | peak anonymous MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, mode, f in rows:
        ratio = f"{f['steps_per_s'] / memory[size]['steps_per_s']:.2f}×" if size in memory else "—"
        lines.append(f"| {f['rows']:,} | {mode} | {f['width']} | {f['load_s']:.1f} | {f['teacher_s']:.1f} | {f['steps']} | {f['steps_per_s']:.1f} | "
                     f"{ratio} | {f['peak_rss_mb']:.0f} | {f['peak_anon_mb']:.0f} |")
    write_page(args.write, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
