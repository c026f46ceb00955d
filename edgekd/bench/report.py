"""bench.json (schema-versioned, stable keys), bench.md (readable tables), bench.png (trade-offs),
and JUnit XML (one test case per budget) for CI systems."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from edgekd._io import atomic_path, write_portable_json, write_text
from edgekd._progress import say
from edgekd.task import metric_named, task

VARIANT_HEADER = ["model", "size KiB", "params", "MACs", "top-1", "top-5", "p50 ms [95% CI]", "p90 ms", "p99 ms", "samples/s", "GFLOP/s", "session MB"]
_COMPACT = [0, 1, 2, 4, 6, 7, 8, 9, 11]  # the terminal's columns: bench.md and bench.json have them all
VERDICT_HEADER = ["budget", "measured", "allowed", "margin", "verdict"]


REPORT_FILES = ("bench.json", "bench.md", "bench.png")


def write_reports(report, out_dir: Path, plot: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    written = [out_dir / name for name in REPORT_FILES[:2]]
    write_portable_json(written[0], report)
    write_text(written[1], to_markdown(report))
    if plot and _can_plot():
        from edgekd.bench.plot import write_plot

        written.append(write_plot(report, out_dir / REPORT_FILES[2]))
    return written


def _can_plot() -> bool:
    """matplotlib is an extra (the device install stays lean): without it, bench.png is left out and said."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        say("bench: bench.png not drawn: matplotlib is not installed (pip install matplotlib, or edgekd[train])")
        return False
    return True


def _second_metric(report):
    """The task's second metric (top-5, pixel accuracy, MAE): the variants table's second metric column."""
    metrics = task(report.task).metrics
    return metrics[1] if len(metrics) > 1 else None


def variant_header(report, compact: bool = False) -> list[str]:
    """The variants table's columns, named after the report's primary metric and its task's second one."""
    second = _second_metric(report)
    named = {"top-1": metric_named(report.metric).heading, "top-5": second.heading if second else "—"}
    header = [named.get(h, h) for h in VARIANT_HEADER]
    return [header[i].replace(" [95% CI]", "") for i in _COMPACT] if compact else header


def variant_rows(report, compact: bool = False) -> list[list[str]]:
    """One row per model: every figure for bench.md, the main ones for the terminal."""
    rows = []
    second = _second_metric(report)
    for v in report.variants:
        ci = None if compact else v.latency.ci95_ms.get("p50")
        rows.append([
            v.name + (" (deployed)" if v.role is report.deployed_role else ""),
            f"{v.profile.bytes / 1024:.1f}",
            f"{v.profile.parameters:,}",
            f"{v.profile.macs:,}",
            "—" if v.primary(report.metric) is None else metric_named(report.metric).show(v.primary(report.metric)),
            second.show(v.metrics[second.name]) if second and second.name in v.metrics else "—",
            f"{v.latency.p50_ms:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{v.latency.p50_ms:.4f}",
            f"{v.latency.p90_ms:.4f}",
            f"{v.latency.p99_ms:.4f}",
            f"{v.throughput:,.0f}",
            f"{v.gflops:.2f}",
            "—" if v.memory is None else f"{v.memory.growth_mb:.1f}",
        ])
    return [[row[i] for i in _COMPACT] for row in rows] if compact else rows


def sweep_rows(report) -> tuple[list[str], list[list[str]]]:
    batches = sorted({int(b) for v in report.variants for b in v.sweep}, key=int)
    header = ["model"] + [f"p50 ms @ batch {b}" for b in batches]
    rows = [[v.name] + [f"{v.sweep[str(b)].p50_ms:.4f}" if str(b) in v.sweep else "—" for b in batches] for v in report.variants if v.sweep]
    return header, rows


def text_rows(report) -> tuple[list[str], list[list[str]]]:
    """Text models: the file split into embedding table and the rest, and p50 per sequence length."""
    if not any(v.sequence_length for v in report.variants):
        return [], []
    lengths = sorted({int(n) for v in report.variants for n in v.length_sweep})
    header = ["model", "embedding KiB", "rest KiB", "embedding share"] + [f"p50 ms @ {n} tokens" for n in lengths]
    rows = []
    for v in report.variants:
        embedding = v.profile.embedding_bytes
        rows.append([v.name, f"{embedding / 1024:.1f}", f"{(v.profile.bytes - embedding) / 1024:.1f}",
                     f"{embedding / max(1, v.profile.bytes):.0%}"]
                    + [f"{v.length_sweep[str(n)].p50_ms:.4f}" if str(n) in v.length_sweep else "—" for n in lengths])
    return header, rows


def verdict_rows(report) -> list[list[str]]:
    rows = []
    for v in report.verdicts:
        if v.passed is None:
            rows.append([v.budget, "—", _fmt(v.allowed), "—", ("FAIL — " if v.blocking else "") + v.note])
            continue
        verdict = ("pass" if v.passed else "FAIL" if v.blocking else "warning") + (f" — {v.note}" if v.note else "")
        rows.append([v.budget, f"{_fmt(v.measured)} {v.unit}", _fmt(v.allowed), f"{v.margin:+.4g}", verdict])
    return rows


def verdict_line(report) -> str:
    failed = [v for v in report.verdicts if v.passed is False and v.blocking]
    unchecked = [v for v in report.verdicts if v.passed is None and v.blocking]
    warned = [v for v in report.verdicts if v.passed is False and not v.blocking]
    checked = [v for v in report.verdicts if v.passed is not None]
    if failed or unchecked:
        return "FAIL: " + "; ".join([f"{v.budget} measured {_fmt(v.measured)} {v.unit}, allowed {_fmt(v.allowed)}" for v in failed]
                                    + [f"{v.budget} {v.note}" for v in unchecked])
    skipped = len(report.verdicts) - len(checked)
    close = sum(v.too_close_to_call for v in report.verdicts)
    extra = (f" ({skipped} not checked)" if skipped else "") + (f" ({close} too close to call)" if close else "") + \
        "".join(f"; warning: {v.budget} {_fmt(v.measured)} {v.unit} ({v.note})" for v in warned)
    return f"PASS: {len(checked) - len(warned)} of {len(checked)} checks of target {report.target} met{extra}" if warned else \
        f"PASS: all {len(checked)} budgets of target {report.target} met{extra}"


def to_markdown(report) -> str:
    deployed = report.variant(report.deployed_role)
    sweep_header, sweep = sweep_rows(report)
    text_header, text = text_rows(report)
    tokens = f" and {deployed.sequence_length} tokens per input" if deployed.sequence_length else ""
    lines = [
        f"# edgekd bench — target `{report.target}`",
        "",
        f"Latency at batch {deployed.latency.batch}{tokens} over {deployed.latency.runs} timed runs after {report.warmup_runs} "
        f"warm-up runs, models interleaved; 95% intervals by bootstrap. Throughput at batch {deployed.throughput_batch}. "
        f"Session memory: peak resident-set growth in a child process. Inputs: {report.inputs}. "
        f"Providers: {', '.join(report.providers)}"
        + (f" (not installed: {', '.join(report.missing_providers)})" if report.missing_providers else "") + "."
        + (f" Classes: {', '.join(f'{i} = {c}' for i, c in enumerate(report.classes))}." if report.classes else "")
        + (f" Budget reference (teacher fp32): {report.reference}." if report.reference else ""),
        "",
        _table(variant_header(report), variant_rows(report)),
        "",
    ]
    if report.task != "classification" and any(v.metrics for v in report.variants):
        names = list(next(v.metrics for v in report.variants if v.metrics))
        lines += [f"## {report.task.capitalize()} metrics (test split)", "",
                  f"Against the teacher and the fp32 student: {task(report.task).paired_method}", "",
                  _table(["model", *(metric_named(n).heading for n in names)],
                         [[v.name, *(metric_named(n).show(v.metrics[n]) if n in v.metrics else "—" for n in names)] for v in report.variants]), ""]
    lines += _postprocessed_section(report)
    lines += _per_class_section(report)
    if sweep:
        lines += ["## Batch sweep", "", _table(sweep_header, sweep), ""]
    if text:
        lines += ["## Text model: size split and sequence-length sweep", "",
                  f"Embedding: the bytes of the tables that token lookups (Gather) read. Sweep at batch {deployed.latency.batch}.", "",
                  _table(text_header, text), ""]
    lines += [
        "## Budgets",
        "",
        _table(VERDICT_HEADER, verdict_rows(report)) if report.verdicts else "The target sets no budgets.",
        "",
        f"**{verdict_line(report)}**",
        "",
        *(f"Note: {note}\n" for note in report.notes),
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in report.environment.items()),
        "",
    ]
    return "\n".join(lines)


def _postprocessed_section(report) -> list[str]:
    """Detection: each model's latency alone and with the task's post-processing, timed interleaved."""
    timed = [v for v in report.variants if v.postprocessed]
    if not timed:
        return []
    what = task(report.task).postprocess[1]
    rows = [[v.name, f"{v.latency.p50_ms:.4f}", f"{v.postprocessed.p50_ms:.4f}", f"{v.postprocessed.p90_ms:.4f}",
             f"{v.postprocessed.p50_ms - v.latency.p50_ms:+.4f}", f"{v.nms_graph.p50_ms:.4f}" if v.nms_graph else "—"] for v in timed]
    return [f"## Latency with {what} (batch {timed[0].postprocessed.batch})", "",
            f"The model alone, the model followed by {what} in numpy (edgekd.detection.boxes.decode, what an app runs), and, "
            "where export wrote one ([export] include_nms), the file with ONNX NonMaxSuppression inside, timed interleaved; "
            "the latency budget holds the second.", "",
            _table(["model", "model p50 ms", f"with {what} p50 ms", f"with {what} p90 ms", "added p50 ms", "NMS in the graph p50 ms"], rows), ""]


def _per_class_section(report) -> list[str]:
    """Segmentation and detection: each class's IoU (AP) per model (a class the mean leaves out: —)."""
    measured = [v for v in report.variants if v.per_class]
    kind = task(report.task)
    if not measured or kind.per_class is None:
        return []
    count = max(len(v.per_class) for v in measured)
    names = [report.classes[i] if i < len(report.classes) else str(i) for i in range(count)]
    rows = [[v.name, *("—" if i >= len(v.per_class) or v.per_class[i] is None else f"{v.per_class[i]:.2%}" for i in range(count))]
            for v in measured]
    return [f"## {kind.per_class[0]} per class (test split)", "",
            f"{kind.primary.heading} is {kind.per_class[2]}.", "",
            _table(["model", *names], rows), ""]


def write_junit(report, path: Path) -> Path:
    """One <testcase> per budget: CI systems show each budget as its own passed/failed check."""
    failures = sum(v.passed is not True and v.blocking for v in report.verdicts)
    skipped = sum(v.passed is None and not v.blocking for v in report.verdicts)
    suite = ElementTree.Element("testsuite", name=f"edgekd budgets ({report.target})", tests=str(len(report.verdicts)),
                                failures=str(failures), skipped=str(skipped), errors="0", timestamp=report.created)
    properties = ElementTree.SubElement(suite, "properties")
    for key, value in report.environment.items():
        ElementTree.SubElement(properties, "property", name=key, value=str(value))
    for v in report.verdicts:
        case = ElementTree.SubElement(suite, "testcase", classname=f"edgekd.{report.target}", name=v.budget)
        detail = f"{v.budget}: measured {_fmt(v.measured)} {v.unit}, allowed {_fmt(v.allowed)}" + (f"; {v.note}" if v.note else "")
        if v.passed is not True and v.blocking:
            ElementTree.SubElement(case, "failure", message=detail).text = detail
        elif v.passed is None:
            ElementTree.SubElement(case, "skipped", message=v.note)
        else:
            ElementTree.SubElement(case, "system-out").text = detail
    with atomic_path(Path(path)) as tmp:
        ElementTree.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    return Path(path)


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"

