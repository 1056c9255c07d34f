"""The rate network dx/dt = f(x) = -x + W sigma(x) + theta (SCIENCE.md section 1).

:class:`Network` is one network; :class:`NetworkBatch` stacks B networks of one size
and one activation so that analyses can vectorise across networks as well as across
states. Both are immutable; every analysis in koopnet takes one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from .activations import Activation, get_activation

__all__ = ["Network", "NetworkBatch"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Network:
    """One recurrent rate network.

    Parameters
    ----------
    W : array_like, shape (N, N)
        Weights; ``W[i, j]`` is the connection from unit j to unit i.
    theta : array_like, shape (N,) or scalar
        External input (broadcast to N units).
    activation : str or Activation
        ``logistic``, ``linear``, ``cubic`` or ``tanh``.
    """

    W: np.ndarray
    theta: np.ndarray
    activation: Activation = field(default="logistic")  # type: ignore[assignment]

    def __post_init__(self) -> None:
        W = np.asarray(self.W, dtype=float)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"W must be a square (N, N) matrix, got shape {W.shape}")
        theta = np.broadcast_to(np.asarray(self.theta, dtype=float), (W.shape[0],))
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(theta))):
            raise ValueError("W and theta must be finite")
        object.__setattr__(self, "W", _readonly(W))
        object.__setattr__(self, "theta", _readonly(theta))
        object.__setattr__(self, "activation", get_activation(self.activation))

    @property
    def n_units(self) -> int:
        """Number of units N."""
        return self.W.shape[0]

    def vector_field(self, x: np.ndarray) -> np.ndarray:
        """f(x) = -x + W sigma(x) + theta.

        Parameters
        ----------
        x : array, shape (..., N)
            States (real or complex).

        Returns
        -------
        array, shape (..., N)
        """
        x = np.asarray(x)
        return -x + self.activation.sigma(x) @ self.W.T + self.theta

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """J(x) = -I + W diag(sigma'(x)).

        Parameters
        ----------
        x : array, shape (..., N)

        Returns
        -------
        array, shape (..., N, N)
        """
        x = np.asarray(x)
        J = self.W * self.activation.dsigma(x)[..., None, :]
        idx = np.arange(self.n_units)
        J[..., idx, idx] -= 1.0
        return J

    def __repr__(self) -> str:
        return f"Network(N={self.n_units}, activation={self.activation.name!r})"


@dataclass(frozen=True, eq=False)
class NetworkBatch:
    """B networks of the same size N and the same activation.

    Parameters
    ----------
    W : array_like, shape (B, N, N)
    theta : array_like, shape (B, N)
    activation : str or Activation
    """

    W: np.ndarray
    theta: np.ndarray
    activation: Activation = field(default="logistic")  # type: ignore[assignment]

    def __post_init__(self) -> None:
        W = np.asarray(self.W, dtype=float)
        if W.ndim != 3 or W.shape[1] != W.shape[2]:
            raise ValueError(f"W must have shape (B, N, N), got {W.shape}")
        theta = np.broadcast_to(np.asarray(self.theta, dtype=float), W.shape[:2])
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(theta))):
            raise ValueError("W and theta must be finite")
        object.__setattr__(self, "W", _readonly(W))
        object.__setattr__(self, "theta", _readonly(theta))
        object.__setattr__(self, "activation", get_activation(self.activation))

    @classmethod
    def from_networks(cls, networks: Sequence[Network]) -> "NetworkBatch":
        """Stack networks of one size and one activation."""
        if len(networks) == 0:
            raise ValueError("need at least one network")
        act = networks[0].activation
        if any(n.activation.name != act.name for n in networks):
            raise ValueError("all networks of a batch must share one activation")
        return cls(np.stack([n.W for n in networks]), np.stack([n.theta for n in networks]), act)

    @property
    def n_units(self) -> int:
        return self.W.shape[1]

    def __len__(self) -> int:
        return self.W.shape[0]

    def __getitem__(self, b: int) -> Network:
        return Network(self.W[b], self.theta[b], self.activation)

    def __iter__(self) -> Iterator[Network]:
        return (self[b] for b in range(len(self)))

    def vector_field(self, x: np.ndarray) -> np.ndarray:
        """f_b(x) for every network b.

        Parameters
        ----------
        x : array, shape (B, M, N)
            M states per network.

        Returns
        -------
        array, shape (B, M, N)
        """
        x = np.asarray(x)
        return -x + self.activation.sigma(x) @ self.W.transpose(0, 2, 1) + self.theta[:, None, :]

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """J_b(x) for every network b.

        Parameters
        ----------
        x : array, shape (B, M, N)

        Returns
        -------
        array, shape (B, M, N, N)
        """
        x = np.asarray(x)
        J = self.W[:, None, :, :] * self.activation.dsigma(x)[..., None, :]
        idx = np.arange(self.n_units)
        J[..., idx, idx] -= 1.0
        return J

    def __repr__(self) -> str:
        return f"NetworkBatch(B={len(self)}, N={self.n_units}, activation={self.activation.name!r})"
