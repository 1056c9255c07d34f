"""Equilibria engine: find, refine, classify and count the fixed points of rate networks.

Equilibria of dx/dt = f(x) = -x + W sigma(x) + theta solve x* = theta + W sigma(x*)
(SCIENCE.md section 3). The engine uses exact paths where theory gives the answer and a
vectorised damped-Newton search with a completeness estimate elsewhere:

* ``linear`` activation: f is affine, one linear solve of (W/4 - I) x = -(W 1/2 + theta),
  or the status ``singular`` when W/4 - I is (numerically) singular.
* feedforward W (the support of W is the adjacency of a directed acyclic graph, e.g.
  strictly lower-triangular): forward substitution, done as N Picard sweeps
  x <- theta + W sigma(x), which are exact after depth-of-the-graph sweeps. Whatever
  sigma, the triangular system has exactly one solution and its Jacobian is (permuted)
  lower-triangular with diagonal -1, so every eigenvalue is exactly -1 (a defective,
  Jordan-type spectrum reported as -1, not as LAPACK's perturbed values). For the
  unbounded ``cubic`` activation the equilibrium still exists and is unique and locally
  stable, but it is not globally attracting (trajectories can escape) and its coordinates
  grow like a tower of cubes with depth; when they overflow float64 the status is
  ``overflow`` and no equilibrium is reported.
* N = 1 with a polynomial activation: the real roots of p(x) = -x + w sigma(x) + theta.
* low-rank W = U S V^T (numerical rank r <= ``lowrank_max_fraction`` N): Newton on the
  exact r-dimensional reduction x* = theta + U kappa, kappa = S V^T sigma(theta + U kappa),
  followed by refinement in the full N-dimensional system.
* otherwise (``newton``), strategies recorded per equilibrium (:class:`EquilibriumStrategy`):

  - random starts: at most ``n_starts`` starts drawn uniformly in the search box, each solved
    by Powell's hybrid method (scaled dogleg trust region, exact Jacobian at the start and after
    two poor steps, Broyden rank-1 updates in between, as MINPACK ``hybrj``) in a compiled
    kernel, one start at a time; run in rounds (``min_starts``, then ``start_batch`` more) that
    stop once the sample is saturated (index sum of the roots found 1, Chao1 expecting fewer
    than ``stop_expected_missing`` missing); used up to ``random_start_max_units`` units
    (beyond, uniform starts converge for almost none);
  - homotopy paths (bounded activations): probability-one homotopies from x = b at lam = 0
    to the network at lam = 1, each reaching lam = 1 at least once, every crossing an
    equilibrium (:mod:`koopnet._equilibria_homotopy`); used above ``random_start_max_units``
    or where the random starts found nothing;
  - reflection: in odd-symmetric networks (theta + sigma(0) W 1 = 0) -x* of every x* found;
  - optional deflation (Farrell, Birkisson & Funke, SIAM J. Sci. Comput. 2015, Armijo-damped
    deflated Newton) pushes on from the roots already found.

  Duplicates are merged with a relative tolerance and every equilibrium is refined by full
  Newton steps.

Completeness is reported, never claimed: the number found, the Chao1 estimate of the
total from how many random starts (or, without random starts, homotopy crossings) landed on
each equilibrium (pooled over mirror pairs in odd-symmetric networks; with its standard error), the index-theorem lower bound on those missed, the
fraction of converged starts, and the contraction certificate ||W||_2 Lip(sigma) < 1 that
proves uniqueness.

Per-network results are bitwise identical whether a network is analysed alone or in a
batch: starts come from :func:`koopnet._random.stage_rng` (stage ``"equilibria"``), and all
arithmetic on a network's starts is per-start (see :mod:`koopnet._equilibria_newton`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Sequence

import numpy as np
import xarray as xr

from ._equilibria_newton import (
    NewtonProblem,
    StartCode,
    _solve,
    damped_newton,
    powell_hybrid,
    relative_residual,
)
from . import dimension
from ._flags import STABLE_TYPES, EquilibriumType, flag_attrs
from ._linalg import sort_eigenvalues
from ._padding import pad_stack
from ._random import stage_rng
from .activations import Activation
from .network import Network, NetworkBatch

__all__ = [
    "EquilibriumMethod",
    "EquilibriumStatus",
    "EquilibriumStrategy",
    "EquilibriumSettings",
    "Equilibria",
    "find_equilibria",
    "find_equilibria_batch",
    "equilibria_dataset",
    "search_box",
    "contraction_certificate",
    "is_feedforward",
    "numerical_rank",
    "classify_equilibrium",
    "chao1",
]

STAGE = "equilibria"


class EquilibriumMethod(IntEnum):
    """How the equilibria of a network were obtained."""

    newton = 0
    linear = 1
    feedforward = 2
    polynomial = 3
    lowrank = 4


class EquilibriumStrategy(IntEnum):
    """Which part of the search found an equilibrium first (ranked in this order).

    ``exact``: an exact path (linear, feedforward, N = 1 polynomial). ``random_start``: a start
    drawn uniformly in the search box (or the low-rank reduced box). ``homotopy``: a crossing of
    lam = 1 by a probability-one homotopy path (bounded activations, full search).
    ``deflation``: a deflated Newton round. ``reflection``: the mirror image -x* of an
    equilibrium found otherwise, in an odd-symmetric network (theta + sigma(0) W 1 = 0, e.g.
    centered logistic or tanh with theta = 0: every shipped sigma has sigma(-x) = 2 sigma(0) -
    sigma(x), so f(-x) = -f(x) and equilibria come in pairs).
    """

    exact = 0
    random_start = 1
    homotopy = 2
    deflation = 3
    reflection = 4


class EquilibriumStatus(IntEnum):
    """Outcome of the equilibrium search of one network.

    ``ok``: at least one equilibrium, all refined to tolerance. ``singular``: linear network
    whose W/4 - I is singular with a continuum of equilibria, or N = 1 polynomial that vanishes
    identically. ``no_convergence``: no start converged (bounded activations always have an
    equilibrium, so this is a failure). ``unrefined``: some equilibrium could not be refined
    to ``tol_residual``, or is degenerate (singular Jacobian: a multiple root), so its position
    is only known to about tol^(1/3). ``overflow``: the exact equilibrium is not representable
    in float64 (feedforward cubic networks). ``no_equilibrium``: f has no zero at all: a linear
    network whose W/4 - I is singular with W 1/2 + theta outside its range (e.g. W = 4 I, where
    f = W 1/2 + theta is a nonzero constant), or an N = 1 polynomial that is a nonzero constant.
    """

    ok = 0
    singular = 1
    no_convergence = 2
    unrefined = 3
    overflow = 4
    no_equilibrium = 5


@dataclass(frozen=True)
class EquilibriumSettings:
    """Settings of the ``equilibria`` stage; the fields are the keys of its config section.

    Each field carries its description as an attribute docstring (units in parentheses).
    """

    n_starts: int = 256
    """Most random starts per network, drawn uniformly in the search box (fewer when the sample saturates: start_batch, min_starts, stop_expected_missing; see random_start_max_units)."""
    start_batch: int = 32
    """Random starts run in rounds of this many per network; after each round from min_starts on, a network whose sample is saturated stops (see stop_expected_missing). The rounds are the same whatever the batch of networks, so results do not depend on it."""
    min_starts: int = 64
    """Random starts every network gets before the saturation test can stop it."""
    stop_expected_missing: float = 1.0
    """A network's random starts stop early once the index theorem proves no equilibrium missing (index sum of those found = 1) and the Chao1 estimate expects fewer than this many missing (0 disables the early stop; n_starts is then always used)."""
    random_start_max_units: int = 300
    """Random starts are used for networks of at most this many units; larger networks with a bounded activation are searched by the homotopy paths alone (uniform starts converge for none of 64 at N = 500, g = 8). Unbounded activations always use random starts."""
    homotopy_work: float = 6000.0
    """Work budget per network of the homotopy paths (bounded activations, full search; 0 disables them), run where random starts are off (N > random_start_max_units) or found nothing, in LU factorisations of the (N + 1)-square bordered Jacobian: a factorisation counts 1, a chord-corrector iteration (a solve with kept factors and a vector-field evaluation) 12/N."""
    homotopy_paths: int = 8
    """Most homotopy paths per network (a path starts when the previous one has left lam in [0, 1.2]; each finds at least one equilibrium)."""
    max_iter: int = 200
    """Maximum Newton trial steps per start (trust-region search and each deflation round)."""
    tol_residual: float = 1e-10
    """Convergence and refinement tolerance on the relative residual ||f(x)||_inf / (1 + ||x||_inf)."""
    dedup_rtol: float = 1e-6
    """Two solutions are one equilibrium when ||x1 - x2||_inf <= dedup_rtol (1 + ||x1||_inf), plus their position errors after refinement (reduced coordinates of the low-rank search before refinement)."""
    box_halfwidth: float = 10.0
    """Half-width of the start box theta +- box_halfwidth for unbounded activations (state units)."""
    divergence_radius: float = 1e8
    """A start diverges when ||x||_inf exceeds this (state units); only reachable with unbounded activations."""
    hybrid_factor: float = 100.0
    """Initial trust radius of the hybrid search, as a multiple of the scaled norm of the start (MINPACK ``factor``)."""
    max_backtrack: int = 12
    """Step halvings in the Armijo line search of the deflated Newton rounds."""
    index_retries: int = 2
    """When the index sum proves more equilibria missing than the Chao1 estimate expects (bounded activations, search paths), search again with twice the starts, up to this many times (the first starts are the same, so nothing found is lost)."""
    deflation_rounds: int = 0
    """Rounds of deflated Newton after the plain search (0 disables deflation)."""
    deflation_starts: int = 32
    """Starts (the first of the ``n_starts``) used in each deflation round."""
    deflation_power: float = 2.0
    """Power p of the deflation operator prod_r (||x - r||^-p + shift)."""
    deflation_shift: float = 1.0
    """Shift of the deflation operator."""
    exact_paths: bool = True
    """Use the exact linear / feedforward / polynomial / low-rank paths when they apply."""
    lowrank_max_fraction: float = 0.5
    """Use the low-rank reduction when the numerical rank r of W satisfies r <= fraction * N."""
    rank_rtol: float = 1e-10
    """Singular values <= rank_rtol * s_max count as zero (rank of W, singularity of W/4 - I)."""
    hyperbolic_tol: float = 1e-8
    """Eigenvalues with |Re lambda| <= hyperbolic_tol (1/time units) make an equilibrium non-hyperbolic."""
    n_polish: int = 4
    """Maximum full Newton steps used to refine each equilibrium after deduplication."""
    chunk_elements: int = 4_194_304
    """Memory budget (float64 elements) of per-chunk Newton temporaries."""


@dataclass(frozen=True, eq=False)
class Equilibria:
    """Equilibria of one network (E found), ordered deterministically.

    Order: stable equilibria first, then by number of unstable directions ascending, then
    by hits descending, then lexicographically by coordinates. Eigenvalues of each
    equilibrium are sorted by real part descending, then imaginary part descending.

    Attributes
    ----------
    x : array, shape (E, N)
        Coordinates (state units).
    residual : array, shape (E,)
        Relative residual ||f(x)||_inf / (1 + ||x||_inf).
    jacobian_eigenvalues : complex array, shape (E, N)
        Eigenvalues of J(x) = -I + W diag(sigma'(x)) (1/time units).
    eq_type : int8 array, shape (E,)
        :class:`koopnet._flags.EquilibriumType` codes.
    n_unstable_dims : int array, shape (E,)
        Eigenvalues with Re > hyperbolic_tol.
    hits : int array, shape (E,)
        Random starts that converged to the equilibrium (0 for exact paths, homotopy and deflation finds).
    crossings : int array, shape (E,)
        Homotopy-path crossings of lam = 1 at the equilibrium.
    strategy : int8 array, shape (E,)
        :class:`EquilibriumStrategy` that found it (the first in the enum's order when several did).
    n_starts, n_converged : int
        Starts used and starts converged (0, 0 for exact paths).
    n_estimate, n_estimate_se : float
        Estimated total number of equilibria (Chao1, bias-corrected, over the random starts'
        hits, or over the homotopy crossings when no random starts were used; raised to the index-theorem
        lower bound found + |1 - index_sum| when below it) and its standard error;
        exact count and 0 for exact paths, 1 and 0 for contraction-certified and feedforward
        networks; NaN when nothing can be counted (status singular or no_convergence, or fewer than
        two homotopy paths crossed when no random starts were used).
    contraction_certified : bool
        ||W||_2 Lip(sigma) < 1: exactly one, globally stable equilibrium.
    method : EquilibriumMethod
    status : EquilibriumStatus
    rank : int
        Numerical rank of W (the reduced dimension for ``lowrank``).
    index_sum : int or None
        Sum of the Poincare-Hopf indices sign det J(x*) (-1)^N = (-1)^(n_unstable_dims) over
        the equilibria found; None when the index theorem does not apply (unbounded
        activation, or a non-hyperbolic equilibrium). With bounded sigma the field points
        inward on a large box, so over *all* equilibria the sum is 1 (SCIENCE.md 3).
    """

    x: np.ndarray
    residual: np.ndarray
    jacobian_eigenvalues: np.ndarray
    eq_type: np.ndarray
    n_unstable_dims: np.ndarray
    hits: np.ndarray
    n_starts: int
    n_converged: int
    n_estimate: float
    n_estimate_se: float
    contraction_certified: bool
    method: EquilibriumMethod
    status: EquilibriumStatus
    rank: int = field(default=-1)
    index_sum: int | None = None
    crossings: np.ndarray | None = None
    strategy: np.ndarray | None = None

    @property
    def n_equilibria(self) -> int:
        return self.x.shape[0]

    @property
    def n_missing_min(self) -> int:
        """Equilibria provably not found: |1 - index_sum| (each one changes the sum by 1); -1
        when the index theorem does not apply."""
        return -1 if self.index_sum is None else abs(1 - self.index_sum)

    @property
    def n_stable(self) -> int:
        return int(np.isin(self.eq_type, [int(t) for t in STABLE_TYPES]).sum())

    @property
    def fraction_converged(self) -> float:
        """Converged fraction of the starts (1 for a successful exact path, 0 if it failed)."""
        if self.n_starts == 0:
            return 1.0 if self.n_equilibria > 0 else 0.0
        return self.n_converged / self.n_starts

    @property
    def stable(self) -> np.ndarray:
        """Boolean mask (E,) of stable equilibria."""
        return np.isin(self.eq_type, [int(t) for t in STABLE_TYPES])


# ----------------------------------------------------------------------------- helpers


def search_box(
    W: np.ndarray, theta: np.ndarray, activation: Activation, halfwidth: float = 10.0
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Box containing every equilibrium (bounded sigma) or the configured start box.

    For sigma with range [a, b] every equilibrium satisfies
    x_i in theta_i + [sum_j min(a W_ij, b W_ij), sum_j max(a W_ij, b W_ij)] (SCIENCE.md
    section 3: logistic and tanh boxes). Unbounded sigma: theta +- halfwidth.

    Parameters
    ----------
    W : array, shape (..., N, N)
    theta : array, shape (..., N)
    activation : Activation
    halfwidth : float

    Returns
    -------
    lower, upper : arrays, shape (..., N)
    exact : bool
        True when the box provably contains every equilibrium.
    """
    if activation.bounds is None:
        return theta - halfwidth, theta + halfwidth, False
    a, b = activation.bounds
    lo = np.minimum(a * W, b * W).sum(axis=-1)
    hi = np.maximum(a * W, b * W).sum(axis=-1)
    return theta + lo, theta + hi, True


def contraction_certificate(W: np.ndarray, activation: Activation) -> np.ndarray:
    """||W||_2 Lip(sigma) < 1 for each W of shape (..., N, N): a unique, globally stable equilibrium."""
    if not np.isfinite(activation.lipschitz):
        return np.zeros(W.shape[:-2], dtype=bool)
    s = np.linalg.svd(W, compute_uv=False)
    return s[..., 0] * activation.lipschitz < 1.0


def is_feedforward(W: np.ndarray) -> np.ndarray:
    """True where the support of W is acyclic (W nilpotent by pattern, no self-loops).

    Parameters
    ----------
    W : array, shape (..., N, N)

    Returns
    -------
    bool array, shape (...)
    """
    nz = W != 0
    N = W.shape[-1]
    # a self-loop or a pair of opposite links is a cycle: dense W is rejected without the powers
    cyclic = np.diagonal(nz, axis1=-2, axis2=-1).any(axis=-1) | (nz & np.swapaxes(nz, -1, -2)).any(axis=(-2, -1))
    if cyclic.all():
        return ~cyclic
    P = nz.astype(float)
    for _ in range(int(np.ceil(np.log2(max(N, 2))))):  # P^(2^k), 2^k >= N
        P = (P @ P > 0).astype(float)
    return ~P.any(axis=(-2, -1))


def numerical_rank(W: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Number of singular values of W (..., N, N) above rtol * s_max (0 for W = 0)."""
    s = np.linalg.svd(W, compute_uv=False)
    return dimension.numerical_rank(s, tol=rtol * s[..., 0])


def classify_equilibrium(
    eigenvalues: np.ndarray, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Type and number of unstable directions from sorted Jacobian eigenvalues.

    Parameters
    ----------
    eigenvalues : complex array, shape (..., N)
        Sorted by real part descending.
    tol : float or array, shape (...)
        |Re lambda| <= tol counts as zero (non-hyperbolic); one tolerance per equilibrium
        when an array (the eigenvalue uncertainty of a degenerate equilibrium).

    Returns
    -------
    eq_type : int8 array, shape (...)
        Stable/unstable *focus* when the eigenvalue that dominates the approach (largest real
        part for stable, smallest for unstable) is complex, *node* otherwise; ``saddle`` when
        there are both stable and unstable directions.
    n_unstable_dims : int array, shape (...)
    """
    re, im = eigenvalues.real, eigenvalues.imag
    tol = np.asarray(tol, dtype=float)
    n_unst = (re > tol[..., None]).sum(axis=-1)
    n_stab = (re < -tol[..., None]).sum(axis=-1)
    n = eigenvalues.shape[-1]
    t = np.full(eigenvalues.shape[:-1], int(EquilibriumType.non_hyperbolic), dtype=np.int8)
    lead_cplx = np.abs(im[..., 0]) > tol
    trail_cplx = np.abs(im[..., -1]) > tol
    stable = n_stab == n
    unstable = n_unst == n
    t[stable] = np.where(
        lead_cplx[stable], EquilibriumType.stable_focus, EquilibriumType.stable_node
    )
    t[unstable] = np.where(
        trail_cplx[unstable], EquilibriumType.unstable_focus, EquilibriumType.unstable_node
    )
    t[(n_unst > 0) & (n_stab > 0) & (n_unst + n_stab == n)] = EquilibriumType.saddle
    return t, n_unst


def chao1(hits: np.ndarray, n_observed: int) -> tuple[float, float]:
    """Bias-corrected Chao1 estimate of the number of equilibria and its standard error.

    Parameters
    ----------
    hits : int array, shape (E,)
        Starts that landed on each equilibrium (0 for ones found otherwise, e.g. deflation).
    n_observed : int
        Equilibria found (>= number with hits > 0).

    Returns
    -------
    estimate, standard_error : float
        S = S_obs + (n-1)/n f1 (f1 - 1) / (2 (f2 + 1)), n = sum(hits), f_k the number of
        equilibria hit k times, with the variance of this bias-corrected form (Chao 1987;
        both f2 = 0 and f2 > 0 cases as in EstimateS).
    """
    hits = np.asarray(hits)
    n = int(hits.sum())
    f1 = float((hits == 1).sum())
    f2 = float((hits == 2).sum())
    if n == 0:
        return float(n_observed), 0.0
    a = (n - 1) / n
    est = n_observed + a * f1 * (f1 - 1.0) / (2.0 * (f2 + 1.0))
    if f1 == 0:
        return float(est), 0.0
    if f2 > 0:  # variance of the bias-corrected form (EstimateS, Colwell 2013, appendix B)
        var = a * f1 * (f1 - 1.0) / (2.0 * (f2 + 1.0))
        var += a**2 * f1 * (2.0 * f1 - 1.0) ** 2 / (4.0 * (f2 + 1.0) ** 2)
        var += a**2 * f1**2 * f2 * (f1 - 1.0) ** 2 / (4.0 * (f2 + 1.0) ** 4)
    else:
        var = a * f1 * (f1 - 1.0) / 2.0 + a**2 * f1 * (2.0 * f1 - 1.0) ** 2 / 4.0
        var -= a**2 * f1**4 / (4.0 * est)
    return float(est), float(np.sqrt(max(var, 0.0)))


def _odd_symmetric(W: np.ndarray, theta: np.ndarray, act: Activation) -> np.ndarray:
    """(B,) True where theta + sigma(0) W 1 = 0, so f(-x) = -f(x) (every shipped sigma has
    sigma(-x) = 2 sigma(0) - sigma(x)) and the equilibria come in pairs x*, -x*."""
    sigma0 = float(act.sigma(np.zeros(1))[0])
    centre = theta + sigma0 * W.sum(axis=-1)
    return np.max(np.abs(centre), axis=-1) <= 1e-12 * (
        1.0 + np.max(np.abs(W).sum(axis=-1), axis=-1)
    )


def _mirror_pairs(x: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Mirror pairs {x*, -x*} among the points x (E, N) of an odd-symmetric network.

    Returns
    -------
    pair : int array, shape (E,)
        Index of the first point of each point's pair.
    mirrored : bool array, shape (E,)
        Whether the point's mirror is among x (x* = 0 is its own mirror).
    """
    E = x.shape[0]
    scale = rtol * (1.0 + np.max(np.abs(x), axis=-1, initial=0.0))
    d = np.max(np.abs(x[:, None, :] + x[None, :, :]), axis=-1, initial=0.0)  # |x_i + x_j|
    close = d <= scale[:, None]
    pair = np.full(E, -1)
    for i in range(E):
        if pair[i] < 0:
            j = np.flatnonzero(close[i] & (pair < 0) & (np.arange(E) > i))
            pair[i] = i
            if j.size:
                pair[j[0]] = i
    mirrored = close[np.arange(E), np.arange(E)] | (np.bincount(pair, minlength=E)[pair] == 2)
    return pair, mirrored


def _mirror_chao1(x: np.ndarray, counts: np.ndarray, rtol: float) -> tuple[float, float, int]:
    """Chao1 of an odd-symmetric network over its mirror pairs {x*, -x*} (points x (E, N)).

    The random starts (uniform in a box symmetric about 0) and the homotopy starts
    (b = W (u - 1/2)) are symmetric in distribution, so a pair is one species sampled with the
    summed counts: twice the samples per species of the unpooled estimate. Equilibria =
    2 pairs - (1 if x* = 0 is found: its own mirror); unseen pairs count 2 (x* = 0 is the only
    self-mirror point). A point whose mirror is not in x counts as a pair (reflection adds it).

    Returns
    -------
    estimate, standard_error : float
        Of the number of equilibria.
    observed : int
        Equilibria found once every point's mirror is added.
    """
    if x.shape[0] == 0:
        return 0.0, 0.0, 0
    pair, _ = _mirror_pairs(x, rtol)
    leaders = np.flatnonzero(pair == np.arange(x.shape[0]))
    pooled = np.bincount(pair, weights=counts, minlength=x.shape[0])[leaders].astype(np.int64)
    scale = rtol * (1.0 + np.max(np.abs(x[leaders]), axis=-1))
    n_self = int(np.sum(2.0 * np.max(np.abs(x[leaders]), axis=-1) <= scale))  # x* = 0
    est, se = chao1(pooled, leaders.size)
    return 2.0 * est - n_self, 2.0 * se, 2 * leaders.size - n_self


def _dedup(points: np.ndarray, ok: np.ndarray, rtol: float) -> np.ndarray:
    """Leader clustering of points (B, M, d) where ok (B, M): label = index of its leader, -1 if not ok.

    The leader of a cluster is its first (lowest-index) member; a point joins when
    ||p - leader||_inf <= rtol (1 + ||leader||_inf). Iterations = most clusters in a network.
    """
    B, M, _ = points.shape
    label = np.full((B, M), -1, dtype=np.int64)
    pending = ok.copy()
    while True:
        nets = np.flatnonzero(pending.any(axis=1))
        if nets.size == 0:
            return label
        first = np.argmax(pending[nets], axis=1)
        lead = points[nets, first]  # (b, d)
        dist = np.max(np.abs(points[nets] - lead[:, None, :]), axis=-1)
        scale = rtol * (1.0 + np.max(np.abs(lead), axis=-1))
        join = pending[nets] & (dist <= scale[:, None])
        join[np.arange(nets.size), first] = True
        sub = label[nets]
        sub[join] = np.broadcast_to(first[:, None], join.shape)[join]
        label[nets] = sub
        pend = pending[nets]
        pend[join] = False
        pending[nets] = pend


def _draw_unit_starts(seeds: Sequence[int], n_starts: int, dim: int) -> np.ndarray:
    """Uniform [0, 1) draws (B, S, dim) from each network's ``equilibria`` stream."""
    return np.stack([stage_rng(int(s), STAGE).random((n_starts, dim)) for s in seeds])


def _full_problem(W: np.ndarray, theta: np.ndarray, act: Activation) -> NewtonProblem:
    return NewtonProblem(A=W, c=None, basis=None, e=theta, activation=act)


def _polish(problem: NewtonProblem, x: np.ndarray, net: np.ndarray, n_steps: int):
    """Undamped Newton refinement of equilibria x (K, N) of networks ``net``.

    Steps are taken while they lower the relative residual (at most ``n_steps``), so
    equilibria end near machine precision, not just below the convergence tolerance.
    """
    x = x.copy()
    F = problem.residual(x, net)
    res = relative_residual(F, x)
    todo = np.flatnonzero(np.isfinite(res) & (res > 0))
    for _ in range(n_steps):
        if todo.size == 0:
            break
        if todo.size == 0:
            break
        J = problem.jacobian(x[todo], net[todo])
        step = _solve(J, -F[todo])
        trial = x[todo] + step
        with np.errstate(over="ignore", invalid="ignore"):
            Ft = problem.residual(trial, net[todo])
            rt = relative_residual(Ft, trial)
        better = np.isfinite(rt) & (rt < res[todo])
        x[todo[better]] = trial[better]
        F[todo[better]] = Ft[better]
        res[todo[better]] = rt[better]
        todo = todo[better & (rt > 0)]
    return x, res


#: Largest root multiplicity assumed when bounding the distance to a root by the Newton
#: correction (which is |x - x*| / m at a root of multiplicity m).
_MAX_MULTIPLICITY = 3


def _position_error(problem: NewtonProblem, x: np.ndarray, net: np.ndarray, tol: float):
    """Bound on |x - x*|_inf for refined points x (K, N): m ||J^-1 F||_inf, m = _MAX_MULTIPLICITY.

    Where J is singular the bound falls back to tol^(1/3) (1 + ||x||_inf), the distance at which
    a triple root has residual tol. Hyperbolic roots refined to round-off give ~1e-15.
    """
    cap = tol ** (1.0 / 3.0) * (1.0 + np.max(np.abs(x), axis=-1, initial=0.0))
    if x.shape[0] == 0:
        return cap
    F = problem.residual(x, net)
    with np.errstate(invalid="ignore", over="ignore"):
        corr = np.max(np.abs(_solve(problem.jacobian(x, net), F)), axis=-1)
    corr = np.where(np.isfinite(corr), _MAX_MULTIPLICITY * corr, np.inf)
    return np.minimum(corr, cap)


def _merge_refined(x, res, err, hits, net, rtol, crossings, strategy):
    """Merge refined points of a network that are one equilibrium within their position errors.

    Points are ranked by position error, then residual; each leader absorbs the points with
    ||x_i - x_j||_inf <= rtol (1 + ||x_i||_inf) + err_i + err_j and their hits. Near a
    degenerate root many starts stop at residual <= tol but far apart; this keeps one of them.

    Returns
    -------
    x, res, err, hits, net, crossings, strategy : the leaders, in network order (hits and
    crossings summed over the merged points, strategy their smallest code).
    """
    keep = np.zeros(x.shape[0], dtype=bool)
    hits, crossings, strategy = hits.copy(), crossings.copy(), strategy.copy()
    for b in np.unique(net):
        idx = np.flatnonzero(net == b)
        idx = idx[np.lexsort((res[idx], err[idx]))]
        pending = np.ones(idx.size, dtype=bool)
        for i in range(idx.size):
            if not pending[i]:
                continue
            lead = idx[i]
            d = np.max(np.abs(x[idx] - x[lead]), axis=-1)
            join = pending & (d <= rtol * (1.0 + np.max(np.abs(x[lead]))) + err[lead] + err[idx])
            hits[lead] = hits[idx[join]].sum()
            crossings[lead] = crossings[idx[join]].sum()
            strategy[lead] = strategy[idx[join]].min()
            pending &= ~join
            keep[lead] = True
    order = np.flatnonzero(keep)
    order = order[np.argsort(net[order], kind="stable")]
    return (
        x[order],
        res[order],
        err[order],
        hits[order],
        net[order],
        crossings[order],
        strategy[order],
    )


# ------------------------------------------------------------------------ method paths


@dataclass
class _Found:
    """Raw per-network result of one method path, before refinement and classification."""

    x: np.ndarray  # (E, N)
    hits: np.ndarray  # (E,)
    n_starts: int = 0
    n_converged: int = 0
    status: EquilibriumStatus = EquilibriumStatus.ok
    exact_count: bool = False
    eig_minus_one: bool = False  # feedforward: spectrum exactly -1
    strategy: np.ndarray | None = None  # (E,) EquilibriumStrategy; None: all exact
    crossings: np.ndarray | None = None  # (E,) homotopy crossings; None: zeros
    n_paths_crossed: int = 0  # homotopy paths that crossed lam = 1

    def __post_init__(self):
        E = self.x.shape[0]
        if self.strategy is None:
            self.strategy = np.full(E, int(EquilibriumStrategy.exact), np.int8)
        if self.crossings is None:
            self.crossings = np.zeros(E, np.int64)


def _linear_path(W, theta, settings):
    B, N, _ = W.shape
    A = 0.25 * W - np.eye(N)
    b = 0.5 * W.sum(axis=-1) + theta
    s = np.linalg.svd(A, compute_uv=False)
    singular = s[:, -1] <= settings.rank_rtol * s[:, 0]
    out = []
    for k in range(B):
        if singular[k]:
            # A x = -b has a continuum of solutions when b is in the range of A, none otherwise
            # (e.g. W = 4 I: f = W/2 + theta is constant)
            x, *_ = np.linalg.lstsq(A[k], -b[k], rcond=settings.rank_rtol)
            gap = np.max(np.abs(A[k] @ x + b[k]), initial=0.0)
            consistent = gap <= settings.tol_residual * (1.0 + np.max(np.abs(b[k]), initial=0.0))
            status = EquilibriumStatus.singular if consistent else EquilibriumStatus.no_equilibrium
            out.append(_Found(np.zeros((0, N)), np.zeros(0, np.int64), status=status))
        else:
            x = np.linalg.solve(A[k : k + 1], -b[k : k + 1, :, None])[0, :, 0]
            out.append(_Found(x[None], np.zeros(1, np.int64), exact_count=True))
    return out


def _feedforward_path(W, theta, act):
    """Forward substitution in topological order: the unique equilibrium of an acyclic W."""
    B, N, _ = W.shape
    edge = W != 0
    level = np.zeros((B, N), dtype=np.int64)  # longest path from a source unit
    for _ in range(N - 1):
        level = np.where(edge, level[:, None, :] + 1, 0).max(axis=-1)
    x = theta.astype(float).copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for lv in range(1, int(level.max(initial=0)) + 1):
            # inputs of level-lv units are final; other units' (unused) values are masked out,
            # so an overflow there cannot leak in as 0 * inf
            drive = np.where(edge, W * act.sigma(x)[:, None, :], 0.0).sum(axis=-1)
            x = np.where(level == lv, theta + drive, x)
    out = []
    for k in range(B):
        if np.all(np.isfinite(x[k])):
            out.append(
                _Found(x[k][None], np.zeros(1, np.int64), exact_count=True, eig_minus_one=True)
            )
        else:
            out.append(
                _Found(np.zeros((0, N)), np.zeros(0, np.int64), status=EquilibriumStatus.overflow)
            )
    return out


def _polynomial_path(W, theta, act, settings):
    """N = 1: real roots of p(x) = (w c0 + theta) + (w c1 - 1) x + w c2 x^2 + w c3 x^3."""
    B = W.shape[0]
    coef = np.zeros((B, 4))
    poly = np.asarray(act.polynomial, float)
    w = W[:, 0, 0]
    coef[:, : poly.size] = w[:, None] * poly[None, :]
    coef[:, 0] += theta[:, 0]
    coef[:, 1] -= 1.0
    out = []
    for k in range(B):  # tiny 1-D problems; companion eigenvalues as numpy.roots
        c = coef[k]
        nz = np.flatnonzero(c != 0.0)
        if nz.size == 0:
            out.append(
                _Found(np.zeros((0, 1)), np.zeros(0, np.int64), status=EquilibriumStatus.singular)
            )
            continue
        deg = nz[-1]
        if deg == 0:
            out.append(
                _Found(
                    np.zeros((0, 1)), np.zeros(0, np.int64), status=EquilibriumStatus.no_equilibrium
                )
            )
            continue
        # x = scale y makes every monic coefficient <= 1 in modulus (computed in logs: a tiny
        # leading coefficient must not overflow the companion matrix)
        logc = np.log(np.abs(np.where(c[: deg + 1] != 0, c[: deg + 1], 1.0)))
        k = np.flatnonzero(c[:deg] != 0)
        log_scale = np.max((logc[k] - logc[deg]) / (deg - k), initial=0.0)
        monic = np.sign(c[:deg]) * np.exp(logc[:deg] - logc[deg] - (deg - np.arange(deg)) * log_scale)
        monic = np.where(c[:deg] != 0, monic * np.sign(c[deg]), 0.0)
        comp = np.zeros((deg, deg))
        comp[0, :] = -monic[::-1]
        comp[np.arange(1, deg), np.arange(deg - 1)] = 1.0
        with np.errstate(over="ignore"):
            z = np.linalg.eigvals(comp) * np.exp(log_scale)
        real = z[np.abs(z.imag) <= 1e-6 * np.maximum(1.0, np.abs(z))].real
        real = np.sort(real)
        if real.size == 0:
            out.append(
                _Found(
                    np.zeros((0, 1)), np.zeros(0, np.int64), status=EquilibriumStatus.no_equilibrium
                )
            )
            continue
        lab = _dedup(real[None, :, None], np.ones((1, real.size), bool), settings.dedup_rtol)[0]
        xs = real[lab == np.arange(real.size)][:, None]
        out.append(_Found(xs, np.zeros(xs.shape[0], np.int64), exact_count=True))
    return out


def _search_path(problem, seeds, lower, upper, clip, settings, to_state, n_random=None, mirror=None):
    """Powell hybrid search from the random starts of each network (+ deflation); one _Found per network.

    ``to_state`` maps reduced solutions (K, d) of networks ``net`` to unit states (K, N).
    ``mirror`` (B,) marks odd-symmetric networks of the full problem (the saturation test then
    pools mirror pairs). Starts run in rounds (``min_starts``, then ``start_batch`` more) and a
    network leaves when :func:`_saturated`; a network that stopped after n starts has exactly the
    result of a search with n_starts = n (each start is independent, its draws a prefix of the
    stream, the leader clustering order-based).
    """
    B, d = lower.shape
    S = settings.n_starts if n_random is None else n_random
    if S == 0:
        empty = np.zeros((0, problem.n_units))
        return [
            _Found(empty, np.zeros(0, np.int64), status=EquilibriumStatus.no_convergence)
            for _ in range(B)
        ]
    mirror = np.zeros(B, bool) if mirror is None else mirror
    u = _draw_unit_starts(seeds, S, d)
    y0 = lower[:, None, :] + (upper - lower)[:, None, :] * u
    kw = dict(
        tol=settings.tol_residual,
        max_iter=settings.max_iter,
        divergence_radius=settings.divergence_radius,
        chunk_elements=settings.chunk_elements,
    )
    y = y0.copy()
    code = np.zeros((B, S), np.int8)
    n_done = np.zeros(B, np.int64)
    running = np.ones(B, dtype=bool)
    early = settings.stop_expected_missing > 0
    n_end = min(S, max(settings.min_starts, 1)) if early else S
    while True:
        sel = np.flatnonzero(running)
        n0 = int(n_done[sel[0]])  # every running network has run the same starts
        ys, cs, _, _ = powell_hybrid(
            _subproblem(problem, sel),
            y0[sel, n0:n_end],
            factor=settings.hybrid_factor,
            tol=settings.tol_residual,
            max_iter=settings.max_iter,
            divergence_radius=settings.divergence_radius,
        )
        y[sel, n0:n_end], code[sel, n0:n_end] = ys, cs
        n_done[sel] = n_end
        if n_end >= S:
            break
        for b in sel:
            conv = code[b, :n_end] == StartCode.converged
            running[b] = not _saturated(problem, b, y[b, :n_end], conv, mirror[b], settings)
        if not running.any():
            break
        n_end = min(S, n_end + max(settings.start_batch, 1))
    ok = (code == StartCode.converged) & (np.arange(S)[None, :] < n_done[:, None])
    label = _dedup(y, ok, settings.dedup_rtol)
    leaders = [np.flatnonzero(label[b] == np.arange(S)) for b in range(B)]
    roots = [y[b, leaders[b]] for b in range(B)]
    hits = [(label[b][:, None] == leaders[b][None, :]).sum(axis=0) for b in range(B)]
    n_conv = ok.sum(axis=1)

    S_def = min(settings.deflation_starts, S)
    for _ in range(settings.deflation_rounds if S_def > 0 else 0):
        R = max(max(r.shape[0] for r in roots), 1)
        droots = pad_stack(roots, axis_len=R, fill=0.0)
        dmask = pad_stack([np.ones(r.shape[0], bool) for r in roots], axis_len=R, fill=False)
        yd, cd, _, _ = damped_newton(
            problem,
            y0[:, :S_def],
            lower,
            upper,
            deflation_roots=droots,
            deflation_mask=dmask,
            deflation_power=settings.deflation_power,
            deflation_shift=settings.deflation_shift,
            clip=clip,
            max_backtrack=settings.max_backtrack,
            **kw,
        )
        # merge: known roots first so that they stay the leaders
        allp = np.concatenate([droots, yd], axis=1)
        allok = np.concatenate([dmask, cd == StartCode.converged], axis=1)
        lab = _dedup(allp, allok, settings.dedup_rtol)
        grew = False
        for b in range(B):
            new = np.flatnonzero(lab[b, R:] == R + np.arange(S_def))
            if new.size:
                grew = True
                roots[b] = np.concatenate([roots[b], yd[b, new]])
                hits[b] = np.concatenate([hits[b], np.zeros(new.size, np.int64)])
        if not grew:
            break

    out = []
    for b in range(B):
        x = (
            to_state(roots[b], np.full(roots[b].shape[0], b))
            if roots[b].size
            else np.zeros((0, problem.n_units))
        )
        status = EquilibriumStatus.ok if x.shape[0] else EquilibriumStatus.no_convergence
        strat = np.where(
            hits[b] > 0, int(EquilibriumStrategy.random_start), int(EquilibriumStrategy.deflation)
        ).astype(np.int8)
        out.append(
            _Found(x, hits[b].astype(np.int64), int(n_done[b]), int(n_conv[b]), status, strategy=strat)
        )
    return out


def _subproblem(problem: NewtonProblem, sel: np.ndarray) -> NewtonProblem:
    """The networks ``sel`` of a problem."""
    return NewtonProblem(
        A=problem.A[sel],
        c=None if problem.c is None else problem.c[sel],
        basis=None if problem.basis is None else problem.basis[sel],
        e=None if problem.e is None else problem.e[sel],
        activation=problem.activation,
    )


def _saturated(problem, b, y, converged, mirror, settings) -> bool:
    """Whether network ``b``'s random starts so far (y (n, d), converged (n,)) may stop.

    Species accumulation: the starts are a sample of the equilibria's basins. Stop when the
    index theorem proves none missing (bounded sigma: the Poincare-Hopf indices
    sign det(-J) of all equilibria sum to 1; in the reduced coordinates of the low-rank path
    det(-J) has the same sign by Sylvester's identity) and Chao1 expects fewer than
    ``stop_expected_missing`` missing (pooled over mirror pairs in odd-symmetric networks,
    where -x* counts with x*: J(-x*) = J(x*) as sigma' is even).
    """
    if problem.activation.bounds is None or not converged.any():
        return False
    n = y.shape[0]
    label = _dedup(y[None], converged[None], settings.dedup_rtol)[0]
    lead = np.flatnonzero(label == np.arange(n))
    hits = (label[:, None] == lead[None, :]).sum(axis=0)
    roots = y[lead]
    if mirror:
        est, _, observed = _mirror_chao1(roots, hits, settings.dedup_rtol)
        _, mirrored = _mirror_pairs(roots, settings.dedup_rtol)
        weight = np.where(mirrored, 1, 2)  # the mirror that reflection will add has the same index
    else:
        est, _ = chao1(hits, lead.size)
        observed, weight = lead.size, np.ones(lead.size, np.int64)
    if not est - observed < settings.stop_expected_missing:
        return False
    sign, _ = np.linalg.slogdet(-problem.jacobian(roots, np.full(lead.size, b)))
    return int(np.sum(weight * sign)) == 1


def _add_homotopy_finds(f: _Found, W, theta, act, seed, settings, n_paths: int) -> None:
    """Append the equilibria of at most ``n_paths`` homotopy paths of one network to its raw result ``f``."""
    from ._equilibria_homotopy import homotopy_crossings

    a, b_ = act.bounds
    N = theta.size
    u = a + (b_ - a) * stage_rng(seed, STAGE + "_homotopy").random((settings.homotopy_paths, N))[:n_paths]
    starts = theta + u @ W.T  # path starts in theta + W sigma(R^N), which holds every equilibrium
    x, path, _ = homotopy_crossings(
        W, theta, act, starts, max_work=settings.homotopy_work, tol=settings.tol_residual
    )
    if x.shape[0] == 0:
        return
    f.x = np.concatenate([f.x, x])
    f.hits = np.concatenate([f.hits, np.zeros(x.shape[0], np.int64)])
    f.crossings = np.concatenate([f.crossings, np.ones(x.shape[0], np.int64)])
    f.strategy = np.concatenate(
        [f.strategy, np.full(x.shape[0], int(EquilibriumStrategy.homotopy), np.int8)]
    )
    f.status = EquilibriumStatus.ok
    f.n_paths_crossed = int(np.unique(path).size)


# ------------------------------------------------------------------------------ driver


def find_equilibria_batch(
    batch: NetworkBatch, seeds: Sequence[int], settings: EquilibriumSettings | None = None
) -> tuple[Equilibria, ...]:
    """Equilibria of every network of a batch.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    seeds : sequence of int, length B
        Per-network seeds; starts come from ``stage_rng(seed, "equilibria")``.
    settings : EquilibriumSettings, optional

    Returns
    -------
    tuple of Equilibria, length B
        Each identical (bitwise) to ``find_equilibria(batch[b], settings, seeds[b])``. A network
        whose index sum proves more equilibria missing than its Chao1 estimate expects is searched
        again with 2, 4, ... times ``n_starts`` (``index_retries``); its ``n_starts`` says how many
        starts the kept search used.
    """
    settings = settings or EquilibriumSettings()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(batch):
        raise ValueError(f"need one seed per network: {len(seeds)} seeds for {len(batch)} networks")
    results = list(_find_batch(batch, seeds, settings))
    n_starts = settings.n_starts
    searched = (EquilibriumMethod.newton, EquilibriumMethod.lowrank)
    for _ in range(settings.index_retries):
        # the index theorem proves equilibria missing where Chao1 claims (near) completeness: a
        # search with twice the starts (a superset: starts and their arithmetic do not depend on
        # how many there are). Where Chao1 already expects more, more starts rarely finish the job
        # (large N) and the data say the search is incomplete anyway.
        redo = [
            b
            for b, r in enumerate(results)
            if r.n_missing_min > 0
            and r.method in searched
            and r.n_starts > 0
            and chao1(r.hits, r.n_equilibria)[0] < r.n_equilibria + r.n_missing_min
        ]
        if not redo:
            break
        n_starts *= 2
        sub = NetworkBatch(batch.W[redo], batch.theta[redo], batch.activation)
        again = _find_batch(sub, [seeds[b] for b in redo], replace(settings, n_starts=n_starts))
        for b, r in zip(redo, again):
            results[b] = r
    return tuple(results)


def _find_batch(
    batch: NetworkBatch, seeds: list[int], settings: EquilibriumSettings
) -> tuple[Equilibria, ...]:
    """One search of every network with ``settings.n_starts`` starts (see find_equilibria_batch)."""
    W, theta, act = batch.W, batch.theta, batch.activation
    B, N = theta.shape

    sv = np.linalg.svd(W, compute_uv=True)
    Us, s, Vt = sv.U, sv.S, sv.Vh
    rank = (s > settings.rank_rtol * s[:, :1]).sum(axis=-1)
    certified = (
        s[:, 0] * act.lipschitz < 1.0 if np.isfinite(act.lipschitz) else np.zeros(B, dtype=bool)
    )
    method = np.full(B, int(EquilibriumMethod.newton), dtype=np.int8)
    if settings.exact_paths:
        if act.name == "linear":
            method[:] = EquilibriumMethod.linear
        elif N == 1 and act.polynomial is not None:
            method[:] = EquilibriumMethod.polynomial
        else:
            ff = is_feedforward(W)
            method[ff] = EquilibriumMethod.feedforward
            low = ~ff & (rank < N) & (rank <= settings.lowrank_max_fraction * N)
            method[low] = EquilibriumMethod.lowrank

    found: list[_Found | None] = [None] * B
    full = _full_problem(W, theta, act)
    symmetric = _odd_symmetric(W, theta, act)

    def put(sel, results):
        for b, r in zip(sel, results):
            found[b] = r

    sel = np.flatnonzero(method == EquilibriumMethod.linear)
    if sel.size:
        put(sel, _linear_path(W[sel], theta[sel], settings))
    sel = np.flatnonzero(method == EquilibriumMethod.feedforward)
    if sel.size:
        put(sel, _feedforward_path(W[sel], theta[sel], act))
    sel = np.flatnonzero(method == EquilibriumMethod.polynomial)
    if sel.size:
        put(sel, _polynomial_path(W[sel], theta[sel], act, settings))
    sel = np.flatnonzero(method == EquilibriumMethod.newton)
    homotopy = act.bounds is not None and settings.homotopy_work > 0
    if sel.size:
        lo, hi, exact_box = search_box(W[sel], theta[sel], act, settings.box_halfwidth)
        n_random = 0 if homotopy and N > settings.random_start_max_units else settings.n_starts
        put(
            sel,
            _search_path(
                _full_problem(W[sel], theta[sel], act),
                [seeds[b] for b in sel],
                lo,
                hi,
                exact_box,
                settings,
                lambda y, net: y,
                n_random,
                symmetric[sel],
            ),
        )
        # homotopy paths where random starts are off (large N) or found nothing: every
        # bounded network then reports at least one equilibrium
        for b in sel if homotopy else ():
            if n_random == 0 or found[b].x.shape[0] == 0:
                # a contraction has exactly one equilibrium, and every path reaches it
                n_paths = 1 if certified[b] else settings.homotopy_paths
                _add_homotopy_finds(found[b], W[b], theta[b], act, seeds[b], settings, n_paths)
    for r in np.unique(rank[method == EquilibriumMethod.lowrank]):
        sel = np.flatnonzero((method == EquilibriumMethod.lowrank) & (rank == r))
        U = Us[sel][:, :, :r]  # (b, N, r)
        A = s[sel][:, :r, None] * Vt[sel][:, :r, :]  # (b, r, N) = S V^T
        prob = NewtonProblem(A=A, c=theta[sel], basis=U, e=None, activation=act)
        if act.bounds is not None:
            a_, b_ = act.bounds
            lo = np.minimum(a_ * A, b_ * A).sum(axis=-1)
            hi = np.maximum(a_ * A, b_ * A).sum(axis=-1)
            clip = True
        else:
            hw = settings.box_halfwidth * np.abs(U).sum(axis=1)
            lo, hi, clip = -hw, hw, False
        put(sel, _search_path(prob, [seeds[b] for b in sel], lo, hi, clip, settings, prob.state))

    # ---- odd-symmetric networks: -x* is an equilibrium for every x* (f(-x) = -f(x))
    searched = np.isin(method, [int(EquilibriumMethod.newton), int(EquilibriumMethod.lowrank)])
    for b in np.flatnonzero(symmetric & searched):
        f = found[b]
        if f.x.shape[0]:
            m = f.x.shape[0]
            f.x = np.concatenate([f.x, -f.x])
            f.hits = np.concatenate([f.hits, np.zeros(m, np.int64)])
            f.crossings = np.concatenate([f.crossings, np.zeros(m, np.int64)])
            f.strategy = np.concatenate(
                [f.strategy, np.full(m, int(EquilibriumStrategy.reflection), np.int8)]
            )

    # ---- refine, merge what refinement brought together, eigenvalues, classify
    counts = np.array([f.x.shape[0] for f in found])
    net = np.repeat(np.arange(B), counts)
    X = np.concatenate([f.x for f in found]) if counts.sum() else np.zeros((0, N))
    X, res = _polish(full, X, net, settings.n_polish)
    err = _position_error(full, X, net, settings.tol_residual)
    hits = np.concatenate([f.hits for f in found]) if counts.sum() else np.zeros(0, np.int64)
    cross = np.concatenate([f.crossings for f in found]) if counts.sum() else np.zeros(0, np.int64)
    strat = np.concatenate([f.strategy for f in found]) if counts.sum() else np.zeros(0, np.int8)
    X, res, err, hits, net, cross, strat = _merge_refined(
        X, res, err, hits, net, settings.dedup_rtol, cross, strat
    )
    counts = np.bincount(net, minlength=B)
    for b in range(B):
        found[b].hits = hits[net == b]
        found[b].crossings = cross[net == b]
        found[b].strategy = strat[net == b]
    resolved = err <= 0.1 * settings.dedup_rtol * (1.0 + np.max(np.abs(X), axis=-1, initial=0.0))
    ev = np.empty((X.shape[0], N), dtype=complex)
    # odd-symmetric networks: J(-x*) = -I + W diag(sigma'(-x*)) = J(x*) (sigma' is even), so a
    # mirror pair shares one eigendecomposition (half of them at large N, all found in pairs)
    src = np.arange(X.shape[0])
    for b in np.flatnonzero(symmetric & searched):
        idx = np.flatnonzero(net == b)
        src[idx] = idx[_mirror_pairs(X[idx], settings.dedup_rtol)[0]]
    todo = np.flatnonzero(src == np.arange(X.shape[0]))
    chunk = max(1, settings.chunk_elements // max(N * N, 1))
    for c0 in range(0, todo.size, chunk):
        sub = todo[c0 : c0 + chunk]
        ev[sub] = np.linalg.eigvals(full.jacobian(X[sub], net[sub]))
    ev = ev[src]
    minus_one = np.repeat(np.array([f.eig_minus_one for f in found], dtype=bool), counts)
    ev[minus_one] = -1.0 + 0.0j
    ev = sort_eigenvalues(ev)
    # an eigenvalue is only known to within ||dJ|| <= ||W||_2 max|sigma''| |x - x*|: closer to
    # the imaginary axis than that, hyperbolicity is undecided (degenerate equilibria)
    with np.errstate(invalid="ignore", over="ignore"):
        curv = np.max(np.abs(act.d2sigma(X)), axis=-1, initial=0.0)
        ev_err = np.where(minus_one, 0.0, s[net, 0] * curv * err)
    tol_h = np.maximum(settings.hyperbolic_tol, np.nan_to_num(ev_err, nan=np.inf))
    eq_type, n_unst = classify_equilibrium(ev, tol_h)

    results = []
    offsets = np.concatenate([[0], np.cumsum(counts)])
    stable_codes = [int(t) for t in STABLE_TYPES]
    for b in range(B):
        f = found[b]
        sl = slice(offsets[b], offsets[b + 1])
        x, r, e, t, nu, h = X[sl], res[sl], ev[sl], eq_type[sl], n_unst[sl], f.hits
        cr, sg = f.crossings, f.strategy
        not_stable = ~np.isin(t, stable_codes)
        keys = [x[:, i] for i in range(N - 1, -1, -1)] + [-h, nu, not_stable]
        order = np.lexsort(keys) if x.shape[0] else np.zeros(0, np.int64)
        x, r, e, t, nu, h = x[order], r[order], e[order], t[order], nu[order], h[order]
        cr, sg = cr[order], sg[order]
        status = f.status
        if status == EquilibriumStatus.ok and (
            np.any(~(r <= settings.tol_residual)) or not resolved[sl].all()
        ):
            status = EquilibriumStatus.unrefined
        if certified[b] or method[b] == EquilibriumMethod.feedforward:
            est, se = 1.0, 0.0  # proven unique (also when its value overflows)
        elif f.exact_count or status == EquilibriumStatus.no_equilibrium:
            est, se = float(x.shape[0]), 0.0
        elif status in (EquilibriumStatus.singular, EquilibriumStatus.no_convergence):
            est, se = np.nan, np.nan  # a continuum, or nothing to estimate from
        elif f.n_starts > 0 or f.n_paths_crossed >= 2:
            # samples: the random starts' hits, else (large N) the homotopy crossings
            counts = h if f.n_starts > 0 else cr
            if symmetric[b] and method[b] == EquilibriumMethod.newton:
                est, se, _ = _mirror_chao1(x, counts, settings.dedup_rtol)
            else:
                est, se = chao1(counts, x.shape[0])
        else:  # one path's crossings are distinct by construction: no repeat to estimate from
            est, se = np.nan, np.nan
        index_sum = None
        if act.bounds is not None and not np.any(t == EquilibriumType.non_hyperbolic):
            index_sum = int(np.sum((-1) ** nu)) if x.shape[0] else 0
            # an estimate below what the index theorem proves is impossible: raise it
            est = max(est, x.shape[0] + abs(1 - index_sum)) if np.isfinite(est) else est
        results.append(
            Equilibria(
                x=x,
                residual=r,
                jacobian_eigenvalues=e,
                eq_type=t.astype(np.int8),
                n_unstable_dims=nu.astype(np.int64),
                hits=h.astype(np.int64),
                n_starts=f.n_starts,
                n_converged=f.n_converged,
                n_estimate=est,
                n_estimate_se=se,
                contraction_certified=bool(certified[b]),
                method=EquilibriumMethod(int(method[b])),
                status=status,
                rank=int(rank[b]),
                index_sum=index_sum,
                crossings=cr.astype(np.int64),
                strategy=sg.astype(np.int8),
            )
        )
    return tuple(results)


def find_equilibria(
    network: Network, settings: EquilibriumSettings | None = None, seed: int = 0
) -> Equilibria:
    """Find, refine, classify and count the equilibria of one network.

    Parameters
    ----------
    network : Network
    settings : EquilibriumSettings, optional
    seed : int
        Network seed; starts come from ``stage_rng(seed, "equilibria")``.

    Returns
    -------
    Equilibria
    """
    batch = NetworkBatch(network.W[None], network.theta[None], network.activation)
    return find_equilibria_batch(batch, [seed], settings)[0]


# ----------------------------------------------------------------------------- dataset


def equilibria_dataset(
    batch: NetworkBatch, seeds: Sequence[int], settings: EquilibriumSettings | None = None
) -> xr.Dataset:
    """Stage function of the ``equilibria`` rule.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    seeds : sequence of int, length B
    settings : EquilibriumSettings, optional

    Returns
    -------
    xarray.Dataset
        Dimensions ``network`` (B), ``equilibrium`` (max count, >= 1, padded with NaN / -1),
        ``unit`` (N) and ``mode`` (N). Equilibria are ordered as in :class:`Equilibria` (stable
        first), Jacobian eigenvalues by real part descending.
    """
    res = find_equilibria_batch(batch, seeds, settings)
    N = batch.n_units
    E = max(max(r.n_equilibria for r in res), 1)
    net = ("network",)
    neq = ("network", "equilibrium")

    def v(dims, data, long_name, units="1", **attrs):
        return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})

    def flags(dims, data, enum, long_name):
        return xr.Variable(dims, data, flag_attrs(enum, long_name, padding="equilibrium" in dims))

    data = {
        "n_equilibria": v(
            net, np.array([r.n_equilibria for r in res], np.int64), "number of equilibria found"
        ),
        "n_stable": v(
            net, np.array([r.n_stable for r in res], np.int64), "number of stable equilibria found"
        ),
        "n_equilibria_estimate": v(
            net,
            np.array([r.n_estimate for r in res]),
            "estimated total number of equilibria (Chao1; exact for exact paths and contractions)",
        ),
        "n_equilibria_estimate_se": v(
            net, np.array([r.n_estimate_se for r in res]), "standard error of n_equilibria_estimate"
        ),
        "eq_index_sum": v(
            net,
            np.array([np.nan if r.index_sum is None else float(r.index_sum) for r in res]),
            "sum of the Poincare-Hopf indices (-1)^n_unstable_dims of the equilibria found "
            "(1 over all equilibria of a bounded-activation network; NaN: not applicable)",
        ),
        "n_equilibria_missing_min": v(
            net,
            np.array([r.n_missing_min for r in res], np.int64),
            "equilibria provably missed by the search: |1 - eq_index_sum| (-1: not applicable)",
        ),
        "n_starts": v(net, np.array([r.n_starts for r in res], np.int64), "Newton starts used"),
        "n_converged": v(
            net, np.array([r.n_converged for r in res], np.int64), "Newton starts that converged"
        ),
        "fraction_converged": v(
            net,
            np.array([r.fraction_converged for r in res]),
            "fraction of Newton starts that converged",
        ),
        "contraction_certified": xr.Variable(
            net,
            np.array([r.contraction_certified for r in res], np.int8),
            {
                "long_name": "contraction certificate ||W||_2 Lip(sigma) < 1 (unique equilibrium)",
                "units": "1",
                "flag_values": [0, 1],
                "flag_meanings": "not_certified certified",
            },
        ),
        "w_numerical_rank": v(
            net, np.array([r.rank for r in res], np.int64), "numerical rank of W"
        ),
        "equilibrium_method": flags(
            net,
            np.array([int(r.method) for r in res], np.int8),
            EquilibriumMethod,
            "equilibrium search method",
        ),
        "equilibrium_status": flags(
            net,
            np.array([int(r.status) for r in res], np.int8),
            EquilibriumStatus,
            "equilibrium search status",
        ),
        "x_eq": v(
            ("network", "equilibrium", "unit"),
            pad_stack([r.x for r in res], E),
            "equilibrium state",
            "state",
        ),
        "eq_residual": v(
            neq,
            pad_stack([r.residual for r in res], E),
            "relative residual ||f(x*)||_inf / (1 + ||x*||_inf)",
        ),
        "eq_type": flags(
            neq, pad_stack([r.eq_type for r in res], E), EquilibriumType, "equilibrium type"
        ),
        "eq_hits": v(
            neq,
            pad_stack([r.hits for r in res], E),
            "Newton starts that converged to the equilibrium",
        ),
        "n_unstable_dims": v(
            neq, pad_stack([r.n_unstable_dims for r in res], E), "number of unstable directions"
        ),
        "eq_crossings": v(
            neq,
            pad_stack([r.crossings for r in res], E),
            "homotopy-path crossings of lambda = 1 at the equilibrium",
        ),
        "eq_strategy": flags(
            neq,
            pad_stack([r.strategy for r in res], E),
            EquilibriumStrategy,
            "search strategy that found the equilibrium",
        ),
        "jacobian_eigenvalues": v(
            ("network", "equilibrium", "mode"),
            pad_stack([r.jacobian_eigenvalues.astype(np.complex128) for r in res], E),
            "eigenvalues of the Jacobian at the equilibrium (real part descending)",
            "1/time",
        ),
    }
    return xr.Dataset(data)
