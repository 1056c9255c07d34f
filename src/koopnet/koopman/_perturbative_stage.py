"""Spectra-stage variables of the perturbative family (docs/perturbative.md, docs/dataset.md).

A network W is read as a perturbed feedforward network in its natural unit order:
W = W_ff + eps R_hat with W_ff = tril(W, -1) (strictly lower: acyclic), eps = ||triu(W)||_2 and
R_hat = triu(W) / eps (unit spectral norm). This is exactly how the ``perturbed_feedforward`` ensemble
builds its networks, so eps is recovered exactly from W.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import xarray as xr

from .._flags import flag_attrs
from .._random import stage_rng
from ..network import Network, NetworkBatch

__all__ = ["PerturbativeStatus", "perturbative_part"]


class PerturbativeStatus(IntEnum):
    """Outcome of the perturbative-family analysis of one network."""

    ok = 0
    not_applicable = 1  # N > perturbative_max_units, W feedforward already, no feedforward part, or eps too large
    breakdown_below_range = 2  # adding an order already fails to help at perturbative_eps_min
    no_breakdown_in_range = 3  # every order still helps at perturbative_eps_max
    failed = 4  # non-finite residuals


def _split(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    W_ff = np.tril(W, -1)
    R = W - W_ff
    eps = float(np.linalg.norm(R, 2))
    return W_ff, R, eps


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


def perturbative_part(batch: NetworkBatch, seeds, s) -> dict:
    """Residual of each order and the practical radius of convergence, per network.

    Parameters
    ----------
    batch : NetworkBatch
    seeds : sequence of int
        Sample points from stage_rng(seed, "perturbative").
    s : SpectraSettings
        Its ``perturbative_*`` fields.

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
        W_ff, R, eps = _split(batch.W[b])
        if N < 2 or N > s.perturbative_max_units or eps == 0.0 or not W_ff.any() or eps > s.perturbative_max_eps:
            continue
        from ._perturbative import perturbative_family  # JAX stays out of the stage unless needed

        eps_net[b] = eps
        net_ff = Network(W_ff, batch.theta[b], batch.activation)
        fam = perturbative_family(net_ff, R / eps, order=K, lam=s.perturbative_eigenvalue, u_ref=h)
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
            net, eps_net, "strength eps = ||triu(W)||_2 of the recurrent part of W over its feedforward part tril(W, -1)",
            comment="NaN where perturbative_status is not_applicable",
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
            comment="W_ff + eps R_hat with R_hat = triu(W)/perturbative_eps, eps on a log grid "
                    "[perturbative_eps_min, perturbative_eps_max], crossing interpolated in log eps; NaN unless "
                    "perturbative_status is ok",
            **common,
        ),
        "perturbative_status": xr.Variable(net, status, flag_attrs(PerturbativeStatus, "perturbative family status")),
    }
