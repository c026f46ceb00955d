"""A generated detection set for tests: squares (class 0) and discs (class 1) on noise, with exact boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_shapes(count: int, size: int = 64, seed: int = 0, most: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 3, size, size) float32, y (N, most, 5) float32 rows [class, x1, y1, x2, y2], padding class -1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.1, (count, 3, size, size)).astype(np.float32)
    y = np.full((count, most, 5), -1.0, dtype=np.float32)
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(count):
        for j in range(rng.integers(1, most + 1)):
            extent = int(rng.integers(8, 24))
            x1, y1 = (int(v) for v in rng.integers(0, size - extent, 2))
            kind = int(rng.integers(0, 2))
            if kind == 0:
                inside = (rows >= y1) & (rows < y1 + extent) & (cols >= x1) & (cols < x1 + extent)
            else:
                centre = (x1 + extent / 2 - 0.5, y1 + extent / 2 - 0.5)
                inside = (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= (extent / 2) ** 2
            x[i][:, inside] = rng.uniform(0.5, 1.0, (3, 1))
            y[i, j] = [kind, x1, y1, x1 + extent, y1 + extent]
    return x, y


def write_shapes(path: Path, train: int = 160, test: int = 48, size: int = 64) -> Path:
    x_train, y_train = make_shapes(train, size, seed=0)
    x_test, y_test = make_shapes(test, size, seed=1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
