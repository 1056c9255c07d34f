"""Workflow stage functions (koopnet.pipeline): what the per-network stage timings measure."""

from __future__ import annotations

import dataclasses
import sys
import time
import types

import numpy as np
import xarray as xr

from koopnet import io, pipeline
from koopnet.sweep import expand_sweep, plan_jobs, seed_chunks

FIRST_CALL_CPU = 0.2  # CPU-s the fake stage burns on its first call in a process


@dataclasses.dataclass(frozen=True)
class FakeSettings:
    pass


def _fake_module(calls: list) -> types.ModuleType:
    """A stage whose first call in a process costs FIRST_CALL_CPU (like loading compiled kernels)."""
    mod = types.ModuleType("koopnet_fake_stage")
    mod.FakeSettings = FakeSettings

    def fake_dataset(batch, seeds, settings):
        if not calls:
            start = time.process_time()
            while time.process_time() - start < FIRST_CALL_CPU:
                pass
        calls.append(batch.n_units)
        return xr.Dataset({"n_units": ("network", np.full(len(batch), batch.n_units))})

    mod.fake_dataset = fake_dataset
    return mod


def test_first_call_costs_are_not_charged_to_the_first_network(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setitem(sys.modules, "koopnet_fake_stage", _fake_module(calls))
    monkeypatch.setitem(pipeline.STAGES, "equilibria",
                        [("koopnet_fake_stage", "fake_dataset", "FakeSettings", "equilibria", ())])
    monkeypatch.setattr(pipeline, "_warmed", set())
    sweep = {"ensemble": "gaussian", "activation": "logistic", "theta_mode": "centered", "N": 5,
             "params": {"g": 2.0}, "seeds": 2, "seeds_per_job": 1}
    points = expand_sweep("s", sweep)
    (job,) = plan_jobs(points, seed_chunks(2, 1), 1e9)  # both chunks in one job
    outputs = {"networks": tmp_path / "networks.nc", "equilibria": tmp_path / "equilibria.nc"}
    pipeline.run_job("equilibria", job, {"seed": 1}, {}, outputs)
    # the warm-up ran first, on its own small network, then one timed call per chunk
    assert calls == [pipeline.WARM_UP_UNITS, 5, 5]
    groups = io.open_groups(outputs["equilibria"])
    seconds = [float(ds["equilibria_seconds"].values[0]) for ds in groups.values()]
    assert len(seconds) == 2
    # without the warm-up the first chunk would hold >= FIRST_CALL_CPU; the timed calls do
    # next to nothing
    assert max(seconds) < FIRST_CALL_CPU / 2
    # once per process: a second job is not warmed up again
    pipeline.run_job("equilibria", job, {"seed": 1}, {}, outputs)
    assert calls[3:] == [5, 5]


def _as_xarray_reads(path, group: str) -> xr.Dataset:
    """The reference reader: xarray's own decoding of one group, complex values reassembled."""
    return io.decode_complex(xr.open_dataset(path, engine="netcdf4", group=group).load())


def test_open_groups_reads_what_xarray_reads(tmp_path):
    # open_groups reads plain groups without xarray's decoding machinery and hands the others
    # (here: a boolean, which xarray stores as int8 with a dtype attribute) to xarray; either
    # way the datasets are those of xarray.open_dataset, variable order and dtypes included
    rng = np.random.default_rng(0)
    plain = xr.Dataset(
        {"W": (("network", "unit", "presynaptic_unit"), rng.standard_normal((2, 3, 3)), {"long_name": "weights"}),
         "eig": (("network", "mode"), rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3)),
                 {"units": "1/time"}),
         "status": ("network", np.array([0, 2], dtype=np.int8),
                    {"flag_values": np.array([0, 1, 2], dtype=np.int8), "flag_meanings": "ok a b"}),
         "count": ("network", np.array([3, -1], dtype=np.int64))},
        coords={"seed": ("network", [4, 5]), "label": ("network", np.array(["x", "yz"], dtype=object)),
                "mode": [0, 1, 2]},
        attrs={"stage": "test", "n": 3})
    with_bool = plain.assign(flag=("network", np.array([True, False])))
    # a coordinate on a dimension no data variable has: listed in the group's attributes
    orphan = plain.assign_coords(extra=("other", [7, 8]))
    path = tmp_path / "groups.nc"
    io.write_datasets({"plain": plain, "with_bool": with_bool, "orphan": orphan}, path)
    groups = io.open_groups(path)
    assert list(groups) == ["plain", "with_bool", "orphan"]
    import netCDF4

    with netCDF4.Dataset(path) as nc:  # the first is read by the fast path, the second is not
        assert io._read_group(nc["plain"]) is not None and io._read_group(nc["with_bool"]) is None
    for name, ds in groups.items():
        ref = _as_xarray_reads(path, name)
        xr.testing.assert_identical(ds, ref)
        assert list(ds.variables) == list(ref.variables)
        assert all(ds[v].dtype == ref[v].dtype for v in ref.variables)
    xr.testing.assert_identical(groups["plain"], plain)  # and they are what was written
    xr.testing.assert_identical(groups["orphan"], orphan)


def test_no_first_call_imports_inside_the_stage_timer(tmp_path):
    # a module imported by a stage's first call would be charged to the first chunk's
    # *_seconds (and counted as analysis): after warm_up, no stage imports anything new.
    # In a fresh interpreter, where nothing is imported yet.
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        from koopnet import pipeline
        from koopnet.sweep import expand_sweep, plan_jobs, seed_chunks
        sweep = {{"ensemble": "gaussian", "activation": "logistic", "theta_mode": "centered", "N": 4,
                 "params": {{"g": 8.0}}, "seeds": 1}}
        (job,) = plan_jobs(expand_sweep("s", sweep), seed_chunks(1, 1), 0)
        config = {{"seed": 1, "equilibria": {{"n_starts": 8}}, "resilience": {{"n_initial_conditions": 8}},
                  "dimension": {{"n_initial_conditions": 4}}}}
        d = {str(tmp_path)!r}
        files = {{"networks": d + "/networks.nc", "equilibria": d + "/equilibria.nc"}}
        pipeline.run_job("equilibria", job, config, {{}}, files)
        for stage in ("spectra", "metrics"):
            pipeline.warm_up(stage, "logistic", config)
            before = set(sys.modules)
            pipeline.run_job(stage, job, config, files, {{stage: d + "/" + stage + ".nc"}})
            new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("scipy", "koopnet", "numba"))
            print(stage, new)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["spectra []", "metrics []"], out.stdout
