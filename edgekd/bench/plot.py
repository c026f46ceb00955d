"""bench.png: accuracy against size and against latency, with the target's budget region shaded.

The two trade-offs a deployment decision turns on, one point per variant, the deployed one a star.
Axes always include the budget lines, so the picture shows how much room is left, not just that
there is some. matplotlib is imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

from edgekd._io import atomic_path


def write_plot(report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    budgets = {v.budget: v for v in report.verdicts}
    teacher = next((v for v in report.variants if v.name == "teacher fp32"), None)
    floor = None
    if teacher and teacher.accuracy is not None and "max_accuracy_drop" in budgets:
        floor = (teacher.accuracy - budgets["max_accuracy_drop"].allowed) * 100
    percentile = int(budgets["max_latency_ms"].unit.split("p")[-1].rstrip(")")) if "max_latency_ms" in budgets else 50
    deployed_batch = report.variant(report.deployed_role).latency.batch
    panels = [
        ("size (KiB)", lambda v: v.profile.bytes / 1024, budgets.get("max_size_kb")),
        (f"p{percentile} latency at batch {deployed_batch} (ms)", lambda v: v.latency.percentile(percentile), budgets.get("max_latency_ms")),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, (label, x_of, budget) in zip(axes, panels):
        xs = [x_of(v) for v in report.variants]
        ys = [(v.accuracy or 0) * 100 for v in report.variants]
        x_limit = budget.allowed if budget else None
        low_x, high_x = min(xs + ([x_limit] if x_limit else [])), max(xs + ([x_limit] if x_limit else []))
        low_y, high_y = min(ys + ([floor] if floor is not None else [])), max(ys)
        axis.set_xscale("log")
        axis.set_xlim(low_x / 1.6, high_x * 1.6)
        axis.set_ylim(low_y - 1, high_y + 1)
        if x_limit is not None or floor is not None:
            right = x_limit if x_limit is not None else high_x * 1.6
            bottom = floor if floor is not None else low_y - 1
            axis.fill_between([low_x / 1.6, right], bottom, high_y + 1, color="tab:green", alpha=0.12, label="within budget")
            if x_limit is not None:
                axis.axvline(x_limit, color="tab:green", linestyle="--", linewidth=1)
            if floor is not None:
                axis.axhline(floor, color="tab:green", linestyle="--", linewidth=1)
            axis.legend(loc="lower right", fontsize=8)
        for index, (v, x, y) in enumerate(zip(report.variants, xs, ys)):
            axis.scatter([x], [y], s=90 if v.role is report.deployed_role else 50, zorder=3, marker="*" if v.role is report.deployed_role else "o")
            offset = (6, 6) if index % 2 == 0 else (6, -13)  # alternate, so near points keep readable labels
            axis.annotate(v.name, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(label)
        axis.set_ylabel("test top-1 (%)")
        axis.grid(True, which="major", alpha=0.3)
    fig.suptitle(f"edgekd bench — target {report.target}: {'PASS' if report.passed else 'FAIL'}")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
