"""Natural-parameter continuation of stable equilibria under a uniform input shift.

Private helper of :mod:`koopnet.resilience`. Many branches (one per stable equilibrium and
direction, of any networks of one size) are continued at once, each with its own step:

    f(x) + delta 1 = -x + W sigma(x) + theta + delta 1 = 0.

A step to delta + dir * h is predicted along the tangent dx/ddelta = -J^-1 1, corrected by
Newton's method and accepted when Newton converges to a *stable* equilibrium with a
correction at most half the predicted move (no jump to another branch). A rejected
step halves h, so the step lengths bisect the bracket [last accepted delta, rejected delta]
until it is shorter than ``tol``: the branch ends where it folds (det J = 0, a real
eigenvalue reaches 0, the equilibrium disappears in a saddle-node) or loses stability in a
Hopf bifurcation (a complex pair crosses the imaginary axis). Every operation acts on one
branch's own rows, so results do not depend on which other branches share the arrays.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from .activations import Activation

__all__ = ["TippingStatus", "continue_to_tipping", "field_rows", "jacobian_rows", "safe_solve"]


class TippingStatus(IntEnum):
    """How a continuation ended (padding entries are -1)."""

    fold = 0  # saddle-node: the equilibrium disappears (det J = 0)
    hopf = 1  # a complex pair crosses the imaginary axis (the equilibrium loses stability)
    no_fold_in_range = 2  # still stable at the largest scanned shift
    continuation_failed = 3  # steps shrank below tol away from any bifurcation, or step cap
    not_stable = 4  # the equilibrium is not stable: nothing to continue


def field_rows(W: np.ndarray, theta: np.ndarray, act: Activation, x: np.ndarray) -> np.ndarray:
    """f(x) row by row; W (K, N, N), theta (K, N), x (K, N) -> (K, N)."""
    return -x + np.matmul(W, act.sigma(x)[:, :, None])[:, :, 0] + theta


def jacobian_rows(W: np.ndarray, act: Activation, x: np.ndarray) -> np.ndarray:
    """J(x) row by row; W (K, N, N), x (K, N) -> (K, N, N)."""
    J = W * act.dsigma(x)[:, None, :]
    idx = np.arange(W.shape[-1])
    J[:, idx, idx] -= 1.0
    return J


def safe_solve(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve A_k y_k = b_k for a stack; singular or non-finite systems give ok = False.

    Parameters
    ----------
    A : array, shape (K, N, N)
    b : array, shape (K, N)

    Returns
    -------
    y : array, shape (K, N)  (zeros where not ok)
    ok : array of bool, shape (K,)
    """
    K = A.shape[0]
    y = np.zeros(b.shape)
    ok = np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
    if not ok.any():
        return y, ok
    try:
        y[ok] = np.linalg.solve(A[ok], b[ok][:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        for k in np.flatnonzero(ok):  # rare: an exactly singular matrix in the stack
            try:
                y[k] = np.linalg.solve(A[k], b[k])
            except np.linalg.LinAlgError:
                ok[k] = False
    ok &= np.all(np.isfinite(y), axis=1)
    y[~ok] = 0.0
    return y, ok


def _leading_eigenvalue(J: np.ndarray) -> np.ndarray:
    """Eigenvalue of largest real part of each matrix; (K, N, N) -> (K,) complex."""
    if J.shape[0] == 0:
        return np.zeros(0, dtype=complex)
    ev = np.linalg.eigvals(J).astype(complex)
    return np.take_along_axis(ev, np.argmax(ev.real, axis=1)[:, None], axis=1)[:, 0]


def continue_to_tipping(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    x_start: np.ndarray,
    direction: np.ndarray,
    *,
    max_shift: float = 10.0,
    initial_step: float = 0.05,
    max_step: float = 0.5,
    tol: float = 1e-9,
    max_iter: int = 300,
    newton_tol: float = 1e-10,
    newton_max_iter: int = 8,
    bifurcation_eig_tol: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue K stable equilibria in delta until they fold or lose stability.

    Parameters
    ----------
    W : array, shape (K, N, N)
        Weights of the network each branch belongs to.
    theta : array, shape (K, N)
        Inputs at delta = 0.
    act : Activation
    x_start : array, shape (K, N)
        Stable equilibria at delta = 0.
    direction : array, shape (K,)
        +1 (shift up) or -1 (shift down).
    max_shift : float
        Largest |delta| scanned (units of theta).
    initial_step, max_step : float
        First and largest continuation step in delta.
    tol : float
        The bracket of the bifurcation is narrowed to below this length (units of theta).
    max_iter : int
        Continuation attempts (accepted + rejected) per branch.
    newton_tol : float
        Newton converged when max_i |f_i(x) + delta| < newton_tol.
    newton_max_iter : int
        Newton iterations per attempt.
    bifurcation_eig_tol : float
        At the end of the bisection the leading Jacobian eigenvalue must have
        |Re lambda| below this (1/time) to count as a fold or Hopf point.

    Returns
    -------
    shift : array, shape (K,)
        Signed delta of the bifurcation (midpoint of the final bracket); NaN unless the
        status is ``fold`` or ``hopf``.
    status : array of int8, shape (K,)
        :class:`TippingStatus` codes.
    x_last : array, shape (K, N)
        Last accepted (stable) equilibrium on the branch.
    """
    K, N = x_start.shape
    x = np.array(x_start, dtype=float, copy=True)
    direction = np.asarray(direction, dtype=float)
    delta = np.zeros(K)
    step = np.full(K, float(initial_step))
    status = np.full(K, TippingStatus.continuation_failed, dtype=np.int8)
    shift = np.full(K, np.nan)
    active = np.ones(K, dtype=bool)
    ones = np.ones((K, N))
    with np.errstate(all="ignore"):
        J0 = jacobian_rows(W, act, x)
        lead = _leading_eigenvalue(J0)
        v, ok = safe_solve(J0, -ones)
        not_stable = ~(lead.real < 0) | ~ok
        status[not_stable] = TippingStatus.not_stable
        active &= ~not_stable
        rejected_before = np.zeros(K, dtype=bool)
        n_iter = np.zeros(K, dtype=np.int64)
        for _ in range(max_iter):
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            n_iter[a] += 1
            Wa, tha = W[a], theta[a]
            d_try = delta[a] + direction[a] * step[a]
            at_end = np.abs(d_try) >= max_shift
            d_try = np.where(at_end, direction[a] * max_shift, d_try)
            x_pred = x[a] + (d_try - delta[a])[:, None] * v[a]
            xp = x_pred.copy()
            conv = np.zeros(a.size, dtype=bool)
            for it in range(newton_max_iter + 1):
                F = field_rows(Wa, tha, act, xp) + d_try[:, None]
                res = np.max(np.abs(F), axis=1)
                conv = res < newton_tol
                todo = ~conv & np.isfinite(res)
                if it == newton_max_iter or not todo.any():
                    break
                dx, ok = safe_solve(jacobian_rows(Wa[todo], act, xp[todo]), -F[todo])
                upd = np.flatnonzero(todo)[ok]
                xp[upd] += dx[ok]
            Jn = jacobian_rows(Wa, act, xp)
            lead_new = np.full(a.size, np.nan + 0j)
            if conv.any():
                lead_new[conv] = _leading_eigenvalue(Jn[conv])
            vn, ok = safe_solve(Jn, -ones[a])
            # the corrector must stay small beside the predicted move, else Newton may have
            # jumped to another stable branch (near a fold this forces steps shorter than
            # about half the remaining distance, which the bisection provides)
            corr = np.max(np.abs(xp - x_pred), axis=1)
            move = np.max(np.abs(x_pred - x[a]), axis=1)
            small = corr <= 0.5 * move + 1e-9 * (1.0 + np.max(np.abs(x[a]), axis=1))
            accept = conv & (lead_new.real < 0) & ok & small
            # accepted: move on (grow the step unless the previous attempt was rejected)
            acc = a[accept]
            x[acc] = xp[accept]
            delta[acc] = d_try[accept]
            v[acc] = vn[accept]
            lead[acc] = lead_new[accept]
            grow = accept & ~rejected_before[a]
            step[a[grow]] = np.minimum(step[a[grow]] * 1.5, max_step)
            done_range = accept & at_end
            status[a[done_range]] = TippingStatus.no_fold_in_range
            active[a[done_range]] = False
            # rejected: halve the step; a short enough bracket ends the branch
            rej = a[~accept]
            step[rej] *= 0.5
            rejected_before[a] = ~accept
            fin = rej[step[rej] < tol]
            if fin.size:
                active[fin] = False
                lr = lead[fin]
                near = np.abs(lr.real) < bifurcation_eig_tol
                hopf = near & (np.abs(lr.imag) > bifurcation_eig_tol)
                fold = near & ~hopf
                status[fin[fold]] = TippingStatus.fold
                status[fin[hopf]] = TippingStatus.hopf
                good = fin[near]
                shift[good] = delta[good] + direction[good] * step[good]
    return shift, status, x
