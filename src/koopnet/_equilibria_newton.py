"""Vectorised root searches for the equilibria engine (private).

Three solvers share one problem description: :func:`powell_hybrid` (MINPACK ``hybrj``'s
scaled dogleg with Broyden updates; the default search), :func:`dogleg_newton` (exact
Jacobian every step) and :func:`damped_newton` (Armijo line search; used with deflation).

Solves, for many starts of many networks at once, the (possibly reduced) equilibrium
equation

    F(y) = -y + A sigma(c + B y) + e = 0,        y in R^d,

with A (d, N), c (N,), e (d,) per network and B either the identity (full system,
d = N: A = W, c = 0, e = theta) or an (N, d) basis (low-rank reduction, SCIENCE.md
section 3: A = S V^T, B = U, c = theta, e = 0).

Bitwise reproducibility: every start's arithmetic depends only on its own state and its
own network. Matrix-vector products are ``np.einsum`` contractions (numpy's own loops,
never BLAS, whose kernels may depend on the batch size), LU factorisations, inverses and
solves are per-matrix LAPACK calls, so neither the chunking of the active set nor the composition of the batch changes
a start's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation

__all__ = [
    "NewtonProblem",
    "StartCode",
    "damped_newton",
    "dogleg_newton",
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


def dogleg_newton(
    problem: NewtonProblem,
    y0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    divergence_radius: float,
    initial_radius: float = 1.0,
    stall_window: int = 10,
    stall_factor: float = 0.9,
    chunk_elements: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Newton with a Powell dogleg trust region on ||F||_2^2, vectorised over starts and networks.

    Each step is the Newton step when it fits in the trust region, otherwise the dogleg
    path between the Cauchy (steepest-descent) point and the Newton point; the radius adapts
    per start to the ratio of actual to predicted decrease (as MINPACK's ``hybrj`` but with
    exact Jacobians). A rejected step reuses the factorised quantities.

    Parameters
    ----------
    problem : NewtonProblem
    y0 : array, shape (B, S, d)
    lower, upper : arrays, shape (B, d)
        Start box (sets the maximum trust radius, 2 sqrt(d) x its widest side).
    tol : float
        Convergence when ||F||_inf / (1 + ||x||_inf) <= tol.
    max_iter : int
        Trial steps per start (accepted or not).
    divergence_radius : float
        ||y||_inf beyond which (or non-finite) a start is declared diverged.
    initial_radius : float
        Initial trust radius per unit of sqrt(d) (state units).
    stall_window, stall_factor : int, float
        A start stalls (leaves with code ``stalled``) when ||F||_2 has not dropped below
        stall_factor times its reference value within stall_window trial steps (typically
        near a local minimum of ||F|| that is not a root).
    chunk_elements : int
        Memory budget (float64 elements) of per-chunk temporaries.

    Returns
    -------
    y, code, residual, n_iter : as :func:`damped_newton`.
    """
    B, S, d = y0.shape
    N = problem.n_units
    K_all = B * S
    y = np.array(y0, dtype=float).reshape(K_all, d)
    net_of = np.repeat(np.arange(B), S)
    code = np.zeros(K_all, dtype=np.int8)
    resid = np.full(K_all, np.inf)
    n_iter = np.zeros(K_all, dtype=np.int64)
    width = np.maximum(np.max(np.asarray(upper, float) - np.asarray(lower, float), axis=-1), 1.0)
    delta_max = 2.0 * np.sqrt(d) * width[net_of]
    radius = np.minimum(initial_radius * np.sqrt(d), delta_max)
    F = np.zeros((K_all, d))
    have_F = np.zeros(K_all, dtype=bool)
    cached = np.zeros(K_all, dtype=bool)
    dN = np.zeros((K_all, d))  # Newton step
    dC = np.zeros((K_all, d))  # Cauchy step
    JdC = np.zeros((K_all, d))  # J @ dC
    phi_ref = np.full(K_all, np.inf)  # ||F||^2 at the last sufficient improvement
    last_improved = np.zeros(K_all, dtype=np.int64)
    per_start = d * N * (1 + (problem.basis is not None) * d) + 3 * d * d
    chunk = max(1, int(chunk_elements // max(per_start, 1)))

    for _ in range(max_iter + 1):
        active = np.flatnonzero(code == StartCode.active)
        if active.size == 0:
            break
        for c0 in range(0, active.size, chunk):
            idx = active[c0 : c0 + chunk]
            net = net_of[idx]
            Ak = problem.A[net]
            need = ~have_F[idx]
            if need.any():
                i2 = idx[need]
                F[i2] = problem.residual(y[i2], net[need], Ak[need])
                have_F[i2] = True
            yk, Fk = y[idx], F[idx]
            r = relative_residual(Fk, problem.state(yk, net))
            resid[idx] = r
            conv = r <= tol
            code[idx[conv]] = StartCode.converged
            last = n_iter[idx] >= max_iter
            code[idx[~conv & last]] = StartCode.max_iter
            go = ~conv & ~last
            idx, net, Ak, yk, Fk = idx[go], net[go], Ak[go], yk[go], Fk[go]
            if idx.size == 0:
                continue
            # Newton and Cauchy steps for starts whose point moved
            new = ~cached[idx]
            if new.any():
                i2 = idx[new]
                J = problem.jacobian(yk[new], net[new], Ak[new])
                Fn = Fk[new]
                step = _solve(J, -Fn)
                g = np.einsum("kji,kj->ki", J, Fn)  # J^T F
                Jg = np.einsum("kij,kj->ki", J, g)
                gg = (g * g).sum(axis=-1)
                JgJg = (Jg * Jg).sum(axis=-1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = gg / JgJg
                t = np.where(JgJg > 0, t, 0.0)
                dN[i2], dC[i2], JdC[i2] = step, -t[:, None] * g, -t[:, None] * Jg
                cached[i2] = True
                bad = ~np.all(np.isfinite(step), axis=-1)
                code[i2[bad]] = StartCode.singular
                keep = code[idx] == StartCode.active
                idx, net, Ak, yk, Fk = idx[keep], net[keep], Ak[keep], yk[keep], Fk[keep]
                if idx.size == 0:
                    continue
            sN, sC, jC = dN[idx], dC[idx], JdC[idx]
            Delta = radius[idx]
            nN = np.sqrt((sN * sN).sum(axis=-1))
            nC = np.sqrt((sC * sC).sum(axis=-1))
            # dogleg: step = sC + tau (sN - sC), J step = jC + tau (-F - jC)
            diff = sN - sC
            a = (diff * diff).sum(axis=-1)
            bq = 2.0 * (sC * diff).sum(axis=-1)
            cq = nC * nC - Delta * Delta
            with np.errstate(divide="ignore", invalid="ignore"):
                tau = (-bq + np.sqrt(np.maximum(bq * bq - 4.0 * a * cq, 0.0))) / (2.0 * a)
                tau = np.where(a > 0, np.clip(tau, 0.0, 1.0), 1.0)
                scaleC = np.where(nC > 0, Delta / nC, 0.0)
            newton = nN <= Delta
            cauchy = ~newton & (nC >= Delta)
            mix = ~newton & ~cauchy
            tau_eff = np.where(newton, 1.0, np.where(mix, tau, 0.0))
            sc = np.where(cauchy, scaleC, 1.0)
            step = sc[:, None] * (sC + tau_eff[:, None] * diff)
            Jstep = sc[:, None] * (jC + tau_eff[:, None] * (-Fk - jC))
            lin = Fk + Jstep
            phi = (Fk * Fk).sum(axis=-1)
            pred = phi - (lin * lin).sum(axis=-1)
            trial = yk + step
            with np.errstate(over="ignore", invalid="ignore"):
                Ft = problem.residual(trial, net, Ak)
                phit = (Ft * Ft).sum(axis=-1)
                rho = (phi - phit) / pred
            rho = np.where(np.isfinite(rho) & (pred > 0), rho, -1.0)
            acc = rho > 1e-4
            ns = np.sqrt((step * step).sum(axis=-1))
            Delta = np.where(rho < 0.25, 0.25 * ns, Delta)
            grow = (rho > 0.75) & (ns >= 0.99 * radius[idx])
            Delta = np.where(grow, np.minimum(2.0 * Delta, delta_max[idx]), Delta)
            radius[idx] = Delta
            ia = idx[acc]
            y[ia] = trial[acc]
            F[ia] = Ft[acc]
            cached[ia] = False
            n_iter[idx] += 1
            improved = acc & (phit < stall_factor**2 * phi_ref[idx])
            ii = idx[improved]
            phi_ref[ii] = phit[improved]
            last_improved[ii] = n_iter[ii]
            div = acc & (
                ~np.all(np.isfinite(trial), axis=-1)
                | (np.max(np.abs(trial), axis=-1) > divergence_radius)
            )
            code[idx[div]] = StartCode.diverged
            tiny = ~acc & (Delta <= 1e-13 * (1.0 + np.max(np.abs(yk), axis=-1)))
            stalled = tiny | (n_iter[idx] - last_improved[idx] >= stall_window)
            code[idx[stalled & ~div]] = StartCode.stalled
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
    chunk_elements: int = 1 << 22,
    compiled: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Powell's hybrid method (as MINPACK ``hybrj``), vectorised over starts and networks.

    With ``compiled`` (the default) and a built-in activation the search runs in the numba
    kernel of :mod:`koopnet._hybrid_kernel` (one start at a time, LU factors and
    Sherman-Morrison inverse updates; 3-4x faster at N = 50, 1.7x at N = 200 than the numpy
    waves below); otherwise in numpy waves.

    Scaled dogleg trust region; the Jacobian is evaluated exactly (and factorised, one
    LAPACK call per start) at the start, after two consecutive poor steps and after
    ``n_updates`` Broyden updates, and otherwise updated by Broyden's rank-1 formula in the
    scaled norm (with Sherman-Morrison for the inverse). The stopping rules (convergence,
    MINPACK's ``nslow1`` / ``nslow2`` stall tests) are those of ``hybrj``. Starts whose trust
    region collapses near a root (residual <= sqrt(tol)) get up to three exact Newton steps.
    Starts are processed in waves that fit ``chunk_elements``; each wave runs to completion,
    so every start's arithmetic depends only on itself.

    Implementation (see :func:`_hybrid_wave`): the model Jacobian is kept as the exact
    Jacobian J0 = -I + A diag(sigma') B, applied through the network's shared A, plus the
    Broyden rank-1 factors, and its inverse as one per-start factorisation of J0 (a dense
    inverse for d < ``_LU_MIN_DIM``, LAPACK LU factors above) plus Sherman-Morrison
    factors; an iteration reads the per-start (d, d) array twice (H0 F_trial, v^T H0).

    Parameters and returns as :func:`dogleg_newton` (no search box needed); ``factor`` sets
    the initial trust radius factor * ||D y0|| as in MINPACK; ``n_updates`` (default
    :func:`_default_updates`) bounds the Broyden factors kept per start.
    """
    B, S, d = y0.shape
    K_all = B * S
    act = problem.activation
    if compiled and _compiled_activation(act):
        from ._hybrid_kernel import hybrid_search

        y, code, resid, n_iter, _ = hybrid_search(
            problem.A,
            problem.c,
            problem.basis,
            problem.e,
            act.name,
            np.repeat(np.arange(B), S),
            np.asarray(y0, float).reshape(K_all, d),
            tol=tol,
            max_iter=max_iter,
            divergence_radius=divergence_radius,
            factor=factor,
            n_updates=n_updates,
        )
        return y.reshape(B, S, d), code.reshape(B, S), resid.reshape(B, S), n_iter.reshape(B, S)
    if n_updates is None:
        n_updates = _default_updates(d)
    per_start = d * d + 4 * n_updates * d + 8 * problem.n_units
    wave = max(1, int(chunk_elements // max(per_start, 1)))
    yf = np.asarray(y0, float).reshape(K_all, d)
    net_all = np.repeat(np.arange(B), S)
    outs = [
        np.empty((K_all, d)),
        np.zeros(K_all, np.int8),
        np.zeros(K_all),
        np.zeros(K_all, np.int64),
    ]
    for w0 in range(0, K_all, wave):
        sl = slice(w0, min(w0 + wave, K_all))
        res = _hybrid_wave(
            problem, yf[sl].copy(), net_all[sl], tol, max_iter, divergence_radius, factor, n_updates
        )
        for o, r in zip(outs, res):
            o[sl] = r
    return (
        outs[0].reshape(B, S, d),
        outs[1].reshape(B, S),
        outs[2].reshape(B, S),
        outs[3].reshape(B, S),
    )


def _compiled_activation(act: Activation) -> bool:
    """True when the compiled kernel knows ``act`` (a built-in activation, not a user's own)."""
    from .activations import ACTIVATIONS

    return ACTIVATIONS.get(act.name) is act


#: Dimension from which the hybrid search keeps LU factors instead of dense inverses.
_LU_MIN_DIM = 80


def _default_updates(d: int) -> int:
    """Broyden updates kept in factored form before the Jacobian is re-evaluated."""
    return int(min(16, max(8, d // 8)))


def _inv(J: np.ndarray) -> np.ndarray:
    SOLVE_STATS["solves"] += J.shape[0]
    SOLVE_STATS["dim_cubed"] += 3 * J.shape[0] * J.shape[-1] ** 3  # an inverse ~ 3 LU solves
    try:
        return np.linalg.inv(J)
    except np.linalg.LinAlgError:
        out = np.full_like(J, np.nan)
        for k in range(J.shape[0]):
            try:
                out[k] = np.linalg.inv(J[k : k + 1])[0]
            except np.linalg.LinAlgError:
                pass
        return out


def _runs(net):
    """Contiguous runs of equal network index in a sorted ``net``: list of (b, start, stop)."""
    if net.size == 0:
        return []
    cut = np.flatnonzero(net[1:] != net[:-1]) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [net.size]])
    return [(int(net[a]), int(a), int(z)) for a, z in zip(starts, stops)]


def _shared_matvec(Mt, X, runs):
    """Rows X[k] @ Mt[b] for the rows of X grouped into runs of one network b.

    ``Mt`` holds the transpose of the per-network matrix M (so this is M x per row). The
    matrix is shared by all starts of a network (no per-start gather); each row is
    accumulated by numpy's einsum loop in the order of j, independent of the other rows.
    """
    out = np.empty((X.shape[0], Mt.shape[2]))
    for b, a, z in runs:
        out[a:z] = np.einsum("kj,ji->ki", X[a:z], Mt[b])
    return out


class _InverseStore:
    """Per-start exact inverse Jacobians H0 = J0^{-1} of a wave, applied as H0 x and H0^T x.

    Two storages with the same meaning: dense inverses (one batched ``np.linalg.inv``;
    products are einsum passes) for small d, and LAPACK LU factors (``getrf`` per start,
    a quarter of the flops of an inverse; products are ``getrs`` solves per start) for
    d >= ``_LU_MIN_DIM``, where the factorisations dominate. The choice depends on d only,
    and every product is per start, so a start's arithmetic does not depend on the batch.
    Rows of singular (or non-finite) Jacobians give zero products.
    """

    def __init__(self, K: int, d: int):
        self.lu = d >= _LU_MIN_DIM
        self.M = np.zeros((K, d, d))  # inverse, or LU factors of J^T stored as (LU)^T
        self.piv = np.zeros((K, d), np.int32) if self.lu else None
        self.ok = np.zeros(K, dtype=bool)

    def keep(self, mask):
        self.M, self.ok = self.M[mask], self.ok[mask]
        if self.lu:
            self.piv = self.piv[mask]

    def set(self, rows, J):
        """Store the inverse of J (len(rows), d, d) in ``rows``; returns the singular mask."""
        if not self.lu:
            H = _inv(J)
            bad = ~np.all(np.isfinite(H), axis=(1, 2))
            H[bad] = 0.0
            self.M[rows] = H
        else:
            from scipy.linalg.lapack import dgetrf

            SOLVE_STATS["solves"] += J.shape[0]
            SOLVE_STATS["dim_cubed"] += J.shape[0] * J.shape[-1] ** 3
            bad = np.zeros(rows.size, dtype=bool)
            for i, k in enumerate(rows):
                # J[i].T is Fortran-ordered: LAPACK factors J^T without a copy
                lu, piv, info = dgetrf(J[i].T)
                if info != 0 or not np.all(np.isfinite(lu)):
                    bad[i] = True
                    self.M[k] = 0.0
                else:
                    self.M[k] = lu.T
                    self.piv[k] = piv
        self.ok[rows] = ~bad
        return bad

    def _solve(self, X, rows, trans):
        from scipy.linalg.lapack import dgetrs

        out = np.zeros_like(X)
        for i, k in enumerate(rows):
            if self.ok[k]:
                out[i] = dgetrs(self.M[k].T, self.piv[k], X[i], trans=trans)[0]
        return out

    def apply(self, X, rows=None):
        """H0 x for the rows ``rows`` (default all) of the working set; X (len(rows), d)."""
        if rows is None:
            rows = np.arange(self.M.shape[0])
        if not self.lu:
            return np.einsum(
                "kij,kj->ki", self.M[rows] if rows.size < self.M.shape[0] else self.M, X
            )
        return self._solve(X, rows, trans=1)  # factors are of J^T: solve J x = b

    def apply_masked(self, X, mask, transpose=False):
        """H0 x (or H0^T x) for every row of the working set; rows outside ``mask`` are
        not needed by the caller (dense storage computes them anyway, LU gives zeros)."""
        if not self.lu:
            return self.apply_t(X) if transpose else self.apply(X)
        rows = np.flatnonzero(mask)
        out = np.zeros_like(X)
        out[rows] = self._solve(X[rows], rows, trans=0 if transpose else 1)
        return out

    def apply_t(self, X, rows=None):
        """H0^T x (the row vector x^T H0)."""
        if rows is None:
            rows = np.arange(self.M.shape[0])
        if not self.lu:
            return np.einsum(
                "ki,kij->kj", X, self.M[rows] if rows.size < self.M.shape[0] else self.M
            )
        return self._solve(X, rows, trans=0)


def _hybrid_wave(problem, y_out, net_out, tol, max_iter, divergence_radius, factor, n_updates):
    """One wave of :func:`powell_hybrid`; working arrays are compacted as starts leave.

    The approximate Jacobian is kept in factored form, J = J0 + sum_m u_m v_m^T with
    J0 = -I + A diag(sigma'(x0)) B the exact Jacobian at its last evaluation (products with
    J0 use the network's shared A, never a per-start matrix), and its inverse as
    H = H0 - sum_m p_m q_m^T with H0 = J0^{-1} held by an :class:`_InverseStore`. After
    ``n_updates`` Broyden updates the Jacobian is re-evaluated. H is applied to the trial
    residual once per step; H u for the update follows as H F_t - H F - step (H J p = p for
    the model), and H F for the next step from the Sherman-Morrison formula, so only
    H0 F_t and v^T H0 read the per-start matrices. ``net_out`` must be sorted.
    """
    ein = np.einsum
    A, basis = problem.A, problem.basis
    At = np.ascontiguousarray(A.transpose(0, 2, 1))
    basisT = None if basis is None else np.ascontiguousarray(basis.transpose(0, 2, 1))
    act = problem.activation
    K, d = y_out.shape
    M = n_updates
    code_out = np.zeros(K, dtype=np.int8)
    resid_out = np.full(K, np.inf)
    iter_out = np.zeros(K, dtype=np.int64)
    pos = np.arange(K)
    net = net_out.copy()
    runs = _runs(net)
    y = y_out.copy()

    def state(yy, nn, rr):
        if basis is None:
            x = yy
        else:
            x = _shared_matvec(basisT, yy, rr)
        if problem.c is not None:
            x = x + problem.c[nn]
        return x

    def residual(yy, nn, rr):
        x = state(yy, nn, rr)
        Fr = _shared_matvec(At, act.sigma(x), rr) - yy
        if problem.e is not None:
            Fr = Fr + problem.e[nn]
        return Fr, x

    def j0_mv(w, ds, rr):  # J0 w = -w + A (ds * (B w))
        bw = w if basis is None else _shared_matvec(basisT, w, rr)
        return _shared_matvec(At, ds * bw, rr) - w

    def j0t_mv(w, ds, rr):  # J0^T w = -w + B^T (ds * (A^T w))
        t = ds * _shared_matvec(A, w, rr)
        if basis is not None:
            t = _shared_matvec(basis, t, rr)
        return t - w

    F, x0 = residual(y, net, runs)
    fnorm = np.sqrt((F * F).sum(axis=-1))
    resid = relative_residual(F, x0)
    H0 = _InverseStore(K, d)
    HF = np.zeros((K, d))  # H @ F for the current F
    ds0 = np.zeros((K, problem.n_units))
    P = np.zeros((K, M, d))
    Q = np.zeros((K, M, d))
    U = np.zeros((K, M, d))
    V = np.zeros((K, M, d))
    m = np.zeros(K, np.int64)
    D = np.ones((K, d))
    delta = np.zeros(K)
    jeval = np.ones(K, dtype=bool)
    first = np.ones(K, dtype=bool)
    fresh = np.zeros(K, dtype=bool)
    ncsuc = np.zeros(K, np.int64)
    ncfail = np.zeros(K, np.int64)
    nslow1 = np.zeros(K, np.int64)
    nslow2 = np.zeros(K, np.int64)
    n_iter = np.zeros(K, np.int64)
    code = np.zeros(K, dtype=np.int8)
    for _ in range(max_iter + 1):
        conv = (code == StartCode.active) & (resid <= tol)
        code[conv] = StartCode.converged
        code[(code == StartCode.active) & (n_iter >= max_iter)] = StartCode.max_iter
        done = code != StartCode.active
        if done.all() or done.sum() >= max(1, pos.size // 4):
            p_ = pos[done]
            y_out[p_], code_out[p_], resid_out[p_], iter_out[p_] = (
                y[done],
                code[done],
                resid[done],
                n_iter[done],
            )
            keep = ~done
            pos, net, y, F, HF, fnorm, resid = (
                pos[keep],
                net[keep],
                y[keep],
                F[keep],
                HF[keep],
                fnorm[keep],
                resid[keep],
            )
            H0.keep(keep)
            ds0, P, Q, U, V, m = ds0[keep], P[keep], Q[keep], U[keep], V[keep], m[keep]
            D, delta, jeval, first, fresh = (
                D[keep],
                delta[keep],
                jeval[keep],
                first[keep],
                fresh[keep],
            )
            ncsuc, ncfail, nslow1, nslow2 = ncsuc[keep], ncfail[keep], nslow1[keep], nslow2[keep]
            n_iter, code = n_iter[keep], code[keep]
            runs = _runs(net)
        if pos.size == 0:
            break
        active = code == StartCode.active
        je = np.flatnonzero(jeval & active)
        if je.size:
            J = problem.jacobian(y[je], net[je])
            bad = H0.set(je, J)
            HF[je] = H0.apply(F[je], je)
            ds0[je] = act.dsigma(state(y[je], net[je], _runs(net[je])))
            P[je], Q[je], U[je], V[je], m[je] = 0.0, 0.0, 0.0, 0.0, 0
            cn = np.sqrt(ein("kij,kij->kj", J, J))
            cn = np.where(cn > 0, cn, 1.0)
            f0 = first[je]
            D[je] = np.where(f0[:, None], cn, np.maximum(D[je], cn))
            xn = np.sqrt(((D[je] * y[je]) ** 2).sum(axis=-1))
            delta[je] = np.where(f0, np.where(xn > 0, factor * xn, factor), delta[je])
            jeval[je] = False
            fresh[je] = True
            if bad.any():
                code[je[bad]] = StartCode.singular
        # scaled dogleg (MINPACK dogleg): Gauss-Newton point, else scaled gradient direction
        sN = -HF
        zN = D * sN
        nN = np.sqrt((zN * zN).sum(axis=-1))
        De = delta
        g = (j0t_mv(F, ds0, runs) + ein("kmi,km->ki", V, ein("kmi,ki->km", U, F))) / D
        gn = np.sqrt((g * g).sum(axis=-1))
        gdir = g / np.where(gn > 0, gn, 1.0)[:, None]
        w = gdir / D
        Jgd = j0_mv(w, ds0, runs) + ein("kmi,km->ki", U, ein("kmi,ki->km", V, w))
        JgJg = (Jgd * Jgd).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sgnorm = np.where(JgJg > 0, gn / JgJg, 0.0)
        zC = -sgnorm[:, None] * gdir
        use_newton = nN <= De
        use_grad = ~use_newton & (sgnorm >= De)
        mix = ~use_newton & ~use_grad
        dz = zN - zC
        a = (dz * dz).sum(axis=-1)
        b = 2.0 * (zC * dz).sum(axis=-1)
        c = (zC * zC).sum(axis=-1) - De * De
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.where(a > 0, (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a), 1.0)
        tau = np.clip(tau, 0.0, 1.0)
        alpha = np.where(use_newton, 1.0, np.where(mix, tau, 0.0))  # weight of the Newton point
        beta = np.where(
            use_newton, 0.0, np.where(mix, 1.0 - tau, De / np.where(sgnorm > 0, sgnorm, 1.0))
        )
        zstep = alpha[:, None] * zN + beta[:, None] * zC
        step = zstep / D
        Jp = -alpha[:, None] * F - (beta * sgnorm)[:, None] * Jgd
        pnorm = np.sqrt((zstep * zstep).sum(axis=-1))
        De = np.where(first, np.minimum(De, pnorm), De)
        first[:] = False
        trial = y + step
        with np.errstate(over="ignore", invalid="ignore"):
            Ft, xt = residual(trial, net, runs)
        finite = np.all(np.isfinite(Ft), axis=-1) & (code == StartCode.active)
        Ft = np.where(finite[:, None], Ft, 0.0)
        fn = np.where(finite, np.sqrt((Ft * Ft).sum(axis=-1)), np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            actred = np.where(fn < fnorm, 1.0 - (fn / fnorm) ** 2, -1.0)
            lin = F + Jp
            tn = np.sqrt((lin * lin).sum(axis=-1))
            prered = np.where(tn < fnorm, 1.0 - (tn / fnorm) ** 2, 0.0)
            ratio = np.where(prered > 0, actred / prered, 0.0)
        poor = ratio < 0.1
        ncsuc = np.where(poor, 0, ncsuc + 1)
        ncfail = np.where(poor, ncfail + 1, 0)
        De = np.where(poor, 0.5 * De, De)
        good = ~poor & ((ratio >= 0.5) | (ncsuc > 1))
        De = np.where(good, np.maximum(De, pnorm / 0.5), De)
        De = np.where(~poor & (np.abs(ratio - 1.0) <= 0.1), pnorm / 0.5, De)
        delta = De
        acc = (ratio >= 1e-4) & finite
        # H applied to the trial residual (exact H0 pass + factors)
        HFt = H0.apply_masked(Ft, finite) - ein("kmi,km->ki", P, ein("kmi,ki->km", Q, Ft))
        y = np.where(acc[:, None], trial, y)
        Fold = F
        F = np.where(acc[:, None], Ft, F)
        fnorm = np.where(acc, fn, fnorm)
        if acc.any():
            ia = np.flatnonzero(acc)
            resid[ia] = relative_residual(F[ia], xt[ia])
        n_iter += code == StartCode.active
        nslow1 = np.where(actred >= 0.001, 0, nslow1 + 1)
        # as hybrj: counted at fresh Jacobians, reset by any step with >= 10 % reduction
        nslow2 = np.where(actred >= 0.1, 0, nslow2 + fresh)
        active = code == StartCode.active
        div = active & acc & (np.max(np.abs(y), axis=-1) > divergence_radius)
        code[div] = StartCode.diverged
        xn = np.sqrt(((D * y) ** 2).sum(axis=-1))
        collapsed = De <= 1e-15 * np.maximum(xn, 1.0)
        slow = (nslow2 >= 5) | (nslow1 >= 10)
        code[(code == StartCode.active) & (collapsed | slow) & (resid > tol)] = StartCode.stalled
        # Jacobian: re-evaluate after two poor steps, else Broyden update in the scaled norm
        again = ncfail >= 2
        jeval |= again
        ncfail = np.where(again, 0, ncfail)
        upd = ~again & finite & (pnorm > 0)
        fresh[:] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(upd[:, None], (D * D) * step / (pnorm * pnorm)[:, None], 0.0)
            u = np.where(upd[:, None], (Ft - Fold) - Jp, 0.0)
        # H u = H Ft - H Fold - H Jp, with H Jp = step (H = J^{-1} of the model)
        Hu = np.where(upd[:, None], HFt - (-sN) - step, 0.0)
        vH = H0.apply_masked(v, upd, transpose=True) - ein("km,kmj->kj", ein("ki,kmi->km", v, P), Q)
        den = 1.0 + (v * Hu).sum(axis=-1)
        ok = np.abs(den) > 1e-12
        cf = np.where(ok & upd, 1.0 / np.where(ok, den, 1.0), 0.0)
        pcol = Hu * cf[:, None]
        # H F for the next iterate's F (before any re-evaluation, which recomputes it)
        HF = np.where(acc[:, None], HFt, -sN) - pcol * (vH * F).sum(axis=-1)[:, None]
        st = np.flatnonzero(upd & ok)
        if st.size:
            ms = m[st]
            U[st, ms], V[st, ms], P[st, ms], Q[st, ms] = u[st], v[st], pcol[st], vH[st]
            m[st] = ms + 1
        jeval |= (upd & ~ok) | (m >= M)
    if pos.size:
        y_out[pos], code_out[pos], resid_out[pos], iter_out[pos] = y, code, resid, n_iter
    code_out[code_out == StartCode.active] = StartCode.max_iter
    # stalled close to a root: finish with exact Newton steps
    near = np.flatnonzero(
        ((code_out == StartCode.stalled) | (code_out == StartCode.max_iter))
        & (resid_out <= np.sqrt(tol))
    )
    F_near = problem.residual(y_out[near], net_out[near])
    for _ in range(3):
        if near.size == 0:
            break
        J = problem.jacobian(y_out[near], net_out[near])
        tr = y_out[near] + _solve(J, -F_near)
        with np.errstate(over="ignore", invalid="ignore"):
            Ft = problem.residual(tr, net_out[near])
            rt = relative_residual(Ft, problem.state(tr, net_out[near]))
        better = np.isfinite(rt) & (rt < resid_out[near])
        nb = near[better]
        y_out[nb], resid_out[nb] = tr[better], rt[better]
        code_out[near[resid_out[near] <= tol]] = StartCode.converged
        keep = better & (resid_out[near] > tol)
        near, F_near = near[keep], Ft[keep]
    return y_out, code_out, resid_out, iter_out
