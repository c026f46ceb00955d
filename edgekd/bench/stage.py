"""The bench stage: measure models side by side with ONNX Runtime and check a target's budgets.

`bench_models` is the stage itself: ONNX files by role in, a typed report out, nothing written.
Run folders and bare files reach it through edgekd.folders.bench (`edgekd bench`). Imports no
torch: a build machine needs onnxruntime only.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from edgekd._platform import cpu_info
from edgekd._progress import say
from edgekd.bench.measure import VariantReport, measure_variants
from edgekd.bench.inputs import random_inputs
from edgekd.bench.verify import BudgetFigures, MobileFigures, Verdict, check_budgets, run_passed
from edgekd.errors import DataError
from edgekd.inputs import Inputs
from edgekd.task import task as task_entry
from edgekd.roles import Role, display_name
from edgekd.runtime.coverage import MOBILE_PROVIDERS, EpCoverage, mobile_coverage
from edgekd.runtime.session import open_session, usable_providers
from edgekd.runtime.timing import versus_fp32
from edgekd.targets import Target

SCHEMA_VERSION = 3  # 2: variants carry their role, the report its deployed_role; 3: task, metric, per-variant metrics


@dataclass(frozen=True)
class BenchReport:
    target: str
    deployed: str  # display name of the variant the budgets apply to
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
    deployed_role: Role = Role.model  # the role of the variant the budgets apply to
    task: str = "classification"  # the task table's entry the models were scored by
    metric: str = "accuracy"  # the primary metric each variant's `accuracy` holds (rmse for regression)
    notes: list[str] = field(default_factory=list)  # what the reader must know about the models (a quantization-aware phase skipped, and why)
    schema_version: int = SCHEMA_VERSION

    def variant(self, role: Role) -> VariantReport | None:
        """The measured figures of the model of `role`, if it was benched."""
        return next((v for v in self.variants if v.role is role), None)


def bench_models(
    models: Mapping[Role, Path],
    target: Target,
    x: Inputs | np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    deployed: Role,
    names: Mapping[Role, str] | None = None,
    providers: Sequence[str] | None = None,
    memory: bool = True,
    max_length: int | None = None,
    coverage: Sequence[EpCoverage] | None = None,
    classes: Sequence[str] = (),
    reference: str = "",
    inputs_note: str = "",
    task: str = "classification",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    with_nms: Path | None = None,
) -> BenchReport:
    """Measure `models` (ONNX or ORT files by role) on the test inputs `x` (labels `y`, when known)
    and check `target`'s budgets on the `deployed` one; write nothing.

    The teacher (if given) is the reference of the accuracy-drop and compression budgets, the fp32
    student that of the quantization budgets. Without `x`, random inputs shaped like the deployed
    model's input are timed and accuracy is not measured. `providers` overrides the target's
    execution providers; `memory=False` skips the child processes that measure session memory;
    `coverage` is the deployed model's NNAPI/CoreML coverage when already known (else computed).
    `names` are the display names (default: made from the roles). `task` says how outputs are
    scored against `y` (top-1 for classification; RMSE, MAE and R² for regression). Without `x`,
    `input_shapes` (else the target's `[bench] input_shapes`) size the random inputs' free dimensions.
    `with_nms` (detection): the deployed model with NMS inside, timed beside it."""
    deployed = Role(deployed)
    roles = {Role(r): Path(p) for r, p in models.items()}
    if deployed not in roles:
        raise DataError(f"the deployed role '{deployed.value}' is not among the models given ({', '.join(r.value for r in roles)})")
    ordered = {**{r: p for r, p in roles.items() if r != deployed}, deployed: roles[deployed]}  # the shipped one last
    names = {r: {Role(k): v for k, v in (names or {}).items()}.get(r) or display_name(r, file_name=p.name) for r, p in ordered.items()}
    providers, missing = usable_providers(list(target.runtime.providers if providers is None else providers))
    sessions = {role: open_session(path, providers, target.runtime) for role, path in ordered.items()}
    if coverage is None and ordered[deployed].suffix == ".onnx":
        coverage = mobile_coverage(ordered[deployed])
    cfg = target.bench
    if x is None:
        largest = max([*cfg.sweep_batches, cfg.latency_batch, cfg.throughput_batch])
        (x, inputs_note), y = random_inputs(sessions[deployed], dict(cfg.input_shapes, **(input_shapes or {})), largest), None
    say(f"bench: timing {len(sessions)} model(s), {cfg.warmup_runs} warm-up + {cfg.runs} runs each, interleaved; "
        f"sweep over batches {cfg.sweep_batches}" + ("; session memory in child processes" if memory else ""))
    in_graph = {deployed: open_session(with_nms, providers, target.runtime)} if with_nms else None
    variants, outcomes = measure_variants(ordered, sessions, names, x, y, cfg, providers, memory=memory, max_length=max_length, task_name=task,
                                          nms_sessions=in_graph)
    verdicts = check_budgets(target.budgets, _figures(variants, outcomes, deployed, target, providers, coverage, task), target.quantization)
    return BenchReport(
        target=target.name, deployed=names[deployed], passed=run_passed(verdicts), verdicts=verdicts, variants=variants,
        inputs=inputs_note or f"{len(x)} test samples", warmup_runs=cfg.warmup_runs, throughput_batch=cfg.throughput_batch,
        providers=providers, missing_providers=missing, environment=environment(target, providers),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), classes=list(classes), reference=reference,
        deployed_role=deployed, task=task, metric=task_entry(task).primary.name,
    )


def _figures(variants: list[VariantReport], hits: dict[Role, np.ndarray | None], deployed: Role, target: Target,
             providers: list[str], coverage: Sequence[EpCoverage] | None, task: str) -> BudgetFigures:
    """What the budgets are checked on: the deployed model, against the teacher and the fp32 student."""
    by_role = {v.role: v for v in variants}
    shipped, reference, fp32 = by_role[deployed], by_role.get(Role.teacher), by_role.get(Role.student)
    quantized = fp32 is not None and deployed is not Role.student  # the deployed model is not the fp32 student
    labelled = hits.get(deployed) is not None
    percentile = target.budgets.latency_percentile
    paired, metric = task_entry(task).paired, task_entry(task).primary.name
    timed = shipped.postprocessed or shipped.latency  # detection: with decode + NMS, as an app waits for it
    return BudgetFigures(
        size_bytes=shipped.profile.bytes,
        latency_ms=timed.percentile(percentile),
        latency_ci=timed.ci95_ms.get(f"p{percentile}"),
        latency_with=task_entry(task).postprocess[1] if shipped.postprocessed else "",
        accuracy=shipped.primary(metric),
        teacher_accuracy=reference.primary(metric) if reference else None,
        teacher_bytes=reference.profile.bytes if reference else None,
        throughput=shipped.throughput,
        mobile=_mobile_figures(target, providers, coverage),
        drop=paired(hits[Role.teacher], hits[deployed]) if reference and labelled else None,
        versus_fp32=versus_fp32(providers[0], shipped.latency, fp32.latency, shipped.profile.bytes, fp32.profile.bytes) if quantized else None,
        quantization_drop=paired(hits[Role.student], hits[deployed]) if quantized and labelled else None,
        task=task,
    )


def _mobile_figures(target: Target, providers: list[str], coverage: Sequence[EpCoverage] | None) -> MobileFigures | None:
    """Coverage of the mobile EP the budgets name (or the first one the target lists)."""
    ep = target.budgets.mobile_ep or next((MOBILE_PROVIDERS[p] for p in target.runtime.providers if p in MOBILE_PROVIDERS), None)
    found = next((c for c in coverage or () if c.ep == ep), None)
    if found is None:
        return None
    return MobileFigures(ep, found.coverage, found.partitions, found.error)


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
