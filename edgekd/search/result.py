"""What a search found, as search.json and search.png: every candidate with its measured size and
latency on the target, how far it trained, and why it was dropped or chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.search.measure import Measurement
from edgekd.search.train import Trial

RESULT, PLOT = "search.json", "search.png"


@dataclass(frozen=True)
class CandidateRecord:
    key: str
    args: dict[str, Any]  # every keyword argument of the family
    changed: str  # the args that differ from [student] args, for people
    measurement: Measurement | None  # None: it could not be measured (see `dropped`)
    dropped: str | None  # why it was not chosen (None: the winner)
    rounds: list[tuple[int, float]] = field(default_factory=list)  # (epochs, best validation metric) per halving round


@dataclass(frozen=True)
class SearchResult:
    target: str
    family: str
    metric: str  # the task's primary metric the rounds and trials are in
    higher_is_better: bool
    limits: dict[str, Any]  # the size/latency limits after the margin (see select.Limits)
    teacher_bytes: int | None  # the teacher's fp32 ONNX bytes (for min_compression; None: not needed)
    candidates: list[CandidateRecord]
    winner: str  # its key
    winner_args: dict[str, Any]
    hyper: dict[str, float]  # temperature, kd_weight, lr the trials chose (empty: the recipe's)
    trials: list[Trial]
    seconds: dict[str, float]  # measure, teachers, halving, trials, total
    confirmed: str | None = None  # after `edgekd run`: whether the final bench agrees with the measured prediction
    schema_version: int = 1

    def record(self, key: str) -> CandidateRecord:
        return next(c for c in self.candidates if c.key == key)

    @property
    def prediction(self) -> Measurement:
        """The winner's measurement before training: what the final bench should confirm."""
        return self.record(self.winner).measurement


def plot(result: SearchResult, path: Path) -> str | None:
    """search.png: every measured candidate's latency against parameters (left) and the trained ones'
    validation metric (right), with the latency limit and the winner marked. None, or why no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    from edgekd._io import atomic_path

    measured = [c for c in result.candidates if c.measurement]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, chosen, style in (("over a budget", lambda c: (c.dropped or "").startswith("over"), dict(marker="x", color="#bbbbbb")),
                                 ("within budgets", lambda c: not (c.dropped or "").startswith("over") and not c.rounds, dict(marker="o", color="#4c72b0")),
                                 ("trained", lambda c: bool(c.rounds), dict(marker="o", color="#dd8452"))):
        group = [c for c in measured if chosen(c)]
        left.scatter([c.measurement.latency_ms for c in group], [c.measurement.params for c in group], label=label, **style)
    trained = [c for c in measured if c.rounds]
    right.scatter([c.measurement.latency_ms for c in trained], [c.rounds[-1][1] for c in trained], color="#dd8452", label="longest round")
    winner = result.record(result.winner)
    for axis, y in ((left, winner.measurement.params), (right, winner.rounds[-1][1] if winner.rounds else None)):
        if y is not None:
            axis.scatter([winner.measurement.latency_ms], [y], marker="*", s=220, color="#c44e52", label="chosen", zorder=3)
        if result.limits.get("max_latency_ms"):
            axis.axvline(result.limits["max_latency_ms"], color="#c44e52", linestyle="--", linewidth=1, label="latency limit")
        axis.set_xlabel(f"p{result.limits.get('percentile', 90)} latency on {result.target}, ms (as deployed)")
        axis.legend(fontsize=8)
    left.set_ylabel("parameters")
    left.set_yscale("log")
    right.set_ylabel(f"validation {result.metric} (best epoch)")
    figure.suptitle(f"student search: {result.family} on {result.target}")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return None
