"""Batched adaptive ODE integration of rate networks (issue 5).

:func:`integrate` advances many initial conditions of many networks of one size at once
with the Dormand-Prince 5(4) pair (the RK45 of :func:`scipy.integrate.solve_ivp`): every
trajectory has its own step size and its own error control, and ends on its own event:

* ``settled``   the vector field is small, ``max_i |f_i(x)| < settle_tol``;
* ``diverged``  the state escaped, ``max_i |x_i| > diverge_bound`` or became non-finite
  (the cubic activation blows up in finite time);
* ``unsettled`` ``t_max`` was reached without settling (oscillation, chaos, slow transient);
* ``stalled``   the step budget ``max_steps`` was exhausted or the step size underflowed.

Only active trajectories are stepped: finished ones leave the working arrays as soon as
they end. Every operation acts row by row on the trajectories of one network (the
network's weight product is one matrix product per network over its own active rows),
so a network's trajectories are bitwise identical whether it is integrated alone or in a
batch.

:func:`assign_to_equilibria` labels settled end states with the nearest known equilibrium.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np

from .network import NetworkBatch

__all__ = [
    "IntegrationSettings",
    "TrajectoryStatus",
    "Trajectories",
    "integrate",
    "assign_to_equilibria",
    "UNASSIGNED",
]

UNASSIGNED = -1
"""Label of an end state that is not within tolerance of any known equilibrium."""


class TrajectoryStatus(IntEnum):
    """How a trajectory ended (see module docstring)."""

    settled = 0
    diverged = 1
    unsettled = 2
    stalled = 3


@dataclass(frozen=True)
class IntegrationSettings:
    """How trajectories are integrated (config section ``integration``).

    One set shared by every stage that integrates trajectories: the participation ratio
    (:mod:`koopnet.dimension`) and basin stability (:mod:`koopnet.resilience`). The keyword
    arguments of :func:`integrate` with the same names.
    """

    t_max: float = 100.0
    """Integration time limit (unit time constants). Basin stability extends the unsettled trajectories of networks with a slow attractor up to 10 t_max (koopnet.resilience.settling_time); the participation ratio samples on [0, t_max]."""
    rtol: float = 1e-6
    """Relative local error tolerance of the integrator."""
    atol: float = 1e-9
    """Absolute local error tolerance of the integrator (units of x)."""
    settle_tol: float = 1e-8
    """A trajectory has settled when max_i |f_i(x)| < settle_tol (units of x per time); near a stable equilibrium of margin m the settled state is within about settle_tol / m of it."""
    diverge_bound: float = 1e6
    """A trajectory has diverged when max_i |x_i| exceeds this bound (units of x)."""
    max_steps: int = 20000
    """Integrator step attempts (accepted + rejected) per trajectory before it counts as stalled."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"integration.{f.name} must be positive")

    def integrate_kwargs(self) -> dict:
        """Keyword arguments of :func:`integrate` except t_max."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "t_max"}


# Dormand-Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Norsett & Wanner, Table II.5.2).
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# error weights: 5th-order weights minus embedded 4th-order weights (7 stages, FSAL)
_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)
_SAFETY = 0.9
_MIN_FACTOR = 0.2
_MAX_FACTOR = 10.0
_ERR_EXPONENT = -1.0 / 5.0
_STAB_CAP = 2.0  # h |lambda| cap; DOPRI5's real stability interval is about [-3.3, 0]
# Dense output of DOPRI5 (Hairer, Norsett & Wanner II.6; the coefficients of scipy's RK45):
# x(t + s h) = x + h sum_r k_r sum_c _P[r, c] s^(c + 1), quartic in s, k_6 = f(x_new).
_P = np.array([
    [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
    [0, 0, 0, 0],
    [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
    [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
    [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
    [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
    [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
])


@dataclass(frozen=True, eq=False)
class Trajectories:
    """End states (and optional samples) of a batch of trajectories.

    Attributes
    ----------
    x_final : array, shape (B, M, N)
        State where each trajectory ended (NaN-free unless it diverged to non-finite values).
    status : array of int8, shape (B, M)
        :class:`TrajectoryStatus` codes.
    t_end : array, shape (B, M)
        Time at which each trajectory ended (model time units, 1 = unit time constant).
    n_steps : array of int64, shape (B, M)
        Accepted steps.
    n_rejected : array of int64, shape (B, M)
        Rejected step attempts.
    t_eval : array, shape (T,) or None
        Sample times, if requested.
    x_eval : array, shape (B, M, T, N) or None
        States at ``t_eval``. After a trajectory settled it is held at its settled state;
        after it diverged or stalled the samples are NaN (``status`` says why).
    """

    x_final: np.ndarray
    status: np.ndarray
    t_end: np.ndarray
    n_steps: np.ndarray
    n_rejected: np.ndarray
    t_eval: np.ndarray | None = None
    x_eval: np.ndarray | None = None


def _rms(q: np.ndarray) -> np.ndarray:
    """Root mean square along the last axis, row by row; shape (K, N) -> (K,)."""
    return np.sqrt((q * q).sum(axis=1) / q.shape[1])


class _Field:
    """Vector field on a compact set of rows, each row belonging to one network."""

    def __init__(self, batch: NetworkBatch):
        act = batch.activation
        if act.polynomial is not None:
            # Horner's rule with products only (x ** 3 goes through pow, much slower)
            c = tuple(float(v) for v in act.polynomial)

            def sigma(x):
                s = np.multiply(x, c[-1])
                for cj in c[-2:0:-1]:
                    s += cj
                    s *= x
                s += c[0]
                return s

            self.sigma = sigma
        else:
            self.sigma = act.sigma
        self.WT = np.ascontiguousarray(batch.W.transpose(0, 2, 1))
        self.B = len(batch)

    def __call__(self, x: np.ndarray, theta_rows: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        s = self.sigma(x)
        # one matrix product per network over its own rows: the shape each network sees
        # depends only on its own active trajectories (bitwise batch invariance)
        counts = np.diff(bounds)
        if counts.size and np.all(counts == counts[0]):
            # every network has the same number of active rows: one stacked product, which
            # numpy evaluates as the same per-network product
            m = int(counts[0])
            out = np.matmul(s.reshape(self.B, m, -1), self.WT).reshape(x.shape)
        else:
            out = np.empty_like(x)
            for b in range(self.B):
                lo, hi = bounds[b], bounds[b + 1]
                if hi > lo:
                    np.matmul(s[lo:hi], self.WT[b], out=out[lo:hi])
        out += theta_rows
        out -= x
        return out


def integrate(
    batch: NetworkBatch,
    x0: np.ndarray,
    t_max: float,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    settle_tol: float = 1e-8,
    diverge_bound: float = 1e6,
    t_eval: np.ndarray | None = None,
    max_steps: int = 100_000,
    dense: bool = False,
) -> Trajectories:
    """Integrate dx/dt = -x + W sigma(x) + theta from many initial conditions.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    x0 : array, shape (B, M, N)
        M initial conditions per network (``(M, N)`` is accepted when B = 1).
    t_max : float
        Time limit (model time units).
    rtol, atol : float
        Relative and absolute local error tolerances (same meaning as in
        :func:`scipy.integrate.solve_ivp`: RMS norm of error / (atol + rtol |x|) below 1).
    settle_tol : float
        A trajectory has settled when ``max_i |f_i(x)| < settle_tol`` (checked at t = 0
        and after every accepted step).
    diverge_bound : float
        A trajectory has diverged when ``max_i |x_i| > diverge_bound`` or x is non-finite.
    t_eval : array, shape (T,), optional
        Strictly increasing sample times in [0, t_max]; steps are clipped to land on them.
    max_steps : int
        Step attempts (accepted + rejected) per trajectory before it is declared stalled.
    dense : bool
        Samples at ``t_eval`` from DOPRI5's quartic dense output instead of steps clipped to
        land on them: no extra steps when samples are denser than the steps (the error of a
        sample is then of the order of the local error tolerance, not the step's own).

    Returns
    -------
    Trajectories
    """
    if not isinstance(batch, NetworkBatch):
        raise TypeError("batch must be a NetworkBatch")
    B, N = len(batch), batch.n_units
    x0 = np.ascontiguousarray(x0, dtype=float)  # x_final.reshape below must be a view
    if x0.ndim == 2 and B == 1:
        x0 = x0[None]
    if x0.ndim != 3 or x0.shape[0] != B or x0.shape[2] != N:
        raise ValueError(f"x0 must have shape (B={B}, M, N={N}), got {x0.shape}")
    M = x0.shape[1]
    t_max = float(t_max)
    if not t_max > 0:
        raise ValueError("t_max must be positive")
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float).ravel()
        if t_eval.size and (
            np.any(np.diff(t_eval) <= 0) or t_eval[0] < 0 or t_eval[-1] > t_max
        ):
            raise ValueError("t_eval must be strictly increasing within [0, t_max]")
    T = 0 if t_eval is None else t_eval.size
    # sample targets with t_max as a final sentinel target
    targets = np.append(t_eval if t_eval is not None else np.empty(0), t_max)

    x_final = np.array(x0, copy=True)
    status = np.full((B, M), TrajectoryStatus.unsettled, dtype=np.int8)
    t_end = np.zeros((B, M))
    n_steps = np.zeros((B, M), dtype=np.int64)
    n_rej = np.zeros((B, M), dtype=np.int64)
    x_eval = np.full((B, M, T, N), np.nan) if t_eval is not None else None
    eval_flat = x_eval.reshape(B * M, T, N) if x_eval is not None else None

    field = _Field(batch)
    # compact working set (rows sorted by network)
    row = np.arange(B * M)  # flat trajectory index b * M + m
    net = np.repeat(np.arange(B), M)
    x = x0.reshape(B * M, N).copy()
    th = np.repeat(np.asarray(batch.theta), M, axis=0)

    def bounds_of(net_ids):
        return np.searchsorted(net_ids, np.arange(B + 1))

    bnd = bounds_of(net)
    with np.errstate(all="ignore"):
        f = field(x, th, bnd)
        t = np.zeros(B * M)
        ie = np.zeros(B * M, dtype=np.int64)  # next sample index
        if T:
            at0 = t_eval[0] <= 0.0
            if at0:
                eval_flat[:, 0] = x
                ie[:] = 1
        # initial step (Hairer, Norsett & Wanner, II.4), per trajectory
        scale = atol + rtol * np.abs(x)
        d0 = _rms(x / scale)
        d1 = _rms(f / scale)
        h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.where(d1 > 0, d1, 1.0))
        h0 = np.minimum(h0, t_max)
        f1 = field(x + h0[:, None] * f, th, bnd)
        d2 = _rms((f1 - f) / scale) / h0
        dmax = np.maximum(d1, d2)
        h1 = np.where(
            dmax <= 1e-15,
            np.maximum(1e-6, h0 * 1e-3),
            (0.01 / np.where(dmax > 0, dmax, 1.0)) ** (1.0 / 5.0),
        )
        h = np.minimum(100 * h0, h1)
        h = np.where(np.isfinite(h) & (h > 0), h, 1e-6)
        rejected_before = np.zeros(B * M, dtype=bool)
        steps = np.zeros(B * M, dtype=np.int64)
        rejs = np.zeros(B * M, dtype=np.int64)

        def finish(mask, code):
            r = row[mask]
            x_final.reshape(B * M, N)[r] = x[mask]
            status.reshape(-1)[r] = code
            t_end.reshape(-1)[r] = t[mask]
            n_steps.reshape(-1)[r] = steps[mask]
            n_rej.reshape(-1)[r] = rejs[mask]
            if T and code == TrajectoryStatus.settled:
                # hold the settled state on the remaining samples
                rr, ii = r, ie[mask]
                later = np.arange(T)[None, :] >= ii[:, None]
                eval_flat[rr] = np.where(later[..., None], x[mask][:, None, :], eval_flat[rr])

        # events at t = 0
        settled, diverged = _events(x, f, settle_tol, diverge_bound)
        done = (settled, diverged, settled | diverged)
        while True:
            if done is not None:
                settled, diverged, ended = done
                if ended.any():
                    finish(settled, TrajectoryStatus.settled)
                    finish(diverged & ~settled, TrajectoryStatus.diverged)
                    keep = ~ended
                    row, net, x, f, th, t, ie, h = (
                        a[keep] for a in (row, net, x, f, th, t, ie, h)
                    )
                    rejected_before, steps, rejs = (
                        a[keep] for a in (rejected_before, steps, rejs)
                    )
                    bnd = bounds_of(net)
            if row.size == 0:
                break
            # stall: step budget or step-size underflow
            stalled = (steps + rejs >= max_steps) | (h <= 10 * np.spacing(np.maximum(t, 1.0)))
            if stalled.any():
                finish(stalled, TrajectoryStatus.stalled)
                keep = ~stalled
                row, net, x, f, th, t, ie, h = (a[keep] for a in (row, net, x, f, th, t, ie, h))
                rejected_before, steps, rejs = (a[keep] for a in (rejected_before, steps, rejs))
                bnd = bounds_of(net)
                if row.size == 0:
                    break

            target = targets[ie] if not dense else t_max
            gap = target - t
            hit = h >= gap
            hs = np.where(hit, gap, h)
            hc = hs[:, None]
            k = [f]
            tmp = np.empty_like(x)
            for i in range(1, 8):
                coef = _A[i] if i < 7 else _E
                y = np.multiply(k[0], coef[0])
                for j in range(1, len(coef)):
                    if coef[j] != 0.0:
                        y += np.multiply(k[j], coef[j], out=tmp)
                y *= hc
                if i == 7:
                    err_vec = y
                    break
                y += x
                if i == 5:
                    y5 = y
                elif i == 6:
                    x_new = y
                k.append(field(y, th, bnd))
            f_new = k[6]
            scale = atol + rtol * np.maximum(np.abs(x), np.abs(x_new))
            err = _rms(err_vec / scale)
            err = np.where(np.isfinite(err), err, np.inf)
            accept = err < 1.0
            factor = np.where(
                err == 0.0,
                _MAX_FACTOR,
                np.minimum(_MAX_FACTOR, _SAFETY * np.where(err > 0, err, 1.0) ** _ERR_EXPONENT),
            )
            factor = np.where(rejected_before & accept, np.minimum(1.0, factor), factor)
            factor = np.where(accept, factor, np.maximum(_MIN_FACTOR, _SAFETY * err**_ERR_EXPONENT))
            factor = np.where(np.isfinite(factor), factor, _MIN_FACTOR)
            h_next = hs * factor
            # stability cap: stages 5 and 6 both sit at t + h, so |k6 - k5| / |y6 - y5|
            # estimates the local stiffness |lambda| (Hairer & Wanner's DOPRI5 test). Near a
            # stable equilibrium the error controller alone parks h on the boundary of the
            # stability region, where x hovers at the tolerance level and |f| never falls
            # below settle_tol; keeping h |lambda| <= _STAB_CAP makes the RK map contract.
            dy = _rms(x_new - y5)
            dk = _rms(f_new - k[5])
            rho = np.where(dy > 0, dk / np.where(dy > 0, dy, 1.0), 0.0)
            cap = accept & (rho > 0) & np.isfinite(rho)
            h_next = np.where(cap, np.minimum(h_next, _STAB_CAP / np.where(cap, rho, 1.0)), h_next)
            # a clipped accepted step keeps at least the step size it was clipped from
            h = np.where(accept & hit, np.maximum(h_next, h), h_next)
            rejected_before = ~accept
            steps = steps + accept
            rejs = rejs + ~accept

            t_old, x_old = t, x
            t = np.where(accept, np.where(hit, target, t + hs), t)
            if accept.all():
                x, f = x_new, f_new
            else:
                acc2 = accept[:, None]
                x = np.where(acc2, x_new, x)
                f = np.where(acc2, f_new, f)
            if T and dense:
                ie = ie.copy()
                while True:  # every sample time in (t_old, t] of an accepted step
                    due = accept & (ie < T)
                    due[due] = t_eval[ie[due]] <= t[due]
                    if not due.any():
                        break
                    i = np.flatnonzero(due)
                    s_ = (t_eval[ie[i]] - t_old[i]) / hs[i]
                    powers = s_[:, None] ** np.arange(1, 5)  # (n, 4)
                    w = powers @ _P.T  # (n, 7) weights of k_0 .. k_6
                    y = x_old[i] + hs[i, None] * sum(w[:, r, None] * k[r][i] for r in range(7) if r != 1)
                    y = np.where((s_ == 1.0)[:, None], x[i], y)  # the step's end: the state itself
                    eval_flat[row[i], ie[i]] = y
                    ie[i] += 1
            elif T:
                sample = accept & hit & (ie < T)
                if sample.any():
                    eval_flat[row[sample], ie[sample]] = x[sample]
                ie = ie + (accept & hit)
            settled, diverged = _events(x, f, settle_tol, diverge_bound)
            settled &= accept
            diverged &= accept
            reached = accept & (t >= t_max) & ~settled & ~diverged
            if reached.any():
                finish(reached, TrajectoryStatus.unsettled)
            done = (settled, diverged, settled | diverged | reached)

    # diverged/stalled trajectories keep NaN samples after their end
    return Trajectories(x_final, status, t_end, n_steps, n_rej, t_eval, x_eval)


def _events(x, f, settle_tol, diverge_bound):
    """Row masks (settled, diverged) of a compact working set."""
    xmax = np.max(np.abs(x), axis=1)
    diverged = ~(xmax <= diverge_bound)  # also catches NaN
    settled = (np.max(np.abs(f), axis=1) < settle_tol) & ~diverged
    return settled, diverged


def assign_to_equilibria(
    x_final: np.ndarray,
    status: np.ndarray,
    x_eq: np.ndarray,
    *,
    stable: np.ndarray | None = None,
    tol: float = 1e-3,
) -> np.ndarray:
    """Label settled end states with the nearest known equilibrium.

    Parameters
    ----------
    x_final : array, shape (B, M, N)
        End states from :func:`integrate`.
    status : array of int, shape (B, M)
        :class:`TrajectoryStatus` codes; only ``settled`` states are assigned.
    x_eq : array, shape (B, E, N)
        Known equilibria, NaN-padded.
    stable : array of bool, shape (B, E), optional
        Which equilibria may be assigned (default: every non-padding one).
    tol : float
        An end state is assigned to equilibrium e when
        ``max_i |x_i - x_eq_e,i| <= tol * (1 + max_i |x_eq_e,i|)``.

    Returns
    -------
    labels : array of int64, shape (B, M)
        Index e of the nearest admissible equilibrium (max-norm), or :data:`UNASSIGNED`
        (-1) when the trajectory did not settle or no admissible equilibrium is near.
    """
    x_final = np.asarray(x_final, dtype=float)
    x_eq = np.asarray(x_eq, dtype=float)
    status = np.asarray(status)
    B, M, _ = x_final.shape
    E = x_eq.shape[1]
    labels = np.full((B, M), UNASSIGNED, dtype=np.int64)
    if E == 0:
        return labels
    ok = np.all(np.isfinite(x_eq), axis=-1)
    if stable is not None:
        ok &= np.asarray(stable, dtype=bool)
    dist = np.full((B, M, E), np.inf)
    with np.errstate(invalid="ignore"):
        for b in range(B):  # one network at a time keeps memory at M * E * N
            e = np.flatnonzero(ok[b])
            if e.size:
                dist[b][:, e] = np.max(np.abs(x_final[b][:, None, :] - x_eq[b][e][None, :, :]),
                                       axis=-1)
    dist = np.where(np.isnan(dist), np.inf, dist)
    nearest = np.argmin(dist, axis=-1)
    dmin = np.take_along_axis(dist, nearest[..., None], axis=-1)[..., 0]
    radius = tol * (1.0 + np.max(np.abs(np.where(ok[..., None], x_eq, 0.0)), axis=-1))  # (B,E)
    rad = np.take_along_axis(radius, nearest, axis=-1)
    good = (status == TrajectoryStatus.settled) & (dmin <= rad)
    labels[good] = nearest[good]
    return labels
