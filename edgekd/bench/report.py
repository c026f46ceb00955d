"""bench.json (schema-versioned, stable keys) and bench.md (the same figures as tables)."""

from __future__ import annotations

from pathlib import Path

from edgekd._io import write_json, write_text


def write_reports(report, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "bench.json", report)
    write_text(out_dir / "bench.md", to_markdown(report))
    return out_dir / "bench.json", out_dir / "bench.md"


def variant_rows(report) -> list[list[str]]:
    """One row per model: the figures shown in bench.md and on the terminal."""
    rows = []
    for v in report.variants:
        rows.append([
            v.name + (" (deployed)" if v.name == report.deployed else ""),
            f"{v.profile.bytes / 1024:.1f}",
            f"{v.profile.parameters:,}",
            "—" if v.accuracy is None else f"{v.accuracy:.2%}",
            f"{v.latency.p50_ms:.4f}",
            f"{v.latency.p90_ms:.4f}",
            f"{v.latency.p99_ms:.4f}",
            f"{v.throughput:,.0f}",
        ])
    return rows


VARIANT_HEADER = ["model", "size KiB", "params", "top-1", "p50 ms", "p90 ms", "p99 ms", "samples/s"]
VERDICT_HEADER = ["budget", "measured", "allowed", "margin", "verdict"]


def verdict_rows(report) -> list[list[str]]:
    rows = []
    for v in report.verdicts:
        if v.passed is None:
            rows.append([v.budget, "—", _fmt(v.allowed), "—", v.note])
            continue
        rows.append([v.budget, f"{_fmt(v.measured)} {v.unit}", _fmt(v.allowed), f"{v.margin:+.4g}", "pass" if v.passed else "FAIL"])
    return rows


def verdict_line(report) -> str:
    failed = [v for v in report.verdicts if v.passed is False]
    checked = [v for v in report.verdicts if v.passed is not None]
    if failed:
        return "FAIL: " + "; ".join(f"{v.budget} measured {_fmt(v.measured)} {v.unit}, allowed {_fmt(v.allowed)}" for v in failed)
    skipped = len(report.verdicts) - len(checked)
    extra = f" ({skipped} not checked)" if skipped else ""
    return f"PASS: all {len(checked)} budgets of target {report.target} met{extra}"


def to_markdown(report) -> str:
    lines = [
        f"# edgekd bench — target `{report.target}`",
        "",
        f"Batch {report.variants[0].latency.batch} latency over {report.variants[0].latency.runs} timed runs "
        f"after {report.warmup_runs} warm-up runs, models interleaved; throughput at batch {report.throughput_batch}. "
        f"Inputs: {report.inputs}.",
        "",
        _table(VARIANT_HEADER, variant_rows(report)),
        "",
        "## Budgets",
        "",
        _table(VERDICT_HEADER, verdict_rows(report)) if report.verdicts else "The target sets no budgets.",
        "",
        f"**{verdict_line(report)}**",
        "",
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in report.environment.items()),
        "",
    ]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
