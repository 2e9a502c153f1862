"""Has a training run converged? One stated criterion, applied to nnU-Net's own learning curve.

A benchmark that ranks methods on models still learning ranks their learning speed, not their optimum. The
criterion works on nnU-Net's EMA pseudo-Dice (``checkpoint['logging']['ema_fg_dice']``, the curve nnU-Net itself
uses to pick ``checkpoint_best``): fit a straight line to its last ``window`` fraction of epochs; the run has
converged when that trend moves the curve by less than ``tolerance`` over the window. A least-squares trend is
used rather than first-minus-last so that one noisy validation epoch neither hides nor fakes a plateau.

nnU-Net's per-epoch pseudo-Dice comes from a few validation batches and is noisy, so a tolerance can be finer
than the curve can resolve. ``assess`` therefore also fits the same line to the raw per-epoch pseudo-Dice
(``mean_fg_dice``, not smoothed, so its residuals estimate the noise) and gives the change's standard error.
When twice that error exceeds the tolerance, a flat curve would often fail the criterion too: the report says
so and the fix is more validation iterations, not a different tolerance. When instead the raw change minus twice
its error still exceeds the tolerance, the run is shown to be rising: the report lists it as "still rising".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

MIN_WINDOW_EPOCHS = 3


@dataclass(frozen=True)
class ConvergenceCriterion:
    window: float = 0.2          # fraction of the epochs at the end of training
    tolerance: float = 0.005     # largest change of the EMA pseudo-Dice over that window
    metric: str = "ema_fg_dice"

    def describe(self) -> str:
        return (f"the least-squares trend of nnU-Net's EMA pseudo-Dice over the last {self.window:.0%} of epochs "
                f"(at least {MIN_WINDOW_EPOCHS}) changes it by less than {self.tolerance} over that window")


@dataclass(frozen=True)
class Convergence:
    converged: Optional[bool]    # None: too few epochs to judge
    change: float                # trend slope x window length (NaN when not judged)
    window_epochs: int
    final: float                 # last value of the metric
    raw_change: float = math.nan     # the same trend fitted to the raw per-epoch pseudo-Dice
    raw_change_se: float = math.nan  # its standard error, from the residuals around that line

    def mark(self) -> str:
        return {True: "yes", False: "**no**", None: "too short"}[self.converged]

    def resolves(self, tolerance: float) -> Optional[bool]:
        """Can this run's validation noise resolve ``tolerance``? None when the raw curve was not given."""
        return None if not math.isfinite(self.raw_change_se) else 2 * self.raw_change_se < tolerance

    def still_rising(self, tolerance: float) -> Optional[bool]:
        """Is the raw curve shown to rise by more than ``tolerance`` (its change minus twice its standard error
        exceeds it)? Such a run is not merely "not shown flat": more training would very likely still gain."""
        if not (math.isfinite(self.raw_change) and math.isfinite(self.raw_change_se)):
            return None
        return self.raw_change - 2 * self.raw_change_se > tolerance


def window_trend(values: Sequence[float], window_epochs: int) -> Tuple[float, float]:
    """Least-squares change over the last ``window_epochs`` values and its standard error (ordinary least squares,
    residual variance with n - 2 degrees of freedom; NaN error for fewer than 3 points or non-finite values)."""
    y = np.asarray(values, dtype=float)[-window_epochs:]
    n = len(y)
    if n < 3 or not np.isfinite(y).all():
        return math.nan, math.nan
    x = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual_var = float(((y - (slope * x + intercept)) ** 2).sum()) / (n - 2)
    slope_se = math.sqrt(residual_var / float(((x - x.mean()) ** 2).sum()))
    return float(slope) * (n - 1), slope_se * (n - 1)


def assess(values: Sequence[float], criterion: ConvergenceCriterion = ConvergenceCriterion(),
           raw: Optional[Sequence[float]] = None) -> Convergence:
    """Judge one curve (one value per epoch); ``raw``: the unsmoothed per-epoch pseudo-Dice, for the noise."""
    y = np.asarray([v for v in values], dtype=float)
    final = float(y[-1]) if len(y) else math.nan
    n = max(MIN_WINDOW_EPOCHS, int(math.ceil(criterion.window * len(y))))
    if len(y) < 2 * MIN_WINDOW_EPOCHS or not np.isfinite(y[-n:]).all():
        return Convergence(None, math.nan, n, final)
    change = window_trend(y, n)[0]
    raw_change, raw_se = window_trend(raw, n) if raw is not None and len(raw) == len(y) else (math.nan, math.nan)
    return Convergence(abs(change) < criterion.tolerance, change, n, final, raw_change, raw_se)
