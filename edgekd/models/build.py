"""Turn a model spec (family or `package.module:factory`, plus args) into an `nn.Module`.

A `ModelSpec` is stored inside every edgekd checkpoint, so a checkpoint alone is enough to rebuild
its model in any later stage or run.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgekd.data.sources import import_object
from edgekd.errors import ModelError
from edgekd.models.zoo import FAMILIES


@dataclass(frozen=True)
class ModelSpec:
    model: str  # built-in family name or "package.module:factory"
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments for it
    input_shape: tuple[int, ...] = ()  # one sample's shape, without the batch axis
    num_classes: int = 0  # outputs of the classifier

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "args": dict(self.args), "input_shape": list(self.input_shape), "num_classes": self.num_classes}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelSpec":
        return ModelSpec(data["model"], dict(data.get("args", {})), tuple(data["input_shape"]), int(data["num_classes"]))


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the module a spec names; unknown families and arguments raise with the valid ones."""
    if ":" in spec.model:
        factory = import_object(spec.model, ModelError, "model factory")
    elif spec.model in FAMILIES:
        factory = FAMILIES[spec.model]
    else:
        close = difflib.get_close_matches(spec.model, list(FAMILIES), n=1)
        hint = f" — did you mean '{close[0]}'?" if close else ""
        raise ModelError(
            f"unknown model family '{spec.model}'{hint}; built-in families: {', '.join(FAMILIES)}, "
            f"or give 'package.module:factory'"
        )
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in spec.args if k not in params and not takes_any]
    if unknown:
        valid = [k for k in params if k not in ("input_shape", "num_classes")]
        raise ModelError(f"model '{spec.model}' has no argument '{unknown[0]}'; valid arguments: {', '.join(valid) or 'none'}")
    kwargs = dict(spec.args)
    for name, value in (("input_shape", spec.input_shape), ("num_classes", spec.num_classes)):
        if (name in params or takes_any) and name not in kwargs:
            kwargs[name] = value
    try:
        model = factory(**kwargs)
    except ModelError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{spec.model}' could not be built with args {spec.args}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model factory '{spec.model}' returned {type(model).__name__}, not a torch.nn.Module")
    return model
