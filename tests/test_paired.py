"""The exact McNemar test that says whether the distilled student's gain over its scratch twin is chance."""

import numpy as np
import pytest

from edgekd.paired import mcnemar_exact, paired_test


@pytest.mark.parametrize(
    "b,c,expected",
    [
        (0, 0, 1.0),  # no image tells the models apart
        (3, 3, 1.0),  # an even split is the likeliest outcome
        (0, 5, 2 / 2**5),  # 2 · P(X ≤ 0), X ~ Bin(5, 1/2)
        (1, 9, 2 * (1 + 10) / 2**10),  # 2 · (C(10,0) + C(10,1)) / 2^10 = 0.021484375
        (9, 1, 2 * (1 + 10) / 2**10),  # two-sided: the order does not matter
        (0, 20, 2 / 2**20),
    ],
)
def test_exact_mcnemar_by_hand(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_exact_mcnemar_stays_exact_for_many_discordant_images():
    # 4,150 discordant images: the χ² approximation with continuity correction gives z = 149 / √4150 = 2.313, p ≈ 0.0207.
    assert mcnemar_exact(2000, 2150) == pytest.approx(0.0207, abs=5e-4)
    assert mcnemar_exact(5000, 5000) == 1.0


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_paired_counts_only_the_images_one_model_gets_right():
    first = np.array([1, 1, 0, 0, 1, 1], dtype=bool)
    second = np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    result = paired_test(first, second)
    assert (result.only_first, result.only_second) == (2, 1)
    assert result.p_value == pytest.approx(1.0)  # 2 · (1 + 3) / 8 capped at 1
    with pytest.raises(ValueError, match="same images"):
        paired_test(first, second[:5])
