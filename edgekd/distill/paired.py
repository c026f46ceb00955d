"""Is the distilled student really better than its scratch twin, or is the difference chance?

Both students answer the same test images, so their results are paired: only the images that
exactly one of them gets right say anything about which is better. McNemar's test asks whether
those split evenly; the exact form (a two-sided binomial test with p = 1/2 on the discordant
images) holds at any count, where the χ² form needs many. On 360 digits test images a gain of
one point is three or four images and usually chance; on 10,000 Fashion-MNIST images it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np


@dataclass(frozen=True)
class PairedTest:
    only_first: int  # test images the first model gets right and the second gets wrong
    only_second: int  # ... and the other way round
    p_value: float  # exact two-sided McNemar test: chance of a split at least this uneven if both models were equal


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided p-value: 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1."""
    if only_first < 0 or only_second < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)  # Python integers are exact, so large n loses nothing here


def paired_test(first_correct: np.ndarray, second_correct: np.ndarray) -> PairedTest:
    """Compare two models' per-image correctness on the same test images."""
    first, second = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape:
        raise ValueError(f"paired results need the same images: {first.shape} vs {second.shape}")
    b, c = int((first & ~second).sum()), int((~first & second).sum())
    return PairedTest(b, c, mcnemar_exact(b, c))
