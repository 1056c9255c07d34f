"""Vectorised root searches for the equilibria engine (private).

Two solvers share one problem description: :func:`powell_hybrid` (MINPACK ``hybrj``'s
scaled dogleg with Broyden updates, compiled in :mod:`koopnet._hybrid_kernel`; the search)
and :func:`damped_newton` (Armijo line search, vectorised numpy; used with deflation).

Solves, for many starts of many networks at once, the (possibly reduced) equilibrium
equation

    F(y) = -y + A sigma(c + B y) + e = 0,        y in R^d,

with A (d, N), c (N,), e (d,) per network and B either the identity (full system,
d = N: A = W, c = 0, e = theta) or an (N, d) basis (low-rank reduction, SCIENCE.md
section 3: A = S V^T, B = U, c = theta, e = 0).

Bitwise reproducibility: every start's arithmetic depends only on its own state and its
own network. Matrix-vector products are ``np.einsum`` contractions (numpy's own loops,
never BLAS, whose kernels may depend on the batch size), LU factorisations and solves are
per-matrix LAPACK calls, and the compiled kernel runs one start at a time, so neither the
chunking of the active set nor the composition of the batch changes a start's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATIONS, Activation

__all__ = [
    "NewtonProblem",
    "StartCode",
    "damped_newton",
    "powell_hybrid",
    "relative_residual",
]


class StartCode:
    """Per-start outcome codes of the solvers."""

    active = 0
    converged = 1
    diverged = 2
    singular = 3
    max_iter = 4
    stalled = 5


@dataclass(frozen=True)
class NewtonProblem:
    """F(y) = -y + A sigma(c + B y) + e for B networks (see module docstring).

    Attributes
    ----------
    A : array, shape (B, d, N)
    c : array, shape (B, N) or None
        None means c = 0.
    basis : array, shape (B, N, d) or None
        None means the identity (d = N).
    e : array, shape (B, d) or None
        None means e = 0.
    activation : Activation
    """

    A: np.ndarray
    c: np.ndarray | None
    basis: np.ndarray | None
    e: np.ndarray | None
    activation: Activation

    @property
    def dim(self) -> int:
        return self.A.shape[1]

    @property
    def n_units(self) -> int:
        return self.A.shape[2]

    def state(self, y: np.ndarray, net: np.ndarray) -> np.ndarray:
        """Unit state x = c + B y, shape (K, N), for reduced states y (K, d) of networks ``net``."""
        if self.basis is None:
            x = y
        else:
            x = np.einsum("kij,kj->ki", self.basis[net], y)
        if self.c is not None:
            x = x + self.c[net]
        return x

    def residual(self, y: np.ndarray, net: np.ndarray, Ak: np.ndarray | None = None) -> np.ndarray:
        """F(y), shape (K, d)."""
        if Ak is None:
            Ak = self.A[net]
        s = self.activation.sigma(self.state(y, net))
        F = np.einsum("kij,kj->ki", Ak, s) - y
        if self.e is not None:
            F = F + self.e[net]
        return F

    def jacobian(self, y: np.ndarray, net: np.ndarray, Ak: np.ndarray | None = None) -> np.ndarray:
        """dF/dy = -I + A diag(sigma'(x)) B, shape (K, d, d)."""
        if Ak is None:
            Ak = self.A[net]
        ds = self.activation.dsigma(self.state(y, net))
        J = Ak * ds[:, None, :]
        if self.basis is not None:
            # (K, d, N) x (K, N, d) reduced over N by einsum's own loops (no BLAS: reproducible)
            J = np.einsum("kin,knj->kij", J, self.basis[net])
        idx = np.arange(self.dim)
        J[:, idx, idx] -= 1.0
        return J


def relative_residual(F: np.ndarray, x: np.ndarray) -> np.ndarray:
    """||F||_inf / (1 + ||x||_inf) along the last axis."""
    return np.max(np.abs(F), axis=-1) / (1.0 + np.max(np.abs(x), axis=-1))


#: Instrumentation read by the benchmark: number of LU solves and their summed d^3.
SOLVE_STATS = {"solves": 0, "dim_cubed": 0}


def _solve(J: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Per-matrix solves J_k s_k = rhs_k; singular matrices give NaN rows (no exception)."""
    SOLVE_STATS["solves"] += J.shape[0]
    SOLVE_STATS["dim_cubed"] += J.shape[0] * J.shape[-1] ** 3
    try:
        return np.linalg.solve(J, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full_like(rhs, np.nan)
        for k in range(J.shape[0]):  # rare fallback; each call is the same LAPACK call as above
            try:
                out[k] = np.linalg.solve(J[k : k + 1], rhs[k : k + 1, :, None])[0, :, 0]
            except np.linalg.LinAlgError:
                pass
        return out


#: Roots per vectorised block of the deflation sums (bounds the (K, block, d) temporaries).
_DEFLATION_BLOCK = 64


def _sequential_sum(terms: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """carry + terms[:, 0] + terms[:, 1] + ..., added strictly left to right (a running sum).

    ``terms`` (K, R, ...) and ``carry`` (K, ...). Unlike ``sum`` (pairwise, so its rounding
    depends on the length), the running sum gives the same bits whatever number of exact-zero
    terms (padded roots) follows.
    """
    return np.cumsum(np.concatenate([carry[:, None], terms], axis=1), axis=1)[:, -1]


def _deflation_blocks(y, roots, root_ok, power):
    """Per-root pieces, one block of roots at a time: (diff (K, R, d), d2 (K, R), ||y - r||^-p, ok)."""
    for a in range(0, roots.shape[1], _DEFLATION_BLOCK):
        ok = root_ok[:, a : a + _DEFLATION_BLOCK]
        diff = y[:, None, :] - np.where(ok[:, :, None], roots[:, a : a + _DEFLATION_BLOCK], 0.0)
        d2 = (diff * diff).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dp = d2 ** (-0.5 * power)
        yield diff, d2, dp, ok


def _deflation_log_gradient(y, roots, root_ok, power, shift):
    """Gradient of log m(y), m = prod_r (||y - r||^-p + shift) (Farrell et al. 2015).

    Accumulated as a running sum over roots (masked roots add exact zeros), so the padded
    number of roots does not change the arithmetic. Returns (K, d) and a (K,) flag that
    is True when y sits on a root (m undefined).
    """
    g = np.zeros_like(y)
    on_root = np.zeros(y.shape[0], dtype=bool)
    for diff, d2, dp, ok in _deflation_blocks(y, roots, root_ok, power):
        on_root |= (ok & (d2 == 0.0)).any(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = -power * dp / d2 / (dp + shift)
        coef = np.where(ok & (d2 > 0.0), coef, 0.0)
        g = _sequential_sum(coef[:, :, None] * diff, g)
    return g, on_root


def _deflation_log_m(y, roots, root_ok, power, shift):
    """log m(y) = sum_r log(||y - r||^-p + shift), accumulated as a running sum over roots."""
    out = np.zeros(y.shape[0])
    for _, _, dp, ok in _deflation_blocks(y, roots, root_ok, power):
        with np.errstate(divide="ignore"):
            term = np.log(dp + shift)
        out = _sequential_sum(np.where(ok, term, 0.0), out)
    return out


def damped_newton(
    problem: NewtonProblem,
    y0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    clip: bool,
    tol: float,
    max_iter: int,
    divergence_radius: float,
    max_backtrack: int = 12,
    chunk_elements: int = 1 << 22,
    deflation_roots: np.ndarray | None = None,
    deflation_mask: np.ndarray | None = None,
    deflation_power: float = 2.0,
    deflation_shift: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Damped (Armijo backtracking) Newton from S starts of each of B networks.

    Parameters
    ----------
    problem : NewtonProblem
    y0 : array, shape (B, S, d)
        Starts.
    lower, upper : arrays, shape (B, d)
        Search box; with ``clip`` every iterate is projected into it (valid when all roots
        lie in the box, as for bounded activations).
    clip : bool
    tol : float
        Convergence when the relative residual ||F||_inf / (1 + ||x||_inf) <= tol (x the unit
        state c + B y).
    max_iter : int
        Newton iterations per start.
    divergence_radius : float
        A start diverges when ||y||_inf exceeds it or it becomes non-finite.
    max_backtrack : int
        Step halvings in the line search; when none satisfies Armijo the smallest is taken.
    chunk_elements : int
        Memory budget (float64 elements) of the (K, d, N) temporaries per chunk.
    deflation_roots : array, shape (B, R, d), optional
        Known roots to deflate (the search is pushed away from them).
    deflation_mask : bool array, shape (B, R), optional
        Which deflation roots are real (the others are padding).
    deflation_power, deflation_shift : float
        p and the shift of the deflation operator.

    Returns
    -------
    y : array, shape (B, S, d)
        Final iterates.
    code : int8 array, shape (B, S)
        :class:`StartCode` per start.
    residual : array, shape (B, S)
        Relative residual at y.
    n_iter : int array, shape (B, S)
        Newton steps taken.
    """
    B, S, d = y0.shape
    N = problem.n_units
    K_all = B * S
    y = np.array(y0, dtype=float).reshape(K_all, d)
    net_of = np.repeat(np.arange(B), S)
    code = np.zeros(K_all, dtype=np.int8)
    resid = np.full(K_all, np.inf)
    n_iter = np.zeros(K_all, dtype=np.int64)
    deflate = deflation_roots is not None and deflation_roots.shape[1] > 0
    per_start = d * N * (1 + (problem.basis is not None) * d) + d * d
    chunk = max(1, int(chunk_elements // max(per_start, 1)))
    lo_all, hi_all = np.asarray(lower, float), np.asarray(upper, float)
    width = np.maximum(np.max(hi_all - lo_all, axis=-1), 1.0)  # (B,) step cap

    for _ in range(max_iter + 1):
        active = np.flatnonzero(code == StartCode.active)
        if active.size == 0:
            break
        for c0 in range(0, active.size, chunk):
            idx = active[c0 : c0 + chunk]
            net = net_of[idx]
            Ak = problem.A[net]
            yk = y[idx]
            F = problem.residual(yk, net, Ak)
            xk = problem.state(yk, net)
            r = relative_residual(F, xk)
            resid[idx] = r
            conv = r <= tol
            code[idx[conv]] = StartCode.converged
            last = n_iter[idx] >= max_iter
            code[idx[~conv & last]] = StartCode.max_iter
            go = ~conv & ~last
            if not go.any():
                continue
            idx, net, Ak, yk, F = idx[go], net[go], Ak[go], yk[go], F[go]
            J = problem.jacobian(yk, net, Ak)
            step = _solve(J, -F)
            bad = ~np.all(np.isfinite(step), axis=-1)
            if deflate:
                g, on_root = _deflation_log_gradient(
                    yk, deflation_roots[net], deflation_mask[net], deflation_power, deflation_shift
                )
                denom = 1.0 - (g * step).sum(axis=-1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = step / denom[:, None]
                bad |= on_root | ~np.all(np.isfinite(step), axis=-1)
            code[idx[bad]] = StartCode.singular
            keep = ~bad
            idx, net, Ak, yk, F, step = (
                idx[keep],
                net[keep],
                Ak[keep],
                yk[keep],
                F[keep],
                step[keep],
            )
            if idx.size == 0:
                continue
            # cap the step at the box width, then Armijo backtracking on ||F||_2
            norm = np.max(np.abs(step), axis=-1)
            cap = np.minimum(1.0, width[net] / norm)
            step = step * cap[:, None]
            with np.errstate(divide="ignore"):
                phi0 = 0.5 * np.log((F * F).sum(axis=-1))  # log merit: log ||F||_2 (+ log m)
            if deflate:
                phi0 = phi0 + _deflation_log_m(
                    yk, deflation_roots[net], deflation_mask[net], deflation_power, deflation_shift
                )
            y_new = yk.copy()
            pending = np.ones(idx.size, dtype=bool)
            alpha = 1.0
            for t in range(max_backtrack + 1):
                p = np.flatnonzero(pending)
                trial = yk[p] + alpha * step[p]
                if clip:
                    trial = np.clip(trial, lo_all[net[p]], hi_all[net[p]])
                y_new[p] = trial
                if t == max_backtrack:
                    break
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    Ft = problem.residual(trial, net[p], Ak[p])
                    phi = 0.5 * np.log((Ft * Ft).sum(axis=-1))
                    if deflate:
                        phi = phi + _deflation_log_m(
                            trial,
                            deflation_roots[net[p]],
                            deflation_mask[net[p]],
                            deflation_power,
                            deflation_shift,
                        )
                ok = ~np.isnan(phi) & (phi < np.inf) & (phi <= phi0[p] + np.log1p(-1e-4 * alpha))
                pending[p[ok]] = False
                if not pending.any():
                    break
                alpha *= 0.5
            y[idx] = y_new
            n_iter[idx] += 1
            div = ~np.all(np.isfinite(y_new), axis=-1) | (
                np.max(np.abs(y_new), axis=-1) > divergence_radius
            )
            code[idx[div]] = StartCode.diverged
    code[code == StartCode.active] = StartCode.max_iter
    return y.reshape(B, S, d), code.reshape(B, S), resid.reshape(B, S), n_iter.reshape(B, S)


def powell_hybrid(
    problem: NewtonProblem,
    y0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    divergence_radius: float,
    factor: float = 100.0,
    n_updates: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Powell's hybrid method (as MINPACK ``hybrj``) from every start of every network.

    Runs the compiled kernel of :mod:`koopnet._hybrid_kernel`, one start at a time: scaled
    dogleg trust region, the exact Jacobian (LU-factorised) at the start, after two poor steps
    and after ``n_updates`` Broyden updates, Broyden's rank-1 updates in the scaled norm in
    between (Sherman-Morrison for the inverse), ``hybrj``'s stall tests. Starts whose trust
    region collapses near a root (residual <= sqrt(tol)) get up to three exact Newton steps.

    Parameters
    ----------
    problem : NewtonProblem
        With a built-in activation (the kernel evaluates sigma itself).
    y0 : array, shape (B, S, d)
        Starts.
    tol : float
        Convergence when ||F||_inf / (1 + ||x||_inf) <= tol (x the unit state c + B y).
    max_iter : int
        Trial steps per start (accepted or not).
    divergence_radius : float
        ||y||_inf beyond which a start is declared diverged.
    factor : float
        Initial trust radius factor * ||D y0|| (MINPACK ``factor``).
    n_updates : int, optional
        Broyden updates before the exact Jacobian is re-evaluated (default max(16, d // 2)).

    Returns
    -------
    y : array, shape (B, S, d)
        Final iterates.
    code : int8 array, shape (B, S)
        :class:`StartCode` per start.
    residual : array, shape (B, S)
        Relative residual at y.
    n_iter : int array, shape (B, S)
        Trial steps taken.
    """
    B, S, d = y0.shape
    act = problem.activation
    if not _compiled_activation(act):
        raise ValueError(
            f"the equilibrium search supports the built-in activations {sorted(ACTIVATIONS)}, "
            f"not {act!r}"
        )
    from ._hybrid_kernel import hybrid_search

    y, code, resid, n_iter, _ = hybrid_search(
        problem.A,
        problem.c,
        problem.basis,
        problem.e,
        act.name,
        np.repeat(np.arange(B), S),
        np.asarray(y0, float).reshape(B * S, d),
        tol=tol,
        max_iter=max_iter,
        divergence_radius=divergence_radius,
        factor=factor,
        n_updates=n_updates,
    )
    return y.reshape(B, S, d), code.reshape(B, S), resid.reshape(B, S), n_iter.reshape(B, S)


def _compiled_activation(act: Activation) -> bool:
    """True when the compiled kernel knows ``act`` (a built-in activation, not a user's own)."""
    return ACTIVATIONS.get(act.name) is act
