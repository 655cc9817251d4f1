"""Report statistics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hedgespec_cli.report.stats import geomean, mann_whitney_p, paired_geomean_ratio, summarize


def test_geomean():
    assert geomean([1.0, 4.0]) == pytest.approx(2.0)
    assert geomean([3.0]) == pytest.approx(3.0)


def test_paired_ratio_constant_has_zero_width_ci():
    # Every prompt exactly 2x faster: geomean 2, every resample 2.
    g, (lo, hi) = paired_geomean_ratio([1, 2, 4], [2, 4, 8], n_boot=200, seed=0)
    assert (g, lo, hi) == pytest.approx((2.0, 2.0, 2.0))


def test_paired_ratio_two_prompts_by_hand():
    # Ratios 2 and 1/2: geomean 1. A resample of two pairs has geomean 2 (p=1/4),
    # 1 (p=1/2) or 1/2 (p=1/4), so the 2.5% / 97.5% quantiles are 1/2 and 2.
    g, (lo, hi) = paired_geomean_ratio([1.0, 2.0], [2.0, 1.0], n_boot=2000, seed=0)
    assert g == pytest.approx(1.0)
    assert (lo, hi) == pytest.approx((0.5, 2.0))


def test_paired_ratio_is_seeded():
    rng = np.random.default_rng(1)
    base = rng.uniform(50, 150, size=30)
    cand = base * rng.lognormal(0.0, 0.1, size=30)
    assert paired_geomean_ratio(base, cand, seed=3) == paired_geomean_ratio(base, cand, seed=3)
    g, (lo, hi) = paired_geomean_ratio(base, cand, seed=3)
    assert lo < g < hi
    assert g == pytest.approx(math.exp(np.mean(np.log(cand / base))))


def test_paired_ratio_chunking_matches_shape():
    # More prompts than one chunk of resamples holds: still n_boot resamples.
    base = np.full(5000, 10.0)
    g, (lo, hi) = paired_geomean_ratio(base, base * 1.1, n_boot=500)
    assert (g, lo, hi) == pytest.approx((1.1, 1.1, 1.1))


@pytest.mark.parametrize(
    "base, cand",
    [([1.0, 2.0], [1.0]), ([1.0, 0.0], [1.0, 1.0]), ([1.0, float("nan")], [1.0, 1.0]), ([], [])],
)
def test_paired_ratio_rejects_bad_input(base, cand):
    with pytest.raises(ValueError):
        paired_geomean_ratio(base, cand)


def test_mann_whitney_separated_samples():
    # R1 = 1+2+3 = 6, U1 = 0, mean 4.5, var 3*3/12*7 = 5.25, continuity -0.5.
    z = (4.5 - 0.5) / math.sqrt(5.25)
    expected = math.erfc(z / math.sqrt(2))
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(expected)
    assert expected == pytest.approx(0.080856, abs=1e-6)
    assert mann_whitney_p([4, 5, 6], [1, 2, 3]) == pytest.approx(expected)  # two-sided


def test_mann_whitney_with_ties():
    # Pooled 1,1,1,2,2,2 -> ranks 2,2,2,5,5,5; R1 = 2+2+5 = 9, U1 = 3.
    # Ties: two groups of 3 -> sum(t^3 - t) = 48; var = 9/12 * (7 - 48/30) = 4.05.
    z = (abs(3 - 4.5) - 0.5) / math.sqrt(4.05)
    assert mann_whitney_p([1, 1, 2], [1, 2, 2]) == pytest.approx(math.erfc(z / math.sqrt(2)))


def test_mann_whitney_all_tied_and_large_shift():
    assert mann_whitney_p([5, 5, 5], [5, 5]) == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 50), rng.normal(3, 1, 50)
    assert mann_whitney_p(a, b) < 1e-10
    with pytest.raises(ValueError):
        mann_whitney_p([], [1.0])


def test_summarize_by_hand():
    s = summarize([1, 2, 3, 4])
    sd = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)
    assert s == pytest.approx({"n": 4, "mean": 2.5, "median": 2.5, "min": 1.0, "max": 4.0, "cv": sd / 2.5})
    assert summarize([7.0])["cv"] is None
    assert summarize([]) == {"n": 0, "mean": None, "median": None, "min": None, "max": None, "cv": None}


def test_repeats_of_a_prompt_are_one_pair():
    from hedgespec_cli.report.stats import per_prompt_pairs

    pairs = per_prompt_pairs({("b", 0): (1.0, 4.0), ("a", 1): (2.0, 2.0), ("a", 0): (8.0, 2.0)})
    assert pairs.tolist() == [[4.0, 2.0], [1.0, 4.0]]  # a: geometric means of its two repeats; then b
    assert per_prompt_pairs({}).shape == (0, 2)
