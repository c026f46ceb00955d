"""Calling a PyTorch model on named inputs: the torch side of the feeds contract.

A one-input model is called positionally (`model(x)`, as every image net's forward takes it); a
model with several inputs by name (`model(input_ids=..., attention_mask=...)`). Sequence
inputs are cut to the batch's longest real row before the call.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from edgekd._platform import TRIM_EVERY, release_freed_memory
from edgekd.runtime.metrics import top1_hits
from edgekd.inputs import MASK, Inputs, TensorSpec, as_inputs, concat_outputs

Batch = dict[str, torch.Tensor]


def to_tensors(inputs: Inputs | np.ndarray, device: torch.device | str = "cpu") -> Batch:
    """Every input as a tensor on `device`, dtype kept (int64 ids stay int64)."""
    return {name: torch.as_tensor(array, device=device) for name, array in as_inputs(inputs).items()}


def take(batch: Batch, index: torch.Tensor | slice) -> Batch:
    return {name: tensor[index] for name, tensor in batch.items()}


def trim(batch: Batch, spec: tuple[TensorSpec, ...]) -> Batch:
    """Cut sequence inputs to the longest real row of this batch (at least one token)."""
    mask = batch.get(MASK)
    sequences = [s.name for s in spec if s.is_sequence]
    if mask is None or not sequences or mask.shape[1] == 0:
        return batch
    used = mask.ne(0).any(dim=0)
    length = max(1, int(used.nonzero().max()) + 1) if bool(used.any()) else 1
    if length == mask.shape[1]:
        return batch
    return {name: tensor[:, :length] if name in sequences else tensor for name, tensor in batch.items()}


def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits for a batch of named inputs."""
    if len(batch) == 1:
        return model(next(iter(batch.values())))
    return model(**batch)


def predict(model: nn.Module, x: Inputs | np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of `model` in eval mode, as a numpy array (the model's train/eval mode is restored)."""
    return concat_outputs(list(predict_batches(model, x, batch_size)))  # per-token outputs of shorter batches padded back


@torch.no_grad()  # a generator: torch re-enters no_grad at each resumption
def predict_batches(model: nn.Module, x: Inputs | np.ndarray, batch_size: int = 512) -> Iterator[np.ndarray]:
    """Eval-mode logits of `model` for `x`, one batch at a time and in order, each batch cut to its
    own longest sequence: what a caller that stores outputs on disk consumes without holding them all."""
    x = as_inputs(x)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for number, start in enumerate(range(0, len(x), batch_size), start=1):
            yield forward(model, to_tensors(x[start : start + batch_size].trimmed(), device)).float().cpu().numpy()
            if number % TRIM_EVERY == 0:
                release_freed_memory()
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: Inputs | np.ndarray, y: np.ndarray) -> float:
    return float(top1_hits(predict(model, x), y).mean())
