"""End to end: the Snakemake workflow on tiny configs in temporary directories.

Covers config errors caught before any job, determinism across --cores, seeds_per_job and job sizes,
resuming after SIGKILL, and `snakemake --lint`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from koopnet import io

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/tiny/sweep.nc"  # the sweep dataset only (figures are tested in test_figures.py)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

pytestmark = pytest.mark.slow

TINY = {
    "seed": 7,
    "sweeps": {
        "tiny": {
            "ensemble": "gaussian",
            "activation": ["logistic", "tanh"],
            "theta_mode": "centered",
            "N": 3,
            "params": {"g": [0.5, 8.0]},
            "seeds": 4,
            "seeds_per_job": 2,
        }
    },
    "equilibria": {"n_starts": 32},
    # 8 seed chunks of 2 networks, estimated about 1.2 CPU-s each (koopnet.sweep.estimated_cpu_seconds):
    # ceil(9.5 / 2.5) = 4 jobs of 2 chunks
    "job_cpu_seconds": 2.5,
}


def run_snakemake(workdir: Path, config: dict, *args: str, check: bool = True, **popen):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, env=env, **popen)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny sweep on 2 cores, 2 networks per job."""
    workdir = tmp_path_factory.mktemp("reference")
    run_snakemake(workdir, TINY, "--cores", "2", TARGET)
    return workdir


@pytest.fixture(scope="module")
def reference(reference_dir) -> xr.Dataset:
    return io.open_dataset(reference_dir / TARGET)


def test_reference_dataset_is_self_describing(reference):
    ds = reference
    assert set(ds["activation"].values) == {"logistic", "tanh"}
    assert ds.sizes["seed"] == 4 and ds.sizes["g"] == 2
    for name in ("koopnet_version", "config", "config_hash"):
        assert ds.attrs[name]
    assert yaml.safe_load(ds.attrs["config"])["sweeps"]["tiny"]["seeds"] == 4
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name
        assert "units" in var.attrs or var.dtype.kind in "OU", name
        if "flag_values" in var.attrs:
            assert len(var.attrs["flag_values"]) == len(var.attrs["flag_meanings"].split())
            used = set(np.unique(var.values).tolist())
            assert used <= set(var.attrs["flag_values"]), (name, used)  # every code is declared
    assert ds["w_eigenvalues"].dtype.kind == "c"
    documented = (REPO / "docs" / "dataset.md").read_text()
    undocumented = [name for name in ds.data_vars if f"`{name}`" not in documented]
    assert not undocumented, f"variables missing from docs/dataset.md: {undocumented}"


def test_stage_timings_beside_the_reproducible_dataset(reference, reference_dir):
    # CPU times vary from run to run: they are in timing.nc, never in the byte-reproducible
    # sweep.nc, on the same coordinates, one variable per stage, in seconds
    assert not [name for name in reference.data_vars if name.endswith("_seconds")]
    timing = io.open_dataset(reference_dir / TARGET.replace("sweep.nc", "timing.nc"))
    stages = {"equilibria", "spectra", "dimension", "resilience"}
    assert set(timing.data_vars) == {f"{s}_seconds" for s in stages}
    documented = (REPO / "docs" / "dataset.md").read_text()
    for name, var in timing.data_vars.items():
        assert var.dims == ("activation", "g", "seed") and var.attrs["units"] == "s"
        assert np.all(np.isfinite(var.values) & (var.values >= 0)), name
        assert f"`{name}`" in documented
        # 2 networks per seed chunk: each gets half of its chunk's call
        assert var.attrs["timing_split"] == "equal share of one call on 2 network(s) (a seed chunk)"
    for name in ("activation", "g", "seed"):
        np.testing.assert_array_equal(timing[name].values, reference[name].values)
    assert timing.attrs["config_hash"] == reference.attrs["config_hash"]


def test_same_numbers_whatever_cores_and_seeds_per_job(tmp_path, reference, reference_dir):
    # the reference ran on 2 cores, 2 networks per chunk, 2 chunks per job; this one on 1 core
    # with 4 networks per chunk and one chunk per job
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["sweeps"]["tiny"]["seeds_per_job"] = 4
    config["job_cpu_seconds"] = 0
    config["sweeps"]["tiny"]["params"]["g"] = [8, 0.5]  # the same numbers, spelt otherwise
    run_snakemake(tmp_path, config, "--cores", "1", TARGET)
    assert len(list((tmp_path / "results" / "tiny" / "jobs").glob("*/metrics.nc"))) == 4
    ds = io.open_dataset(tmp_path / TARGET)
    # neither seeds_per_job nor the spelling changes a number, so neither changes the file
    xr.testing.assert_identical(ds, reference)
    assert (tmp_path / TARGET).read_bytes() == (reference_dir / TARGET).read_bytes()


def test_job_size_changes_neither_numbers_nor_bytes(tmp_path, reference_dir):
    # one seed chunk per job (8 jobs) instead of 4 jobs of 2: job_cpu_seconds only repacks
    jobs = reference_dir / "results" / "tiny" / "jobs"
    assert len(list(jobs.glob("*/metrics.nc"))) == 4
    run_snakemake(tmp_path, {**TINY, "job_cpu_seconds": 0}, "--cores", "2", TARGET)
    assert len(list((tmp_path / "results" / "tiny" / "jobs").glob("*/metrics.nc"))) == 8
    assert (tmp_path / TARGET).read_bytes() == (reference_dir / TARGET).read_bytes()


def test_resume_after_sigkill(tmp_path, reference, reference_dir):
    proc = run_snakemake(tmp_path, TINY, "--cores", "2", TARGET, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = tmp_path / "results" / "tiny" / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(jobs.glob("*/equilibria.nc"))) < 2:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results" / "tiny" / "sweep.nc").exists()
    run_snakemake(tmp_path, TINY, "--unlock")
    run_snakemake(tmp_path, TINY, "--cores", "2", TARGET)
    ds = io.open_dataset(tmp_path / TARGET)
    xr.testing.assert_identical(ds, reference)
    # same file, byte for byte (no timestamps in the data)
    assert (tmp_path / TARGET).read_bytes() == (reference_dir / TARGET).read_bytes()


@pytest.mark.parametrize(
    "change, key",
    [
        ({"bogus": 1}, "bogus"),
        ({"seed": "x"}, "seed:"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "N": 0}}}, "sweeps.s.N"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "N": []}}}, "sweeps.s.N"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "ensemble": "nope"}}}, "sweeps.s.ensemble"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "activation": "relu"}}}, "sweeps.s.activation"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "colour": 1}}}, "colour"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "seeds_per_job": 5}}}, "sweeps.s.seeds_per_job"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "params": {"q": 1}}}}, "sweeps.s.params.q"),
        ({"equilibria": {"n_startz": 3}}, "n_startz"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "params": {"g": [2, 2.0]}}}}, "sweeps.s.params.g"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "ensemble": "sparse", "params": {"p": 1.5}}}},
         "sweeps.s.params.p"),
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "seeds": 2.0}}}, "sweeps.s.seeds"),
        ({"integration": {"t_max": 10.0}, "dimension": {"t_discard": 50.0}}, "t_discard"),
        ({"resilience": {"t_max": 50.0}}, "resilience"),  # moved to the shared section
        ({"sweeps": {"s": {**TINY["sweeps"]["tiny"], "N": 10**6}}}, "GiB"),
    ],
)
def test_invalid_config_fails_before_any_job(tmp_path, change, key):
    result = run_snakemake(tmp_path, {**TINY, **change}, "--cores", "1", check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Invalid config" in out and key in out
    assert len(out.splitlines()) < 30, out  # the key and the problem, not a dump of the schema
    if key == "n_startz":
        assert "did you mean 'n_starts'" in out
    if key == "resilience":
        assert "'t_max' is a key of the shared 'integration' section" in out
    assert not (tmp_path / "results").exists()


def test_bad_weight_file_is_named(tmp_path):
    import numpy as np

    tmp_path.mkdir(exist_ok=True)
    np.savez(tmp_path / "bad.npz", W=np.ones((3, 4)))
    config = {"sweeps": {"f": {"ensemble": "file", "activation": "tanh", "theta_mode": "zero",
                               "params": {"path": "bad.npz"}}}}
    result = run_snakemake(tmp_path, config, "--cores", "1", check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "bad.npz" in out and "square" in out


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_formatted():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    if not snakefmt.exists():
        pytest.skip("snakefmt not installed (make installs it with the dev extra)")
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run([str(snakefmt), "--check", *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_of_a_10000_network_sweep(tmp_path):
    # 200 grid points x 50 seeds in chunks of 10, one chunk per job: 1,000 jobs per stage, not
    # 10,000 (measured: the DAG builds in ~15-20 s on 2 cores; the timeout only guards against a hang)
    config = {"job_cpu_seconds": 0, "sweeps": {"big": {
        "ensemble": ["gaussian", "sparse", "dale", "lowrank", "symmetric"],
        "activation": ["logistic", "tanh"], "theta_mode": "centered", "N": [50, 100],
        "params": {"g": list(range(1, 11))}, "seeds": 50, "seeds_per_job": 10}}}
    result = run_snakemake(tmp_path, config, "-n", TARGET.replace("tiny", "big"), "--quiet", "rules")
    counts = dict(line.split()[:2] for line in result.stdout.splitlines()
                  if line.split()[:1] in (["equilibria"], ["spectra"], ["metrics"]))
    assert counts == {"equilibria": "1000", "spectra": "1000", "metrics": "1000"}


def test_a_failed_job_leaves_its_traceback_in_its_log(tmp_path):
    config = {"seed": 7, "sweeps": {"tiny": {**TINY["sweeps"]["tiny"], "activation": "tanh", "params": {"g": 0.5},
                                              "seeds": 1, "seeds_per_job": 1}},
              "equilibria": {"n_starts": 8}}
    chunk = "results/tiny/jobs/gaussian_tanh_centered_N3_g0.5_chunk0+0"  # the sweep's only job
    run_snakemake(tmp_path, config, "--cores", "1", f"{chunk}/equilibria.nc")
    (tmp_path / chunk / "networks.nc").write_bytes(b"not a netCDF file")  # the spectra job will fail
    result = run_snakemake(tmp_path, config, "--cores", "1", f"{chunk}/spectra.nc", check=False)
    assert result.returncode != 0
    log = (tmp_path / chunk.replace("results", "logs") / "spectra.log").read_text()
    assert "job failed" in log and "Traceback (most recent call last)" in log and "networks.nc" in log, log


def test_every_job_script_logs_its_failures():
    # the scripts are the jobs' entry points: each starts with the shared logging set-up
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        assert "start_job_log(snakemake.log[0])" in script.read_text(), script.name
