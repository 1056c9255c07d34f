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

Pseudo-arclength continuation (Keller 1977): the tangent and a chord-Newton corrector share
one LU factorisation of the bordered (N + 1) x (N + 1) Jacobian per step; the step doubles
after an easy correction and halves when the corrector does not contract. Every operation
acts on one path of one network, so results do not depend on which other networks or paths
are computed (per-matrix LAPACK calls, one matrix-vector product per path).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lu_factor, lu_solve

from .activations import Activation

__all__ = ["homotopy_crossings"]


def homotopy_crossings(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    b: np.ndarray,
    *,
    max_steps: int,
    tol: float,
    lambda_max: float = 1.2,
    max_step: float = 8.0,
    trace: list | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Equilibria where homotopy paths cross lam = 1, paths run one after the other.

    Parameters
    ----------
    W : array, shape (N, N)
    theta : array, shape (N,)
    act : Activation
        Bounded (the guarantee needs it).
    b : array, shape (P, N)
        Start of each path (x at lam = 0); path p begins when path p - 1 has ended.
    max_steps : int
        Continuation steps (LU factorisations of the bordered Jacobian) for all paths together;
        a step whose corrector fails is retried with half the arclength on the same factors.
    tol : float
        A crossing counts when Newton at lam = 1 reaches ||F||_inf / (1 + ||x||_inf) <= tol.
    lambda_max : float
        A path ends when lam leaves [0, lambda_max].
    max_step : float
        Largest arclength step (state units).
    trace : list, optional
        When given, (steps so far, lam, arclength step) is appended after every accepted step
        (instrumentation for the benchmark).

    Returns
    -------
    x : array, shape (K, N)
        Equilibria at the crossings (refined to ``tol``), in path order.
    path : int array, shape (K,)
        Path that found each one.
    """
    N = theta.size
    idx = np.arange(N)
    e_last = np.zeros(N + 1)
    e_last[-1] = 1.0
    found, path_of = [], []
    steps = 0

    def H(x, lam, bp):
        return -x + lam * (W @ act.sigma(x) + theta) + (1.0 - lam) * bp

    def rel(F, x):
        return np.max(np.abs(F)) / (1.0 + np.max(np.abs(x)))

    for p in range(b.shape[0]):
        if steps >= max_steps:
            break
        bp = b[p]
        x, lam = bp.copy(), 0.0
        t = e_last.copy()
        h = 1.0
        while steps < max_steps and 0.0 <= lam <= lambda_max:
            A = np.empty((N + 1, N + 1))
            A[:N, :N] = lam * W * act.dsigma(x)
            A[idx, idx] -= 1.0
            A[:N, N] = W @ act.sigma(x) + theta - bp
            A[N] = t
            lu = lu_factor(A, check_finite=False)
            steps += 1
            tn = lu_solve(lu, e_last, check_finite=False)
            tn /= np.linalg.norm(tn)
            ok = False
            halved = False
            while h > 1e-10:
                zp = np.append(x, lam) + h * tn
                z = zp.copy()
                prev = np.inf
                for it in range(8):
                    r = np.append(H(z[:N], z[N], bp), t @ (z - zp))
                    nr = np.max(np.abs(r))
                    if nr <= 1e-9 * (1.0 + np.max(np.abs(z[:N]))):
                        ok = True
                        break
                    if not nr < 0.5 * prev:  # not contracting (or not finite)
                        break
                    prev = nr
                    z = z + lu_solve(lu, -r, check_finite=False)
                if ok:
                    break
                h *= 0.5
                halved = True
            if not ok:
                break
            lam_new = z[N]
            if (lam - 1.0) * (lam_new - 1.0) <= 0.0 and lam_new != lam:
                xs = x + (1.0 - lam) / (lam_new - lam) * (z[:N] - x)
                for _ in range(20):  # Newton on F at lam = 1 from the interpolated crossing
                    F = H(xs, 1.0, bp)
                    if rel(F, xs) <= tol:
                        break
                    J = W * act.dsigma(xs)
                    J[idx, idx] -= 1.0
                    try:
                        xs = xs + np.linalg.solve(J, -F)
                    except np.linalg.LinAlgError:
                        break
                F = H(xs, 1.0, bp)
                if np.all(np.isfinite(xs)) and rel(F, xs) <= tol:
                    found.append(xs)
                    path_of.append(p)
            x, lam, t = z[:N], lam_new, tn
            if trace is not None:
                trace.append((steps, lam, h))
            if it <= 3 and not halved:
                h = min(2.0 * h, max_step)
    x = np.array(found).reshape(-1, N)
    return x, np.array(path_of, dtype=np.int64)
