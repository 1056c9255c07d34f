"""Activation functions sigma of the rate model (SCIENCE.md section 1).

Every activation is an immutable :class:`Activation` holding sigma and its first
two derivatives as vectorised numpy callables, its Lipschitz constant (used by the
contraction certificate) and its range (used for the exact equilibrium search box).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Activation", "ACTIVATIONS", "get_activation"]

ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Activation:
    """A scalar activation function applied elementwise.

    Attributes
    ----------
    name : str
        Config name (``logistic``, ``linear``, ``cubic``, ``tanh``).
    sigma, dsigma, d2sigma : callable
        sigma(x), sigma'(x), sigma''(x); elementwise on real or complex arrays.
    lipschitz : float
        sup |sigma'| over the real line (``inf`` if unbounded).
    bounds : tuple of float or None
        (inf sigma, sup sigma) over the real line, or None when sigma is unbounded.
    polynomial : tuple of float or None
        Coefficients (c0, c1, c2, c3) of sigma when it is a polynomial, else None.
    monotone : bool
        sigma' >= 0 on the whole real line. With a symmetric W the network is then a
        Cohen-Grossberg (Hopfield) gradient-like system: bounded trajectories converge to
        equilibria and cannot oscillate.
    """

    name: str
    sigma: ArrayFn
    dsigma: ArrayFn
    d2sigma: ArrayFn
    lipschitz: float
    bounds: tuple[float, float] | None
    polynomial: tuple[float, ...] | None = None
    monotone: bool = False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.sigma(x)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _logistic(x):
    # scipy.special.expit is stable for large |x| but real-only; keep complex support
    if np.iscomplexobj(x):
        return 1.0 / (1.0 + np.exp(-x))
    from scipy.special import expit

    return expit(x)


def _dlogistic(x):
    s = _logistic(x)
    return s * (1.0 - s)


def _d2logistic(x):
    s = _logistic(x)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _dtanh(x):
    t = np.tanh(x)
    return 1.0 - t * t


def _d2tanh(x):
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


ACTIVATIONS: dict[str, Activation] = {
    "logistic": Activation(
        "logistic", _logistic, _dlogistic, _d2logistic, lipschitz=0.25, bounds=(0.0, 1.0), monotone=True
    ),
    "linear": Activation(
        "linear",
        lambda x: 0.5 + 0.25 * np.asarray(x),
        lambda x: np.full_like(np.asarray(x), 0.25, dtype=np.result_type(x, float)),
        lambda x: np.zeros_like(np.asarray(x), dtype=np.result_type(x, float)),
        lipschitz=0.25,
        bounds=None,
        polynomial=(0.5, 0.25),
        monotone=True,
    ),
    "cubic": Activation(
        "cubic",
        lambda x: 0.5 + 0.25 * np.asarray(x) - np.asarray(x) ** 3 / 48.0,
        lambda x: 0.25 - np.asarray(x) ** 2 / 16.0,
        lambda x: -np.asarray(x) / 8.0,
        lipschitz=np.inf,
        bounds=None,
        polynomial=(0.5, 0.25, 0.0, -1.0 / 48.0),
    ),
    "tanh": Activation("tanh", np.tanh, _dtanh, _d2tanh, lipschitz=1.0, bounds=(-1.0, 1.0), monotone=True),
}


def get_activation(activation: str | Activation) -> Activation:
    """Return the :class:`Activation` named ``activation`` (or pass one through).

    Raises
    ------
    ValueError
        If the name is not one of :data:`ACTIVATIONS`.
    """
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
