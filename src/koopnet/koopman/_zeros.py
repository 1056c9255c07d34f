"""Reading equilibria off the zeros and singularities of a 1-D eigenfunction (the poster's observation).

Near an equilibrium z of a 1-D system an eigenfunction behaves like |psi(x)| ~ C |x - z|^a with
a = Re(lambda / p'(z)): a zero (a > 0) or a singularity (a < 0). On a grid, log|psi| has a sharp
local minimum (zero) or maximum (singularity) there; a golden-section search refines its position and
the slope of log|psi| against log|x - z| gives the order a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["EigenfunctionFeatures", "equilibria_from_eigenfunction"]

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class EigenfunctionFeatures:
    """Zeros and singularities of a 1-D eigenfunction on an interval.

    Attributes
    ----------
    location : array of float, shape (k,)
        Positions (state units), increasing.
    kind : array of int, shape (k,)
        +1 for a zero of psi, -1 for a singularity.
    order : array of float, shape (k,)
        Estimated exponent a in |psi| ~ |x - z|^a (positive at zeros, negative at singularities).
    """

    location: np.ndarray
    kind: np.ndarray
    order: np.ndarray

    @property
    def zeros(self) -> np.ndarray:
        """Locations of the zeros (stable equilibria when Re lambda < 0)."""
        return self.location[self.kind == 1]

    @property
    def singularities(self) -> np.ndarray:
        """Locations of the singularities (unstable equilibria when Re lambda < 0)."""
        return self.location[self.kind == -1]


def _log_abs(psi: Callable, x: np.ndarray, nan_as: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = np.log(np.abs(np.asarray(psi(x))))
    return np.where(np.isnan(h), nan_as, h)


def equilibria_from_eigenfunction(
    psi: Callable[[np.ndarray], np.ndarray],
    interval: tuple[float, float],
    n_grid: int = 4001,
    min_depth: float = 1e-3,
    n_refine: int = 90,
) -> EigenfunctionFeatures:
    """Locate the zeros and singularities of a 1-D eigenfunction on a real interval.

    Parameters
    ----------
    psi : callable
        Vectorised x (shape (M,), real) -> psi(x) (shape (M,), real or complex).
    interval : (float, float)
        Search interval [a, b] (state units); features closer than two grid steps to its
        ends are not reported.
    n_grid : int
        Grid points; features closer to each other than about two grid steps merge.
    min_depth : float
        Minimal change of log|psi| between the refined feature and its grid neighbours for a
        local extremum of log|psi| to count as a zero/singularity (smooth extrema change by
        O(grid step^2) and are discarded).
    n_refine : int
        Golden-section iterations (each shrinks the bracket by 0.618).

    Returns
    -------
    EigenfunctionFeatures
    """
    a, b = map(float, interval)
    x = np.linspace(a, b, int(n_grid))
    dx = x[1] - x[0]
    h = _log_abs(psi, x, np.nan)
    # exact zero/infinite values on the grid itself are features
    h_fill = np.where(np.isnan(h), 0.0, h)
    d = np.diff(h_fill)
    i = np.arange(1, x.size - 1)
    is_min = ((d[i - 1] < 0) & (d[i] > 0)) | np.isneginf(h[i])
    is_max = ((d[i - 1] > 0) & (d[i] < 0)) | np.isposinf(h[i])
    cand = i[is_min | is_max]
    sign = np.where(is_min[cand - 1], 1, -1)  # +1 zero, -1 singularity
    keep = (cand >= 2) & (cand <= x.size - 3)
    cand, sign = cand[keep], sign[keep]
    if cand.size == 0:
        empty = np.zeros(0)
        return EigenfunctionFeatures(empty, np.zeros(0, dtype=np.int64), empty)

    # golden-section search of min(sign * h) on [x_{i-1}, x_{i+1}], all candidates at once
    lo, hi = x[cand - 1].copy(), x[cand + 1].copy()

    def objective(t):
        # sign*h -> -inf at the feature; NaN (0**negative, log 0 ...) counts as the feature itself
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(sign * _log_abs(psi, t, np.nan), nan=-np.inf)

    c1 = hi - _GOLDEN * (hi - lo)
    c2 = lo + _GOLDEN * (hi - lo)
    f1, f2 = objective(c1), objective(c2)
    for _ in range(int(n_refine)):
        left = f1 <= f2
        hi = np.where(left, c2, hi)
        lo = np.where(left, lo, c1)
        new1 = hi - _GOLDEN * (hi - lo)
        new2 = lo + _GOLDEN * (hi - lo)
        c1n = np.where(left, new1, c2)
        c2n = np.where(left, c1, new2)
        f_new = objective(np.where(left, new1, new2))
        f1n = np.where(left, f_new, f2)
        f2n = np.where(left, f1, f_new)
        c1, c2, f1, f2 = c1n, c2n, f1n, f2n
        if np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(hi))):
            break
    z = 0.5 * (lo + hi)
    hz = sign * objective(z)  # log|psi| at the refined point (may be +-inf)
    h_left = _log_abs(psi, z - dx, np.nan)
    h_right = _log_abs(psi, z + dx, np.nan)
    depth = np.minimum(sign * (h_left - hz), sign * (h_right - hz))
    depth = np.where(np.isnan(depth), np.inf, depth)
    # order a from |psi| ~ |x - z|^a between distances dx and 2 dx on both sides
    h_l2 = _log_abs(psi, z - 2 * dx, np.nan)
    h_r2 = _log_abs(psi, z + 2 * dx, np.nan)
    order = 0.5 * ((h_l2 - h_left) + (h_r2 - h_right)) / np.log(2.0)
    good = depth >= min_depth
    z, sign, order = z[good], sign[good], order[good]
    # a feature lying exactly on a grid point is found from both neighbours: merge
    order_idx = np.argsort(z, kind="stable")
    z, sign, order = z[order_idx], sign[order_idx], order[order_idx]
    dup = np.zeros(z.size, dtype=bool)
    dup[1:] = (np.diff(z) <= 2.5 * dx) & (sign[1:] == sign[:-1])
    z, sign, order = z[~dup], sign[~dup], order[~dup]
    return EigenfunctionFeatures(location=z, kind=sign.astype(np.int64), order=order)
