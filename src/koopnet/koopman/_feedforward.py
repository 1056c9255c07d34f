"""Exact Koopman eigenfunctions of feedforward networks (SCIENCE.md 2c).

W strictly lower-triangular (or any acyclic W, after a topological reordering): unit 0 is a source, dx_0/dt = -(x_0 - theta_0), so u = x_0 - theta_0
is an eigenfunction with eigenvalue -1. With y_i = (x_i - theta_i)/u (i >= 1) and tau = log u,

    dy_i/dtau = -sum_{j<i} W_ij sigma(x_j) / u,     x_0 = theta_0 + u,  x_j = theta_j + u y_j,

and transporting y to the reference section u = u_ref gives N - 1 invariants
Phi_i(x) = y_i(u_ref) (eigenvalue 0). For two units Phi_1 = y_1 + W_10 (gamma(x_0) - gamma(theta_0 + u_ref))
with gamma'(s) = sigma(s)/(s - theta_0)^2, the poster's invariant up to a constant. Then

    psi_lambda(x) = u^(-lambda) F(Phi_1, ..., Phi_{N-1})

is an eigenfunction for every lambda and every F. Phi is computed by one DOP853 solve over all
points at once (in s in [0, 1], tau = tau_0 + s (tau_ref - tau_0)); its gradient by complex-step
differentiation through the same solve (real points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..network import Network

__all__ = ["FeedforwardFamily", "feedforward_family", "feedforward_order"]


def feedforward_order(W: np.ndarray) -> np.ndarray | None:
    """A topological order of the units if W is feedforward (acyclic support), else None.

    Parameters
    ----------
    W : array, shape (N, N)
        W[i, j] != 0 is a link j -> i.

    Returns
    -------
    int array, shape (N,) or None
        ``order`` such that ``W[order][:, order]`` is strictly lower-triangular (sources first,
        ties broken by unit index so that the order is deterministic).
    """
    A = np.asarray(W) != 0.0
    n = A.shape[0]
    if np.any(np.diag(A)):
        return None
    indeg = A.sum(axis=1)
    done = np.zeros(n, dtype=bool)
    order = []
    for _ in range(n):
        ready = np.flatnonzero(~done & (indeg == 0))
        if ready.size == 0:
            return None
        k = ready[0]
        order.append(k)
        done[k] = True
        indeg = indeg - A[:, k]
    return np.array(order, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class FeedforwardFamily:
    """Eigenfunctions u^(-lambda) F(Phi) of one feedforward network.

    Attributes
    ----------
    network : Network
        W strictly lower-triangular, any activation.
    u_ref : float
        |u| of the reference section defining Phi (state units).
    rtol, atol : float
        DOP853 tolerances of the transport.
    """

    network: Network
    u_ref: float = 1.0
    rtol: float = 1e-13
    atol: float = 1e-14
    order: np.ndarray | None = None

    def __post_init__(self) -> None:
        order = feedforward_order(self.network.W) if self.order is None else np.asarray(self.order)
        if order is None:
            raise ValueError("feedforward_family needs a W with acyclic support (a feedforward network)")
        object.__setattr__(self, "order", order)
        net = self.network
        object.__setattr__(
            self, "_net", Network(net.W[order][:, order], net.theta[order], net.activation)
        )

    @property
    def principal_eigenvalues(self) -> np.ndarray:
        """All -1 (the Jacobian at the equilibrium is lower-triangular with diagonal -1), shape (N,)."""
        return np.full(self.network.n_units, -1.0 + 0.0j)

    @property
    def equilibrium(self) -> np.ndarray:
        """The unique equilibrium by forward substitution, shape (N,)."""
        W, th, sig = self._net.W, self._net.theta, self._net.activation.sigma
        x = th.copy()
        for i in range(1, x.size):
            x[i] = th[i] + W[i, :i] @ sig(x[:i])
        out = np.empty_like(x)
        out[self.order] = x
        return out

    def source_coordinate(self, x: np.ndarray) -> np.ndarray:
        """u = x_s - theta_s for the first source unit s = order[0], shape (...) (eigenvalue -1)."""
        s = self.order[0]
        return np.asarray(x)[..., s] - self.network.theta[s]

    def invariants(self, x: np.ndarray) -> np.ndarray:
        """Phi_i(x) for the units order[1:], at points with u != 0.

        Parameters
        ----------
        x : array, shape (..., N)
            Real or complex states.

        Returns
        -------
        array, shape (..., N - 1)
            Real for real x; NaN where u = 0 or the transport failed.
        """
        x = np.asarray(x)[..., self.order]
        lead = x.shape[:-1]
        n = x.shape[-1]
        if n == 1:
            return np.zeros((*lead, 0), dtype=x.dtype)
        xs = x.reshape(-1, n)
        W, th, sig = self._net.W, self._net.theta, self._net.activation.sigma
        u0 = xs[:, 0] - th[0]
        bad = u0 == 0
        u0 = np.where(bad, 1.0, u0)
        side = np.where(np.real(u0) < 0, -1.0, 1.0)
        # tau measured on the side's sheet: u = side * exp(tau), no crossing of a branch cut
        delta = np.log(self.u_ref) - np.log(side * u0)  # (M,)
        y0 = (xs[:, 1:] - th[1:]) / u0[:, None]
        shape = y0.shape
        cplx = np.iscomplexobj(y0) or np.iscomplexobj(delta)
        Wl = W[1:, :]  # rows of the driven units

        def rhs(s, yflat):
            y = yflat.reshape(shape)
            u = u0 * np.exp(s * delta)
            xx = np.concatenate([(th[0] + u)[:, None], th[1:] + u[:, None] * y], axis=1)
            return (-(delta / u)[:, None] * (sig(xx) @ Wl.T)).ravel()

        from scipy.integrate import solve_ivp  # on first use: 0.65 CPU-s of imports per job

        sol = solve_ivp(
            rhs, (0.0, 1.0), y0.ravel().astype(complex if cplx else float), method="DOP853",
            rtol=self.rtol, atol=self.atol,
        )
        phi = sol.y[:, -1].reshape(shape)
        if not sol.success:
            phi = np.full(shape, np.nan, dtype=phi.dtype)
        phi = np.where(bad[:, None], np.nan, phi)
        return phi.reshape(*lead, n - 1)

    def invariants_gradient(self, x: np.ndarray, h: float = 1e-30) -> np.ndarray:
        """d Phi_i / d x_k at real points by complex-step differentiation.

        Parameters
        ----------
        x : real array, shape (M, N)

        Returns
        -------
        array, shape (M, N - 1, N)
        """
        x = np.asarray(x, dtype=float)
        m, n = x.shape
        # all N directions in one transport: stack the perturbed copies
        pert = x[None, :, :] + 1j * h * np.eye(n)[:, None, :]  # (N, M, N)
        phi = self.invariants(pert.reshape(n * m, n)).reshape(n, m, n - 1)
        return np.moveaxis(phi.imag / h, 0, -1)

    def eigenfunction(self, x: np.ndarray, lam: complex, F: Callable | None = None) -> np.ndarray:
        """psi_lambda(x) = u^(-lambda) F(Phi(x)) (principal branch of the power).

        Parameters
        ----------
        x : array, shape (..., N)
        lam : complex
        F : callable, optional
            (..., N - 1) -> (...); default F = 1.

        Returns
        -------
        complex array, shape (...)
        """
        x = np.asarray(x)
        u = self.source_coordinate(x).astype(complex)
        out = np.power(u, -complex(lam))
        if F is not None:
            out = out * F(self.invariants(x))
        return out

    def as_eigenfunction(self, lam: complex, F: Callable | None = None, F_gradient: Callable | None = None):
        """Callable psi_lambda with ``gradient`` (real points) and ``eigenvalue``.

        Parameters
        ----------
        lam : complex
        F, F_gradient : callables, optional
            F: (M, N - 1) -> (M,), and its gradient (M, N - 1) -> (M, N - 1) (needed for the gradient
            when F is given).
        """
        lam = complex(lam)

        def psi(x):
            return self.eigenfunction(x, lam, F)

        def gradient(x):
            x = np.asarray(x, dtype=float)
            u = self.source_coordinate(x).astype(complex)
            base = np.power(u, -lam)
            g = np.zeros(x.shape, dtype=complex)
            g[..., self.order[0]] = -lam * base / u
            if F is None:
                return g
            phi = self.invariants(x)
            Fv = F(phi)
            dPhi = self.invariants_gradient(x)  # (M, N-1, N)
            g = g * Fv[..., None] + base[..., None] * np.einsum("mi,mik->mk", F_gradient(phi), dPhi)
            return g

        psi.gradient = gradient  # type: ignore[attr-defined]
        psi.eigenvalue = lam  # type: ignore[attr-defined]
        return psi


def feedforward_family(network: Network, u_ref: float = 1.0) -> FeedforwardFamily:
    """Exact eigenfunctions of a feedforward network (acyclic W, any activation).

    Units are taken in the topological order :func:`feedforward_order` (for a strictly
    lower-triangular W this is 0, 1, ..., N - 1): u uses the first source unit and the
    invariants Phi are listed for the remaining units in that order.

    Raises
    ------
    ValueError
        If the support of W has a cycle.
    """
    return FeedforwardFamily(network, u_ref=float(u_ref))
