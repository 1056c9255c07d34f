"""Figures: every figure function draws non-empty PNG/PDF on tiny data, the data behind the poster
figures agree with theory (SCIENCE.md), sweep figures skip what is not swept, and the figure rules
run end to end (and build a report) on a tiny config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from koopnet import io, plotting
from koopnet._flags import EquilibriumType

REPO = Path(__file__).resolve().parents[1]

#: poster figure settings on small grids (the keys of config `paper.<figure>`)
TINY_PAPER = {
    "cubic_neuron": {"cases": [{"w": 8.0, "theta": -4.0, "label": "bistable"}, {"w": 2.0, "theta": -1.0}],
                     "n_x": 201, "n_plane": 41},
    "linear_network": {"N": 5, "n_grid": 21, "lattice_order": 2},
    "feedforward": {"n_grid": 17},
    "recurrent": {"n_grid": 25, "gedmd_degree": 7, "n_samples": 400, "n_test": 100, "taylor_degree": 3},
    "perturbative": {"n_grid": 12, "n_eps": 5, "n_sample": 8, "order": 1},
}


@pytest.fixture(scope="module")
def paper():
    """(figure, data) of every poster figure on tiny grids."""
    return {name: plotting.paper_figure(name, TINY_PAPER[name]) for name in plotting.PAPER_FIGURES}


def _saved_ok(fig, tmp_path: Path, name: str, data=None) -> None:
    files = plotting.save_figure(fig, tmp_path / f"{name}.png", data=data, dpi=40)
    assert [f.suffix for f in files] == [".png", ".pdf"] + ([".nc"] if data is not None else [])
    for f in files:
        assert f.stat().st_size > 1000, f  # non-empty: more than a blank page
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_poster_figures_are_written(paper, tmp_path):
    for name, (fig, data) in paper.items():
        _saved_ok(fig, tmp_path, name, data)
        back = io.open_dataset(tmp_path / f"{name}.nc")
        assert set(back.data_vars) == set(data.data_vars)
        for vname, var in back.variables.items():  # self-describing, coordinates included
            assert "long_name" in var.attrs, (name, vname)
            assert "units" in var.attrs or var.dtype.kind in "OUS", (name, vname)


def test_paper_schema_matches_the_data_functions():
    """Every key of config `paper.<figure>` is a keyword of its data function, with the same default."""
    import inspect

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["paper"]["properties"]
    assert set(props) == {"in_default_target", *plotting.PAPER_FIGURES}
    for name, (data_fn, _) in plotting.PAPER_FIGURES.items():
        params = inspect.signature(data_fn).parameters
        for key, node in props[name]["properties"].items():
            assert key in params, f"paper.{name}.{key}"
            default = params[key].default
            assert yaml.safe_load(yaml.safe_dump(_plain(default))) == node["default"], f"paper.{name}.{key}"
    paper_yaml = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["paper"]
    for name, section in paper_yaml.items():
        if name != "in_default_target":
            assert set(section) <= set(inspect.signature(plotting.PAPER_FIGURES[name][0]).parameters)


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------ poster data against theory


def test_cubic_neuron_zeros_and_singularities_are_the_equilibria(paper):
    ds = paper["cubic_neuron"][1]
    bi = ds.isel(case=0)
    # SCIENCE.md 2b: roots -sqrt(6), 0, sqrt(6); c = -1/2, 1, -1/2
    np.testing.assert_allclose(np.sort(bi["roots"].values.real), [-np.sqrt(6), 0, np.sqrt(6)], atol=1e-12)
    np.testing.assert_allclose(bi["residues"].values.real, [-0.5, 1.0, -0.5], atol=1e-12)
    for c in range(ds.sizes["case"]):
        d = ds.isel(case=c)
        kind, loc = d["feature_kind"].values, d["feature_location"].values
        eq_type, x_eq = d["eq_type"].values, d["x_eq"].values
        stable = np.sort(x_eq[np.isin(eq_type, [0, 1])])
        unstable = np.sort(x_eq[(eq_type >= 2)])
        zeros, sing = np.sort(loc[kind == 1]), np.sort(loc[kind == -1])
        assert zeros.size == stable.size and sing.size == unstable.size
        np.testing.assert_allclose(zeros, stable, atol=1e-6)
        np.testing.assert_allclose(sing, unstable, atol=1e-6)
        # zeros have a positive order lambda c_k, singularities a negative one
        assert np.all(d["feature_order"].values[kind == 1] > 0)
        assert np.all(d["feature_order"].values[kind == -1] < 0)
    # monostable case: one real (stable) root and a complex pair
    mono = ds.isel(case=1)
    assert list(mono["root_kind"].values).count(2) == 2


def test_cubic_neuron_eigenfunction_on_the_plane_matches_the_line(paper):
    """psi on the real axis of the complex grid equals psi on the real line (same branch)."""
    ds = paper["cubic_neuron"][1]
    im = ds["im"].values
    i0 = int(np.argmin(np.abs(im)))
    assert abs(im[i0]) < 1e-12
    for c in range(ds.sizes["case"]):
        line = ds["psi_line"].isel(case=c)
        axis = ds["psi_plane"].isel(case=c, im=i0).values
        ref = line.interp(x=ds["re"].values).values
        ok = np.isfinite(axis) & np.isfinite(ref) & (np.abs(axis) > 0)
        np.testing.assert_allclose(axis[ok], ref[ok], rtol=1e-3)


def test_linear_network_lattice_and_eigenfunction(paper):
    ds = paper["linear_network"][1]
    lam = ds["principal_eigenvalues"].values
    np.testing.assert_allclose(lam, ds["w_eigenvalues"].values / 4 - 1, atol=1e-12)
    lat, deg = ds["lattice_eigenvalues"].values, ds["lattice_degree"].values
    np.testing.assert_allclose(np.sort_complex(lat[deg == 1]), np.sort_complex(lam), atol=1e-12)
    # degree-2 values are the pairwise sums lambda_i + lambda_j
    pairs = np.array([lam[i] + lam[j] for i in range(lam.size) for j in range(i, lam.size)])
    np.testing.assert_allclose(np.sort_complex(lat[deg == 2]), np.sort_complex(pairs), atol=1e-12)
    # generator identity grad psi . f = lambda psi on the grid (psi is affine: np.gradient is exact)
    x1, x2 = ds["x1"].values, ds["x2"].values
    f = ds["f"].values
    for m in range(2):
        psi = ds["psi"].isel(mode=m).values
        d2, d1 = np.gradient(psi, x2, x1)
        lhs = d1 * f[..., 0] + d2 * f[..., 1]
        rhs = ds["principal_eigenvalues2"].values[m] * psi
        np.testing.assert_allclose(lhs, rhs, atol=1e-9 * np.max(np.abs(rhs)))
    # psi vanishes at the equilibrium, a stable focus for the default spiral W
    assert int(ds["eq_type"].values[0]) == EquilibriumType.stable_focus


def test_feedforward_invariant_is_constant_on_trajectories(paper):
    ds = paper["feedforward"][1]
    phi = ds["phi_trajectory"].values
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi, phi[:, :1] * np.ones_like(phi), atol=1e-8 * (1 + np.abs(phi).max()))
    # psi_lambda = u^(-lambda) Phi with lambda = -1: psi = u Phi
    u, p, psi = ds["u"].values, ds["phi"].values, ds["psi"].values
    ok = np.isfinite(p)
    np.testing.assert_allclose(psi[ok].real, (u * p)[ok], rtol=1e-10, atol=1e-10)


def test_recurrent_spectra_and_basins(paper):
    ds = paper["recurrent"][1]
    types = ds["eq_type"].values
    assert (types == EquilibriumType.stable_node).sum() == 2 and (types == EquilibriumType.saddle).sum() == 1
    jac = ds["jacobian_eigenvalues"].values
    for a, e in enumerate(ds["attractor_equilibrium"].values):
        # Taylor generator eigenvalues contain the Jacobian eigenvalues exactly (degree-1 block)
        tay = ds["taylor_eigenvalues"].values[a]
        assert np.min(np.abs(tay[:, None] - jac[e][None, :]), axis=0).max() < 1e-8
        # the isostable eigenfunction's gEDMD eigenvalue is the slowest Jacobian eigenvalue
        assert abs(ds["psi1_eigenvalue"].values[a] - jac[e, 0]) < 1e-2
        # the grid point nearest the attractor is in its basin
        x = ds["x_eq"].values[e]
        i1 = int(np.argmin(np.abs(ds["x1"].values - x[0])))
        i2 = int(np.argmin(np.abs(ds["x2"].values - x[1])))
        assert int(ds["basin"].values[i2, i1]) == e
    # the basin boundary starts at the saddle (mutual inhibition: the diagonal x1 = x2)
    bnd = ds["boundary"].values[0]
    saddle = ds["x_eq"].values[types == EquilibriumType.saddle][0]
    np.testing.assert_allclose(bnd[:, 0], np.broadcast_to(saddle, (2, 2)), atol=1e-5)
    pts = bnd.reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    np.testing.assert_allclose(pts[:, 0], pts[:, 1], atol=1e-6)


# ------------------------------------------------------------------ sweep figures


def _fake_sweep(swept: dict, seeds: int = 3, drop: tuple = ()) -> xr.Dataset:
    """A sweep-shaped dataset with the variables the sweep figures use (values are arbitrary)."""
    rng = np.random.default_rng(0)
    dims = list(swept) + ["seed"]
    shape = [len(v) for v in swept.values()] + [seeds]
    E = 3
    coords = {k: v for k, v in swept.items()}
    coords["seed"] = np.arange(seeds)

    def per_net(lo, hi, integer=False):
        a = rng.uniform(lo, hi, shape)
        return (dims, np.round(a).astype(np.int64) if integer else a, {"long_name": "x", "units": "1"})

    def per_eq(lo, hi):
        return (dims + ["equilibrium"], rng.uniform(lo, hi, shape + [E]), {"long_name": "x", "units": "1"})

    eq_type = np.broadcast_to(np.array([0, 2, -1], np.int8), shape + [E]).copy()
    data = {
        "network_seed": per_net(0, 100, True),
        "n_equilibria": per_net(1, 9, True),
        "n_stable": per_net(1, 3, True),
        "n_equilibria_estimate": per_net(1, 12),
        "n_equilibria_estimate_se": per_net(0, 2),
        "eq_type": (dims + ["equilibrium"], eq_type, {"long_name": "equilibrium type", "units": "1"}),
        "koopman_slowest_rate": per_net(0.1, 1),
        "koopman_spectral_gap": per_net(0, 0.5),
        "n_slow_modes": per_net(0, 3, True),
        "erank": per_net(1, 4),
        "stable_rank": per_net(1, 3),
        "koopman_dimension": per_net(-1, 4, True),
        "participation_ratio": per_net(1, 3),
        "basin_stability": per_eq(0, 1),
        "stability_margin": per_eq(0, 1),
        "tipping_shift_up": per_eq(0, 2),
        "tipping_shift_down": per_eq(-2, 0),
        "fraction_diverged": per_net(0, 0.1),
        "fraction_unsettled": per_net(0, 0.1),
        "fraction_stalled": per_net(0, 0.1),
        "fraction_unassigned": per_net(0, 0.1),
        # per-stage CPU time (timing.nc, merged in by the figures rule)
        **{f"{stage}_seconds": per_net(0.01, 10) for stage in ("equilibria", "spectra", "dimension", "resilience")},
    }
    for k in drop:
        data.pop(k)
    ds = xr.Dataset(data, coords=coords, attrs={"sweep": "fake"})
    ds = ds.assign_coords(activation="logistic")
    return ds


def test_sweep_figures_on_tiny_data(tmp_path):
    ds = _fake_sweep({"ensemble": ["gaussian", "lowrank"], "N": [2, 3], "g": [0.5, 2.0, 8.0]})
    # the perturbative figure only where the family ran (status ok somewhere): here after adding it
    assert set(plotting.sweep_figures(ds)) == set(plotting.SWEEP_FIGURES) - {"perturbative_breakdown"}
    rate = ds["koopman_slowest_rate"]
    ds = ds.assign(perturbative_status=xr.zeros_like(rate, dtype=np.int8),
                   perturbative_breakdown_eps=np.abs(rate) + 0.1)
    figs = plotting.sweep_figures(ds)
    assert set(figs) == set(plotting.SWEEP_FIGURES)
    for name, (fig, data) in figs.items():
        assert set(data.dims) == {"ensemble", "N", "g"}
        _saved_ok(fig, tmp_path, name, data)
    # the reduced data are the seed means of the per-network values
    q = plotting.network_quantity(ds, "tipping_distance")
    expect = np.minimum(np.abs(ds["tipping_shift_up"]), np.abs(ds["tipping_shift_down"])).isel(equilibrium=0)
    np.testing.assert_allclose(q.values, expect.values)
    data = figs["resilience"][1]
    np.testing.assert_allclose(data["tipping_distance_mean"].values, expect.mean("seed").values)
    # -1 (no attractor) is not a dimension
    kd = plotting.network_quantity(ds, "koopman_dimension")
    assert np.all((kd.values >= 0) | np.isnan(kd.values))
    # stage times: seed means, and the total is their sum network by network
    data = figs["stage_seconds"][1]
    stages = ("equilibria", "spectra", "dimension", "resilience")
    np.testing.assert_allclose(data["spectra_seconds_mean"].values, ds["spectra_seconds"].mean("seed").values)
    total = sum(ds[f"{s}_seconds"] for s in stages)
    np.testing.assert_allclose(data["total_seconds_mean"].values, total.mean("seed").values)


def test_sweep_figures_follow_what_is_swept():
    # x axis: g when swept, else another numeric parameter, else N, else nothing
    assert plotting.choose_x(_fake_sweep({"N": [2, 3], "g": [1.0, 2.0]})) == "g"
    assert plotting.choose_x(_fake_sweep({"N": [2, 3], "rank": [1, 2]})) == "rank"
    assert plotting.choose_x(_fake_sweep({"ensemble": ["a", "b"], "N": [2, 3]})) == "N"
    none = _fake_sweep({"ensemble": ["gaussian", "lowrank"]})
    assert plotting.choose_x(none) is None
    assert plotting.sweep_figures(none) == {}
    # missing variables: that figure is skipped, the others are drawn
    part = _fake_sweep({"g": [1.0, 2.0]}, drop=("koopman_slowest_rate", "koopman_spectral_gap", "n_slow_modes"))
    figs = plotting.sweep_figures(part)
    assert "koopman_rates" not in figs and "equilibria_count" in figs and "resilience" in figs


# ------------------------------------------------------------------ workflow


@pytest.mark.slow
def test_figure_rules_end_to_end(tmp_path):
    """sweep_figures and paper_figures on a tiny config, then the Snakemake report."""
    config = {
        "seed": 3,
        "sweeps": {"t": {"ensemble": "gaussian", "activation": "logistic", "theta_mode": "centered",
                         "N": [2, 3], "params": {"g": [1.0, 8.0]}, "seeds": 2, "seeds_per_job": 2}},
        "equilibria": {"n_starts": 16},
        "paper": {"in_default_target": True, **TINY_PAPER},
        "figure_formats": ["png", "pdf"],  # the default is PNG only
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "config.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for args in (["--cores", "2"], ["--report", "report.html"]):
        r = subprocess.run(base + args, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    for name in plotting.PAPER_FIGURES:
        for ext in ("png", "pdf", "nc"):
            assert (tmp_path / "results" / "paper" / f"{name}.{ext}").stat().st_size > 1000
    fig_dir = tmp_path / "results" / "t" / "figures"
    # stage_seconds reads timing.nc (N is swept here); perturbative_breakdown needs the perturbative family
    for name in set(plotting.SWEEP_FIGURES) - {"perturbative_breakdown"}:
        for ext in ("png", "pdf", "nc"):
            assert (fig_dir / f"{name}.{ext}").stat().st_size > 1000
    html = (tmp_path / "report.html").read_text(errors="ignore")
    assert "Poster figures" in html and "Sweep figures" in html
    assert "ERROR/3" not in r.stderr  # captions are valid RST


def test_saved_figures_are_byte_reproducible(tmp_path):
    # a PDF carries /CreationDate unless told not to; two saves a second apart must be identical
    import time

    import matplotlib.pyplot as plt

    paths = []
    for k in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths.append(plotting.save_figure(fig, tmp_path / f"f{k}.png"))
        time.sleep(1.1)
    for a, b in zip(*paths):
        assert a.read_bytes() == b.read_bytes(), a.suffix
    assert b"/CreationDate" not in paths[0][1].read_bytes()


def test_png_only_save_writes_the_same_png_and_no_pdf(tmp_path):
    # config figure_formats [png] (the default) skips the PDF's render, not anything in the PNG
    fig, data = plotting.plot_equilibria_count(_fake_sweep({"g": [0.5, 2.0, 8.0]}))
    both = plotting.save_figure(fig, tmp_path / "both.png", data=data, close=False)
    png = plotting.save_figure(fig, tmp_path / "png.png", data=data, formats=("png",))
    assert [f.suffix for f in both] == [".png", ".pdf", ".nc"] and [f.suffix for f in png] == [".png", ".nc"]
    assert not (tmp_path / "png.pdf").exists()
    assert png[0].read_bytes() == both[0].read_bytes()
    with pytest.raises(ValueError, match="png"):
        plotting.save_figure(fig, tmp_path / "x.png", formats=("pdf",))


def test_sweep_figures_draw_what_says_something():
    # dense random W: the optimal-threshold rank is 0 for every network; it is named, not drawn
    ds = _fake_sweep({"g": [0.5, 2.0, 8.0]})
    ds["threshold_rank"] = xr.zeros_like(ds["n_slow_modes"])
    fig, data = plotting.plot_dimensions(ds)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert not any("threshold" in t for t in titles) and "optimal hard threshold rank = 0" in fig._suptitle.get_text()
    # integer quantities (koopman_dimension varies here) get integer ticks only
    ax = next(ax for ax in fig.axes if ax.get_visible() and "Koopman dimension" in ax.get_title())
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # a series identical for every ensemble is drawn once, and the legend lists only drawn series
    two = _fake_sweep({"ensemble": ["a", "b"], "g": [0.5, 2.0, 8.0]})
    for v in ("koopman_slowest_rate", "koopman_spectral_gap", "n_slow_modes"):
        two[v] = xr.concat([two[v].sel(ensemble="a")] * 2, "ensemble").assign_coords(ensemble=["a", "b"])
    fig, _ = plotting.plot_koopman_rates(two)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ensemble=b" not in labels
    # no fold in range anywhere: the tipping distance is undefined for every network, not an empty panel
    nofold = _fake_sweep({"g": [0.5, 2.0, 8.0]})
    nofold["tipping_shift_up"] = nofold["tipping_shift_down"] = nofold["tipping_shift_up"] * np.nan
    fig, _ = plotting.plot_resilience(nofold)
    assert not any("tipping" in ax.get_title() for ax in fig.axes if ax.get_visible())
    assert "undefined for every network" in fig._suptitle.get_text()
    # many series: small multiples, one column per ensemble, at most one line per N in a panel
    many = _fake_sweep({"ensemble": ["a", "b", "c"], "N": [2, 3], "g": [0.5, 2.0, 8.0]})
    fig, data = plotting.plot_resilience(many)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == len([v for v in data if v.endswith("_mean")]) * 3
    assert all(len([ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]) <= 2 for ax in shown)
