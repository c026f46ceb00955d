"""Where the teacher comes from: the recipe's checkpoint, edgekd's cache, or training it now.

A teacher that edgekd trains is cached under `$EDGEKD_CACHE_DIR` (default `~/.cache/edgekd`),
keyed by the hash of everything that determines its weights (model spec, training settings and
the training data's bytes), so later runs on the same data reuse it instead of retraining.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from torch import nn

from edgekd._progress import say
from edgekd.data import DataSplits
from edgekd.distill.trainer import EpochRecord, TrainSettings, fit
from edgekd.models.build import ModelSpec, build_model
from edgekd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgekd.recipe import Recipe


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE_DIR") or Path.home() / ".cache" / "edgekd")


def prepare_teacher(
    recipe: Recipe, data: DataSplits, run_dir: Path, resume: bool
) -> tuple[nn.Module, ModelSpec, str, list[EpochRecord]]:
    """Return (teacher in eval mode, its spec, where it came from, its training history)."""
    cfg = recipe.teacher
    spec = ModelSpec(cfg.model, dict(cfg.args), data.input_shape, data.num_classes)
    if cfg.checkpoint is not None:
        payload = read_checkpoint(cfg.checkpoint)
        if "spec" in payload:
            spec = ModelSpec.from_dict(payload["spec"])
        model = build_model(spec)
        load_weights(model, payload["state_dict"], cfg.checkpoint)
        return model.eval(), spec, f"checkpoint {cfg.checkpoint}", []

    settings = TrainSettings(epochs=cfg.epochs, batch_size=recipe.distill.batch_size, lr=cfg.lr, seed=recipe.distill.seed)
    cached = cache_dir() / "teachers" / f"{_cache_key(spec, settings, data)}.pt"
    model = build_model(spec)
    if cached.is_file():
        payload = read_checkpoint(cached)
        load_weights(model, payload["state_dict"], cached)
        say(f"teacher: reusing the cached teacher {cached}")
        history = [EpochRecord(**r) for r in payload.get("history", [])]
        return model.eval(), spec, f"cache {cached}", history

    history = fit(
        model, data.x_train, data.y_train, data.x_val, data.y_val, settings,
        label="teacher", checkpoint=run_dir / "checkpoints" / "teacher.ckpt", resume=resume,
    )
    save_checkpoint(model, spec, cached, extra={"history": [asdict(r) for r in history]})
    return model.eval(), spec, "trained", history


def _cache_key(spec: ModelSpec, settings: TrainSettings, data: DataSplits) -> str:
    identity = {
        "spec": spec.to_dict(),
        "settings": asdict(settings),
        "data": data.fingerprint(("train", "val")),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
