"""A generated segmentation set for tests: noisy images with rectangles (class 1) and discs
(class 2) on background (class 0), a thin border of unlabelled pixels (255) around each shape."""

from __future__ import annotations

import numpy as np


def shapes_arrays(n: int = 240, size: int = 16, seed: int = 0, test_share: float = 0.25) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.35, size=(n, 1, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), dtype=np.uint8)
    rows, cols = np.mgrid[:size, :size]
    for i in range(n):
        for shape in rng.permutation([1, 2])[: rng.integers(1, 3)]:
            r, c, radius = rng.integers(3, size - 3), rng.integers(3, size - 3), rng.integers(2, 4)
            if shape == 1:
                inside = (abs(rows - r) <= radius) & (abs(cols - c) <= radius)
                edge = (abs(rows - r) <= radius + 1) & (abs(cols - c) <= radius + 1) & ~inside
            else:
                distance = np.hypot(rows - r, cols - c)
                inside, edge = distance <= radius, (distance > radius) & (distance <= radius + 1)
            y[i][edge & (y[i] == 0)] = 255
            y[i][inside] = shape
            x[i, 0][inside] += 1.0
    cut = int(n * (1 - test_share))
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}
