"""bench.png: accuracy against size and against latency, with the target's budget region shaded.

The two trade-offs a deployment decision turns on, one point per variant, the deployed one a star.
Axes always include the budget lines, so the picture shows how much room is left, not just that
there is some. matplotlib is imported here only, with the Agg backend (no display needed).
"""

from __future__ import annotations

import re

from pathlib import Path

from edgekd._io import atomic_path
from edgekd.roles import Role
from edgekd.task import task


def write_plot(report, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    budgets = {v.budget: v for v in report.verdicts}
    kind = task(report.task)
    metric, scale = kind.primary, 100 if kind.primary.percent else 1
    teacher = report.variant(Role.teacher)
    limit = None  # the metric's budget line: the lowest accuracy, or the highest RMSE, the drop budget allows
    reference = teacher.primary(metric.name) if teacher else None
    if reference is not None and kind.drop_budget in budgets:
        limit = kind.limit(reference, budgets[kind.drop_budget].allowed) * scale
    percentile = int(re.search(r"\(p(\d+)", budgets["max_latency_ms"].unit).group(1)) if "max_latency_ms" in budgets else 50
    deployed_batch = report.variant(report.deployed_role).latency.batch
    post = f", with {kind.postprocess[1]}" if any(v.postprocessed for v in report.variants) else ""  # what the latency budget holds
    panels = [
        ("size (KiB)", lambda v: v.profile.bytes / 1024, budgets.get("max_size_kb")),
        (f"p{percentile} latency at batch {deployed_batch}{post} (ms)", lambda v: (v.postprocessed or v.latency).percentile(percentile),
         budgets.get("max_latency_ms")),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, (label, x_of, budget) in zip(axes, panels):
        xs = [x_of(v) for v in report.variants]
        ys = [(v.primary(metric.name) or 0) * scale for v in report.variants]
        x_limit = budget.allowed if budget else None
        low_x, high_x = min(xs + ([x_limit] if x_limit else [])), max(xs + ([x_limit] if x_limit else []))
        low_y, high_y = min(ys + ([limit] if limit is not None else [])), max(ys + ([limit] if limit is not None else []))
        pad = 1 if metric.percent else 0.05 * (high_y - low_y or abs(high_y) or 1)
        axis.set_xscale("log")
        axis.set_xlim(low_x / 1.6, high_x * 1.6)
        axis.set_ylim(low_y - pad, high_y + pad)
        if x_limit is not None or limit is not None:
            right = x_limit if x_limit is not None else high_x * 1.6
            bottom, top = low_y - pad, high_y + pad
            if limit is not None:
                bottom, top = (limit, top) if metric.higher_is_better else (bottom, limit)
            axis.fill_between([low_x / 1.6, right], bottom, top, color="tab:green", alpha=0.12, label="within budget")
            if x_limit is not None:
                axis.axvline(x_limit, color="tab:green", linestyle="--", linewidth=1)
            if limit is not None:
                axis.axhline(limit, color="tab:green", linestyle="--", linewidth=1)
            axis.legend(loc="lower right", fontsize=8)
        for index, (v, x, y) in enumerate(zip(report.variants, xs, ys)):
            axis.scatter([x], [y], s=90 if v.role is report.deployed_role else 50, zorder=3, marker="*" if v.role is report.deployed_role else "o")
            offset = (6, 6) if index % 2 == 0 else (6, -13)  # alternate, so near points keep readable labels
            axis.annotate(v.name, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(label)
        axis.set_ylabel(f"test {metric.heading}" + (" (%)" if metric.percent else ""))
        axis.grid(True, which="major", alpha=0.3)
    fig.suptitle(f"edgekd bench — target {report.target}: {'PASS' if report.passed else 'FAIL'}")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
