"""The poster's figures (seed/poster.md): data functions returning xr.Dataset, and plot functions.

Every number comes from the library (koopnet.koopman for eigenfunctions, Taylor generator and
gEDMD; koopnet.equilibria for equilibria and their types; koopnet.simulate for basins): this
module only samples those functions on grids and draws them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .. import koopman as km
from .._flags import EquilibriumType
from ..ensembles import gaussian
from ..equilibria import EquilibriumSettings, find_equilibria
from ..network import Network, NetworkBatch
from ..simulate import TrajectoryStatus, assign_to_equilibria, integrate
from ._perturbative import perturbative_data, plot_perturbative
from ._style import mark_equilibria, new_figure

__all__ = [
    "cubic_neuron_data",
    "plot_cubic_neuron",
    "linear_network_data",
    "plot_linear_network",
    "feedforward_data",
    "plot_feedforward",
    "recurrent_data",
    "plot_recurrent",
    "PAPER_FIGURES",
    "paper_figure",
]

#: the poster's bistable neuron and a monostable one
DEFAULT_CASES = (
    {"w": 8.0, "theta": -4.0, "label": "bistable, w = 8, theta = -4 (poster)"},
    {"w": 2.0, "theta": -1.0, "label": "monostable, w = 2, theta = -1"},
)

# root kinds of the single neuron (flag variable ``root_kind``)
ROOT_KINDS = ("stable", "unstable", "complex")


def _v(dims, data, long_name, units="1", **attrs) -> xr.Variable:
    return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})


def _grid(lo: Sequence[float], hi: Sequence[float], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regular 2-D grid: axes x1 (n,), x2 (n,), points (n, n, 2) indexed [i2, i1]."""
    x1 = np.linspace(lo[0], hi[0], n)
    x2 = np.linspace(lo[1], hi[1], n)
    X1, X2 = np.meshgrid(x1, x2)
    return x1, x2, np.stack([X1, X2], axis=-1)


def _eq_dataset(eq, prefix: str = "") -> dict:
    """Equilibria of one 2-D network as variables on dim ``equilibrium``."""
    return {
        "x_eq": _v(("equilibrium", "unit"), eq.x, "equilibrium state", "state"),
        "eq_type": xr.Variable(("equilibrium",), eq.eq_type.astype(np.int8), {
            "long_name": "equilibrium type", "units": "1",
            "flag_values": [int(m) for m in EquilibriumType],
            "flag_meanings": " ".join(m.name for m in EquilibriumType)}),
        "jacobian_eigenvalues": _v(("equilibrium", "mode"), eq.jacobian_eigenvalues.astype(complex),
                                   "eigenvalues of the Jacobian at the equilibrium", "1/time"),
    }


# ================================================================== 1. single cubic neuron


def _one_neuron(w: float, theta: float, lam: float, x_range, n_x: int, n_plane: int, activation: str):
    fam = km.polynomial_neuron_family(w, theta, activation)
    eq = find_equilibria(Network(np.array([[w]]), np.array([theta]), activation))
    roots = fam.roots
    real = np.abs(roots.imag) <= 1e-9 * (1 + np.abs(roots))
    kind = np.where(~real, 2, np.where(fam.principal_eigenvalues.real < 0, 0, 1)).astype(np.int8)
    # real line: a uniform grid refined geometrically around every real root (the features are
    # |x - z|^(lambda c) with tiny exponents: they only show up close to the root)
    lo, hi = map(float, x_range)
    xs = [np.linspace(lo, hi, n_x)]
    for z in roots[real].real:
        d = np.geomspace(1e-9, 0.5, 120)
        xs += [z - d, z + d]
    x = np.unique(np.concatenate(xs))
    x = x[(x >= lo) & (x <= hi)]
    psi_line = fam.eigenfunction(x, lam)
    p_line = fam.vector_field(x).real
    feats = km.equilibria_from_eigenfunction(lambda t: fam.eigenfunction(t, lam), (lo, hi))
    # complex plane
    re = np.linspace(lo, hi, n_plane)
    im = np.linspace(-(hi - lo) / 2, (hi - lo) / 2, n_plane)
    Z = re[None, :] + 1j * im[:, None]
    psi_plane = fam.eigenfunction(Z, lam)
    return fam, eq, kind, x, psi_line, p_line, feats, re, im, psi_plane


def cubic_neuron_data(cases: Sequence[dict] = DEFAULT_CASES, eigenvalue: float = -0.01, x_range=(-5.0, 5.0), n_x: int = 2001,
                      n_plane: int = 301, activation: str = "cubic") -> xr.Dataset:
    """Single polynomial neuron dx/dt = p(x) = -x + w sigma(x) + theta: p, its roots, psi_lambda.

    Parameters
    ----------
    cases : sequence of dict
        Each with keys ``w``, ``theta`` (and optionally ``label``), e.g. the poster's bistable
        case ``{"w": 8, "theta": -4}`` and a monostable one.
    eigenvalue : float
        lambda (units 1/tau), the poster's -0.01.
    x_range : (float, float)
        Real interval (state units); the complex plane shown is Re x in this interval,
        |Im x| <= half its length.
    n_x, n_plane : int
        Points of the real-line grid (before refinement around the roots) and per axis of the plane.

    Returns
    -------
    Dataset
        Dims ``case``, ``x`` (real line, shared), ``re``/``im`` (complex plane), ``root`` (3 for the
        cubic), ``feature`` (zeros/singularities found on the real line). Variables: p, psi_line,
        psi_plane (complex), roots, residues c_k, root_kind (stable/unstable/complex), the
        eigenfunction's features and the equilibria from :func:`koopnet.equilibria.find_equilibria`.
    """
    out = [_one_neuron(c["w"], c["theta"], eigenvalue, x_range, n_x, n_plane, activation) for c in cases]
    # common real-line grid: union of all cases' grids (each refined around its own roots)
    x = np.unique(np.concatenate([o[3] for o in out]))
    n_feat = max(max(o[6].location.size for o in out), 1)
    n_eq = max(max(o[1].n_equilibria for o in out), 1)
    C, R = len(cases), out[0][0].roots.size
    p = np.empty((C, x.size))
    psi_line = np.empty((C, x.size), complex)
    psi_plane = np.empty((C, out[0][9].shape[0], out[0][9].shape[1]), complex)
    roots = np.empty((C, R), complex)
    residues = np.empty((C, R), complex)
    kind = np.empty((C, R), np.int8)
    f_loc = np.full((C, n_feat), np.nan)
    f_kind = np.full((C, n_feat), 0, np.int8)
    f_order = np.full((C, n_feat), np.nan)
    x_eq = np.full((C, n_eq), np.nan)
    eq_type = np.full((C, n_eq), -1, np.int8)
    jac = np.full((C, n_eq), np.nan)
    for i, (fam, eq, k, _, _, _, feats, re, im, plane) in enumerate(out):
        p[i] = fam.vector_field(x).real
        psi_line[i] = fam.eigenfunction(x, eigenvalue)
        psi_plane[i] = plane
        roots[i], residues[i], kind[i] = fam.roots, fam.residues, k
        m = feats.location.size
        f_loc[i, :m], f_kind[i, :m], f_order[i, :m] = feats.location, feats.kind, feats.order
        e = eq.n_equilibria
        x_eq[i, :e] = eq.x[:, 0]
        eq_type[i, :e] = eq.eq_type
        jac[i, :e] = eq.jacobian_eigenvalues[:, 0].real
    re, im = out[0][7], out[0][8]
    ds = xr.Dataset(
        {
            "w": _v(("case",), np.array([c["w"] for c in cases], float), "self-coupling w"),
            "theta": _v(("case",), np.array([c["theta"] for c in cases], float), "input theta", "state"),
            "label": xr.Variable(("case",), np.array([c.get("label") or f"w={c['w']:g}, theta={c['theta']:g}"
                                                      for c in cases], dtype=object),
                                 {"long_name": "case description"}),
            "p": _v(("case", "x"), p, "vector field p(x) = -x + w sigma(x) + theta", "state/time"),
            "psi_line": _v(("case", "x"), psi_line, "eigenfunction psi_lambda on the real line"),
            "psi_plane": _v(("case", "im", "re"), psi_plane, "eigenfunction psi_lambda on the complex x-plane"),
            "roots": _v(("case", "root"), roots, "roots z_k of p", "state"),
            "residues": _v(("case", "root"), residues, "partial-fraction coefficients c_k = 1/p'(z_k)", "time"),
            "root_kind": xr.Variable(("case", "root"), kind, {
                "long_name": "kind of root", "units": "1", "flag_values": [0, 1, 2],
                "flag_meanings": " ".join(ROOT_KINDS)}),
            "feature_location": _v(("case", "feature"), f_loc,
                                   "zero or singularity of psi_lambda found on the real line", "state"),
            "feature_kind": xr.Variable(("case", "feature"), f_kind, {
                "long_name": "feature kind", "units": "1", "flag_values": [-1, 0, 1],
                "flag_meanings": "singularity padding zero"}),
            "feature_order": _v(("case", "feature"), f_order, "exponent a of |psi| ~ |x - z|^a at the feature"),
            "x_eq": _v(("case", "equilibrium"), x_eq, "equilibrium (koopnet.equilibria)", "state"),
            "eq_type": xr.Variable(("case", "equilibrium"), eq_type, {
                "long_name": "equilibrium type", "units": "1",
                "flag_values": [int(m) for m in EquilibriumType],
                "flag_meanings": " ".join(m.name for m in EquilibriumType)}),
            "eq_jacobian": _v(("case", "equilibrium"), jac, "p'(x*) at the equilibrium", "1/time"),
        },
        coords={
            "x": _v(("x",), x, "state x", "state"),
            "re": _v(("re",), re, "Re x", "state"),
            "im": _v(("im",), im, "Im x", "state"),
        },
        attrs={"eigenvalue": float(eigenvalue), "activation": activation,
               "title": "single polynomial neuron: eigenfunction psi_lambda(x) = prod_k (x - z_k)^(lambda c_k)"},
    )
    return ds


def _domain_colours(psi: np.ndarray) -> tuple[np.ndarray, float, float]:
    """RGB image of a complex field: hue = arg psi (scaled to its range), brightness bands = log|psi|."""
    arg = np.angle(psi)
    logm = np.log(np.abs(psi))
    finite = np.isfinite(arg) & np.isfinite(logm)
    amax = float(np.nanmax(np.abs(arg[finite]))) if finite.any() else np.pi
    amax = max(amax, 1e-12)
    hue = (arg / amax + 1.0) / 2.0 * 0.8  # red (-amax) .. blue (+amax), not cyclic: range < 2 pi
    lo, hi = np.nanpercentile(logm[finite], [2, 98])
    step = (hi - lo) / 10 if hi > lo else 1.0
    band = np.mod(logm / step, 1.0)
    val = 0.65 + 0.35 * band
    sat = np.full(psi.shape, 0.85)
    hsv = np.stack([np.nan_to_num(hue), sat, np.where(finite, val, 0.0)], axis=-1)
    return mcolors.hsv_to_rgb(np.clip(hsv, 0, 1)), amax, step


def plot_cubic_neuron(ds: xr.Dataset) -> Figure:
    """One row per case: p(x) with its roots; log|psi| and arg psi on the real line; the complex plane."""
    C = ds.sizes["case"]
    fig, axes = new_figure(C, 4, figsize=(17, 4.0 * C), squeeze=False,
                           gridspec_kw={"width_ratios": [1, 1, 1, 1.25]})
    lam = ds.attrs["eigenvalue"]
    x = ds["x"].values
    for i in range(C):
        d = ds.isel(case=i)
        label = str(d["label"].values)
        roots, kinds = d["roots"].values, d["root_kind"].values
        real_roots = [(z.real, k) for z, k in zip(roots, kinds) if k != 2]
        # (a) p(x)
        ax = axes[i, 0]
        ax.plot(x, d["p"].values, color="black", lw=1.5, label="p(x)")
        ax.axhline(0, color="gray", lw=0.8)
        seen: set = set()
        xe, te = d["x_eq"].values, d["eq_type"].values
        mark_equilibria(ax, xe, np.zeros_like(xe), te, seen)
        for xi, ti in zip(xe, te):
            if ti >= 0 and np.isfinite(xi):
                ax.annotate(f"{xi:.3f}", (xi, 0), textcoords="offset points", xytext=(0, 10), ha="center",
                            fontsize=8)
        ax.set_xlabel("x [state]")
        ax.set_ylabel("dx/dt = p(x) [state/time]")
        ax.set_title(f"{label}\nvector field and equilibria", fontsize=10)
        ax.legend(loc="best")
        # (b) log|psi| on the real line
        psi = d["psi_line"].values
        for col, what in ((1, "mod"), (2, "arg")):
            ax = axes[i, col]
            with np.errstate(divide="ignore"):
                y = np.log10(np.abs(psi)) if what == "mod" else np.angle(psi) / np.pi
            ax.plot(x, y, color="tab:blue" if what == "mod" else "tab:purple", lw=1.2)
            for z, k in real_roots:
                ax.axvline(z, color="tab:green" if k == 0 else "tab:red", ls="--", lw=0.8)
            if what == "mod":
                fl, fk = d["feature_location"].values, d["feature_kind"].values
                with np.errstate(divide="ignore"):
                    fy = np.interp(fl[fk != 0], x, np.where(np.isfinite(y), y, np.nan))
                for xf, yf, kf in zip(fl[fk != 0], fy, fk[fk != 0]):
                    ax.plot([xf], [yf], "v" if kf == 1 else "^", color="tab:green" if kf == 1 else "tab:red",
                            ms=9, mec="black", label="zero of psi (stable eq.)" if kf == 1
                            else "singularity of psi (unstable eq.)")
                h, lab = ax.get_legend_handles_labels()
                uniq = dict(zip(lab, h))
                if uniq:
                    ax.legend(uniq.values(), uniq.keys(), loc="best")
                ax.set_ylabel(r"$\log_{10}|\psi_\lambda(x)|$")
                ax.set_title(rf"modulus, $\lambda$ = {lam:g}")
            else:
                ax.set_ylabel(r"arg $\psi_\lambda(x)$ / $\pi$ [rad/$\pi$]")
                ax.set_title(r"phase (principal branch per factor)")
            ax.set_xlabel("x [state]")
        # (d) complex plane, domain colouring
        ax = axes[i, 3]
        re, im = ds["re"].values, ds["im"].values
        rgb, amax, step = _domain_colours(d["psi_plane"].values)
        ax.imshow(rgb, origin="lower", extent=(re[0], re[-1], im[0], im[-1]), aspect="auto",
                  interpolation="nearest")
        handles = []
        for z, k in zip(roots, kinds):
            if k == 0:
                ax.plot(z.real, z.imag, "o", mfc="white", mec="black", ms=9)
            elif k == 1:
                ax.plot(z.real, z.imag, "X", mfc="tab:red", mec="black", ms=10)
            else:
                ax.plot(z.real, z.imag, "D", mfc="gold", mec="black", ms=8)
            ax.annotate(f"{z.real:.2f}{z.imag:+.2f}i" if k == 2 else f"{z.real:.3f}", (z.real, z.imag),
                        textcoords="offset points", xytext=(6, 6), fontsize=8, color="black",
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", alpha=0.7, lw=0))
        present = set(int(k) for k in kinds)
        for k, (mk, fc, txt) in enumerate((("o", "white", "zero (stable root)"), ("X", "tab:red",
                                           "singularity (unstable root)"), ("D", "gold", "complex root (branch point)"))):
            if k in present:
                handles.append(Line2D([], [], ls="none", marker=mk, mfc=fc, mec="black", ms=8, label=txt))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
        ax.set_xlabel("Re x [state]")
        ax.set_ylabel("Im x [state]")
        ax.set_title(rf"domain colouring of $\psi_\lambda$ (hue: arg in $\pm${amax:.2g} rad; "
                     rf"bands: $\Delta\ln|\psi|$={step:.2g})", fontsize=9)
        # hue colour bar
        sm = _hue_mappable(amax)
        cb = fig.colorbar(sm, ax=ax, fraction=0.05, pad=0.02)
        cb.set_label(r"arg $\psi_\lambda$ [rad]")
    fig.suptitle(r"Single cubic neuron $\sigma(x) = 1/2 + x/4 - x^3/48$: "
                 r"$\psi_\lambda(x) = \prod_k (x - z_k)^{\lambda c_k}$; zeros at stable and singularities "
                 r"at unstable equilibria", fontsize=12)
    return fig


def _hue_mappable(amax: float):
    import matplotlib.cm as cm

    hues = (np.linspace(-1, 1, 256) + 1) / 2 * 0.8
    rgb = mcolors.hsv_to_rgb(np.stack([hues, np.full(256, 0.85), np.full(256, 0.9)], axis=-1))
    cmap = mcolors.ListedColormap(rgb)
    return cm.ScalarMappable(norm=mcolors.Normalize(-amax, amax), cmap=cmap)


# ================================================================== 2. linear network


def linear_network_data(W=((2.0, -4.0), (4.0, 2.0)), theta=(0.0, 0.0), N: int = 8, g: float = 2.0, seed: int = 1,
                        lattice_order: int = 3, half_width: float = 3.0, n_grid: int = 161) -> xr.Dataset:
    """Linear recurrent networks: spectrum of W and the Koopman lattice; a 2-unit phase portrait.

    Parameters
    ----------
    W, theta : arrays, shapes (2, 2), (2,)
        The 2-unit network drawn over its phase portrait.
    N, g, seed : int, float, int
        A Gaussian network (entries N(0, g^2/N), ``numpy.random.default_rng(seed)``) whose W spectrum
        and lattice sum_i mu_i (Lambda_i/4 - 1), |mu| <= lattice_order, are shown.
    half_width : float
        Phase portrait box: equilibrium +- half_width (state units).
    """
    Wn = gaussian(int(N), np.random.default_rng(int(seed)), g=float(g))
    fam_n = km.linear_family(Network(Wn, np.zeros(int(N)), "linear"))
    lattice, degree = km.koopman_lattice(fam_n.principal_eigenvalues, int(lattice_order))
    W2, theta2 = np.asarray(W, float), np.asarray(theta, float)
    net2 = Network(W2, theta2, "linear")
    fam2 = km.linear_family(net2)
    xs = fam2.equilibrium
    x1, x2, P = _grid(xs - half_width, xs + half_width, n_grid)
    z = fam2.coordinates(P)  # principal eigenfunctions z_i(x), (n, n, 2)
    F = net2.vector_field(P)
    eq = find_equilibria(net2)
    ds = xr.Dataset(
        {
            "w_eigenvalues": _v(("large_mode",), fam_n.weight_eigenvalues, "eigenvalues Lambda_i of W (N-unit network)"),
            "principal_eigenvalues": _v(("large_mode",), fam_n.principal_eigenvalues,
                                        "principal Koopman eigenvalues Lambda_i/4 - 1", "1/time"),
            "lattice_eigenvalues": _v(("lattice_mode",), lattice, "Koopman lattice sum_i mu_i (Lambda_i/4 - 1)",
                                      "1/time"),
            "lattice_degree": _v(("lattice_mode",), degree.astype(np.int64), "|mu|"),
            "W2": _v(("unit", "presynaptic_unit"), W2, "weights of the 2-unit network"),
            "theta2": _v(("unit",), theta2, "input of the 2-unit network", "state"),
            "w2_eigenvalues": _v(("mode",), fam2.weight_eigenvalues, "eigenvalues of W (2-unit network)"),
            "principal_eigenvalues2": _v(("mode",), fam2.principal_eigenvalues,
                                         "principal Koopman eigenvalues (2-unit network)", "1/time"),
            "psi": _v(("x2", "x1", "mode"), z, "principal eigenfunctions z = P^-1 (A x + b)", "state/time"),
            "f": _v(("x2", "x1", "unit"), F, "vector field", "state/time"),
            **_eq_dataset(eq),
        },
        coords={"x1": _v(("x1",), x1, "x1", "state"), "x2": _v(("x2",), x2, "x2", "state")},
        attrs={"N": int(N), "g": float(g), "seed": int(seed), "lattice_order": int(lattice_order),
               "title": "linear recurrent network: Koopman spectrum fixed by the spectrum of W"},
    )
    return ds


def plot_linear_network(ds: xr.Dataset) -> Figure:
    """(a) eigenvalues of W, (b) the Koopman lattice they induce, (c) a principal eigenfunction of a 2-unit network."""
    fig, axes = new_figure(1, 3, figsize=(16, 5.0), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    lam_w = ds["w_eigenvalues"].values
    ax = axes[0]
    t = np.linspace(0, 2 * np.pi, 200)
    g = ds.attrs["g"]
    ax.plot(g * np.cos(t), g * np.sin(t), color="gray", ls=":", lw=1, label=f"circular law, radius g = {g:g}")
    ax.axvline(4.0, color="tab:red", ls="--", lw=1, label=r"Re $\Lambda$ = 4 (stability limit)")
    ax.plot(lam_w.real, lam_w.imag, "o", color="tab:blue", mec="black", label=f"eigenvalues of W (N = {ds.attrs['N']})")
    ax.set_xlabel(r"Re $\Lambda$")
    ax.set_ylabel(r"Im $\Lambda$")
    ax.set_title("(a) spectrum of W")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right")
    ax = axes[1]
    lat, deg = ds["lattice_eigenvalues"].values, ds["lattice_degree"].values
    cmap = matplotlib_cmap("viridis", int(deg.max()))
    for d in range(int(deg.max()), 0, -1):
        sel = deg == d
        ax.plot(lat[sel].real, lat[sel].imag, "o", ms=4 + 2 * (d == 1), color=cmap(d - 1),
                mec="black" if d == 1 else "none", label=rf"$|\mu|$ = {d}" + (" (principal)" if d == 1 else ""))
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_xlabel(r"Re $\lambda$ [1/time]")
    ax.set_ylabel(r"Im $\lambda$ [1/time]")
    ax.set_title(r"(b) Koopman lattice $\lambda = \sum_i \mu_i(\Lambda_{ii}/4 - 1)$")
    ax.legend(loc="upper right")
    # (c) 2-unit network
    ax = axes[2]
    x1, x2 = ds["x1"].values, ds["x2"].values
    psi = ds["psi"].isel(mode=0).values
    lam2 = ds["principal_eigenvalues2"].values
    F = ds["f"].values
    if np.max(np.abs(psi.imag)) > 1e-12 * np.max(np.abs(psi)):
        im = ax.pcolormesh(x1, x2, np.angle(psi), cmap="twilight", shading="auto", vmin=-np.pi, vmax=np.pi)
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(r"arg $\psi_1$ [rad] (isochrons)")
        cs = ax.contour(x1, x2, np.abs(psi), levels=8, colors="black", linewidths=1.0)
        ax.clabel(cs, fontsize=7, fmt="%.2g")
        what = r"contours: $|\psi_1|$ (isostables)"
    else:
        im = ax.pcolormesh(x1, x2, psi.real, cmap="RdBu_r", shading="auto")
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(r"$\psi_1(x)$ [state/time]")
        cs = ax.contour(x1, x2, psi.real, levels=10, colors="black", linewidths=1.0)
        what = r"contours: level sets of $\psi_1$"
    ax.streamplot(x1, x2, F[..., 0], F[..., 1], color=(1, 1, 1, 0.7), density=0.8, linewidth=0.7, arrowsize=0.8)
    mark_equilibria(ax, ds["x_eq"].values[:, 0], ds["x_eq"].values[:, 1], ds["eq_type"].values)
    ax.set_xlim(x1[0], x1[-1])
    ax.set_ylim(x2[0], x2[-1])
    ax.set_xlabel(r"$x_1$ [state]")
    ax.set_ylabel(r"$x_2$ [state]")
    W2 = ds["W2"].values
    ax.set_title(rf"(c) $\psi_1 = z_1$, $\lambda_1$ = {lam2[0].real:.3g}{lam2[0].imag:+.3g}i; {what}" "\n"
                 rf"W = [[{W2[0,0]:g}, {W2[0,1]:g}], [{W2[1,0]:g}, {W2[1,1]:g}]]", fontsize=10)
    ax.legend(loc="upper right")
    fig.suptitle(r"Linear recurrent network $\sigma(x) = 1/2 + x/4$: the Koopman spectrum is fixed by the "
                 r"spectrum of W", fontsize=12)
    return fig


def matplotlib_cmap(name: str, n: int):
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return lambda i: cmap(0.15 + 0.7 * (i / max(n - 1, 1)))


# ================================================================== 3. feedforward network


def feedforward_data(W=((0.0, 0.0), (6.0, 0.0)), theta=(-1.0, -3.0), eigenvalue: float = -1.0, activation: str = "logistic",
                     half_width: float = 4.0, n_grid: int = 121, n_trajectories: int = 6,
                     t_trajectory: float = 6.0) -> xr.Dataset:
    """Two-unit feedforward network: the invariant Phi_2 and psi_lambda = u^(-lambda) Phi_2 on a grid.

    Parameters
    ----------
    W, theta : arrays, shapes (2, 2), (2,)
        W strictly lower-triangular.
    eigenvalue : float
        lambda of psi_lambda = (x1 - theta1)^(-lambda) F(Phi_2) with F(Phi) = Phi (units 1/tau).
    half_width : float
        Grid: equilibrium +- half_width (state units).
    n_trajectories, t_trajectory : int, float
        Trajectories (from :func:`koopnet.koopman.flow`) drawn over the level sets; Phi_2 along them
        is stored to check it is constant.
    """
    net = Network(np.asarray(W, float), np.asarray(theta, float), activation)
    fam = km.feedforward_family(net)
    xs = fam.equilibrium
    x1, x2, P = _grid(xs - half_width, xs + half_width, n_grid)
    phi = fam.invariants(P.reshape(-1, 2)).reshape(n_grid, n_grid)
    u = fam.source_coordinate(P)
    psi_fn = fam.as_eigenfunction(eigenvalue, F=lambda ph: ph[..., 0], F_gradient=lambda ph: np.ones_like(ph))
    psi = psi_fn(P.reshape(-1, 2)).reshape(n_grid, n_grid)
    F = net.vector_field(P)
    # trajectories from points on a circle around the equilibrium
    ang = np.linspace(0, 2 * np.pi, n_trajectories, endpoint=False) + 0.3
    x0 = xs + 0.9 * half_width * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    T = np.linspace(0, t_trajectory, 60)
    traj = np.stack([km.flow(net, x0, t)[0] if t > 0 else x0 for t in T], axis=1)  # (n_traj, T, 2)
    phi_traj = fam.invariants(traj.reshape(-1, 2)).reshape(traj.shape[:2])
    eq = find_equilibria(net)
    return xr.Dataset(
        {
            "W": _v(("unit", "presynaptic_unit"), net.W, "weights (strictly lower-triangular)"),
            "theta": _v(("unit",), net.theta, "input", "state"),
            "phi": _v(("x2", "x1"), phi, "invariant Phi_2 (eigenvalue 0)"),
            "u": _v(("x2", "x1"), u, "u = x1 - theta1 (eigenfunction of eigenvalue -1)", "state"),
            "psi": _v(("x2", "x1"), psi, "psi_lambda = u^(-lambda) Phi_2"),
            "f": _v(("x2", "x1", "unit"), F, "vector field", "state/time"),
            "trajectory": _v(("trajectory", "time", "unit"), traj, "trajectories", "state"),
            "phi_trajectory": _v(("trajectory", "time"), phi_traj, "Phi_2 along the trajectories"),
            **_eq_dataset(eq),
        },
        coords={"x1": _v(("x1",), x1, "x1", "state"), "x2": _v(("x2",), x2, "x2", "state"),
                "time": _v(("time",), T, "time", "tau")},
        attrs={"eigenvalue": float(eigenvalue), "activation": activation,
               "title": "feedforward network: psi_lambda = (x1 - theta1)^(-lambda) F(Phi_2), F(Phi) = Phi"},
    )


def _robust_levels(a: np.ndarray, n: int = 15, q: float = 3.0) -> np.ndarray:
    v = a[np.isfinite(a)]
    lo, hi = np.percentile(v, [q, 100 - q])
    return np.linspace(lo, hi, n)


def plot_feedforward(ds: xr.Dataset) -> Figure:
    """(a) level sets of the invariant Phi_2 (they are the trajectories); (b) level sets of psi_lambda."""
    fig, axes = new_figure(1, 2, figsize=(13, 5.2))
    x1, x2 = ds["x1"].values, ds["x2"].values
    F = ds["f"].values
    th = ds["theta"].values
    lam = ds.attrs["eigenvalue"]
    for ax, key in zip(axes, ("phi", "psi")):
        a = ds[key].values
        a = a.real if np.iscomplexobj(a) else a
        levels = _robust_levels(a, 21)
        cf = ax.contourf(x1, x2, np.clip(a, levels[0], levels[-1]), levels=levels, cmap="RdBu_r", extend="both")
        ax.contour(x1, x2, a, levels=levels, colors="black", linewidths=0.6)
        cb = fig.colorbar(cf, ax=ax)
        if key == "phi":
            cb.set_label(r"$\Phi_2(x)$ [dimensionless]")
            for k in range(ds.sizes["trajectory"]):
                tr = ds["trajectory"].values[k]
                ax.plot(tr[:, 0], tr[:, 1], color="gold", lw=2.0, label="trajectories" if k == 0 else None)
                ax.plot(tr[0, 0], tr[0, 1], ">", color="gold", mec="black")
            ax.set_title(r"(a) level sets of the invariant $\Phi_2$ (eigenvalue 0) = trajectories")
        else:
            cb.set_label(r"$\psi_\lambda(x)$ [state$^{-\lambda}$]")
            ax.streamplot(x1, x2, F[..., 0], F[..., 1], color=(0.2, 0.2, 0.2, 0.5), density=0.7, linewidth=0.6)
            ax.set_title(rf"(b) level sets of $\psi_\lambda = (x_1-\theta_1)^{{-\lambda}}\,\Phi_2$, $\lambda$ = {lam:g}")
        ax.axvline(th[0], color="tab:purple", ls="--", lw=1.2, label=r"$x_1 = \theta_1$ ($u = 0$)")
        mark_equilibria(ax, ds["x_eq"].values[:, 0], ds["x_eq"].values[:, 1], ds["eq_type"].values)
        ax.set_xlim(x1[0], x1[-1])
        ax.set_ylim(x2[0], x2[-1])
        ax.set_xlabel(r"$x_1$ [state]")
        ax.set_ylabel(r"$x_2$ [state]")
        ax.legend(loc="upper left", framealpha=0.85)
    W = ds["W"].values
    fig.suptitle(rf"Feedforward logistic network, $w_{{21}}$ = {W[1, 0]:g}, $\theta$ = ({th[0]:g}, {th[1]:g}): "
                 r"$\psi_\lambda(x) = (x_1 - \theta_1)^{-\lambda} F(\Phi_2)$", fontsize=12)
    return fig


# ================================================================== 4. towards nonlinear recurrence


def recurrent_data(W=((2.0, -6.0), (-6.0, 2.0)), theta=(2.0, 2.0), activation: str = "logistic",
                   taylor_degree: int = 5, gedmd_degree: int = 9, gedmd_half_width: float = 2.5,
                   n_samples: int = 1500, n_test: int = 500, spurious_threshold: float = 1e-2,
                   half_width: float = 6.0, n_grid: int = 151, seed: int = 0, t_basin: float = 60.0) -> xr.Dataset:
    """2-unit recurrent network: Jacobian vs Taylor vs gEDMD eigenvalues; isostables in each basin.

    Parameters
    ----------
    W : array, shape (2, 2)
    theta : array, shape (2,), or None
        None means -W 1/2 (centred input); the default is the centred input of the default W.
    taylor_degree : int
        Degree of the Taylor (Carleman) generator at each stable equilibrium.
    gedmd_degree, gedmd_half_width, n_samples, n_test : int, float, int, int
        gEDMD with a monomial dictionary centred at each stable equilibrium, trained on states
        drawn uniformly in equilibrium +- gedmd_half_width and kept if in the basin.
    half_width, n_grid : float, int
        Phase portrait box (centred on the mean of the equilibria) and grid points per axis.
    seed : int
        Seed of the gEDMD samples.
    t_basin : float
        Integration time deciding the basin of each grid point (units of tau).

    Returns
    -------
    Dataset
        Per stable equilibrium (dim ``attractor``): Jacobian, Taylor and gEDMD eigenvalues, gEDMD
        residuals and spurious flags; on the grid: basin label and |psi_1| (the gEDMD eigenfunction
        whose eigenvalue matches the slowest Jacobian eigenvalue), NaN outside the basin and the
        gEDMD box.
    """
    W = np.asarray(W, float)
    theta = -W @ np.full(2, 0.5) if theta is None else np.asarray(theta, float)
    net = Network(W, theta, activation)
    batch = NetworkBatch(W[None], theta[None], activation)
    eq = find_equilibria(net, EquilibriumSettings(n_starts=256), seed=seed)
    stable = np.flatnonzero(eq.stable)
    A = stable.size
    center = eq.x.mean(axis=0)
    x1, x2, P = _grid(center - half_width, center + half_width, n_grid)
    pts = P.reshape(1, -1, 2)
    tr = integrate(batch, pts, t_basin, rtol=1e-8, atol=1e-10)
    labels = assign_to_equilibria(tr.x_final, tr.status, eq.x[None], stable=eq.stable[None], tol=1e-3)[0]
    labels = np.where(tr.status[0] == int(TrajectoryStatus.settled), labels, -1).reshape(n_grid, n_grid)
    tg = km.taylor_generator(net, eq.x[stable], int(taylor_degree))
    K_t = tg.eigenvalues.shape[1]
    rng = np.random.default_rng(seed)
    K_g = km.MonomialDictionary(2, int(gedmd_degree), np.zeros(2)).size
    g_ev = np.full((A, K_g), np.nan + 0j)
    g_res = np.full((A, K_g), np.nan)
    g_spur = np.zeros((A, K_g), np.int8)
    psi1 = np.full((A, n_grid, n_grid), np.nan)
    psi1_ev = np.full(A, np.nan + 0j)
    n_used = np.zeros(A, np.int64)
    for a, e in enumerate(stable):
        xs = eq.x[e]
        pool = km.sample_box(rng, xs, gedmd_half_width, 4 * (n_samples + n_test))[None]
        inside = km.sample_basin(batch, pool, xs[None], t_final=t_basin)[0]
        sel = pool[0, inside]
        X, Xt = sel[:n_samples][None], sel[n_samples:n_samples + n_test][None]
        n_used[a] = X.shape[1]
        dic = km.MonomialDictionary(2, int(gedmd_degree), xs[None, None, :], gedmd_half_width)
        r = km.gedmd(batch.vector_field, dic, X, Xt, spurious_threshold=spurious_threshold)
        g_ev[a], g_res[a], g_spur[a] = r.eigenvalues[0], r.residual[0], r.spurious[0]
        _, idx = km.match_eigenvalues(eq.jacobian_eigenvalues[e, :1], r.eigenvalues[0])
        m = int(idx[0])
        psi1_ev[a] = r.eigenvalues[0, m]
        vals = np.abs(r.eigenfunction(P.reshape(1, -1, 2), m)[0]).reshape(n_grid, n_grid)
        in_box = np.all(np.abs(P - xs) <= gedmd_half_width, axis=-1)
        vals = np.where((labels == e) & in_box, vals, np.nan)
        psi1[a] = vals / np.nanmax(vals)
    # stable manifold of the saddles (basin boundary): integrate backwards from the saddle along
    # its stable eigenvector
    saddles = np.flatnonzero(eq.eq_type == int(EquilibriumType.saddle))
    bnd = np.full((max(saddles.size, 1), 2, 400, 2), np.nan)
    from scipy.integrate import solve_ivp  # here, not at import: the sweep figures never need it (0.65 CPU-s)

    for s_i, s in enumerate(saddles):
        J = net.jacobian(eq.x[s])
        lam, vec = np.linalg.eig(J)
        v = np.real(vec[:, np.argmin(lam.real)])
        for sgn in (0, 1):
            x0 = eq.x[s] + (1 - 2 * sgn) * 1e-6 * v
            # time-reversed flow (a single 2-D curve, so scipy's solver is the right tool)
            backward = solve_ivp(lambda t, x: -net.vector_field(x), (0.0, 399 * 0.05), x0,
                                 t_eval=0.05 * np.arange(400), rtol=1e-8, atol=1e-10)
            bnd[s_i, sgn, : backward.y.shape[1]] = backward.y.T
    bnd = np.where(np.abs(bnd - center) <= 2 * half_width, bnd, np.nan)
    return xr.Dataset(
        {
            "W": _v(("unit", "presynaptic_unit"), W, "weights"),
            "theta": _v(("unit",), theta, "input", "state"),
            **_eq_dataset(eq),
            "attractor_equilibrium": _v(("attractor",), stable.astype(np.int64), "index of the stable equilibrium"),
            "taylor_eigenvalues": _v(("attractor", "taylor_mode"), tg.eigenvalues,
                                     f"Taylor generator eigenvalues (degree {taylor_degree})", "1/time"),
            "taylor_lattice_error": _v(("attractor",), tg.lattice_error,
                                       "max distance of Taylor eigenvalues to the lattice", "1/time"),
            "gedmd_eigenvalues": _v(("attractor", "gedmd_mode"), g_ev,
                                    f"gEDMD eigenvalues (monomials of degree <= {gedmd_degree})", "1/time"),
            "gedmd_residual": _v(("attractor", "gedmd_mode"), g_res, "held-out generator residual", "1/time"),
            "gedmd_spurious": xr.Variable(("attractor", "gedmd_mode"), g_spur, {
                "long_name": "gEDMD eigenpair flagged spurious", "units": "1", "flag_values": [0, 1],
                "flag_meanings": "ok spurious"}),
            "gedmd_n_samples": _v(("attractor",), n_used, "gEDMD training samples in the basin"),
            "psi1_eigenvalue": _v(("attractor",), psi1_ev, "gEDMD eigenvalue of the isostable eigenfunction",
                                  "1/time"),
            "basin": _v(("x2", "x1"), labels.astype(np.int64),
                        "index of the equilibrium reached (-1: none / not settled)"),
            "abs_psi1": _v(("attractor", "x2", "x1"), psi1,
                           "|psi_1| normalised to max 1 in the basin (isostables = its level sets)"),
            "boundary": _v(("saddle", "branch", "step", "unit"), bnd,
                           "stable manifold of the saddle (basin boundary), integrated backwards", "state"),
        },
        coords={"x1": _v(("x1",), x1, "x1", "state"), "x2": _v(("x2",), x2, "x2", "state")},
        attrs={"activation": activation, "taylor_degree": int(taylor_degree), "gedmd_degree": int(gedmd_degree),
               "gedmd_half_width": float(gedmd_half_width),
               "title": "2-unit recurrent network: principal spectrum, Taylor generator and gEDMD"},
    )


def plot_recurrent(ds: xr.Dataset) -> Figure:
    """(a) Jacobian, Taylor and gEDMD eigenvalues per attractor; (b) isostables, basins, boundary, equilibria."""
    A = ds.sizes["attractor"]
    fig, axes = new_figure(1, 2, figsize=(15, 6.0), gridspec_kw={"width_ratios": [1, 1.15]})
    ax = axes[0]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink"]
    jac = ds["jacobian_eigenvalues"].values
    att = ds["attractor_equilibrium"].values
    x_eq = ds["x_eq"].values
    lo = 0.0
    for a in range(A):
        c = colors[a % len(colors)]
        off = (a - (A - 1) / 2) * 0.12
        j = jac[att[a]]
        tay = ds["taylor_eigenvalues"].values[a]
        gev = ds["gedmd_eigenvalues"].values[a]
        sp = ds["gedmd_spurious"].values[a].astype(bool)
        lo = min(lo, 3.2 * np.min(j.real))
        xe = x_eq[att[a]]
        ax.plot(j.real, np.full(j.size, 2 + off), "o", ms=11, mfc="none", mec=c, mew=2,
                label=f"attractor {a} at ({xe[0]:.2f}, {xe[1]:.2f})")
        ax.plot(tay.real, np.full(tay.size, 1 + off), "+", ms=10, mew=2, color=c)
        ax.plot(gev[~sp].real, np.full((~sp).sum(), 0 + off), "x", ms=9, mew=2, color=c)
        ax.plot(gev[sp].real, np.full(sp.sum(), -1 + off), ".", ms=5, color=c, alpha=0.6)
        for lam in j:
            ax.axvline(lam.real, color=c, lw=0.6, ls=":")
    ax.set_xlim(lo, 0.05)
    ax.set_yticks([2, 1, 0, -1], ["Jacobian J(x*)", f"Taylor generator\n(degree {ds.attrs['taylor_degree']})",
                                  f"gEDMD (degree {ds.attrs['gedmd_degree']})\nresidual < threshold",
                                  "gEDMD flagged\nspurious"])
    ax.set_ylim(-1.6, 2.6)
    ax.set_xlabel(r"Re $\lambda$ [1/time]")
    ax.set_title("(a) Koopman eigenvalues at each attractor (dotted: Jacobian eigenvalues)")
    ax.legend(loc="lower left")
    imag = max(np.nanmax(np.abs(ds["taylor_eigenvalues"].values.imag)), np.nanmax(np.abs(jac.imag)))
    if imag > 1e-9:
        ax.text(0.02, 0.98, f"max |Im lambda| = {imag:.2g}", transform=ax.transAxes, va="top", fontsize=8)
    # (b) phase portrait
    ax = axes[1]
    x1, x2 = ds["x1"].values, ds["x2"].values
    basin = ds["basin"].values
    light = [mcolors.to_rgba(colors[a % len(colors)], 0.18) for a in range(A)]
    img = np.ones(basin.shape + (4,))
    for a in range(A):
        img[basin == att[a]] = light[a]
    ax.imshow(img, origin="lower", extent=(x1[0], x1[-1], x2[0], x2[-1]), aspect="auto", interpolation="nearest")
    hw = ds.attrs["gedmd_half_width"]
    for a in range(A):
        v = ds["abs_psi1"].values[a]
        c = colors[a % len(colors)]
        if np.any(np.isfinite(v)):
            cs = ax.contour(x1, x2, v, levels=np.linspace(0.02, 0.92, 10), colors=c, linewidths=1.2)
            ax.clabel(cs, fontsize=7, fmt="%.2f")
        xe = x_eq[att[a]]
        ax.add_patch(Rectangle((xe[0] - hw, xe[1] - hw), 2 * hw, 2 * hw, fill=False, ec=c, ls="--", lw=1,
                               label="gEDMD sampling box" if a == 0 else None))
    bnd = ds["boundary"].values
    for s in range(bnd.shape[0]):
        for b in range(2):
            ax.plot(bnd[s, b, :, 0], bnd[s, b, :, 1], color="black", lw=2.2,
                    label="basin boundary (stable manifold of the saddle)" if s == 0 and b == 0 else None)
    mark_equilibria(ax, x_eq[:, 0], x_eq[:, 1], ds["eq_type"].values, zorder=6)
    ax.set_xlim(x1[0], x1[-1])
    ax.set_ylim(x2[0], x2[-1])
    ax.set_xlabel(r"$x_1$ [state]")
    ax.set_ylabel(r"$x_2$ [state]")
    ax.set_title(r"(b) isostables: level sets of $|\psi_1|$ (gEDMD, normalised) in each basin (shaded)")
    ax.legend(loc="upper right", framealpha=0.9)
    W = ds["W"].values
    th = ds["theta"].values
    fig.suptitle(rf"Towards nonlinear recurrence: logistic network W = [[{W[0,0]:g}, {W[0,1]:g}], "
                 rf"[{W[1,0]:g}, {W[1,1]:g}]], $\theta$ = ({th[0]:g}, {th[1]:g})", fontsize=12)
    return fig



#: poster figure name -> (data function, plot function); the keys of config ``paper.<name>`` are the
#: data function's keyword arguments
PAPER_FIGURES = {
    "cubic_neuron": (cubic_neuron_data, plot_cubic_neuron),
    "linear_network": (linear_network_data, plot_linear_network),
    "feedforward": (feedforward_data, plot_feedforward),
    "recurrent": (recurrent_data, plot_recurrent),
    "perturbative": (perturbative_data, plot_perturbative),
}


def paper_figure(name: str, settings: dict | None = None) -> tuple[Figure, xr.Dataset]:
    """Compute and draw one poster figure: ``(figure, data)``.

    Parameters
    ----------
    name : str
        A key of :data:`PAPER_FIGURES`.
    settings : dict, optional
        Keyword arguments of its data function (the config section ``paper.<name>``).
    """
    data_fn, plot_fn = PAPER_FIGURES[name]
    ds = data_fn(**dict(settings or {}))
    ds.attrs["figure"] = name
    return plot_fn(ds), ds
