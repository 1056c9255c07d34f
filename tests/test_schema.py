"""The config schema and the settings dataclasses describe the same keys with the same defaults."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from koopnet.pipeline import STAGES

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
SECTIONS = [entry for entries in STAGES.values() for entry in entries]


@pytest.mark.parametrize("module, _func, cls_name, section, _needs", SECTIONS, ids=[s[3] for s in SECTIONS])
def test_stage_section_matches_settings(module, _func, cls_name, section, _needs):
    cls = getattr(importlib.import_module(module), cls_name)
    props = SCHEMA["properties"][section]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
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
        # required keys have no default: the grid axes, and N (required unless read from a file)
        required = {f"definitions.sweep.{k}" for k in ("ensemble", "activation", "theta_mode", "N")}
        if path != "config.sweeps" and path not in required:
            assert "default" in node, path


def test_default_and_paper_configs_are_valid():
    for name in ("config.yaml", "paper.yaml"):
        path = SCHEMA_PATH.parents[2] / "config" / name
        if path.exists():
            validate(yaml.safe_load(path.read_text()), str(SCHEMA_PATH))
