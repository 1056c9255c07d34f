"""Figures of one sweep, from ``results/<sweep>/sweep.nc`` alone.

Every figure has a parameter on its x axis (the swept gain ``g`` by preference, or whatever
numeric parameter the sweep varies); a figure whose x parameter or variables are missing is
skipped (its function returns ``None``). Per network, per-equilibrium quantities are reduced
over the stable equilibria (documented per quantity in :data:`QUANTITIES`); across the seeds of a
grid point the figures show the mean and its standard error. The reduced data are returned as
an xr.Dataset saved beside each figure.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, NullLocator, ScalarFormatter

from ._learning import plot_flipflop_memories
from ._style import STABLE_CODES, new_figure

__all__ = [
    "QUANTITIES",
    "SWEEP_FIGURES",
    "LEARNING_FIGURES",
    "swept_dims",
    "choose_x",
    "network_quantity",
    "summarise",
    "plot_equilibria_count",
    "plot_koopman_rates",
    "plot_dimensions",
    "plot_resilience",
    "plot_stage_seconds",
    "plot_learning",
    "sweep_figures",
]

COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


@dataclass(frozen=True)
class Quantity:
    """How a sweep variable becomes one number per network."""

    source: tuple[str, ...]
    label: str
    units: str
    reduce: Callable[[xr.Dataset], xr.DataArray]
    integer: bool = False  # an integer per network: integer ticks


def _stable_mask(ds: xr.Dataset) -> xr.DataArray:
    return ds["eq_type"].isin(list(STABLE_CODES))


def _over_stable(var: str, how: str) -> Callable[[xr.Dataset], xr.DataArray]:
    def f(ds):
        v = ds[var].where(_stable_mask(ds))
        return getattr(v, how)("equilibrium", skipna=True)

    return f


def _plain(var: str, nonneg: bool = False) -> Callable[[xr.Dataset], xr.DataArray]:
    def f(ds):
        v = ds[var].astype(float)
        return v.where(v >= 0) if nonneg else v

    return f


def _tipping(ds: xr.Dataset) -> xr.DataArray:
    up = np.abs(ds["tipping_shift_up"])
    down = np.abs(ds["tipping_shift_down"])
    d = xr.concat([up, down], "direction").min("direction", skipna=True).where(_stable_mask(ds))
    return d.min("equilibrium", skipna=True)


#: name -> Quantity (per-network reduction; NaN where undefined)
QUANTITIES: dict[str, Quantity] = {
    "n_equilibria": Quantity(("n_equilibria",), "equilibria found", "count", _plain("n_equilibria", True), integer=True),
    "n_stable": Quantity(("n_stable", "eq_type"), "stable equilibria found", "count", _plain("n_stable", True), integer=True),
    "n_equilibria_estimate": Quantity(("n_equilibria_estimate",), "Chao1 estimate of the number of equilibria",
                                      "count", _plain("n_equilibria_estimate")),
    "n_equilibria_estimate_se": Quantity(("n_equilibria_estimate_se",), "standard error of the estimate", "count",
                                         _plain("n_equilibria_estimate_se")),
    "n_equilibria_lower_bound": Quantity(
        ("n_equilibria", "n_equilibria_missing_min"),
        "equilibria found plus those provably missed (index theorem)", "count",
        lambda ds: ds["n_equilibria"] + ds["n_equilibria_missing_min"].clip(min=0), integer=True),
    "koopman_slowest_rate": Quantity(("koopman_slowest_rate",), "slowest Koopman decay rate over attractors",
                                     "1/time", _plain("koopman_slowest_rate")),
    "koopman_spectral_gap": Quantity(("koopman_spectral_gap",), "Koopman spectral gap at the slowest attractor",
                                     "1/time", _plain("koopman_spectral_gap")),
    "erank": Quantity(("erank",), "effective rank (Roy-Vetterli)", "count", _plain("erank")),
    "stable_rank": Quantity(("stable_rank",), "stable rank", "count", _plain("stable_rank")),
    "nuclear_rank": Quantity(("nuclear_rank",), "nuclear rank", "count", _plain("nuclear_rank")),
    "energy_rank": Quantity(("energy_rank",), "energy rank (90%)", "count", _plain("energy_rank", True), integer=True),
    "elbow_rank": Quantity(("elbow_rank",), "elbow rank", "count", _plain("elbow_rank", True), integer=True),
    "threshold_rank": Quantity(("threshold_rank",), "optimal hard threshold rank", "count",
                               _plain("threshold_rank", True), integer=True),
    "participation_ratio": Quantity(("participation_ratio",), "participation ratio of the activity", "count",
                                    _plain("participation_ratio")),
    "koopman_dimension": Quantity(("koopman_dimension",), "Koopman dimension (principal eigenvalues != -1)",
                                  "count", _plain("koopman_dimension", True), integer=True),
    "n_slow_modes": Quantity(("n_slow_modes",), "slow Koopman modes", "count", _plain("n_slow_modes", True), integer=True),
    "basin_stability": Quantity(("basin_stability", "eq_type"), "basin stability of the largest basin", "fraction",
                                _over_stable("basin_stability", "max")),
    "stability_margin": Quantity(("stability_margin", "eq_type"), "stability margin (mean over attractors)",
                                 "1/time", _over_stable("stability_margin", "mean")),
    "return_time": Quantity(("return_time", "eq_type"), "return time (mean over attractors)", "time",
                            _over_stable("return_time", "mean")),
    "reactivity": Quantity(("reactivity", "eq_type"), "reactivity (mean over attractors)", "1/time",
                           _over_stable("reactivity", "mean")),
    "tipping_distance": Quantity(("tipping_shift_up", "tipping_shift_down", "eq_type"),
                                 "distance to the nearest tipping point |delta theta|", "state",
                                 _tipping),
    "fraction_diverged": Quantity(("fraction_diverged",), "fraction of initial conditions that diverged",
                                  "fraction", _plain("fraction_diverged")),
    "fraction_not_on_attractor": Quantity(
        ("fraction_diverged", "fraction_unsettled", "fraction_stalled", "fraction_unassigned"),
        "fraction of initial conditions not ending on a known stable equilibrium (diverged, unsettled, "
        "stalled or unassigned)", "fraction",
        lambda ds: ds["fraction_diverged"] + ds["fraction_unsettled"] + ds["fraction_stalled"]
        + ds["fraction_unassigned"]),
    "perturbative_breakdown_eps": Quantity(
        ("perturbative_breakdown_eps",), "perturbative breakdown eps (adding an order stops helping)", "1",
        _plain("perturbative_breakdown_eps")),
    # trained sweeps (koopnet.learning)
    "train_loss": Quantity(("train_loss",), "task loss on the evaluation batch", "1", _plain("train_loss")),
    "task_performance": Quantity(("task_performance",), "task performance on the evaluation batch", "fraction",
                                 _plain("task_performance")),
    "delta_w_erank": Quantity(("delta_w_erank",), "effective rank of delta_W = W - W(step 0)", "count",
                              _plain("delta_w_erank")),
    "delta_w_energy_rank": Quantity(("delta_w_energy_rank",), "energy rank of delta_W", "count",
                                    _plain("delta_w_energy_rank", True)),
}

#: figure name -> (quantities, preferred x parameters)
FIGURE_QUANTITIES = {
    "koopman_rates": (("koopman_slowest_rate", "koopman_spectral_gap", "n_slow_modes"), ("g",)),
    "dimensions": (("erank", "stable_rank", "nuclear_rank", "energy_rank", "elbow_rank", "threshold_rank",
                    "participation_ratio", "koopman_dimension", "n_slow_modes"), ("rank", "g")),
    "resilience": (("basin_stability", "stability_margin", "tipping_distance", "return_time", "reactivity",
                    "fraction_not_on_attractor"), ("g",)),
    "perturbative": (("perturbative_breakdown_eps",), ("g", "layers", "eps")),
    "learning": (("train_loss", "task_performance", "n_stable", "koopman_slowest_rate", "koopman_spectral_gap",
                  "delta_w_erank", "delta_w_energy_rank", "basin_stability", "erank"), ("step",)),
}


def swept_dims(ds: xr.Dataset) -> list[str]:
    """Dimensions of the sweep grid (before ``seed``), in dataset order."""
    for ref in ("network_seed", "n_equilibria", "W", "theta"):
        if ref in ds:
            dims = list(ds[ref].dims)
            return dims[: dims.index("seed")] if "seed" in dims else dims
    return [d for d in ds.dims if d in ds.coords and d != "seed"]


def choose_x(ds: xr.Dataset, prefer: Sequence[str] = ("g",)) -> str | None:
    """The x-axis parameter: the first preferred numeric swept dimension with >= 2 values, else any
    other numeric one (``N`` last), else None (the figure is skipped)."""
    numeric = [d for d in swept_dims(ds) if ds.sizes[d] >= 2 and np.issubdtype(ds[d].dtype, np.number)]
    for d in list(prefer) + [d for d in numeric if d != "N"] + ["N"]:
        if d in numeric:
            return d
    return None


def network_quantity(ds: xr.Dataset, name: str) -> xr.DataArray | None:
    """One value per network (dims: swept..., seed) of a :data:`QUANTITIES` entry, or None if missing."""
    q = QUANTITIES[name]
    if not all(s in ds for s in q.source):
        return None
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = q.reduce(ds).astype(float)
    return v.assign_attrs(long_name=q.label, units=q.units)


def summarise(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """Mean, standard error and count over seeds of each available quantity (dims: the swept ones)."""
    out = {}
    for name in names:
        v = network_quantity(ds, name)
        if v is None:
            continue
        n = v.notnull().sum("seed")
        mean = v.mean("seed", skipna=True)
        std = v.std("seed", skipna=True, ddof=1) if ds.sizes.get("seed", 1) > 1 else xr.zeros_like(mean)
        se = (std / np.sqrt(n.where(n > 0))).fillna(0.0)
        out[f"{name}_mean"] = mean.assign_attrs(long_name=f"{v.attrs['long_name']}, mean over seeds",
                                                units=v.attrs["units"])
        out[f"{name}_se"] = se.assign_attrs(long_name=f"{v.attrs['long_name']}, standard error of the mean",
                                            units=v.attrs["units"])
        out[f"{name}_count"] = n.assign_attrs(long_name="networks with a defined value", units="1")
    res = xr.Dataset(out)
    res = res.drop_vars([c for c in res.coords if c not in res.dims and c not in ds.coords], errors="ignore")
    res.attrs = {k: v for k, v in ds.attrs.items() if k in ("sweep", "config_hash", "koopnet_version", "title")}
    return res


def _groups(ds: xr.Dataset, x: str, skip: Sequence[str] = ()) -> tuple[list[str], list[dict]]:
    dims = [d for d in swept_dims(ds) if d != x and d not in skip]
    combos = [dict(zip(dims, vals)) for vals in itertools.product(*[ds[d].values.tolist() for d in dims])]
    return dims, combos


def _fmt(sel: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sel.items()) if sel else "all networks"


def _wrap(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _x_label(ds: xr.Dataset, x: str) -> str:
    c = ds[x]
    name = c.attrs.get("long_name", x)
    units = c.attrs.get("units", "1")
    return f"{name} {x} [{units}]" if units not in ("1", "") else f"{name} ({x})"


def _invariant_dims(mean: xr.DataArray, dims: Sequence[str]) -> set[str]:
    """Categorical dims along which ``mean`` does not change (to round-off, NaN where NaN)."""
    out = set()
    for d in dims:
        if d not in mean.dims or mean.sizes[d] < 2:
            continue
        v = np.moveaxis(mean.values, mean.dims.index(d), 0)
        ref = v[0]
        scale = np.nanmax(np.abs(v)) if np.isfinite(v).any() else 0.0
        if all(np.array_equal(np.isnan(w), np.isnan(ref)) and np.allclose(w, ref, rtol=0, atol=1e-12 * (1 + scale),
                                                                           equal_nan=True) for w in v[1:]):
            out.add(d)
    return out


def _dodge(ax, xv: np.ndarray, i: int, n: int, width: float = 0.06) -> np.ndarray:
    """x positions of series i of n, spread by a fraction ``width`` of a step (log or linear axis)."""
    xv = np.asarray(xv, float)
    shift = (i - (n - 1) / 2) * width
    if ax.get_xscale() == "log":
        step = np.exp(np.median(np.diff(np.log(xv)))) if xv.size > 1 else 2.0
        return xv * step**shift
    step = np.median(np.diff(xv)) if xv.size > 1 else 1.0
    return xv + shift * step


def _scales(ax, xv: np.ndarray) -> None:
    """Log x axis for positive values spanning a decade or more; ticks at the swept values, plain labels.

    Scale, locators and formatters are shared by ``sharex`` axes: call it once per figure (each
    call visits every shared axes, so once per panel costs the square of the panel count).
    """
    if np.issubdtype(np.asarray(xv).dtype, np.integer):  # e.g. step, rank, N: integer ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xv = np.asarray(xv, float)
    if xv.size >= 3 and np.all(xv > 0) and xv.max() / xv.min() >= 8:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        if xv.size <= 12:
            ax.set_xticks(xv, [f"{v:g}" for v in xv])


def _context(ds: xr.Dataset) -> str:
    scal = [f"{k}={ds[k].values.item()}" for k in ds.coords if ds[k].ndim == 0]
    sweep = ds.attrs.get("sweep", "")
    return f"sweep '{sweep}'" + (f" ({', '.join(scal)})" if scal else "")


def plot_equilibria_count(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Equilibria found (and stable ones) vs the x parameter, per N, with the Chao1 estimate +- s.e. as a band.

    One panel per combination of the other swept categorical parameters. None if skipped.
    """
    x = choose_x(ds, ("g",))
    if x is None or "n_equilibria" not in ds:
        return None
    data = summarise(ds, ["n_equilibria", "n_stable", "n_equilibria_estimate", "n_equilibria_estimate_se",
                          "n_equilibria_lower_bound"])
    Ns = ds["N"].values.tolist() if "N" in swept_dims(ds) and x != "N" else [None]
    _, panels = _groups(ds, x, skip=("N",))
    nc = min(3, len(panels))
    nr = -(-len(panels) // nc)
    fig, axes = new_figure(nr, nc, figsize=(max(4.8 * nc + 3.5, 9.0), 3.8 * nr + 0.4), squeeze=False, sharex=True)
    xv = ds[x].values
    _scales(axes.flat[0], xv)  # shared by every panel (sharex)
    missed = False
    for k, sel in enumerate(panels):
        ax = axes.flat[k]
        for i, n in enumerate(Ns):
            s = dict(sel, **({"N": n} if n is not None else {}))
            d = data.sel(s)
            c = COLORS[i % len(COLORS)]
            # sizes side by side, so that equal counts do not hide each other
            xs = _dodge(ax, xv, i, len(Ns))
            est = d["n_equilibria_estimate_mean"].values
            se = d["n_equilibria_estimate_se_mean"].values if "n_equilibria_estimate_se_mean" in d else 0 * est
            ax.fill_between(xs, np.maximum(est - se, 1e-1), est + se, color=c, alpha=0.2, lw=0)
            ax.plot(xs, est, color=c, ls="--", lw=1)
            ax.errorbar(xs, d["n_equilibria_mean"].values, yerr=d["n_equilibria_se"].values, color=c,
                        marker="o", capsize=2, lw=1.5)
            if "n_stable_mean" in d:
                ax.plot(xs, d["n_stable_mean"].values, color=c, marker="v", mfc="white", ls=":", lw=1)
            if "n_equilibria_lower_bound_mean" in d:
                lb = d["n_equilibria_lower_bound_mean"].values
                more = lb > d["n_equilibria_mean"].values
                if np.any(more):
                    missed = True
                    ax.plot(xs[more], lb[more], color=c, marker="x", ls="none", ms=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_fmt(sel), fontsize=10)
        ax.set_xlabel(_x_label(ds, x))
        ax.set_ylabel("number of equilibria")
        ax.grid(alpha=0.3, which="both")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], lw=6, alpha=0.5, label=f"N = {n}")
               for i, n in enumerate(Ns) if n is not None]
    handles += [Line2D([], [], color="black", marker="o", label="found (mean ± s.e. over seeds)"),
                Line2D([], [], color="black", marker="v", mfc="white", ls=":", label="stable found"),
                Line2D([], [], color="black", ls="--", label="Chao1 estimate (band: ± its s.e.)")]
    if missed:
        handles.append(Line2D([], [], color="black", marker="x", ls="none",
                              label="found + provably missed\n(index theorem, mean over seeds)"))
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(_wrap(f"Number of equilibria vs {x}: {_context(ds)}"))
    return fig, data


def _constant(data: xr.Dataset, name: str) -> float | None:
    """The value of a quantity that is the same for every network of the sweep, else None."""
    m, e = data[f"{name}_mean"].values, data[f"{name}_se"].values
    fin = np.isfinite(m)
    if not fin.any():
        return np.nan  # undefined for every network: nothing to draw either
    v = m[fin]
    if np.allclose(v, v[0], rtol=0, atol=1e-12 * (1 + abs(v[0]))) and np.all(e[fin] == 0):
        return float(v[0])
    return None


def _quantity_panels(ds: xr.Dataset, names: Sequence[str], prefer: Sequence[str], title: str
                     ) -> tuple[Figure, xr.Dataset] | None:
    x = choose_x(ds, prefer)
    if x is None:
        return None
    data = summarise(ds, names)
    present = [n for n in names if f"{n}_mean" in data]
    if not present:
        return None
    # a quantity equal for every network (e.g. the optimal-threshold rank of dense random W, 0)
    # says nothing about the sweep: named in the title instead of drawn
    constant = {n: v for n in present if (v := _constant(data, n)) is not None}
    if len(constant) < len(present):
        present = [n for n in present if n not in constant]
    else:
        constant = {}
    Ns = ds["N"].values.tolist() if "N" in swept_dims(ds) and x != "N" else [None]
    dims, combos = _groups(ds, x, skip=("N",))
    # many series: small multiples, one column per combination of the categorical parameters
    # (each panel holds one line per N), one row per quantity, shared y per row
    multiples = len(combos) > 1 and len(combos) * len(Ns) > 4
    cols = combos if multiples else [None]
    if multiples:
        nr, nc = len(present), len(combos)
        panels = [(name, sel) for name in present for sel in combos]
    else:
        nc = min(3, len(present))
        nr = -(-len(present) // nc)
        panels = [(name, None) for name in present]
    width = 3.2 * nc + 3.0 if multiples else max(4.6 * nc + 3.0, 9.0)
    fig, axes = new_figure(nr, nc, figsize=(width, (2.7 if multiples else 3.5) * nr + 0.6), squeeze=False,
                           sharex=True, sharey="row" if multiples else False)
    xv = ds[x].values
    n_seeds = ds.sizes.get("seed", 1)
    partial = False
    drawn_combos: dict[int, dict] = {}
    _scales(axes.flat[0], xv)  # shared by every panel (sharex)
    # x autoscaling paused while drawing: with it on, every artist added rescales all the shared
    # axes (quadratic in the panel count); resumed below, the draw computes the same limits once
    for ax in axes.flat:
        ax.set_autoscalex_on(False)
    for k, (name, col) in enumerate(panels):
        ax = axes.flat[k]
        panel_combos = [col] if multiples else combos
        n_series = len(panel_combos) * len(Ns)
        # e.g. ranks of W do not depend on the activation (paired networks): one line, not hidden twins
        same = set() if multiples else _invariant_dims(data[f"{name}_mean"], [d for d in combos[0] if d != x])
        drawn = set()
        for pi, sel in enumerate(panel_combos):
            key = tuple((d, v) for d, v in sel.items() if d not in same)
            if key in drawn:
                continue
            drawn.add(key)
            ci = combos.index(sel)
            drawn_combos[ci] = sel
            for ni, n in enumerate(Ns):
                s = dict(sel, **({"N": n} if n is not None else {}))
                d = data.sel(s)
                m, e = d[f"{name}_mean"].values, d[f"{name}_se"].values
                c = COLORS[(ni if multiples else ci) % len(COLORS)]
                xs = _dodge(ax, xv, pi * len(Ns) + ni, n_series, width=0.1 / max(n_series, 1) ** 0.5)
                ax.plot(xs, m, color=c, ls=LINESTYLES[ni % 4], marker=MARKERS[ni % len(MARKERS)], ms=4, lw=1.4)
                ax.fill_between(xs, m - e, m + e, color=c, alpha=0.12, lw=0)
                # means over only some of the seeds (the others have no value, e.g. no stable
                # equilibrium or no fold in range): hollow, so they are not read as ensemble means
                part = d[f"{name}_count"].values < n_seeds
                if np.any(part & np.isfinite(m)):
                    partial = True
                    ax.plot(xs[part], m[part], ls="none", marker=MARKERS[ni % len(MARKERS)], ms=7, mfc="white",
                            mec=c, mew=1.4)
        m_all = data[f"{name}_mean"].values
        m_all = m_all[np.isfinite(m_all)]
        if m_all.size and m_all.min() > 0 and m_all.max() / m_all.min() > 30:  # e.g. return times near a fold
            ax.set_yscale("log")
        q = QUANTITIES[name]
        if q.integer and ax.get_yscale() == "linear":  # counts: no 1.900 ... 2.100 ticks
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        label = q.label + (f" (same for every {', '.join(sorted(same))})" if same else "")
        if multiples:
            head = _fmt(col) if k < nc else ""
            ax.set_title("\n".join(textwrap.wrap(head, 36)), fontsize=9)
            if k % nc == 0:
                ax.set_ylabel("\n".join(textwrap.wrap(label, 28))
                              + (f"\n[{q.units}]" if q.units not in ("count", "fraction") else ""), fontsize=8)
        else:
            ax.set_title("\n".join(textwrap.wrap(label, 42)), fontsize=10)
            ax.set_ylabel(q.units if q.units in ("count", "fraction") else f"[{q.units}]")
        if k >= len(panels) - nc:
            ax.set_xlabel(_x_label(ds, x))
        ax.grid(alpha=0.3)
    for ax in axes.flat:
        ax.autoscale(True, axis="x")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    # legend: only what is drawn (combinations folded into an identical line are not listed)
    if multiples:
        handles = [Line2D([], [], color=COLORS[ni % len(COLORS)], ls=LINESTYLES[ni % 4],
                          marker=MARKERS[ni % len(MARKERS)], label=f"N = {n}") for ni, n in enumerate(Ns) if n is not None]
    else:
        handles = [Line2D([], [], color=COLORS[ci % len(COLORS)], lw=2, label=_fmt(sel))
                   for ci, sel in sorted(drawn_combos.items()) if len(combos) > 1]
        handles += [Line2D([], [], color="black", ls=LINESTYLES[ni % 4], marker=MARKERS[ni % len(MARKERS)],
                           label=f"N = {n}") for ni, n in enumerate(Ns) if n is not None]
    handles.append(Line2D([], [], color="gray", lw=6, alpha=0.3, label="mean ± s.e. over seeds"))
    if partial:
        handles.append(Line2D([], [], color="gray", ls="none", marker="o", ms=7, mfc="white",
                              label=f"hollow: mean over fewer than {n_seeds} seeds\n(the rest undefined; *_count in the .nc)"))
    fig.legend(handles=handles, loc="outside right center")
    note = ""
    same_value = {n: v for n, v in constant.items() if np.isfinite(v)}
    if same_value:
        note += "; the same for every network (not drawn): " + ", ".join(
            f"{QUANTITIES[n].label} = {v:g}" for n, v in same_value.items())
    if len(same_value) < len(constant):
        note += "; undefined for every network (not drawn; see the flags): " + ", ".join(
            QUANTITIES[n].label for n, v in constant.items() if not np.isfinite(v))
    fig.suptitle(_wrap(f"{title} vs {x}: {_context(ds)}{note}"))
    return fig, data


def plot_koopman_rates(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Slowest Koopman rate, spectral gap and slow modes vs the x parameter (None if skipped)."""
    names, prefer = FIGURE_QUANTITIES["koopman_rates"]
    return _quantity_panels(ds, names, prefer, "Koopman spectrum")


def plot_dimensions(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Effective dimensions of W and of the dynamics vs rank (if swept) or gain (None if skipped)."""
    names, prefer = FIGURE_QUANTITIES["dimensions"]
    return _quantity_panels(ds, names, prefer, "Effective dimensions")


def plot_resilience(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Basin stability, stability margin, tipping distance ... vs the x parameter (None if skipped)."""
    names, prefer = FIGURE_QUANTITIES["resilience"]
    return _quantity_panels(ds, names, prefer, "Resilience")


def plot_perturbative_breakdown(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Breakdown eps of the perturbative family vs feedforward gain (series: depth), if it ran anywhere."""
    if "perturbative_status" not in ds or not np.any(ds["perturbative_status"].values == 0):
        return None
    names, prefer = FIGURE_QUANTITIES["perturbative"]
    return _quantity_panels(ds, names, prefer, "Perturbative family: practical radius of convergence")
def plot_learning(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Loss, performance, stable equilibria, Koopman rates, rank of delta_W and basin stability vs
    training step, one line per swept value (trained sweeps only; None otherwise)."""
    if "train_loss" not in ds or "step" not in swept_dims(ds):
        return None
    names, prefer = FIGURE_QUANTITIES["learning"]
    res = _quantity_panels(ds, names, prefer, "Learning")
    if res is None:
        return None
    fig, data = res
    steps = np.asarray(ds["step"].values, float)
    positive = steps[steps > 0]
    if positive.size >= 2 and positive.max() / positive.min() >= 8:  # log-spaced checkpoints, step 0 included
        for ax in fig.axes:
            if ax.get_visible() and ax.get_xlabel():
                ax.set_xscale("symlog", linthresh=positive.min())
                ax.set_xticks(steps, [f"{v:g}" for v in steps])
    for ax in fig.axes:  # the loss spans decades
        if ax.get_visible() and ax.get_title().startswith("task loss"):
            ax.set_yscale("log")
    return fig, data


#: figure name -> function(ds) -> (Figure, data) or None
#: the stages whose CPU time per network the workflow records (``<stage>_seconds``, in timing.nc)
TIMED_STAGES = ("equilibria", "spectra", "dimension", "resilience")


def plot_stage_seconds(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """CPU seconds per network of each stage (and their sum) against N, log-log.

    Needs the ``<stage>_seconds`` variables (results/<sweep>/timing.nc, merged into ``ds``)
    and N swept over >= 2 values, else None. One line style per value of the other numeric
    swept parameter (g, say); one panel per combination of the categorical ones; mean and
    standard error over seeds.
    """
    stages = [s for s in TIMED_STAGES if f"{s}_seconds" in ds]
    dims = swept_dims(ds)
    if not stages or "N" not in dims or ds.sizes["N"] < 2:
        return None
    values = {f"{s}_seconds": ds[f"{s}_seconds"] for s in stages}
    values["total_seconds"] = sum(values.values()).assign_attrs(units="s")
    raw = xr.Dataset(values)
    n = raw.notnull().sum("seed")
    data = xr.Dataset()
    for name, v in raw.data_vars.items():
        what = "all stages" if name == "total_seconds" else f"the {name[:-len('_seconds')]} stage"
        std = v.std("seed", ddof=1) if ds.sizes.get("seed", 1) > 1 else xr.zeros_like(v.mean("seed"))
        data[f"{name}_mean"] = v.mean("seed").assign_attrs(
            long_name=f"CPU time of {what} per network, mean over seeds", units="s")
        data[f"{name}_se"] = (std / np.sqrt(n[name].where(n[name] > 0))).fillna(0.0).assign_attrs(
            long_name=f"CPU time of {what} per network, standard error of the mean", units="s")
    data.attrs = {k: v for k, v in ds.attrs.items() if k in ("sweep", "config_hash", "koopnet_version", "title")}
    other = [d for d in dims if d != "N" and np.issubdtype(ds[d].dtype, np.number) and ds.sizes[d] >= 2]
    line_dim = other[0] if other else None
    _, panels = _groups(ds, "N", skip=tuple(other))
    nc = min(3, len(panels))
    nr = -(-len(panels) // nc)
    fig, axes = new_figure(nr, nc, figsize=(max(4.8 * nc + 3.5, 9.0), 3.8 * nr + 0.4), squeeze=False, sharex=True)
    xv = ds["N"].values.astype(float)
    lines = ds[line_dim].values.tolist() if line_dim else [None]
    names = [f"{s}_seconds" for s in stages] + ["total_seconds"]
    for k, sel in enumerate(panels):
        ax = axes.flat[k]
        ax.set_xscale("log")
        ax.set_yscale("log")
        for j, name in enumerate(names):
            for i, value in enumerate(lines):
                d = data.sel(dict(sel, **({line_dim: value} if line_dim else {})))
                # extra dims (other numeric ones beyond the first) are averaged
                mean = d[f"{name}_mean"]
                se = d[f"{name}_se"]
                rest = [dim for dim in mean.dims if dim != "N"]
                if rest:
                    mean, se = mean.mean(rest), se.mean(rest)
                ax.errorbar(xv, mean.values, yerr=se.values, color="black" if name == "total_seconds" else
                            COLORS[j % len(COLORS)], ls=LINESTYLES[i % len(LINESTYLES)],
                            marker=MARKERS[i % len(MARKERS)], capsize=2, lw=2.0 if name == "total_seconds" else 1.2)
        ax.set_xticks(xv, [f"{v:g}" for v in xv])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(_fmt(sel), fontsize=10)
        ax.set_xlabel(_x_label(ds, "N"))
        ax.set_ylabel("CPU time per network [s]")
        ax.grid(alpha=0.3, which="both")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=COLORS[j % len(COLORS)], lw=3, label=s) for j, s in enumerate(stages)]
    handles.append(Line2D([], [], color="black", lw=3, label="all stages"))
    if line_dim:
        handles += [Line2D([], [], color="gray", ls=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)],
                           label=f"{line_dim} = {v:g}") for i, v in enumerate(lines)]
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(_wrap(f"CPU time per network and stage vs N (mean ± s.e. over seeds; one core per job): "
                       f"{_context(ds)}"))
    return fig, data


SWEEP_FIGURES: dict[str, Callable[[xr.Dataset], tuple[Figure, xr.Dataset] | None]] = {
    "equilibria_count": plot_equilibria_count,
    "koopman_rates": plot_koopman_rates,
    "dimensions": plot_dimensions,
    "resilience": plot_resilience,
    "stage_seconds": plot_stage_seconds,
    "perturbative_breakdown": plot_perturbative_breakdown,
}

#: figures of trained sweeps only (``training`` section): name -> function(ds) -> (Figure, data) or None
LEARNING_FIGURES: dict[str, Callable[[xr.Dataset], tuple[Figure, xr.Dataset] | None]] = {
    "learning": plot_learning,
    "flipflop_memories": plot_flipflop_memories,
}


def sweep_figures(ds: xr.Dataset) -> dict[str, tuple[Figure, xr.Dataset]]:
    """Every applicable sweep figure (and learning figure): name -> (Figure, data); skipped figures are absent."""
    out = {}
    for name, fn in {**SWEEP_FIGURES, **LEARNING_FIGURES}.items():
        res = fn(ds)
        if res is not None:
            out[name] = res
    return out
