"""Models: built-in families, user factories, and safe checkpoints."""

from edgekd.models.build import ModelSpec, build_model
from edgekd.models.zoo import FAMILIES

__all__ = ["FAMILIES", "ModelSpec", "build_model"]
