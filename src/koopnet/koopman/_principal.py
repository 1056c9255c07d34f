"""Principal Koopman eigenfunctions at a hyperbolic equilibrium, to Taylor degree 2 or 3, at large N.

In the Jacobian's eigen-coordinates y (x = x* + V y, J = V Lambda V^-1) the vector field of
dx/dt = -x + W sigma(x) + theta reads dy/dt = Lambda y + g_2(y) + g_3(y) + ... with
g_k(y) = V^-1 W (a_k o (V y)^k), a_k = sigma^(k)(x*)/k! (elementwise powers). The generator maps
y^k to (k . lambda) y^k on the linear part, so the homological equations for the Taylor
coefficients of the principal eigenfunction psi_i = y_i + psi_i^(2) + psi_i^(3) are diagonal:

    (k . lambda - lambda_i) [psi_i^(d)]_k = -[sum_{d' < d} grad psi_i^(d') . g_(d - d' + 1)]_k,

and the structure of f (a diagonal nonlinearity mixed by W) gives closed forms (SCIENCE.md 2d):

    psi_i^(2)(y) = y^T C y,                C_jk = -(V^T diag(b) V)_jk / (lambda_j + lambda_k - lambda_i),
    b = (u_i^T W) o a_2,                   u_i^T = e_i^T V^-1 (left eigenvector, psi_i = u_i^T h + ...),
    psi_i^(3)(y) = sum_jkm T_jkm y_j y_k y_m,
    T_jkm = -(sum_l D_jl V_lk V_lm) / (lambda_j + lambda_k + lambda_m - lambda_i),
    D = 2 C V^-1 W diag(a_2) + V^T diag((u_i^T W) o a_3).

Degree 2 costs one N x N x N product per mode and degree 3 one N x N x N(N+1)/2 product (T is
symmetric in k, m; the divisor is symmetric in j, k, m, so T need not be symmetrised), never a
C(N + D, D)-sized generator matrix. The normalisation is psi_i = y_i + O(|y|^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from math import factorial

import numpy as np
# at import (before a stage's timer), not on the first call, which would charge it to the first chunk
from scipy.linalg import get_lapack_funcs, lu_factor, lu_solve

from ..activations import get_activation
from ..network import Network
from ._taylor import sigma_taylor_coefficients

__all__ = ["EigenfunctionStatus", "PrincipalEigenfunctions", "principal_eigenfunctions"]

_EPS = np.finfo(float).eps


class EigenfunctionStatus(IntEnum):
    """Outcome of the principal-eigenfunction expansion of one mode."""

    ok = 0
    resonant = 1  # some |k . lambda - lambda_i| <= small_divisor, 2 <= |k| <= D: those coefficients set to 0
    not_diagonalisable = 2  # eigenvector matrix numerically singular (rcond < sqrt(eps)), e.g. a Jordan block
    skipped_too_many_units = 3  # the spectra stage did not expand (N > eigenfunction_max_units)


@lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs k <= m of a symmetric N x N array and their weight (2 off the diagonal)."""
    k, m = np.triu_indices(n)
    w = np.where(k == m, 1.0, 2.0)
    for a in (k, m, w):
        a.setflags(write=False)
    return k, m, w


@dataclass(frozen=True, eq=False)
class PrincipalEigenfunctions:
    """Taylor expansions, in the Jacobian's eigen-coordinates, of principal Koopman eigenfunctions.

    Attributes
    ----------
    network : Network
    center : array, shape (N,)
        The equilibrium x* (state units).
    jacobian_eigenvalues : complex array, shape (N,)
        lambda_1..lambda_N of J(x*), slowest first (1/time).
    modes : int array, shape (m,)
        Indices into ``jacobian_eigenvalues`` of the expanded eigenfunctions.
    eigenvectors : array, shape (N, N)
        V (columns, same order as ``jacobian_eigenvalues``); float64 when every eigenvalue is real
        (then ``quadratic`` and ``cubic`` are real too), else complex.
    rcond : float
        Reciprocal 1-norm condition number of V (LAPACK gecon).
    degree : int
        Taylor degree D (1, 2 or 3).
    quadratic : array, shape (m, N, N) or None
        C (symmetric): psi^(2)(y) = y^T C y. None when D < 2.
    cubic : array, shape (m, N, N(N+1)/2) or None
        T packed over k <= m: psi^(3)(y) = sum_j y_j sum_p T[j, p] w_p y_k(p) y_m(p), w_p = 2 for
        k < m. None when D < 3.
    smallest_divisor : array, shape (m,)
        min |k . lambda - lambda_i| over 2 <= |k| <= D (1/time); inf when D = 1.
    status : int8 array, shape (m,)
        :class:`EigenfunctionStatus`.
    partner : int array, shape (m,)
        q' < q when mode q is the complex conjugate of expanded mode q' (psi_q = conj(psi_q') on
        real states, coefficients computed once), else -1.
    """

    network: Network
    center: np.ndarray
    jacobian_eigenvalues: np.ndarray
    modes: np.ndarray
    eigenvectors: np.ndarray
    rcond: float
    degree: int
    quadratic: np.ndarray | None
    cubic: np.ndarray | None
    smallest_divisor: np.ndarray
    status: np.ndarray
    partner: np.ndarray
    _lu: tuple = None  # (lu, piv) of V

    @property
    def eigenvalues(self) -> np.ndarray:
        """lambda_i of the expanded modes, shape (m,)."""
        return self.jacobian_eigenvalues[self.modes]

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """y = V^-1 (x - x*), shape (..., N) complex."""
        h = np.asarray(x, dtype=float) - self.center
        shape = h.shape
        y = lu_solve(self._lu, h.reshape(-1, shape[-1]).T.astype(self.eigenvectors.dtype))
        return y.T.reshape(shape).astype(complex)

    def _evaluate(self, x: np.ndarray, derivative: bool):
        """psi (P, m) and, if ``derivative``, grad psi . f (P, m) at points x (P, N)."""
        x = np.asarray(x, dtype=float)
        P, n = x.shape
        dtype = self.eigenvectors.dtype  # float64 when the spectrum is real: 4x cheaper products
        y = lu_solve(self._lu, (x - self.center).T.astype(dtype)).T  # (P, N)
        g = None
        if derivative:  # dy/dt = V^-1 f(x), exactly
            g = lu_solve(self._lu, self.network.vector_field(x).T.astype(dtype)).T
        psi = y[:, self.modes].copy()
        dpsi = g[:, self.modes].copy() if derivative else None
        if self.quadratic is not None:
            Cy = np.einsum("mjk,pk->pmj", self.quadratic, y)  # (P, m, N)
            psi += np.einsum("pmj,pj->pm", Cy, y)
            if derivative:
                dpsi += 2.0 * np.einsum("pmj,pj->pm", Cy, g)
        if self.cubic is not None:
            k, m, w = _pairs(n)
            chunk = max(1, (1 << 22) // k.size)  # bound the (points, pairs) temporaries
            for s in range(0, P, chunk):
                ys = y[s : s + chunk]
                yy = ys[:, k] * ys[:, m] * w  # (p, pairs)
                for q in range(self.modes.size):
                    if self.partner[q] >= 0:
                        continue
                    A = ys @ self.cubic[q]  # sum_j y_j T[j, :], (p, pairs)
                    psi[s : s + chunk, q] += np.einsum("pa,pa->p", A, yy)
                    if derivative:
                        gs = g[s : s + chunk]
                        gy = (gs[:, k] * ys[:, m] + ys[:, k] * gs[:, m]) * w
                        dpsi[s : s + chunk, q] += np.einsum("pa,pa->p", A, gy)
                        dpsi[s : s + chunk, q] += np.einsum("pa,pa->p", gs @ self.cubic[q], yy)
            for q in np.flatnonzero(self.partner >= 0):  # real states: psi_q = conj(psi_q')
                psi[:, q] = np.conj(psi[:, self.partner[q]])
                if derivative:
                    dpsi[:, q] = np.conj(dpsi[:, self.partner[q]])
        return psi.astype(complex), (dpsi.astype(complex) if derivative else None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """psi_i(x) for the expanded modes.

        Parameters
        ----------
        x : array, shape (..., N)

        Returns
        -------
        complex array, shape (..., m)
        """
        x = np.asarray(x, dtype=float)
        psi, _ = self._evaluate(x.reshape(-1, x.shape[-1]), derivative=False)
        return psi.reshape(*x.shape[:-1], self.modes.size)

    def generator_residual(self, x: np.ndarray) -> np.ndarray:
        """grad psi_i . f - lambda_i psi_i against the true vector field f.

        Parameters
        ----------
        x : array, shape (..., N)

        Returns
        -------
        complex array, shape (..., m)
            O(|x - x*|^(D+1)) for a correct expansion (non-resonant modes).
        """
        x = np.asarray(x, dtype=float)
        psi, dpsi = self._evaluate(x.reshape(-1, x.shape[-1]), derivative=True)
        return (dpsi - self.eigenvalues * psi).reshape(*x.shape[:-1], self.modes.size)

    def residual_order(self, directions: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Relative generator residual on a sphere around x*, and its order in the radius.

        With psi = O(r) and grad psi . f - lambda psi = O(r^(D+1)) on the sphere of radius r, the
        relative residual rms(grad psi . f - lambda psi) / rms(psi) falls like r^D: its log2 ratio
        at r and r/2 is ~D (D + 1 when the degree-(D+1) term of the residual vanishes on average).
        A wrong Taylor coefficient at degree d <= D leaves an O(r^d) residual, order d - 1.

        Parameters
        ----------
        directions : array, shape (M, N)
            Unit vectors (the residual is taken at x* + r u and x* + (r/2) u).
        radius : float
            r (state units).

        Returns
        -------
        residual : array, shape (m,)
            Relative rms residual at radius r (1/time).
        order : array, shape (m,)
            log2(residual(r) / residual(r/2)); NaN when the residual at r/2 is at the round-off
            floor 1e3 eps max(1, |J|_1) / rcond(V) (e.g. linear activation, where psi is exact),
            or the mode is not ok (resonant: no analytic eigenfunction need exist).
        """
        u = np.asarray(directions, dtype=float)
        rel = np.empty((2, self.modes.size))
        for s, scale in enumerate((1.0, 0.5)):
            x = self.center + scale * radius * u
            psi, dpsi = self._evaluate(x, derivative=True)
            num = np.sqrt(np.mean(np.abs(dpsi - self.eigenvalues * psi) ** 2, axis=0))
            rel[s] = num / np.sqrt(np.mean(np.abs(psi) ** 2, axis=0))
        J = self.network.jacobian(self.center)
        floor = 1e3 * _EPS * max(1.0, float(np.max(np.sum(np.abs(J), axis=0)))) / max(self.rcond, _EPS)
        with np.errstate(divide="ignore", invalid="ignore"):
            order = np.log2(rel[0] / rel[1])
        order = np.where((rel[1] > floor) & (self.status == EigenfunctionStatus.ok), order, np.nan)
        return rel[0], order

    def taylor_tensors(self, mode: int) -> list[np.ndarray]:
        """Symmetric Taylor tensors of psi in h = x - x*: psi = sum_d S_d[h, ..., h] (small N).

        Parameters
        ----------
        mode : int
            Position in ``modes``.

        Returns
        -------
        list of complex arrays, shapes (N,), (N, N), (N, N, N) up to ``degree``
        """
        n = self.center.size
        Vinv = lu_solve(self._lu, np.eye(n, dtype=self.eigenvectors.dtype))
        out = [Vinv[self.modes[mode]]]
        if self.quadratic is not None:
            out.append(Vinv.T @ self.quadratic[mode] @ Vinv)
        if self.cubic is not None:
            k, m, _ = _pairs(n)
            T = np.zeros((n, n, n), dtype=complex)
            T[:, k, m] = self.cubic[mode]
            T[:, m, k] = self.cubic[mode]
            S = np.einsum("jkm,ja,kb,mc->abc", T, Vinv, Vinv, Vinv)
            out.append(sum(S.transpose(p) for p in ((0, 1, 2), (1, 2, 0), (2, 0, 1))) / 3.0)
        return out

    def monomial_coefficients(self, mode: int, exponents: np.ndarray) -> np.ndarray:
        """Coefficients of psi on the monomials h^alpha (e.g. ``TaylorGenerator.exponents``).

        Parameters
        ----------
        mode : int
            Position in ``modes``.
        exponents : int array, shape (K, N)
            Multi-indices alpha with |alpha| <= degree.

        Returns
        -------
        complex array, shape (K,)
        """
        tensors = self.taylor_tensors(mode)
        out = np.zeros(exponents.shape[0], dtype=complex)
        for a, alpha in enumerate(np.asarray(exponents)):
            d = int(alpha.sum())
            if 1 <= d <= len(tensors):
                idx = tuple(np.repeat(np.arange(alpha.size), alpha))
                mult = factorial(d) / np.prod([factorial(int(v)) for v in alpha])
                out[a] = mult * tensors[d - 1][idx]
        return out


def _rcond(lu: np.ndarray, anorm: float) -> float:
    (gecon,) = get_lapack_funcs(("gecon",), (lu,))
    rc, info = gecon(lu, anorm, norm="1")
    return float(rc) if info == 0 else 0.0


def _divide(rhs: np.ndarray, divisor: np.ndarray, tol: float, smallest: float, status: int):
    """rhs / divisor in place, 0 where |divisor| <= tol (flagged resonant); updates the smallest divisor."""
    size = np.abs(divisor)
    low = float(size.min())
    if low <= tol:
        small = size <= tol
        rhs[small] = 0.0
        divisor[small] = 1.0
        status = int(EigenfunctionStatus.resonant)
    np.divide(rhs, divisor, out=rhs)
    return rhs, min(smallest, low), status


def _conjugate_permutation(lam: np.ndarray, V: np.ndarray) -> np.ndarray | None:
    """pi with lambda[pi] = conj(lambda) and V[:, pi] = conj(V) exactly (LAPACK's real-matrix pairs), or None."""
    perm = np.full(lam.size, -1, np.int64)
    conj = np.conj(lam)
    for j in range(lam.size):
        hits = np.flatnonzero(lam == conj[j])
        if hits.size != 1:
            return None
        perm[j] = hits[0]
    if not np.array_equal(V[:, perm], np.conj(V)):
        return None
    return perm


def _partners(modes: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    """For each expanded mode, the earlier expanded mode it is the complex conjugate of, else -1."""
    partner = np.full(modes.size, -1, np.int64)
    if perm is None:
        return partner
    where = {int(i): q for q, i in enumerate(modes)}
    for q, i in enumerate(modes):
        p = where.get(int(perm[i]), -1)
        if 0 <= p < q and perm[i] != i:
            partner[q] = p
    return partner


def principal_eigenfunctions(
    network: Network,
    x_star: np.ndarray,
    modes: int | np.ndarray = 3,
    degree: int = 3,
    small_divisor: float = 1e-8,
    conjugate_cubic: bool = True,
) -> PrincipalEigenfunctions:
    """Principal Koopman eigenfunctions psi_i = y_i + O(|y|^2) at a hyperbolic equilibrium, to degree D.

    Parameters
    ----------
    network : Network
        N units; any activation with Taylor coefficients (``sigma_taylor_coefficients``).
    x_star : array, shape (N,)
        Equilibrium (hyperbolic; f(x*) ~ 0).
    modes : int or int array
        The number m of slowest modes (by decreasing Re lambda, then Im lambda), or explicit indices
        into that order.
    degree : int
        D in {1, 2, 3}. Cost: one O(N^3) eigendecomposition, then O(N^3) per mode at D = 2 and
        O(N^4 / 2) per mode at D = 3 (memory N^3 / 2 complex per mode).
    small_divisor : float
        Divisors |k . lambda - lambda_i| (1/time) at or below small_divisor * max(1, |lambda|_max)
        count as resonant: their coefficients are set to 0 and the mode is flagged
        ``resonant`` (no inf). For a stable x* the bound |k . lambda - lambda_i| >= |k| r_1 - r_i
        (r = -Re lambda) keeps the slowest modes far from resonance whenever r_i < |k| r_1.
    conjugate_cubic : bool
        False: the degree-3 coefficients of a mode whose complex conjugate is expanded too
        (``partner`` >= 0) are not computed (NaN); evaluation and residuals, which use
        psi_q = conj(psi_q') on real states, are unaffected. Saves one O(N^4 / 2) product per pair.

    Returns
    -------
    PrincipalEigenfunctions
    """
    if degree not in (1, 2, 3):
        raise ValueError(f"degree must be 1, 2 or 3, got {degree}")
    x_star = np.asarray(x_star, dtype=float)
    n = network.n_units
    if x_star.shape != (n,):
        raise ValueError(f"x_star must have shape ({n},), got {x_star.shape}")
    J = network.jacobian(x_star)
    lam, V = np.linalg.eig(J)
    order = np.lexsort((-lam.imag, -lam.real))
    lam, V = lam[order].astype(complex), V[:, order].astype(complex)
    if np.all(lam.imag == 0):  # LAPACK gives exact zeros: real eigenvectors, real arithmetic (4x cheaper)
        V = V.real.copy()
    lam_d = lam.real if V.dtype.kind == "f" else lam  # divisors in the coefficients' dtype
    modes = np.arange(min(int(modes), n)) if np.ndim(modes) == 0 else np.asarray(modes, dtype=np.int64)
    m = modes.size
    lu = lu_factor(V, check_finite=False)
    rcond = _rcond(lu[0], float(np.max(np.sum(np.abs(V), axis=0))))
    status = np.zeros(m, np.int8)
    smallest = np.full(m, np.inf)
    quad = cubic = None
    if not rcond >= np.sqrt(_EPS):
        status[:] = EigenfunctionStatus.not_diagonalisable
        quad = np.full((m, n, n), np.nan, V.dtype) if degree >= 2 else None
        cubic = np.full((m, n, n * (n + 1) // 2), np.nan, V.dtype) if degree >= 3 else None
        return PrincipalEigenfunctions(network, x_star, lam, modes, V, rcond, degree, quad, cubic,
                                       np.full(m, np.nan), status, np.full(m, -1, np.int64), lu)
    tol = small_divisor * max(1.0, float(np.max(np.abs(lam))))
    a = sigma_taylor_coefficients(get_activation(network.activation), x_star, degree)  # (N, D+1)
    # left eigenvectors u_i^T = e_i^T V^-1 of the expanded modes, times W: (m, N)
    uW = lu_solve(lu, np.eye(n, dtype=V.dtype)[:, modes], trans=1).T @ network.W
    perm = _conjugate_permutation(lam, V)
    partner = _partners(modes, perm)
    if degree >= 2:
        quad = np.empty((m, n, n), dtype=V.dtype)
        div2 = lam_d[:, None] + lam_d[None, :]
        for q in range(m):
            if partner[q] >= 0:  # psi of conj(lambda_i) is conj(psi_i): coefficients permuted, conjugated
                quad[q] = np.conj(quad[partner[q]][np.ix_(perm, perm)])
                smallest[q], status[q] = smallest[partner[q]], status[partner[q]]
                continue
            rhs = V.T @ ((-uW[q] * a[:, 2])[:, None] * V)
            quad[q], smallest[q], status[q] = _divide(rhs, div2 - lam_d[modes[q]], tol, smallest[q], status[q])
    if degree >= 3:
        k, mm, _ = _pairs(n)
        cubic = np.empty((m, n, k.size), dtype=V.dtype)
        K = lu_solve(lu, network.W * a[:, 2])  # V^-1 W diag(a_2)
        KR = np.empty((n, k.size), dtype=V.dtype)  # V_lk V_lm over pairs k <= m, row-major like _pairs
        start = 0
        for j in range(n):  # contiguous blocks: ~10x faster than gathering columns
            KR[:, start : start + n - j] = V[:, j : j + 1] * V[:, j:]
            start += n - j
        div3 = np.add.outer(lam_d, lam_d[k] + lam_d[mm])
        d = np.empty_like(div3)  # reused across modes (fresh N^3/2 buffers cost page faults)
        for q in range(m):
            if partner[q] >= 0 and not conjugate_cubic:
                cubic[q] = np.nan
                smallest[q], status[q] = smallest[partner[q]], status[partner[q]]  # conjugate divisors
                continue
            # conjugate partners are recomputed: one product costs less than permuting N^3/2 entries
            D = -2.0 * quad[q] @ K - V.T * (uW[q] * a[:, 3])[None, :]
            np.matmul(D, KR, out=cubic[q])
            np.subtract(div3, lam_d[modes[q]], out=d)
            _, low, flag = _divide(cubic[q], d, tol, np.inf, 0)
            smallest[q] = min(smallest[q], low)
            status[q] = max(status[q], flag)
    return PrincipalEigenfunctions(network, x_star, lam, modes, V, rcond, degree, quad, cubic, smallest, status,
                                   partner, lu)
