"""Probability-one homotopy paths to equilibria (private).

For a network with a bounded activation, the equilibria solve F(x) = -x + W sigma(x) + theta = 0.
Each path follows the zero set of

    H(x, lam) = -x + lam (W sigma(x) + theta) + (1 - lam) b

from the unique solution x = b at lam = 0 (Chow, Mallet-Paret & Yorke 1978; Watson's
probability-one homotopies). For almost every b the zero set through (b, 0) is a smooth curve;
with sigma bounded its x stays in a bounded set for lam in [0, 1], and it cannot return to
lam = 0 (one solution there), so it reaches lam = 1: **every path finds at least one
equilibrium**. Past the transition the curve folds back and forth across lam = 1 many times,
and every crossing is an equilibrium (a curve never revisits a point, so the crossings of one
path are distinct). b is drawn as theta + W u with u uniform over sigma's range, a point of the
set theta + W sigma(R^N) that holds every equilibrium.

Pseudo-arclength continuation (Keller 1977) with a chord corrector: the LU factors of the
bordered (N + 1) x (N + 1) Jacobian [dH/dz; r^T] are kept from step to step, the corrector
solves with them on the hyperplane r . (z - z_pred) = 0 (r the factors' own border row, so the
chord iteration converges to the path point whatever the tangent), and the matrix is
refactorised at the current point only when the corrector stops contracting. The predictor
follows the exact tangent after a refactorisation and the secant of the last step otherwise.
A step whose corrected point lies more than ~37 degrees off the predicted direction is
retried shorter (a jump to another part of the path), and a step across lam = 1 is retried
until it is at most 0.25 long: Newton at lam = 1 from a point interpolated over a longer step
can converge to an equilibrium the path crosses elsewhere (measured: 2-3 repeated crossings on
one path at N = 50 without this rule; none with it). A fold whose excursion across lam = 1 is
shorter than a step is stepped over (its two equilibria, of opposite index, are not seen):
shorter steps near lam = 1 recover them at N = 50 but halve the crossings per CPU-second at
N = 500. The step grows when the corrector needed few iterations and shrinks when it needed many: the
paths of random networks bend sharply where units leave saturation, and one factorisation
then serves arclength steps of ~2 instead of one factorisation per step of ~0.5 (measured at
N = 200 and 500, g = 8: 2.5-3x the crossings per CPU-second of an exact-tangent Euler-Newton
tracker with a factorisation per step).

The factors are computed in single precision (LAPACK ``sgetrf``/``sgetrs``; 1.3x the
crossings per CPU-second at N = 200-500, 1.55x at N = 1000, same crossings): a chord corrector
only needs an approximation of the Jacobian and its residuals are evaluated in float64, so the
path points keep float64 accuracy (iterative refinement), the tangent from float32 factors is
accurate to ~1e-7 cond, plenty for a predictor, and crossings are refined by float64 Newton.
Where fresh float32 factors fail down to steps of 1e-3 (an ill-conditioned bordered matrix) the
point is refactorised in float64.

Cost, counted in LU factorisations of the bordered matrix (``max_work``): a factorisation
counts 1, a chord iteration (one solve with the factors and one vector-field evaluation,
~4 N^2 flops and the call overhead) counts ``12 / N`` (their measured time ratio at N = 200
and 500), a Newton step at a crossing 1. Every operation acts on one path of one network, so
results do not depend on which other networks or paths are computed (per-matrix LAPACK
calls, one matrix-vector product per evaluation).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lu_factor, lu_solve
from scipy.linalg.lapack import sgetrf, sgetrs

from .activations import Activation

__all__ = ["homotopy_crossings", "CHORD_COST"]

#: Cost of one chord iteration in LU factorisations of the (N + 1)-square bordered matrix is
#: CHORD_COST / N (measured ratio of their CPU times, numpy/scipy, N = 200 and 500).
CHORD_COST = 12.0

_MAX_CHORD = 80  # chord iterations per corrector attempt
_RATE = 0.95  # the corrector gives up when a residual falls by less than this factor
_TARGET = 32  # corrector iterations aimed at: fewer -> longer steps, more -> shorter
_CORRECTOR_TOL = 1e-9  # path points: ||H||_inf <= tol (1 + ||x||_inf)
_SINGLE = True  # factors in float32 (see module docstring)
_DOUBLE_BELOW = 1e-3  # fresh float32 factors that fail down to this step: refactorise in float64
_CROSS_STEP = 0.25  # longest step across lam = 1 (state units)
_MIN_COS = 0.8  # cosine of the largest angle between the predictor and the step taken


def homotopy_crossings(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    b: np.ndarray,
    *,
    max_work: float,
    tol: float,
    lambda_max: float = 1.2,
    max_step: float = 16.0,
    trace: list | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Equilibria where homotopy paths cross lam = 1, paths run one after the other.

    Parameters
    ----------
    W : array, shape (N, N)
    theta : array, shape (N,)
    act : Activation
        Bounded (the guarantee needs it).
    b : array, shape (P, N)
        Start of each path (x at lam = 0); path p begins when path p - 1 has ended.
    max_work : float
        Work for all paths together, in LU factorisations of the bordered Jacobian (see the
        module docstring); the path under way stops when it is spent.
    tol : float
        A crossing counts when Newton at lam = 1 reaches ||F||_inf / (1 + ||x||_inf) <= tol.
    lambda_max : float
        A path ends when lam leaves [0, lambda_max].
    max_step : float
        Largest arclength step (state units).
    trace : list, optional
        When given, (work so far, lam, arclength step, corrector iterations) is appended after
        every accepted step (instrumentation for the benchmark).

    Returns
    -------
    x : array, shape (K, N)
        Equilibria at the crossings (refined to ``tol``), in path order.
    path : int array, shape (K,)
        Path that found each one.
    work : float
        Work spent (LU factorisations).
    """
    N = theta.size
    idx = np.arange(N)
    e_last = np.zeros(N + 1)
    e_last[-1] = 1.0
    chord = CHORD_COST / N
    found, path_of = [], []
    work = 0.0

    def H(z, bp):
        return -z[:N] + z[N] * (W @ act.sigma(z[:N]) + theta) + (1.0 - z[N]) * bp

    def factor(z, row, bp, single):
        """LU factors of the bordered Jacobian at z: (True, (lu, piv)) in float32, else (False, scipy's)."""
        A = np.empty((N + 1, N + 1))
        A[:N, :N] = z[N] * W * act.dsigma(z[:N])
        A[idx, idx] -= 1.0
        A[:N, N] = W @ act.sigma(z[:N]) + theta - bp
        A[N] = row
        if single:
            lu32, piv, info = sgetrf(A.astype(np.float32), overwrite_a=True)
            if info == 0:
                return True, (lu32, piv)
        return False, lu_factor(A, check_finite=False)

    def solve(lu, v):
        if lu[0]:  # float32 factors, float64 in and out (the corrector's residuals stay float64)
            return sgetrs(*lu[1], v.astype(np.float32))[0].astype(np.float64)
        return lu_solve(lu[1], v, check_finite=False)

    def rel(F, x):
        return np.max(np.abs(F)) / (1.0 + np.max(np.abs(x)))

    for p in range(b.shape[0]):
        if work >= max_work:
            break
        bp = b[p]
        z = np.append(bp, 0.0)
        row = e_last.copy()
        lu = factor(z, row, bp, _SINGLE)
        work += 1.0
        fresh = True  # the factors are those of the current point
        h = 1.0
        t = e_last
        while work < max_work and 0.0 <= z[N] <= lambda_max:
            if fresh:  # exact tangent: kernel of dH/dz, oriented along the border row
                v = solve(lu, e_last)
                work += chord
                t = v / np.linalg.norm(v)
            zp = z + h * t
            zc = zp.copy()
            ok = False
            prev = np.inf
            for it in range(_MAX_CHORD):
                r = np.append(H(zc, bp), row @ (zc - zp))
                nr = np.max(np.abs(r))
                if nr <= _CORRECTOR_TOL * (1.0 + np.max(np.abs(zc[:N]))):
                    ok = True
                    break
                if not nr < _RATE * prev:  # not contracting (or not finite)
                    break
                prev = nr
                zc = zc + solve(lu, -r)
                work += chord
            if ok:  # a corrected point far off the predicted direction: a jump to another
                # part of the path (or back along it); shorter steps follow the path instead
                dz = zc - z
                ok = dz @ t >= _MIN_COS * np.linalg.norm(dz)
            if not ok:
                if not fresh:  # stale factors: refactorise here and retry the same step
                    row = t
                    lu = factor(z, row, bp, _SINGLE)
                    work += 1.0
                    fresh = True
                    continue
                if lu[0] and h < _DOUBLE_BELOW:  # float32 may not resolve an ill-conditioned matrix
                    lu = factor(z, row, bp, False)
                    work += 1.0
                    continue
                h *= 0.5
                if h < 1e-10:
                    break
                continue
            lam, lam_new = z[N], zc[N]
            crossing = (lam - 1.0) * (lam_new - 1.0) <= 0.0 and lam_new != lam
            if crossing and h > _CROSS_STEP:
                # Newton at lam = 1 from a point interpolated over a long step can land on
                # another equilibrium (one the path crosses elsewhere): cross in short steps
                h *= 0.5
                continue
            if crossing:
                xs = z[:N] + (1.0 - lam) / (lam_new - lam) * (zc[:N] - z[:N])
                for _ in range(20):  # Newton on F at lam = 1 from the interpolated crossing
                    F = H(np.append(xs, 1.0), bp)
                    if rel(F, xs) <= tol:
                        break
                    J = W * act.dsigma(xs)
                    J[idx, idx] -= 1.0
                    work += 1.0
                    try:
                        xs = xs + np.linalg.solve(J, -F)
                    except np.linalg.LinAlgError:
                        break
                F = H(np.append(xs, 1.0), bp)
                if np.all(np.isfinite(xs)) and rel(F, xs) <= tol:
                    found.append(xs)
                    path_of.append(p)
            t = (zc - z) / np.linalg.norm(zc - z)  # secant predictor for the next step
            z = zc
            fresh = False
            if trace is not None:
                trace.append((work, z[N], h, it))
            if it <= _TARGET // 2:
                h = min(2.0 * h, max_step)
            elif it > _TARGET:
                h *= 0.7
    x = np.array(found).reshape(-1, N)
    return x, np.array(path_of, dtype=np.int64), work
