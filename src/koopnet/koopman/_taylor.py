"""Taylor coefficients of the activations, the Koopman lattice and the Taylor (Carleman) generator.

At an equilibrium x* with Jacobian eigenvalues lambda_i, the generator restricted to monomials
h^alpha = (x - x*)^alpha of total degree <= D is block-triangular by degree (f(x*) = 0): its eigenvalues
are exactly the lattice {k . lambda : |k| <= D} and its eigenvectors are the Taylor coefficients, up to
degree D, of the eigenfunctions (non-resonant case) (SCIENCE.md 2d).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np

from ..activations import Activation, get_activation
from ..network import Network
from ._common import match_eigenvalues, multi_indices, sort_eigenvalues

__all__ = [
    "sigma_taylor_coefficients",
    "koopman_lattice",
    "TaylorGenerator",
    "taylor_generator",
]


def sigma_taylor_coefficients(activation: str | Activation, x0: np.ndarray, degree: int) -> np.ndarray:
    """Taylor coefficients a_k = sigma^(k)(x0)/k!, k = 0..degree, exactly (no finite differences).

    logistic: sigma' = sigma (1 - sigma), so (k+1) a_{k+1} = a_k - sum_{i<=k} a_i a_{k-i};
    tanh: sigma' = 1 - sigma^2, so (k+1) a_{k+1} = [k = 0] - sum_{i<=k} a_i a_{k-i};
    polynomial activations: binomial re-expansion a_k = sum_n c_n C(n, k) x0^(n-k).

    Parameters
    ----------
    activation : str or Activation
    x0 : array, shape S
        Expansion points (real or complex).
    degree : int

    Returns
    -------
    array, shape (*S, degree + 1)
    """
    act = get_activation(activation)
    x0 = np.asarray(x0)
    dtype = np.result_type(x0, float)
    a = np.zeros((*x0.shape, degree + 1), dtype=dtype)
    if act.polynomial is not None:
        c = act.polynomial
        for k in range(degree + 1):
            for n in range(k, len(c)):
                a[..., k] = a[..., k] + c[n] * comb(n, k) * x0 ** (n - k)
        return a
    if act.name == "logistic":
        a[..., 0] = act.sigma(x0)
        for k in range(degree):
            conv = np.sum(a[..., : k + 1] * a[..., k::-1], axis=-1)
            a[..., k + 1] = (a[..., k] - conv) / (k + 1)
        return a
    if act.name == "tanh":
        a[..., 0] = np.tanh(x0)
        for k in range(degree):
            conv = np.sum(a[..., : k + 1] * a[..., k::-1], axis=-1)
            a[..., k + 1] = ((1.0 if k == 0 else 0.0) - conv) / (k + 1)
        return a
    raise ValueError(f"no Taylor recurrence for activation {act.name!r}")


def koopman_lattice(
    principal_eigenvalues: np.ndarray, order: int, max_modes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The lattice {k . lambda : k in N^N, 1 <= |k| <= order}, slowest first.

    Parameters
    ----------
    principal_eigenvalues : complex array, shape (N,)
        lambda_i (units 1/tau).
    order : int
        Maximal |k|.
    max_modes : int, optional
        Keep only the first ``max_modes`` values by decreasing real part. They are found without
        enumerating all C(N + order, order) multi-indices: the leading values of degree d are sums of
        leading values of degree d - 1 and leading lambda_i.

    Returns
    -------
    values : complex array, shape (L,)
        Sorted by decreasing real part (then imaginary part); multiplicities kept.
    degree : int array, shape (L,)
        |k| of each value.
    """
    lam = sort_eigenvalues(np.asarray(principal_eigenvalues, dtype=complex))
    n = lam.size
    K = max_modes if max_modes is not None else None
    lead = lam if K is None else lam[:K]
    idx_lead = np.arange(lead.size)
    # multi-indices as (count, n) int arrays; start at degree 1
    level = np.eye(n, dtype=np.int64)[idx_lead]
    all_k = [level]
    for _ in range(1, order):
        cand = (level[:, None, :] + np.eye(n, dtype=np.int64)[idx_lead][None, :, :]).reshape(-1, n)
        cand = np.unique(cand, axis=0)
        if K is not None and cand.shape[0] > K:
            vals = cand @ lam
            cand = cand[np.lexsort((-vals.imag, -vals.real))[:K]]
        level = cand
        all_k.append(level)
    ks = np.concatenate(all_k, axis=0)
    vals = ks @ lam
    order_idx = np.lexsort((ks.sum(axis=1), -vals.imag, -vals.real))
    if K is not None:
        order_idx = order_idx[:K]
    return vals[order_idx], ks.sum(axis=1)[order_idx]


@lru_cache(maxsize=32)
def _generator_structure(n: int, degree: int):
    """Sparsity pattern of the Taylor generator on monomials of degree <= D (cached per (N, D))."""
    alpha = multi_indices(n, degree)  # (K, n)
    base = degree + 1
    if n * np.log2(base) > 62:
        raise ValueError("too many units for the Taylor generator index encoding")
    weights = base ** np.arange(n, dtype=np.int64)
    codes = alpha @ weights
    sorter = np.argsort(codes)
    K = alpha.shape[0]
    a_idx, i_idx, j_idx, k_idx = np.meshgrid(
        np.arange(K), np.arange(n), np.arange(n), np.arange(degree + 1), indexing="ij"
    )
    a_idx, i_idx, j_idx, k_idx = (v.ravel() for v in (a_idx, i_idx, j_idx, k_idx))
    keep = alpha[a_idx, i_idx] >= 1
    keep &= (k_idx >= 1) | (j_idx == 0)  # the constant term f_i(x*) once per (a, i)
    a_idx, i_idx, j_idx, k_idx = a_idx[keep], i_idx[keep], j_idx[keep], k_idx[keep]
    beta = alpha[a_idx].copy()
    beta[np.arange(beta.shape[0]), i_idx] -= 1
    beta[np.arange(beta.shape[0]), j_idx] += k_idx
    ok = beta.sum(axis=1) <= degree
    a_idx, i_idx, j_idx, k_idx, beta = a_idx[ok], i_idx[ok], j_idx[ok], k_idx[ok], beta[ok]
    pos = np.searchsorted(codes, beta @ weights, sorter=sorter)
    b_idx = sorter[pos]
    mult = alpha[a_idx, i_idx].astype(float)
    return alpha, a_idx, b_idx, i_idx, j_idx, k_idx, mult


@dataclass(frozen=True, eq=False)
class TaylorGenerator:
    """Taylor (Carleman) generator of degree D at one or several equilibria.

    Attributes
    ----------
    center : array, shape (E, N)
        Equilibria x*.
    exponents : int array, shape (K, N)
        Monomials h^alpha, h = x - x*, graded by degree (row 0 is the constant).
    matrix : array, shape (E, K, K)
        U h^alpha_a = sum_b matrix[e, b, a] h^alpha_b (truncated at degree D).
    eigenvalues : complex array, shape (E, K)
        Eigenvalues of ``matrix``, slowest first.
    eigenvectors : complex array, shape (E, K, K)
        Column m = Taylor coefficients of the eigenfunction of eigenvalue m.
    principal_eigenvalues : complex array, shape (E, N)
        Eigenvalues of the Jacobian J(x*) (the degree-1 block), slowest first.
    lattice : complex array, shape (E, K)
        {k . lambda : |k| <= D} (including 0), in the order of ``exponents``.
    lattice_error : array, shape (E,)
        Largest distance in an optimal matching between ``eigenvalues`` and ``lattice``.
    """

    center: np.ndarray
    exponents: np.ndarray
    matrix: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    principal_eigenvalues: np.ndarray
    lattice: np.ndarray
    lattice_error: np.ndarray

    def eigenfunction(self, x: np.ndarray, mode: int, equilibrium: int = 0) -> np.ndarray:
        """Polynomial eigenfunction sum_a c_a (x - x*)^alpha_a.

        Parameters
        ----------
        x : array, shape (..., N)
        mode : int
            Column of ``eigenvectors``.
        equilibrium : int

        Returns
        -------
        complex array, shape (...)
        """
        h = np.asarray(x) - self.center[equilibrium]
        mono = np.prod(h[..., None, :] ** self.exponents, axis=-1)  # (..., K)
        return mono @ self.eigenvectors[equilibrium, :, mode]

    def principal_modes(self, equilibrium: int = 0) -> np.ndarray:
        """Columns of ``eigenvectors`` whose eigenvalues match the principal eigenvalues, shape (N,)."""
        _, idx = match_eigenvalues(self.principal_eigenvalues[equilibrium], self.eigenvalues[equilibrium])
        return idx

    def as_eigenfunction(self, mode: int, equilibrium: int = 0):
        """Callable x -> eigenfunction with ``eigenvalue`` (an approximation near x*, for :func:`residuals`)."""

        def psi(x):
            return self.eigenfunction(x, mode, equilibrium)

        psi.eigenvalue = complex(self.eigenvalues[equilibrium, mode])  # type: ignore[attr-defined]
        return psi


def _taylor_matrices(W, theta, activation, x_star, degree, vectors: bool = False):
    """Taylor generator matrices for P (network, equilibrium) pairs, batched.

    Parameters
    ----------
    W : array, shape (P, N, N)
    theta : array, shape (P, N)
    activation : Activation or str
    x_star : array, shape (P, N)
    degree : int

    Returns
    -------
    eigenvalues : complex array, shape (P, K), slowest first
    exponents : int array, shape (K, N)
    (matrix (P, K, K), eigenvectors (P, K, K), jacobian (P, N, N)) if ``vectors``
    """
    P, n = x_star.shape
    alpha, a_idx, b_idx, i_idx, j_idx, k_idx, mult = _generator_structure(n, int(degree))
    K = alpha.shape[0]
    coef = sigma_taylor_coefficients(activation, x_star, degree)  # (P, N, D+1)
    F = W[:, :, :, None] * coef[:, None, :, :]  # (P, i, j, k)
    F[:, np.arange(n), np.arange(n), 1] -= 1.0
    sig0 = coef[:, :, 0]
    F[:, :, 0, 0] = -x_star + np.einsum("pij,pj->pi", W, sig0) + theta  # f_i(x*) (~0)
    vals = mult[None, :] * F[:, i_idx, j_idx, k_idx]  # (P, nnz)
    flat = (np.arange(P)[:, None] * K * K + b_idx[None, :] * K + a_idx[None, :]).ravel()
    M = np.bincount(flat, weights=vals.ravel(), minlength=P * K * K).reshape(P, K, K)
    if not vectors:
        ev = np.linalg.eigvals(M)
        return sort_eigenvalues(ev), alpha
    ev, vec = np.linalg.eig(M)
    order = np.lexsort((-ev.imag, -ev.real), axis=-1)
    ev = np.take_along_axis(ev, order, axis=-1)
    vec = np.take_along_axis(vec, order[:, None, :], axis=-1)
    return ev, alpha, (M, vec, F[:, :, :, 1])


def taylor_generator(network: Network, x_star: np.ndarray, degree: int) -> TaylorGenerator:
    """Taylor generator of degree D at equilibria of one network.

    Parameters
    ----------
    network : Network
    x_star : array, shape (N,) or (E, N)
        Equilibria (f(x*) should vanish; its residual is kept as the constant term).
    degree : int
        D >= 1. The matrix has C(N + D, D) rows.

    Returns
    -------
    TaylorGenerator
    """
    x_star = np.atleast_2d(np.asarray(x_star, dtype=float))
    E, n = x_star.shape
    W = np.broadcast_to(network.W, (E, n, n))
    theta = np.broadcast_to(network.theta, (E, n))
    ev, alpha, (M, vec, J) = _taylor_matrices(W, theta, network.activation, x_star, degree, vectors=True)
    lam = sort_eigenvalues(np.linalg.eigvals(J))
    lattice = alpha @ lam.T  # (K, E)
    lattice = lattice.T
    err = np.array([np.max(match_eigenvalues(lattice[e], ev[e])[0]) for e in range(E)])
    return TaylorGenerator(
        center=x_star,
        exponents=alpha,
        matrix=M,
        eigenvalues=ev,
        eigenvectors=vec,
        principal_eigenvalues=lam,
        lattice=lattice,
        lattice_error=err,
    )


def taylor_principal_residuals(
    W: np.ndarray,
    theta: np.ndarray,
    activation: str | Activation,
    x_star: np.ndarray,
    principal_eigenvalues: np.ndarray,
    degree: int,
    directions: np.ndarray,
    radius: float,
    matrices: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generator residual of the principal Taylor eigenfunctions near x*, and its order in the radius.

    The degree-D Taylor eigenfunction psi of the principal eigenvalue lambda satisfies
    grad psi . f - lambda psi = O(|h|^(D+1)) with psi = O(|h|), h = x - x*, for the *true* vector
    field f, so the relative residual on a sphere of radius r falls like r^D: halving r divides it
    by ~2^D. Wrong Taylor coefficients of sigma or a wrong assembly of the generator at order
    k <= D show up as a smaller order. This checks the generator against f itself, unlike the
    lattice of its eigenvalues (which is exact by construction).

    Parameters
    ----------
    W : array, shape (P, N, N)
    theta : array, shape (P, N)
    activation : str or Activation
    x_star : array, shape (P, N)
        Equilibria (hyperbolic).
    principal_eigenvalues : complex array, shape (P, N)
        Jacobian eigenvalues at x_star (1/time).
    degree : int
    directions : array, shape (P, M, N)
        Unit vectors; the residual is taken at x* + r u and x* + (r/2) u.
    radius : float
        r (state units).
    matrices : tuple, optional
        ``_taylor_matrices(W, theta, activation, x_star, degree, vectors=True)`` if already computed.

    Returns
    -------
    residual : array, shape (P,)
        Largest, over the principal eigenfunctions, relative rms residual
        rms(grad psi . f - lambda psi) / rms(psi) at radius r (dimensionless x 1/time).
    order : array, shape (P,)
        log2(residual(r) / residual(r/2)), same maximising eigenfunction; ~D when the generator
        is right. NaN when the residual at r/2 is at round-off (<= 1e-13, e.g. linear
        activations) or the principal eigenvalues are resonant (lambda_i = k . lambda with
        2 <= |k| <= D: no analytic eigenfunction need exist, the order drops honestly). Both
        outputs are NaN when principal eigenvalues repeat (e.g. feedforward J = -I + nilpotent:
        the computed eigenvectors do not span the Jordan block, the check would be blind).
    """
    act = get_activation(activation)
    if matrices is None:
        matrices = _taylor_matrices(W, theta, act, x_star, degree, vectors=True)
    ev, alpha, (_, vec, _) = matrices
    n = alpha.shape[1]
    # d/dh_i h^alpha = alpha_i h^(alpha - e_i): exponents lowered by one in unit i, (N, K, N)
    lowered = np.maximum(alpha[None, :, :] - np.eye(n, dtype=alpha.dtype)[:, None, :], 0)
    P = x_star.shape[0]
    residual = np.full(P, np.nan)
    order = np.full(P, np.nan)
    for p in range(P):  # few equilibria per job; the work per pair is vectorised
        _, modes = match_eigenvalues(principal_eigenvalues[p], ev[p])
        rel = np.empty((2, modes.size))
        for s_i, scale in enumerate((1.0, 0.5)):
            h = scale * radius * directions[p]  # (M, N)
            x = x_star[p] + h
            f = -x + act.sigma(x) @ W[p].T + theta[p]
            mono = np.prod(h[:, None, :] ** alpha[None], axis=-1)  # (M, K)
            grad = alpha.T[None] * np.prod(h[:, None, None, :] ** lowered[None], axis=-1)  # (M, N, K)
            C = vec[p][:, modes]  # (K, n_principal)
            psi = mono @ C
            lpsi = (f[:, :, None] * grad).sum(axis=1) @ C  # grad psi . f
            num = np.sqrt(np.mean(np.abs(lpsi - ev[p][modes] * psi) ** 2, axis=0))
            rel[s_i] = num / np.sqrt(np.mean(np.abs(psi) ** 2, axis=0))
        worst = int(np.argmax(rel[0]))
        lam = principal_eigenvalues[p]
        tol = 1e-6 * max(1.0, float(np.max(np.abs(lam))))
        if np.any(np.abs(lam[:, None] - lam[None, :])[~np.eye(n, dtype=bool)] <= tol):
            continue  # repeated (e.g. defective) eigenvalues: the eigenvectors do not span the check
        residual[p] = rel[0, worst]
        higher = alpha[alpha.sum(axis=1) >= 2] @ lam  # k . lambda, 2 <= |k| <= D
        resonant = np.any(np.abs(lam[:, None] - higher[None, :]) <= tol)
        if rel[1, worst] > 1e-13 and not resonant:
            order[p] = np.log2(rel[0, worst] / rel[1, worst])
    return residual, order
