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

The held-out check asks the same question with less noise: a short-schedule trainer keeps the model of the epoch
where the window starts (:func:`window_checkpoint_name`), the benchmark predicts the test cases with it as well
as with the final model, and :func:`held_out_change` gives the change in Dice over the window, case by case, with a
bootstrap interval. Tens of whole test cases resolve a change far finer than a few validation patches per epoch.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

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


def window_epochs(num_epochs: int, criterion: ConvergenceCriterion = ConvergenceCriterion()) -> int:
    """Epochs at the end of a run that the criterion looks at."""
    return max(MIN_WINDOW_EPOCHS, int(math.ceil(criterion.window * num_epochs)))


def window_checkpoint_name(num_epochs: int, criterion: ConvergenceCriterion = ConvergenceCriterion()
                           ) -> Optional[str]:
    """The checkpoint a run keeps for the held-out check: the model after the epochs before the window
    (``checkpoint_ep<k>.pth``, k epochs done); None when the window is the whole run."""
    start = num_epochs - window_epochs(num_epochs, criterion)
    return f"checkpoint_ep{start}.pth" if start >= 1 else None


WINDOW_CHECKPOINT = re.compile(r"^checkpoint_ep(\d+)\.pth$")


def window_checkpoint_epoch(name: str) -> Optional[int]:
    """k of a ``checkpoint_ep<k>.pth`` file name (the window's start); None for any other name."""
    match = WINDOW_CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class HeldOutChange:
    """Final model minus the model at the window's start, Dice per held-out case (``mean``: their mean)."""
    start_epoch: int
    mean: float
    low: float                   # 95% bootstrap interval of the mean change
    high: float
    n: int                       # cases scored by both models
    never_predicted: bool = False  # neither model predicted the class on any case (case_scores.never_predicted)

    def mark(self, tolerance: float) -> str:
        if self.never_predicted:
            return "**never predicted**"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "n/a"
        if -tolerance < self.low and self.high < tolerance:
            return "flat"
        if self.low > tolerance:
            return "**still gaining**"
        if self.high < -tolerance:
            return "**losing**"
        return "undecided"


def held_out_change(final: Dict[object, float], start: Dict[object, float], start_epoch: int,
                    never_predicted: bool = False) -> HeldOutChange:
    """Paired over the cases both models scored (non-finite scores dropped). ``never_predicted``: neither model
    predicted the class anywhere, so a zero change is a dead channel, not a plateau."""
    from nnunet_ext.benchmark.stats import bootstrap_ci

    keys = [k for k in final if k in start and math.isfinite(final[k]) and math.isfinite(start[k])]
    ci = bootstrap_ci([final[k] - start[k] for k in keys])
    return HeldOutChange(start_epoch, ci.mean, ci.low, ci.high, ci.n, never_predicted)


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
    n = window_epochs(len(y), criterion)
    if len(y) < 2 * MIN_WINDOW_EPOCHS or not np.isfinite(y[-n:]).all():
        return Convergence(None, math.nan, n, final)
    change = window_trend(y, n)[0]
    raw_change, raw_se = window_trend(raw, n) if raw is not None and len(raw) == len(y) else (math.nan, math.nan)
    return Convergence(abs(change) < criterion.tolerance, change, n, final, raw_change, raw_se)
