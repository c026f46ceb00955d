"""Knowledge distillation: losses, teacher preparation, the training loop and the stage."""

from edgekd.distill.stage import DistillResult, distill

__all__ = ["DistillResult", "distill"]
