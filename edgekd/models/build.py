"""Turn a model spec (family, `hf:FOLDER` or `package.module:factory`, plus args) into an `nn.Module`.

A `ModelSpec` is stored inside every edgekd checkpoint, with the model's named, typed inputs, so
a checkpoint alone is enough to rebuild its model and feed it in any later stage or run.

What edgekd knows about the data (`input_shape`, `num_classes`, `vocab_size`) is passed only to
parameters a factory names: a factory's `**kwargs` often forwards to a class that rejects
unknown keywords (torchvision's builders do).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgekd._user import import_object
from edgekd.errors import ModelError, first_line
from edgekd.inputs import TensorSpec, image_spec
from edgekd.models.zoo import FAMILIES

HF_PREFIX = "hf:"
ENSEMBLE = "ensemble"  # edgekd's own checkpoint of several teachers (models/ensemble.py)


@dataclass(frozen=True)
class ModelSpec:
    model: str  # built-in family name, "hf:FOLDER" or "package.module:factory"
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments for it
    input_shape: tuple[int, ...] = ()  # one sample's shape of the first input, without the batch axis
    num_classes: int = 0  # outputs of the classifier
    inputs: tuple[TensorSpec, ...] = ()  # named, typed inputs; empty: one float32 input of input_shape
    vocab_size: int | None = None  # text models: rows of the embedding table (the tokenizer's vocabulary)
    outputs: tuple[str, ...] = ("logits",)  # named outputs; the first is the one scored
    # regression: the training targets' mean and std per target; the model learns standardised
    # targets and its last step maps them back, so it (and its ONNX file) answers in the data's units
    target_scale: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if not self.inputs:  # the one-input case: a float32 input of input_shape
            object.__setattr__(self, "inputs", image_spec(self.input_shape))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "args": dict(self.args), "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "inputs": [s.to_dict() for s in self.inputs], "vocab_size": self.vocab_size, "outputs": list(self.outputs),
                "target_scale": [list(v) for v in self.target_scale] if self.target_scale else None}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelSpec":
        inputs = tuple(TensorSpec.from_dict(s) for s in data.get("inputs") or [])  # older checkpoints: one float input
        scale = data.get("target_scale")
        return ModelSpec(data["model"], dict(data.get("args", {})), tuple(data["input_shape"]), int(data["num_classes"]),
                         inputs, data.get("vocab_size"), tuple(data.get("outputs") or ("logits",)),
                         (tuple(scale[0]), tuple(scale[1])) if scale else None)


class InDataUnits(nn.Module):
    """A regressor that learns standardised targets and answers in the data's units: outputs ·
    std + mean, with the training targets' statistics kept as buffers (saved, exported, never
    trained). Layer paths (hint/at terms) are those of `inner`, the model as the user named it."""

    def __init__(self, inner: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        import torch

        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x=None, **named):  # one input positionally (as torch.export's shapes name it), several by name
        return (self.inner(x) if x is not None else self.inner(**named)) * self.std + self.mean


def target_scale(y_train) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per target, the training targets' mean and std (a constant target keeps std 1)."""
    import numpy as np

    y = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    std = y.std(axis=0)
    return tuple(float(m) for m in y.mean(axis=0)), tuple(float(s) if s > 0 else 1.0 for s in std)


def spec_for(model: str, args: dict[str, Any], data, standardize_targets: bool = True) -> ModelSpec:
    """The spec of `model` with `args` for the data's inputs and outputs (a DataSplits); a
    regressor's with the training targets' scale unless `standardize_targets` is off."""
    scale = target_scale(data.y_train) if data.task == "regression" and standardize_targets else None
    args = dict(args)
    if data.task == "token-classification" and (model == "transformer" or model.startswith(HF_PREFIX)):
        args.setdefault("pooling", "none")  # edgekd's text models: one output per token
    return ModelSpec(model, args, data.input_shape, data.num_classes, data.inputs, data.vocab_size, target_scale=scale)


def layers_of(model: nn.Module) -> nn.Module:
    """The module whose paths name its layers: the user's model, inside any InDataUnits wrapper."""
    return model.inner if isinstance(model, InDataUnits) else model


def start_pretrained(model: nn.Module) -> bool:
    """Load the pretrained weights a family's args name (the detector's ImageNet MobileNetV2
    backbone), for a model about to train; a checkpoint being rebuilt never calls this, so the
    weights file is needed only where training starts. Returns whether anything was loaded."""
    inner = layers_of(model)
    if getattr(inner, "pretrained", None) and hasattr(inner, "load_pretrained"):
        inner.load_pretrained()
        return True
    return False


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the module a spec names (answering in the data's units when the spec has a
    target_scale); unknown families and arguments raise with the valid ones."""
    model = _build(spec)
    return InDataUnits(model, *spec.target_scale) if spec.target_scale else model


def _build(spec: ModelSpec) -> nn.Module:
    if spec.model == ENSEMBLE:  # several teachers saved as one reference model
        from edgekd.models.ensemble import build_ensemble

        return build_ensemble(spec.args)
    if spec.model.startswith(HF_PREFIX):
        from edgekd.models.text import hf_model

        return hf_model(spec.model[len(HF_PREFIX):], spec.num_classes, **spec.args)
    if ":" in spec.model:
        factory = import_object(spec.model, ModelError, "model factory")
    elif spec.model in FAMILIES:
        factory = FAMILIES[spec.model]
    else:
        close = difflib.get_close_matches(spec.model, list(FAMILIES), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        raise ModelError(
            f"unknown model family '{spec.model}'{hint}; built-in families: {', '.join(FAMILIES)}, "
            f"or give 'package.module:factory' or 'hf:FOLDER'"
        )
    context = {"input_shape": spec.input_shape, "num_classes": spec.num_classes, "vocab_size": spec.vocab_size}
    params = inspect.signature(factory).parameters
    named = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    takes_any = len(named) < len(params)
    unknown = [k for k in spec.args if k not in named and not takes_any]
    if unknown:
        valid = [k for k in named if k not in context]
        raise ModelError(f"model '{spec.model}' has no argument '{unknown[0]}'; valid arguments: {', '.join(valid) or 'none'}")
    kwargs = dict(spec.args)
    for name, value in context.items():
        if name in named and name not in kwargs:  # never through **kwargs: it may reach a class that rejects it
            if value is None and params[name].default is not inspect.Parameter.empty:
                continue
            if value is None:
                raise ModelError(f"model '{spec.model}' needs {name}, which this data does not give (text models need a text:PATH source with a tokenizer)")
            kwargs[name] = value
    try:
        model = factory(**kwargs)
    except ModelError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{spec.model}' could not be built with args {spec.args}: {exc}") from None
    except (Exception, SystemExit) as exc:
        if _out_of_memory(exc):  # args that size the weights (a width of 10**12) are the user's to fix, whichever factory reads them
            raise ModelError(f"model '{spec.model}' with args {spec.args} needs more memory than this machine has free "
                             f"({first_line(exc, 120)}); use smaller args") from None
        if spec.model in FAMILIES:  # edgekd's own family failed: a bug (exit 3), not a user error
            raise
        # the user's own factory failed: say whose, not a traceback of ours
        raise ModelError(f"model factory '{spec.model}' raised {type(exc).__name__}: {first_line(exc)}; fix the factory or its args") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory '{spec.model}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, or torch's allocator refusing ("DefaultCPUAllocator: can't allocate memory")."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "allocate" in str(exc))
