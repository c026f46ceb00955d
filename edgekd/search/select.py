"""Which measured candidates deserve training: within the target's budgets (with a margin), then
the frontier of capacity against measured latency. Pure functions over measurements."""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.search.measure import Measurement
from edgekd.targets import Target


@dataclass(frozen=True)
class Limits:
    """What a candidate must measure within: the target's budgets less the margin."""

    max_bytes: float | None  # the deployed file (max_size_kb, and teacher bytes / min_compression)
    max_latency_ms: float | None  # at `percentile`
    percentile: int
    margin: float
    size_rule: str = ""  # which budget set max_bytes, for the reasons given

    def over(self, m: Measurement) -> str | None:
        """Why `m` misses a limit (None: it fits)."""
        reasons = []
        if self.max_bytes is not None and m.deployed_bytes > self.max_bytes:
            reasons.append(f"{m.deployed_bytes / 1024:.1f} KiB > {self.max_bytes / 1024:.1f} KiB ({self.size_rule})")
        if self.max_latency_ms is not None and m.latency_ms > self.max_latency_ms:
            reasons.append(f"p{self.percentile} {m.latency_ms:.3f} ms > {self.max_latency_ms:.3f} ms "
                           f"({1 - self.margin:.0%} of max_latency_ms)")
        return "; ".join(reasons) or None

    def excess(self, m: Measurement) -> float:
        """How far over its worst limit `m` is (1.0: exactly at it): what "closest" means."""
        ratios = [0.0]
        if self.max_bytes is not None:
            ratios.append(m.deployed_bytes / self.max_bytes)
        if self.max_latency_ms is not None:
            ratios.append(m.latency_ms / self.max_latency_ms)
        return max(ratios)


def limits(target: Target, margin: float, teacher_bytes: int | None) -> Limits:
    """The size and latency limits of `target` with `margin` kept in reserve."""
    budgets, keep = target.budgets, 1 - margin
    caps = []
    if budgets.max_size_kb is not None:
        caps.append((budgets.max_size_kb * 1024 * keep, f"{keep:.0%} of max_size_kb"))
    if budgets.min_compression is not None and teacher_bytes:
        caps.append((teacher_bytes / budgets.min_compression * keep, f"{keep:.0%} of the teacher's bytes / min_compression"))
    cap = min(caps, default=(None, ""))
    latency = budgets.max_latency_ms * keep if budgets.max_latency_ms is not None else None
    return Limits(cap[0], latency, budgets.latency_percentile, margin, cap[1])


def frontier(measured: dict[str, Measurement]) -> list[str]:
    """The candidates no other one beats on both capacity (parameters) and measured latency, fastest
    first. Size is a budget, not an axis: within it, more parameters are what buys accuracy."""
    def beaten(key: str) -> bool:
        mine = measured[key]
        return any(o.params >= mine.params and o.latency_ms <= mine.latency_ms and (o.params > mine.params or o.latency_ms < mine.latency_ms)
                   for k, o in measured.items() if k != key)

    return sorted((k for k in measured if not beaten(k)), key=lambda k: (measured[k].latency_ms, measured[k].params))


def spread(keys: list[str], count: int) -> list[str]:
    """`count` of `keys` (ordered fastest first) evenly over the range, the fastest and slowest kept."""
    if len(keys) <= count:
        return list(keys)
    if count == 1:
        return [keys[-1]]
    step = (len(keys) - 1) / (count - 1)
    return [keys[round(i * step)] for i in range(count)]
