"""Spectra-stage variables of the perturbative family (docs/perturbative.md, docs/dataset.md).

The family runs on the networks of an ensemble that declares a split W = W_ff + eps R_hat
(:data:`koopnet.ensembles.FEEDFORWARD_SPLITS`: ``perturbed_feedforward``), with the split and eps
the network was built from, never on a split re-derived from W: a nearly feedforward network
of another ensemble is not a perturbed feedforward network by construction, and is not analysed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Mapping

import numpy as np
import xarray as xr

from .._flags import flag_attrs
from .._random import stage_rng
from ..ensembles import feedforward_split
from ..network import Network, NetworkBatch

__all__ = ["PerturbativeStatus", "perturbative_part"]


class PerturbativeStatus(IntEnum):
    """Outcome of the perturbative-family analysis of one network."""

    ok = 0
    not_applicable = 1  # N outside 2..perturbative_max_units, ensemble without a declared split, no feedforward part, or eps too large
    breakdown_below_range = 2  # adding an order already fails to help at perturbative_eps_min
    no_breakdown_in_range = 3  # every order still helps at perturbative_eps_max
    failed = 4  # non-finite residuals


def _breakdown(eps_grid: np.ndarray, r: np.ndarray) -> tuple[float, int]:
    """First eps at which some order k >= 1 stops reducing the residual (r_k >= r_(k-1)).

    r : shape (K+1, E). The crossing of log(r_k / r_(k-1)) through 0 is interpolated linearly in log eps.
    """
    ratio = np.log(r[1:] / r[:-1])  # (K, E): < 0 while adding order k helps
    bad = np.any(ratio >= 0.0, axis=0)
    if bad[0]:
        return np.nan, int(PerturbativeStatus.breakdown_below_range)
    if not bad.any():
        return np.nan, int(PerturbativeStatus.no_breakdown_in_range)
    j = int(np.argmax(bad))
    le = np.log(eps_grid)
    best = np.inf
    for k in range(ratio.shape[0]):
        a, b = ratio[k, j - 1], ratio[k, j]
        if b >= 0.0:
            best = min(best, le[j - 1] + (le[j] - le[j - 1]) * (-a) / (b - a))
    return float(np.exp(best)), int(PerturbativeStatus.ok)


def perturbative_part(batch: NetworkBatch, seeds, s, point: Mapping[str, Any] | None = None) -> dict:
    """Residual of each order and the practical radius of convergence, per network.

    Parameters
    ----------
    batch : NetworkBatch
    seeds : sequence of int
        Sample points from stage_rng(seed, "perturbative").
    s : SpectraSettings
        Its ``perturbative_*`` fields.
    point : mapping, optional
        The sweep point's values (``ensemble`` and its parameters): the family runs only on networks
        whose ensemble declares a split W = W_ff + eps R_hat (:func:`koopnet.ensembles.feedforward_split`);
        None (unknown ensemble) flags every network ``not_applicable``.

    Returns
    -------
    dict of xarray.Variable: ``perturbative_eps`` (network), ``perturbative_residual`` (network,
    perturbative_order), ``perturbative_breakdown_eps`` (network), ``perturbative_status`` (network).
    """
    B, N = len(batch), batch.n_units
    K = int(s.perturbative_order)
    eps_grid = np.geomspace(s.perturbative_eps_min, s.perturbative_eps_max, int(s.perturbative_n_eps))
    eps_net = np.full(B, np.nan)
    res = np.full((B, K + 1), np.nan)
    brk = np.full(B, np.nan)
    status = np.full(B, int(PerturbativeStatus.not_applicable), np.int8)
    h = float(s.perturbative_box_half_width)
    for b in range(B):
        if N < 2 or N > s.perturbative_max_units:
            continue
        split = feedforward_split(batch.W[b], point)
        if split is None:
            continue
        W_ff, R_hat, eps = split
        if not W_ff.any() or eps > s.perturbative_max_eps:
            continue
        from ._perturbative import perturbative_family  # JAX stays out of the stage unless needed

        eps_net[b] = eps
        net_ff = Network(W_ff, batch.theta[b], batch.activation)
        fam = perturbative_family(net_ff, R_hat, order=K, lam=s.perturbative_eigenvalue, u_ref=h)
        rng = stage_rng(int(seeds[b]), "perturbative")
        n = int(s.perturbative_n_points)
        # driven units within h of their feedforward equilibrium; |u| in [h/2, 2h] on either side
        x_ff = np.array(batch.theta[b], dtype=float)
        for i in range(1, N):
            x_ff[i] += W_ff[i, :i] @ net_ff.activation.sigma(x_ff[:i])
        x = x_ff + rng.uniform(-h, h, (n, N))
        x[:, 0] = batch.theta[b][0] + rng.choice([-1.0, 1.0], n) * rng.uniform(0.5 * h, 2.0 * h, n)
        terms = fam.generator_terms(x)
        grid = np.concatenate([[eps], eps_grid])
        r = np.stack([np.sqrt(np.mean(fam.residual(None, grid, order=k, terms=terms) ** 2, axis=1))
                      for k in range(K + 1)])  # (K+1, 1+E)
        if not np.all(np.isfinite(r)) or np.any(r == 0.0):
            status[b] = int(PerturbativeStatus.failed)
            continue
        res[b] = r[:, 0]
        brk[b], status[b] = _breakdown(eps_grid, r[:, 1:])

    net = ("network",)

    def v(dims, data, long_name, units="1", **attrs):
        return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})

    common = dict(perturbative_order=K, perturbative_eigenvalue=float(s.perturbative_eigenvalue))
    return {
        "perturbative_eps": v(
            net, eps_net, "strength eps of the recurrent part in W = W_ff + eps R_hat, as the network's ensemble declares it",
            comment="the ensemble's eps parameter (perturbed_feedforward: W_ff = tril(W, -1), ||R_hat||_2 = 1); "
                    "NaN where perturbative_status is not_applicable",
        ),
        "perturbative_residual": v(
            ("network", "perturbative_order"), res,
            "RMS relative generator residual |(L - lambda) psi^(k)| / |lambda psi^(k)| of the order-k perturbative "
            "eigenfunction at the network's own eps",
            sample="perturbative_n_points points from stage_rng(seed, 'perturbative'): driven units uniform within "
                   "perturbative_box_half_width h of the feedforward equilibrium, |x_0 - theta_0| uniform in [h/2, 2h], "
                   "either sign; reference section |u| = h",
            **common,
        ),
        "perturbative_breakdown_eps": v(
            net, brk,
            "practical radius of convergence: smallest eps at which adding an order stops reducing the RMS residual",
            comment="W_ff + eps R_hat with the ensemble's W_ff and R_hat, eps on a log grid "
                    "[perturbative_eps_min, perturbative_eps_max], crossing interpolated in log eps; NaN unless "
                    "perturbative_status is ok",
            **common,
        ),
        "perturbative_status": xr.Variable(net, status, flag_attrs(PerturbativeStatus, "perturbative family status")),
    }
