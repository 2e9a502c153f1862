"""Bootstrap CI, paired Wilcoxon and Holm adjustment on inputs whose answers are known by hand."""
import math

import numpy as np
import pytest

from nnunet_ext.benchmark.stats import (bootstrap_ci, holm_adjust, minimum_cases_for_significance,
                                        paired_wilcoxon)


def test_wilcoxon_all_positive_differences_gives_exact_two_sided_p():
    # n = 6, every difference positive: only 1 of the 2^6 sign patterns is this extreme on each side
    c = paired_wilcoxon([2, 3, 4, 5, 6, 7], [1, 1, 1, 1, 1, 1])
    assert c.p_value == pytest.approx(2 / 64)
    assert c.n == 6 and c.mean_difference == pytest.approx(3.5)
    assert c.verdict.startswith("significantly better")


def test_wilcoxon_mixed_signs_hand_counted_p():
    # differences 1..5 positive, -6 negative: W- = 6; 14 of the 64 subsets of {1..6} sum to <= 6
    c = paired_wilcoxon([1, 2, 3, 4, 5, -6], [0] * 6)
    assert c.p_value == pytest.approx(2 * 14 / 64)
    assert c.verdict.startswith("not significant")


def test_lower_is_better_metric_flips_the_verdict():
    c = paired_wilcoxon([2, 3, 4, 5, 6, 7], [1] * 6, higher_is_better=False)
    assert c.verdict.startswith("significantly worse")


def test_too_few_cases_is_said_plainly_not_tested():
    assert minimum_cases_for_significance(0.05) == 6  # 2/2^5 = 0.0625, 2/2^6 = 0.031
    c = paired_wilcoxon([2, 3, 4, 5, 6], [1] * 5)
    assert math.isnan(c.p_value)
    assert "too few cases" in c.verdict and ">= 6" in c.verdict


def test_identical_scores_and_nan_pairs():
    assert paired_wilcoxon([0.5, 0.7], [0.5, 0.7]).verdict == "identical on every case"
    c = paired_wilcoxon([1.0, math.nan, 3.0], [0.0, 1.0, math.nan])
    assert c.n == 1 and c.mean_difference == pytest.approx(1.0)
    assert paired_wilcoxon([math.nan], [1.0]).n == 0


def test_paired_scores_must_have_the_same_length():
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1, 2, 3], [1, 2])


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.8, 0.1, 10), rng.normal(0.8, 0.1, 1000)
    a, b = bootstrap_ci(small), bootstrap_ci(large)
    assert a.mean == pytest.approx(small.mean()) and a.low < a.mean < a.high
    assert b.low < b.mean < b.high
    assert (b.high - b.low) < (a.high - a.low) / 5  # width ~ 1/sqrt(n): 100x the cases, ~1/10 the width
    # standard error of the mean is 0.1 / sqrt(1000) = 0.0032: a 95% interval is about +-1.96 of it
    assert (b.high - b.low) == pytest.approx(2 * 1.96 * large.std() / math.sqrt(1000), rel=0.15)


def test_bootstrap_is_seeded_and_handles_degenerate_samples():
    x = [0.1, 0.5, 0.9, 0.3]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    constant = bootstrap_ci([0.7, 0.7, 0.7])
    assert constant.low == constant.high == constant.mean == pytest.approx(0.7)
    single = bootstrap_ci([0.4, math.nan])
    assert single.n == 1 and single.mean == 0.4 and math.isnan(single.low)
    assert bootstrap_ci([]).n == 0
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(x, confidence=95)


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm_adjust([math.nan, 0.02, 0.04])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.04])
