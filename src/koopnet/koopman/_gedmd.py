"""Generator EDMD from the known vector field (Klus et al., Physica D 2020; SCIENCE.md 2d).

Least squares Psi L ~ dPsi over samples x_m, with dPsi = grad Psi . f evaluated exactly (no time
stepping, no finite differences). Eigenpairs (lambda, v) of L give eigenfunctions phi = Psi v; each is
scored on held-out points by the generator residual rms(U phi - lambda phi)/rms(phi) and flagged
spurious above a threshold. The fit works on the R factor of [Psi | dPsi] (one R-only QR), which
holds the least-squares problem and every residual norm (||[Psi | dPsi] w|| = ||R w||).

Two projections of U onto the dictionary's span are offered. ``galerkin`` is the L2 (sample) least
squares of Klus et al. ``taylor`` is the degree-triangular projection behind analytic EDMD (Mauroy &
Mezic, arXiv:2405.15945): for a monomial dictionary centred at an equilibrium c (f(c) = 0) the
Taylor series of U psi_beta at c has no terms of degree < |beta|, so U psi_beta is fitted by the
monomials of degree >= |beta| only. L is then block-triangular by degree like the Taylor generator,
its eigenvalues are those of its diagonal blocks (no spectral pollution between degrees), and the
principal ones come from the degree-1 block alone: a least-squares fit of f by monomials of degree
1..D. Its linear coefficients converge to the Jacobian much faster than the Galerkin eigenvalues
where f is close to a polynomial on the samples (the poster's bistable logistic network), slower
where f has nearby complex singularities (some tanh networks), and its eigenfunctions are
truncations that fail the held-out residual test at the box edge more often; ``galerkin`` stays
the default.
Everything is batched over a leading axis (networks); each network's arithmetic is independent of
the others, so batched and single results are bitwise identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..network import NetworkBatch
from ..simulate import TrajectoryStatus, integrate

__all__ = [
    "GedmdResult",
    "gedmd",
    "sample_box",
    "sample_basin",
    "sample_trajectories",
]


@dataclass(frozen=True, eq=False)
class GedmdResult:
    """gEDMD eigenpairs for B systems.

    Attributes
    ----------
    matrix : array, shape (B, K, K)
        L with Psi L ~ dPsi (the generator on the dictionary's span).
    eigenvalues : complex array, shape (B, K)
        Continuous-time eigenvalues (units 1/tau), slowest first (decreasing real part).
    eigenvectors : complex array, shape (B, K, K)
        Column k: coefficients v of phi_k = Psi v.
    residual : array, shape (B, K)
        rms_m |U phi_k - lambda_k phi_k| / rms_m |phi_k| on the held-out points (units 1/tau).
    spurious : bool array, shape (B, K)
        residual > threshold.
    rank : int array, shape (B,)
        Numerical rank of Psi on the training samples.
    """

    matrix: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residual: np.ndarray
    spurious: np.ndarray
    rank: np.ndarray
    dictionary: object = None

    def eigenfunction(self, x: np.ndarray, mode: int) -> np.ndarray:
        """phi_mode(x) = Psi(x) v_mode, shape (B, M) for x of shape (B, M, N)."""
        return np.einsum("bmk,bk->bm", self.dictionary.evaluate(x), self.eigenvectors[..., :, mode])


def gedmd(
    vector_field: Callable[[np.ndarray], np.ndarray],
    dictionary,
    samples: np.ndarray,
    test_samples: np.ndarray | None = None,
    spurious_threshold: float = 1e-2,
    rcond: float = 1e-13,
    projection: str = "galerkin",
) -> GedmdResult:
    """Generator EDMD with a known vector field.

    Parameters
    ----------
    vector_field : callable
        f, (B, M, N) -> (B, M, N) (e.g. ``NetworkBatch.vector_field``).
    dictionary : MonomialDictionary or GaussianRBFDictionary
        With ``evaluate`` and ``generator`` on (B, M, N) states.
    samples : array, shape (B, M, N)
        Training states.
    test_samples : array, shape (B, M', N), optional
        Held-out states for the residuals (default: the training states).
    spurious_threshold : float
        Residual (units 1/tau) above which an eigenpair is flagged spurious.
    rcond : float
        Relative singular-value cutoff of the least-squares solve.
    projection : {"galerkin", "taylor"}
        ``galerkin``: L = argmin ||Psi L - dPsi|| over the samples. ``taylor``: column beta of L
        fits dPsi_beta by the monomials of degree >= |beta| only (zero below), see the module
        docstring. ``taylor`` needs a dictionary with graded ``exponents`` (MonomialDictionary)
        centred at an equilibrium of f; a centre off the equilibrium biases the eigenvalues by
        about |f(c)| / scale. Its eigenfunctions are Taylor-type approximations: accurate near c,
        with larger held-out residuals towards the box edges than the Galerkin ones.

    Returns
    -------
    GedmdResult
    """
    if projection not in ("galerkin", "taylor"):
        raise ValueError("projection must be 'galerkin' or 'taylor'")
    if projection == "taylor" and not hasattr(dictionary, "exponents"):
        raise ValueError("projection='taylor' needs a monomial dictionary (graded exponents)")
    X = np.asarray(samples, dtype=float)
    # [Psi | dPsi] = Q R: the least-squares problem and all residual norms live in the small R
    R = _aug_r(dictionary, vector_field, X)
    K = R.shape[-1] // 2
    # rows >= K of R's Psi block are zero: the fits need only the leading K rows
    A, Bm = R[..., :K, :K], R[..., :K, K:]
    if projection == "galerkin":
        L, rank = _lstsq(A, Bm, rcond)
    else:
        L, rank = _taylor_projection(A, Bm, np.asarray(dictionary.exponents).sum(axis=-1), rcond)
    ev, vec = np.linalg.eig(L)
    order = np.lexsort((-ev.imag, -ev.real), axis=-1)
    ev = np.take_along_axis(ev, order, axis=-1)
    vec = np.take_along_axis(vec, order[..., None, :], axis=-1)
    Rt = R if test_samples is None else _aug_r(dictionary, vector_field, np.asarray(test_samples, dtype=float))
    # ||dPsi v - lambda Psi v|| = ||Rt [-lambda v; v]||, ||Psi v|| = ||Rt[:, :K] v|| (same 1/sqrt(M) factor)
    w = np.concatenate([-ev[..., None, :] * vec, vec], axis=-2)  # (B, 2K, K)
    num = np.linalg.norm(_real_matmul(Rt, w), axis=-2)
    den = np.linalg.norm(_real_matmul(Rt[..., :K], vec), axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.where(den > 0, num / den, np.inf)
    res = np.where(np.isfinite(res), res, np.inf)
    return GedmdResult(
        matrix=L,
        eigenvalues=ev,
        eigenvectors=vec,
        residual=res,
        spurious=res > spurious_threshold,
        rank=rank,
        dictionary=dictionary,
    )


def _lstsq(A: np.ndarray, B: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-norm X = argmin ||A X - B|| by a truncated SVD, batched.

    A of shape (..., P, k), B of shape (..., P, q); returns X (..., k, q) and the rank (...).
    """
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    keep = s > rcond * s[..., :1]
    inv_s = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    X = np.swapaxes(Vh, -1, -2) @ (inv_s[..., :, None] * (np.swapaxes(U, -1, -2) @ B))
    return X, keep.sum(axis=-1)


def _taylor_projection(A: np.ndarray, B: np.ndarray, degree: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray]:
    """Degree-triangular L: column beta fits B[:, beta] by the columns of A of degree >= |beta|.

    One QR of A with its columns in decreasing degree makes every fit a leading triangular solve
    (the columns of degree >= d come first). Systems whose triangular factor is numerically
    singular fall back to a truncated-SVD fit per degree.

    Parameters
    ----------
    A, B : arrays, shape (..., P, K)
        R-factor blocks of Psi and dPsi (or Psi and dPsi themselves).
    degree : int array, shape (K,)
        Total degree of each dictionary function.
    rcond : float
        Relative cutoff (singular values, and the diagonal of the triangular factor).

    Returns
    -------
    L : array, shape (..., K, K)
        L[alpha, beta] = 0 whenever |alpha| < |beta|.
    rank : int array, shape (...)
        Numerical rank of the whole of A.
    """
    K = degree.size
    if A.shape[-2] < K:  # fewer rows than functions: no square triangular factor
        rank = np.linalg.matrix_rank(A, rtol=rcond)
        regular = np.zeros(A.shape[:-2], dtype=bool)
        L = np.zeros((*A.shape[:-2], K, K))
    else:
        order = np.argsort(-degree, kind="stable")  # decreasing degree
        Q, T = np.linalg.qr(A[..., order])
        C = np.swapaxes(Q, -1, -2) @ B  # row j pairs with column order[j] of A
        sv = np.linalg.svd(T, compute_uv=False)  # the singular values of A
        rank = np.sum(sv > rcond * sv[..., :1], axis=-1)
        # allowed[i, beta]: reordered function i may appear in U psi_beta (degree >= |beta|)
        allowed = degree[order][:, None] >= degree[None, :]
        regular = rank == K  # one criterion for the rank reported and the solver used
        T = np.where(regular[..., None, None], T, np.eye(K))
        # the leading k x k block of T^-1 is the inverse of T's leading block, so one product holds
        # every nested triangular solve once the rows a column may not use are zeroed
        L_o = np.where(allowed, np.linalg.inv(T) @ np.where(allowed, C, 0.0), 0.0)
        L = np.empty_like(L_o)
        L[..., order, :] = L_o
    if not regular.all():  # numerically singular factor: truncated-SVD fit per degree
        idx = np.flatnonzero(~regular.reshape(-1))
        Af, Bf = A.reshape(-1, *A.shape[-2:])[idx], B.reshape(-1, *B.shape[-2:])[idx]
        Lf = np.zeros((idx.size, K, K))
        for d in np.unique(degree):
            cols, beta = np.flatnonzero(degree >= d), np.flatnonzero(degree == d)
            Lf[:, cols[:, None], beta[None, :]] = _lstsq(Af[..., cols], Bf[..., beta], rcond)[0]
        flat = L.reshape(-1, K, K).copy()
        flat[idx] = Lf
        L = flat.reshape(L.shape)
    return L, rank


def _aug_r(dictionary, vector_field, X):
    """R factor of [Psi(X) | dPsi(X)], shape (B, min(M, 2K), 2K)."""
    fx = vector_field(X)
    if hasattr(dictionary, "values_and_generator"):  # one pass, values shared with the product rule
        aug = dictionary.values_and_generator(X, fx)
    else:
        aug = np.concatenate([dictionary.evaluate(X), dictionary.generator(X, fx)], axis=-1)
    return np.linalg.qr(aug, mode="r")


def _real_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for real a and complex b without upcasting a."""
    return (a @ b.real) + 1j * (a @ b.imag)


def sample_box(rng: np.random.Generator, center: np.ndarray, half_width: float | np.ndarray, n: int) -> np.ndarray:
    """n states uniform in the box center +- half_width, shape (n, N)."""
    center = np.asarray(center, dtype=float)
    return center + np.asarray(half_width) * rng.uniform(-1.0, 1.0, size=(int(n), center.size))


def sample_basin(
    batch: NetworkBatch,
    candidates: np.ndarray,
    target: np.ndarray,
    t_final: float = 40.0,
    tol: float = 1e-3,
) -> np.ndarray:
    """Which candidate states are attracted to ``target`` (integrated with :func:`koopnet.simulate.integrate`).

    Parameters
    ----------
    batch : NetworkBatch
        B networks.
    candidates : array, shape (B, M, N)
    target : array, shape (B, N)
        Stable equilibrium of each network.
    t_final : float
        Integration horizon (units of tau).
    tol : float
        A state counts as attracted when it ends within ``tol (1 + |target|_inf)`` (max-norm) of the
        target without diverging.

    Returns
    -------
    bool array, shape (B, M)
    """
    traj = integrate(batch, np.asarray(candidates, dtype=float), float(t_final))
    target = np.asarray(target, dtype=float)
    with np.errstate(invalid="ignore"):
        d = np.max(np.abs(traj.x_final - target[:, None, :]), axis=-1)
    scale = 1.0 + np.max(np.abs(target), axis=-1, keepdims=True)
    return (traj.status != TrajectoryStatus.diverged) & np.isfinite(d) & (d < tol * scale)


def sample_trajectories(batch: NetworkBatch, initial: np.ndarray, dt: float, n_per_trajectory: int) -> np.ndarray:
    """States recorded every ``dt`` along trajectories (integrated with :func:`koopnet.simulate.integrate`).

    Parameters
    ----------
    batch : NetworkBatch
        B networks.
    initial : array, shape (B, M, N)
    dt : float
        Time between recorded states (units of tau).
    n_per_trajectory : int
        Recorded states per trajectory (including the initial one).

    Returns
    -------
    array, shape (B, M * n_per_trajectory, N)
        Trajectory by trajectory; NaN after a divergence.
    """
    times = dt * np.arange(int(n_per_trajectory))
    traj = integrate(batch, np.asarray(initial, dtype=float), float(times[-1]), t_eval=times)
    x = traj.x_eval  # (B, M, T, N)
    return x.reshape(x.shape[0], -1, x.shape[-1])
