"""Resilience of the stable equilibria of rate networks (SCIENCE.md section 5, issue 5).

Per stable equilibrium x* of dx/dt = -x + W sigma(x) + theta:

* **stability margin** -max Re lambda(J(x*)), **return time** 1 / margin, **reactivity**
  lambda_max((J + J^T) / 2) (the largest instantaneous growth rate of a perturbation);
* **basin stability** (Menck et al., Nature Physics 2013): the fraction S of n random initial
  conditions, uniform in a box, whose trajectory settles on x*, with standard error
  sqrt(S (1 - S) / n); trajectories that diverge, never settle, or settle away from every
  known stable equilibrium are counted apart;
* **distance to tipping**: the smallest uniform input shift theta -> theta + delta 1, up or
  down, at which x* disappears in a saddle-node (continuation until det J = 0, the fold
  located by bisection, :mod:`koopnet._resilience_continuation`);
* **structural robustness**: the mean fraction of units removed, one at a time in random
  orders, before the state is lost (each removal switches the unit's output off
  continuously; the state is lost when it folds or loses stability on the way);
* the **Gao-Barzel-Barabasi** reduction (Nature 2016) dx/dt = -x + theta_eff + beta_eff sigma(x),
  beta_eff = sum_i s_in,i s_out,i / sum_ij W_ij, x_eff = sum_j s_out,j x_j / sum_j s_out,j
  (theta_eff likewise), and the tipping shifts its 1-D saddle-node curve predicts, beside the
  network's actual ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Sequence

import numpy as np
import xarray as xr

from ._flags import STABLE_TYPES, flag_attrs
from ._padding import FILL_INT
from ._random import stage_rng
from ._resilience_continuation import (
    TippingStatus,
    continue_to_tipping,
    continue_unit_removal,
    jacobian_rows,
)
from ._resilience_removal import contraction_norm, removal_sequence_survival
from ._resilience_tipping import tip_branch
from .activations import Activation
from .network import NetworkBatch
from .simulate import (
    UNASSIGNED,
    IntegrationSettings,
    TrajectoryStatus,
    assign_to_equilibria,
    integrate,
)

__all__ = [
    "ResilienceSettings",
    "BasinStatus",
    "NOT_INTEGRATED",
    "TippingStatus",
    "stability_measures",
    "basin_box",
    "basin_stability",
    "tipping_shifts",
    "structural_robustness",
    "gao_reduction",
    "reduced_tipping_shifts",
    "resilience_dataset",
]


@dataclass(frozen=True)
class ResilienceSettings:
    """Settings of the ``resilience`` stage (the keys of its config section)."""

    n_initial_conditions: int = 200
    """Random initial conditions per network for basin stability."""
    basin_pilot: int = 50
    """A network with no known stable equilibrium has no basin stability to estimate: its first basin_pilot initial conditions are integrated, and only if one of them settles (on an equilibrium the equilibria stage missed), diverges or stalls are the others integrated too (basin_sampling). With none of n such events, their probability per initial condition is below 1 - 0.05^(1/n) (5.8 % at n = 50) with 95 % confidence. The same pilot rule extends unsettled trajectories beyond t_max when the slowest stable equilibrium needs longer to settle (koopnet.resilience.settling_time): the first basin_pilot first, the others only if one of them settles, diverges or stalls. 0: always all."""
    box_widen: float = 0.1
    """Bounded activations: the exact equilibrium box is widened by this fraction of its width on each side."""
    box_halfwidth: float = 5.0
    """Unbounded activations (linear, cubic): initial conditions in theta +- box_halfwidth (units of x)."""
    assign_tol: float = 1e-3
    """A settled state belongs to an equilibrium within max-norm distance assign_tol * (1 + |x*|_inf)."""
    tipping_max_shift: float = 10.0
    """Largest uniform input shift |delta| scanned for a fold, each direction (units of theta)."""
    tipping_initial_step: float = 0.05
    """First continuation step in delta (units of theta)."""
    tipping_max_step: float = 0.5
    """Largest continuation step in delta (units of theta)."""
    tipping_tol: float = 1e-9
    """Length below which the bisection bracket of a fold is accepted (units of theta)."""
    tipping_max_iter: int = 300
    """Continuation attempts (accepted + rejected) per equilibrium and direction."""
    newton_tol: float = 1e-10
    """Newton corrector converged when max_i |f_i| is below this (units of x per time)."""
    newton_max_iter: int = 8
    """Newton iterations per continuation attempt."""
    bifurcation_eig_tol: float = 1e-2
    """A bracket ends in a fold or Hopf point only if the leading eigenvalue has |Re| below this (1/time)."""
    robustness_orders: int = 8
    """Random unit-removal orders per stable equilibrium."""
    robustness_initial_step: float = 1.0
    """First step of the removal homotopy p in [0, 1] (a unit's output scaled by 1 - p); halved on failure."""
    robustness_tol: float = 1e-6
    """Bracket length in p below which a removal counts as destroying the state."""
    robustness_budget: int = 0
    """A cost bound for near-marginal states, which need an eigenvalue decision at many removals: stability decisions by eigenvalues (in eigvals equivalents: a Lyapunov solve counts 2) per stable equilibrium over its removal orders; once spent, no order after the first two is started (chord path only; robustness_n_orders records how many ran). The stop depends on the work of the orders already followed, which grows with how long a state survives, so where it stops robustness_units is biased upward and robustness_units_se (which assumes a fixed number of orders) understates the error. 0 (default): every order."""
    robustness_method: str = "auto"
    """``chord``: chord Newton with Woodbury updates of one LU, O(N^2) per removal, stability mostly by an O(N) bound, and a contraction certificate (koopnet._resilience_removal); ``continuation``: the reference, a continuation with eigenvalues at every removal, O(N^3) per removal (faster below N ~ 30, where Python overhead dominates); ``auto``: chord from N = 32 on."""
    tipping_method: str = "auto"
    """``chord``: chord Newton on one LU kept across steps, stability of accepted points by O(N) bounds, sign(det J) and inertia (Lyapunov) certificates, eigenvalues only where none decides (koopnet._resilience_tipping); ``continuation``: the reference, an LU per Newton iteration and eigenvalues wherever a Cholesky certificate fails (every point of a bracket bisection); ``auto``: chord from N = 80 on (below, Python overhead makes it 0.4-1.1x the reference; 1.2-2.7x at N = 100). Same statuses; shifts equal to a few tipping_tol."""
    integration: IntegrationSettings = field(default_factory=IntegrationSettings)
    """How basin-stability trajectories are integrated (the shared config section ``integration``, not a key of ``resilience``)."""

    def __post_init__(self) -> None:
        if self.n_initial_conditions < 1:
            raise ValueError("n_initial_conditions must be >= 1")
        if self.robustness_orders < 0:
            raise ValueError("robustness_orders must be >= 0")
        if self.robustness_budget < 0:
            raise ValueError("robustness_budget must be >= 0")
        if self.basin_pilot < 0:
            raise ValueError("basin_pilot must be >= 0")
        if self.robustness_method not in ("auto", "chord", "continuation"):
            raise ValueError("robustness_method must be 'auto', 'chord' or 'continuation'")
        if self.tipping_method not in ("auto", "chord", "continuation"):
            raise ValueError("tipping_method must be 'auto', 'chord' or 'continuation'")
        for name in ("assign_tol",
                     "tipping_max_shift", "tipping_initial_step", "tipping_max_step",
                     "tipping_tol", "newton_tol", "robustness_initial_step", "robustness_tol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.box_widen < 0 or self.box_halfwidth <= 0:
            raise ValueError("box_widen must be >= 0 and box_halfwidth > 0")
        if self.tipping_initial_step > self.tipping_max_step:
            raise ValueError(f"tipping_initial_step = {self.tipping_initial_step} must be <= "
                             f"tipping_max_step = {self.tipping_max_step}")


# --------------------------------------------------------------------------- local measures
def stability_measures(
    W: np.ndarray, x_eq: np.ndarray, activation: Activation,
    eigenvalues: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stability margin and reactivity of equilibria.

    Parameters
    ----------
    W : array, shape (B, N, N)
    x_eq : array, shape (B, E, N)
        Equilibria, NaN rows for padding.
    activation : Activation
    eigenvalues : complex array, shape (B, E, N), optional
        Jacobian eigenvalues of the equilibria if already known (the equilibria stage's
        ``jacobian_eigenvalues``): the margin is read from them instead of recomputed.

    Returns
    -------
    margin : array, shape (B, E)
        -max Re lambda(J(x*)) (1/time); positive for stable equilibria; NaN on padding.
    reactivity : array, shape (B, E)
        Largest eigenvalue of (J + J^T) / 2 (1/time); NaN on padding.
    """
    B, E, N = x_eq.shape
    margin = np.full((B, E), np.nan)
    react = np.full((B, E), np.nan)
    valid = np.all(np.isfinite(x_eq), axis=-1)
    bb, ee = np.nonzero(valid)
    known = eigenvalues is not None and eigenvalues.shape == (B, E, N)
    if known:
        margin[bb, ee] = -np.max(np.real(eigenvalues[bb, ee]), axis=-1)  # NaN if any is NaN
    step = max(1, _CHUNK_BYTES // (16 * N * N))  # J and its symmetric part
    for a in range(0, bb.size, step):  # memory bound only: each equilibrium on its own
        b_, e_ = bb[a : a + step], ee[a : a + step]
        J = jacobian_rows(W[b_], activation, x_eq[b_, e_])
        todo = ~np.isfinite(margin[b_, e_])
        if todo.any():
            margin[b_[todo], e_[todo]] = -np.max(np.linalg.eigvals(J[todo]).real, axis=-1)
        react[b_, e_] = np.linalg.eigvalsh(0.5 * (J + J.transpose(0, 2, 1)))[:, -1]
    return margin, react


#: Jacobian memory per chunk of equilibria (bytes).
_CHUNK_BYTES = 2**28


# --------------------------------------------------------------------------- basin stability
class BasinStatus(IntEnum):
    """Which basin-stability initial conditions were integrated."""

    #: all ``n_initial_conditions``
    all_initial_conditions = 0
    #: no known stable equilibrium, and none of the first ``basin_pilot`` initial conditions
    #: settled, diverged or stalled: the others were not integrated
    pilot_no_stable_equilibrium = 1
    #: all integrated to t_max; the network's slowest stable equilibrium needs longer to
    #: settle, but none of the first ``basin_pilot`` unsettled trajectories settled, diverged
    #: or stalled when extended, so the other unsettled ones were not extended
    pilot_extension = 2


#: Basin label of an initial condition that was not integrated (``basin_pilot``).
NOT_INTEGRATED = -2

#: Basin-stability trajectories are integrated for at most this many times t_max.
SETTLING_EXTENSION = 10.0


def settling_time(
    batch: NetworkBatch, margin: np.ndarray, stable: np.ndarray, box_width: np.ndarray, settle_tol: float,
    w_norm: np.ndarray | None = None,
) -> np.ndarray:
    """Time for the slowest stable equilibrium of each network to pull a state in to settle_tol.

    1.5 ln(D ||J|| / settle_tol) / m with m the smallest stability margin over stable
    equilibria, D the largest box width and ||J|| <= 1 + ||W||_2 Lip(sigma) (the settle test
    is on |f| ~ ||J|| |x - x*|); 0 where no stable equilibrium is known.

    Parameters
    ----------
    batch : NetworkBatch
    margin : array, shape (B, E)
        Stability margins of the equilibria (:func:`stability_measures`, NaN padding).
    stable : bool array, shape (B, E)
    box_width : array, shape (B, N)
    settle_tol : float
    w_norm : array, shape (B,), optional
        ||W||_2 of each network, if already computed.

    Returns
    -------
    array, shape (B,) (time units)
    """
    m = np.where(stable & (margin > 0), margin, np.inf).min(axis=1, initial=np.inf)
    lip = batch.activation.lipschitz if np.isfinite(batch.activation.lipschitz) else 1.0
    if w_norm is None:
        w_norm = np.linalg.norm(batch.W, 2, axis=(1, 2))
    jnorm = 1.0 + w_norm * lip
    D = np.max(box_width, axis=-1)
    return np.where(np.isfinite(m), 1.5 * np.log(np.maximum(D * jnorm / settle_tol, 1.0)) / m, 0.0)


def basin_box(batch: NetworkBatch, widen: float = 0.1, halfwidth: float = 5.0):
    """Box of initial conditions for basin stability.

    Bounded activations: the exact equilibrium box of SCIENCE.md section 3 (logistic
    theta_i + [sum_j min(W_ij, 0), sum_j max(W_ij, 0)], tanh theta_i +- sum_j |W_ij|), widened
    by ``widen`` times its width on each side (plus ``widen`` in absolute units so that
    an isolated unit still gets a box). Unbounded: theta +- halfwidth.

    Returns
    -------
    lower, upper : arrays, shape (B, N)
    """
    from .equilibria import search_box

    lo, hi, exact = search_box(np.asarray(batch.W), np.asarray(batch.theta), batch.activation,
                               halfwidth)
    if exact:
        pad = widen * (hi - lo) + widen
        lo, hi = lo - pad, hi + pad
    return lo, hi


def basin_stability(
    batch: NetworkBatch,
    seeds: Sequence[int],
    x_eq: np.ndarray,
    stable: np.ndarray,
    settings: ResilienceSettings | None = None,
    margin: np.ndarray | None = None,
    w_norm: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Basin stability of known stable equilibria from random initial conditions.

    Initial conditions are uniform in :func:`basin_box`, drawn from
    ``stage_rng(seed, "basin_stability")``, integrated with :func:`koopnet.simulate.integrate`
    and assigned with :func:`koopnet.simulate.assign_to_equilibria`.

    Parameters
    ----------
    batch : NetworkBatch
    seeds : sequence of int, length B
    x_eq : array, shape (B, E, N)
        Known equilibria (NaN-padded).
    stable : array of bool, shape (B, E)
        Which entries are stable equilibria.
    settings : ResilienceSettings
    margin : array, shape (B, E), optional
        Stability margins of ``x_eq`` if already computed (:func:`stability_measures`).
    w_norm : array, shape (B,), optional
        ||W||_2 of each network, if already computed.

    Returns
    -------
    dict with ``basin_stability``, ``basin_stability_se`` (B, E; NaN where not stable),
    ``fraction_diverged``, ``fraction_unsettled``, ``fraction_stalled``,
    ``fraction_unassigned`` (B,; fractions of the integrated initial conditions),
    ``n_integrated`` (B,), ``n_extended`` (B,; trajectories integrated beyond t_max),
    ``sampling`` (B,; :class:`BasinStatus`), ``box_lower``,
    ``box_upper`` (B, N), ``labels`` (B, M; ``NOT_INTEGRATED`` for initial conditions left
    out after a pilot, see ``ResilienceSettings.basin_pilot``).
    """
    s = settings or ResilienceSettings()
    B, N = len(batch), batch.n_units
    M = s.n_initial_conditions
    lo, hi = basin_box(batch, s.box_widen, s.box_halfwidth)
    u = np.stack([stage_rng(int(seed), "basin_stability").random((M, N)) for seed in seeds])
    x0 = lo[:, None, :] + (hi - lo)[:, None, :] * u
    integ = s.integration
    kw = integ.integrate_kwargs()
    status, x_final = _integrate_with_pilot(batch, x0, stable.any(axis=1), s)
    integrated = status >= 0
    n_int = integrated.sum(axis=1)
    # A slow attractor (margin m) needs ~ ln(distance / settle_tol) / m to settle: extend the
    # unsettled trajectories of such networks, else a monostable network reads basin stability 0.
    if margin is None:
        margin, _ = stability_measures(batch.W, x_eq, batch.activation)
    t_need = settling_time(batch, margin, stable, hi - lo, integ.settle_tol, w_norm)
    unsettled = status == TrajectoryStatus.unsettled
    ext = unsettled.any(axis=1) & (t_need > integ.t_max)  # never a pilot-only network (t_need 0)
    n_ext = np.zeros(B, dtype=np.int64)
    if ext.any():
        x_final, status = x_final.copy(), status.copy()
        for b in np.flatnonzero(ext):  # each network to its own horizon: batch-independent
            t_more = min(float(t_need[b]), SETTLING_EXTENSION * integ.t_max) - integ.t_max
            redo = np.flatnonzero(unsettled[b])
            sub = NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], batch.activation)
            # the basin pilot's rule: the first basin_pilot unsettled trajectories first, the
            # others only if one of them settles, diverges or stalls (in chaotic networks with
            # a slow stable state, extending every wandering trajectory costs 9 t_max each)
            P = min(s.basin_pilot, redo.size) if s.basin_pilot > 0 else redo.size
            for part in (redo[:P], redo[P:]):
                if part.size == 0:
                    break
                more = integrate(sub, x_final[b : b + 1, part], t_more, **kw)
                x_final[b, part], status[b, part] = more.x_final[0], more.status[0]
                n_ext[b] += part.size
                if not np.any(more.status[0] != TrajectoryStatus.unsettled):
                    break
    labels = assign_to_equilibria(x_final, np.where(integrated, status, TrajectoryStatus.unsettled),
                                  x_eq, stable=stable, tol=s.assign_tol)
    labels = np.where(integrated, labels, NOT_INTEGRATED)
    E = x_eq.shape[1]
    counts = (labels[:, :, None] == np.arange(E)).sum(axis=1)
    S = np.where(stable, counts / M, np.nan)  # every initial condition of such a network is integrated
    settled = status == TrajectoryStatus.settled

    def fraction(mask):
        return mask.sum(axis=1) / n_int

    return {
        "basin_stability": S,
        "basin_stability_se": np.sqrt(S * (1.0 - S) / M),
        "fraction_diverged": fraction(status == TrajectoryStatus.diverged),
        "fraction_unsettled": fraction(status == TrajectoryStatus.unsettled),
        "fraction_stalled": fraction(status == TrajectoryStatus.stalled),
        "fraction_unassigned": fraction(settled & (labels == UNASSIGNED)),
        "n_integrated": n_int.astype(np.int64),
        "n_extended": n_ext,
        "sampling": np.select([n_int < M, n_ext < (ext * unsettled.sum(axis=1))],
                              [BasinStatus.pilot_no_stable_equilibrium, BasinStatus.pilot_extension],
                              BasinStatus.all_initial_conditions).astype(np.int8),
        "box_lower": lo,
        "box_upper": hi,
        "labels": labels,
    }


def _integrate_with_pilot(batch: NetworkBatch, x0: np.ndarray, has_stable: np.ndarray,
                          s: ResilienceSettings) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the basin initial conditions x0 (B, M, N) to t_max, with the pilot rule.

    Networks with a known stable equilibrium get all M; the others their first
    ``basin_pilot``, and the rest only if a pilot trajectory settled, diverged or stalled.
    The integrator is bitwise batch-invariant across networks, so grouping networks does
    not change any trajectory. Returns (status, x_final), status -1 where not integrated.
    """
    B, M, _ = x0.shape
    integ = s.integration
    kw = integ.integrate_kwargs()
    status = np.full((B, M), -1, dtype=np.int8)
    x_final = np.full(x0.shape, np.nan)

    def run(nets, rows):
        if nets.size:
            sub = NetworkBatch(batch.W[nets], batch.theta[nets], batch.activation)
            tr = integrate(sub, x0[nets][:, rows], integ.t_max, **kw)
            status[nets[:, None], rows[None, :]] = tr.status
            x_final[nets[:, None], rows[None, :]] = tr.x_final

    P = min(s.basin_pilot, M) if s.basin_pilot > 0 else M
    pilot = ~np.asarray(has_stable, dtype=bool) if P < M else np.zeros(B, dtype=bool)
    run(np.flatnonzero(~pilot), np.arange(M))
    run(np.flatnonzero(pilot), np.arange(P))
    event = pilot & np.any(status[:, :P] != TrajectoryStatus.unsettled, axis=1)
    run(np.flatnonzero(event), np.arange(P, M))
    return status, x_final


# --------------------------------------------------------------------------- tipping
def tipping_shifts(
    batch: NetworkBatch,
    x_eq: np.ndarray,
    stable: np.ndarray,
    settings: ResilienceSettings | None = None,
    w_norm: np.ndarray | None = None,
    eigenvalues: np.ndarray | None = None,
    reactivity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform input shifts at which stable equilibria tip, in both directions.

    A network with ||W||_2 Lip(sigma) < 1 is a contraction for every input: its equilibrium
    never tips (``no_fold_in_range`` without continuation). Otherwise each stable equilibrium
    is continued, by ``tipping_method``: ``chord`` (:func:`koopnet._resilience_tipping.tip_branch`,
    O(N^2) per step away from bifurcations) or ``continuation``
    (:func:`koopnet._resilience_continuation.continue_to_tipping`, the reference: its stability
    decided by a Cholesky certificate where it holds and by eigenvalues elsewhere).

    Parameters
    ----------
    batch : NetworkBatch
    x_eq : array, shape (B, E, N)
    stable : array of bool, shape (B, E)
    settings : ResilienceSettings
    w_norm : array, shape (B,), optional
        ||W||_2 of each network, if already computed.
    eigenvalues : complex array, shape (B, E, N), optional
        Jacobian eigenvalues of the equilibria (the equilibria stage's
        ``jacobian_eigenvalues``): the start's stability is read from them (``chord``).
    reactivity : array, shape (B, E), optional
        lambda_max((J + J^T) / 2) of the equilibria, if already computed (``chord``).

    Returns
    -------
    shift_up, shift_down : arrays, shape (B, E)
        delta > 0 and delta < 0 (units of theta); NaN unless the matching status is
        ``fold`` or ``hopf``.
    status_up, status_down : arrays of int8, shape (B, E)
        :class:`TippingStatus` codes; -1 on padding, ``not_stable`` on unstable equilibria.
    """
    s = settings or ResilienceSettings()
    B, E, N = x_eq.shape
    valid = np.all(np.isfinite(x_eq), axis=-1)
    shifts = np.full((2, B, E), np.nan)
    status = np.full((2, B, E), -1, dtype=np.int8)
    status[:, valid & ~stable] = TippingStatus.not_stable
    # a contraction (||W||_2 Lip(sigma) < 1) stays one for every input: its unique equilibrium
    # never folds nor loses stability, whatever the shift
    lip = batch.activation.lipschitz
    contraction = np.zeros(B, dtype=bool)
    if np.isfinite(lip) and (valid & stable).any():
        if w_norm is None:
            w_norm = np.linalg.norm(np.asarray(batch.W), 2, axis=(1, 2))
        contraction = w_norm * lip < 1.0
    status[:, valid & stable & contraction[:, None]] = TippingStatus.no_fold_in_range
    bb, ee = np.nonzero(valid & stable & ~contraction[:, None])
    chord = s.tipping_method == "chord" or (s.tipping_method == "auto" and N >= AUTO_CHORD_TIPPING_UNITS)
    if bb.size and chord:
        opts = dict(max_shift=s.tipping_max_shift, initial_step=s.tipping_initial_step,
                    max_step=s.tipping_max_step, tol=s.tipping_tol, max_iter=s.tipping_max_iter,
                    newton_tol=s.newton_tol, bifurcation_eig_tol=s.bifurcation_eig_tol)
        known = eigenvalues is not None and np.shape(eigenvalues) == (B, E, N)
        for b, e in zip(bb, ee):  # one branch at a time, the two directions share the start
            Wb = np.asarray(batch.W[b])
            lead = None
            if known and np.all(np.isfinite(eigenvalues[b, e])):
                lead = eigenvalues[b, e][np.argmax(eigenvalues[b, e].real)]
            react = np.inf if reactivity is None else float(reactivity[b, e])
            wn = None if w_norm is None else float(w_norm[b])
            shared: dict = {}
            for i, direction in enumerate((1.0, -1.0)):
                sh, st, _ = tip_branch(Wb, np.asarray(batch.theta[b]), batch.activation, x_eq[b, e],
                                       direction, lead0=lead, reactivity=react, w_norm=wn,
                                       shared=shared, **opts)
                shifts[i, b, e], status[i, b, e] = sh, st
    elif bb.size:
        K = bb.size
        W = np.concatenate([batch.W[bb], batch.W[bb]])
        th = np.concatenate([batch.theta[bb], batch.theta[bb]])
        x0 = np.concatenate([x_eq[bb, ee], x_eq[bb, ee]])
        direction = np.concatenate([np.ones(K), -np.ones(K)])
        sh, st, _ = continue_to_tipping(
            W, th, batch.activation, x0, direction,
            max_shift=s.tipping_max_shift, initial_step=s.tipping_initial_step,
            max_step=s.tipping_max_step, tol=s.tipping_tol, max_iter=s.tipping_max_iter,
            newton_tol=s.newton_tol, newton_max_iter=s.newton_max_iter,
            bifurcation_eig_tol=s.bifurcation_eig_tol,
        )
        shifts[0, bb, ee], shifts[1, bb, ee] = sh[:K], sh[K:]
        status[0, bb, ee], status[1, bb, ee] = st[:K], st[K:]
    return shifts[0], shifts[1], status[0], status[1]


#: ``tipping_method = "auto"`` uses the chord path from this many units on.
AUTO_CHORD_TIPPING_UNITS = 80


# --------------------------------------------------------------------------- robustness
#: ``robustness_method = "auto"`` uses the chord path from this many units on.
AUTO_CHORD_UNITS = 32


def structural_robustness(
    batch: NetworkBatch,
    seeds: Sequence[int],
    x_eq: np.ndarray,
    stable: np.ndarray,
    settings: ResilienceSettings | None = None,
    reactivity: np.ndarray | None = None,
    w_norm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean fraction of units removed before a stable equilibrium is lost.

    For each stable equilibrium and each of ``robustness_orders`` random orders (drawn per
    network from ``stage_rng(seed, "robustness")``, shared by its equilibria) units are
    removed one at a time. A removal switches the unit's output off continuously,
    W[:, j] -> (1 - p) W[:, j] for p from 0 to 1, and the equilibrium is continued along
    this homotopy (:func:`koopnet._resilience_continuation.continue_unit_removal`); it is
    lost when it folds or loses stability before p = 1. The survived removals (at most
    N - 1) over N, averaged over orders, is the structural robustness. ``robustness_method``
    chooses how each order is followed (:mod:`koopnet._resilience_removal` for ``chord``).

    Parameters
    ----------
    reactivity : array, shape (B, E), optional
        lambda_max((J + J^T) / 2) of the equilibria, if already computed
        (:func:`stability_measures`).
    w_norm : array, shape (B,), optional
        ||W||_2 of each network, if already computed.

    Returns
    -------
    mean, se : arrays, shape (B, E)
        Fraction of units (1) averaged over the orders, and its standard error over orders
        (sample standard deviation / sqrt(orders); NaN with one order); NaN where not a
        stable equilibrium or when ``robustness_orders`` is 0.
    n_orders : array of int, shape (B, E)
        Orders followed: ``robustness_orders``, fewer (at least 2) where the chord path
        spent ``robustness_budget`` (then biased, see ResilienceSettings); 0 where not a stable
        equilibrium or ``robustness_orders`` is 0, -1 on padding.
    """
    s = settings or ResilienceSettings()
    B, E, N = x_eq.shape
    R = s.robustness_orders
    out = np.full((B, E), np.nan)
    se = np.full((B, E), np.nan)
    real = np.all(np.isfinite(x_eq), axis=-1)
    n_orders = np.where(real, 0, FILL_INT).astype(np.int64)  # -1 on padding, as collect pads
    valid = real & stable
    if R == 0:
        return out, se, n_orders
    chord = s.robustness_method == "chord" or (s.robustness_method == "auto" and N >= AUTO_CHORD_UNITS)
    react = reactivity
    if react is None and chord:
        _, react = stability_measures(np.asarray(batch.W), np.where(valid[..., None], x_eq, np.nan),
                                      batch.activation)
    opts = dict(initial_step=s.robustness_initial_step, max_step=1.0, tol=s.robustness_tol,
                max_iter=s.tipping_max_iter, newton_tol=s.newton_tol,
                newton_max_iter=s.newton_max_iter, bifurcation_eig_tol=np.inf,
                assume_stable_start=True)
    for b in range(B):  # one network at a time
        rng = stage_rng(int(seeds[b]), "robustness")
        orders = np.stack([rng.permutation(N) for _ in range(R)])  # (R, N)
        es = np.flatnonzero(valid[b])
        if es.size == 0:
            continue
        Wb, thb = np.asarray(batch.W[b]), np.asarray(batch.theta[b])
        if chord:
            wn = contraction_norm(Wb) if w_norm is None else float(w_norm[b])
            survived = np.full((es.size, R), np.nan)
            for i, e in enumerate(es):
                shared: dict = {}  # for all its orders: its Lyapunov matrix, the work done
                for r in range(R):
                    survived[i, r] = removal_sequence_survival(Wb, thb, batch.activation, x_eq[b, e],
                                                               orders[r], wn, react[b, e], opts, shared)
                    if s.robustness_budget and r >= 1 and shared.get("work", 0) >= s.robustness_budget:
                        break  # a cost bound: this stop depends on the orders' outcomes
        else:
            survived = _removal_continuation(Wb, thb, batch.activation, x_eq[b, es], orders,
                                             opts).reshape(es.size, R)
        frac = survived / N
        n = np.sum(np.isfinite(frac), axis=1)
        n_orders[b, es] = n
        out[b, es] = np.nanmean(frac, axis=1)
        many = n > 1
        if many.any():
            se[b, es[many]] = np.nanstd(frac[many], axis=1, ddof=1) / np.sqrt(n[many])
    return out, se, n_orders


def _removal_continuation(W, theta, act, x_eq, orders, opts) -> np.ndarray:
    """Reference: removals survived by each (equilibrium, order) pair, a continuation with
    eigenvalues at every removal; the pairs of one network are batched.

    Parameters
    ----------
    W : array, shape (N, N);  theta : array, shape (N,)
    x_eq : array, shape (E, N);  orders : int array, shape (R, N)

    Returns
    -------
    array of float, shape (E * R,), pair i = (equilibrium i // R, order i % R)
    """
    E, N = x_eq.shape
    R = orders.shape[0]
    S = E * R
    order = np.tile(orders, (E, 1))  # (S, N)
    survived = np.zeros(S, dtype=np.int64)
    # working arrays of the surviving sequences only
    idx = np.arange(S)
    keep = np.tile(np.arange(N), (S, 1))  # remaining units, in original order
    x = np.repeat(x_eq, R, axis=0)  # (S, n)
    for k in range(N - 1):
        if idx.size == 0:
            break
        n = N - k
        removed = order[idx, k]
        hit = keep == removed[:, None]
        pos = np.argmax(hit, axis=1)
        _, status, x_last = continue_unit_removal(
            W[keep[:, :, None], keep[:, None, :]], theta[keep], act, x, pos, **opts,
        )
        ok = status == TippingStatus.no_fold_in_range
        survived[idx[ok]] += 1
        rest = ~hit[ok]
        keep = keep[ok][rest].reshape(-1, n - 1)
        x = x_last[ok][rest].reshape(-1, n - 1)
        idx = idx[ok]
    return survived.astype(float)


# --------------------------------------------------------------------------- Gao-Barzel-Barabasi
def gao_reduction(W: np.ndarray, theta: np.ndarray, x_eq: np.ndarray):
    """Gao-Barzel-Barabasi effective 1-D reduction.

    Parameters
    ----------
    W : array, shape (B, N, N)
    theta : array, shape (B, N)
    x_eq : array, shape (B, E, N)

    Returns
    -------
    beta_eff : array, shape (B,)
        sum_i s_in,i s_out,i / sum_ij W_ij (NaN when sum_ij W_ij = 0).
    theta_eff : array, shape (B,)
        sum_j s_out,j theta_j / sum_j s_out,j.
    x_eff : array, shape (B, E)
        sum_j s_out,j x*_j / sum_j s_out,j.
    """
    s_in = W.sum(axis=2)
    s_out = W.sum(axis=1)
    total = W.sum(axis=(1, 2))
    ok = total != 0
    den = np.where(ok, total, 1.0)
    beta = np.where(ok, (s_in * s_out).sum(axis=1) / den, np.nan)
    theta_eff = np.where(ok, (s_out * theta).sum(axis=1) / den, np.nan)
    x_eff = np.where(ok[:, None], (x_eq * s_out[:, None, :]).sum(axis=2) / den[:, None], np.nan)
    return beta, theta_eff, x_eff


def _reduced_folds(beta: float, activation: Activation) -> np.ndarray:
    """Fold states of dx/dt = -x + theta + beta sigma(x): beta sigma'(x) = 1 (sorted)."""
    name = activation.name
    if not np.isfinite(beta):
        return np.empty(0)
    if name == "logistic" and beta > 4:
        r = np.sqrt(1.0 - 4.0 / beta)
        x = np.log((1 + r) / (1 - r))
        return np.array([-x, x])
    if name == "tanh" and beta > 1:
        x = np.arctanh(np.sqrt(1.0 - 1.0 / beta))
        return np.array([-x, x])
    if name == "cubic" and (beta > 4 or beta < 0):
        x = np.sqrt(4.0 - 16.0 / beta)
        return np.array([-x, x])
    return np.empty(0)


def reduced_tipping_shifts(
    beta_eff: np.ndarray, theta_eff: np.ndarray, x_eff: np.ndarray, activation: Activation
):
    """Tipping shifts predicted by the 1-D reduction for each reduced state.

    The reduced equilibrium curve is theta(x) = x - beta sigma(x); a state x is stable where
    1 - beta sigma'(x) > 0. The stable segment containing x_eff ends at folds x_f (where
    beta sigma'(x_f) = 1); the predicted shift up (down) is theta(x_f) - theta_eff at the
    segment's upper (lower) end.

    Returns
    -------
    up, down : arrays, shape (B, E)
        Predicted shifts (units of theta), NaN unless the matching status is ``fold``.
    status_up, status_down : arrays of int8, shape (B, E)
        ``fold``; ``no_fold_in_range`` when the segment is unbounded on that side;
        ``not_stable`` when x_eff lies where the reduced dynamics are unstable;
        ``continuation_failed`` when beta_eff is undefined (sum W = 0); -1 where x_eff is
        NaN (padding).
    """
    B, E = x_eff.shape
    up = np.full((B, E), np.nan)
    down = np.full((B, E), np.nan)
    st_up = np.full((B, E), -1, dtype=np.int8)
    st_down = np.full((B, E), -1, dtype=np.int8)
    for b in range(B):  # closed forms; B scalars
        beta, th = beta_eff[b], theta_eff[b]
        folds = _reduced_folds(beta, activation)
        theta_of = lambda x: x - beta * activation.sigma(np.asarray(x, dtype=float))  # noqa: E731
        for e in range(E):
            xr_ = x_eff[b, e]
            if np.isnan(beta):
                st_up[b, e] = st_down[b, e] = TippingStatus.continuation_failed
                continue
            if np.isnan(xr_):
                continue
            if not (1.0 - beta * activation.dsigma(np.asarray(xr_)) > 0):
                st_up[b, e] = st_down[b, e] = TippingStatus.not_stable
                continue
            above = folds[folds > xr_]
            below = folds[folds < xr_]
            if above.size:
                up[b, e] = theta_of(above[0]) - th
                st_up[b, e] = TippingStatus.fold
            else:
                st_up[b, e] = TippingStatus.no_fold_in_range
            if below.size:
                down[b, e] = theta_of(below[-1]) - th
                st_down[b, e] = TippingStatus.fold
            else:
                st_down[b, e] = TippingStatus.no_fold_in_range
    return up, down, st_up, st_down


# --------------------------------------------------------------------------- stage
def resilience_dataset(
    batch: NetworkBatch,
    seeds: Sequence[int],
    settings: ResilienceSettings | None = None,
    equilibria: xr.Dataset | None = None,
) -> xr.Dataset:
    """Stage function of the resilience half of the ``metrics`` rule.

    Parameters
    ----------
    batch : NetworkBatch
        B networks.
    seeds : sequence of int, length B
        Network seeds (basin initial conditions and removal orders are drawn from them).
    settings : ResilienceSettings
    equilibria : xr.Dataset
        Output of :func:`koopnet.equilibria.equilibria_dataset`: ``x_eq(network,
        equilibrium, unit)`` (NaN-padded) and ``eq_type(network, equilibrium)``
        (:class:`koopnet._flags.EquilibriumType`, -1 padding).

    Returns
    -------
    xr.Dataset
        Dims ``network``, ``equilibrium``, ``unit``; see the variables' ``long_name``.
    """
    if equilibria is None:
        raise ValueError("resilience_dataset needs the equilibria dataset")
    s = settings or ResilienceSettings()
    seeds = [int(v) for v in seeds]
    B, N = len(batch), batch.n_units
    if len(seeds) != B:
        raise ValueError(f"need one seed per network: {len(seeds)} seeds for {B} networks")
    x_eq = np.asarray(equilibria["x_eq"].transpose("network", "equilibrium", "unit").values,
                      dtype=float)
    eq_type = np.asarray(equilibria["eq_type"].transpose("network", "equilibrium").values)
    if x_eq.shape[0] != B or x_eq.shape[2] != N:
        raise ValueError(f"equilibria x_eq has shape {x_eq.shape}, expected ({B}, E, {N})")
    valid = np.all(np.isfinite(x_eq), axis=-1) & (eq_type >= 0)
    x_eq = np.where(valid[..., None], x_eq, np.nan)
    stable = valid & np.isin(eq_type, [int(t) for t in STABLE_TYPES])

    eigs = None
    if "jacobian_eigenvalues" in equilibria:
        eigs = np.asarray(equilibria["jacobian_eigenvalues"].transpose(
            "network", "equilibrium", "mode").values)
    margin, react = stability_measures(np.asarray(batch.W), x_eq, batch.activation, eigs)
    w_norm = np.linalg.norm(np.asarray(batch.W), 2, axis=(1, 2))
    return_time = np.where(stable & (margin > 0), 1.0 / np.where(margin > 0, margin, 1.0), np.nan)
    basin = basin_stability(batch, seeds, x_eq, stable, s, margin=margin, w_norm=w_norm)
    up, down, st_up, st_down = tipping_shifts(batch, x_eq, stable, s, w_norm=w_norm,
                                              eigenvalues=eigs, reactivity=react)
    robust, robust_se, robust_orders = structural_robustness(batch, seeds, x_eq, stable, s,
                                                             reactivity=react, w_norm=w_norm)
    beta, theta_eff, x_eff = gao_reduction(np.asarray(batch.W), np.asarray(batch.theta), x_eq)
    x_eff = np.where(stable, x_eff, np.nan)
    r_up, r_down, r_st_up, r_st_down = reduced_tipping_shifts(beta, theta_eff, x_eff,
                                                              batch.activation)
    # padding of x_eff for non-stable entries was NaN: give them the not_stable flag
    for arr in (r_st_up, r_st_down):
        arr[valid & ~stable] = TippingStatus.not_stable
        arr[~valid] = -1
    # nearest predicted tipping (signed): the smaller of |up|, |down|
    nearest = np.where(
        np.nan_to_num(np.abs(r_up), nan=np.inf) <= np.nan_to_num(np.abs(r_down), nan=np.inf),
        r_up, r_down,
    )

    ne, nu = ("network", "equilibrium"), ("network", "unit")
    def flags(name):
        return flag_attrs(TippingStatus, name, padding=True)

    data = {
        "stability_margin": (ne, margin, {"long_name": "stability margin -max Re lambda(J) (NaN: padding)", "units": "1/time"}),
        "return_time": (ne, return_time, {"long_name": "return time 1/stability margin of stable equilibria (NaN: not stable or padding)", "units": "time"}),
        "reactivity": (ne, react, {"long_name": "reactivity lambda_max((J+J^T)/2) (NaN: padding)", "units": "1/time"}),
        "basin_stability": (ne, basin["basin_stability"], {"long_name": "fraction of random initial conditions settling on the equilibrium (NaN: not stable or padding)", "units": "1"}),
        "basin_stability_se": (ne, basin["basin_stability_se"], {"long_name": "standard error of basin stability sqrt(S(1-S)/n)", "units": "1"}),
        "fraction_diverged": ("network", basin["fraction_diverged"], {"long_name": "fraction of the integrated basin initial conditions that diverged", "units": "1"}),
        "fraction_unsettled": ("network", basin["fraction_unsettled"], {"long_name": "fraction of the integrated basin initial conditions unsettled at the end of integration (t_max, extended for slow attractors)", "units": "1"}),
        "fraction_stalled": ("network", basin["fraction_stalled"], {"long_name": "fraction of the integrated basin initial conditions whose integration stalled (step budget or step underflow)", "units": "1"}),
        "fraction_unassigned": ("network", basin["fraction_unassigned"], {"long_name": "fraction of the integrated basin initial conditions settled away from every known stable equilibrium", "units": "1"}),
        "basin_n_integrated": ("network", basin["n_integrated"], {"long_name": "basin initial conditions integrated (the fraction_* denominators; fewer than resilience_n_initial_conditions after a pilot, see basin_sampling)", "units": "1"}),
        "basin_sampling": ("network", basin["sampling"], flag_attrs(BasinStatus, "which basin initial conditions were integrated, and how far")),
        "basin_n_extended": ("network", basin["n_extended"], {"long_name": "basin trajectories integrated beyond t_max because the slowest stable equilibrium needs longer to settle (koopnet.resilience.settling_time; fewer than the unsettled ones after an extension pilot, see basin_sampling)", "units": "1"}),
        "basin_box_lower": (nu, basin["box_lower"], {"long_name": "lower corner of the basin-stability box", "units": "state"}),
        "basin_box_upper": (nu, basin["box_upper"], {"long_name": "upper corner of the basin-stability box", "units": "state"}),
        "tipping_shift_up": (ne, up, {"long_name": "smallest uniform input increase at which the stable equilibrium folds or loses stability (NaN: see tipping_status_up)", "units": "state"}),
        "tipping_shift_down": (ne, down, {"long_name": "smallest uniform input decrease (negative) at which the stable equilibrium folds or loses stability (NaN: see tipping_status_down)", "units": "state"}),
        "tipping_status_up": (ne, st_up, flags("how the upward continuation ended")),
        "tipping_status_down": (ne, st_down, flags("how the downward continuation ended")),
        "robustness_units": (ne, robust, {"long_name": "mean fraction of units removed in random order before the stable state is lost (NaN: not stable or padding)", "units": "1"}),
        "robustness_units_se": (ne, robust_se, {"long_name": "standard error of robustness_units over the random removal orders (NaN: one order, not stable or padding)", "units": "1"}),
        "robustness_n_orders": (ne, robust_orders, {"long_name": "random removal orders followed for robustness_units (robustness_orders, or fewer but at least 2 where robustness_budget was spent, which biases robustness_units; 0: not stable or no orders; -1: padding)", "units": "1"}),
        "beta_eff": ("network", beta, {"long_name": "Gao-Barzel-Barabasi effective coupling sum s_in s_out / sum W (NaN: sum W = 0)", "units": "1"}),
        "theta_eff": ("network", theta_eff, {"long_name": "effective input sum s_out theta / sum s_out", "units": "state"}),
        "x_eff": (ne, x_eff, {"long_name": "effective state sum s_out x* / sum s_out of stable equilibria", "units": "state"}),
        "beta_eff_tipping_up": (ne, r_up, {"long_name": "input increase at which the 1-D reduction predicts tipping (NaN: see beta_eff_tipping_status_up)", "units": "state"}),
        "beta_eff_tipping_down": (ne, r_down, {"long_name": "input decrease (negative) at which the 1-D reduction predicts tipping (NaN: see beta_eff_tipping_status_down)", "units": "state"}),
        "beta_eff_tipping": (ne, nearest, {"long_name": "signed nearest tipping shift predicted by the 1-D reduction (NaN: no predicted fold, see statuses)", "units": "state"}),
        "beta_eff_tipping_status_up": (ne, r_st_up, flags("1-D reduction prediction, upward")),
        "beta_eff_tipping_status_down": (ne, r_st_down, flags("1-D reduction prediction, downward")),
    }
    ds = xr.Dataset({k: xr.Variable(d, v, attrs=a) for k, (d, v, a) in data.items()})
    ds.attrs["resilience_n_initial_conditions"] = s.n_initial_conditions
    return ds
