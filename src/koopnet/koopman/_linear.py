"""Exact Koopman eigenfunctions of the linear recurrent network (SCIENCE.md 2a).

With sigma(x) = 1/2 + x/4 the vector field is affine, f(x) = A x + b with A = W/4 - I and
b = W 1/2 + theta. Writing W = P Lambda P^-1 and z = P^-1 (A x + b), dz/dt = (Lambda/4 - I) z, so
psi_mu(x) = prod_i z_i^mu_i is an eigenfunction with eigenvalue sum_i (Lambda_ii/4 - 1) mu_i for every
mu in C^N (principal branch of the complex power).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network import Network

__all__ = ["LinearFamily", "linear_family"]


@dataclass(frozen=True, eq=False)
class LinearFamily:
    """Eigenfunctions psi_mu of one linear network.

    Attributes
    ----------
    A : array, shape (N, N)
        W/4 - I (the constant Jacobian).
    b : array, shape (N,)
        W 1/2 + theta.
    weight_eigenvalues : complex array, shape (N,)
        Lambda, eigenvalues of W.
    P, P_inv : complex arrays, shape (N, N)
        Eigenvectors of W and the inverse.
    principal_eigenvalues : complex array, shape (N,)
        Lambda/4 - 1 (units 1/tau), in the order of ``weight_eigenvalues``.
    condition_number : float
        cond(P); large values mean W is nearly defective and psi_mu loses accuracy.
    """

    A: np.ndarray
    b: np.ndarray
    weight_eigenvalues: np.ndarray
    P: np.ndarray
    P_inv: np.ndarray
    principal_eigenvalues: np.ndarray
    condition_number: float

    @property
    def equilibrium(self) -> np.ndarray:
        """The unique equilibrium -A^-1 b, shape (N,) (z = 0 there)."""
        return np.linalg.solve(self.A, -self.b)

    def eigenvalue(self, mu: np.ndarray) -> np.ndarray:
        """lambda_mu = sum_i mu_i (Lambda_i/4 - 1).

        Parameters
        ----------
        mu : array, shape (..., N)
            Multi-indices (integer, real or complex).

        Returns
        -------
        complex array, shape (...)
        """
        return np.asarray(mu) @ self.principal_eigenvalues

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """z = P^-1 (A x + b): the principal eigenfunctions.

        Parameters
        ----------
        x : array, shape (..., N)
            Real or complex states.

        Returns
        -------
        complex array, shape (..., N)
        """
        return (np.asarray(x) @ self.A.T + self.b) @ self.P_inv.T

    def eigenfunction(self, x: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """psi_mu(x) = prod_i z_i^mu_i.

        Parameters
        ----------
        x : array, shape (..., N)
        mu : array, shape (N,) or broadcastable to (..., N)

        Returns
        -------
        complex array, shape (...)
        """
        z = self.coordinates(x)
        return np.prod(np.power(z, np.asarray(mu, dtype=complex)), axis=-1)

    def gradient(self, x: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """grad psi_mu(x), shape (..., N) (complex)."""
        z = self.coordinates(x)
        mu = np.broadcast_to(np.asarray(mu, dtype=complex), z.shape)
        # d psi / dz_i = mu_i z_i^(mu_i - 1) prod_{j != i} z_j^mu_j ; computed without dividing by z_i
        dz = np.empty_like(z)
        for i in range(z.shape[-1]):
            others = np.prod(np.power(np.delete(z, i, axis=-1), np.delete(mu, i, axis=-1)), axis=-1)
            dz[..., i] = mu[..., i] * np.power(z[..., i], mu[..., i] - 1) * others
        return dz @ (self.P_inv @ self.A)

    def principal_eigenfunction(self, i: int):
        """Callable x -> z_i(x) with ``.gradient`` (for :func:`residuals`)."""
        mu = np.zeros(self.A.shape[0])
        mu[i] = 1.0
        return self.as_eigenfunction(mu)

    def as_eigenfunction(self, mu: np.ndarray):
        """Callable x -> psi_mu(x) with attributes ``gradient`` and ``eigenvalue``."""
        mu = np.asarray(mu, dtype=complex)

        def psi(x):
            return self.eigenfunction(x, mu)

        psi.gradient = lambda x: self.gradient(x, mu)  # type: ignore[attr-defined]
        psi.eigenvalue = complex(self.eigenvalue(mu))  # type: ignore[attr-defined]
        return psi


def linear_family(network: Network) -> LinearFamily:
    """Exact eigenfunctions of a network with the ``linear`` activation.

    Parameters
    ----------
    network : Network
        Any W (diagonalisable for psi_mu to be complete); the activation must be ``linear``.

    Returns
    -------
    LinearFamily

    Raises
    ------
    ValueError
        If the activation is not ``linear``.
    """
    if network.activation.name != "linear":
        raise ValueError("linear_family needs the 'linear' activation")
    W = network.W
    n = W.shape[0]
    A = W / 4.0 - np.eye(n)
    b = W @ np.full(n, 0.5) + network.theta
    lam, P = np.linalg.eig(W)
    P = P.astype(complex)
    P_inv = np.linalg.inv(P)
    return LinearFamily(
        A=A,
        b=b,
        weight_eigenvalues=lam.astype(complex),
        P=P,
        P_inv=P_inv,
        principal_eigenvalues=lam.astype(complex) / 4.0 - 1.0,
        condition_number=float(np.linalg.cond(P)),
    )
