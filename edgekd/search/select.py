"""Which measured candidates deserve training: within the target's budgets (with a margin), then
the frontier of capacity against measured latency. Pure functions over measurements."""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.search.measure import Measurement
from edgekd.targets import Target, size_limit


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
    allowed = size_limit(target, teacher_bytes)
    cap = (allowed[0] * keep, f"{keep:.0%} of {allowed[1]}") if allowed else (None, "")
    latency = budgets.max_latency_ms * keep if budgets.max_latency_ms is not None else None
    return Limits(cap[0], latency, budgets.latency_percentile, margin, cap[1])


def frontier(measured: dict[str, Measurement]) -> list[str]:
    """The candidates no other one beats on capacity and measured latency, fastest first. Capacity
    has two axes, parameters and multiply-accumulates: a deeper convnet can hold fewer parameters
    and still learn more (on digits, cnn [16, 32] beats cnn [32] by 2 points with half the
    parameters), so one is beaten only by a candidate with at least as many of both that is no
    slower. Size is a budget, not an axis: within it, capacity is what buys accuracy."""
    def beats(o: Measurement, mine: Measurement) -> bool:
        at_least = o.params >= mine.params and o.macs >= mine.macs and o.latency_ms <= mine.latency_ms
        return at_least and (o.params > mine.params or o.macs > mine.macs or o.latency_ms < mine.latency_ms)

    def beaten(key: str) -> bool:
        return any(beats(o, measured[key]) for k, o in measured.items() if k != key)

    return sorted((k for k in measured if not beaten(k)), key=lambda k: (measured[k].latency_ms, measured[k].params))


def beaten_by(key: str, measured: dict[str, Measurement], front: list[str]) -> str:
    """The frontier candidate that beats `key` (off the frontier), for the reason given."""
    mine = measured[key]
    return next(k for k in front if measured[k].params >= mine.params and measured[k].macs >= mine.macs
                and measured[k].latency_ms <= mine.latency_ms)


def spread(keys: list[str], count: int) -> list[str]:
    """`count` of `keys` (ordered fastest first) evenly over the range, the fastest and slowest kept."""
    if len(keys) <= count:
        return list(keys)
    if count == 1:
        return [keys[-1]]
    step = (len(keys) - 1) / (count - 1)
    return [keys[round(i * step)] for i in range(count)]
