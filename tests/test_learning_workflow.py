"""Training inside the workflow: schema, checkpoints as the `step` dimension, reproducibility."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from koopnet import io
from koopnet.tasks import TASKS, task_parameters

from test_workflow import run_snakemake

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
TARGET = "results/ff/sweep.nc"
TRAINED = {
    "seed": 11,
    "sweeps": {
        "ff": {
            "ensemble": "gaussian",
            "activation": "tanh",
            "theta_mode": "zero",
            "N": 6,
            "params": {"g": 1.5},
            "seeds": 2,
            "seeds_per_job": 1,
            "training": {"task": "flipflop", "task_params": {"bits": 1, "duration": 10.0},
                         "checkpoints": [0, 5, 20], "eval_trials": 16, "batch_size": 8},
        }
    },
    "equilibria": {"n_starts": 32},
    "resilience": {"n_initial_conditions": 20, "robustness_orders": 1},
}


def test_schema_training_section_matches_settings_and_tasks():
    learning = pytest.importorskip("koopnet.learning")
    props = SCHEMA["definitions"]["sweep"]["properties"]["training"]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(learning.TrainingSettings)}
    assert set(props) == set(fields)
    for name, default in fields.items():
        if name != "task_params":
            want = list(default) if isinstance(default, tuple) else default
            assert props[name]["default"] == want, name
    for task in TASKS:
        params = SCHEMA["definitions"][f"{task}_params"]["properties"]
        defaults = task_parameters(task)
        assert set(params) == set(defaults), task
        for k, v in defaults.items():
            assert params[k]["default"] == (list(v) if isinstance(v, tuple) else v), f"{task}.{k}"


def _with_training(**change):
    config = yaml.safe_load(yaml.safe_dump(TRAINED))
    config["sweeps"]["ff"]["training"].update(change)
    return config


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, key",
    [
        ({"task": "juggling"}, "sweeps.ff.training.task"),
        ({"task_params": {"bits": "three"}}, "sweeps.ff.training.task_params.bits"),
        ({"checkpoints": [0, 10, 5]}, "sweeps.ff.training.checkpoints"),
        ({"checkpoints": [5, 10]}, "sweeps.ff.training.checkpoints"),
        ({"learning_rate": 0}, "sweeps.ff.training.learning_rate"),
    ],
)
def test_bad_training_config_fails_before_any_job(tmp_path, change, key):
    result = run_snakemake(tmp_path, _with_training(**change), "--cores", "1", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Invalid config" in out and key in out, out
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny trained sweep on 2 cores, one network per job."""
    workdir = tmp_path_factory.mktemp("trained")
    run_snakemake(workdir, TRAINED, "--cores", "2", TARGET)
    return workdir


@pytest.mark.slow
def test_checkpoints_are_the_step_dimension(trained):
    ds = io.open_dataset(trained / TARGET)
    assert list(ds["step"].values) == [0, 5, 20]
    assert ds["step"].attrs["long_name"].startswith("training step")
    # step 0 is the initial network: no change yet, and every later W differs from it
    assert np.all(ds["delta_W"].sel(step=0).values == 0)
    np.testing.assert_array_equal(ds["W"].sel(step=20) - ds["W"].sel(step=0), ds["delta_W"].sel(step=20))
    assert np.all(ds["delta_w_rank"].sel(step=20).values >= 1)
    for name in ("train_loss", "task_performance", "train_status", "B", "C", "n_stable", "koopman_slowest_rate",
                 "erank", "delta_w_erank", "basin_stability"):
        assert "step" in ds[name].dims, name
    assert ds["train_status"].attrs["flag_meanings"] == "ok not_converged diverged"
    documented = (REPO / "docs" / "dataset.md").read_text()
    assert not [n for n in ds.data_vars if f"`{n}`" not in documented]


@pytest.mark.slow
def test_trained_sweep_same_numbers_whatever_cores_and_seeds_per_job(tmp_path, trained):
    config = yaml.safe_load(yaml.safe_dump(TRAINED))
    config["sweeps"]["ff"]["seeds_per_job"] = 2
    run_snakemake(tmp_path, config, "--cores", "1", TARGET)
    # the configs differ in seeds_per_job only (so does the config attribute): data identical
    xr.testing.assert_identical(io.open_dataset(tmp_path / TARGET).drop_attrs(),
                                io.open_dataset(trained / TARGET).drop_attrs())


@pytest.mark.slow
def test_learning_figures(trained):
    from koopnet.plotting import LEARNING_FIGURES, flipflop_memories_data

    ds = io.open_dataset(trained / TARGET)
    fig, data = LEARNING_FIGURES["learning"](ds)
    assert list(data["train_loss_mean"].dims) == ["step"] and "delta_w_erank_mean" in data
    mem = flipflop_memories_data(ds)
    assert mem.sizes["bit"] == 1 and mem.sizes["pc"] == 2
    stable = np.isin(mem["eq_type"].values, [0, 1])
    assert np.all(stable[mem["memory"].values == 1]) and mem["memory"].sum() <= 2
    assert flipflop_memories_data(ds.drop_attrs()) is None  # not a trained sweep
