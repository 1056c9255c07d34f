"""The flip-flop figure of a trained sweep: one network's equilibria in the plane of its activity.

From ``sweep.nc`` alone (numpy only, no JAX): the network of the last checkpoint with the best
task performance is driven by flip-flop trials (Euler, the training's ``dt``), its states give the
principal components, and the equilibria of the equilibria stage are projected on the top two,
drawn by type; the stable equilibria whose readout holds a memory (sign pattern of C sigma(x*))
are labelled with it (Sussillo & Barak 2013, Fig. 2).
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr
import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._random import stage_rng
from ..activations import get_activation
from ..tasks import make_batch, task_parameters
from ._style import EQ_STYLE, STABLE_CODES, mark_equilibria, new_figure

__all__ = ["flipflop_memories_data", "plot_flipflop_memories"]


def _training_section(ds: xr.Dataset) -> dict | None:
    try:
        config = yaml.safe_load(ds.attrs.get("config", "")) or {}
        return config["sweeps"][ds.attrs["sweep"]].get("training")
    except (KeyError, TypeError, yaml.YAMLError):
        return None


def flipflop_memories_data(ds: xr.Dataset, n_trials: int = 8) -> xr.Dataset | None:
    """Data of the flip-flop figure, or None unless ``ds`` is a trained flip-flop sweep.

    Returns
    -------
    Dataset with the chosen network's selection as attributes, ``trajectory_pc`` (trial, time, pc),
    ``equilibrium_pc`` (equilibrium, pc), ``eq_type`` (equilibrium), ``readout`` (equilibrium, bit)
    and ``memory`` (equilibrium; 1 where a stable equilibrium's readout signs are a memory).
    """
    training = _training_section(ds)
    if not training or training.get("task", "flipflop") != "flipflop" or "C" not in ds or "step" not in ds.dims:
        return None
    last = ds.isel(step=-1)
    perf = last["task_performance"]
    flat = perf.stack(net=perf.dims)
    if not np.isfinite(flat.values).any():
        return None
    best = flat.isel(net=int(np.nanargmax(flat.values)))
    sel = {d: best[d].item() for d in perf.dims}
    net = last.sel(sel)
    N = int(np.count_nonzero(np.isfinite(net["theta"].values)))
    W, theta = net["W"].values[:N, :N], net["theta"].values[:N]
    B, C = net["B"].values[:N], net["C"].values[:, :N]
    act = get_activation(str(ds["activation"].values) if ds["activation"].ndim == 0 else sel["activation"])
    dt = float(training.get("dt", 0.2))
    params = {**task_parameters("flipflop"), **(training.get("task_params") or {})}
    batch = make_batch("flipflop", stage_rng(int(net["network_seed"].item()), "figure"), n_trials, dt, **params)
    x = np.zeros((n_trials, N))
    states = []
    for k in range(batch.u.shape[1]):  # Euler, as in training
        x = x + dt * (-x + act.sigma(x) @ W.T + theta + batch.u[:, k] @ B.T)
        states.append(x)
    states = np.stack(states, axis=1)  # (trial, time, N)
    mean = states.reshape(-1, N).mean(axis=0)
    _, sv, vt = np.linalg.svd(states.reshape(-1, N) - mean, full_matrices=False)
    pcs = vt[:2]
    explained = sv[:2] ** 2 / np.sum(sv**2)
    eq_type = net["eq_type"].values.astype(int)
    real = eq_type >= 0
    x_eq = net["x_eq"].values[real][:, :N]
    readout = act.sigma(x_eq) @ C.T
    stable = np.isin(eq_type[real], STABLE_CODES)
    patterns = {tuple(p) for p in itertools.product((-1, 1), repeat=C.shape[0])}
    memory = stable & np.array([tuple(np.sign(r).astype(int)) in patterns for r in readout], dtype=bool)
    return xr.Dataset(
        {
            "trajectory_pc": (("trial", "time", "pc"), (states - mean) @ pcs.T,
                              {"long_name": "driven trajectories projected on the top principal components",
                               "units": "state"}),
            "equilibrium_pc": (("equilibrium", "pc"), (x_eq - mean) @ pcs.T,
                               {"long_name": "equilibria of the autonomous network, projected", "units": "state"}),
            "eq_type": (("equilibrium",), eq_type[real].astype(np.int8),
                        {"long_name": "equilibrium type (EquilibriumType codes)", "units": "1"}),
            "readout": (("equilibrium", "bit"), readout, {"long_name": "readout C sigma(x*)", "units": "1"}),
            "memory": (("equilibrium",), memory.astype(np.int8),
                       {"long_name": "stable equilibrium holding a memory (readout signs are a bit pattern)",
                        "units": "1"}),
            "explained_variance": (("pc",), explained,
                                   {"long_name": "fraction of the trajectories' variance per component",
                                    "units": "1"}),
        },
        attrs={**{k: str(v) for k, v in sel.items()}, "step": str(int(ds["step"].values[-1])),
               "task_performance": float(best.item()), "sweep": ds.attrs.get("sweep", "")},
    )


def plot_flipflop_memories(ds: xr.Dataset) -> tuple[Figure, xr.Dataset] | None:
    """Sweep figure ``flipflop_memories`` (None unless the sweep trained a flip-flop)."""
    data = flipflop_memories_data(ds)
    if data is None:
        return None
    fig, ax = new_figure(1, 1, figsize=(7.5, 6.0))
    traj = data["trajectory_pc"].values
    for tr in traj:
        ax.plot(tr[:, 0], tr[:, 1], color="0.75", lw=0.6, zorder=1)
    pc = data["equilibrium_pc"].values
    mark_equilibria(ax, pc[:, 0], pc[:, 1], data["eq_type"].values)
    for (px, py), r, m in zip(pc, data["readout"].values, data["memory"].values):
        if m:
            ax.plot(px, py, marker="o", ms=16, mfc="none", mec="tab:green", mew=2, zorder=4)
            ax.annotate("".join("+" if v > 0 else "-" for v in r), (px, py), xytext=(8, 8),
                        textcoords="offset points", fontsize=9, color="tab:green")
    ev = data["explained_variance"].values
    ax.set_xlabel(f"PC 1 ({100 * ev[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ev[1]:.0f} % of variance)")
    n_mem, bits = int(data["memory"].sum()), data.sizes["bit"]
    sel = ", ".join(f"{k}={data.attrs[k]}" for k in data.attrs if k not in ("task_performance", "sweep"))
    ax.set_title(f"{bits}-bit flip-flop ({sel}; bit accuracy {100 * data.attrs['task_performance']:.1f} %):\n"
                 f"{n_mem} of {2**bits} memories held by stable equilibria of the autonomous network", fontsize=10)
    handles = [Line2D([], [], ls="none", **{k: v for k, v in EQ_STYLE[t].items()})
               for t in sorted(set(data["eq_type"].values.tolist())) if t in EQ_STYLE]
    handles += [Line2D([], [], ls="none", marker="o", ms=12, mfc="none", mec="tab:green", mew=2,
                       label="memory (readout signs)"),
                Line2D([], [], color="0.75", label="trajectories driven by pulses")]
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig, data
