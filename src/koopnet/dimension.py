"""Effective dimensionality of a network and of its dynamics (SCIENCE.md section 4).

Of the weight matrix W, from its singular values s_1 >= ... >= s_K (K = min(m, n)):

- numerical rank: number of s_i > tol, default tol = s_1 max(m, n) eps (as numpy.linalg.matrix_rank);
- erank (Roy & Vetterli 2007): exp(-sum p_i log p_i), p_i = s_i / sum_j s_j;
- stable rank: sum s_i^2 / s_1^2;  nuclear rank: sum s_i / s_1;
- energy rank: smallest k with sum_{i<=k} s_i^2 >= fraction * sum_i s_i^2 (fraction 0.9 by default);
- elbow rank: see :func:`elbow_rank` (point of the normalised scree plot farthest below its chord);
- optimal hard threshold rank (Gavish & Donoho, IEEE Trans. Inf. Theory 2014, unknown noise):
  number of s_i > omega(beta) median(s), omega(1) = 2.858 for a square matrix.

These are pure functions of singular values with any leading batch shape ``(...)``, so a
stack of matrices ``(B, N, N)`` is handled in one call (:func:`weight_dimensions`).
A zero matrix has every rank equal to 0 (a convention: the ratios are 0/0 there).

Of the dynamics: the participation ratio (tr C)^2 / tr(C^2) of an activity covariance C,
the Koopman dimension (principal eigenvalues at an attractor farther than a tolerance from
-1: J = -I + W D has eigenvalue -1 with multiplicity >= N - rank W) and the number of slow
modes (Re lambda > -1/tau). :func:`dimension_dataset` is the workflow stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Sequence

import numpy as np
import xarray as xr

from ._flags import STABLE_TYPES, EquilibriumType, first_stable, flag_attrs
from ._random import stage_rng
from .network import NetworkBatch
from .simulate import IntegrationSettings

__all__ = [
    "singular_values",
    "numerical_rank",
    "effective_rank",
    "stable_rank",
    "nuclear_rank",
    "energy_rank",
    "elbow_rank",
    "marchenko_pastur_median",
    "optimal_threshold_coefficient",
    "threshold_rank",
    "WeightDimensions",
    "weight_dimensions",
    "participation_ratio",
    "koopman_dimension",
    "n_slow_modes",
    "PRSource",
    "AttractorStatus",
    "DimensionSettings",
    "dynamics_participation_ratio",
    "attractor_spectrum",
    "dimension_dataset",
]

_EPS = np.finfo(float).eps


# ---------------------------------------------------------------------------------------
# Ranks of a matrix from its singular values
# ---------------------------------------------------------------------------------------


def singular_values(W: np.ndarray) -> np.ndarray:
    """Singular values in descending order.

    Parameters
    ----------
    W : array, shape (..., m, n)

    Returns
    -------
    array, shape (..., min(m, n))
    """
    return np.linalg.svd(np.asarray(W, dtype=float), compute_uv=False)


def _as_sv(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=float)
    if s.ndim == 0 or s.shape[-1] == 0:
        raise ValueError("singular values need a non-empty last axis")
    return s


def _default_tol(s: np.ndarray, max_dim: int | None) -> np.ndarray:
    n = s.shape[-1] if max_dim is None else max_dim
    return s[..., 0] * n * _EPS


def numerical_rank(s: np.ndarray, tol: float | None = None, max_dim: int | None = None) -> np.ndarray:
    """Number of singular values above ``tol``.

    Parameters
    ----------
    s : array, shape (..., K)
        Singular values, descending.
    tol : float, optional
        Absolute threshold (units of s). Default ``s_1 * max_dim * eps``.
    max_dim : int, optional
        max(m, n) of the matrix (default K, i.e. a square matrix).

    Returns
    -------
    int array, shape (...)
    """
    s = _as_sv(s)
    t = _default_tol(s, max_dim) if tol is None else np.asarray(tol, dtype=float)
    return np.count_nonzero(s > np.asarray(t)[..., None], axis=-1)


def effective_rank(s: np.ndarray) -> np.ndarray:
    """erank = exp(Shannon entropy of p = s / sum s) (Roy & Vetterli 2007).

    Parameters
    ----------
    s : array, shape (..., K)

    Returns
    -------
    float array, shape (...); in [1, K], 0 for a zero matrix.
    """
    s = _as_sv(s)
    total = s.sum(axis=-1, keepdims=True)
    p = np.divide(s, total, out=np.zeros_like(s), where=total > 0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.where(total[..., 0] > 0, np.exp(-plogp.sum(axis=-1)), 0.0)


def stable_rank(s: np.ndarray) -> np.ndarray:
    """Stable rank sum s_i^2 / s_1^2 = ||W||_F^2 / ||W||_2^2.

    Parameters
    ----------
    s : array, shape (..., K)

    Returns
    -------
    float array, shape (...); 0 for a zero matrix.
    """
    s = _as_sv(s)
    s1 = s[..., 0]
    num = (s * s).sum(axis=-1)
    return np.divide(num, s1 * s1, out=np.zeros_like(num), where=s1 > 0)


def nuclear_rank(s: np.ndarray) -> np.ndarray:
    """Nuclear rank sum s_i / s_1 = ||W||_* / ||W||_2.

    Parameters
    ----------
    s : array, shape (..., K)

    Returns
    -------
    float array, shape (...); 0 for a zero matrix.
    """
    s = _as_sv(s)
    s1 = s[..., 0]
    num = s.sum(axis=-1)
    return np.divide(num, s1, out=np.zeros_like(num), where=s1 > 0)


def energy_rank(s: np.ndarray, fraction: float = 0.9) -> np.ndarray:
    """Smallest k with sum_{i<=k} s_i^2 >= fraction * sum_i s_i^2.

    The comparison allows a relative slack of K eps so that exact ties (identity matrix,
    fraction * K an integer) are not lost to rounding of the cumulative sum.

    Parameters
    ----------
    s : array, shape (..., K)
    fraction : float in (0, 1]
        Fraction of the squared Frobenius norm ("energy") to capture.

    Returns
    -------
    int array, shape (...); 0 for a zero matrix.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    s = _as_sv(s)
    cum = np.cumsum(s * s, axis=-1)
    total = cum[..., -1:]
    K = s.shape[-1]
    below = np.count_nonzero(cum < fraction * total * (1.0 - K * _EPS), axis=-1)
    return np.where(total[..., 0] > 0, np.minimum(below + 1, K), 0)


def elbow_rank(s: np.ndarray, tol: float | None = None, max_dim: int | None = None) -> np.ndarray:
    """Rank at the elbow of the scree plot.

    The scree plot is the points (k, s_k), k = 1..K, normalised to the unit square by
    x_k = (k - 1) / (K - 1) and y_k = (s_k - s_K) / (s_1 - s_K); the chord joins (0, 1) to
    (1, 0). The elbow is the point farthest *below* the chord (largest 1 - x_k - y_k, first
    one on ties), and the elbow rank is the number of singular values before it (k* - 1),
    so an exactly rank-r matrix has elbow rank r. A scree with no point strictly below the
    chord (flat, concave or K <= 2) has no elbow: its elbow rank is its numerical rank.

    Parameters
    ----------
    s : array, shape (..., K)
    tol, max_dim :
        Passed to :func:`numerical_rank` for the no-elbow case.

    Returns
    -------
    int array, shape (...)
    """
    s = _as_sv(s)
    K = s.shape[-1]
    rank = numerical_rank(s, tol, max_dim)
    if K <= 2:
        return rank
    span = s[..., :1] - s[..., -1:]
    y = np.divide(s - s[..., -1:], span, out=np.zeros_like(s), where=span > 0)
    x = np.arange(K) / (K - 1)
    d = 1.0 - x - y
    k_star = np.argmax(d, axis=-1)
    has_elbow = (np.take_along_axis(d, k_star[..., None], axis=-1)[..., 0] > 4 * K * _EPS) & (
        span[..., 0] > 0
    )
    return np.where(has_elbow, k_star, rank)


def _mp_cdf(x: float, beta: float) -> float:
    """Marcenko-Pastur distribution function (variance 1, aspect ratio beta in (0, 1])."""
    from scipy.integrate import quad

    lo, hi = (1.0 - np.sqrt(beta)) ** 2, (1.0 + np.sqrt(beta)) ** 2
    if x <= lo:
        return 0.0
    x = min(x, hi)
    # density sqrt((hi - t)(t - lo)) / (2 pi beta t) written as (t - lo)^(-1/2) * h(t),
    # h smooth on [lo, x] even when lo = 0 (beta = 1, where the density ~ t^(-1/2))
    if lo == 0.0:  # beta = 1: (t - lo) / t = 1

        def h(t):
            return np.sqrt(max(hi - t, 0.0)) / (2.0 * np.pi * beta)

    else:

        def h(t):
            return (t - lo) * np.sqrt(max(hi - t, 0.0)) / (2.0 * np.pi * beta * t)

    val, _ = quad(h, lo, x, weight="alg", wvar=(-0.5, 0.0), epsabs=1e-13, epsrel=1e-12, limit=200)
    return val


@lru_cache(maxsize=64)
def marchenko_pastur_median(beta: float) -> float:
    """Median of the Marcenko-Pastur law with aspect ratio beta and unit variance.

    The law of the eigenvalues of X X^T / n for an m x n matrix X of i.i.d. unit-variance
    entries, beta = m / n <= 1, as m, n -> infinity (support ((1 -/+ sqrt beta)^2)).

    Parameters
    ----------
    beta : float in (0, 1]

    Returns
    -------
    float (dimensionless); 0.6528 for beta = 1.
    """
    from scipy.optimize import brentq

    beta = float(beta)
    if not 0.0 < beta <= 1.0:
        raise ValueError("beta must be in (0, 1]")
    lo, hi = (1.0 - np.sqrt(beta)) ** 2, (1.0 + np.sqrt(beta)) ** 2
    return float(brentq(lambda x: _mp_cdf(x, beta) - 0.5, lo, hi, xtol=1e-14, rtol=1e-14))


@lru_cache(maxsize=64)
def optimal_threshold_coefficient(beta: float = 1.0) -> float:
    """Gavish-Donoho coefficient omega(beta) for an unknown noise level.

    The optimal hard threshold for singular values is omega(beta) * median(s), with
    omega(beta) = lambda*(beta) / sqrt(mu_beta), lambda*(beta) = sqrt(2 (beta + 1) +
    8 beta / (beta + 1 + sqrt(beta^2 + 14 beta + 1))) and mu_beta the Marcenko-Pastur median
    (Gavish & Donoho 2014, eq. (4) and Theorem 3). omega(1) = 2.858.

    Parameters
    ----------
    beta : float in (0, 1]
        Aspect ratio min(m, n) / max(m, n) of the matrix.

    Returns
    -------
    float (dimensionless)
    """
    beta = float(beta)
    lam = np.sqrt(2.0 * (beta + 1.0) + 8.0 * beta / (beta + 1.0 + np.sqrt(beta * beta + 14.0 * beta + 1.0)))
    return float(lam / np.sqrt(marchenko_pastur_median(beta)))


def threshold_rank(
    s: np.ndarray, beta: float = 1.0, tol: float | None = None, max_dim: int | None = None
) -> np.ndarray:
    """Optimal hard threshold rank (Gavish & Donoho 2014, unknown noise level).

    Number of s_i > max(omega(beta) * median(s), rank tolerance). The rank tolerance
    (see :func:`numerical_rank`) keeps round-off singular values of an exactly low-rank
    matrix, whose median is ~0, from being counted; hence threshold rank <= numerical rank.

    Parameters
    ----------
    s : array, shape (..., K)
    beta : float in (0, 1]
        Aspect ratio of the matrix (1 for square W).
    tol, max_dim :
        As in :func:`numerical_rank`.

    Returns
    -------
    int array, shape (...)
    """
    s = _as_sv(s)
    cut = optimal_threshold_coefficient(beta) * np.median(s, axis=-1)
    t = _default_tol(s, max_dim) if tol is None else np.asarray(tol, dtype=float)
    return np.count_nonzero(s > np.maximum(cut, t)[..., None], axis=-1)


@dataclass(frozen=True)
class WeightDimensions:
    """Effective ranks of a stack of matrices; every field has the batch shape ``(...)``.

    Attributes
    ----------
    singular_values : float array, shape (..., K)
    rank, energy_rank, elbow_rank, threshold_rank : int arrays
    erank, stable_rank, nuclear_rank : float arrays
    """

    singular_values: np.ndarray
    rank: np.ndarray
    erank: np.ndarray
    stable_rank: np.ndarray
    nuclear_rank: np.ndarray
    energy_rank: np.ndarray
    elbow_rank: np.ndarray
    threshold_rank: np.ndarray


def weight_dimensions(
    W: np.ndarray, *, rank_tol: float | None = None, energy_fraction: float = 0.9
) -> WeightDimensions:
    """All effective ranks of W (one matrix or a stack).

    Parameters
    ----------
    W : array, shape (..., m, n)
    rank_tol : float, optional
        Absolute singular-value tolerance for the numerical rank (default s_1 max(m, n) eps).
    energy_fraction : float
        Fraction for :func:`energy_rank`.

    Returns
    -------
    WeightDimensions
    """
    W = np.asarray(W, dtype=float)
    m, n = W.shape[-2:]
    s = singular_values(W)
    beta = min(m, n) / max(m, n)
    kw = dict(tol=rank_tol, max_dim=max(m, n))
    return WeightDimensions(
        singular_values=s,
        rank=numerical_rank(s, **kw),
        erank=effective_rank(s),
        stable_rank=stable_rank(s),
        nuclear_rank=nuclear_rank(s),
        energy_rank=energy_rank(s, energy_fraction),
        elbow_rank=elbow_rank(s, **kw),
        threshold_rank=threshold_rank(s, beta, **kw),
    )


# ---------------------------------------------------------------------------------------
# Dimension of the dynamics
# ---------------------------------------------------------------------------------------


def participation_ratio(states: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Participation ratio (tr C)^2 / tr(C^2) of the covariance of sampled states.

    Parameters
    ----------
    states : array, shape (..., T, N)
        T samples of N-dimensional activity (units of x).
    weights : array, shape (..., T), optional
        Non-negative sample weights (e.g. 0/1 masks); samples with weight 0 are ignored
        even if they hold NaN. Default: all samples with weight 1.

    Returns
    -------
    float array, shape (...)
        In [1, N]; NaN where the weighted covariance is zero (no samples, or all equal):
        the ratio is undefined there (callers must flag it).
    """
    X = np.asarray(states, dtype=float)
    if weights is None:
        w = np.ones(X.shape[:-1])
    else:
        w = np.broadcast_to(np.asarray(weights, dtype=float), X.shape[:-1])
    X = np.where(w[..., None] > 0, X, 0.0)
    wsum = w.sum(axis=-1, keepdims=True)
    mean = np.divide(
        (w[..., None] * X).sum(axis=-2), wsum, out=np.zeros(X.shape[:-2] + X.shape[-1:]), where=wsum > 0
    )
    Xc = (X - mean[..., None, :]) * np.sqrt(w)[..., None]
    T, N = Xc.shape[-2:]
    # tr(C^2) = ||Xc^T Xc||_F^2 = ||Xc Xc^T||_F^2 (scale factors cancel in the ratio)
    G = np.swapaxes(Xc, -1, -2) @ Xc if N <= T else Xc @ np.swapaxes(Xc, -1, -2)
    tr = (Xc * Xc).sum(axis=(-2, -1))
    tr2 = (G * G).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tr2 > 0, tr * tr / np.where(tr2 > 0, tr2, 1.0), np.nan)


def koopman_dimension(eigenvalues: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Number of principal eigenvalues farther than ``tol`` from -1.

    Parameters
    ----------
    eigenvalues : complex array, shape (..., K)
        Jacobian eigenvalues at an attractor (1 / time units); NaN entries are padding
        and are not counted.
    tol : float
        Distance |lambda + 1| above which an eigenvalue counts (1 / time units).

    Returns
    -------
    int array, shape (...)
    """
    lam = np.asarray(eigenvalues)
    return np.count_nonzero(np.abs(lam + 1.0) > tol, axis=-1)  # NaN > tol is False


def n_slow_modes(eigenvalues: np.ndarray, tau: float = 2.0) -> np.ndarray:
    """Number of eigenvalues with Re lambda > -1 / tau (decay slower than time constant tau).

    Parameters
    ----------
    eigenvalues : complex array, shape (..., K)
        NaN entries are padding and are not counted.
    tau : float
        Time constant (units of the unit time constant, which is 1).

    Returns
    -------
    int array, shape (...)
    """
    lam = np.asarray(eigenvalues)
    return np.count_nonzero(np.real(lam) > -1.0 / tau, axis=-1)


class PRSource(IntEnum):
    """Which activity the dynamics participation ratio was computed from."""

    settling_transients = 0
    ongoing_activity = 1
    all_diverged = 2
    no_variance = 3
    #: unsettled at t_max yet provably (gradient-like network: symmetric W, monotone sigma) or
    #: visibly (distance to an attracting equilibrium still falling) converging: slow transients
    slow_transients = 4
    #: every usable trajectory was at rest from t = 0 (f = 0 there): nothing to measure
    no_motion = 5


class AttractorStatus(IntEnum):
    """Which attractor the Koopman dimension refers to."""

    stable_equilibrium = 0
    no_stable_equilibrium = 1
    nonfinite_spectrum = 2
    #: no hyperbolic attractor, but a non-hyperbolic equilibrium (no eigenvalue with Re > 0) that
    #: attracts nearby states (algebraic decay, e.g. tanh with W = I); no Koopman dimension
    non_hyperbolic_attractor = 3


@dataclass(frozen=True)
class DimensionSettings:
    """Settings of the ``dimension`` stage (the keys of its config section)."""

    rank_tol: float | None = None
    """Absolute singular-value tolerance for the rank of W; null = s_max * N * machine epsilon."""
    energy_fraction: float = 0.9
    """Fraction of sum s^2 the energy rank must capture."""
    koopman_tol: float = 1e-6
    """Jacobian eigenvalues farther than this from -1 count in the Koopman dimension (1/time)."""
    slow_tau: float = 2.0
    """Slow modes decay slower than this time constant: Re lambda > -1/slow_tau (unit time constants)."""
    n_initial_conditions: int = 20
    """Trajectories per network for the participation ratio."""
    ic_scale: float = 1.0
    """Initial conditions are theta + ic_scale * standard normal vectors (units of x)."""
    t_discard: float = 50.0
    """Ongoing activity is sampled on [t_discard, integration.t_max]; earlier samples are transient."""
    n_samples: int = 401
    """Number of equally spaced sample times on [0, integration.t_max]."""
    approach_tol: float = 1e-3
    """An unsettled trajectory whose speed max_i |f_i(x)| at t_max is below this is still approaching an equilibrium (a slow transient), not ongoing activity."""
    integration: IntegrationSettings = field(default_factory=IntegrationSettings)
    """How trajectories are integrated (the shared config section ``integration``, not a key of ``dimension``)."""

    def __post_init__(self) -> None:
        if not self.approach_tol >= self.integration.settle_tol:
            raise ValueError("dimension.approach_tol must be >= integration.settle_tol")
        if not 0.0 < self.energy_fraction <= 1.0:
            raise ValueError("energy_fraction must be in (0, 1]")
        if not 0.0 <= self.t_discard < self.integration.t_max:
            raise ValueError(f"dimension.t_discard = {self.t_discard} must be in [0, integration.t_max = "
                             f"{self.integration.t_max}) (ongoing activity is sampled on "
                             "[t_discard, t_max])")
        if self.n_samples < 2 or self.n_initial_conditions < 1:
            raise ValueError("need n_samples >= 2 and n_initial_conditions >= 1")
        if self.slow_tau <= 0 or self.koopman_tol < 0 or self.ic_scale < 0:
            raise ValueError("slow_tau must be > 0, koopman_tol and ic_scale >= 0")


# x_eval memory per chunk of networks (bytes)
_CHUNK_BYTES = 2**27


def dynamics_participation_ratio(
    batch: NetworkBatch,
    seeds: Sequence[int],
    settings: DimensionSettings = DimensionSettings(),
    attractors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Participation ratio of each network's activity.

    M = ``n_initial_conditions`` initial conditions theta + ic_scale z, z ~ N(0, I) drawn with
    ``stage_rng(seed, "participation_ratio")``, are integrated with
    :func:`koopnet.simulate.integrate` and sampled (dense output) at ``n_samples`` equally
    spaced times on [0, t_max]. Per network:

    - if some trajectory is unsettled at t_max and not creeping onto a known attractor, the PR
      is that of the *ongoing activity*: samples at t >= t_discard of those trajectories,
      pooled (``PRSource.ongoing_activity``). A trajectory creeps onto a stable equilibrium x*
      of margin m when its speed max|f| is below ``approach_tol`` and it is within
      2 max|f| / m of x* (near x*, |f| ~ |J (x - x*)| >= m |x - x*| for normal J); the slow
      passage of a limit cycle through a bottleneck is not near a stable equilibrium;
    - otherwise it is that of the *settling transients*: samples at t <= t_end (the settling
      time, t_max for trajectories still creeping onto a slow attractor) of the settled
      trajectories, pooled (``PRSource.settling_transients``);
    - diverged and stalled trajectories are never used; when no trajectory is usable the PR
      is NaN with ``PRSource.all_diverged``, and NaN with ``PRSource.no_variance`` when the
      samples do not vary.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    seeds : sequence of int, length B
    settings : DimensionSettings
    attractors : (x_stable, margin), optional
        Stable equilibria, array (B, E, N), and their stability margins -max Re lambda,
        array (B, E), NaN-padded. Without them no unsettled trajectory counts as creeping.

    Returns
    -------
    pr : float array, shape (B,)
    source : int8 array, shape (B,), :class:`PRSource` codes
    n_used : int array, shape (B,), trajectories used
    """
    from .simulate import integrate  # imported here: optional until the simulate stage lands

    B, N = len(batch), batch.n_units
    if len(seeds) != B:
        raise ValueError("need one seed per network")
    M, T = settings.n_initial_conditions, settings.n_samples
    z = np.stack([stage_rng(int(sd), "participation_ratio").standard_normal((M, N)) for sd in seeds])
    x0 = batch.theta[:, None, :] + settings.ic_scale * z
    integ = settings.integration
    t_eval = np.linspace(0.0, integ.t_max, T)

    pr = np.empty(B)
    source = np.empty(B, dtype=np.int8)
    n_used = np.empty(B, dtype=np.int64)
    chunk = max(1, _CHUNK_BYTES // (8 * M * T * N))
    for a in range(0, B, chunk):  # memory bound only; each network is independent
        sl = slice(a, min(a + chunk, B))
        sub = NetworkBatch(batch.W[sl], batch.theta[sl], batch.activation)
        # dense output: 401 samples on [0, 100] are denser than the steps of a settling or
        # chaotic trajectory, and clipping steps to them cost ~50 % more steps (N = 200, g = 8)
        tr = integrate(sub, x0[sl], integ.t_max, t_eval=t_eval, dense=True, **integ.integrate_kwargs())
        status = np.asarray(tr.status)
        unsettled = status == 2
        # still creeping onto a slow attractor at t_max: a transient, not ongoing activity
        speed = np.max(np.abs(sub.vector_field(tr.x_final)), axis=-1)
        approaching = np.zeros_like(unsettled)
        decaying = np.zeros_like(unsettled)
        if attractors is not None:
            xs, margin = attractors[0][sl], attractors[1][sl]  # (b, E, N), (b, E)
            dist = np.max(np.abs(tr.x_final[:, :, None, :] - xs[:, None, :, :]), axis=-1)  # (b, M, E)
            with np.errstate(invalid="ignore", divide="ignore"):
                near = dist <= 2.0 * speed[:, :, None] / margin[:, None, :]
            near &= np.isfinite(dist) & (margin[:, None, :] > 0)
            approaching = unsettled & (speed < settings.approach_tol) & near.any(axis=-1)
            # a non-hyperbolic attractor (margin 0) has no such bound: its local decay is seen
            # instead as a distance that keeps falling over the whole window [t_discard, t_max]
            window = t_eval >= settings.t_discard
            for i, m in zip(*np.nonzero(unsettled & ~approaching & (speed < settings.approach_tol))):
                cand = np.flatnonzero(margin[i] >= 0)  # rare trajectories, few candidates: a loop
                d = np.linalg.norm(tr.x_eval[i, m, window][:, None, :] - xs[i, cand][None], axis=-1)
                falling = np.all(np.diff(d, axis=0) <= 1e-12 * (1.0 + d[:-1]), axis=0) & (d[-1] < d[0])
                decaying[i, m] = bool(np.any(falling & np.isfinite(d).all(axis=0)))
        # symmetric W with monotone sigma: a gradient-like (Cohen-Grossberg) system, whose bounded
        # trajectories converge to equilibria, so nothing unsettled is ongoing activity
        gradient = np.asarray([sub.activation.monotone and np.array_equal(w, w.T) for w in sub.W])
        decaying |= unsettled & ~approaching & gradient[:, None]
        settled = (status == 0) | approaching | decaying
        unsettled &= ~(approaching | decaying)
        ongoing = unsettled.any(axis=1)
        t_end = np.where(decaying, integ.t_max, np.asarray(tr.t_end))
        # a trajectory at rest from t = 0 has no transient (f = 0 at its initial condition)
        moved = settled & (t_end > 0)
        w_transient = moved[:, :, None] & (t_eval[None, None, :] <= t_end[:, :, None])
        w_ongoing = unsettled[:, :, None] & (t_eval >= settings.t_discard)[None, None, :]
        w = np.where(ongoing[:, None, None], w_ongoing, w_transient)
        b = w.shape[0]
        pr[sl] = participation_ratio(tr.x_eval.reshape(b, M * T, N), w.reshape(b, M * T))
        n_used[sl] = np.where(ongoing, unsettled.sum(axis=1), moved.sum(axis=1))
        src = np.where(ongoing, PRSource.ongoing_activity,
                       np.where(decaying.any(axis=1), PRSource.slow_transients, PRSource.settling_transients))
        src = np.where(~ongoing & (settled.sum(axis=1) > 0) & (n_used[sl] == 0), PRSource.no_motion, src)
        src = np.where(~ongoing & (settled.sum(axis=1) == 0), PRSource.all_diverged, src)
        src = np.where((n_used[sl] > 0) & ~np.isfinite(pr[sl]), PRSource.no_variance, src)
        source[sl] = src
    bad = np.isin(source, [PRSource.all_diverged, PRSource.no_variance, PRSource.no_motion])
    pr[bad] = np.nan
    return pr, source, n_used


#: Re lambda <= this (1/time) makes a non-hyperbolic equilibrium a candidate attractor (the
#: equilibria stage's default hyperbolic_tol)
_NEUTRAL_TOL = 1e-8


def attracts_locally(batch: NetworkBatch, x_star: np.ndarray, seed: int, settings: DimensionSettings,
                     radius: float = 0.1, n_directions: int = 8) -> bool:
    """Whether the equilibrium ``x_star`` of the single network ``batch`` attracts nearby states.

    For a non-hyperbolic equilibrium the Jacobian cannot tell (decay may be algebraic, as for
    x' = -x^3 / 3); the flow can. States x* + radius u for ``n_directions`` random unit vectors
    u (``stage_rng(seed, "local_decay")``) are integrated to t_max: the equilibrium attracts
    when every distance |x(t) - x*| is non-increasing at the sample times and ends below its
    start. A center (neutral rotation) keeps the distance, a saddle direction grows it.
    """
    from .simulate import integrate

    N = x_star.shape[-1]
    u = stage_rng(seed, "local_decay").standard_normal((n_directions, N))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    integ = settings.integration
    t_eval = np.linspace(0.0, integ.t_max, 101)
    tr = integrate(batch, (x_star + radius * u)[None], integ.t_max, t_eval=t_eval,
                   **integ.integrate_kwargs())
    d = np.linalg.norm(tr.x_eval[0] - x_star, axis=-1)  # (n_directions, T), NaN after a settle
    status = np.asarray(tr.status)[0]
    if not np.all(np.isin(status, [0, 2])):  # diverged or stalled: not attracted
        return False
    settled = status == 0
    with np.errstate(invalid="ignore"):
        rising = np.diff(d, axis=1) > 1e-9 * radius
    ok_path = ~np.any(rising, axis=1)
    last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.inf for row in d])
    return bool(np.all(ok_path & ((last < radius * (1 - 1e-3)) | settled)))


def attractor_spectrum(equilibria: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jacobian spectrum at each network's reference attractor.

    The reference attractor is the *first stable equilibrium* of the equilibria dataset
    (smallest ``equilibrium`` index whose ``eq_type`` is in ``STABLE_TYPES``; the equilibria
    stage lists stable equilibria first, so this is its first entry when there is one).

    Parameters
    ----------
    equilibria : xr.Dataset
        With ``eq_type(network, equilibrium)`` (int, -1 padding) and
        ``jacobian_eigenvalues(network, equilibrium, mode)`` (complex, NaN padding).

    Returns
    -------
    eigenvalues : complex array, shape (B, K); NaN where there is no stable equilibrium
    index : int array, shape (B,); equilibrium index, -1 where none
    status : int8 array, shape (B,); :class:`AttractorStatus` codes
    """
    eq_type = np.asarray(equilibria["eq_type"].transpose("network", "equilibrium").values)
    eigs = np.asarray(
        equilibria["jacobian_eigenvalues"].transpose("network", "equilibrium", "mode").values,
        dtype=complex,
    )
    index = first_stable(np.isin(eq_type, [int(t) for t in STABLE_TYPES]))
    has = index >= 0
    lam = np.take_along_axis(eigs, np.maximum(index, 0)[:, None, None], axis=1)[:, 0, :]
    lam = np.where(has[:, None], lam, np.nan + 1j * np.nan)
    finite = np.isfinite(lam)
    status = np.where(
        ~has,
        AttractorStatus.no_stable_equilibrium,
        np.where(finite.any(axis=1), AttractorStatus.stable_equilibrium, AttractorStatus.nonfinite_spectrum),
    ).astype(np.int8)
    return lam, index.astype(np.int64), status


def dimension_dataset(
    batch: NetworkBatch,
    seeds: Sequence[int],
    settings: DimensionSettings,
    equilibria: xr.Dataset,
) -> xr.Dataset:
    """Workflow stage: effective dimensionality of W and of the dynamics, per network.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    seeds : sequence of int, length B
        Network seeds (draws use ``stage_rng(seed, "participation_ratio")``).
    settings : DimensionSettings
    equilibria : xr.Dataset
        Output of the equilibria stage for the same B networks (see :func:`attractor_spectrum`).

    Returns
    -------
    xr.Dataset
        Dim ``network`` (B); the singular values themselves are in the networks stage
        (``w_singular_values``). Counts are int64 with -1 where
        undefined (then a flag says why); ``participation_ratio`` is NaN only where
        ``participation_ratio_source`` says so.
    """
    B, N = len(batch), batch.n_units
    if equilibria.sizes.get("network") != B:
        raise ValueError("equilibria dataset does not match the batch (network dimension)")
    wd = weight_dimensions(batch.W, rank_tol=settings.rank_tol, energy_fraction=settings.energy_fraction)
    stable = np.isin(equilibria["eq_type"].values, [int(t) for t in STABLE_TYPES])
    re = equilibria["jacobian_eigenvalues"].values.real
    max_re = np.max(np.where(np.isnan(re), -np.inf, re), axis=-1)
    # non-hyperbolic equilibria without an unstable direction may attract (margin 0)
    neutral = (equilibria["eq_type"].values == int(EquilibriumType.non_hyperbolic)) & (max_re <= _NEUTRAL_TOL)
    margin = np.where(stable, -max_re, np.where(neutral, 0.0, np.nan))
    x_cand = np.where((stable | neutral)[..., None], equilibria["x_eq"].values, np.nan)
    pr, source, n_used = dynamics_participation_ratio(batch, seeds, settings, (x_cand, margin))
    lam, index, status = attractor_spectrum(equilibria)
    for b in np.flatnonzero(status == AttractorStatus.no_stable_equilibrium):
        for e in np.flatnonzero(neutral[b]):
            one = NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], batch.activation)
            if attracts_locally(one, equilibria["x_eq"].values[b, e], int(seeds[b]), settings):
                status[b], index[b] = AttractorStatus.non_hyperbolic_attractor, e
                break
    ok = status == AttractorStatus.stable_equilibrium
    kdim = np.where(ok, koopman_dimension(lam, settings.koopman_tol), -1).astype(np.int64)
    nslow = np.where(ok, n_slow_modes(lam, settings.slow_tau), -1).astype(np.int64)

    def var(data, long_name, units="1", dims=("network",), **extra):
        return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units, **extra})

    pr_source_attrs = flag_attrs(PRSource, "activity the participation ratio was computed from")
    att_attrs = flag_attrs(AttractorStatus, "reference attractor of the Koopman dimension")
    data = {
        "w_rank": var(wd.rank.astype(np.int64), "numerical rank of W"),
        "erank": var(wd.erank, "effective rank of W (Roy-Vetterli)"),
        "stable_rank": var(wd.stable_rank, "stable rank of W (sum s^2 / s_max^2)"),
        "nuclear_rank": var(wd.nuclear_rank, "nuclear rank of W (sum s / s_max)"),
        "energy_rank": var(
            wd.energy_rank.astype(np.int64),
            f"smallest rank capturing {settings.energy_fraction:g} of sum s^2",
        ),
        "elbow_rank": var(wd.elbow_rank.astype(np.int64), "rank at the elbow of the scree plot of W"),
        "threshold_rank": var(
            wd.threshold_rank.astype(np.int64), "Gavish-Donoho optimal hard threshold rank of W"
        ),
        "participation_ratio": var(pr, "participation ratio of the activity covariance"),
        "participation_ratio_source": xr.Variable(("network",), source, attrs=pr_source_attrs),
        "participation_ratio_n_trajectories": var(n_used, "trajectories pooled in the participation ratio"),
        "koopman_dimension": var(
            kdim, "principal Koopman eigenvalues at the attractor not equal to -1 (-1: no attractor)"
        ),
        "n_slow_modes": var(
            nslow, "principal Koopman eigenvalues at the attractor with Re > -1/slow_tau (-1: no attractor)"
        ),
        "attractor_equilibrium": var(index, "equilibrium index of the reference attractor (-1: none)"),
        "attractor_status": xr.Variable(("network",), status, attrs=att_attrs),
    }
    return xr.Dataset(data, attrs={"stage": "dimension"})
