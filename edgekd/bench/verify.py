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


def check_budgets(
    budgets: Budgets,
    size_bytes: int,
    latency_ms: float,
    accuracy: float | None,
    teacher_accuracy: float | None,
    teacher_bytes: int | None,
    throughput: float | None = None,
    mobile: MobileFigures | None = None,
    latency_ci: list[float] | None = None,
    drop: PairedDrop | None = None,
    versus_fp32: VersusFp32 | None = None,
    quantization_drop: PairedDrop | None = None,
    quantization: QuantizationConfig | None = None,
) -> list[Verdict]:
    """Compare the deployed model's figures with every budget the target sets.

    `drop` is the teacher-to-deployed accuracy drop paired on the test images (its interval
    decides); `versus_fp32` the deployed quantized student against its fp32 original, and
    `quantization_drop` its accuracy drop from that original, judged by the target's
    `quantization` (if_slower_than_fp32, max_drop_vs_fp32)."""
    quantization = quantization or QuantizationConfig()
    verdicts: list[Verdict] = []
    if budgets.max_size_kb is not None:
        verdicts.append(_at_most("max_size_kb", size_bytes / 1024, budgets.max_size_kb, "KiB"))
    if budgets.max_latency_ms is not None:
        verdicts.append(_within_interval("max_latency_ms", latency_ms, latency_ci, budgets.max_latency_ms,
                                         f"ms (p{budgets.latency_percentile})", "rerun with more runs or on a quiet machine"))
    if budgets.max_accuracy_drop is not None:
        if accuracy is None or teacher_accuracy is None:
            why = "no labelled test data" if accuracy is None else "no teacher to compare with (pass --teacher)"
            verdicts.append(Verdict("max_accuracy_drop", budgets.max_accuracy_drop, None, "", None, None, f"not checked: {why}"))
        elif drop is None:
            verdicts.append(_at_most("max_accuracy_drop", teacher_accuracy - accuracy, budgets.max_accuracy_drop, "top-1"))
        else:
            verdicts.append(_within_interval("max_accuracy_drop", drop.drop, drop.interval, budgets.max_accuracy_drop,
                                             f"top-1 ({drop.images} paired test images)", "more test images would tell"))
    if budgets.min_compression is not None:
        if teacher_bytes is None:
            verdicts.append(Verdict("min_compression", budgets.min_compression, None, "×", None, None, "not checked: no teacher to compare with (pass --teacher)"))
        else:
            verdicts.append(_at_least("min_compression", teacher_bytes / size_bytes, budgets.min_compression, "×"))
    if budgets.min_throughput is not None and throughput is not None:
        verdicts.append(_at_least("min_throughput", throughput, budgets.min_throughput, "samples/s"))
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
    if versus_fp32 is not None:
        verdicts += _versus_fp32(versus_fp32, quantization.if_slower_than_fp32)
    if quantization_drop is not None:
        verdicts.append(_within_interval("max_drop_vs_fp32", quantization_drop.drop, quantization_drop.interval, quantization.max_drop_vs_fp32,
                                         f"top-1 vs the fp32 student ({quantization_drop.images} paired test images)", "more test images would tell"))
    return [_unchecked(v, budgets.allow_unchecked) if v.passed is None else v for v in verdicts]


def run_passed(verdicts: list[Verdict]) -> bool:
    """The run passes when every blocking verdict passed: failures that only warn, and unchecked
    budgets the target allows, do not fail it."""
    return all(v.passed is True or not v.blocking for v in verdicts)


def _unchecked(v: Verdict, allowed: bool) -> Verdict:
    if allowed:
        return dataclasses.replace(v, blocking=False, note=f"{v.note} (allowed: allow_unchecked = true)")
    return dataclasses.replace(v, note=f"{v.note}; fails closed: fix the cause, or set [budgets] allow_unchecked = true to let it pass")


@dataclass(frozen=True)
class MobileFigures:
    ep: str  # "NNAPI" or "CoreML"
    coverage: float  # share of nodes the EP takes
    partitions: int
    error: str | None = None  # why coverage is unknown


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
    blocking = policy is not SlowerPolicy.warn
    why = {SlowerPolicy.warn: 'warning only: the target says if_slower_than_fp32 = "warn"',
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
