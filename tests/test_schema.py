"""The config schema and the settings dataclasses describe the same keys with the same defaults."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from koopnet.pipeline import SHARED_SECTIONS, STAGES

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
SECTIONS = [entry for entries in STAGES.values() for entry in entries]
SECTIONS += [(module, None, cls_name, name, ()) for name, (module, cls_name) in SHARED_SECTIONS.items()]


@pytest.mark.parametrize("module, _func, cls_name, section, _needs", SECTIONS, ids=[s[3] for s in SECTIONS])
def test_stage_section_matches_settings(module, _func, cls_name, section, _needs):
    cls = getattr(importlib.import_module(module), cls_name)
    props = SCHEMA["properties"][section]["properties"]
    # a field named after a shared section is that top-level section, not a key of this one
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in SHARED_SECTIONS}
    assert set(props) == set(fields), f"{section}: schema and {cls_name} differ"
    for name, default in fields.items():
        assert props[name]["default"] == default, f"{section}.{name}"
        assert props[name]["description"], f"{section}.{name}"


def _walk(schema, path="config"):
    """Every property node of the schema (with its path)."""
    for name, node in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", node
        yield from _walk(node, f"{path}.{name}")
    for name, node in (schema.get("definitions") or {}).items():
        yield from _walk(node, f"definitions.{name}")


def test_every_key_has_description_and_default():
    for path, node in _walk(SCHEMA):
        assert "description" in node, path
        # required keys have no default: the grid axes, and N (required unless read from a file);
        # an absent `training` means no training (a default would train every sweep)
        required = {f"definitions.sweep.{k}" for k in ("ensemble", "activation", "theta_mode", "N", "training")}
        if path != "config.sweeps" and path not in required:
            assert "default" in node, path


def test_default_and_paper_configs_are_valid():
    for name in ("config.yaml", "paper.yaml"):
        path = SCHEMA_PATH.parents[2] / "config" / name
        if path.exists():
            validate(yaml.safe_load(path.read_text()), str(SCHEMA_PATH))


def test_integration_section_is_shared_by_dimension_and_resilience():
    from koopnet.config import check_stage_settings
    from koopnet.pipeline import stage_settings
    from koopnet.sweep import ConfigError
    from koopnet.dimension import DimensionSettings
    from koopnet.resilience import ResilienceSettings

    config = {"integration": {"t_max": 40.0, "settle_tol": 1e-7}, "dimension": {"t_discard": 20.0}}
    dim = stage_settings(DimensionSettings, config["dimension"], "dimension", config)
    res = stage_settings(ResilienceSettings, None, "resilience", config)
    assert dim.integration == res.integration
    assert (dim.integration.t_max, dim.integration.settle_tol) == (40.0, 1e-7)
    # the integration keys are no longer keys of the stage sections
    with pytest.raises(ValueError, match=r"resilience: unknown key\(s\) \['t_max'\]"):
        stage_settings(ResilienceSettings, {"t_max": 50.0}, "resilience", config)
    # a constraint between sections fails before any job, naming both keys
    with pytest.raises(ConfigError, match=r"dimension.t_discard = 50.0 must be in \[0, integration.t_max = 40.0\)"):
        check_stage_settings({"integration": {"t_max": 40.0}})
    check_stage_settings(config)


@pytest.mark.parametrize("name", sorted(p.name for p in (SCHEMA_PATH.parents[2] / "config").glob("*.yaml")))
def test_defaults_filled_as_snakemake_validate_fills_them(name):
    # the workflow fills defaults with koopnet.config.fill_defaults on the schema it parsed once,
    # instead of snakemake.utils.validate (which parses the schema again): the same config results
    import copy

    from koopnet.config import fill_defaults, load_schema

    config = yaml.safe_load((SCHEMA_PATH.parents[2] / "config" / name).read_text())
    expected = copy.deepcopy(config)
    validate(expected, str(SCHEMA_PATH))
    assert load_schema(SCHEMA_PATH) == SCHEMA
    filled = fill_defaults(copy.deepcopy(config), load_schema(SCHEMA_PATH))
    assert filled == expected
    assert filled != config  # defaults were missing and are now there
