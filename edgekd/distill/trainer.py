"""The one training loop: teacher training, scratch baseline and distillation all run through it.

Every epoch ends with a validation pass and an atomic checkpoint (model, optimizer, scheduler,
history). Each epoch seeds its own shuffling and dropout from (seed, epoch), so a run that is
interrupted and resumed from its checkpoint ends with the same weights as one that never stopped.
A NaN or infinite loss stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd._io import atomic_path
from edgekd._progress import bar, say
from edgekd.distill.losses import distillation_loss
from edgekd.errors import TrainingError


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate of Adam, decayed with a cosine schedule to 0
    seed: int
    temperature: float = 1.0
    kd_weight: float = 0.0  # 0: no teacher term (plain supervised training)
    ce_weight: float = 1.0


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean total loss over the epoch's batches
    ce: float  # mean hard-label cross-entropy
    kd: float | None  # mean T²-scaled KL term (None without a teacher)
    val_accuracy: float
    lr: float  # learning rate used during the epoch
    seconds: float


def fit(
    model: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    label: str,
    checkpoint: Path | None = None,
    resume: bool = False,
    teacher: nn.Module | None = None,
) -> list[EpochRecord]:
    """Train `model` in place; returns one record per epoch (resumed epochs included)."""
    device = _device()
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    x_tr = torch.as_tensor(x_train, device=device)
    y_tr = torch.as_tensor(y_train, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    history: list[EpochRecord] = []
    if resume and checkpoint is not None and checkpoint.is_file():
        history = _restore(checkpoint, model, optimizer, scheduler, settings, label)
    start = len(history)
    if start:
        say(f"{label}: resuming after epoch {start}/{settings.epochs}")
    steps = math.ceil(len(x_tr) / settings.batch_size)
    with bar() as progress:
        task = progress.add_task(label, total=settings.epochs, completed=start, info="")
        for epoch in range(start + 1, settings.epochs + 1):
            began = time.perf_counter()
            torch.manual_seed(settings.seed * 1_000_003 + epoch)  # dropout and shuffling of this epoch
            order = torch.randperm(len(x_tr), device=device)
            lr = optimizer.param_groups[0]["lr"]
            sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
            model.train()
            for step in range(steps):
                idx = order[step * settings.batch_size : (step + 1) * settings.batch_size]
                xb, yb = x_tr[idx], y_tr[idx]
                teacher_logits = None
                if teacher is not None and settings.kd_weight > 0:
                    with torch.no_grad():
                        teacher_logits = teacher(xb)
                loss, terms = distillation_loss(
                    model(xb), teacher_logits, yb, settings.temperature, settings.kd_weight, settings.ce_weight
                )
                if not torch.isfinite(loss):
                    kept = f"the last good checkpoint (epoch {epoch - 1}) is kept at {checkpoint}" if checkpoint and epoch > 1 else "no checkpoint was written yet"
                    raise TrainingError(
                        f"{label}: loss became {float(loss.detach())} at epoch {epoch}, step {step + 1}; {kept} — "
                        f"lower the learning rate (now {settings.lr:g}) or check the inputs for extreme values"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["loss"] += float(loss.detach())
                sums["ce"] += terms["ce"]
                sums["kd"] += terms.get("kd", 0.0)
            scheduler.step()
            val_accuracy = accuracy(model, x_val, y_val)
            history.append(
                EpochRecord(
                    epoch=epoch,
                    loss=sums["loss"] / steps,
                    ce=sums["ce"] / steps,
                    kd=sums["kd"] / steps if teacher is not None and settings.kd_weight > 0 else None,
                    val_accuracy=val_accuracy,
                    lr=lr,
                    seconds=time.perf_counter() - began,
                )
            )
            if checkpoint is not None:
                _save(checkpoint, model, optimizer, scheduler, settings, history)
            progress.update(task, advance=1, info=f"loss {history[-1].loss:.4f}  val {val_accuracy:.2%}")
    if history:
        say(f"{label}: {len(history)} epochs, val accuracy {history[-1].val_accuracy:.2%}")
    return history


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of `model` in eval mode, as a numpy array."""
    device = next(model.parameters()).device
    model.eval()
    chunks = [model(torch.as_tensor(x[i : i + batch_size], device=device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(chunks).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(axis=1) == y).mean())


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _save(path: Path, model, optimizer, scheduler, settings: TrainSettings, history: list[EpochRecord]) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "settings": asdict(settings),
        "history": [asdict(r) for r in history],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _restore(path: Path, model, optimizer, scheduler, settings: TrainSettings, label: str) -> list[EpochRecord]:
    try:
        state = torch.load(path, map_location=_device(), weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{label}: cannot resume from {path} ({type(exc).__name__}); delete it to start over") from None
    if state.get("settings") != asdict(settings):
        raise TrainingError(
            f"{label}: {path} was written with different settings {state.get('settings')}; "
            f"resume with the same recipe, or delete the checkpoint to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return [EpochRecord(**r) for r in state["history"]]
