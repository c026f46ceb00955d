"""Is one model really better than another on the same images, or is the difference chance?

The distilled student against its scratch twin, the int8 model against its fp32 original, the
deployed student against the teacher: both models answer the same images, so their results are paired: only the images that
exactly one of them gets right say anything about which is better. McNemar's test asks whether
those split evenly; the exact form (a two-sided binomial test with p = 1/2 on the discordant
images) holds at any count, where the χ² form needs many. On 360 digits test images a gain of
one point is three or four images and usually chance; on 10,000 Fashion-MNIST images it is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb, sqrt

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


@dataclass(frozen=True)
class PairedDrop:
    """How much worse the second model is than the first on the same samples: accuracy lost
    (classification), or the relative rise of RMSE (regression, `paired_error_rise`)."""

    drop: float  # first's accuracy − second's, or second's RMSE / first's − 1 (positive: the second is worse)
    interval: list[float]  # 95% confidence interval of the drop
    p_value: float  # chance of a difference at least this large if both were equal (exact McNemar; sign-flip for errors)
    only_first: int  # images only the first model gets right (errors: samples the first predicts more closely)
    only_second: int
    images: int

    def significantly_beyond(self, budget: float, alpha: float = 0.05) -> bool:
        """The drop exceeds the budget and the second model is really worse (McNemar), not a few images of noise."""
        return self.drop > budget and self.p_value < alpha


def paired_drop(first_correct: np.ndarray, second_correct: np.ndarray) -> PairedDrop:
    """The drop from the first model to the second on the same images, with its interval.

    The interval is Agresti and Min's (2005) adjusted Wald interval for a difference of paired
    proportions: half an image added to each cell of the 2×2 table keeps it honest at the few
    discordant images a small validation split gives, where the plain Wald interval is too narrow.
    """
    test = paired_test(first_correct, second_correct)
    n = len(np.asarray(first_correct))
    if n == 0:
        raise ValueError("a paired drop needs at least one image")
    b, c, n_adj = test.only_first + 0.5, test.only_second + 0.5, n + 2
    centre = (b - c) / n_adj
    half = 1.959964 * sqrt(max(b + c - (b - c) ** 2 / n_adj, 0.0)) / n_adj
    return PairedDrop((test.only_first - test.only_second) / n, [centre - half, centre + half], test.p_value,
                      test.only_first, test.only_second, n)


def paired_error_rise(first_errors: np.ndarray, second_errors: np.ndarray, resamples: int = 2000, seed: int = 0) -> PairedDrop:
    """How much worse the second model's RMSE is than the first's on the same samples, relative
    (0.02: 2% higher), from each sample's squared error under both models.

    The interval is a paired percentile bootstrap of the relative rise (samples drawn with both
    models' errors kept together); the p-value a paired sign-flip permutation test of the mean
    difference in squared error (under "both equal" each sample's difference is as likely either
    sign). `only_first`/`only_second` count the samples each model predicts more closely."""
    first, second = np.asarray(first_errors, dtype=np.float64), np.asarray(second_errors, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1 or len(first) == 0:
        raise ValueError(f"paired errors need the same samples, at least one: {first.shape} vs {second.shape}")
    rng = np.random.default_rng(seed)
    diff, observed = second - first, abs(float((second - first).mean()))
    boot, extreme = [], 0
    for start in range(0, resamples, _CHUNK):  # memory bounded by a chunk of resamples, whatever the sample count
        count = min(_CHUNK, resamples - start)
        picks = rng.integers(0, len(first), size=(count, len(first)))
        boot.append(_rmse_ratio(first[picks].mean(axis=1), second[picks].mean(axis=1)) - 1)
        flipped = (rng.choice((-1.0, 1.0), size=(count, len(diff))) * diff).mean(axis=1)
        extreme += int((np.abs(flipped) >= observed - 1e-15).sum())
    boot_all = np.concatenate(boot)
    rise = float(_rmse_ratio(np.array([first.mean()]), np.array([second.mean()]))[0] - 1)
    return PairedDrop(rise, [float(np.quantile(boot_all, 0.025)), float(np.quantile(boot_all, 0.975))],
                      min(1.0, (1 + extreme) / (1 + resamples)), int((first < second).sum()), int((second < first).sum()), len(first))


_CHUNK = 100  # bootstrap resamples drawn at once


def _rmse_ratio(first_mse: np.ndarray, second_mse: np.ndarray) -> np.ndarray:
    return np.sqrt(second_mse) / np.maximum(np.sqrt(first_mse), 1e-300)



def paired_pooled_drop(first_counts: np.ndarray, second_counts: np.ndarray, metric: Callable[[np.ndarray], float],
                       resamples: int = 2000, seed: int = 0) -> PairedDrop:
    """How many points of `metric` the second model loses against the first on the same samples,
    for a metric pooled over samples before it is computed (mIoU pools each class's pixels over
    the images first), from each sample's counts (first axis: samples).

    Such a metric is not a mean over samples, so neither McNemar nor a per-sample difference
    applies. The interval is a paired percentile bootstrap over samples (a sample's counts under
    both models drawn together, the metric recomputed from the resample); the p-value a paired
    permutation test (under "both equal" a sample's two results are exchangeable, so each pair is
    swapped at random). `only_first`/`only_second` count the samples on which each model alone
    scores higher."""
    first, second = np.asarray(first_counts), np.asarray(second_counts)
    if first.shape != second.shape or first.ndim < 2 or len(first) == 0:
        raise ValueError(f"paired counts need the same samples, at least one: {first.shape} vs {second.shape}")
    rng = np.random.default_rng(seed)
    observed = metric(first) - metric(second)
    boot, extreme = [], 0
    for _ in range(resamples):
        pick = rng.integers(0, len(first), size=len(first))
        boot.append(metric(first[pick]) - metric(second[pick]))
        swap = (rng.random(len(first)) < 0.5).reshape(-1, *([1] * (first.ndim - 1)))
        extreme += abs(metric(np.where(swap, second, first)) - metric(np.where(swap, first, second))) >= abs(observed) - 1e-12
    alone = np.array([[metric(a[None]), metric(b[None])] for a, b in zip(first, second)])
    return PairedDrop(observed, [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
                      min(1.0, (1 + extreme) / (1 + resamples)), int((alone[:, 0] > alone[:, 1]).sum()),
                      int((alone[:, 1] > alone[:, 0]).sum()), len(first))
