"""bench.png: accuracy against size and against latency, with the target's budget region shaded.

The two trade-offs a deployment decision turns on, one point per variant. matplotlib is imported
here only, with the non-interactive Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

from edgekd._io import atomic_path


def write_plot(report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = {v.budget: v.allowed for v in report.verdicts}
    teacher = next((v for v in report.variants if v.name == "teacher fp32"), None)
    floor = None
    if teacher and teacher.accuracy is not None and "max_accuracy_drop" in budgets:
        floor = (teacher.accuracy - budgets["max_accuracy_drop"]) * 100
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = [
        (axes[0], "size (KiB)", lambda v: v.profile.bytes / 1024, budgets.get("max_size_kb")),
        (axes[1], f"p50 latency at batch {report.variants[-1].latency.batch} (ms)", lambda v: v.latency.p50_ms, budgets.get("max_latency_ms")),
    ]
    for axis, label, x_of, x_budget in panels:
        for v in report.variants:
            y = (v.accuracy or 0) * 100
            axis.scatter([x_of(v)], [y], s=60, zorder=3, marker="*" if v.name == report.deployed else "o")
            axis.annotate(v.name, (x_of(v), y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("test top-1 (%)")
        axis.grid(True, which="both", alpha=0.3)
        if x_budget is not None or floor is not None:
            left, right = axis.get_xlim()
            bottom, top = axis.get_ylim()
            x_hi = min(x_budget, right) if x_budget is not None else right
            y_lo = max(floor, bottom) if floor is not None else bottom
            axis.axvspan(left, x_hi, ymin=(y_lo - bottom) / (top - bottom), ymax=1, color="tab:green", alpha=0.12, label="within budget")
            axis.set_xlim(left, right)
            axis.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"edgekd bench — target {report.target}: {'PASS' if report.passed else 'FAIL'}")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
