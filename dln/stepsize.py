"""The step-size controller of ``flow`` (apart from the step: :mod:`dln.rosenbrock` makes a step and
its error estimate, this module decides whether to keep it and how long the next one is)."""
from __future__ import annotations

import numpy as np


class Controller:
    """Elementary (I-) controller h_new = h·clip(safety·err^(−1/(p+1)) …) per run (Hairer, Nørsett &
    Wanner, Solving ODEs I, §II.4), for a scaled error ``err`` (a step is kept when err ≤ 1).

    Parameters
    ----------
    order : int
        Order p + 1 of the local error the estimate measures, here the order p = 3 of ROS34PW2 (for
        any W; the embedded formula has order 2, its local error order 3).
    safety : float
        Factor applied to the optimal step.
    grow, shrink : (float, float)
        Bounds of h_new/h after a kept step (grow) and after a rejected one (shrink).
    failed : float
        h_new/h after a step whose error (or result) is not finite.
    """

    def __init__(self, order: int, *, safety: float = 0.9, grow=(0.2, 5.0), shrink=(0.1, 0.9),
                 failed: float = 0.25):
        self.exponent = -1.0 / order
        self.safety, self.grow, self.shrink, self.failed = safety, grow, shrink, failed

    def propose(self, err, h):
        """(accept, h_new) per run for scaled errors ``err`` (inf or NaN: a failed step) of steps ``h``."""
        err = np.where(np.isnan(err), np.inf, err)
        accept = err <= 1.0
        finite = np.isfinite(err)
        with np.errstate(divide="ignore", over="ignore"):
            fac = self.safety * np.maximum(err, 1e-10) ** self.exponent
        fac = np.where(accept, np.clip(fac, *self.grow),
                       np.where(finite, np.clip(fac, *self.shrink), self.failed))
        return accept, h * fac
