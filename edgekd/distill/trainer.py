"""The one training loop: teacher training, scratch baseline and distillation all run through it.

Every epoch ends with a validation pass and an atomic checkpoint (model, adapters, optimizer,
scheduler, history, best-on-val weights). Each epoch seeds its own shuffling, augmentation and
dropout from (seed, epoch), so a run that is interrupted and resumed ends with the same weights as
one that never stopped. A NaN or infinite loss stops the run and keeps the last good checkpoint.
Under torchrun the same loop runs DistributedDataParallel, one shard of each epoch per rank.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd._platform import TRIM_EVERY, release_freed_memory
from edgekd._progress import bar, say
from edgekd.distill import distributed
from edgekd.distill.losses import MixedLabels
from edgekd.distill.result import EpochRecord, epoch_record
from edgekd.errors import TrainingError
from edgekd.inputs import MASK, Inputs, as_inputs
from edgekd.models.call import Batch, accuracy, forward, predict, take, to_tensors, trim
from edgekd.models.checkpoint import save_torch
from edgekd.task import IGNORED, task

__all__ = ["EpochRecord", "FitResult", "TrainSettings", "accuracy", "fit", "predict"]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float  # peak learning rate of Adam
    seed: int
    ce_weight: float = 1.0  # weight of the hard-label loss (the task's: cross-entropy, MSE)
    terms: tuple = ()  # distillation terms (LossTerm); empty: plain supervised training
    temperature: float = 4.0  # default temperature of kd/dkd terms without their own
    schedule: str = "cosine"  # "cosine" (per epoch), "onecycle" (per step) or "constant"
    grad_clip: float | None = None
    augment: bool = False  # random shifts, per image
    max_shift: int | None = None  # largest shift in pixels; None: 1/8 of the height and width
    flip: bool = False  # with augment: each image also mirrored left-right with probability 1/2 (masks and boxes alike)
    mixup: float = 0.0  # mixup α (0: off): each input blended with another of its batch
    amp: bool = False  # CUDA only
    compile: bool = False  # CUDA only
    finetune: bool = False  # hf encoder teachers: train the encoder too, not only the new head
    task: str = "classification"  # the task table's entry: the hard-label loss and the validation metric
    bucket_by_length: bool = False  # sequence inputs: batches of similar lengths (less padding computed)


@dataclass
class FitResult:
    history: list[EpochRecord]
    best_epoch: int  # 1-based epoch with the best validation metric (the first, on ties)
    best_state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)  # its weights
    last_state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)


class SoftTargets(Protocol):
    """What the loop needs from its teachers. Live, cached, ensemble and ONNX teachers all give it
    (edgekd.distill.teacher.TeacherSet); the loop knows nothing else about them."""

    @property
    def weights(self) -> list[float]: ...  # each teacher's share in the averaged soft targets

    @property
    def feature_teacher(self) -> nn.Module | None: ...  # the PyTorch teacher whose layers hint/at terms read

    @property
    def logits_from_feature_pass(self) -> bool: ...  # its forward pass for features gives the (only) logits too

    def to(self, device: torch.device) -> None: ...  # PyTorch teachers to the training device, in eval mode

    def logits(self, batch: Batch, index: torch.Tensor | None, split: str) -> list[torch.Tensor]: ...  # one tensor per teacher


@dataclass
class _Loop:
    """One training run: what every step reads and updates."""

    model: nn.Module
    trainable: "_Trainable"
    wrapped: nn.Module  # trainable, compiled and/or DDP-wrapped
    objective: Any  # distill.objective.Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    settings: TrainSettings
    label: str
    teachers: SoftTargets | None
    spec: tuple  # the inputs' TensorSpecs: each batch is trimmed to its longest sequence
    x: Batch
    y: torch.Tensor
    x_unlabeled: Batch | None  # with teachers only: the soft-target-only batches
    device: torch.device
    steps: int  # per epoch, on this rank
    epoch_length: int  # samples per epoch: the larger of the labelled and the unlabelled set
    unlabeled_count: int
    lengths: torch.Tensor | None  # bucket_by_length: real tokens per labelled sample
    unlabeled_lengths: torch.Tensor | None  # ... and per unlabelled one
    checkpoint: Path | None


def fit(
    model: nn.Module,
    x_train: Inputs | np.ndarray,
    y_train: np.ndarray,
    x_val: Inputs | np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    label: str,
    checkpoint: Path | None = None,
    resume: bool = False,
    teachers: SoftTargets | None = None,
    x_unlabeled: Inputs | np.ndarray | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train `model` in place (ending at its last-epoch weights); returns history and best weights.

    Inputs are named arrays (a bare array is the one-input case); each batch is cut to its own
    longest sequence. Frozen parameters (requires_grad False) are not optimised. `on_epoch(epoch,
    val_metric)` is called after each epoch (a search's pruner stops a trial by raising from it)."""
    loop = _prepare(model, x_train, y_train, settings, label, teachers, x_unlabeled, checkpoint)
    kind = task(settings.task)
    metric = kind.primary
    history: list[EpochRecord] = []
    best_epoch, best_state = 0, {}
    if resume and checkpoint is not None and checkpoint.is_file():
        history, best_epoch, best_state = _restore(checkpoint, loop.trainable, loop.optimizer, loop.scheduler, settings, label, loop.device)
    start = len(history)
    if start:
        say(f"{label}: resuming after epoch {start}/{settings.epochs}")
    try:
        with bar() as progress:
            bar_task = progress.add_task(label, total=settings.epochs, completed=start, info="")
            for epoch in range(start + 1, settings.epochs + 1):
                began, lr = time.perf_counter(), loop.optimizer.param_groups[0]["lr"]
                means = _train_epoch(loop, epoch)
                val_metric = validate(model, x_val, y_val, kind)
                history.append(EpochRecord(epoch, means.pop("loss"), means, val_metric, lr, time.perf_counter() - began))
                if not best_epoch or metric.gain(history[best_epoch - 1].val_metric, val_metric) > 0:
                    best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
                if checkpoint is not None and distributed.is_main():
                    _save(checkpoint, loop.trainable, loop.optimizer, loop.scheduler, settings, history, best_epoch, best_state)
                distributed.barrier()
                progress.update(bar_task, advance=1, info=f"loss {history[-1].loss:.4f}  val {metric.name} {metric.show(val_metric)}")
                if on_epoch is not None:
                    on_epoch(epoch, val_metric)
    finally:
        loop.objective.close()
    if history:
        say(f"{label}: {len(history)} epochs, val {metric.name} {metric.show(history[-1].val_metric)} last, "
            f"{metric.show(history[best_epoch - 1].val_metric)} best (epoch {best_epoch})")
    return FitResult(history, best_epoch, best_state, copy.deepcopy(model.state_dict()))


def validate(model: nn.Module, x_val: Inputs | np.ndarray, y_val: np.ndarray, kind) -> float:
    """The task's primary metric of `model` on the validation split: what picks the best epoch."""
    return kind.primary_of(predict(model, x_val), y_val)


def _prepare(model: nn.Module, x_train: Inputs | np.ndarray, y_train: np.ndarray, settings: TrainSettings, label: str,
             teachers: SoftTargets | None, x_unlabeled: Inputs | np.ndarray | None, checkpoint: Path | None) -> _Loop:
    """Devices, tensors, the objective, the optimizer and its schedule: everything before epoch 1."""
    from edgekd.distill.objective import Objective

    distributed.setup()
    device = distributed.device()
    cuda = device.type == "cuda"
    model.to(device)
    if teachers is not None:
        teachers.to(device)
    x_train = as_inputs(x_train)
    _check_transforms(x_train, settings, label)
    spec = x_train.spec
    x, y = to_tensors(x_train, device), torch.as_tensor(y_train, device=device)
    # On the CPU, beside the device: a streamed transfer set stays memory-mapped (to_tensors shares
    # its pages), and each step moves one gathered batch to the device.
    x_un = to_tensors(as_inputs(x_unlabeled), "cpu") if x_unlabeled is not None and teachers else None
    # An epoch is a pass over the larger of the labelled and the unlabelled set (the smaller cycles):
    # a transfer set of 10^5 images beside 10^3 labels is seen once per epoch, and a scratch twin given
    # the same unlabelled inputs (which it does not train on) takes as many steps on its labels.
    unlabeled_count = len(as_inputs(x_unlabeled)) if x_unlabeled is not None else 0
    epoch_length = max(len(y), unlabeled_count)
    objective = Objective(list(settings.terms) if teachers else [], settings.ce_weight, settings.temperature, model,
                          teachers.feature_teacher if teachers else None, teachers.weights if teachers else [],
                          trim(take(x, slice(0, 2)), spec), settings.task)
    trainable = _Trainable(model, objective.adapters).to(device)
    optimizer = torch.optim.Adam([p for p in trainable.parameters() if p.requires_grad], lr=settings.lr)
    steps = math.ceil(len(distributed.shard(torch.arange(epoch_length))) / settings.batch_size)
    if (settings.amp or settings.compile) and not cuda:
        say(f"{label}: amp/compile apply on CUDA only; training in fp32 eager mode on the CPU")
    return _Loop(model, trainable, _wrap(trainable, settings, cuda), objective, optimizer, _scheduler(optimizer, settings, steps),
                 torch.amp.GradScaler("cuda", enabled=settings.amp and cuda), settings, label, teachers, spec, x, y, x_un, device,
                 steps, epoch_length, unlabeled_count, _lengths(x_train, settings), _lengths(x_unlabeled if x_un is not None else None, settings),
                 checkpoint)


def _train_epoch(loop: _Loop, epoch: int) -> dict[str, float]:
    """One pass over this rank's shard; the mean loss and mean of each term over all ranks."""
    settings, device = loop.settings, loop.device
    torch.manual_seed(settings.seed * 1_000_003 + epoch)  # shuffling, augmentation, dropout of this epoch
    order = distributed.shard(_cycled(len(loop.y), loop.epoch_length, device, loop.lengths, settings.batch_size))
    order_un = (distributed.shard(_cycled(loop.unlabeled_count, loop.epoch_length, device, loop.unlabeled_lengths, settings.batch_size))
                if loop.x_unlabeled is not None else None)
    sums: dict[str, float] = {}
    loop.trainable.train()
    for step in range(loop.steps):
        batch = slice(step * settings.batch_size, (step + 1) * settings.batch_size)
        loss, parts = _step_loss(loop, order[batch], order_un[batch] if order_un is not None else None)
        _refuse_non_finite(loop, loss, epoch, step)
        _optimise(loop, loss)
        if (step + 1) % TRIM_EVERY == 0:
            release_freed_memory()
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    if settings.schedule == "cosine":
        loop.scheduler.step()
    keys = sorted(sums)
    totals = distributed.sum_across([sums[k] for k in keys] + [float(loop.steps)])
    return {k: v / totals[-1] for k, v in zip(keys, totals[:-1])}


def _cycled(count: int, length: int, device: torch.device, lengths: torch.Tensor | None = None, batch_size: int = 1) -> torch.Tensor:
    """`length` indices into `count` samples: shuffled passes, one after another (the first pass is
    the whole epoch's order when `length` is `count`); with `lengths`, bucketed by them."""
    passes = [torch.randperm(count, device=device) for _ in range(math.ceil(length / count))]
    order = torch.cat(passes)[:length]
    return order if lengths is None else _bucketed(order, lengths, batch_size)


BUCKET_WINDOW = 50  # batches whose samples are sorted by length together


def _bucketed(order: torch.Tensor, lengths: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The same samples in batches of similar lengths, the batches in random order: each window of
    BUCKET_WINDOW batches of the shuffled order is sorted by length and cut into batches (each batch
    is then trimmed to its own longest row, so less padding is computed). A last, partial batch stays last."""
    pieces = []
    for start in range(0, len(order), BUCKET_WINDOW * batch_size):
        window = order[start:start + BUCKET_WINDOW * batch_size]
        pieces += list(window[torch.argsort(lengths[window.cpu()], stable=True).to(window.device)].split(batch_size))
    tail = [pieces.pop()] if len(pieces[-1]) < batch_size else []
    shuffled = [pieces[i] for i in torch.randperm(len(pieces)).tolist()]
    return torch.cat(shuffled + tail)


def _lengths(x: Inputs | np.ndarray | None, settings: TrainSettings) -> torch.Tensor | None:
    """Real tokens per sample, when batches are bucketed by length and the inputs are sequences."""
    if x is None or not settings.bucket_by_length:
        return None
    lengths = as_inputs(x).lengths()
    return torch.as_tensor(lengths) if lengths is not None else None


def _step_loss(loop: _Loop, idx: torch.Tensor, unlabeled_idx: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one labelled batch (plus one unlabelled batch, soft targets only, when given)."""
    settings = loop.settings
    xb, yb = _student_inputs(trim(take(loop.x, idx), loop.spec), loop.y[idx], settings)
    with torch.autocast(loop.device.type, dtype=torch.float16, enabled=settings.amp and loop.device.type == "cuda"):
        loss, parts = _batch_loss(loop.wrapped, loop.objective, loop.teachers, xb, yb, idx, "train")
        if unlabeled_idx is not None:
            gathered = {k: v.to(loop.device) for k, v in take(loop.x_unlabeled, unlabeled_idx.cpu()).items()}
            ub = _student_inputs(trim(gathered, loop.spec), None, settings)[0]
            u_loss, u_parts = _batch_loss(loop.wrapped, loop.objective, loop.teachers, ub, None, unlabeled_idx, "unlabeled")
            loss = loss + u_loss
            parts.update({f"{k} (unlabeled)": v for k, v in u_parts.items()})
    return loss, parts


def _refuse_non_finite(loop: _Loop, loss: torch.Tensor, epoch: int, step: int) -> None:
    """A NaN or infinite loss stops the run; the last good checkpoint stays for --resume."""
    if torch.isfinite(loss):
        return
    label, checkpoint = loop.label, loop.checkpoint
    kept = (f"its last good checkpoint (epoch {epoch - 1}) is kept at {checkpoint}" if checkpoint and epoch > 1
            else f"no checkpoint of {label} was written yet (those of earlier phases stay in the run folder)")
    raise TrainingError(
        f"{label}: loss became {float(loss.detach())} at epoch {epoch}, step {step + 1}; {kept} — "
        f"lower the learning rate (now {loop.settings.lr:g}) or check the inputs for extreme values, then start over "
        "with --force (a teacher trained here is cached and not trained again)"
    )


def _optimise(loop: _Loop, loss: torch.Tensor) -> None:
    """Backward (scaled under AMP), optional gradient clipping, the optimizer and a per-step schedule."""
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    if loop.settings.grad_clip:
        loop.scaler.unscale_(loop.optimizer)
        nn.utils.clip_grad_norm_(loop.trainable.parameters(), loop.settings.grad_clip)
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()
    if loop.settings.schedule == "onecycle":
        loop.scheduler.step()


def _batch_loss(wrapped: nn.Module, objective, teachers: SoftTargets | None, xb: Batch, yb, idx: torch.Tensor, split: str):
    """Student forward (hooks capture its features), teacher outputs, then the objective."""
    teacher_logits = None
    if teachers is not None and (objective.needs_teacher_logits or objective.needs_teacher_features):
        if objective.needs_teacher_features:
            with torch.no_grad():
                out = forward(teachers.feature_teacher, xb)  # fills the teacher's feature hooks
            if teachers.logits_from_feature_pass:
                teacher_logits = [out]  # the same forward pass gives the logits
        if objective.needs_teacher_logits and teacher_logits is None:
            teacher_logits = teachers.logits(xb, idx, split)
    return objective(wrapped(xb), teacher_logits, yb, mask=xb.get(MASK))


class _Trainable(nn.Module):
    """The student plus its adapters: one module, so the optimizer and DDP see every parameter."""

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict) -> None:
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(self, batch: Batch) -> torch.Tensor:
        return forward(self.student, batch)


def _wrap(trainable: _Trainable, settings: TrainSettings, cuda: bool) -> nn.Module:
    wrapped: nn.Module = trainable
    if settings.compile and cuda:
        wrapped = torch.compile(wrapped)
    if distributed.world_size() > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(wrapped, device_ids=[torch.cuda.current_device()] if cuda else None)
    return wrapped


def _scheduler(optimizer, settings: TrainSettings, steps: int):
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, epochs=settings.epochs, steps_per_epoch=steps)
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _augment(x: torch.Tensor, enabled: bool, max_shift: int | None = None, masks: torch.Tensor | None = None,
             boxes: torch.Tensor | None = None, flip: bool = False):
    """Random shifts of up to max_shift pixels, or 1/8 of the height and width (zero padding), drawn for each image.

    With `masks` (N, H, W) — segmentation labels — each mask is shifted with its image, the pixels
    shifted in marked IGNORED (not scored), and (images, masks) returned. With `boxes` (N, M, 5) —
    detection labels — each image's boxes move with it and are clipped to the image; a box left
    with under half its area becomes padding (class −1); (images, boxes) returned. With `flip`,
    each shifted image (and its mask or boxes) is then mirrored left-right with probability 1/2."""
    if not enabled or x.ndim != 4:
        return x if masks is None and boxes is None else (x, masks if boxes is None else boxes)
    n, _, h, w = x.shape
    mh, mw = (h // 8, w // 8) if max_shift is None else (max_shift, max_shift)
    top = torch.randint(0, 2 * mh + 1, (n, 1), device=x.device)  # window offset in the padded image
    left = torch.randint(0, 2 * mw + 1, (n, 1), device=x.device)
    rows = (top + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
    cols = (left + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    shifted = F.pad(x, (mw, mw, mh, mh))[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indexing puts channels last
    if boxes is not None:
        boxes = _shift_boxes(boxes, (mw - left).to(boxes.dtype), (mh - top).to(boxes.dtype), h, w)
    if masks is not None:
        masks = F.pad(masks, (mw, mw, mh, mh), value=IGNORED)[batch, rows, cols]
    if flip:  # drawn only when asked: runs without flips keep their random stream
        shifted, masks, boxes = _flip(torch.rand(n, device=x.device) < 0.5, shifted, masks, boxes)
    if boxes is not None:
        return shifted, boxes
    return shifted if masks is None else (shifted, masks)


def _flip(mirrored: torch.Tensor, x: torch.Tensor, masks: torch.Tensor | None, boxes: torch.Tensor | None):
    """Images (N, C, H, W), masks (N, H, W) and boxes (N, M, 5) of the images `mirrored` (N,) marks, mirrored left-right."""
    x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
    if masks is not None:
        masks = torch.where(mirrored[:, None, None], masks.flip(-1), masks)
    if boxes is not None:
        width = x.shape[-1]
        turned = boxes.clone()
        turned[..., 1], turned[..., 3] = width - boxes[..., 3], width - boxes[..., 1]
        boxes = torch.where(mirrored[:, None, None], turned, boxes)
    return x, masks, boxes


def _shift_boxes(boxes: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes (N, M, 5) moved by (dx, dy) per image (N, 1), clipped to the image."""
    moved = boxes.clone()
    moved[..., [1, 3]] = (boxes[..., [1, 3]] + dx[:, :, None]).clamp(0, width)
    moved[..., [2, 4]] = (boxes[..., [2, 4]] + dy[:, :, None]).clamp(0, height)
    area = lambda b: (b[..., 3] - b[..., 1]) * (b[..., 4] - b[..., 2])  # noqa: E731
    moved[..., 0] = torch.where((boxes[..., 0] >= 0) & (area(moved) >= 0.5 * area(boxes)), boxes[..., 0], -1.0)
    return moved


def _check_transforms(x: Inputs, settings: TrainSettings, label: str) -> None:
    """Shifts and mixup transform float images (and mixup table rows): blending or shifting token ids would corrupt them."""
    if (settings.augment or settings.mixup > 0) and not x.one_float_input:
        kinds = ", ".join(f"{s.name} ({s.dtype})" for s in x.spec)
        raise TrainingError(f"{label}: augment and mixup transform single float images; these inputs are {kinds}: "
                            "set [data] augment = false and mixup = 0 (and [teacher] augment = false)")


def _student_inputs(xb: Batch, y: torch.Tensor | None, settings: TrainSettings) -> tuple[Batch, torch.Tensor | MixedLabels | None]:
    """The batch as the student trains on it: shifted ([data] augment), then blended ([data] mixup)."""
    if not settings.augment and settings.mixup <= 0:
        return xb, y
    (name, x), = xb.items()  # _check_transforms let only one float image input through
    geometry = task(settings.task).label_geometry
    if y is not None and geometry != "none":  # masks and boxes move with their images (mixup is refused for them)
        shifted, y = _augment(x, settings.augment, settings.max_shift, masks=y if geometry == "mask" else None,
                              boxes=y if geometry == "boxes" else None, flip=settings.flip)
        return {name: shifted}, y
    shifted, labels = _mixup(_augment(x, settings.augment, settings.max_shift, flip=settings.flip), y, settings.mixup)
    return {name: shifted}, labels


def _mixup(x: torch.Tensor, y: torch.Tensor | None, alpha: float) -> tuple[torch.Tensor, torch.Tensor | MixedLabels | None]:
    """Mixup (Zhang et al. 2018), one share per image: x_i ← s_i·x_i + (1 − s_i)·x_partner(i), s_i ~ Beta(α, α).

    The labels become MixedLabels, which the objective's cross-entropy blends with the same shares.
    """
    if alpha <= 0:
        return x, y
    share = torch.distributions.Beta(alpha, alpha).sample((len(x),)).to(x.device)
    partner = torch.randperm(len(x), device=x.device)
    s = share.view(-1, *([1] * (x.ndim - 1)))
    mixed = s * x + (1 - s) * x[partner]
    return mixed, (MixedLabels(y, y[partner], share) if y is not None else None)


def _settings_dict(settings: TrainSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["terms"] = [asdict(t) if hasattr(t, "__dataclass_fields__") else t for t in settings.terms]
    return data


def _save(path: Path, trainable, optimizer, scheduler, settings, history, best_epoch, best_state) -> None:
    state = {
        "model": trainable.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "settings": _settings_dict(settings),
        "history": [asdict(r) for r in history],
        "best_epoch": best_epoch,
        "best_state": best_state,
    }
    save_torch(state, path)


def _restore(path: Path, trainable, optimizer, scheduler, settings, label, device):
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{label}: cannot resume from {path} ({type(exc).__name__}); delete it to start over") from None
    if state.get("settings") != _settings_dict(settings):
        raise TrainingError(
            f"{label}: {path} was written with different settings; resume with the same recipe, "
            f"or delete the checkpoint to start over"
        )
    trainable.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return [epoch_record(r) for r in state["history"]], state["best_epoch"], state["best_state"]
