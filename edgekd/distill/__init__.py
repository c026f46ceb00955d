"""Knowledge distillation: losses, teacher preparation, the training loop and the stage.

Nothing is imported here: `edgekd.distill.result` (the typed result) must stay torch-free.
"""
