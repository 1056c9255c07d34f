"""Natural-parameter continuation of stable equilibria (input shift, unit removal).

Private helper of :mod:`koopnet.resilience`. Many branches (one per stable equilibrium and
direction, of any networks of one size) are continued at once, each with its own step:

    f(x) + delta 1 = -x + W sigma(x) + theta + delta 1 = 0.

A step to delta + dir * h is predicted along the tangent dx/ddelta = -J^-1 1, corrected by
Newton's method and accepted when Newton converges to a *stable* equilibrium with a
correction at most half the predicted move (no jump to another branch). A rejected
step halves h, so the step lengths bisect the bracket [last accepted delta, rejected delta]
until it is shorter than ``tol``: the branch ends where it folds (det J = 0, a real
eigenvalue reaches 0, the equilibrium disappears in a saddle-node), loses stability at a branch
point (a real eigenvalue reaches 0 but its left null vector is orthogonal to dF/ddelta, so the
state persists: a symmetry-breaking pitchfork) or in a Hopf bifurcation (a complex pair
crosses the imaginary axis). Every operation acts on one
branch's own rows, so results do not depend on which other branches share the arrays.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from .activations import Activation

__all__ = [
    "TippingStatus",
    "certified_stable",
    "continue_branches",
    "continue_to_tipping",
    "continue_unit_removal",
    "field_rows",
    "jacobian_rows",
    "safe_solve",
]


class TippingStatus(IntEnum):
    """How a continuation ended (padding entries are -1)."""

    fold = 0  # saddle-node: the equilibrium disappears (det J = 0)
    hopf = 1  # a complex pair crosses the imaginary axis (the equilibrium loses stability)
    no_fold_in_range = 2  # still stable at the largest scanned shift
    continuation_failed = 3  # steps shrank below tol away from any bifurcation, or step cap
    not_stable = 4  # the equilibrium is not stable: nothing to continue
    branch_point = 5  # a real eigenvalue reaches 0 with dF/ddelta in the range of J: the state
    # persists but loses stability to a new branch (symmetry-breaking pitchfork, transcritical)


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


#: |psi . dF/dp| / (|psi| |dF/dp|) below this makes a real crossing a branch point, not a fold
#: (generically O(1) at a fold; rounding-level, ~1e-15, when symmetry forces it to vanish)
_BRANCH_TOL = 1e-6


def certified_stable(J: np.ndarray) -> np.ndarray:
    """Sufficient test of stability: the symmetric part of J is negative definite.

    The numerical range of J contains its spectrum, so lambda_max((J + J^T) / 2) < 0 implies
    max Re lambda(J) < 0 (the state is then also a local contraction in the 2-norm). Decided by
    a Cholesky factorisation of -(J + J^T) / 2 - s I, a sixth of an ``eigvalsh`` and about a
    thirtieth of an ``eigvals``; the shift s = 8 N eps max|J| covers the factorisation's
    round-off, so a pass is never a round-off artefact. A fail decides nothing.

    Parameters
    ----------
    J : array, shape (K, N, N)

    Returns
    -------
    array of bool, shape (K,)
    """
    K, N = J.shape[0], J.shape[-1]
    out = np.zeros(K, dtype=bool)
    for k in range(K):  # one LAPACK call per matrix (a failed one stops early)
        Jk = J[k]
        if not np.all(np.isfinite(Jk)):
            continue
        S = -0.5 * (Jk + Jk.T)
        S.flat[:: N + 1] -= 8.0 * N * np.finfo(float).eps * np.max(np.abs(Jk))
        out[k] = _cholesky_ok(S)
    return out


def _cholesky_ok(S: np.ndarray) -> bool:
    """Is the symmetric matrix S positive definite (its Cholesky factorisation succeeds)?
    S is overwritten."""
    from scipy.linalg.lapack import dpotrf

    if not np.all(np.isfinite(S)):
        return False
    _, info = dpotrf(S, lower=1, overwrite_a=1, clean=0)
    return info == 0


def _leading_eigenvalue(J: np.ndarray) -> np.ndarray:
    """Eigenvalue of largest real part of each matrix; (K, N, N) -> (K,) complex."""
    if J.shape[0] == 0:
        return np.zeros(0, dtype=complex)
    ev = np.linalg.eigvals(J).astype(complex)
    return np.take_along_axis(ev, np.argmax(ev.real, axis=1)[:, None], axis=1)[:, 0]


def continue_branches(
    residual,
    jac_x,
    d_param,
    x_start: np.ndarray,
    p_max: float,
    *,
    initial_step: float = 0.05,
    max_step: float = 0.5,
    tol: float = 1e-9,
    max_iter: int = 300,
    newton_tol: float = 1e-10,
    newton_max_iter: int = 8,
    bifurcation_eig_tol: float = 1e-2,
    assume_stable_start: bool = False,
    certify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue K stable equilibria of F_k(x, p) = 0 from p = 0 towards p = p_max.

    Parameters
    ----------
    residual : callable (a, x, p) -> array (len(a), N)
        F for the branches with indices ``a`` at states x (len(a), N) and parameters p (len(a),).
    jac_x : callable (a, x, p) -> array (len(a), N, N)
        dF/dx.
    d_param : callable (a, x, p) -> array (len(a), N)
        dF/dp.
    x_start : array, shape (K, N)
        Stable equilibria at p = 0.
    p_max : float
        End of the scanned parameter range.
    initial_step, max_step : float
        First and largest continuation step in p.
    tol : float
        The bracket of the bifurcation is narrowed to below this length (units of p).
    max_iter : int
        Continuation attempts (accepted + rejected) per branch.
    newton_tol : float
        Newton converged when max_i |F_i| < newton_tol.
    newton_max_iter : int
        Newton iterations per attempt.
    bifurcation_eig_tol : float
        At the end of the bisection the leading Jacobian eigenvalue must have
        |Re lambda| below this (1/time) to count as a fold or Hopf point.
    assume_stable_start : bool
        Skip the eigenvalue check at p = 0 (the caller knows the starts are stable); a
        bracket that closes before any accepted step is then classified by a placeholder
        leading eigenvalue -1 (use bifurcation_eig_tol = inf to count it as a fold).
    certify : bool
        Decide the stability of a corrected point by :func:`certified_stable` first and
        compute its eigenvalues only where that test fails; the leading eigenvalue of the
        last accepted point is then computed when its branch ends. Results are identical to
        ``certify=False`` (every point's eigenvalues), which is kept as the reference.

    Returns
    -------
    p_bif : array, shape (K,)
        Parameter of the bifurcation (midpoint of the final bracket); NaN unless the
        status is ``fold`` or ``hopf``.
    status : array of int8, shape (K,)
        :class:`TippingStatus` codes (``no_fold_in_range``: stable up to p_max).
    x_last : array, shape (K, N)
        Last accepted (stable) equilibrium on the branch.
    """
    K, N = x_start.shape
    x = np.array(x_start, dtype=float, copy=True)
    p = np.zeros(K)
    step = np.full(K, float(initial_step))
    status = np.full(K, TippingStatus.continuation_failed, dtype=np.int8)
    p_bif = np.full(K, np.nan)
    active = np.ones(K, dtype=bool)
    allk = np.arange(K)
    # lead_known: lead holds the last accepted point's leading eigenvalue (else a certified
    # stable point's, computed when the branch ends)
    lead_known = np.ones(K, dtype=bool)
    with np.errstate(all="ignore"):
        J0 = jac_x(allk, x, p)
        lead = np.full(K, -1.0 + 0j) if assume_stable_start else _leading_eigenvalue(J0)
        v, ok = safe_solve(J0, -d_param(allk, x, p))
        not_stable = ~(lead.real < 0) | ~ok
        status[not_stable] = TippingStatus.not_stable
        active &= ~not_stable
        rejected_before = np.zeros(K, dtype=bool)
        for _ in range(max_iter):
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            p_try = p[a] + step[a]
            at_end = p_try >= p_max
            p_try = np.where(at_end, p_max, p_try)
            x_pred = x[a] + (p_try - p[a])[:, None] * v[a]
            xp = x_pred.copy()
            conv = np.zeros(a.size, dtype=bool)
            for it in range(newton_max_iter + 1):
                F = residual(a, xp, p_try)
                res = np.max(np.abs(F), axis=1)
                conv = res < newton_tol
                todo = ~conv & np.isfinite(res)
                if it == newton_max_iter or not todo.any():
                    break
                dx, ok = safe_solve(jac_x(a[todo], xp[todo], p_try[todo]), -F[todo])
                upd = np.flatnonzero(todo)[ok]
                xp[upd] += dx[ok]
            Jn = jac_x(a, xp, p_try)
            lead_new = np.full(a.size, np.nan + 0j)
            known_new = np.ones(a.size, dtype=bool)
            if conv.any():
                need = conv.copy()
                if certify:
                    cert = np.zeros(a.size, dtype=bool)
                    cert[conv] = certified_stable(Jn[conv])
                    lead_new[cert] = -np.inf  # stable; its value is computed if ever needed
                    known_new[cert] = False
                    need &= ~cert
                if need.any():
                    lead_new[need] = _leading_eigenvalue(Jn[need])
            vn, ok = safe_solve(Jn, -d_param(a, xp, p_try))
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
            p[acc] = p_try[accept]
            v[acc] = vn[accept]
            lead[acc] = lead_new[accept]
            lead_known[acc] = known_new[accept]
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
                unknown = fin[~lead_known[fin]]
                if unknown.size:  # the reference computed these at acceptance
                    lead[unknown] = _leading_eigenvalue(jac_x(unknown, x[unknown], p[unknown]))
                    lead_known[unknown] = True
                lr = lead[fin]
                near = np.abs(lr.real) < bifurcation_eig_tol
                hopf = near & (np.abs(lr.imag) > bifurcation_eig_tol)
                fold = near & ~hopf
                # fold or branch point: at a fold the left null vector psi of J sees the
                # parameter (psi . dF/dp != 0, the branch turns back); at a branch point it does
                # not (e.g. psi antisymmetric, dF/dp = 1 uniform: the symmetric state continues)
                real = fin[fold]
                if real.size:
                    ev, vec = np.linalg.eig(np.swapaxes(jac_x(real, x[real], p[real]), 1, 2))
                    psi = np.take_along_axis(vec, np.argmax(ev.real, axis=1)[:, None, None], axis=2)[:, :, 0]
                    d = d_param(real, x[real], p[real])
                    seen = np.abs(np.sum(psi * d, axis=1)) / (np.linalg.norm(psi, axis=1) * np.linalg.norm(d, axis=1))
                    status[real] = np.where(seen < _BRANCH_TOL, TippingStatus.branch_point, TippingStatus.fold)
                status[fin[hopf]] = TippingStatus.hopf
                good = fin[near]
                p_bif[good] = p[good] + step[good]
    return p_bif, status, x


def continue_to_tipping(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    x_start: np.ndarray,
    direction: np.ndarray,
    *,
    max_shift: float = 10.0,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue K stable equilibria in a uniform input shift delta until they tip.

    f(x) + delta 1 = 0 with delta = direction * p, p from 0 to ``max_shift``.

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
    **kwargs
        Step and tolerance options of :func:`continue_branches` (in units of theta).

    Returns
    -------
    shift : array, shape (K,)
        Signed delta of the bifurcation; NaN unless the status is ``fold`` or ``hopf``.
    status : array of int8, shape (K,)
        :class:`TippingStatus` codes.
    x_last : array, shape (K, N)
        Last accepted (stable) equilibrium on the branch.
    """
    direction = np.asarray(direction, dtype=float)

    def residual(a, x, p):
        return field_rows(W[a], theta[a], act, x) + (direction[a] * p)[:, None]

    def jac_x(a, x, p):
        return jacobian_rows(W[a], act, x)

    def d_param(a, x, p):
        return np.broadcast_to(direction[a][:, None], x.shape).copy()

    p_bif, status, x_last = continue_branches(residual, jac_x, d_param, x_start, max_shift,
                                              **kwargs)
    return direction * p_bif, status, x_last


def continue_unit_removal(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    x_start: np.ndarray,
    unit: np.ndarray,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continue K stable equilibria while the output of one unit is switched off.

    Homotopy F(x, p) = -x + W sigma(x) - p W[:, j] sigma(x_j) + theta, p from 0 to 1:
    at p = 1 unit j no longer reaches any unit (removing it).

    Parameters
    ----------
    W : array, shape (K, N, N)
    theta : array, shape (K, N)
    act : Activation
    x_start : array, shape (K, N)
        Stable equilibria of the intact networks.
    unit : array of int, shape (K,)
        Unit j removed on each branch.
    **kwargs
        Step and tolerance options of :func:`continue_branches` (units of p).

    Returns
    -------
    p_bif, status, x_last
        As :func:`continue_branches`; ``status == no_fold_in_range`` means the state
        survives the removal and ``x_last`` is its equilibrium at p = 1.
    """
    unit = np.asarray(unit, dtype=np.int64)
    K = unit.size
    col = W[np.arange(K), :, unit]  # (K, N): outgoing weights of unit j

    def residual(a, x, p):
        sj = act.sigma(x[np.arange(a.size), unit[a]])
        return field_rows(W[a], theta[a], act, x) - (p * sj)[:, None] * col[a]

    def jac_x(a, x, p):
        J = jacobian_rows(W[a], act, x)
        dj = act.dsigma(x[np.arange(a.size), unit[a]])
        J[np.arange(a.size), :, unit[a]] -= (p * dj)[:, None] * col[a]
        return J

    def d_param(a, x, p):
        sj = act.sigma(x[np.arange(a.size), unit[a]])
        return -sj[:, None] * col[a]

    return continue_branches(residual, jac_x, d_param, x_start, 1.0, **kwargs)
