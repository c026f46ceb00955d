"""The recipe: what to distill, from which teacher and data, how, and for which target.

A recipe is a TOML file whose every key is optional; the defaults are a CNN teacher distilled into
a small MLP on scikit-learn's digits, for the `x86-cpu` target. The built-in demo (`edgekd run`
without a recipe) is those defaults plus `[data] label_fraction = 0.15` (`DEMO`). Unknown
keys are errors that name the key, its section and the closest valid key. Relative paths in a
recipe are resolved against the recipe file's folder, so a recipe works from any working dir.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from edgekd._config import CONFIG, Bool, Float, Int, Seed, read_toml, validate
from edgekd.data.config import DataConfig
from edgekd.errors import RecipeError
from edgekd.methods import METHODS, method
from edgekd.methods import describe as describe_methods
from edgekd.targets import Scheme, Target, load_target
from edgekd.task import TASKS, TaskName

MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]  # one of the methods table's names


@dataclass(config=CONFIG)
class TeacherConfig:
    # Built-in family, "package.module:factory" returning an nn.Module, an .onnx file (any
    # framework's teacher, run through ONNX Runtime; gives logits only, no features), or
    # "hf:FOLDER" / "hf:minilm": a Hugging Face model folder (with a sequence-classification head,
    # used as it is; without one, an encoder that edgekd gives a head and trains first).
    # None: the task's built-in teacher (classification and regression: "cnn"; segmentation: a large "unet").
    model: Optional[str] = Field(None, description='built-in family, "package.module:factory", "hf:FOLDER", or a teacher .onnx file; '
                                                   'default: the task\'s ("cnn"; segmentation "unet")')
    # Keyword arguments for the family or factory (sizes, widths, ...).
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the model")
    # Trained weights (edgekd checkpoint or plain state dict, loaded with weights_only=True).
    # Without one, edgekd trains the teacher first and caches it for later runs.
    checkpoint: Optional[Path] = Field(None, description="trained weights; without them edgekd trains the teacher")
    # Epochs and learning rate used only when edgekd trains the teacher itself.
    epochs: Int = Field(30, ge=1, le=100_000, description="epochs when edgekd trains the teacher")
    lr: Float = Field(2e-3, gt=0, description="learning rate when edgekd trains the teacher")
    # Random shifts while edgekd trains the teacher (Hinton et al. 2015 jittered their MNIST
    # teacher, not the student): the students' inputs follow [data] augment.
    augment: Bool = Field(False, description="random shifts of the images while edgekd trains this teacher")
    max_shift: Optional[Int] = Field(None, ge=1, description="largest shift in pixels with augment = true (default: 1/8 of the height and width)")
    # hf: encoders without a head: train the encoder too, not the new head alone (slower).
    finetune: Bool = Field(False, description="hf encoder: fine-tune the encoder with its new head (default: head only)")
    # With several teachers: this one's share of the averaged soft targets.
    weight: Float = Field(1.0, gt=0, description="weight in the teachers' averaged soft targets")
    # Initialisation and shuffling seed when edgekd trains this teacher. By default [distill] seed
    # plus the teacher's position among [[teachers]] (0 for the first), so that an ensemble of
    # identical configurations gets independently trained members, not copies of one model.
    seed: Optional[Seed] = Field(None, description="seed when edgekd trains this teacher; default [distill] seed + its position")


@dataclass(config=CONFIG)
class StudentConfig:
    # The small model to deploy; same forms as the teacher's.
    # None: the task's built-in student (classification and regression: "mlp"; segmentation: a small "unet").
    model: Optional[str] = Field(None, description='built-in family ("mlp", "cnn", "unet", "transformer", ...) or "package.module:factory"; '
                                                   'default: the task\'s ("mlp"; segmentation "unet")')
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the model")
    # Optional starting weights for the student (fine-tuning instead of training from scratch).
    checkpoint: Optional[Path] = Field(None, description="optional initial weights for the student")
    # transformer students: copy the (first PyTorch) teacher's embeddings and every k-th layer
    # where the shapes agree, as DistilBERT was initialised (Sanh et al. 2019).
    init_from_teacher: Bool = Field(False, description="transformer: start from the teacher's embeddings and every k-th layer")


@dataclass(config=CONFIG)
class LossTerm:
    # One weighted term of the distillation objective ([[distill.loss]] tables).
    method: MethodName = Field(description=describe_methods())
    weight: Float = Field(1.0, ge=0, description="the term's weight in the sum")
    temperature: Optional[Float] = Field(None, gt=0, description="kd/dkd/cwd: softmax temperature; default [distill] temperature")
    teacher_layer: Optional[str] = Field(None, description='hint/at: teacher module path, e.g. "features.3"')
    student_layer: Optional[str] = Field(None, description='hint/at: student module path, e.g. "features.1"')
    alpha: Float = Field(1.0, ge=0, description="dkd: weight of the target-class term (TCKD)")
    beta: Float = Field(8.0, ge=0, description="dkd: weight of the non-target term (NCKD)")

    @model_validator(mode="after")
    def _layers(self) -> "LossTerm":
        needs = method(self.method).uses_layers
        if needs and not (self.teacher_layer and self.student_layer):
            raise ValueError(f"method '{self.method}' needs teacher_layer and student_layer (module paths)")
        if not needs and (self.teacher_layer or self.student_layer):
            raise ValueError(f"method '{self.method}' works on logits: remove teacher_layer/student_layer")
        return self


@dataclass(config=CONFIG)
class DistillConfig:
    # Softmax temperature T of Hinton et al. (2015); the KL term is scaled by T².
    temperature: Float = Field(4.0, gt=0, description="softmax temperature T; the KL term is scaled by T²")
    # Explicit weights of the two terms: kd_weight·T²·KL(p_T^teacher ‖ p_T^student) + ce_weight·CE.
    kd_weight: Float = Field(0.7, ge=0, description="weight of the soft-target term (classification: T²·KL; regression: MSE to the teachers' outputs)")
    ce_weight: Float = Field(0.3, ge=0, description="weight of the hard-label loss (classification: cross-entropy; regression: MSE)")
    epochs: Int = Field(40, ge=1, le=100_000, description="training epochs (the scratch baseline uses the same)")
    # "scratch" also trains the same student without the teachers (same seed, weights, batches), to
    # measure what distillation gained; "none" skips it and halves training for a large student.
    baseline: Literal["scratch", "none"] = Field("scratch", description='"scratch" trains the student without the teachers too, to measure the gain; "none" skips it')
    batch_size: Int = Field(64, ge=1, description="mini-batch size")
    lr: Float = Field(3e-3, gt=0, description="peak learning rate (Adam)")
    seed: Seed = Field(0, description="seed for initialisation and shuffling")
    # The objective: ce_weight·CE + Σ weight·term. Without [[distill.loss]] tables it is the
    # single Hinton term kd_weight·T²·KL; with them, kd_weight is not used.
    loss: list[LossTerm] = Field(default_factory=list, description="[[distill.loss]] terms; default: one kd term")
    schedule: Literal["cosine", "onecycle", "constant"] = Field("cosine", description="learning-rate schedule")
    grad_clip: Optional[Float] = Field(None, gt=0, description="clip the gradient norm to this value")
    amp: Bool = Field(False, description="mixed precision (CUDA only; ignored on the CPU)")
    compile: Bool = Field(False, description="torch.compile the student (CUDA only; ignored on the CPU)")
    # Compute teacher logits once per (teachers, data) and reuse them from disk.
    cache_teacher: Bool = Field(True, description="cache teacher outputs on disk (off when inputs are augmented)")
    # Text: each window of 50 batches of the shuffled order sorted by length, cut into batches, the
    # batches shuffled; every batch is cut to its longest text, so less padding is computed.
    bucket_by_length: Bool = Field(False, description="sequence inputs: batches of similar lengths (faster; the batches are still shuffled)")

    def terms(self, task: str = "classification") -> list[LossTerm]:
        """The loss terms in force: the [[distill.loss]] tables, or the task's single soft-target term
        weighted by kd_weight (Hinton's kd for classification, mse to the teachers' outputs for regression)."""
        if self.loss:
            return list(self.loss)
        soft = TASKS[task].soft_method
        if self.kd_weight == 0:
            return []
        return [LossTerm(method=soft, weight=self.kd_weight, temperature=self.temperature if soft == "kd" else None)]

    @model_validator(mode="after")
    def _some_weight(self) -> "DistillConfig":
        if self.ce_weight == 0 and not any(t.weight > 0 for t in self.terms()):
            raise ValueError("kd_weight and ce_weight are both 0: nothing to train on")
        return self


@dataclass(config=CONFIG)
class ExportOverrides:
    # Quantization scheme for this model, overriding the target's [quantization] scheme.
    scheme: Optional[Scheme] = Field(None, description='"static-qdq", "dynamic", "fp16", "none" or "auto"; default: the target\'s')
    # Detection: also write the deployed model with ONNX NonMaxSuppression appended (<deployed>.nms.onnx),
    # for apps that would rather not decode; its output is (S, 7) rows [image, x1, y1, x2, y2, score, class].
    include_nms: Bool = Field(False, description="detection: also write the deployed model with NMS inside (<name>.nms.onnx)")


QadTeacher = Literal["teacher", "student"]  # whose soft targets the quantization-aware phase learns from


@dataclass(config=CONFIG)
class QadConfig:
    # When `edgekd run` fine-tunes the exported student through its int8 model against the teacher
    # (quantization-aware distillation); `edgekd distill --qad` runs it on demand.
    when: Literal["never", "if-int8-misses", "always"] = Field(
        "if-int8-misses", description='"if-int8-misses": when post-training static int8 misses the target\'s max_drop_vs_fp32; "always"; "never"')
    epochs: Int = Field(3, ge=1, le=1000, description="epochs of the quantization-aware phase")
    lr_scale: Float = Field(0.1, gt=0, le=1, description="its learning rate as a share of [distill] lr")
    baseline: Literal["qat", "none"] = Field("qat", description='"qat" also trains the int8 model on labels alone, for the honest comparison')
    # Whose soft targets: distillation's teachers, or the fp32 student itself (self-distillation, for
    # a student that has overtaken its teacher: the teacher would pull it back down).
    teacher: QadTeacher = Field("teacher", description='"teacher": distillation\'s teachers; "student": the fp32 student itself')
    # The phase's objective: by default distillation's own weights (Recipe.qad_objective). A student
    # that has overtaken its teacher may need more of the hard-label term here.
    ce_weight: Optional[Float] = Field(None, ge=0, description="weight of the hard-label loss in the phase; default [distill] ce_weight")
    kd_weight: Optional[Float] = Field(None, ge=0, description="total weight of the soft-target term(s) in the phase; default [distill]'s")
    # LSQ learns each activation's int8 step with the weights; frozen, the calibration's scales stay
    # and a cheaper fixed-scale fake quantizer runs (no step-size gradient to reduce).
    learn_scales: bool = Field(True, description="learn each activation's int8 scale (LSQ); false keeps the calibration's and trains the weights alone, faster per step")


@dataclass(config=CONFIG)
class SearchConfig:
    """[search]: which students `edgekd search` considers, and how much training it spends on them."""

    # The family whose args are searched; default: the [student] model (a factory "module:fn" works too).
    family: Optional[str] = Field(None, description="model family or factory whose args are searched; default: the [student] model")
    # Each key lists the values to try; candidates are every combination, over [student] args.
    space: dict[str, list[Any]] = Field(default_factory=dict, description="arg name → values to try; the candidates are every combination")
    # Explicit candidates (args of each), tried beside the grid of `space`.
    candidates: list[dict[str, Any]] = Field(default_factory=list, description="explicit candidates: the args of each (beside `space`)")
    max_candidates: Int = Field(64, ge=1, le=10_000, description="refuse a space with more candidates than this (each is exported, quantized and timed)")
    # A candidate passes a budget only with this share of it to spare: measured latency moves between runs.
    margin: Float = Field(0.1, ge=0, lt=1, description="share of each size/latency budget kept in reserve (0.1: within 90% of it)")
    timing_runs: Int = Field(100, ge=10, le=100_000, description="timed runs per candidate (interleaved with its fp32 model)")
    # Successive halving over the frontier: every candidate trains `first_epochs`, the best 1/`eta`
    # on validation go on with `eta` times the epochs, until one is left.
    max_trained: Int = Field(8, ge=1, le=1000, description="frontier candidates that enter training at most (spread over the latency range)")
    first_epochs: Int = Field(3, ge=1, le=100_000, description="epochs of the first halving round")
    eta: Int = Field(2, ge=2, le=10, description="each halving round keeps 1/eta of the candidates and gives them eta times the epochs")
    # Hyper-parameters of the winner: Optuna's TPE sampler with a median pruner (0: the recipe's own).
    trials: Int = Field(0, ge=0, le=10_000, description="Optuna trials over temperature, kd/ce weights and lr for the winner (0: keep the recipe's)")
    trial_epochs: Optional[Int] = Field(None, ge=1, le=100_000, description="epochs of each trial; default: the last halving round's")
    storage: Optional[str] = Field(None, description="Optuna storage shared by machines: a journal file path or a database URL; "
                                                     "default: a journal file in the search folder")
    seed: Optional[Int] = Field(None, ge=0, description="seed of the trials' sampler; default [distill] seed")
    train: Bool = Field(True, description="false: measure and report the candidates only (no training)")

    @model_validator(mode="after")
    def _something_to_search(self) -> "SearchConfig":
        if not self.space and not self.candidates:
            raise ValueError("[search] names no candidates: give `space` (arg → values) or `candidates` (a list of args)")
        for name, values in self.space.items():
            if not values:
                raise ValueError(f"[search] space.{name} is empty: list at least one value")
        return self


@dataclass(config=CONFIG)
class TargetRef:
    # A target shipped with edgekd ("x86-cpu") or a path to the user's own TOML file.
    name: Optional[str] = Field("x86-cpu", description="a built-in target name")
    path: Optional[Path] = Field(None, description="a target TOML file (wins over name)")


@dataclass(config=CONFIG)
class Recipe:
    # What the model does (edgekd/task.py): the labels, the losses, the metrics. None: what the
    # training labels make unambiguous (whole numbers: classification; real numbers: regression).
    task: Optional[TaskName] = Field(None, description='"classification", "segmentation", "token-classification", "regression" or "detection"; default: inferred from the labels')
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    # Several teachers ([[teachers]] tables) whose soft targets are averaged; replaces [teacher].
    teachers: list[TeacherConfig] = Field(default_factory=list)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    export: ExportOverrides = Field(default_factory=ExportOverrides)
    qad: QadConfig = Field(default_factory=QadConfig)
    target: TargetRef = Field(default_factory=TargetRef)
    search: Optional[SearchConfig] = Field(None, description="choose the student by measuring candidates on the target (edgekd search)")

    def qad_objective(self) -> tuple[float, tuple[LossTerm, ...]]:
        """The quantization-aware phase's hard-label weight and logit terms (kd, dkd): [qad] ce_weight
        and kd_weight where set (the terms rescaled to sum to it), else distillation's own."""
        ce = self.distill.ce_weight if self.qad.ce_weight is None else self.qad.ce_weight
        soft = tuple(t for t in self.distill.terms() if method(t.method).uses_logits)
        if self.qad.kd_weight is not None and soft:
            total = sum(t.weight for t in soft)
            soft = tuple(replace(t, weight=self.qad.kd_weight * (t.weight / total if total else 1 / len(soft))) for t in soft)
        return ce, soft

    @model_validator(mode="after")
    def _qad_trains_on_something(self) -> "Recipe":
        ce, soft = self.qad_objective()  # no logit term at all is the phase's own error: distillation may use hints alone
        if ce == 0 and soft and not any(t.weight > 0 for t in soft):
            raise ValueError("[qad] ce_weight and kd_weight are both 0 (set there or taken from [distill]): nothing to train on")
        return self

    @model_validator(mode="after")
    def _methods_fit_the_task(self) -> "Recipe":
        problem = task_problem(self, self.task) if self.task else None
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _mixup_labels(self) -> "Recipe":
        one_class = [t.method for t in self.distill.terms() if method(t.method).needs_one_class]
        if self.data.mixup > 0 and one_class:
            raise ValueError(f"{one_class[0]} splits the loss at each input's one true class, which a mixup image does not have: "
                             f"set [data] mixup = 0 or use kd instead of {one_class[0]}")
        return self

    @model_validator(mode="after")
    def _shift_needs_augment(self) -> "Recipe":
        for table, cfg in [("data", self.data), ("teacher", self.teacher)] + [("teachers", t) for t in self.teachers]:
            if cfg.max_shift is not None and not cfg.augment:
                raise ValueError(f"[{table}] max_shift = {cfg.max_shift} has no effect without [{table}] augment = true: "
                                 "add augment = true or remove max_shift")
        if self.data.flip and not (self.data.augment or self.teacher.augment or any(t.augment for t in self.teachers)):
            raise ValueError("[data] flip mirrors the images augment shifts; with no augment = true it has no effect: "
                             "add [data] augment = true or remove flip")
        return self


def task_problem(recipe: Recipe, task: str) -> str | None:
    """Why the recipe's distillation does not fit `task` (a method of another task, a temperature or
    mixup for regression), or None. The recipe checks its own `task`; distill checks an inferred one."""
    for term in recipe.distill.terms(task):
        if task not in method(term.method).tasks:
            fits = ", ".join(m.name for m in METHODS.values() if task in m.tasks)
            return (f"method '{term.method}' does not apply to {task} (it works on {', '.join(method(term.method).tasks)}); "
                    f"use one of: {fits}")
    if not TASKS[task].soft_probabilities:
        if recipe.distill.temperature != 4.0 or any(t.temperature is not None for t in recipe.distill.terms(task)):
            return f"a temperature softens class probabilities; {task} outputs have none: remove temperature"
    if recipe.data.mixup > 0 and not TASKS[task].mixup:
        return f"[data] mixup blends one class label per input; {task} labels are not that: set mixup = 0"
    if recipe.export.include_nms and TASKS[task].postprocess is None:
        return f"[export] include_nms appends a detector's NMS; {task} models have none: remove it"
    if recipe.data.ignore_index is not None and TASKS[task].ignore_default is None:
        return f"[data] ignore_index marks unlabelled pixels; {task} labels have none: remove it"
    return None


def with_task_models(recipe: Recipe, task: str) -> Recipe:
    """The recipe with the task's built-in teacher and student wherever it names no model (its
    args, if any, override the built-in ones)."""
    (teacher, teacher_args), (student, student_args) = TASKS[task].models

    def fill(cfg, model: str, args: dict):
        return cfg if cfg.model is not None else replace(cfg, model=model, args={**args, **cfg.args})

    return replace(recipe, teacher=fill(recipe.teacher, teacher, teacher_args),
                   teachers=[fill(t, teacher, teacher_args) for t in recipe.teachers], student=fill(recipe.student, student, student_args))


def recipe_target(recipe: Recipe, target: Target | str | Path | None = None) -> Target:
    """The target a stage works for: the one given (a Target, a built-in name or a file), else the
    recipe's [target]."""
    if isinstance(target, Target):
        return target
    return load_target(target or recipe.target.path or recipe.target.name or "x86-cpu")


def teacher_configs(recipe: Recipe) -> list[TeacherConfig]:
    """The teachers in force: the [[teachers]] tables, or the single [teacher]."""
    return list(recipe.teachers) or [recipe.teacher]


# The built-in demo: the defaults, with the students given the labels of 15% of the training images
# and the other 85% as an unlabelled transfer set, while the teacher learns from every label (a
# model trained on more labelled data than the student has: the usual reason to distil). The
# paired test then tells the two students apart (on digits' default split the distilled one is
# right on far more test images than its scratch twin), which it cannot with every label given.
DEMO: dict[str, Any] = {"data": {"label_fraction": 0.15}}


def load_recipe(path: Path | None = None) -> Recipe:
    """Read and validate a recipe; `None` gives the built-in demo recipe (`DEMO`)."""
    if path is None:
        return validate(Recipe, DEMO, "the built-in demo recipe", RecipeError)
    path = Path(path)
    data = read_toml(path, RecipeError, "recipe")
    _resolve_paths(data, path.resolve().parent)
    return validate(Recipe, data, str(path), RecipeError)


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Rebuild a recipe saved in a run folder (paths there are already absolute)."""
    return validate(Recipe, data, source, RecipeError)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the recipe's relative paths absolute, relative to the recipe's folder. Tables of the
    wrong type are left alone for validation to name."""
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    source = section.get("source")
    if isinstance(source, str) and source.startswith("npz:"):
        section["source"] = "npz:" + str(base / Path(source[4:]).expanduser())
    teachers = data.get("teachers") if isinstance(data.get("teachers"), list) else []
    tables = [data.get("teacher"), data.get("student"), *teachers]
    for table in tables:
        if isinstance(table, dict) and isinstance(table.get("checkpoint"), str):
            table["checkpoint"] = str(base / Path(table["checkpoint"]).expanduser())
        if isinstance(table, dict) and isinstance(table.get("model"), str) and table["model"].endswith(".onnx"):
            table["model"] = str(base / Path(table["model"]).expanduser())
    tokenizer = section.get("tokenizer")
    if isinstance(tokenizer, str) and (base / Path(tokenizer).expanduser()).is_dir():
        section["tokenizer"] = str(base / Path(tokenizer).expanduser())
    for table in tables:
        if isinstance(table, dict) and isinstance(table.get("model"), str) and table["model"].startswith("hf:"):
            folder = table["model"][3:]
            if (base / Path(folder).expanduser()).is_dir():
                table["model"] = "hf:" + str(base / Path(folder).expanduser())
    for key in ("source", "unlabeled"):
        value = section.get(key)
        for prefix in ("idx:", "csv:", "imagefolder:", "masks:", "coco:", "text:", "conll:"):
            if isinstance(value, str) and value.startswith(prefix):
                section[key] = prefix + str(base / Path(value[len(prefix):]).expanduser())
    if isinstance(section.get("unlabeled"), str) and section["unlabeled"].startswith("npz:"):
        section["unlabeled"] = "npz:" + str(base / Path(section["unlabeled"][4:]).expanduser())
    if isinstance(section.get("images"), str):  # coco's image folder
        section["images"] = str(base / Path(section["images"]).expanduser())
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("path"), str):
        target["path"] = str(base / Path(target["path"]).expanduser())
