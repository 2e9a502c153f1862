"""Statistics for paired per-case scores: bootstrap confidence intervals and the Wilcoxon signed-rank test.

Every trainer is scored on the same cases, so comparisons against vanilla nnU-Net are paired; the
signed-rank test makes no normality assumption (per-case Dice is bounded and skewed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedComparison:
    """One trainer against the reference on the cases both have a finite score for."""
    n: int                   # paired cases
    mean_difference: float   # trainer - reference
    difference_ci: Interval
    p_value: float           # two-sided Wilcoxon signed-rank; NaN when the test cannot be run
    verdict: str             # a sentence for the report


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10000,
                 seed: int = 0) -> Interval:
    """Mean and percentile-bootstrap interval of the mean (seeded, so reports are reproducible).

    NaN entries are dropped; fewer than two values give a NaN interval (nothing to resample)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan, int(x.size))
    if np.all(x == x[0]):  # every resample has the same mean
        return Interval(mean, mean, mean, int(x.size))
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(x.size))


def minimum_cases_for_significance(alpha: float = ALPHA) -> int:
    """Smallest n at which a two-sided exact signed-rank test can reach p < alpha (its best p is 2 / 2^n)."""
    n = 1
    while 2.0 / 2 ** n >= alpha:
        n += 1
    return n


def paired_wilcoxon(trainer: Sequence[float], reference: Sequence[float], alpha: float = ALPHA,
                    higher_is_better: bool = True, seed: int = 0) -> PairedComparison:
    """Two-sided Wilcoxon signed-rank test of ``trainer`` against ``reference`` (same cases, same order)."""
    a, b = np.asarray(trainer, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D sequences of the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    ci = bootstrap_ci(d, seed=seed)
    if n == 0:
        return PairedComparison(0, math.nan, ci, math.nan, "no case has a finite score for both")
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return PairedComparison(n, 0.0, ci, 1.0, "identical on every case")
    needed = minimum_cases_for_significance(alpha)
    if nonzero < needed:
        return PairedComparison(n, float(d.mean()), ci, math.nan,
                                f"too few cases to test ({nonzero} non-tied pairs; a two-sided signed-rank test "
                                f"needs >= {needed} to ever reach p < {alpha})")
    p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    if p >= alpha:
        verdict = f"not significant (p = {p:.3g} >= {alpha})"
    else:
        better = (d.mean() > 0) == higher_is_better
        verdict = f"significantly {'better' if better else 'worse'} (p = {p:.3g})"
    return PairedComparison(n, float(d.mean()), ci, p, verdict)


def holm_adjust(p_values: Sequence[Optional[float]]) -> list:
    """Holm-Bonferroni step-down adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray([math.nan if v is None else v for v in p_values], dtype=float)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.full_like(p, math.nan)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()
