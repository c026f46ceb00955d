"""What the measured-results scripts share: distil one recipe over several seeds (teacher, scratch
and distilled student each time, plus a paired comparison of the two students on the test split),
ship the first seed's run (export, bench on a target: x86-cpu unless a script says otherwise), and write a results page with how it was made."""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

from edgekd._io import write_text
from edgekd._platform import cpu_info
from edgekd._version import __version__
from edgekd.distill.stage import distill
from edgekd.export.stage import export
from edgekd.folders.bench import bench
from edgekd.qad.stage import quantization_aware
from edgekd.recipe import recipe_from_dict

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def seed_options(parser, page: str, qad: bool = True, target: str = "x86-cpu") -> None:
    """The options every results script shares: seeds, the soft-target weight, the results page
    (`page`: its default name), the target that seed 0's run ships to (`target`: the script's
    default) and, where the task has the phase, `--qad EPOCHS`."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kd-weight", type=float, default=0.7)
    parser.add_argument("--label-fraction", type=float, default=1.0, metavar="SHARE",
                        help="[data] label_fraction: the students keep the labels of SHARE of the training split, the rest "
                             "become an unlabelled transfer set (the teacher learns from every label); default 1 (every label)")
    if qad:
        parser.add_argument("--qad", type=int, metavar="EPOCHS", help="also run the quantization-aware phase on seed 0's run for EPOCHS epochs")
    parser.add_argument("--write", type=Path, help=f"the results page to write (default: docs/results/{page})")
    parser.add_argument("--target", default=target, help=f"the target seed 0's run is exported and benched for (default: {target})")


def measure_seeds(arrays: dict[str, np.ndarray] | None, name: str, recipe_for: Callable[[Path | None, int], dict], seeds: list[int],
                  paired_of: Callable[[Path, str], np.ndarray], show: Callable[[float], str], compare,
                  qad_epochs: int | None = None, target: str = "x86-cpu") -> tuple[dict, list, tuple]:
    """For each seed: distil `recipe_for(npz, seed)` (`arrays` saved as that npz; None: the recipe
    names its own source); record test scores and the paired comparison `compare(outcomes of
    student.scratch.pt, of student.pt)`; export and bench the first seed's run for `target`, after
    `qad_epochs` of the quantization-aware phase when given (the bench then shows its models too).
    The shipped tuple is (distill result, export result, bench report, qad result or None)."""
    rows: dict[str, list[float]] = {"teacher": [], "scratch": [], "distilled": []}
    paired, shipped = [], None
    with tempfile.TemporaryDirectory() as folder:
        npz = Path(folder) / f"{name}.npz" if arrays is not None else None
        if npz is not None:
            np.savez(npz, **arrays)
        for seed in seeds:
            run = Path(folder) / f"seed{seed}"
            result = distill(recipe_from_dict(recipe_for(npz, seed)), run)
            rows["teacher"].append(result.teacher_scores.test)
            rows["scratch"].append(result.scratch.best.test)
            rows["distilled"].append(result.distilled.best.test)
            paired.append(compare(paired_of(run, "student.scratch.pt"), paired_of(run, "student.pt")))
            print(f"seed {seed}: test {result.metric} teacher {show(rows['teacher'][-1])}  scratch {show(rows['scratch'][-1])}  "
                  f"distilled {show(rows['distilled'][-1])}", flush=True)
            if shipped is None:
                exported = export(run, target)
                qad = quantization_aware(run, target, epochs=qad_epochs) if qad_epochs else None
                shipped = (result, exported, bench(run, target=target, memory=False), qad)
    return rows, paired, shipped


def page_name(stem: str, label_fraction: float) -> str:
    """A results page's file name: `stem.md`, or `stem-few-labels.md` when the students kept only a share of the labels."""
    return f"{stem}{'-few-labels' if label_fraction < 1 else ''}.md"


def labels_sentence(result, label_fraction: float, samples: str) -> str:
    """How the labels were shared out, for a page measured with `--label-fraction` (empty with every label)."""
    if label_fraction >= 1:
        return ""
    sizes = result.split_sizes
    return (f" The students keep the labels of {sizes['train']:,} of the {sizes['teacher_train']:,} training {samples} "
            f"([data] label_fraction = {label_fraction:g}); the other {sizes['unlabeled']:,} are an unlabelled transfer set that "
            "only the distilled student learns from, through the teacher's outputs (an epoch passes over it; the scratch twin takes "
            f"as many steps on its labels). The teacher learns from all {sizes['teacher_train']:,} labels, as a model trained on "
            "more labelled data than the student has would.")


def provenance(script: str, seconds: float, seeds: list[int]) -> str:
    """The line every results page opens with: the command, date, machine, versions, PyTorch's thread count and seeds."""
    import onnxruntime
    import torch

    command = f"python tools/{script} {' '.join(sys.argv[1:])}".rstrip()
    return (f"Written by `{command}`" + f" on {date.today().isoformat()}, "
            f"{seconds:.0f} s on {cpu_info()['cpu']} ({cpu_info()['cores']} cores); edgekd {__version__}, "
            f"torch {torch.__version__} ({_threads(torch.get_num_threads())}: the last digits of trained figures depend on it), "
            f"onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}."
            + (f" Seeds {', '.join(map(str, seeds))}." if seeds else ""))


def _threads(count: int) -> str:
    return "1 thread" if count == 1 else f"{count} threads"


def mean_sd(values: list[float], show: Callable[[float], str]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{show(statistics.mean(values))} ± {show(spread)}"


def gap_closed(rows: dict[str, list[float]], higher_is_better: bool, show: Callable[[float], str]) -> tuple[float, str]:
    """The distilled student's mean gain over the scratch one (positive: better), and how much of
    the scratch → teacher gap that closes in words — or why there is no gap to close (the scratch
    student beats the teacher, or is within 2 sd over seeds of it)."""
    sign = 1 if higher_is_better else -1
    gap = sign * (statistics.mean(rows["teacher"]) - statistics.mean(rows["scratch"]))
    gain = sign * (statistics.mean(rows["distilled"]) - statistics.mean(rows["scratch"]))
    noise = 2 * statistics.stdev(rows["scratch"]) if len(rows["scratch"]) > 1 else 0.0
    if gap > noise:
        return gain, f"closing {gain / gap:.0%} of the scratch → teacher gap"
    if gap < 0:
        return gain, f"with no gap to close: the scratch student beats the teacher by {show(-gap)}"
    return gain, f"with no gap to close: the scratch student is within {show(noise)} (2 sd over seeds) of the teacher"


def paired_sentence(seeds: list[int], paired: list, metric: str, samples: str) -> str:
    """Each seed's paired comparison of the distilled and the scratch student in points of `metric`,
    bootstrapped over the test `samples` (tiles, sentences)."""
    return (f"Paired on the test {samples} (distilled − scratch {metric}; 95% paired bootstrap over {samples}, permutation p): "
            + "; ".join(f"seed {s}: {-p.drop * 100:+.2f} points [{-p.interval[1] * 100:+.2f}, {-p.interval[0] * 100:+.2f}], p = {p.p_value:.2g}"
                        for s, p in zip(seeds, paired)) + " (positive: the distilled student is better).")


SHIPPED = (("teacher", "teacher fp32 (ONNX)"), ("student", "student fp32 (ONNX)"), ("ptq", "student int8"),
           ("qat", "student int8, quantization-aware training"), ("qad", "student int8, quantization-aware distillation"))


def shipped_table(report, columns: dict[str, Callable]) -> list[str]:
    """What the first seed ships: one row per model (teacher, fp32 student, int8 student and, after a
    quantization-aware phase, its models), the one that ships marked, the `columns` (heading → the
    variant's figure as text), then size, p50 and p50 against the teacher's."""
    by_role = {v.role.value: v for v in report.variants}
    teacher_ms = by_role["teacher"].latency.p50_ms
    headings = ["model", *columns, "size KiB", "p50 ms", "p50 × teacher"]
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    for role, name in SHIPPED:
        v = by_role.get(role)
        if v is not None:
            figures = [show(v) for show in columns.values()]
            name += " (deployed)" if v.role == report.deployed_role else ""
            lines.append(f"| {name} | " + " | ".join(figures) + f" | {v.profile.bytes / 1024:.1f} | {v.latency.p50_ms:.4f} | "
                         f"{v.latency.p50_ms / teacher_ms:.2f}× |")
    return lines


def shipped_heading(target: str, seed: int, note: str = "") -> str:
    """The line above the shipped table: the target, its scheme and how it was timed (then `note`)."""
    from edgekd.targets import load_target

    profile = load_target(target)
    scheme = {"static-qdq": "static int8", "dynamic": "dynamic int8"}.get(profile.quantization.scheme.value, profile.quantization.scheme.value)
    threads = profile.runtime.intra_op_threads
    threads = "one thread" if threads == 1 else f"{threads} threads" if threads else "all threads"
    return f"What seed {seed} ships on {target} ({scheme}, batch {profile.bench.latency_batch}, {threads}, timed interleaved{note}):"


def shipped_section(report, exported, qad, columns: dict[str, Callable], metric: str) -> list[str]:
    """For a metric lost in points (mIoU, entity F1): the shipped table, the int8 file against fp32,
    and what the quantization-aware phase did when it ran."""
    lines = [*shipped_table(report, columns), "", int8_points(exported.quantized, metric, report), ""]
    return lines + ([qad_sentence(qad, lambda v: f"{v:.2%}", metric), ""] if qad is not None else [])


def int8_points(quantized, metric: str, report) -> str:
    """The int8 file against fp32 on validation, for a metric lost in points (mIoU, entity F1)."""
    q = quantized
    if q.scheme == "none":  # fp32 ships: no int8 file to hold against it
        return (f"The fp32 student ships: {q.deployed_because or q.fell_back or 'the target deploys fp32'}; "
                f"verdict of the bench: {'PASS' if report.passed else 'FAIL'}.")
    return (f"int8 against fp32 on the validation split: {metric} {q.fp32_val_accuracy:.2%} → {q.val_accuracy:.2%} "
            f"({-q.drop_vs_fp32 * 100:+.2f} points, 95% CI [{-q.drop_interval[1] * 100:+.2f}, {-q.drop_interval[0] * 100:+.2f}], "
            f"p = {q.drop_p_value:.2g}; budget {q.budget * 100:.1f} points); verdict of the bench: {'PASS' if report.passed else 'FAIL'}.")


def write_page(out: Path, page: str) -> None:
    """Atomically (an interrupted run leaves the old page), then printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    print(page)


def qad_sentence(qad, show: Callable[[float], str], metric: str) -> str:
    """What the quantization-aware phase did, in one paragraph: each int8 model's validation and test
    figures, its paired test difference from the fp32 student (negative: worse), and what ships."""
    if qad is None:
        return ""
    if qad.skipped:
        return f"The quantization-aware phase was skipped: {qad.skipped}."
    parts = [f"{v.name}: val {show(v.val_accuracy)}, test {show(v.test_accuracy)} ({-v.drop_vs_fp32.drop * 100:+.2f} points against "
             f"fp32's {show(qad.fp32_test_accuracy)}, paired p = {v.drop_vs_fp32.p_value:.2g})" for v in qad.variants]
    return (f"Quantization-aware phase ({qad.settings['epochs']} epochs at lr {qad.settings['lr']:g}, {qad.seconds / 60:.0f} min), {metric}: "
            + "; ".join(parts) + f". Ships: {qad.deployed or 'post-training int8'} ({qad.deployed_because}).")
