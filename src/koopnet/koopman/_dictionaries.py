"""Dictionaries for generator EDMD: values Psi(x) and generator images dPsi(x) = grad Psi(x) . f(x).

All dictionaries work on batches: states x of shape (..., M, N) (e.g. (B, M, N) for B networks)
with per-network centres and scales broadcast over the leading axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import multi_indices

__all__ = ["MonomialDictionary", "GaussianRBFDictionary"]


def _excl_prod(G: np.ndarray) -> np.ndarray:
    """prod_{l != n} G[..., l] for every n, without division (shape of G)."""
    ones = np.ones_like(G[..., :1])
    left = np.cumprod(np.concatenate([ones, G[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, G[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return left * right


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

    def _powers(self, x):
        z = (np.asarray(x) - np.asarray(self.center)) / np.asarray(self.scale)
        p = np.arange(self.degree + 1)
        P = z[..., None] ** p  # (..., M, N, D+1)
        dP = np.zeros_like(P)
        dP[..., 1:] = p[1:] * P[..., :-1]
        dP = dP / np.asarray(self.scale)[..., None] if np.ndim(self.scale) else dP / self.scale
        return P, dP

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Psi(x), shape (..., M, K) for x of shape (..., M, N)."""
        P, _ = self._powers(x)
        alpha = self.exponents
        G = P[..., np.arange(self.n_units)[None, :], alpha]  # (..., M, K, N)
        return np.prod(G, axis=-1)

    def generator(self, x: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """dPsi(x) = grad Psi(x) . f(x), shape (..., M, K) (units 1/tau).

        Parameters
        ----------
        x, fx : arrays, shape (..., M, N)
            States and the vector field there.
        """
        P, dP = self._powers(x)
        alpha = self.exponents
        cols = np.arange(self.n_units)[None, :]
        G = P[..., cols, alpha]
        Gd = dP[..., cols, alpha]
        return np.sum(Gd * _excl_prod(G) * np.asarray(fx)[..., None, :], axis=-1)


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
