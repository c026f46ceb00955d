"""Where the teachers come from, and their outputs during distillation.

A teacher is a recipe checkpoint, a teacher edgekd trained earlier (cached under
`$EDGEKD_CACHE_DIR`, default `~/.cache/edgekd`, keyed by everything that determines its weights),
one edgekd trains now, or an ONNX file from any framework, run through ONNX Runtime. Several
teachers give averaged soft targets.

Teacher logits are a function of (teachers, inputs) only, so when the inputs are not randomly
augmented they are computed once and stored on disk, keyed by the hash of both, and later runs
read them instead of running the teachers. With augmentation every batch is new: no cache, and
the result says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd import runfolder
from edgekd._version import __version__
from edgekd._cache import cache_dir
from edgekd._io import atomic_folder
from edgekd._progress import say
from edgekd.data import DataSplits
from edgekd.distill import distributed
from edgekd.distill.result import epoch_record
from edgekd.distill.trainer import EpochRecord, TrainSettings, fit
from edgekd.inputs import Inputs, as_inputs, concat_outputs
from edgekd.models.build import ModelSpec, build_model, spec_for, start_pretrained
from edgekd.models.call import Batch, forward, predict_batches
from edgekd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgekd.recipe import Recipe, TeacherConfig, teacher_configs


@dataclass
class Teacher:
    source: str  # "checkpoint PATH", "cache PATH", "onnx PATH", "trained", or "to train"
    weight: float  # share in the averaged soft targets
    model: nn.Module | None = None  # a PyTorch teacher
    session: object | None = None  # an ONNX Runtime session (ONNX teacher)
    spec: ModelSpec | None = None
    history: list[EpochRecord] = field(default_factory=list)
    cache_path: Path | None = None  # where a teacher trained now is stored for later runs
    settings: TrainSettings | None = None  # how to train it (None: ready)
    identity: str = ""  # hash of the weights (or ONNX file): the teacher-output cache key

    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits for a training batch (the PyTorch teacher runs in whatever mode it is in)."""
        if self.model is not None:
            return forward(self.model, batch)
        device = next(iter(batch.values())).device
        return torch.as_tensor(self.predict(Inputs({k: v.detach().cpu().numpy() for k, v in batch.items()})), device=device)

    def predict(self, x: Inputs | np.ndarray) -> np.ndarray:
        """Eval-mode logits for a whole array: shape checks and scores use this."""
        return concat_outputs(list(self.predict_batches(x)))

    def predict_batches(self, x: Inputs | np.ndarray) -> Iterator[np.ndarray]:
        """Eval-mode logits a batch at a time, in order: the teacher-output cache writes them to disk as they come."""
        if self.model is not None:
            return predict_batches(self.model, x)
        from edgekd.runtime.session import run_batch_outputs

        return run_batch_outputs(self.session, x)


@dataclass
class TeacherSet:
    members: list[Teacher]
    cached: dict[str, torch.Tensor] | None = None  # split -> logits (teachers, samples, classes)
    cache_note: str = "off"  # what happened with the teacher-output cache, for the result

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]

    @property
    def feature_teacher(self) -> nn.Module | None:
        """The first PyTorch teacher: features for hint/at come from it."""
        return next((m.model for m in self.members if m.model is not None), None)

    @property
    def logits_from_feature_pass(self) -> bool:
        """One live teacher: its forward pass for features gives the logits too (none cached)."""
        return len(self.members) == 1 and self.cached is None

    def to(self, device: torch.device) -> None:
        """The PyTorch teachers on the training device, in eval mode (ONNX ones stay with ORT)."""
        for member in self.members:
            if member.model is not None:
                member.model.to(device).eval()

    def logits(self, batch: Batch, index: torch.Tensor | None, split: str) -> list[torch.Tensor]:
        if self.cached is not None and index is not None and split in self.cached:
            block = self.cached[split][:, index.cpu()]
            device = next(iter(batch.values())).device
            return [block[i].to(device) for i in range(len(self.members))]
        with torch.no_grad():
            return [m.logits(batch) for m in self.members]


def plan_teachers(recipe: Recipe, data: DataSplits) -> TeacherSet:
    """Build every teacher and load its weights if they exist; nothing is written or trained."""
    data = data.for_teacher()  # a teacher edgekd trains learns from every training label
    return TeacherSet([_plan(cfg, recipe, data, position) for position, cfg in enumerate(teacher_configs(recipe))])


def _plan(cfg: TeacherConfig, recipe: Recipe, data: DataSplits, position: int) -> Teacher:
    if cfg.model.endswith(".onnx"):
        from edgekd.runtime.session import open_session
        from edgekd._io import sha256_file

        session = open_session(Path(cfg.model))
        return Teacher(f"onnx {cfg.model}", cfg.weight, session=session, identity=sha256_file(Path(cfg.model)))
    spec = spec_for(cfg.model, cfg.args, data, recipe.data.standardize_targets)
    if cfg.checkpoint is not None:
        payload = read_checkpoint(cfg.checkpoint)
        if "spec" in payload:
            spec = ModelSpec.from_dict(payload["spec"])
        model = build_model(spec)
        load_weights(model, payload["state_dict"], cfg.checkpoint)
        return Teacher(f"checkpoint {cfg.checkpoint}", cfg.weight, model=model.eval(), spec=spec, identity=weights_hash(model))
    seed = cfg.seed if cfg.seed is not None else recipe.distill.seed + position
    settings = TrainSettings(epochs=cfg.epochs, batch_size=recipe.distill.batch_size, lr=cfg.lr, seed=seed,
                             augment=cfg.augment, max_shift=cfg.max_shift, flip=recipe.data.flip, finetune=cfg.finetune, task=data.task,
                             bucket_by_length=recipe.distill.bucket_by_length)
    torch.manual_seed(seed)
    model = build_model(spec)
    pretrained = weights_hash(model) if start_pretrained(model) else None  # a new weights file: a new cache key
    if spec.model.startswith("hf:"):
        from edgekd.models.text import SequenceClassifier

        pretrained = weights_hash(model)  # the folder's weights as loaded: new weights in the same folder, a new key
        if not cfg.finetune and not isinstance(model, SequenceClassifier):  # its own classification head: trained already
            return Teacher(f"pretrained {spec.model}", cfg.weight, model=model.eval(), spec=spec, identity=pretrained)
    cached = cache_dir() / "teachers" / f"{_cache_key(spec, settings, data, pretrained)}.pt"
    if cached.is_file():
        payload = read_checkpoint(cached)
        load_weights(model, payload["state_dict"], cached)
        history = [epoch_record(r) for r in payload.get("history", [])]
        return Teacher(f"cache {cached}", cfg.weight, model=model.eval(), spec=spec, history=history, identity=weights_hash(model))
    return Teacher("to train", cfg.weight, model=model, spec=spec, cache_path=cached, settings=settings)


def train_teachers(teachers: TeacherSet, data: DataSplits, run_dir: Path, resume: bool) -> TeacherSet:
    """Train the teachers that need it (best-on-val weights kept) and cache them for later runs; they
    learn from every training label, also those [data] label_fraction withheld from the students."""
    data = data.for_teacher()
    for index, teacher in enumerate(teachers.members):
        if teacher.settings is None:
            if teacher.source.startswith("cache"):
                say(f"teacher: reusing the cached teacher {teacher.source[6:]}")
            continue
        label = "teacher" if len(teachers.members) == 1 else f"teacher {index + 1}"
        name = "teacher.ckpt" if index == 0 else f"teacher{index + 1}.ckpt"
        if teacher.spec.model.startswith("hf:") and not teacher.settings.finetune:
            result = _train_head(teacher, data, label, run_dir / runfolder.CHECKPOINTS / name, resume)
        else:
            result = fit(teacher.model, data.x_train, data.y_train, data.x_val, data.y_val, teacher.settings,
                         label=label, checkpoint=run_dir / runfolder.CHECKPOINTS / name, resume=resume)
            teacher.model.load_state_dict(result.best_state)
        if distributed.is_main():
            save_checkpoint(teacher.model, teacher.spec, teacher.cache_path, extra={"history": [asdict(r) for r in result.history]})
        distributed.barrier()
        teacher.model.eval()
        teacher.source, teacher.history, teacher.settings = "trained", result.history, None
        teacher.identity = weights_hash(teacher.model)
    return teachers


def _train_head(teacher: Teacher, data: DataSplits, label: str, checkpoint: Path, resume: bool):
    """A pretrained encoder's new head, trained alone (a linear probe) on the frozen encoder's pooled
    features, computed once; the encoder's weights stay as they were published."""
    from edgekd.models.text import freeze_encoder, pooled_features

    model = teacher.model
    trainable = freeze_encoder(model)
    say(f"{label}: training the head of {teacher.spec.model} on its frozen encoder's pooled features "
        f"({trainable:,} parameters; [teacher] finetune = true trains the encoder too)")
    say(f"{label}: encoding {len(data.x_train) + len(data.x_val):,} texts once")
    features = {split: pooled_features(model, getattr(data, f"x_{split}")) for split in ("train", "val")}
    head = model.head()
    result = fit(head, features["train"], data.y_train, features["val"], data.y_val, teacher.settings,
                 label=f"{label} (head)", checkpoint=checkpoint, resume=resume)
    head.load_state_dict(result.best_state)  # shares its parameters with the teacher
    return result


def cache_teacher_logits(teachers: TeacherSet, data: DataSplits, enabled: bool, augment: bool) -> TeacherSet:
    """Load or compute the teachers' logits on the training (and unlabelled) inputs."""
    if not enabled:
        teachers.cache_note = "off ([distill] cache_teacher = false)"
        return teachers
    if augment:
        teachers.cache_note = "off: inputs are randomly augmented, so every batch is new to the teacher"
        say(f"teacher outputs: not cached — {teachers.cache_note[5:]}")
        return teachers
    splits = {"train": data.x_train, **({"unlabeled": data.x_unlabeled} if data.x_unlabeled is not None else {})}
    identity = {"teachers": [m.identity for m in teachers.members], "data": {k: v.sha256() for k, v in splits.items()}}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "teacher-logits" / key  # one .npy per split, memory-mapped when reused
    if path.is_dir():
        try:
            # copy-on-write maps: a transfer set of 10^6 sentences is read page by page, never copied
            teachers.cached = {split: torch.as_tensor(np.load(path / f"{split}.npy", mmap_mode="c")) for split in splits}
            teachers.cache_note = f"reused {path}"
            say(f"teacher outputs: reusing {path}")
            return teachers
        except (ValueError, OSError, EOFError):
            say(f"teacher outputs: {path} is unreadable; computing them again")  # a cache is never worth a failed run
    try:
        teachers.cached = _compute_outputs(teachers.members, splits, path if distributed.is_main() else None)
        teachers.cache_note = f"computed and stored at {path}"
    except OSError as exc:  # a full or read-only disk: the run goes on with the outputs in memory
        say(f"teacher outputs: cannot store them at {path} ({exc.strerror or exc}); keeping them in memory")
        teachers.cached = _compute_outputs(teachers.members, splits, None)
        teachers.cache_note = f"computed, not stored ({exc.strerror or exc})"
    return teachers


def _compute_outputs(members: list[Teacher], splits: dict[str, Inputs | np.ndarray], path: Path | None) -> dict[str, torch.Tensor]:
    """Every teacher's outputs on each split, (teachers, samples, ...) float32. With a `path`, each
    split is written batch by batch into a .npy in a folder that appears only when complete, then
    mapped back: the outputs on a 10^6-sentence transfer set (per token: sentences × tokens × tags)
    never sit in memory. Without one (a process other than the first of a distributed run, or no
    room on disk), in memory."""
    if path is None:
        return {split: torch.as_tensor(_fill(members, x, np.zeros)) for split, x in splits.items()}
    with atomic_folder(path) as work:
        for split, x in splits.items():
            stored = _fill(members, x, lambda shape, dtype, name=work / f"{split}.npy": np.lib.format.open_memmap(name, "w+", dtype, shape))
            stored.flush()
            del stored  # the map is closed before the folder is renamed into place
    return {split: torch.as_tensor(np.load(path / f"{split}.npy", mmap_mode="c")) for split in splits}


def _fill(members: list[Teacher], x: Inputs | np.ndarray, allocate) -> np.ndarray:
    """`allocate(shape, dtype)` one array for every member's outputs on `x` and fill it batch by
    batch; per-token outputs of batches cut to their own longest sequence are zero-padded to `x`'s width."""
    x = as_inputs(x)
    width = max((x[s.name].shape[1] for s in x.spec if s.is_sequence), default=None)
    out = None
    for number, member in enumerate(members):
        start = 0
        for chunk in member.predict_batches(x):
            per_token = width is not None and chunk.ndim >= 3
            if out is None:
                out = allocate((len(members), len(x), *((width,) if per_token else chunk.shape[1:2]), *chunk.shape[2:]), np.float32)
            out[number, start:start + len(chunk), :chunk.shape[1]] = chunk
            start += len(chunk)
    return out


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cache_key(spec: ModelSpec, settings: TrainSettings, data: DataSplits, pretrained: str | None = None) -> str:
    identity = {
        "spec": spec.to_dict(),
        **({"pretrained": pretrained} if pretrained else {}),  # hf: teachers start from a folder's weights
        "settings": asdict(settings),
        "data": data.fingerprint(("train", "val")),
        "edgekd": __version__,  # a new release may train differently: do not reuse its cache
        "format": 3,  # 3: segmentation teachers trained with augment before 2026-12-07 saw unshifted masks
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
