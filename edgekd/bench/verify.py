"""Budgets of a target against measured figures → one verdict per budget.

A budget that cannot be measured (no labels, no teacher to compare with) is reported as not
checked, with the reason, and does not pass or fail the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.targets import Budgets


@dataclass(frozen=True)
class Verdict:
    budget: str  # the key in the target's [budgets] table
    allowed: float
    measured: float | None  # None: not measured (see note)
    unit: str
    margin: float | None  # room left: positive passes, negative fails
    passed: bool | None  # None: not checked
    note: str = ""
    interval: list[float] | None = None  # 95% confidence interval of the measured figure, if known
    too_close_to_call: bool = False  # the interval straddles the budget: passed, but not for sure


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
) -> list[Verdict]:
    """Compare the deployed model's figures with every budget the target sets."""
    verdicts: list[Verdict] = []
    if budgets.max_size_kb is not None:
        verdicts.append(_at_most("max_size_kb", size_bytes / 1024, budgets.max_size_kb, "KiB"))
    if budgets.max_latency_ms is not None:
        verdicts.append(_latency(latency_ms, latency_ci, budgets))
    if budgets.max_accuracy_drop is not None:
        if accuracy is None or teacher_accuracy is None:
            why = "no labelled test data" if accuracy is None else "no teacher to compare with (pass --teacher)"
            verdicts.append(Verdict("max_accuracy_drop", budgets.max_accuracy_drop, None, "", None, None, f"not checked: {why}"))
        else:
            verdicts.append(_at_most("max_accuracy_drop", teacher_accuracy - accuracy, budgets.max_accuracy_drop, "top-1"))
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
            why = mobile.error if mobile else "no NNAPI/CoreML coverage known (set [budgets] mobile_ep, bench a run folder or an .onnx file)"
            verdicts.append(Verdict(name, allowed, None, "", None, None, f"not checked: {why}"))
        elif name == "min_mobile_coverage":
            verdicts.append(_at_least(name, mobile.coverage, allowed, f"of nodes on {mobile.ep}"))
        else:
            verdicts.append(_at_most(name, mobile.partitions, allowed, f"partitions on {mobile.ep}"))
    return verdicts


@dataclass(frozen=True)
class MobileFigures:
    ep: str  # "NNAPI" or "CoreML"
    coverage: float  # share of nodes the EP takes
    partitions: int
    error: str | None = None  # why coverage is unknown


def _latency(measured: float, interval: list[float] | None, budgets: Budgets) -> Verdict:
    """Fail only when the whole confidence interval lies beyond the budget; say when it straddles."""
    allowed = budgets.max_latency_ms
    unit = f"ms (p{budgets.latency_percentile})"
    if interval is None:
        return _at_most("max_latency_ms", measured, allowed, unit)
    low, high = interval
    if low > allowed:
        return Verdict("max_latency_ms", allowed, measured, unit, allowed - measured, False, f"95% CI [{low:.4g}, {high:.4g}] lies above the budget", interval)
    if high <= allowed:
        return Verdict("max_latency_ms", allowed, measured, unit, allowed - measured, True, "", interval)
    return Verdict("max_latency_ms", allowed, measured, unit, allowed - measured, True,
                   f"too close to call: 95% CI [{low:.4g}, {high:.4g}] straddles the budget; rerun with more runs or on a quiet machine",
                   interval, too_close_to_call=True)


def _at_most(name: str, measured: float, allowed: float, unit: str) -> Verdict:
    return Verdict(name, allowed, measured, unit, allowed - measured, measured <= allowed)


def _at_least(name: str, measured: float, allowed: float, unit: str) -> Verdict:
    return Verdict(name, allowed, measured, unit, measured - allowed, measured >= allowed)
