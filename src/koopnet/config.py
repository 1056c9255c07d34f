"""Checking a workflow config before any job runs.

Everything here runs when the workflow starts (``workflow/rules/common.smk``), before the DAG
is built, and raises :class:`~koopnet.sweep.ConfigError` naming the key (``sweeps.gain.params.p``,
``dimension.t_discard``) or the file:

- :func:`schema_errors`: the JSON schema, with integers that really are integers (JSON
  schema counts 2.0 as an integer) and the most specific complaint of a ``oneOf``;
  :func:`load_schema` and :func:`fill_defaults` read the schema once and fill the defaults;
- :func:`check_stage_settings`: constraints between keys of a stage section, as the settings
  dataclasses state them in their ``__post_init__`` (e.g. ``t_discard < t_max``);
- :func:`estimate_job` / :func:`check_resources`: memory and work of the largest job of each
  sweep from the cost formulas of the stages (N^2 floats per W, starts x N^3 per Newton
  iteration, C(N + D, D) Taylor monomials); refuse what cannot fit in memory, warn with an
  estimated time for what is merely long;
- :func:`load_config_file`: a YAML file read with its name (and line) in every error;
  :func:`check_config_files` (``python -m koopnet.config FILE...``) runs all of the above on
  config files, since Snakemake's own ``--configfile`` errors name neither file nor line.

Ensemble and theta parameters are checked by :func:`koopnet.sweep.expand_sweep` against
their declarations (:data:`koopnet.ensembles.PARAMETERS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .sweep import ConfigError

__all__ = [
    "schema_errors",
    "load_schema",
    "fill_defaults",
    "check_stage_settings",
    "JobEstimate",
    "estimate_job",
    "check_resources",
    "load_config_file",
    "check_config_files",
    "FLOP_RATE",
]

#: Assumed sustained rate of one core (floating-point operations per second) for time estimates.
FLOP_RATE = 1e9
#: A job estimated to take longer than this (seconds) is announced with its estimated time.
LONG_JOB_SECONDS = 600.0


def _strict_validator(schema: Mapping):
    """Draft 7 validator whose ``integer`` excludes 2.0 and whose ``number`` excludes NaN and inf."""
    import jsonschema

    base = jsonschema.Draft7Validator
    checker = base.TYPE_CHECKER.redefine_many({
        "integer": lambda _, v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda _, v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    })
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _most_specific(err):
    """Of a oneOf/anyOf's alternatives, the complaint of the one whose type fits the value."""
    while err.context:
        by_alternative: dict = {}
        for e in err.context:
            by_alternative.setdefault(e.relative_schema_path[0], []).append(e)
        # an alternative fits the value's type when it has no type complaint about the value itself
        fitting = [errs for errs in by_alternative.values()
                   if not any(e.validator == "type" and not e.relative_path for e in errs)]
        candidates = fitting[0] if fitting else list(err.context)
        err = max(candidates, key=lambda e: len(e.absolute_path))
    return err


def schema_errors(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """One line per violation of ``schema``: ``key.path: problem`` (with a spelling hint for unknown keys)."""
    errors = sorted(_strict_validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for err in errors:
        err = _most_specific(err)
        where = ".".join(map(str, err.absolute_path)) or "(top level)"
        message, hint = err.message, ""
        if err.validator == "additionalProperties":  # a misspelt key: name the closest ones
            known = list(err.schema.get("properties", {}))
            extra = [k for k in err.instance if k not in known]
            near = {k: difflib.get_close_matches(k, known, n=1) for k in extra}
            hint = "".join(f" (did you mean {m[0]!r} for {k!r}?)" for k, m in near.items() if m)
            shared = schema.get("properties", {}).get("integration", {}).get("properties", {})
            hint += "".join(f" ({k!r} is a key of the shared 'integration' section)"
                            for k in extra if k in shared and err.absolute_path)
        elif err.validator == "minItems" and err.instance == []:
            message = "empty list (give at least one value)"
        elif err.validator == "contains" and "const" in err.validator_value:
            message = f"{err.instance!r} must include {err.validator_value['const']!r}"
        elif err.validator == "type" and isinstance(err.instance, float) and not math.isfinite(err.instance):
            message = f"{err.instance!r} is not a finite number"
        lines.append(f"  {where}: {message}{hint}")
    return lines


def load_schema(path: str | os.PathLike) -> dict:
    """The config schema (YAML), parsed by libyaml when PyYAML has it (ten times faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)


def fill_defaults(config: dict, schema: Mapping[str, Any]) -> dict:
    """Set every absent key that has a ``default`` in ``schema``, in place, as Snakemake's ``validate`` does.

    The recipe of the jsonschema FAQ that ``snakemake.utils.validate(config, schema)`` uses
    (a Draft 2020-12 validator whose ``properties`` keyword first sets the defaults), run on
    the schema already parsed by :func:`load_schema`, so the workflow reads its schema once.
    Call it on a config :func:`schema_errors` found valid.

    Returns
    -------
    dict
        ``config`` itself.
    """
    import jsonschema

    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, sub):
        if isinstance(instance, dict):
            for name, prop in props.items():
                if "default" in prop:
                    instance.setdefault(name, prop["default"])
        yield from properties(validator, props, instance, sub)

    jsonschema.validators.extend(base, {"properties": set_defaults})(schema).validate(config)
    return config


def check_stage_settings(config: Mapping[str, Any]) -> None:
    """Build every stage's settings from the config, so cross-key constraints fail now, not in a job.

    Raises
    ------
    ConfigError
        ``<section>: <problem>``, e.g. ``dimension: t_discard = 50.0 must be < t_max = 10.0``.
    """
    from .pipeline import STAGES, stage_settings

    for entries in STAGES.values():
        for module, _func, cls_name, section, _needs in entries:
            cls = getattr(importlib.import_module(module), cls_name)
            try:
                stage_settings(cls, config.get(section), section, config)
            except (TypeError, ValueError) as err:
                text = str(err)
                raise ConfigError(text if text.startswith(f"{section}") else f"{section}: {text}") from None


@dataclasses.dataclass(frozen=True)
class JobEstimate:
    """Peak memory and work of one job (a lower bound on memory, the order of magnitude of time).

    Attributes
    ----------
    memory_bytes : float
        Largest term of the job's peak memory (bytes).
    seconds : float
        Floating-point work of the job divided by :data:`FLOP_RATE` (seconds on one core).
    parts : dict
        Work (seconds) by stage part, for the message.
    memory_parts : dict
        Memory (bytes) by stage part.
    """

    memory_bytes: float
    seconds: float
    parts: dict
    memory_parts: dict


def _setting(config: Mapping[str, Any], section: str, key: str, fallback: float):
    """A stage setting from the config, else its dataclass default, else ``fallback`` (a key moved elsewhere)."""
    from .pipeline import STAGES

    value = (config.get(section) or {}).get(key)
    if value is not None:
        return value
    for entries in STAGES.values():
        for module, _f, cls_name, sec, _n in entries:
            if sec == section:
                cls = getattr(importlib.import_module(module), cls_name)
                defaults = {f.name: f.default for f in dataclasses.fields(cls)}
                if key in defaults and defaults[key] is not dataclasses.MISSING:
                    return defaults[key]
    return fallback


#: LAPACK LU factorisations of the sizes the equilibria search uses (N >~ 100) run about this many
#: times faster than :data:`FLOP_RATE` on one core (getrf, measured 7-20 GFlop/s at N = 200-1000):
#: their flops count divided by it.
LU_SPEEDUP = 10.0


def _equilibria_flops(config: Mapping[str, Any], N: int) -> float:
    """FLOP_RATE-equivalent work of the equilibria search of one network of N units.

    What the stage does with the default bounded activations: up to ``random_start_max_units``
    units, ``n_starts`` random starts (the most; the sample may saturate earlier), each ~12 LU
    factorisations of the N-square Jacobian and ~90 trust-region steps of ~8 N^2 flops (measured
    at N = 50-200, g = 8, mostly starts that stall); above, the homotopy paths' ``homotopy_work``
    LU factorisations of the (N + 1)-square bordered Jacobian. Measured against this estimate
    (one core, g = 8, centered logistic): N = 50 0.11 s vs 0.49 s, N = 200 3.8 vs 9.0 s,
    N = 1000 211 vs 401 s (benchmarks/bench_equilibria.py prints both).
    """
    lu = 2.0 / 3.0 * N**3 / LU_SPEEDUP
    if N <= _setting(config, "equilibria", "random_start_max_units", 300):
        S = _setting(config, "equilibria", "n_starts", 256)
        return S * (12.0 * lu + 90.0 * 8.0 * N**2)
    return _setting(config, "equilibria", "homotopy_work", 6000.0) * 2.0 / 3.0 * (N + 1) ** 3 / LU_SPEEDUP


def estimate_job(config: Mapping[str, Any], n_units: int, n_networks: int) -> JobEstimate:
    """Memory and work of a job of ``n_networks`` networks of ``n_units`` units.

    Cost formulas (B networks, N units, S Newton starts, D the Taylor degree):
    W and its eigen/singular decompositions hold ~4 N^2 floats per network (8 bytes each) plus
    O(N^2) LAPACK workspace; the equilibria search as :func:`_equilibria_flops` (random starts
    up to random_start_max_units, homotopy paths beyond) with at most max(chunk_elements, N^2)
    floats of temporaries; the principal eigenfunctions (N <= eigenfunction_max_units) an eigendecomposition
    with vectors (~25 N^3 flops) and, for each of the m modes, one complex product of N x N by
    N x P (P = N(N+1)/2 at degree 3, N at degree 2; 8 N^2 P flops) and the residual check at
    2 x check_points states (32 check_points N P flops), holding (m + 3) N P complex numbers; gEDMD
    (N <= gedmd_max_units) a K' x K' one with K' = C(N + gedmd_degree, gedmd_degree); the
    dimension stage integrates n_initial_conditions trajectories of n_samples states (~2 N^2
    flops per right-hand side, ~10 per sample); continuation and removal solve N x N systems
    (~100 solves per stable equilibrium). Only the equilibria found are unknown: one per
    network is assumed, so the estimates are lower bounds for multistable networks.
    """
    N, B = int(n_units), int(n_networks)
    f8 = 8.0
    S = _setting(config, "equilibria", "n_starts", 256)
    chunk = _setting(config, "equilibria", "chunk_elements", 4194304)
    mem = {
        "weights": f8 * N * N * (4 * B + 2),
        "newton": f8 * max(min(S * N * N, chunk), N * N) * 3,
    }
    work = {
        "weights": B * 30.0 * N**3,
        "newton": B * _equilibria_flops(config, N),
    }
    if N <= _setting(config, "spectra", "eigenfunction_max_units", 1000):
        m = min(_setting(config, "spectra", "eigenfunction_modes", 3), N)
        cubic = (_setting(config, "spectra", "eigenfunction_degree", 3) >= 3
                 and N <= _setting(config, "spectra", "eigenfunction_cubic_max_units", 200))
        P = N * (N + 1) / 2 if cubic else N
        M = _setting(config, "spectra", "eigenfunction_check_points", 16)
        mem["eigenfunctions"] = 16.0 * (m + 3) * N * P
        work["eigenfunctions"] = B * (25.0 * N**3 + m * (8.0 * N * N * P + 32.0 * M * N * P))
    if N <= _setting(config, "spectra", "gedmd_max_units", 3):
        K = math.comb(N + _setting(config, "spectra", "gedmd_degree", 7), N)
        n_samp = _setting(config, "spectra", "gedmd_n_samples", 1000) + _setting(config, "spectra", "gedmd_n_test", 500)
        mem["gedmd"] = 16.0 * 3 * K * K + f8 * n_samp * K * 2
        work["gedmd"] = B * (25.0 * K**3 + 2.0 * n_samp * K * K)
    M = _setting(config, "dimension", "n_initial_conditions", 20)
    T = _setting(config, "dimension", "n_samples", 401)
    mem["dimension"] = f8 * B * M * T * N
    work["dimension"] = B * M * T * 10 * 2.0 * N * N
    R = _setting(config, "resilience", "n_initial_conditions", 200)
    steps = (config.get("integration") or {}).get("t_max", 100.0) * 10
    work["resilience"] = B * (R * steps * 2.0 * N * N + 100 * (2.0 / 3.0) * N**3)
    return JobEstimate(max(mem.values()), sum(work.values()) / FLOP_RATE,
                       {k: v / FLOP_RATE for k, v in work.items()}, mem)


def _available_memory() -> float:
    """Physical memory of this machine (bytes); the KOOPNET_MAX_MEMORY_GB environment variable overrides it."""
    if os.environ.get("KOOPNET_MAX_MEMORY_GB"):
        return float(os.environ["KOOPNET_MAX_MEMORY_GB"]) * 2**30
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def _human_time(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def check_resources(config: Mapping[str, Any], sweep_sizes: Mapping[str, tuple[Sequence[int], int]],
                    memory_limit: float | None = None) -> list[str]:
    """Refuse sweeps whose jobs cannot fit in memory; return warnings for jobs that take long.

    Parameters
    ----------
    sweep_sizes : mapping
        Sweep name -> (the N of its grid points, networks per job).
    memory_limit : float, optional
        Bytes available to a job (default: this machine's physical memory).

    Raises
    ------
    ConfigError
        ``sweeps.<name>.N: a job of N = ... needs at least ... GiB (...), more than the ... GiB ...``.
    """
    limit = _available_memory() if memory_limit is None else memory_limit
    warnings = []
    for name, (sizes, per_job) in sweep_sizes.items():
        for N in sorted(set(int(n) for n in sizes), reverse=True):
            est = estimate_job(config, N, per_job)
            if est.memory_bytes > limit:
                part = max(est.memory_parts, key=est.memory_parts.get)
                raise ConfigError(
                    f"sweeps.{name}.N: a job of N = {N} needs at least {est.memory_bytes / 2**30:.3g} GiB "
                    f"({part}), more than the {limit / 2**30:.3g} GiB of memory available"
                    + (" (lower spectra.eigenfunction_cubic_max_units or eigenfunction_max_units)"
                       if part == "eigenfunctions" else "")
                )
            if est.seconds > LONG_JOB_SECONDS:
                part = max(est.parts, key=est.parts.get)
                warnings.append(
                    f"sweeps.{name}: a job of N = {N} ({per_job} network(s)) is estimated at "
                    f"~{_human_time(est.seconds)} of one core (mostly {part}; order of magnitude)"
                )
            break  # the largest N bounds the others
    return warnings


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML/JSON config, naming the file (and the line of a syntax error) in any error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot be read ({err.strerror})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"config file {path}{where}: YAML syntax error ({problem})") from None
    if config is None:
        raise ConfigError(f"config file {path}: empty")
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: must be a mapping of keys, got a {type(config).__name__}")
    return config


def check_config_files(paths: Sequence[str | os.PathLike], schema_path: str | os.PathLike | None = None,
                       base_dir: str | os.PathLike = ".") -> list[str]:
    """Every check the workflow makes before its DAG, on config files (later files override earlier keys).

    Snakemake reads ``--configfile`` itself, before the workflow's code runs, so its errors for
    a YAML syntax error or an empty file name neither; ``python -m koopnet.config FILE...``
    runs this and does.

    Returns
    -------
    list of str
        Warnings (long jobs).

    Raises
    ------
    ConfigError
        Naming the file (and line), or the key.
    """
    from .ensembles import WeightFileError
    from .sweep import expand_sweep, seed_chunks

    config: dict = {}
    for path in paths:
        config.update(load_config_file(path))
    if schema_path is None:
        schema_path = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    lines = schema_errors(config, load_schema(schema_path))
    if lines:
        raise ConfigError("Invalid config:\n" + "\n".join(lines))
    check_stage_settings(config)
    sizes = {}
    for name, sweep in config["sweeps"].items():
        try:
            points = expand_sweep(name, sweep, base_dir=base_dir)
        except WeightFileError as err:
            raise ConfigError(str(err)) from None
        chunks = seed_chunks(sweep.get("seeds", 1), sweep.get("seeds_per_job", 1))
        sizes[name] = ([p.n_units for p in points], max(map(len, chunks)))
    return check_resources(config, sizes)


if __name__ == "__main__":  # python -m koopnet.config my_sweep.yaml
    import sys

    try:
        for warning in check_config_files(sys.argv[1:]):
            print(f"warning: {warning}", file=sys.stderr)
    except ConfigError as err:
        print(err, file=sys.stderr)
        sys.exit(1)
    print("config OK: " + " ".join(sys.argv[1:]))
