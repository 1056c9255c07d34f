"""Sweep grid, per-network seeds, collection and file round trips."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from koopnet import io
from koopnet.sweep import (
    ConfigError,
    SweepPoint,
    build_networks,
    collect,
    config_hash,
    expand_sweep,
    network_seed,
    networks_dataset,
    estimated_cpu_seconds,
    plan_jobs,
    seed_chunks,
)

SWEEP = {
    "ensemble": ["gaussian", "symmetric"],
    "activation": ["logistic", "tanh"],
    "theta_mode": "centered",
    "N": [3, 5],
    "params": {"g": [1.0, 4.0]},
    "seeds": 5,
    "seeds_per_job": 2,
}


def test_grid_is_the_product_of_the_lists():
    points = expand_sweep("s", SWEEP)
    assert len(points) == 2 * 2 * 2 * 2
    assert len({p.id for p in points}) == len(points)
    assert {p.values["theta_mode"] for p in points} == {"centered"}
    assert points[0].id == "gaussian_logistic_centered_N3_g1.0"


def test_seed_chunks_cover_every_seed_once():
    chunks = seed_chunks(7, 3)
    assert [list(c) for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]


def test_jobs_hold_every_seed_chunk_once_in_grid_order():
    points = expand_sweep("s", SWEEP)
    chunks = seed_chunks(5, 2)
    units = [(p.id, c) for p in points for c in range(len(chunks))]
    cost = {(p.id, c): len(ch) * estimated_cpu_seconds(p.n_units) for p in points for c, ch in enumerate(chunks)}
    total = sum(cost.values())
    for target in (0, 0.9 * total / 7, total / 3, total, 10 * total):
        jobs = plan_jobs(points, chunks, target)
        assert [(u.point.id, u.chunk) for j in jobs for u in j.units] == units
        assert len({j.id for j in jobs}) == len(jobs)
        if target == 0:
            assert len(jobs) == len(units)
        else:  # no unit exceeds these targets: at most as many jobs as the target asks for
            assert max(cost.values()) <= target
            assert len(jobs) <= int(np.ceil(total / target))
            for job in jobs:  # (its share of the total, plus half of each end unit)
                assert sum(cost[(u.point.id, u.chunk)] for u in job.units) <= 2 * target
        for job in jobs:
            assert list(job.units[0].seeds) == list(chunks[job.units[0].chunk])
            assert job.id == f"{job.units[0].name}+{len(job.units) - 1}"


def test_small_networks_do_not_pile_up_beside_large_ones():
    # N = 100 and 300 units below the target, N = 1000 units far above it (config/scale.yaml)
    sweep = {**SWEEP, "ensemble": "gaussian", "activation": "logistic", "N": [100, 300, 1000],
             "params": {"g": [2.0, 4.0, 8.0]}, "seeds": 2, "seeds_per_job": 1}
    points = expand_sweep("s", sweep)
    target = (estimated_cpu_seconds(300) + estimated_cpu_seconds(1000)) / 2
    assert estimated_cpu_seconds(300) < target < estimated_cpu_seconds(1000)
    jobs = plan_jobs(points, seed_chunks(2, 1), target)
    for job in jobs:
        cost = sum(estimated_cpu_seconds(u.point.n_units) for u in job.units)
        assert len(job.units) == 1 or cost <= 2 * target
    assert sum(len(j.units) == 1 and j.units[0].point.n_units == 1000 for j in jobs) == 6


def test_a_unit_costlier_than_the_target_is_a_job_of_its_own():
    # grid order: N=3 (g=1, 2, 3) then N=100 (g=1, 2, 3); one network per unit
    sweep = {**SWEEP, "ensemble": "gaussian", "activation": "tanh", "N": [3, 100],
             "params": {"g": [1.0, 2.0, 3.0]}, "seeds": 1, "seeds_per_job": 1}
    points = expand_sweep("s", sweep)
    small, big = estimated_cpu_seconds(3), estimated_cpu_seconds(100)
    assert 2 * small < big
    # fewer jobs than units, so by the midpoints alone the first N=100 unit would join the
    # last N=3 one (the first unit to cross a job boundary)
    target = 0.9 * big
    total = 3 * small + 3 * big
    width = total / np.ceil(total / target)  # the jobs' share of the cost
    assert (2.5 * small) // width == (3 * small + big / 2) // width  # the premise: same share
    jobs = plan_jobs(points, seed_chunks(1, 1), target)
    assert len(jobs) < len(points)
    assert [[u.point.n_units for u in j.units] for j in jobs][-3:] == [[100], [100], [100]]
    for job in jobs:
        if len(job.units) > 1:
            assert sum(estimated_cpu_seconds(u.point.n_units) for u in job.units) < 2 * target


def test_networks_do_not_depend_on_chunking():
    point = expand_sweep("s", SWEEP)[3]
    whole, seeds = build_networks(point, range(5), 11)
    parts = [build_networks(point, c, 11) for c in seed_chunks(5, 2)]
    np.testing.assert_array_equal(whole.W, np.concatenate([b.W for b, _ in parts]))
    assert seeds == sum((s for _, s in parts), [])


def test_seeds_depend_on_what_determines_W():
    points = expand_sweep("s", SWEEP)
    by_w = {}
    for p in points:
        key = tuple((k, v) for k, v in p.values.items() if k != "activation")
        by_w.setdefault(key, []).append(p)
    for same in by_w.values():  # logistic and tanh versions share their networks (paired design)
        assert network_seed(1, same[0], 0) == network_seed(1, same[1], 0)
    all_seeds = {network_seed(1, p, k) for p in points for k in range(5)}
    assert len(all_seeds) == len(by_w) * 5
    assert network_seed(2, points[0], 0) != network_seed(1, points[0], 0)


def test_seeds_ignore_yaml_spelling_defaults_and_inputs():
    base = {**SWEEP, "ensemble": "gaussian", "activation": "tanh", "N": 4}
    ref = expand_sweep("s", {**base, "params": {"g": 2.0}})[0]
    variants = [
        {**base, "params": {"g": 2}},  # integer spelling
        {**base, "params": {"g": 2.0, "mu": 0.0}},  # a default written out
        {**base, "theta_mode": "gaussian", "params": {"g": 2.0, "theta_std": 0.5}},  # another input
    ]
    for sweep in variants:
        point = expand_sweep("s", sweep)[0]
        assert network_seed(3, point, 1) == network_seed(3, ref, 1)
        np.testing.assert_array_equal(build_networks(point, [1], 3)[0].W, build_networks(ref, [1], 3)[0].W)
    assert network_seed(3, expand_sweep("s", {**base, "params": {"g": 2.5}})[0], 1) != network_seed(3, ref, 1)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"params": {"q": 1}}, "sweeps.s.params.q"),
        ({"params": {"p": 0.1}}, "sweeps.s.params.p"),  # sparse-only parameter on gaussian/symmetric
        ({"ensemble": []}, "sweeps.s.ensemble"),
        ({"ensemble": "nope"}, "sweeps.s.ensemble"),
        ({"activation": "relu"}, "sweeps.s.activation"),
        ({"N": 0}, "sweeps.s.N"),
        ({"seeds_per_job": 9}, "sweeps.s.seeds_per_job"),
        ({"params": {"g": [1.0, 1.0]}}, "sweeps.s.params.g"),
    ],
)
def test_invalid_sweeps_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        expand_sweep("s", {**SWEEP, **change})


def test_file_ensemble_steps_become_points(tmp_path):
    W = np.random.default_rng(0).standard_normal((3, 4, 4))
    np.savez(tmp_path / "ckpt.npz", W=W, theta=np.zeros((3, 4)))
    sweep = {"ensemble": "file", "activation": "tanh", "theta_mode": "zero", "params": {"path": "ckpt.npz"}}
    points = expand_sweep("f", sweep, base_dir=tmp_path)
    assert [p.values["step"] for p in points] == [0, 1, 2]
    assert all(p.n_units == 4 for p in points)
    batch, _ = build_networks(points[2], [0], 0, base_dir=tmp_path)
    np.testing.assert_array_equal(batch.W[0], W[2])
    with pytest.raises(ConfigError, match=r"sweeps\.f\.N"):
        expand_sweep("f", {**sweep, "N": 4}, base_dir=tmp_path)


def _part(point: SweepPoint, seeds: list[int], n_eq: int) -> xr.Dataset:
    """A fake job dataset with a ragged inner dimension and int/float/complex variables."""
    batch, net_seeds = build_networks(point, seeds, 0)
    ds = networks_dataset(batch, net_seeds)
    ds["eq_type"] = (("network", "equilibrium"), np.zeros((len(seeds), n_eq), dtype=np.int64))
    ds["x_eq"] = (("network", "equilibrium", "unit"), np.ones((len(seeds), n_eq, point.n_units)))
    return ds.assign_coords(seed=("network", seeds))


def test_collect_pads_ragged_dims_and_round_trips(tmp_path):
    points = expand_sweep("s", {**SWEEP, "activation": "tanh", "ensemble": "gaussian", "params": {"g": 2.0}})
    parts = [(points[0], _part(points[0], [0, 1], 2)), (points[0], _part(points[0], [2], 1)),
             (points[1], _part(points[1], [0, 1], 3)), (points[1], _part(points[1], [2], 1))]
    ds = collect(parts, ["N"], {"config_hash": "x"})
    assert dict(ds.sizes) == {"N": 2, "seed": 3, "unit": 5, "presynaptic_unit": 5, "mode": 5, "equilibrium": 3}
    assert ds["g"].item() == 2.0 and ds["activation"].item() == "tanh"
    # padding: -1 for integers, NaN for floats/complex, nothing lost
    eq_type = ds["eq_type"].sel(N=3).values
    np.testing.assert_array_equal(eq_type, [[0, 0, -1], [0, 0, -1], [0, -1, -1]])
    assert np.isnan(ds["w_eigenvalues"].sel(N=3).values[:, 3:]).all()
    expected_W = parts[2][1]["W"].values
    np.testing.assert_array_equal(ds["W"].sel(N=5).isel(seed=[0, 1]).values, expected_W)
    io.write_dataset(ds, tmp_path / "sweep.nc")
    back = io.open_dataset(tmp_path / "sweep.nc")
    xr.testing.assert_identical(back, ds)
    assert back["w_eigenvalues"].dtype == np.complex128
    # any netCDF reader opens it: plain xarray defaults see (real, imag) pairs, nothing lost
    with xr.open_dataset(tmp_path / "sweep.nc") as plain:
        pairs = plain["w_eigenvalues"].sel(complex="real") + 1j * plain["w_eigenvalues"].sel(complex="imag")
        np.testing.assert_array_equal(pairs.values, ds["w_eigenvalues"].values)
    # two writes of the same data are the same bytes (no timestamps)
    io.write_dataset(ds, tmp_path / "again.nc")
    assert (tmp_path / "again.nc").read_bytes() == (tmp_path / "sweep.nc").read_bytes()


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_collect_keeps_the_config_order_of_swept_labels():
    cfg = {**SWEEP, "ensemble": ["symmetric", "gaussian"], "activation": "tanh", "N": [5, 3], "params": {"g": [4.0, 1.0]}}
    points = expand_sweep("s", cfg)
    ds = collect([(p, _part(p, [0], 1)) for p in points], ["ensemble", "N", "g"])
    assert list(ds["ensemble"].values) == ["symmetric", "gaussian"]  # categories: as listed
    assert list(ds["N"].values) == [3, 5] and list(ds["g"].values) == [1.0, 4.0]  # numbers: ascending
    # labels and data stay together
    for p in points:
        sel = ds.sel(ensemble=p.values["ensemble"], N=p.values["N"], g=p.values["g"], seed=0)
        expected = _part(p, [0], 1)["W"].values[0]
        np.testing.assert_array_equal(sel["W"].values[: p.n_units, : p.n_units], expected)


def test_start_job_log_writes_the_traceback_before_exiting(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "job.log"
    code = f"from koopnet.pipeline import start_job_log\nstart_job_log({str(log)!r})\nraise RuntimeError('boom 42')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "RuntimeError: boom 42" in result.stderr  # still on the console
    text = log.read_text()
    assert "job failed: RuntimeError: boom 42" in text and "Traceback (most recent call last)" in text


def test_file_theta_is_used_only_with_theta_mode_file(tmp_path):
    W, theta = np.eye(3), np.array([1.0, -2.0, 3.0])
    np.savez(tmp_path / "w.npz", W=W, theta=theta)
    np.save(tmp_path / "bare.npy", W)
    sweep = {"ensemble": "file", "activation": "tanh", "params": {"path": "w.npz"}}
    from_file = expand_sweep("f", {**sweep, "theta_mode": "file"}, base_dir=tmp_path)[0]
    np.testing.assert_array_equal(build_networks(from_file, [0], 0, base_dir=tmp_path)[0].theta[0], theta)
    zero = expand_sweep("f", {**sweep, "theta_mode": "zero"}, base_dir=tmp_path)[0]
    np.testing.assert_array_equal(build_networks(zero, [0], 0, base_dir=tmp_path)[0].theta[0], np.zeros(3))
    assert zero.values["theta_mode"] == "zero" and from_file.values["theta_mode"] == "file"
    with pytest.raises(ConfigError, match=r"sweeps\.f\.theta_mode.*bare\.npy"):
        expand_sweep("f", {**sweep, "theta_mode": "file", "params": {"path": "bare.npy"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"sweeps\.s\.theta_mode"):
        expand_sweep("s", {**SWEEP, "theta_mode": "file"})


def test_step_only_for_stacked_weights_and_N_per_file(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "a.npy", rng.standard_normal((4, 4)))
    np.save(tmp_path / "b.npy", rng.standard_normal((3, 3)))
    sweep = {"ensemble": "file", "activation": "tanh", "theta_mode": "zero", "params": {"path": ["a.npy", "b.npy"]}}
    points = expand_sweep("f", sweep, base_dir=tmp_path)
    assert all("step" not in p.values for p in points)  # single matrices: no step axis
    assert [p.n_units for p in points] == [4, 3]
    parts = []
    for p in points:
        batch, seeds = build_networks(p, [0], 0, base_dir=tmp_path)
        parts.append((p, networks_dataset(batch, seeds).assign_coords(seed=("network", [0]))))
    ds = collect(parts, ["path"])
    assert "step" not in ds.dims
    assert ds["N"].dims == ("path",) and ds["N"].sel(path="a.npy") == 4 and ds["N"].sel(path="b.npy") == 3
    np.save(tmp_path / "c.npy", rng.standard_normal((2, 3, 3)))  # a stack: step is an axis
    points = expand_sweep("f", {**sweep, "params": {"path": ["a.npy", "c.npy"]}}, base_dir=tmp_path)
    assert [(p.values["path"], p.values["step"]) for p in points] == [("a.npy", 0), ("c.npy", 0), ("c.npy", 1)]


def test_config_attribute_ignores_seeds_per_job_and_list_spelling():
    from koopnet.pipeline import _sweep_config

    base = {"seed": 1, "sweeps": {"s": {**SWEEP, "params": {"g": [4, 1.0]}, "N": [5, 3], "seeds_per_job": 1}}}
    other = {"seed": 1, "sweeps": {"s": {**SWEEP, "params": {"g": [1, 4]}, "N": [3, 5], "seeds_per_job": 5}}}
    assert config_hash(_sweep_config(base, "s")) == config_hash(_sweep_config(other, "s"))
    changed = {"seed": 1, "sweeps": {"s": {**SWEEP, "params": {"g": [1, 4.5]}, "N": [3, 5]}}}
    assert config_hash(_sweep_config(changed, "s")) != config_hash(_sweep_config(base, "s"))
    assert [p.id for p in expand_sweep("s", base["sweeps"]["s"])] == [p.id for p in expand_sweep("s", {
        **base["sweeps"]["s"], "params": {"g": [4.0, 1]}})]


def test_complex_missing_values_have_one_encoding(tmp_path):
    # a stage's fill (nan + 0j) and collect's padding (nan + nanj) are one missing value: the same
    # bytes whatever job layout (seeds_per_job) produced them
    a = xr.Dataset({"z": ("k", np.array([1 + 2j, complex(np.nan, 0.0)]))})
    b = xr.Dataset({"z": ("k", np.array([1 + 2j, complex(np.nan, np.nan)]))})
    io.write_dataset(a, tmp_path / "a.nc")
    io.write_dataset(b, tmp_path / "b.nc")
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()
    z = io.open_dataset(tmp_path / "a.nc")["z"].values
    assert z[0] == 1 + 2j and np.isnan(z[1].real) and np.isnan(z[1].imag)
