"""Generator and flow residuals: the universal test of a claimed Koopman eigenpair (SCIENCE.md 2).

generator residual  |grad psi(x) . f(x) - lambda psi(x)| / |psi(x)|
flow residual       |psi(x(t)) - exp(lambda t) psi(x(0))| / |psi(x(0))|
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Residuals", "residuals", "directional_derivative", "flow"]

# 8th-order central difference weights for the first derivative at offsets 1..4
_FD_OFFSETS = np.array([1.0, 2.0, 3.0, 4.0])
_FD_WEIGHTS = np.array([4.0 / 5.0, -1.0 / 5.0, 4.0 / 105.0, -1.0 / 280.0])


@dataclass(frozen=True)
class Residuals:
    """Residuals of one eigenpair at M points.

    Attributes
    ----------
    generator : array of float, shape (M,)
        Relative generator residual (dimensionless).
    flow : array of float, shape (M,)
        Relative flow residual after time ``t`` (inf where the ODE solve failed).
    t : float
        Flow time (units of tau).
    flow_ok : bool
        True when the ODE solve succeeded.
    """

    generator: np.ndarray
    flow: np.ndarray
    t: float
    flow_ok: bool

    @property
    def max(self) -> float:
        """Largest generator or flow residual."""
        return float(max(np.max(self.generator), np.max(self.flow)))


def _field(network) -> Callable[[np.ndarray], np.ndarray]:
    return network.vector_field if hasattr(network, "vector_field") else network


def directional_derivative(psi: Callable, x: np.ndarray, v: np.ndarray, step: float = 1e-2) -> np.ndarray:
    """d/ds psi(x + s v) at s = 0 by an 8th-order central difference.

    Parameters
    ----------
    psi : callable
        (..., N) -> (...).
    x, v : arrays, shape (M, N)
        Points and directions (state units).
    step : float
        Step in state units, relative to max(1, |x|) and along v/|v|.

    Returns
    -------
    array, shape (M,)
    """
    x = np.asarray(x)
    v = np.asarray(v)
    norm_v = np.linalg.norm(v, axis=-1, keepdims=True)
    scale = step * np.maximum(1.0, np.linalg.norm(x, axis=-1, keepdims=True))
    h = scale / np.where(norm_v > 0, norm_v, 1.0)  # (M, 1), in units of s
    out = 0.0
    for off, w in zip(_FD_OFFSETS, _FD_WEIGHTS):
        out = out + w * (psi(x + off * h * v) - psi(x - off * h * v))
    return out / h[..., 0]


def flow(network, x0: np.ndarray, t: float, rtol: float = 1e-12, atol: float = 1e-13):
    """Integrate dx/dt = f(x) from all points at once (DOP853 on the stacked system).

    Parameters
    ----------
    network : Network or callable
        Object with ``vector_field`` or a callable (M, N) -> (M, N).
    x0 : array, shape (M, N)
        Initial states (real or complex).
    t : float
        Final time (units of tau; negative integrates backward).

    Returns
    -------
    x_t : array, shape (M, N)
    ok : bool
        False if the solver failed or produced non-finite states.
    """
    f = _field(network)
    x0 = np.asarray(x0)
    shape = x0.shape
    from scipy.integrate import solve_ivp  # on first use: 0.65 CPU-s of imports per job

    sol = solve_ivp(
        lambda _t, y: f(y.reshape(shape)).ravel(),
        (0.0, float(t)),
        x0.ravel(),
        method="DOP853",
        rtol=rtol,
        atol=atol,
    )
    x_t = sol.y[:, -1].reshape(shape)
    ok = bool(sol.success and np.all(np.isfinite(x_t)))
    return x_t, ok


def residuals(
    eigenfunction: Callable[[np.ndarray], np.ndarray],
    lam: complex,
    network,
    points: np.ndarray,
    t: float = 1.0,
    gradient: Callable[[np.ndarray], np.ndarray] | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-13,
) -> Residuals:
    """Generator and flow residuals of the eigenpair (psi, lambda) at points.

    Parameters
    ----------
    eigenfunction : callable
        psi, (M, N) -> (M,) real or complex. If it has a ``gradient`` attribute (callable
        (M, N) -> (M, N)) it is used for the generator; otherwise see ``gradient``.
    lam : complex
        Claimed eigenvalue (units 1/tau).
    network : Network or callable
        Anything with ``vector_field`` (or a callable f: (M, N) -> (M, N)).
    points : array, shape (M, N)
        Sample states (real or complex).
    t : float
        Flow time for the flow residual (units of tau).
    gradient : callable, optional
        grad psi, (M, N) -> (M, N). Default: ``eigenfunction.gradient`` if present, else
        an 8th-order central difference of psi along f.
    rtol, atol : float
        DOP853 tolerances of the flow.

    Returns
    -------
    Residuals
    """
    f = _field(network)
    x = np.asarray(points)
    fx = f(x)
    psi0 = np.asarray(eigenfunction(x))
    grad = gradient if gradient is not None else getattr(eigenfunction, "gradient", None)
    if grad is not None:
        upsi = np.sum(np.asarray(grad(x)) * fx, axis=-1)
    else:
        upsi = directional_derivative(eigenfunction, x, fx)
    with np.errstate(divide="ignore", invalid="ignore"):
        gen = np.abs(upsi - lam * psi0) / np.abs(psi0)
    x_t, ok = flow(f, x, t, rtol=rtol, atol=atol)
    if ok:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            fl = np.abs(np.asarray(eigenfunction(x_t)) - np.exp(lam * t) * psi0) / np.abs(psi0)
    else:
        fl = np.full(gen.shape, np.inf)
    return Residuals(generator=np.asarray(gen, dtype=float), flow=np.asarray(fl, dtype=float), t=float(t), flow_ok=ok)
