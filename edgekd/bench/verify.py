"""Budgets of a target against measured figures → one verdict per budget.

A budget that cannot be measured (no labels, no teacher to compare with, ONNX Runtime's mobile
checker failing) is reported as not checked, with the reason, and fails the run — a gate must not
pass on what it did not see — unless the target says `allow_unchecked = true`. Figures with an interval (latency,
the accuracy drop against the teacher on the same images) fail only when the whole interval lies
beyond the budget, and say "too close to call" when it straddles. A quantized artifact that is
slower or larger than its fp32 student is a verdict too; the target's `if_slower_than_fp32` says
whether it fails the run or only warns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgekd.runtime.timing import VersusFp32
from edgekd.paired import PairedDrop
from edgekd.targets import Budgets, QuantizationConfig, SlowerPolicy
from edgekd.task import TASKS, Task, task


@dataclass(frozen=True)
class Verdict:
    budget: str  # the key in the target's [budgets] table
    allowed: float
    measured: float | None  # None: not measured (see note)
    unit: str
    margin: float | None  # room left: positive passes, negative fails
    passed: bool | None  # None: not checked (then `blocking` says whether that fails the run)
    note: str = ""
    interval: list[float] | None = None  # 95% confidence interval of the measured figure, if known
    too_close_to_call: bool = False  # the interval straddles the budget: passed, but not for sure
    blocking: bool = True  # False: a failure only warns (if_slower_than_fp32 = "warn"), or an unchecked budget may pass (allow_unchecked)


@dataclass(frozen=True)
class MobileFigures:
    ep: str  # "NNAPI" or "CoreML"
    coverage: float  # share of nodes the EP takes
    partitions: int
    error: str | None = None  # why coverage is unknown


@dataclass(frozen=True)
class BudgetFigures:
    """What the deployed model measured, and what it is compared with."""

    size_bytes: int
    latency_ms: float  # at the target's latency percentile
    accuracy: float | None  # None: no labelled test data
    teacher_accuracy: float | None = None  # None: no teacher benched beside it
    teacher_bytes: int | None = None
    throughput: float | None = None
    mobile: MobileFigures | None = None
    latency_ci: list[float] | None = None  # 95% interval of the latency percentile
    drop: PairedDrop | None = None  # teacher → deployed top-1 drop, paired on the test images (its interval decides)
    versus_fp32: VersusFp32 | None = None  # the deployed quantized student against its fp32 original
    quantization_drop: PairedDrop | None = None  # its accuracy drop from that original
    task: str = "classification"  # what `accuracy` and the drops are in: top-1 points, or relative RMSE rise (regression)
    latency_with: str = ""  # the post-processing `latency_ms` includes ("decode + NMS"), if any


def check_budgets(budgets: Budgets, figures: BudgetFigures, quantization: QuantizationConfig | None = None) -> list[Verdict]:
    """Compare the deployed model's figures with every budget the target sets; the target's
    `quantization` section judges a quantized model against its fp32 original (if_slower_than_fp32,
    max_drop_vs_fp32)."""
    quantization = quantization or QuantizationConfig()
    f = figures
    verdicts: list[Verdict] = []
    if budgets.max_size_kb is not None:
        verdicts.append(_at_most("max_size_kb", f.size_bytes / 1024, budgets.max_size_kb, "KiB"))
    if budgets.max_latency_ms is not None:
        with_post = f", with {f.latency_with}" if f.latency_with else ""
        verdicts.append(_within_interval("max_latency_ms", f.latency_ms, f.latency_ci, budgets.max_latency_ms,
                                         f"ms (p{budgets.latency_percentile}{with_post})", "rerun with more runs or on a quiet machine"))
    verdicts += _teacher_drops(budgets, f)
    if budgets.min_compression is not None:
        if f.teacher_bytes is None:
            verdicts.append(Verdict("min_compression", budgets.min_compression, None, "×", None, None, "not checked: no teacher to compare with (pass --teacher)"))
        else:
            verdicts.append(_at_least("min_compression", f.teacher_bytes / f.size_bytes, budgets.min_compression, "×"))
    if budgets.min_throughput is not None and f.throughput is not None:
        verdicts.append(_at_least("min_throughput", f.throughput, budgets.min_throughput, "samples/s"))
    verdicts += _mobile(budgets, f.mobile)
    if f.versus_fp32 is not None:
        verdicts += _versus_fp32(f.versus_fp32, quantization.if_slower_than_fp32)
    if f.quantization_drop is not None:
        d = f.quantization_drop
        verdicts.append(_within_interval("max_drop_vs_fp32", d.drop, d.interval, quantization.max_drop_vs_fp32,
                                         f"{task(f.task).drop_words()} vs the fp32 student ({d.images} paired test samples)",
                                         "more test samples would tell"))
    return [_unchecked(v, budgets.allow_unchecked) if v.passed is None and v.blocking else v for v in verdicts]


def _teacher_drops(budgets: Budgets, f: BudgetFigures) -> list[Verdict]:
    """The teacher → deployed drop, by the budget of the models' task; a drop budget of another task
    does not apply (reported, never failing the run)."""
    kind, verdicts = task(f.task), []
    for entry in TASKS.values():
        allowed = getattr(budgets, entry.drop_budget)
        if allowed is None:
            continue
        if entry is kind:
            verdicts.append(_teacher_drop(entry.drop_budget, allowed, f, kind))
        else:
            verdicts.append(Verdict(entry.drop_budget, allowed, None, "", None, None,
                                    f"not applicable: a {entry.name} budget, these models do {kind.name} ({kind.drop_budget} limits them)",
                                    blocking=False))
    return verdicts


def _teacher_drop(name: str, allowed: float, f: BudgetFigures, kind: Task) -> Verdict:
    """Teacher → deployed drop: paired on the same samples when both were scored on them."""
    if f.accuracy is None or f.teacher_accuracy is None:
        why = "no labelled test data" if f.accuracy is None else "no teacher to compare with (pass --teacher)"
        return Verdict(name, allowed, None, "", None, None, f"not checked: {why}")
    if f.drop is None:
        return _at_most(name, kind.drop_between(f.teacher_accuracy, f.accuracy), allowed, kind.drop_words())
    return _within_interval(name, f.drop.drop, f.drop.interval, allowed,
                            f"{kind.drop_words()} ({f.drop.images} paired test samples)", "more test samples would tell")


def _mobile(budgets: Budgets, mobile: MobileFigures | None) -> list[Verdict]:
    """NNAPI / CoreML coverage and partitions of the deployed model."""
    verdicts = []
    for name, allowed in (("min_mobile_coverage", budgets.min_mobile_coverage), ("max_mobile_partitions", budgets.max_mobile_partitions)):
        if allowed is None:
            continue
        if mobile is None or mobile.error:
            why = (f"ONNX Runtime's {mobile.ep} usability checker failed ({mobile.error})" if mobile
                   else "no NNAPI/CoreML coverage known (set [budgets] mobile_ep, bench a run folder or an .onnx file)")
            verdicts.append(Verdict(name, allowed, None, "", None, None, f"not checked: {why}"))
        elif name == "min_mobile_coverage":
            verdicts.append(_at_least(name, mobile.coverage, allowed, f"of nodes on {mobile.ep}"))
        else:
            verdicts.append(_at_most(name, mobile.partitions, allowed, f"partitions on {mobile.ep}"))
    return verdicts


def run_passed(verdicts: list[Verdict]) -> bool:
    """The run passes when every blocking verdict passed: failures that only warn, and unchecked
    budgets the target allows, do not fail it."""
    return all(v.passed is True or not v.blocking for v in verdicts)


def _unchecked(v: Verdict, allowed: bool) -> Verdict:
    if allowed:
        return dataclasses.replace(v, blocking=False, note=f"{v.note} (allowed: allow_unchecked = true)")
    return dataclasses.replace(v, note=f"{v.note}; fails closed: fix the cause, or set [budgets] allow_unchecked = true to let it pass")


def _within_interval(name: str, measured: float, interval: list[float] | None, allowed: float, unit: str, advice: str) -> Verdict:
    """Fail only when the whole 95% interval lies beyond the budget; say when it straddles."""
    if interval is None:
        return _at_most(name, measured, allowed, unit)
    low, high = interval
    if low > allowed:
        return Verdict(name, allowed, measured, unit, allowed - measured, False, f"95% CI [{low:.4g}, {high:.4g}] lies above the budget", interval)
    if high <= allowed:
        return Verdict(name, allowed, measured, unit, allowed - measured, True, "", interval)
    return Verdict(name, allowed, measured, unit, allowed - measured, True,
                   f"too close to call: 95% CI [{low:.4g}, {high:.4g}] straddles the budget; {advice}",
                   interval, too_close_to_call=True)


def _versus_fp32(f: VersusFp32, policy: SlowerPolicy) -> list[Verdict]:
    """The deployed quantized student may be neither slower (whole p50 intervals apart) nor larger than fp32."""
    blocking = policy not in (SlowerPolicy.warn, SlowerPolicy.fastest)
    why = {SlowerPolicy.warn: 'warning only: the target says if_slower_than_fp32 = "warn"',
           SlowerPolicy.fastest: 'warning only: the target says if_slower_than_fp32 = "fastest" and fp32 misses a size budget (export.json says which)',
           SlowerPolicy.fail: 'the target says if_slower_than_fp32 = "fail"',
           SlowerPolicy.fallback: 'the target says if_slower_than_fp32 = "fallback": export again on this machine to deploy fp32'}[policy]
    ratio = f.p50_ms / f.fp32_p50_ms
    interval = [f.p50_ci95_ms[0] / f.fp32_p50_ci95_ms[1], f.p50_ci95_ms[1] / f.fp32_p50_ci95_ms[0]]
    close = not f.slower and ratio > 1
    note = (f"slower than the fp32 student ({f.p50_ms:.4g} vs {f.fp32_p50_ms:.4g} ms p50); {why}" if f.slower else
            f"too close to call: p50 intervals of deployed and fp32 overlap ({f.p50_ms:.4g} vs {f.fp32_p50_ms:.4g} ms)" if close else "")
    latency = Verdict("deployed_vs_fp32_latency", 1.0, ratio, "× fp32 student p50", 1.0 - ratio, not f.slower, note, interval,
                      too_close_to_call=close, blocking=blocking)
    size = f.bytes / f.fp32_bytes
    size_note = f"larger than the fp32 student ({f.bytes:,} vs {f.fp32_bytes:,} bytes); {why}" if f.larger else ""
    return [latency, Verdict("deployed_vs_fp32_size", 1.0, size, "× fp32 student bytes", 1.0 - size, not f.larger, size_note, blocking=blocking)]


def _at_most(name: str, measured: float, allowed: float, unit: str) -> Verdict:
    return Verdict(name, allowed, measured, unit, allowed - measured, measured <= allowed)


def _at_least(name: str, measured: float, allowed: float, unit: str) -> Verdict:
    return Verdict(name, allowed, measured, unit, measured - allowed, measured >= allowed)
