"""Checkpoints: a state dict plus the spec to rebuild the model, loaded without unpickling.

Files are written atomically and read with `torch.load(weights_only=True)`, which refuses
arbitrary pickled objects: a checkpoint from the internet cannot run code on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd._io import atomic_path
from edgekd.errors import ModelError, first_line
from edgekd.models.build import ModelSpec, build_model

FORMAT = "edgekd.checkpoint/1"


def save_checkpoint(model: nn.Module, spec: ModelSpec, path: Path, extra: dict[str, Any] | None = None) -> None:
    payload = {"format": FORMAT, "spec": spec.to_dict(), "state_dict": model.state_dict(), **(extra or {})}
    save_torch(payload, Path(path))


def save_torch(payload: Any, path: Path) -> None:
    """torch.save, byte for byte the same for the same tensors: torch names the zip's inner folder
    after the file it writes, so saving straight to a temporary file (for the atomic rename) would
    put its random name inside every checkpoint and change the sha256 the manifest records."""
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)  # inner folder "archive", whatever the destination is called
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file safely; a plain state dict comes back as {'state_dict': ...}."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path} (check the path)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        if "Weights only load failed" in str(exc) or type(exc).__name__ == "UnpicklingError":
            # torch's own message suggests weights_only=False: edgekd never unpickles a file it was given
            raise ModelError(f"{path}: holds Python objects besides tensors, and edgekd loads checkpoints with weights_only=True only; "
                             "save the weights alone: torch.save(model.state_dict(), PATH)") from None
        raise ModelError(f"{path}: not a loadable weights-only PyTorch checkpoint ({first_line(exc, 300)})") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return payload
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": payload}
    raise ModelError(f"{path}: expected an edgekd checkpoint or a state dict of tensors")


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: Path | str) -> None:
    """Load weights strictly, naming the first missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        what = f"missing key '{missing[0]}'" if missing else f"unexpected key '{unexpected[0]}'"
        raise ModelError(f"{source}: weights do not fit the model ({what}; {len(missing)} missing, {len(unexpected)} unexpected) — check [model] and args")
    for key, tensor in own.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise ModelError(f"{source}: '{key}' has shape {tuple(state_dict[key].shape)} in the checkpoint but {tuple(tensor.shape)} in the model — check the model args")
    model.load_state_dict(state_dict)


def load_model(path: Path, spec: ModelSpec | None = None) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a model from a checkpoint (its own spec wins; `spec` serves plain state dicts)."""
    payload = read_checkpoint(path)
    if "spec" in payload:
        spec = ModelSpec.from_dict(payload["spec"])
    if spec is None:
        raise ModelError(f"{path}: a plain state dict needs the model spec from the recipe")
    model = build_model(spec)
    load_weights(model, payload["state_dict"], path)
    return model.eval(), spec
