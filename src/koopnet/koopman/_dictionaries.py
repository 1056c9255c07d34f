"""Dictionaries for generator EDMD: values Psi(x) and generator images dPsi(x) = grad Psi(x) . f(x).

All dictionaries work on batches: states x of shape (..., M, N) (e.g. (B, M, N) for B networks)
with per-network centres and scales broadcast over the leading axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._common import multi_indices

__all__ = ["MonomialDictionary", "GaussianRBFDictionary"]


@dataclass(frozen=True, eq=False)
class MonomialDictionary:
    """Monomials prod_n ((x_n - c_n)/s_n)^alpha_n of total degree <= D.

    Parameters
    ----------
    n_units : int
        N.
    degree : int
        D; the dictionary has C(N + D, D) functions (row 0 of ``exponents`` is the constant).
    center : array, shape (..., N)
        c (state units), broadcast against the leading axes of x (e.g. (B, 1, N) per network).
    scale : array or float, shape (..., N)
        s > 0 (state units), e.g. the half-width of the sampling box.
    """

    n_units: int
    degree: int
    center: np.ndarray
    scale: np.ndarray | float = 1.0

    @property
    def exponents(self) -> np.ndarray:
        """Multi-indices alpha, shape (K, N)."""
        return multi_indices(self.n_units, self.degree)

    @property
    def size(self) -> int:
        """K, number of dictionary functions."""
        return self.exponents.shape[0]

    def _scaled(self, x):
        scale = np.asarray(self.scale, dtype=float)
        z = (np.asarray(x) - np.asarray(self.center)) / scale
        inv_s = np.broadcast_to(1.0 / scale, z.shape[-1:]) if scale.ndim <= 1 else 1.0 / scale
        return z, inv_s

    def _build(self, x, fx=None):
        """Columns by the graded recursion psi_alpha = psi_parent * z_n (and its product rule).

        Returns (K, ..., M) values, or (2K, ..., M) values then generator images when fx is given.
        """
        z, inv_s = self._scaled(x)
        parent, var = _monomial_tree(self.n_units, self.degree)
        K = parent.size
        lead = z.shape[:-1]
        out = np.empty((K if fx is None else 2 * K, *lead), dtype=z.dtype)
        vals = out[:K]
        vals[0] = 1.0
        zt = np.moveaxis(z, -1, 0)  # (N, ..., M)
        if fx is not None:
            rate = np.moveaxis(np.asarray(fx) * inv_s, -1, 0)  # dz_n/dt, (N, ..., M)
            ders = out[K:]
            ders[0] = 0.0
        # one degree at a time: the parents of degree d functions all have degree d - 1
        bounds = np.searchsorted(self.exponents.sum(axis=1), np.arange(1, self.degree + 2))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            p, n = parent[lo:hi], var[lo:hi]
            vals[lo:hi] = vals[p] * zt[n]
            if fx is not None:
                ders[lo:hi] = ders[p] * zt[n] + vals[p] * rate[n]
        return out

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Psi(x), shape (..., M, K) for x of shape (..., M, N)."""
        return np.moveaxis(self._build(x), 0, -1).copy()

    def generator(self, x: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """dPsi(x) = grad Psi(x) . f(x), shape (..., M, K) (units 1/tau).

        Parameters
        ----------
        x, fx : arrays, shape (..., M, N)
            States and the vector field there.
        """
        return np.moveaxis(self._build(x, fx)[self.size :], 0, -1).copy()

    def values_and_generator(self, x: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """[Psi(x) | dPsi(x)] in one pass of the recursion, shape (..., M, 2K).

        The result is a view whose (M, 2K) matrices are column-major (what LAPACK takes).
        """
        return np.moveaxis(self._build(x, fx), 0, -1)


@lru_cache(maxsize=64)
def _monomial_tree(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """For each graded multi-index alpha (|alpha| >= 1): parent index alpha - e_n and n (first nonzero)."""
    alpha = multi_indices(n, degree)
    index = {tuple(a): k for k, a in enumerate(alpha)}
    parent = np.zeros(alpha.shape[0], dtype=np.int64)
    var = np.zeros(alpha.shape[0], dtype=np.int64)
    for k in range(1, alpha.shape[0]):
        v = int(np.flatnonzero(alpha[k])[0])
        b = alpha[k].copy()
        b[v] -= 1
        parent[k], var[k] = index[tuple(b)], v
    return parent, var


@dataclass(frozen=True, eq=False)
class GaussianRBFDictionary:
    """Gaussian radial basis functions exp(-|x - c_j|^2 / (2 eps^2)), optionally with affine terms.

    Scales to many units: the size is the number of centres (plus N + 1), not exponential in N.

    Parameters
    ----------
    centers : array, shape (..., C, N)
        RBF centres (state units), e.g. (B, C, N) per network.
    width : float or array broadcastable to (..., 1, 1)
        eps (state units).
    affine_center : array, shape (..., N), optional
        If given, the functions 1 and (x_n - a_n)/affine_scale are prepended (they carry the
        constant eigenfunction and the principal directions).
    affine_scale : float
    """

    centers: np.ndarray
    width: float | np.ndarray
    affine_center: np.ndarray | None = None
    affine_scale: float | np.ndarray = 1.0

    @property
    def size(self) -> int:
        c = np.asarray(self.centers).shape
        return c[-2] + (c[-1] + 1 if self.affine_center is not None else 0)

    def _rbf(self, x):
        x = np.asarray(x)
        c = np.asarray(self.centers)
        diff = x[..., :, None, :] - c[..., None, :, :]  # (..., M, C, N)
        eps2 = np.asarray(self.width, dtype=float) ** 2
        eps2 = eps2[..., None, None] if np.ndim(eps2) else eps2
        phi = np.exp(-np.sum(diff * diff, axis=-1) / (2.0 * eps2))
        return diff, phi, eps2

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Psi(x), shape (..., M, K)."""
        _, phi, _ = self._rbf(x)
        if self.affine_center is None:
            return phi
        x = np.asarray(x)
        lin = (x - np.asarray(self.affine_center)) / np.asarray(self.affine_scale)
        return np.concatenate([np.ones_like(x[..., :1]), lin, phi], axis=-1)

    def generator(self, x: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """dPsi(x) = grad Psi(x) . f(x), shape (..., M, K)."""
        diff, phi, eps2 = self._rbf(x)
        fx = np.asarray(fx)
        dphi = -phi * np.sum(diff * fx[..., :, None, :], axis=-1) / eps2
        if self.affine_center is None:
            return dphi
        dlin = fx / np.asarray(self.affine_scale)
        return np.concatenate([np.zeros_like(fx[..., :1]), dlin, dphi], axis=-1)
