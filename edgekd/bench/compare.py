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
    change: float  # relative for latency (+0.10 = 10% slower), absolute for accuracy
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
        if va.get("accuracy") is not None and vb.get("accuracy") is not None:
            delta = vb["accuracy"] - va["accuracy"]
            verdict = "worse" if delta < -max_accuracy_drop else "better" if delta > max_accuracy_drop else "same"
            changes.append(Change(va["name"], "top-1", va["accuracy"], vb["accuracy"], delta, verdict))
    if not changes:
        raise EdgekdError(f"the two reports share no model ({before}: {', '.join(v['name'] for v in a['variants'])}; "
                          f"{after}: {', '.join(b_variants)}); compare two benches of the same run folder or of files with the same names")
    keys = ("cpu", "cores", "onnxruntime", "intra_op_threads", "providers_used")
    differ = [k for k in keys if a.get("environment", {}).get(k) != b.get("environment", {}).get(k)]
    return Comparison(str(before), str(after), changes, any(c.verdict == "worse" for c in changes), differ)


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
