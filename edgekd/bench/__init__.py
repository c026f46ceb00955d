"""Bench: latency, throughput, accuracy and graph profile per variant; budgets → verdicts."""

from edgekd.bench.stage import BenchReport, bench

__all__ = ["BenchReport", "bench"]
