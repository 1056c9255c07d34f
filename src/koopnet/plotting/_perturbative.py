"""Poster continuation: perturbative eigenfunctions of W_ff + eps W_rec (docs/perturbative.md).

A 2-unit feedforward network closed by a recurrent link: |psi| and arg psi at several eps with the
generator residual map beside them, and the residual of each order against eps on log-log axes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from .. import koopman as km
from ..network import Network
from ._style import new_figure

__all__ = ["perturbative_data", "plot_perturbative"]


def _v(dims, data, long_name, units="1", **attrs) -> xr.Variable:
    return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})


def perturbative_data(W_ff=((0.0, 0.0), (6.0, 0.0)), theta=(-1.0, -3.0), W_rec=((0.0, -1.0), (0.0, 0.0)),
                      activation: str = "logistic", eigenvalue: Sequence[float] = (-1.0, 0.5), order: int = 2,
                      eps: Sequence[float] = (0.0, 0.05, 0.5), half_width: float = 3.0, n_grid: int = 60,
                      eps_range: Sequence[float] = (1e-3, 1.0), n_eps: int = 25, n_sample: int = 32,
                      seed: int = 1) -> xr.Dataset:
    """psi(x; eps) = u^(-lambda) sum_k eps^k F_k on a grid, its residual map, and residual vs eps.

    Parameters
    ----------
    W_ff, theta, W_rec : arrays, shapes (2, 2), (2,), (2, 2)
        Feedforward part (strictly lower-triangular), input, recurrent perturbation.
    eigenvalue : (re, im)
        lambda (1/time).
    order : int
        K: orders 0..K.
    eps : sequence of float
        The eps of the maps (one row each).
    half_width, n_grid : float, int
        Grid: feedforward equilibrium +- half_width, n_grid points per axis (even: no point on u = 0).
    eps_range, n_eps : (float, float), int
        Log grid of the residual-vs-eps panel.
    n_sample, seed : int
        Points of that panel (numpy seed): |u| in [0.5, 2], x2 within half_width of the equilibrium.
    """
    net = Network(np.asarray(W_ff, float), np.asarray(theta, float), activation)
    lam = complex(eigenvalue[0], eigenvalue[1])
    fam = km.perturbative_family(net, np.asarray(W_rec, float), order=int(order), lam=lam)
    xs = km.feedforward_family(net).equilibrium
    x1 = np.linspace(xs[0] - half_width, xs[0] + half_width, n_grid)
    x2 = np.linspace(xs[1] - half_width, xs[1] + half_width, n_grid)
    P = np.stack(np.meshgrid(x1, x2), axis=-1)  # [i2, i1, unit]
    terms = fam.generator_terms(P.reshape(-1, 2))
    eps = np.asarray(eps, float)
    psi = np.stack([fam.evaluate(terms[0], e).reshape(n_grid, n_grid) for e in eps])
    res = fam.residual(None, eps, terms=terms).reshape(eps.size, n_grid, n_grid)
    rng = np.random.default_rng(seed)
    xsmp = np.column_stack([theta[0] + rng.choice([-1.0, 1.0], n_sample) * rng.uniform(0.5, 2.0, n_sample),
                            xs[1] + rng.uniform(-half_width, half_width, n_sample)])
    ts = fam.generator_terms(xsmp)
    eg = np.geomspace(eps_range[0], eps_range[1], n_eps)
    curves = np.stack([[np.sqrt(np.mean(fam.residual(None, eg, order=k, terms=ts, resum=r) ** 2, axis=1))
                        for k in range(order + 1)] for r in ("none", "exponential")])  # (2, K+1, E)
    # non-uniformity near u = 0: residual per order along x2 = x2*, u > 0, at each eps of the maps
    ul = np.geomspace(1e-3, 2.0 * half_width, 4 * n_eps)
    tl = fam.generator_terms(np.column_stack([theta[0] + ul, np.full(ul.size, xs[1])]))
    line = np.stack([[fam.residual(None, eps, order=k, terms=tl, resum=r) for k in range(order + 1)]
                     for r in ("none", "exponential")])  # (2, K+1, E, U)
    return xr.Dataset(
        {
            "line_residual": _v(("resummation", "order", "eps", "u"), line,
                                "relative generator residual of the order-k truncation along x2 = x2*, x1 = theta1 + u"),
            "W_ff": _v(("unit", "presynaptic_unit"), net.W, "feedforward weights"),
            "W_rec": _v(("unit", "presynaptic_unit"), np.asarray(W_rec, float), "recurrent perturbation"),
            "theta": _v(("unit",), net.theta, "input", "state"),
            "psi": _v(("eps", "x2", "x1"), psi, "order-K perturbative eigenfunction psi^(K)(x; eps)"),
            "residual": _v(("eps", "x2", "x1"), res, "relative generator residual |(L_eps - lambda) psi| / |lambda psi|"),
            "residual_rms": _v(("resummation", "order", "eps_sweep"), curves,
                               "RMS relative generator residual of the order-k truncation on the sample"),
            "sample": _v(("sample", "unit"), xsmp, "sample points of residual_rms", "state"),
        },
        coords={"x1": _v(("x1",), x1, "x1", "state"), "x2": _v(("x2",), x2, "x2", "state"),
                "eps": _v(("eps",), eps, "eps of the maps"), "u": _v(("u",), ul, "u = x1 - theta1", "state"), "eps_sweep": _v(("eps_sweep",), eg, "eps"),
                "order": _v(("order",), np.arange(order + 1), "order k"),
                "resummation": ("resummation", ["none", "exponential"],
                                {"long_name": "none: the series; exponential: psi_0 exp(sum eps^k S_k)"})},
        attrs={"eigenvalue_real": lam.real, "eigenvalue_imag": lam.imag, "activation": activation,
               "title": "perturbative eigenfunctions of W_ff + eps W_rec"},
    )


def plot_perturbative(ds: xr.Dataset) -> Figure:
    """Rows: eps; columns: log|psi|, arg psi, log10 residual; right: residual vs eps per order."""
    E = ds.sizes["eps"]
    fig, axes = new_figure(E, 4, figsize=(19, 4.4 * E), squeeze=False)
    x1, x2 = ds["x1"].values, ds["x2"].values
    th = ds["theta"].values
    lam = complex(ds.attrs["eigenvalue_real"], ds.attrs["eigenvalue_imag"])
    K = int(ds["order"].values[-1])
    for i, e in enumerate(ds["eps"].values):
        psi = ds["psi"].values[i]
        la = np.log10(np.abs(psi))
        lv = np.nanpercentile(la, [3, 97])
        ax = axes[i, 0]
        cf = ax.contourf(x1, x2, np.clip(la, *lv), levels=np.linspace(*lv, 16), cmap="viridis")
        ax.contour(x1, x2, la, levels=np.linspace(*lv, 16), colors="black", linewidths=0.4)
        fig.colorbar(cf, ax=ax, label=r"$\log_{10}|\psi|$")
        ax.set_title(rf"$|\psi^{{({K})}}|$, $\varepsilon$ = {e:g}")
        ax = axes[i, 1]
        cf = ax.pcolormesh(x1, x2, np.angle(psi), cmap="twilight", vmin=-np.pi, vmax=np.pi, shading="auto")
        fig.colorbar(cf, ax=ax, label=r"arg $\psi$ [rad]")
        ax.set_title(rf"arg $\psi^{{({K})}}$, $\varepsilon$ = {e:g}")
        ax = axes[i, 2]
        rr = np.maximum(ds["residual"].values[i], 1e-16)  # eps = 0: round-off, some exact zeros
        cf = ax.pcolormesh(x1, x2, rr, cmap="magma", shading="auto",
                           norm=mcolors.LogNorm(vmin=max(np.nanmin(rr), 1e-16), vmax=max(np.nanmax(rr), 1e-15)))
        fig.colorbar(cf, ax=ax, label="relative generator residual")
        ax.set_title(rf"residual $|(L_\varepsilon-\lambda)\psi|/|\lambda\psi|$, $\varepsilon$ = {e:g}")
        for ax in axes[i, :3]:
            ax.axvline(th[0], color="white", ls="--", lw=1.0)
            ax.set_xlabel(r"$x_1$ [state]")
            ax.set_ylabel(r"$x_2$ [state]")
        if i > 0:  # residual per order along the line through the equilibrium: non-uniform as u -> 0
            ax = axes[i, 3]
            for k in range(K + 1):
                c = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"][k % 5]
                ax.loglog(ds["u"].values, ds["line_residual"].values[0, k, i], "-", color=c, label=f"order {k}")
                ax.loglog(ds["u"].values, ds["line_residual"].values[1, k, i], ":", color=c,
                          label=f"order {k}, exp. resummed")
            ax.set_xlabel(r"$u = x_1 - \theta_1$ (on $x_2 = x_2^*$) [state]")
            ax.set_ylabel("relative generator residual")
            ax.set_title(rf"residual along $x_2 = x_2^*$ as $u\to 0$, $\varepsilon$ = {e:g}")
            ax.legend(fontsize=7, loc="lower left")
    ax = axes[0, 3]
    eg = ds["eps_sweep"].values
    cols = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for k in range(K + 1):
        c = cols[k % len(cols)]
        ax.loglog(eg, ds["residual_rms"].values[0, k], "-o", ms=3, color=c, label=f"order {k}")
        ax.loglog(eg, ds["residual_rms"].values[1, k], ":", color=c, label=f"order {k}, exponential resummation")
        ref = ds["residual_rms"].values[0, k, 0] * (eg / eg[0]) ** (k + 1)
        ax.loglog(eg, ref, "--", color=c, lw=0.8, alpha=0.6, label=rf"$\propto\varepsilon^{{{k + 1}}}$")
    ax.set_xlabel(r"$\varepsilon$")
    ax.set_ylabel("RMS relative generator residual")
    ax.set_title(r"residual of the order-$K$ truncation vs $\varepsilon$" "\n" r"(sample with $|u| \in [0.5, 2]$)")
    ax.legend(fontsize=6, loc="lower right", ncol=1)
    Wr = ds["W_rec"].values
    fig.suptitle(rf"Perturbative Koopman eigenfunctions of $W_{{ff}} + \varepsilon W_{{rec}}$: $w_{{21}}$ = "
                 rf"{ds['W_ff'].values[1, 0]:g}, $W_{{rec}}$ = {Wr.tolist()}, $\lambda$ = {lam:g}, "
                 rf"$\psi = u^{{-\lambda}}\sum_{{k\leq {K}}}\varepsilon^k F_k$", fontsize=12)
    return fig
