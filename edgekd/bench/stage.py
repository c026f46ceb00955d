"""The bench stage: measure every variant with ONNX Runtime and check the target's budgets.

Works on a run folder (teacher fp32, student fp32, deployed student) or on a bare ONNX file with
optional `--data` and `--teacher`. Imports no torch: a build machine needs onnxruntime only.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from edgekd import runfolder
from edgekd._config import validate
from edgekd._platform import cpu_info
from edgekd.runtime.session import open_session, usable_providers
from edgekd._progress import say
from edgekd.bench.measure import VariantReport, measure_variants
from edgekd.bench.report import REPORT_FILES, verdict_line, write_junit, write_reports
from edgekd.bench.verify import MobileFigures, Verdict, check_budgets, run_passed
from edgekd.runtime.timing import versus_fp32
from edgekd.data import load_recipe_data, load_test_split
from edgekd.errors import DataError, OnnxModelError, TargetError
from edgekd.inputs import Inputs
from edgekd.paired import paired_drop
from edgekd.targets import Target, load_target

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchReport:
    target: str
    deployed: str  # name of the variant the budgets apply to
    passed: bool  # every checked budget holds
    verdicts: list[Verdict]
    variants: list[VariantReport]
    inputs: str  # what the models were fed
    warmup_runs: int
    throughput_batch: int
    providers: list[str]  # execution providers the sessions used, in order
    missing_providers: list[str]  # listed by the target but not in this onnxruntime build
    environment: dict[str, str]
    created: str
    classes: list[str] = field(default_factory=list)  # label names by class index (a run's labels.json), when known
    reference: str = ""  # what "teacher fp32" is (the teacher, the teachers' ensemble, a --teacher file): the budgets' reference
    schema_version: int = SCHEMA_VERSION


def _bench(
    model: Path,
    data: str | None = None,
    target: Target | str | Path | None = None,
    teacher: Path | None = None,
    out: Path | None = None,
    providers: list[str] | None = None,
    memory: bool = True,
    junit: Path | None = None,
    tokenizer: str | None = None,
    max_length: int = 128,
    encoding: str = "utf-8",
) -> BenchReport:
    """Bench a run folder or an ONNX file; write bench.json and bench.md; return the report.

    `providers` overrides the target's execution providers (e.g. to take host figures for a
    mobile target: the report names the providers used). `memory=False` skips the per-model
    child processes that measure session memory. `tokenizer` tokenizes `data = "text:PATH"`
    (every row is test data, truncated at `max_length` tokens) for a bare text classifier ONNX file;
    `encoding` is the text encoding of a `text:` or `csv:` data file.
    """
    model = Path(model)
    coverage = None
    classes: list[str] = []
    reference_note = f"the --teacher model {Path(teacher).name}" if teacher else ""
    if model.is_dir():
        files, default_source, default_target, coverage = _from_run_folder(model)
        labels = model / "labels.json"
        if labels.is_file():
            classes = [str(c) for c in runfolder.read_json(labels).get("classes", [])]
        distilled = model / "distill.json"
        reference_note = runfolder.read_json(distilled).get("reference", "the teacher") if distilled.is_file() else "the teacher"
        out = out or model
    elif model.is_file():
        files = {**({"teacher fp32": Path(teacher)} if teacher else {}), model.name: model}
        default_source, default_target = None, None
        out = out or model.parent
    else:
        raise OnnxModelError(f"not found: {model} (give a run folder or an .onnx file)")
    target = target if isinstance(target, Target) else load_target(target) if target else default_target or load_target("x86-cpu")
    deployed = list(files)[-1]
    source = data or default_source
    providers, missing = usable_providers(list(target.runtime.providers if providers is None else providers))
    sessions = {name: open_session(path, providers, target.runtime) for name, path in files.items()}
    if coverage is None and files[deployed].suffix == ".onnx":
        from edgekd.runtime.coverage import mobile_coverage

        coverage = mobile_coverage(files[deployed])
    x, y, inputs = _inputs(source, sessions[deployed], tokenizer, max_length, encoding)
    if source is not None and not isinstance(source, str):
        max_length = source.max_length  # a run folder's recipe says how long its texts may be

    cfg = target.bench
    say(f"bench: timing {len(sessions)} model(s), {cfg.warmup_runs} warm-up + {cfg.runs} runs each, interleaved; "
        f"sweep over batches {cfg.sweep_batches}" + ("; session memory in child processes" if memory else ""))
    variants, hits = measure_variants(files, sessions, x, y, cfg, providers, memory=memory, max_length=max_length)
    by_name = {v.name: v for v in variants}
    reference = by_name.get("teacher fp32")
    shipped = by_name[deployed]
    fp32 = by_name.get("student fp32")
    quantized = fp32 is not None and fp32 is not shipped  # a run folder whose deployed model is not its fp32 student
    labelled = hits.get(deployed) is not None
    verdicts = check_budgets(
        target.budgets,
        size_bytes=shipped.profile.bytes,
        latency_ms=shipped.latency.percentile(target.budgets.latency_percentile),
        latency_ci=shipped.latency.ci95_ms.get(f"p{target.budgets.latency_percentile}"),
        accuracy=shipped.accuracy,
        teacher_accuracy=reference.accuracy if reference else None,
        teacher_bytes=reference.profile.bytes if reference else None,
        throughput=shipped.throughput,
        mobile=_mobile_figures(target, providers, coverage),
        drop=paired_drop(hits["teacher fp32"], hits[deployed]) if reference and labelled else None,
        versus_fp32=versus_fp32(providers[0], shipped.latency, fp32.latency, shipped.profile.bytes, fp32.profile.bytes) if quantized else None,
        quantization_drop=paired_drop(hits["student fp32"], hits[deployed]) if quantized and labelled else None,
        quantization=target.quantization,
    )
    report = BenchReport(
        target=target.name,
        deployed=deployed,
        passed=run_passed(verdicts),
        verdicts=verdicts,
        variants=variants,
        inputs=inputs,
        warmup_runs=cfg.warmup_runs,
        throughput_batch=cfg.throughput_batch,
        providers=providers,
        missing_providers=missing,
        environment=environment(target, providers),
        classes=classes,
        reference=reference_note,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with contextlib.ExitStack() as all_or_nothing:  # a failed write leaves every output as it was
        all_or_nothing.enter_context(runfolder.rollback_on_failure(Path(out), REPORT_FILES + (runfolder.MANIFEST,)))
        if junit is not None:
            all_or_nothing.enter_context(runfolder.rollback_on_failure(Path(junit).parent, (Path(junit).name,)))
        written = write_reports(report, out)
        if junit is not None:
            write_junit(report, junit)
        if model.is_dir() and Path(out).resolve() == model.resolve():
            runfolder.record(model, "bench", [p.name for p in written])
    say(f"bench: {verdict_line(report)}")
    return report


def _from_run_folder(run_dir: Path):
    """The variants a run folder holds, its data source, its export target and mobile coverage."""
    from edgekd.runtime.coverage import EpCoverage
    from edgekd.export.stage import RESULT, STUDENT_SIMPLIFIED, TEACHER_ONNX

    exported = runfolder.read_json(runfolder.artifact(run_dir, RESULT, "bench"))
    deployed = exported["deployed"]
    files = {
        "teacher fp32": runfolder.artifact(run_dir, TEACHER_ONNX, "bench"),
        "student fp32": runfolder.artifact(run_dir, STUDENT_SIMPLIFIED, "bench"),
    }
    if deployed != STUDENT_SIMPLIFIED:
        label = {"static-qdq": "student int8", "dynamic": "student int8 dynamic", "fp16": "student fp16"}.get(exported["quantized"]["scheme"], "student fp32")
        if deployed.endswith(".ort"):
            label += " (ORT format)"
        files[label] = runfolder.artifact(run_dir, deployed, "bench")
    files = _with_quantization_aware(run_dir, files, deployed)
    recipe = runfolder.load_run_recipe(run_dir)
    saved = runfolder.load_manifest(run_dir).get("target")
    target = validate(Target, saved, f"{run_dir}/manifest.json target", TargetError) if saved else None
    coverage = [EpCoverage(**c) for c in exported.get("mobile", [])]
    return files, recipe.data, target, coverage


def _with_quantization_aware(run_dir: Path, files: dict[str, Path], deployed: str) -> dict[str, Path]:
    """The quantization-aware phase's models beside post-training int8, the shipped one last."""
    if not runfolder.stage_files(run_dir, "qad"):
        return files
    qad = runfolder.read_json(runfolder.artifact(run_dir, "qad.json", "bench"))
    labels = {"qat": "student int8 QAT (labels only)", "qad": "student int8 QAD"}
    extra = {labels[v["role"]]: runfolder.artifact(run_dir, v["file"], "bench") for v in qad["variants"] if v["role"] in labels}
    ships = qad.get("deployed", deployed)
    if ships == deployed:
        *before, shipped = files.items()
        return {**dict(before), **extra, shipped[0]: shipped[1]}
    shipped = next(label for label, path in extra.items() if path.name == ships)
    renamed = {("student int8 (post-training)" if path.name == deployed else label): path for label, path in files.items()}
    return {**renamed, **{k: v for k, v in extra.items() if k != shipped}, shipped: extra[shipped]}


def _mobile_figures(target: Target, providers: list[str], coverage) -> MobileFigures | None:
    """Coverage of the mobile EP the budgets name (or the first one the target lists)."""
    from edgekd.runtime.coverage import MOBILE_PROVIDERS

    ep = target.budgets.mobile_ep or next((MOBILE_PROVIDERS[p] for p in target.runtime.providers if p in MOBILE_PROVIDERS), None)
    if ep is None or not coverage:
        return None
    found = next((c for c in coverage if c.ep == ep), None)
    if found is None:
        return None
    return MobileFigures(ep, found.coverage, found.partitions, found.error)


def _inputs(source, session, tokenizer: str | None = None, max_length: int = 128,
            encoding: str = "utf-8") -> tuple[Inputs | np.ndarray, np.ndarray | None, str]:
    """Real test samples (a source string, or a run's [data] section), or random inputs shaped
    like the model's input when no data is given."""
    if source is not None:
        if isinstance(source, str):
            from edgekd._config import validate
            from edgekd.data.config import DataConfig

            if source.startswith("text:") and not tokenizer:
                raise DataError("text data needs the tokenizer the model was trained with: pass --tokenizer DIR")
            options = validate(DataConfig, {"source": source, "tokenizer": tokenizer, "max_length": max_length, "encoding": encoding},
                               "bench data", DataError)
            x, y = load_test_split(source, options)
            name = source
        else:
            splits = load_recipe_data(source)
            x, y, name = splits.x_test, splits.y_test, source.source
        return x, y, f"{len(x)} test samples from {name}"
    if len(session.get_inputs()) != 1:
        raise DataError(f"the model has {len(session.get_inputs())} inputs ({', '.join(m.name for m in session.get_inputs())}); "
                        "pass --data with real inputs (text: --data text:FILE --tokenizer DIR)")
    meta = session.get_inputs()[0]
    if meta.type != "tensor(float)":
        raise DataError(f"the model's input is {meta.type}; pass --data with real inputs")
    shape = [d if isinstance(d, int) else None for d in meta.shape[1:]]
    if None in shape:
        raise DataError(f"the model's input shape {meta.shape} has free dimensions besides the batch; pass --data with real inputs")
    rng = np.random.default_rng(0)
    return rng.standard_normal((256, *shape)).astype(np.float32), None, "random normal inputs (no --data given; accuracy not measured)"


def environment(target: Target, providers: list[str]) -> dict[str, str]:
    """The fingerprint every report carries: where the figures were measured."""
    from edgekd.runtime.session import available_providers

    return {
        **cpu_info(),
        "providers_used": ", ".join(providers),
        "providers_installed": ", ".join(available_providers()),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "onnxruntime": metadata.version("onnxruntime"),
        "intra_op_threads": str(target.runtime.intra_op_threads),
    }


@functools.wraps(_bench)
def bench(model: Path, *args, **kwargs) -> BenchReport:
    """`_bench`, with a run folder locked while it is benched (see runfolder.locked)."""
    with runfolder.locked(Path(model)) if Path(model).is_dir() else contextlib.nullcontext():
        return _bench(model, *args, **kwargs)
