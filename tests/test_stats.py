"""curator.stats: mean ± t-interval and Krippendorff's α, checked by hand and against the
independent `krippendorff` package (PyPI)."""

from __future__ import annotations

import math
from fractions import Fraction

import krippendorff
import numpy as np
import pytest
from scipy import stats as sps

from curator.stats import (coincidence_matrix, design_mean_ci, krippendorff_alpha, krippendorff_alpha_ci,
                               loo_agreement, mean_ci, paired_difference_ci)

NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders × 12 units
# example with missing values; the paper reports α nominal 0.743 and interval 0.849.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def test_hand_worked_ordinal_example():
    """Two raters, three units: A = (1, 2, 3), B = (1, 3, 3).

    Coincidences: unit 1 gives o11 = 2, unit 2 gives o23 = o32 = 1, unit 3 gives o33 = 2,
    so n1 = 2, n2 = 1, n3 = 3, n = 6. Ordinal δ²: (1,2) = (3 − 3/2)² = 9/4,
    (2,3) = (4 − 2)² = 4, (1,3) = (6 − 5/2)² = 49/4.
    Σ o δ² = 2 · 4 = 8; Σ n_c n_k δ² = 2 (2·1·9/4 + 2·3·49/4 + 1·3·4) = 180;
    α = 1 − (n − 1) · 8 / 180 = 1 − 40/180 = 7/9.
    """
    data = [[1, 2, 3], [1, 3, 3]]
    values, o = coincidence_matrix(data)
    assert values.tolist() == [1, 2, 3]
    assert o.tolist() == [[2, 0, 0], [0, 0, 1], [0, 1, 2]]
    expected = 1 - Fraction(5) * 8 / 180
    assert expected == Fraction(7, 9)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(float(expected), abs=1e-12)
    # interval on the same data: δ² = (c−k)², Σ o δ² = 2, Σ n n δ² = 2 (2·1·1 + 2·3·4 + 1·3·1) = 58
    assert krippendorff_alpha(data, "interval") == pytest.approx(1 - 5 * 2 / 58, abs=1e-12)


def test_published_example_values():
    assert krippendorff_alpha(K2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(K2011, "interval") == pytest.approx(0.849, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_agrees_with_krippendorff_package(level):
    assert krippendorff_alpha(K2011, level) == pytest.approx(
        krippendorff.alpha(reliability_data=K2011, level_of_measurement=level), abs=1e-12)
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        raters, units = int(rng.integers(2, 7)), int(rng.integers(3, 40))
        m = rng.integers(1, 6, (raters, units)).astype(float)
        # correlated raters so α spans a useful range, then 25 % missing
        m = np.clip(m[:1] + rng.integers(-1, 2, (raters, units)), 1, 5)
        m[rng.random((raters, units)) < 0.25] = NAN
        ours = krippendorff_alpha(m, level)
        if ours is None:
            continue
        ref = krippendorff.alpha(reliability_data=m, level_of_measurement=level, value_domain=[1, 2, 3, 4, 5])
        assert ours == pytest.approx(ref, abs=1e-10)
        checked += 1
    assert checked > 40


def test_perfect_agreement_and_undefined_cases():
    assert krippendorff_alpha([[1, 2, 3, 4], [1, 2, 3, 4]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[3, 3, 3], [3, 3, 3]]) is None  # one value: no expected disagreement
    assert krippendorff_alpha([[1, NAN], [NAN, 2]]) is None  # no unit has two values
    assert krippendorff_alpha([[None, 2], [1, 3]]) == krippendorff_alpha([[NAN, 2], [1, 3]])
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2]], "ratio-ish")
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha([1, 2, 3])


def test_mean_ci_matches_t_formula():
    x = [3, 4, 4, 5, 2, 3, 4]
    ci = mean_ci(x)
    n, m, s = len(x), float(np.mean(x)), float(np.std(x, ddof=1))
    half = sps.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    assert (ci.n, ci.mean) == (7, pytest.approx(m))
    assert ci.half_width == pytest.approx(half)
    assert (ci.low, ci.high) == (pytest.approx(m - half), pytest.approx(m + half))
    # scipy's own interval as a second reference
    lo, hi = sps.t.interval(0.95, n - 1, loc=m, scale=sps.sem(x))
    assert (ci.low, ci.high) == (pytest.approx(lo), pytest.approx(hi))
    assert "±" in ci.text()
    assert mean_ci(x, 0.99).half_width > ci.half_width


def test_mean_ci_small_and_bad_samples():
    assert mean_ci([]).mean is None and mean_ci([]).text() == "—"
    one = mean_ci([4])
    assert one.mean == 4 and one.half_width is None and one.text() == "4.00 (n=1)"
    assert mean_ci([2, 2, 2]).half_width == 0.0
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2], confidence=95)
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1, float("nan")])


# ---------------------------------------------------------------------------------------------
# intervals that respect the design: clips nested in prompts, several raters per clip



def _crossed_ratings(rng, n_raters=6, n_prompts=20, rater_sd=0.8, prompt_sd=0.8, noise_sd=0.3, offset=0.0):
    """raters × prompts ratings with rater severities and prompt effects (so ratings are not independent)."""
    rater = rng.normal(0, rater_sd, size=(n_raters, 1))
    prompt = rng.normal(0, prompt_sd, size=(1, n_prompts))
    return 3.0 + offset + rater + prompt + rng.normal(0, noise_sd, size=(n_raters, n_prompts)), rater, prompt


def test_design_ci_is_the_mean_of_clip_means_and_covers_better_than_the_t_interval():
    rng = np.random.default_rng(0)
    covered_boot = covered_t = 0
    trials = 40
    for _ in range(trials):
        table, _, _ = _crossed_ratings(rng)
        table[rng.random(table.shape) < 0.3] = np.nan  # unequal raters per clip
        ci = design_mean_ci(table, n_resamples=400, seed=1)
        clip_means = np.nanmean(table, axis=0)
        assert ci.mean == pytest.approx(clip_means.mean()) and ci.n == table.shape[1]
        assert ci.low < ci.mean < ci.high and ci.method == "cluster bootstrap"
        naive = mean_ci(table[~np.isnan(table)])
        covered_boot += ci.low <= 3.0 <= ci.high  # the true mean of the generating model
        covered_t += naive.low <= 3.0 <= naive.high
        assert ci.high - ci.low > naive.high - naive.low  # ratings that move together carry less information
    # with 6 raters the percentile bootstrap still undercovers a little (31 of 40 here), the t interval
    # over all ratings far more (18 of 40)
    assert covered_boot > covered_t
    assert covered_boot >= 0.7 * trials


def test_design_ci_is_seeded_and_handles_tiny_tables():
    table = [[1, 2, 4, None], [2, 2, 5, 3], [None, 1, 4, 3]]
    assert design_mean_ci(table, seed=3) == design_mean_ci(table, seed=3)
    assert design_mean_ci([[None, None]]).mean is None and design_mean_ci([[None, None]]).n == 0
    one = design_mean_ci([[4], [2]])
    assert one.mean == 3.0 and one.low is None and one.text() == "3.00 (n=1)"
    same = design_mean_ci([[3, 3], [3, 3]])
    assert (same.low, same.high) == (3.0, 3.0)
    with pytest.raises(ValueError):
        design_mean_ci(table, confidence=95)


def test_paired_difference_cancels_shared_effects():
    rng = np.random.default_rng(4)
    a, rater, prompt = _crossed_ratings(rng, rater_sd=1.0, prompt_sd=1.0)
    b = 3.0 + rater + prompt + rng.normal(0, 0.3, size=a.shape) - 0.4  # A is 0.4 better on every clip
    diff = paired_difference_ci(a, b, n_resamples=1000)
    assert diff.n == 20 and diff.mean == pytest.approx((a.mean(axis=0) - b.mean(axis=0)).mean())
    assert diff.low < 0.4 < diff.high and diff.low > 0  # the difference is clear
    sep_a, sep_b = design_mean_ci(a, n_resamples=1000), design_mean_ci(b, n_resamples=1000)
    assert sep_a.low < sep_b.high  # while the two systems' own intervals overlap
    b_missing = b.copy()
    b_missing[:, :5] = np.nan  # prompts without B's ratings drop out of the paired difference
    assert paired_difference_ci(a, b_missing).n == 15
    with pytest.raises(ValueError, match="same raters"):
        paired_difference_ci(a, b[:, :3])


def test_alpha_ci_around_the_reference_alpha():
    rng = np.random.default_rng(2)
    truth = rng.integers(1, 6, size=40)
    data = np.array([np.clip(truth + rng.integers(-1, 2, size=40), 1, 5) for _ in range(4)], dtype=float)
    data[rng.random(data.shape) < 0.2] = np.nan
    ci = krippendorff_alpha_ci(data, "ordinal", n_resamples=500)
    assert ci.mean == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    assert ci.low < ci.mean < ci.high and 0 < ci.low and ci.high < 1
    assert krippendorff_alpha_ci(data, "interval").mean == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="interval"))
    assert krippendorff_alpha_ci([[3, 3], [3, 3]]).mean is None  # no variation: undefined


def test_loo_agreement_finds_the_contrary_rater():
    truth = np.array([1, 2, 3, 4, 5, 2, 4, 1], dtype=float)
    data = np.array([truth, truth, np.clip(truth + 1, 1, 5), 6 - truth])
    r = loo_agreement(data)
    assert r[0] > 0.5 and r[1] > 0.5 and r[2] > 0.5 and r[3] < 0
    assert loo_agreement([[1, 2], [1, 2]]) == [None, None]  # fewer than 3 shared clips
