"""Bad configs are rejected before any job runs, with the key (or file) named."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml

from koopnet.config import check_resources, check_stage_settings, estimate_job, load_config_file, schema_errors
from koopnet.ensembles import ENSEMBLES, PARAMETERS, THETA_MODES, THETA_PARAMETERS, WeightFileError, load_weight_file
from koopnet.sweep import ConfigError, expand_sweep

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
SWEEP = {"ensemble": "gaussian", "activation": "tanh", "theta_mode": "centered", "N": 3, "params": {"g": 2.0}}


def test_declarations_match_the_functions():
    # one declaration per keyword of every ensemble / theta mode, with the function's default
    for table, functions in ((PARAMETERS, ENSEMBLES), (THETA_PARAMETERS, THETA_MODES)):
        for name, fn in functions.items():
            kwargs = {p.name: p.default for p in list(inspect.signature(fn).parameters.values())[2:]}
            assert {k: d.default for k, d in table[name].items()} == kwargs, name
            assert all(d.description for d in table[name].values()), name
    assert set(PARAMETERS) == set(ENSEMBLES) | {"file"}


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"params": {"g": [2, 2.0]}}, "sweeps.s.params.g", "repeated"),  # equal numbers, different text
        ({"ensemble": "sparse", "params": {"p": 0.0}}, "sweeps.s.params.p", "> 0.0"),
        ({"ensemble": "sparse", "params": {"p": 1.5}}, "sweeps.s.params.p", "<= 1.0"),
        ({"ensemble": "dale", "params": {"f_exc": 2.0}}, "sweeps.s.params.f_exc", "<= 1.0"),
        ({"ensemble": "lowrank", "params": {"rank": 5}}, "sweeps.s.params.rank", "N = 3"),
        ({"ensemble": "lowrank", "params": {"rank": 1.0}}, "sweeps.s.params.rank", "integer"),
        ({"ensemble": "hebbian", "params": {"patterns": -1}}, "sweeps.s.params.patterns", ">= 1"),
        ({"params": {"g": "abc"}}, "sweeps.s.params.g", "number"),
        ({"params": {"g": float("nan")}}, "sweeps.s.params.g", "finite"),
        ({"params": {"g": [1.0, float("inf")]}}, "sweeps.s.params.g", "finite"),
        ({"params": {"g": True}}, "sweeps.s.params.g", "number"),
        ({"ensemble": "dale", "params": {"balanced": 1}}, "sweeps.s.params.balanced", "boolean"),
        ({"theta_mode": "gaussian", "params": {"theta_std": -1.0}}, "sweeps.s.params.theta_std", ">= 0"),
        ({"seeds": 2.0}, "sweeps.s.seeds", "integer"),
        ({"seeds": 2, "seeds_per_job": True}, "sweeps.s.seeds_per_job", "integer"),
    ],
)
def test_bad_parameter_values_name_the_key(change, key, words):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        expand_sweep("s", {**SWEEP, **change})
    assert words in str(info.value)


@pytest.mark.parametrize(
    "change, where, words",
    [
        ({"sweeps": {"s": {**SWEEP, "ensemble": []}}}, "sweeps.s.ensemble", "empty list"),
        ({"sweeps": {"s": {**SWEEP, "seeds": 2.0}}}, "sweeps.s.seeds", "integer"),
        ({"sweeps": {"s": {**SWEEP, "params": {"g": float("nan")}}}}, "sweeps.s.params.g", "finite"),
        ({"sweeps": {"s": SWEEP}, "equilibria": {"n_starts": 2.0}}, "equilibria.n_starts", "integer"),
        ({"sweeps": {"s": SWEEP}, "resilience": {"t_max": 50.0}}, "resilience",
         "'t_max' is a key of the shared 'integration' section"),
        ({"sweeps": {"s": SWEEP}, "figure_formats": ["pdf"]}, "figure_formats", "png"),
        ({"sweeps": {"s": SWEEP}, "figure_formats": ["png", "svg"]}, "figure_formats.1", "is not one of"),
    ],
)
def test_schema_names_the_key(change, where, words):
    lines = schema_errors(change, SCHEMA)
    assert len(lines) == 1 and where in lines[0] and words in lines[0], lines


@pytest.mark.parametrize(
    "config, words",
    [
        ({"integration": {"t_max": 10.0}, "dimension": {"t_discard": 50.0}},
         ["dimension", "t_discard = 50.0", "integration.t_max = 10.0"]),
        ({"resilience": {"tipping_initial_step": 1.0, "tipping_max_step": 0.5}}, ["resilience", "tipping_initial_step"]),
    ],
)
def test_cross_key_constraints_name_the_keys(config, words):
    with pytest.raises(ConfigError) as info:
        check_stage_settings({"sweeps": {"s": SWEEP}, **config})
    assert all(w in str(info.value) for w in words), str(info.value)
    check_stage_settings({"sweeps": {"s": SWEEP}})  # the defaults are consistent


def test_memory_that_cannot_fit_is_refused_with_the_number():
    # N = 10^6: one W alone is 8 N^2 bytes = 7.28 TiB
    with pytest.raises(ConfigError, match=r"sweeps\.big\.N") as info:
        check_resources({}, {"big": ([10**6], 1)}, memory_limit=64 * 2**30)
    gib = float(str(info.value).split("at least ")[1].split(" GiB")[0])
    assert gib >= 8 * 1e12 / 2**30
    # degree-3 eigenfunctions at N = 1000: (3 modes + 3 buffers) x N x N(N+1)/2 complex = 44.7 GiB
    config = {"spectra": {"eigenfunction_cubic_max_units": 1000}}
    with pytest.raises(ConfigError, match="eigenfunction_cubic_max_units"):
        check_resources(config, {"s": ([1000], 1)}, memory_limit=16 * 2**30)
    assert estimate_job(config, 1000, 1).memory_parts["eigenfunctions"] >= 16 * 6 * 1000 * 500500


def test_equilibria_estimate_prices_what_the_stage_does():
    """Random starts up to random_start_max_units (linear in n_starts), the homotopy work budget
    beyond (linear in homotopy_work, one (N + 1)-square LU each, at LU_SPEEDUP x FLOP_RATE)."""
    from koopnet.config import FLOP_RATE, LU_SPEEDUP

    def eq(config, N):
        return estimate_job(config, N, 1).parts["newton"]

    assert eq({"equilibria": {"n_starts": 512}}, 200) == 2 * eq({}, 200)
    assert eq({"equilibria": {"n_starts": 512}}, 500) == eq({}, 500)  # homotopy only above 300
    assert eq({"equilibria": {"homotopy_work": 12000}}, 500) == 2 * eq({}, 500)
    assert eq({}, 1000) == pytest.approx(6000 * 2 / 3 * 1001**3 / LU_SPEEDUP / FLOP_RATE)
    rs = {"random_start_max_units": 1000}  # random starts at N = 1000: priced by n_starts
    assert eq({"equilibria": {**rs, "n_starts": 512}}, 1000) == 2 * eq({"equilibria": rs}, 1000)


def test_long_jobs_are_announced_with_an_estimated_time():
    # N = 3000: 256 starts x ~20 Newton iterations x (2/3) N^3 flops ~ 9e13 flops: hours on one core
    warnings = check_resources({}, {"s": ([3000], 1)}, memory_limit=2.0**40)
    assert len(warnings) == 1 and "N = 3000" in warnings[0] and "newton" in warnings[0]
    assert "days" in warnings[0] or " h" in warnings[0]
    # degree-3 eigenfunctions at N = 1000: 3 modes x 8 N^2 N(N+1)/2 ~ 1.2e13 flops, past the 3.4e12 of Newton
    warnings = check_resources({"spectra": {"eigenfunction_cubic_max_units": 1000}}, {"s": ([1000], 1)},
                               memory_limit=2.0**40)
    assert len(warnings) == 1 and "eigenfunctions" in warnings[0]
    assert check_resources({}, {"s": ([3, 12], 4)}, memory_limit=2.0**40) == []  # the default sweep is quiet


def test_config_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweeps:\n  a: {ensemble: gaussian\n  b: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line \d+"):
        load_config_file(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: empty"):
        load_config_file(empty)
    # python -m koopnet.config: the whole pre-DAG check on files
    from koopnet.config import check_config_files

    with pytest.raises(ConfigError, match=r"bad\.yaml, line 3"):
        check_config_files([bad])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"sweeps": {"s": {**SWEEP, "params": {"g": [2, 2.0]}}}}))
    with pytest.raises(ConfigError, match=r"sweeps\.s\.params\.g"):
        check_config_files([cfg])
    cfg.write_text(yaml.safe_dump({"sweeps": {"s": SWEEP}}))
    assert check_config_files([cfg]) == []


def test_weight_file_theta_shape_is_reported_as_given(tmp_path):
    np.savez(tmp_path / "w.npz", W=np.eye(4), theta=np.zeros(3))
    with pytest.raises(WeightFileError, match=r"got \(3,\)"):
        load_weight_file(tmp_path / "w.npz")


def test_readme_library_example_prints_decoded_types(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("## Using the library")[1].split("```python\n")[1].split("```")[0]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    # W = [[8, -1], [-1, 8]], theta = -3.5: two bistable units, 3 x 3 equilibria (SCIENCE.md)
    assert "9 equilibria" in out and out.count("'stable_node'") == 4 and out.count("'saddle'") == 4
    assert "'unstable_node'" in out
