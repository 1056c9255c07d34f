"""Exact Koopman eigenfunctions of a single polynomial neuron (SCIENCE.md 2b).

For N = 1 and a polynomial activation (``cubic``, or ``linear``) the vector field is a polynomial
p(x) = -x + w sigma(x) + theta with simple roots z_k. With c_k = 1/p'(z_k) (the partial-fraction
coefficients of 1/p), psi_lambda(x) = prod_k (x - z_k)^(lambda c_k) = exp(lambda int dx/p) is an
eigenfunction for every complex lambda. Each factor uses the principal branch of the complex power,
so psi_lambda is evaluable on the real line and on the complex plane (cuts run from each root
towards -infinity, parallel to the real axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..activations import get_activation

__all__ = ["PolynomialNeuronFamily", "polynomial_neuron_family"]


@dataclass(frozen=True, eq=False)
class PolynomialNeuronFamily:
    """Eigenfunctions psi_lambda of dx/dt = p(x) for one polynomial neuron.

    Attributes
    ----------
    coefficients : array, shape (d + 1,)
        Coefficients of p, highest degree first (``numpy.polyval`` order).
    roots : complex array, shape (d,)
        Roots z_k of p (the equilibria when real), sorted by real part.
    residues : complex array, shape (d,)
        c_k = 1/p'(z_k).
    principal_eigenvalues : complex array, shape (d,)
        p'(z_k) = 1/c_k: the principal eigenvalue at each root (units 1/tau).
    """

    coefficients: np.ndarray
    roots: np.ndarray
    residues: np.ndarray
    principal_eigenvalues: np.ndarray

    @property
    def real_roots(self) -> np.ndarray:
        """Real roots (|Im z| <= 1e-9 (1 + |z|)), sorted, shape (r,)."""
        z = self.roots
        keep = np.abs(z.imag) <= 1e-9 * (1.0 + np.abs(z))
        return np.sort(z[keep].real)

    def vector_field(self, x: np.ndarray) -> np.ndarray:
        """p(x), elementwise on real or complex arrays."""
        return np.polyval(self.coefficients, np.asarray(x))

    def log_eigenfunction(self, x: np.ndarray, lam: complex | np.ndarray) -> np.ndarray:
        """log psi_lambda(x) = lambda sum_k c_k Log(x - z_k) (principal Log of each factor).

        Parameters
        ----------
        x : array, shape S
            Real or complex points.
        lam : complex or array broadcastable with x

        Returns
        -------
        complex array, broadcast shape of x and lam
        """
        x = np.asarray(x, dtype=complex)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(x[..., None] - self.roots)  # (..., d)
            s = np.sum(self.residues * logs, axis=-1)
        return np.asarray(lam) * s

    def eigenfunction(self, x: np.ndarray, lam: complex | np.ndarray) -> np.ndarray:
        """psi_lambda(x) = prod_k (x - z_k)^(lambda c_k), complex, broadcast over x and lam."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.exp(self.log_eigenfunction(x, lam))

    def gradient(self, x: np.ndarray, lam: complex | np.ndarray) -> np.ndarray:
        """d psi_lambda / dx = lambda psi_lambda(x) / p(x)."""
        x = np.asarray(x, dtype=complex)
        return np.asarray(lam) * self.eigenfunction(x, lam) / self.vector_field(x)

    def as_eigenfunction(self, lam: complex):
        """Callable on states of shape (..., 1) with ``gradient`` and ``eigenvalue`` (for :func:`residuals`)."""

        def psi(x):
            return self.eigenfunction(np.asarray(x)[..., 0], lam)

        psi.gradient = lambda x: self.gradient(np.asarray(x)[..., 0], lam)[..., None]  # type: ignore[attr-defined]
        psi.eigenvalue = complex(lam)  # type: ignore[attr-defined]
        return psi


def polynomial_neuron_family(w: float, theta: float, activation: str = "cubic") -> PolynomialNeuronFamily:
    """Exact eigenfunctions of the single neuron dx/dt = -x + w sigma(x) + theta.

    Parameters
    ----------
    w, theta : float
        Self-coupling and input.
    activation : str
        A polynomial activation (``cubic`` or ``linear``).

    Returns
    -------
    PolynomialNeuronFamily
        The poster's case is ``polynomial_neuron_family(8, -4)``: roots -2.449, 0, 2.449 and
        c = -1/2, 1, -1/2.

    Raises
    ------
    ValueError
        If the activation is not polynomial, or p has a repeated root (non-generic: the
        family needs simple roots).
    """
    act = get_activation(activation)
    if act.polynomial is None:
        raise ValueError(f"activation {act.name!r} is not polynomial")
    # p(x) = theta - x + w * sum_k a_k x^k, ascending coefficients
    asc = np.zeros(max(len(act.polynomial), 2))
    asc[: len(act.polynomial)] = w * np.asarray(act.polynomial, dtype=float)
    asc[0] += theta
    asc[1] -= 1.0
    while asc.size > 1 and asc[-1] == 0.0:
        asc = asc[:-1]
    coeffs = asc[::-1].copy()
    if coeffs.size < 2:
        raise ValueError("p is constant: no equilibrium")
    roots = np.roots(coeffs).astype(complex)
    roots = roots[np.lexsort((roots.imag, roots.real))]
    dp = np.polyval(np.polyder(coeffs), roots)
    scale = np.max(np.abs(coeffs))
    if np.any(np.abs(dp) <= 1e-12 * scale * (1 + np.max(np.abs(roots)))):
        raise ValueError("p has a repeated root; psi_lambda needs simple roots")
    return PolynomialNeuronFamily(
        coefficients=coeffs, roots=roots, residues=1.0 / dp, principal_eigenvalues=dp.astype(complex)
    )
