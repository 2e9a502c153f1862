"""Has a training run converged? One stated criterion, applied to nnU-Net's own learning curve.

A benchmark that ranks methods on models still learning ranks their learning speed, not their optimum. The
criterion works on nnU-Net's EMA pseudo-Dice (``checkpoint['logging']['ema_fg_dice']``, the curve nnU-Net itself
uses to pick ``checkpoint_best``): fit a straight line to its last ``window`` fraction of epochs; the run has
converged when that trend moves the curve by less than ``tolerance`` over the window. A least-squares trend is
used rather than first-minus-last so that one noisy validation epoch neither hides nor fakes a plateau.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

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

    def mark(self) -> str:
        return {True: "yes", False: "**no**", None: "too short"}[self.converged]


def assess(values: Sequence[float], criterion: ConvergenceCriterion = ConvergenceCriterion()) -> Convergence:
    """Judge one curve (one value per epoch)."""
    y = np.asarray([v for v in values], dtype=float)
    final = float(y[-1]) if len(y) else math.nan
    n = max(MIN_WINDOW_EPOCHS, int(math.ceil(criterion.window * len(y))))
    if len(y) < 2 * MIN_WINDOW_EPOCHS or not np.isfinite(y[-n:]).all():
        return Convergence(None, math.nan, n, final)
    slope = float(np.polyfit(np.arange(n, dtype=float), y[-n:], 1)[0])
    change = slope * (n - 1)
    return Convergence(abs(change) < criterion.tolerance, change, n, final)
