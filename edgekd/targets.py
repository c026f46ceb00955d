"""Deployment target profiles: where the model will run and the budgets it must meet.

Targets are data, not code. Each is a TOML file under `targets/` (shipped inside the package as
`edgekd/_targets` in a wheel) that names its execution providers, threads, quantization scheme and
budgets, with the reason for each choice written beside it. A user's own file works the same way
through `--target PATH`.
"""

from __future__ import annotations

import difflib
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from edgekd._config import CONFIG, Bool, Count, Float, Int, read_toml, validate
from edgekd.errors import TargetError


# Upper bounds are sanity limits: far beyond any real setting, they catch a slip of the keyboard
# (`runs = 3000000`) before it becomes a bench that never ends.
Threads = Annotated[int, Strict(), Field(ge=0, le=1024)]
Batch = Annotated[int, Strict(), Field(ge=1, le=65536)]
Tokens = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]
Provider = Annotated[str, Field(min_length=1)]


class Scheme(str, Enum):
    static_qdq = "static-qdq"  # int8 QDQ, activations calibrated on training data
    dynamic = "dynamic"  # int8 weights, activations quantized at run time (no calibration)
    fp16 = "fp16"  # half-precision weights and compute (GPU execution providers)
    none = "none"  # deploy the fp32 model as is
    auto = "auto"  # bench the candidates on the target's provider, keep the fastest within budget


class SlowerPolicy(str, Enum):
    """What a quantized artifact that is slower or larger than its fp32 model leads to."""

    warn = "warn"  # deploy it; export warns and the bench reports the verdict without failing the run
    fallback = "fallback"  # deploy the fp32 model instead (export measures on this machine)
    fail = "fail"  # deploy it, and the bench fails the run (exit 1)
    # deploy the faster of the two among those that meet the target's size budgets (max_size_kb,
    # min_compression): fp32 when it is faster and small enough, int8 when a size budget needs it
    fastest = "fastest"


class ArtifactFormat(str, Enum):
    onnx = "onnx"  # a .onnx file, for any ONNX Runtime build
    ort = "ort"  # ONNX Runtime's mobile format + the operator list for a reduced-size build


class QuantType(str, Enum):
    int8 = "int8"
    uint8 = "uint8"


class CalibrationMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


@dataclass(config=CONFIG)
class RuntimeConfig:
    # ONNX Runtime execution providers in preference order; the first must be installed.
    providers: list[Provider] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)
    # Intra-op threads of the session (0 lets ONNX Runtime pick: all cores).
    intra_op_threads: Threads = 1
    inter_op_threads: Threads = 1
    # ONNX Runtime's graph optimisation level for the session.
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    # "parallel" runs independent branches of the graph concurrently (inter_op_threads).
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    # What the device loads: a .onnx file, or an .ort file for ONNX Runtime Mobile.
    format: ArtifactFormat = ArtifactFormat.onnx
    # CPU family the .ort file's kernels are optimised for ("arm" or "amd64"; format "ort" only).
    ort_platform: Optional[Literal["arm", "amd64"]] = None
    # Options of each execution provider, by its name (string values, as ONNX Runtime takes them):
    # e.g. { CoreMLExecutionProvider = { ModelFormat = "MLProgram" } }.
    provider_options: dict[str, dict[str, str]] = Field(default_factory=dict)
    why: str = ""

    @model_validator(mode="after")
    def _parallel_needs_threads(self) -> "RuntimeConfig":
        if self.execution_mode == "parallel" and self.inter_op_threads == 1:
            # ONNX Runtime would silently run it sequentially: the figures would lie about the setting.
            raise ValueError('execution_mode "parallel" needs inter_op_threads other than 1 (0 lets ONNX Runtime pick)')
        if self.ort_platform is not None and self.format is not ArtifactFormat.ort:
            raise ValueError('ort_platform applies only to format = "ort"; remove it or set format = "ort"')

        problem = provider_names_problem(self.providers)
        if problem:
            raise ValueError(problem)
        for name in self.provider_options:
            if name not in self.providers:
                raise ValueError(f"provider_options names '{name}', which providers does not list; add it to providers or remove its options")
        return self


@dataclass(config=CONFIG)
class ExportConfig:
    # ONNX opset to export with (18 is what torch's dynamo exporter targets natively).
    opset: Int = Field(18, ge=13, le=23)
    # Largest |PyTorch − ONNX Runtime| output difference accepted on real inputs. A difference
    # beyond it still passes when it is small against the outputs' scale (largest |logit|):
    # fp32 kernels of a large net differ by ~1e-7 of its logits, a wrong export by ~1.
    parity_max_abs: Float = Field(1e-4, gt=0)
    parity_max_mean_abs: Float = Field(1e-5, gt=0)
    parity_max_rel: Float = Field(1e-4, gt=0, le=1, description="max |Δ| / largest |logit| accepted when max |Δ| exceeds parity_max_abs")
    # Share of samples whose top-1 class must agree between PyTorch and ONNX Runtime.
    parity_min_agreement: Float = Field(1.0, ge=0, le=1)
    # A fixed batch size instead of a dynamic batch axis (mobile EPs need fixed shapes).
    fixed_batch: Optional[Batch] = None


@dataclass(config=CONFIG)
class QuantizationConfig:
    scheme: Scheme = Scheme.static_qdq
    per_channel: Bool = True
    activation_type: QuantType = QuantType.int8
    weight_type: QuantType = QuantType.int8
    calibration_method: CalibrationMethod = CalibrationMethod.minmax
    # Quantize weights to 7 bits: avoids u8·s8 overflow in AVX2/AVX-512 kernels without VNNI.
    reduce_range: Bool = False
    # Training images used to calibrate activation ranges (never test images).
    calibration_samples: Int = Field(256, ge=1, le=1_000_000)
    # Largest validation top-1 drop vs the fp32 student that quantization may cost (regression:
    # the relative RMSE rise, 0.01 = 1% higher); beyond it, nodes are excluded from quantization,
    # worst quantization error first.
    max_drop_vs_fp32: Float = Field(0.01, ge=0, le=1)
    # At most this many nodes are excluded before giving up (an int8 model that is mostly fp32
    # is no longer worth deploying).
    max_excluded_nodes: Int = Field(8, ge=0, le=100_000)
    # A fixed scheme's artifact is timed against the fp32 model (interleaved, this machine, the
    # target's provider); when it is slower or larger, ship the "fastest" one that meets the size
    # budgets (the default: int8 only where fp32 misses one), "warn" and ship the quantized one
    # anyway (a target that must run int8, e.g. on an NPU), "fallback" to fp32, or "fail" the bench.
    if_slower_than_fp32: SlowerPolicy = SlowerPolicy.fastest
    # Always fine-tune the student through this int8 model against the teacher in `edgekd run`
    # (quantization-aware distillation), not only when post-training int8 misses max_drop_vs_fp32.
    quantization_aware: Bool = False
    why: str = ""

    @model_validator(mode="after")
    def _types_ort_can_pair(self) -> "QuantizationConfig":
        # ONNX Runtime's quantizer refuses this pair outright (its kernels take u8 or s8 weights
        # with u8 activations, and s8 weights with s8 activations); say so before any training.
        if self.activation_type is QuantType.int8 and self.weight_type is QuantType.uint8:
            raise ValueError('activation_type = "int8" with weight_type = "uint8" is a pair ONNX Runtime cannot quantize; '
                             'use weight_type = "int8", or activation_type = "uint8"')
        return self


@dataclass(config=CONFIG)
class BenchConfig:
    # Batch size for the latency figures, and for throughput.
    latency_batch: Batch = 1
    throughput_batch: Batch = 64
    # Runs before timing starts (excluded from statistics), then timed runs.
    warmup_runs: Int = Field(20, ge=0, le=1_000_000)
    runs: Int = Field(300, ge=10, le=1_000_000)
    # Keep timing until at least this many seconds have passed (0: the run count alone decides).
    min_seconds: Float = Field(0.0, ge=0, le=3600)
    # Batch sizes for the latency sweep (p50 and its interval at each).
    sweep_batches: list[Batch] = Field(default_factory=lambda: [1, 8, 64])
    # Text models: tokens per input for the latency, throughput and batch-sweep figures (default:
    # the median length of the real test texts), and the lengths of the sequence sweep.
    sequence_length: Optional[Tokens] = Field(None, description="text: tokens per input for latency (default: median test length)")
    sweep_lengths: list[Tokens] = Field(default_factory=lambda: [16, 64, 128], description="text: sequence lengths of the latency sweep")
    # A bare model benched without data: the sizes of its inputs' free dimensions, per input name,
    # e.g. { x = [3, 640, 640] } (or with the batch: [1, 3, 640, 640]); `edgekd bench --shape` wins.
    input_shapes: dict[str, list[Count]] = Field(default_factory=dict, description="without data: each input's dims, e.g. { x = [3, 640, 640] }")

    @model_validator(mode="after")
    def _sweeps_list_each_once(self) -> "BenchConfig":
        for key, values in (("sweep_batches", self.sweep_batches), ("sweep_lengths", self.sweep_lengths)):
            if len(set(values)) != len(values):
                raise ValueError(f"{key} lists a value twice ({values}); list each once")
        return self


@dataclass(config=CONFIG)
class Budgets:
    # Each budget is optional; an absent one is not checked.
    max_size_kb: Optional[Float] = Field(None, gt=0, description="deployed file size, KiB")
    max_latency_ms: Optional[Float] = Field(None, gt=0, description="latency at [bench] latency_batch, ms, at latency_percentile")
    latency_percentile: Literal[50, 90, 99] = Field(90, description="which percentile max_latency_ms limits")
    max_accuracy_drop: Optional[Float] = Field(None, ge=0, le=1, description="classification: teacher top-1 minus deployed top-1 (0.02 = 2 points)")
    max_rmse_rise: Optional[Float] = Field(None, ge=0, description="regression: deployed RMSE / teacher RMSE − 1 (0.1 = 10% higher)")
    max_miou_drop: Optional[Float] = Field(None, ge=0, le=1, description="segmentation: teacher mIoU minus deployed mIoU (0.02 = 2 points)")
    max_f1_drop: Optional[Float] = Field(None, ge=0, le=1, description="token classification: teacher entity F1 minus deployed entity F1 (0.02 = 2 points)")
    max_map_drop: Optional[Float] = Field(None, ge=0, le=1, description="detection: teacher COCO mAP minus deployed mAP (0.02 = 2 points)")
    min_compression: Optional[Float] = Field(None, gt=0, description="teacher fp32 bytes / deployed bytes")
    min_throughput: Optional[Float] = Field(None, gt=0, description="samples/s at the throughput batch")
    # Coverage budgets apply to this mobile EP; default: the first NNAPI or CoreML provider listed.
    mobile_ep: Optional[Literal["NNAPI", "CoreML"]] = None
    # From ONNX Runtime's usability check of the deployed model (the export stage records it).
    min_mobile_coverage: Optional[Float] = Field(None, ge=0, le=1, description="share of nodes the mobile EP takes")
    max_mobile_partitions: Optional[Int] = Field(None, ge=1, description="partitions the mobile EP splits the graph into")
    # A budget that cannot be checked (no teacher, no labels, the mobile checker failed) fails the
    # run — a gate must not pass on what it did not see — unless this says it may pass.
    allow_unchecked: Bool = Field(False, description="let budgets that could not be checked pass instead of failing the run")


@dataclass(config=CONFIG)
class Target:
    name: Annotated[str, Field(min_length=1)]
    description: str
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    budgets: Budgets = Field(default_factory=Budgets)


def builtin_dir() -> Path:
    """Folder of the shipped profiles: inside the wheel, or `targets/` of a source checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_targets", package.parent / "targets"):
        if candidate.is_dir():
            return candidate
    raise TargetError("edgekd's built-in targets are missing from this install; reinstall edgekd")


def builtin_targets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_dir().glob("*.toml"))}


def load_target(name_or_path: str | Path = "x86-cpu") -> Target:
    """Load a built-in target by name, or a target file by path; unknown names list the known."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".toml") or path.is_file():
        return _load_file(path)
    known = builtin_targets()
    if text not in known:
        close = difflib.get_close_matches(text, list(known), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        raise TargetError(f"unknown target '{text}'{hint}; known targets: {', '.join(known)} (or pass a path to a .toml file)")
    return _load_file(known[text])


def _load_file(path: Path) -> Target:
    data = read_toml(path, TargetError, "target")
    data.setdefault("name", path.stem)
    return validate(Target, data, str(path), TargetError)


def provider_names_problem(names: list[str]) -> str | None:
    """What is wrong with a list of provider names, or None. A misspelt name is refused with the
    name it is closest to; a name ONNX Runtime does not know at all may be a plugin provider, which
    the session check decides on."""
    import onnxruntime as ort

    known = list(ort.get_all_providers())
    for name in names:
        close = [] if name in known else difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        if close:
            return f"unknown execution provider '{name}' — did you mean '{close[0]}'?"
    if len(set(names)) != len(names):
        return "an execution provider is listed twice; list each once, in preference order"
    return None


def size_limit(target: Target, teacher_bytes: int | None) -> tuple[float, str] | None:
    """The largest deployed file the target's size budgets allow, and which budget sets it (None: no size budget)."""
    budgets, caps = target.budgets, []
    if budgets.max_size_kb is not None:
        caps.append((budgets.max_size_kb * 1024, f"max_size_kb = {budgets.max_size_kb:g}"))
    if budgets.min_compression is not None and teacher_bytes:
        caps.append((teacher_bytes / budgets.min_compression, f"min_compression = {budgets.min_compression:g} of the teacher's {teacher_bytes / 1024:.1f} KiB"))
    return min(caps, default=None)
