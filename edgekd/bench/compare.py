"""`edgekd bench --compare A.json B.json`: what changed between two bench reports.

A regression gate for CI: B is worse than A when a model's latency grew by more than the allowed
share *and* the two confidence intervals do not overlap (otherwise it is noise: too close to
call), or when its accuracy fell by more than the allowed points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekd._io import read_json
from edgekd.runtime.timing import interval_above
from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class Change:
    model: str
    figure: str  # "p50 latency (ms)" or "top-1"
    before: float
    after: float
    change: float  # relative for latency (+0.10 = 10% slower) and error metrics (rmse), absolute for accuracy
    verdict: str  # "better", "same", "worse", "too close to call"


@dataclass(frozen=True)
class Comparison:
    before: str
    after: str
    changes: list[Change]
    regressed: bool  # any "worse"
    environments_differ: list[str]  # fingerprint keys that differ: figures may not be comparable


def compare_reports(before: Path, after: Path, max_latency_increase: float = 0.10, max_accuracy_drop: float = 0.005) -> Comparison:
    a, b = _load(before), _load(after)
    changes: list[Change] = []
    b_variants = {v["name"]: v for v in b["variants"]}
    for va in a["variants"]:
        vb = b_variants.get(va["name"])
        if vb is None:
            continue
        la, lb = va["latency"], vb["latency"]
        rel = lb["p50_ms"] / la["p50_ms"] - 1
        ci_a, ci_b = la.get("ci95_ms", {}).get("p50"), lb.get("ci95_ms", {}).get("p50")
        separated_up = ci_a is not None and ci_b is not None and interval_above(ci_b, ci_a)
        separated_down = ci_a is not None and ci_b is not None and interval_above(ci_a, ci_b)
        if rel > max_latency_increase:
            verdict = "worse" if separated_up or ci_a is None else "too close to call"
        elif rel < -max_latency_increase and (separated_down or ci_a is None):
            verdict = "better"
        else:
            verdict = "same"
        changes.append(Change(va["name"], "p50 latency (ms)", la["p50_ms"], lb["p50_ms"], rel, verdict))
        metric = a.get("metric", "accuracy")
        before_figure, after_figure = _primary(va, metric), _primary(vb, metric)
        if before_figure is not None and after_figure is not None and b.get("metric", "accuracy") == metric:
            changes.append(_metric_change(va["name"], before_figure, after_figure, metric, max_accuracy_drop))
    if not changes:
        raise EdgekdError(f"the two reports share no model ({before}: {', '.join(v['name'] for v in a['variants'])}; "
                          f"{after}: {', '.join(b_variants)}); compare two benches of the same run folder or of files with the same names")
    keys = ("cpu", "cores", "onnxruntime", "intra_op_threads", "providers_used")
    differ = [k for k in keys if a.get("environment", {}).get(k) != b.get("environment", {}).get(k)]
    return Comparison(str(before), str(after), changes, any(c.verdict == "worse" for c in changes), differ)


def _primary(variant: dict, metric: str) -> float | None:
    return variant.get("accuracy") if metric == "accuracy" else (variant.get("metrics") or {}).get(metric)


def _metric_change(model: str, before: float, after: float, metric: str, allowed: float) -> Change:
    """The primary metric before and after: top-1 by absolute points, an error metric (rmse) by
    its relative rise, each against `allowed`."""
    from edgekd.task import metric_named

    found = metric_named(metric)
    change = after - before if found.percent else after / max(abs(before), 1e-300) - 1
    better = change if found.higher_is_better else -change
    verdict = "worse" if better < -allowed else "better" if better > allowed else "same"
    return Change(model, found.heading, before, after, change, verdict)


def _load(path: Path) -> dict:
    """A bench report, checked against its own schema (and schema_version) before any figure is read."""
    from edgekd._config import validate
    from edgekd.bench.stage import SCHEMA_VERSION, BenchReport

    data = read_json(Path(path), EdgekdError, "bench report", "give a bench.json written by edgekd bench")
    if not isinstance(data, dict) or "variants" not in data or data.get("schema_version") is None:
        raise EdgekdError(f"{path}: not an edgekd bench report (no schema_version/variants)")
    if not isinstance(data["schema_version"], int) or data["schema_version"] > SCHEMA_VERSION:
        raise EdgekdError(f"{path}: bench report schema_version {data['schema_version']!r}, but this edgekd reads versions up to {SCHEMA_VERSION}; "
                          "bench both models with the same edgekd version")
    validate(BenchReport, data, f"{path}: not a valid bench report", EdgekdError)
    return data
