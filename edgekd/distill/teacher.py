"""Where the teacher comes from: the recipe's checkpoint, edgekd's cache, or training it now.

A teacher that edgekd trains is cached under `$EDGEKD_CACHE_DIR` (default `~/.cache/edgekd`),
keyed by the hash of everything that determines its weights (model spec, training settings and
the training data's bytes), so later runs on the same data reuse it instead of retraining.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from edgekd import __version__
from edgekd._progress import say
from edgekd.data import DataSplits
from edgekd.distill.trainer import EpochRecord, TrainSettings, fit
from edgekd.models.build import ModelSpec, build_model
from edgekd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgekd.recipe import Recipe


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR") or Path.home() / ".cache" / "edgekd")


@dataclass
class TeacherPlan:
    model: nn.Module
    spec: ModelSpec
    source: str  # "checkpoint PATH", "cache PATH", or "to train"
    history: list[EpochRecord]
    cache_path: Path | None  # where a teacher trained now is stored for later runs
    settings: TrainSettings | None  # how to train it (None: already trained)


def plan_teacher(recipe: Recipe, data: DataSplits) -> TeacherPlan:
    """Build the teacher and load its weights if they exist; nothing is written or trained yet."""
    cfg = recipe.teacher
    spec = ModelSpec(cfg.model, dict(cfg.args), data.input_shape, data.num_classes)
    if cfg.checkpoint is not None:
        payload = read_checkpoint(cfg.checkpoint)
        if "spec" in payload:
            spec = ModelSpec.from_dict(payload["spec"])
        model = build_model(spec)
        load_weights(model, payload["state_dict"], cfg.checkpoint)
        return TeacherPlan(model.eval(), spec, f"checkpoint {cfg.checkpoint}", [], None, None)

    settings = TrainSettings(epochs=cfg.epochs, batch_size=recipe.distill.batch_size, lr=cfg.lr, seed=recipe.distill.seed)
    cached = cache_dir() / "teachers" / f"{_cache_key(spec, settings, data)}.pt"
    torch.manual_seed(recipe.distill.seed)
    model = build_model(spec)
    if cached.is_file():
        payload = read_checkpoint(cached)
        load_weights(model, payload["state_dict"], cached)
        history = [EpochRecord(**r) for r in payload.get("history", [])]
        return TeacherPlan(model.eval(), spec, f"cache {cached}", history, None, None)
    return TeacherPlan(model, spec, "to train", [], cached, settings)


def train_teacher(plan: TeacherPlan, data: DataSplits, run_dir: Path, resume: bool) -> TeacherPlan:
    """Train a planned teacher (if it needs it) and store it in the cache for later runs."""
    if plan.settings is None:
        if plan.source.startswith("cache"):
            say(f"teacher: reusing the cached teacher {plan.cache_path or plan.source[6:]}")
        return plan
    history = fit(
        plan.model, data.x_train, data.y_train, data.x_val, data.y_val, plan.settings,
        label="teacher", checkpoint=run_dir / "checkpoints" / "teacher.ckpt", resume=resume,
    )
    save_checkpoint(plan.model, plan.spec, plan.cache_path, extra={"history": [asdict(r) for r in history]})
    return TeacherPlan(plan.model.eval(), plan.spec, "trained", history, plan.cache_path, None)


def _cache_key(spec: ModelSpec, settings: TrainSettings, data: DataSplits) -> str:
    identity = {
        "spec": spec.to_dict(),
        "settings": asdict(settings),
        "data": data.fingerprint(("train", "val")),
        "edgekd": __version__,  # a new release may train differently: do not reuse its cache
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
