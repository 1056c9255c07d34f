"""The workflow's stages as plain functions (no snakemake import).

Each Snakemake rule's script is one call into this module, so the same code runs from a
notebook or a test: ``run_networks`` draws a seed chunk's networks, ``run_stage`` runs one
analysis stage on them, ``run_job`` does either for every seed chunk of a workflow job (one
netCDF group per chunk in each stage file), ``run_collect`` combines a sweep. BLAS is pinned
to the job's threads (threadpoolctl) because Snakemake parallelises across jobs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from . import io
from ._random import stage_rng
from .network import NetworkBatch
from .sweep import (
    GRID_KEYS,
    SweepJob,
    SweepPoint,
    batch_from_dataset,
    training_path,
    build_networks,
    collect,
    networks_dataset,
    provenance_attrs,
)

__all__ = ["STAGES", "SHARED_SECTIONS", "TIMING_SUFFIX", "start_job_log", "stage_seconds", "warm_up",
           "run_networks", "run_training", "run_stage", "run_job", "run_collect", "swept_keys", "stage_settings"]

log = logging.getLogger("koopnet")

#: stage -> list of (module, dataset function, settings class, config section, upstream stages)
STAGES: dict[str, list[tuple[str, str, str, str, tuple[str, ...]]]] = {
    "equilibria": [("koopnet.equilibria", "equilibria_dataset", "EquilibriumSettings", "equilibria", ())],
    "spectra": [("koopnet.koopman", "spectra_dataset", "SpectraSettings", "spectra", ("equilibria",))],
    "metrics": [
        ("koopnet.dimension", "dimension_dataset", "DimensionSettings", "dimension", ("equilibria",)),
        ("koopnet.resilience", "resilience_dataset", "ResilienceSettings", "resilience", ("equilibria",)),
    ],
}


def start_job_log(path: str | Path, quiet: Sequence[str] = ("fontTools", "matplotlib", "PIL")) -> logging.Logger:
    """Send the job's log to ``path`` and make a failure leave its traceback there.

    Every workflow job calls this first (``workflow/scripts/*.py``). An uncaught exception is
    written with its traceback to the log file before the default handler prints it and the
    interpreter exits non-zero, so a failed job on a cluster node leaves a record next to its
    outputs, not only on a console nobody sees.
    """
    logging.basicConfig(filename=str(path), level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    job_log = logging.getLogger("koopnet")
    previous = sys.excepthook

    def log_then_raise(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            job_log.critical("job failed: %s: %s", kind.__name__, value, exc_info=(kind, value, tb))
            for handler in logging.getLogger().handlers:
                handler.flush()
        previous(kind, value, tb)

    sys.excepthook = log_then_raise
    return job_log


#: settings field name -> (module, settings class): config sections shared by several stages.
#: A stage's settings class with a field of this name gets it from the top-level section of
#: the same name (e.g. ``integration``, used by both ``dimension`` and ``resilience``).
SHARED_SECTIONS: dict[str, tuple[str, str]] = {
    "integration": ("koopnet.simulate", "IntegrationSettings"),
}


def stage_settings(settings_cls: type, section: Mapping[str, Any] | None, where: str,
                   config: Mapping[str, Any] | None = None):
    """Build a settings dataclass from a config section, naming unknown keys.

    Fields named like a :data:`SHARED_SECTIONS` entry are built from that top-level section
    of ``config`` (they are not keys of ``section``).
    """
    section = dict(section or {})
    shared = {f.name for f in dataclasses.fields(settings_cls)} & set(SHARED_SECTIONS)
    known = {f.name for f in dataclasses.fields(settings_cls)} - shared
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    for name in shared:
        module, cls_name = SHARED_SECTIONS[name]
        cls = getattr(importlib.import_module(module), cls_name)
        section[name] = stage_settings(cls, (config or {}).get(name), name)
    return settings_cls(**section)


def run_networks(point: SweepPoint, seed_indices: Sequence[int], config_seed: int, out: str | Path | None,
                 threads: int = 1, base_dir: str | Path = ".", training: str | Path | None = None) -> xr.Dataset:
    """Draw a seed chunk's networks and write their dataset (W, theta, seeds, spectrum of W).

    ``out=None`` returns the dataset without writing it. With ``training`` (the chunk's ``train``
    output), the networks are the checkpoint ``point.values["step"]`` of the trained networks,
    and the checkpoint's training variables (train_loss, B, C, delta_W and its ranks, ...) are
    added to the dataset.
    """
    with threadpool_limits(threads):
        batch, seeds = build_networks(point, seed_indices, config_seed, base_dir)
        extra = None
        if training is not None:
            batch, extra = _checkpoint(batch, seeds, training, point.values["step"])
        ds = networks_dataset(batch, seeds).assign_coords(seed=("network", list(seed_indices)))
        if extra is not None:
            ds = ds.merge(extra.assign_coords(seed=("network", list(seed_indices))))
    if out is not None:
        io.write_dataset(ds, out)
    log.info("%s: %d networks (N=%d) -> %s", point.id, len(batch), batch.n_units, out)
    return ds


def _checkpoint(initial: NetworkBatch, seeds: Sequence[int], training: str | Path, step: int):
    """The networks at training step ``step`` and that checkpoint's training variables."""
    tr = io.open_dataset(training)
    if [int(s) for s in tr["network_seed"].values] != list(seeds):
        raise ValueError(f"{training}: trained networks do not match this chunk's network seeds")
    at = tr.sel(step=step).drop_vars(["step", "seed"], errors="ignore")
    batch = NetworkBatch(at["W"].values, at["theta"].values, initial.activation)
    return batch, at.drop_vars(["W", "theta", "network_seed"])


def run_training(point: SweepPoint, seed_indices: Sequence[int], config_seed: int, config: Mapping[str, Any],
                 out: str | Path, base_dir: str | Path = ".") -> xr.Dataset:
    """Rule ``train``: draw a seed chunk's initial networks and train them (checkpoints in one file).

    The settings are ``config["sweeps"][point.sweep]["training"]``; the ranks of delta_W use the
    ``dimension`` section's ``rank_tol`` and ``energy_fraction`` (the same measures as for W).
    JAX is imported here only.
    """
    from .learning import TrainingSettings, training_dataset

    settings = stage_settings(TrainingSettings, config["sweeps"][point.sweep].get("training"),
                              f"sweeps.{point.sweep}.training")
    dim = config.get("dimension") or {}
    with threadpool_limits(1):
        batch, seeds = build_networks(point, seed_indices, config_seed, base_dir)
        ds = training_dataset(batch, seeds, settings, rank_tol=dim.get("rank_tol"),
                              energy_fraction=dim.get("energy_fraction", 0.9))
    ds = ds.assign(network_seed=("network", np.asarray(seeds, dtype=np.int64)))
    ds = ds.assign_coords(seed=("network", list(seed_indices)))
    io.write_dataset(ds, out)
    log.info("%s: trained %d networks (N=%d, task %s) -> %s", point.id, len(batch), batch.n_units,
             settings.task, out)
    return ds


def run_stage(stage: str, activation: str, networks: str | Path | xr.Dataset,
              upstream: Mapping[str, str | Path | xr.Dataset], config: Mapping[str, Any],
              out: str | Path | None, threads: int = 1, point: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Run analysis ``stage`` on a job's networks and write its dataset.

    Parameters
    ----------
    stage : str
        A key of :data:`STAGES`.
    activation : str
        The networks' activation.
    networks : path or Dataset
        The networks dataset (:func:`run_networks`).
    upstream : mapping
        Upstream stage datasets (or their paths) by stage name.
    config : mapping
        Workflow config (its stage sections give the settings).
    out : path or None
        Where to write the result; None: only return it.
    threads : int
        BLAS threads.
    point : mapping, optional
        The networks' sweep-point values (``SweepPoint.values``: ensemble and its parameters),
        passed to stage functions that take ``point`` (spectra: the perturbative family runs only
        on ensembles that declare a split W = W_ff + eps R_hat).
    """
    net_ds = _dataset(networks)
    batch, seeds = batch_from_dataset(net_ds, activation)
    inputs = {name: _without_timing(_dataset(ds)) for name, ds in upstream.items()}
    parts = []
    cpu = 0.0  # CPU seconds in the analysis itself (not imports, files or bookkeeping)
    with threadpool_limits(threads):
        for module, func, settings_name, section, needs in STAGES[stage]:
            mod = importlib.import_module(module)
            settings = stage_settings(getattr(mod, settings_name), config.get(section), section,
                                      config)
            kwargs = {name: inputs[name].drop_vars("seed") for name in needs}
            if "point" in inspect.signature(getattr(mod, func)).parameters:
                kwargs["point"] = point
            start = time.process_time()
            part = getattr(mod, func)(batch, seeds, settings, **kwargs)
            seconds = time.process_time() - start
            cpu += seconds
            parts.append(part.assign({f"{section}{TIMING_SUFFIX}": stage_seconds(
                section, seconds, len(batch), threads)}))
    ds = xr.merge(parts, compat="no_conflicts", join="exact", combine_attrs="drop_conflicts")
    ds = ds.assign_coords(seed=("network", net_ds["seed"].values))
    if out is not None:
        io.write_dataset(ds, out)
    log.info("%s: %d networks, analysis %.3f CPU-s -> %s", stage, len(batch), cpu, out)
    return ds


#: Units of the network :func:`warm_up` runs a stage on.
WARM_UP_UNITS = 4
#: (stage, activation) pairs warmed up in this process.
_warmed: set[tuple[str, str]] = set()
#: Modules a stage's functions import on their first call (lazily, to keep ``import koopnet``
#: and Snakemake's main process light), imported by :func:`warm_up` so that no chunk pays them.
FIRST_CALL_IMPORTS: dict[str, tuple[str, ...]] = {
    # dimension: scipy.integrate.quad and scipy.optimize.brentq (Marchenko-Pastur median);
    # resilience: the equilibria module (search box)
    "metrics": ("scipy.integrate", "scipy.optimize", "koopnet.equilibria"),
}


def warm_up(stage: str, activation: str, config: Mapping[str, Any], threads: int = 1) -> float:
    """Pay a stage's once-per-process costs before any network is timed; CPU seconds spent.

    The first call of the equilibria stage in a process loads its compiled (numba) kernels
    from the cache, or compiles them after a change of their source: about 0.5 CPU-s, up to
    ~15 s cold, which :func:`run_stage` would otherwise charge to the first seed chunk's
    ``equilibria_seconds``. The stage's functions that need no upstream stage are run once on
    a fixed ``WARM_UP_UNITS``-unit network with the job's activation and settings, and the
    result is discarded. The other stages are not run (a warm-up of theirs would need the
    equilibria stage, and its kernels, in jobs that otherwise never load them); their modules
    are imported before the timer, and what they import on a first call is paid here: the
    activation's first evaluation (scipy.special for the logistic, ~0.3 CPU-s), evaluated
    for every stage, and the stage's :data:`FIRST_CALL_IMPORTS` (metrics: ~0.3 CPU-s).

    Idempotent per process and (stage, activation): later calls return 0.
    """
    if (stage, activation) in _warmed:
        return 0.0
    _warmed.add((stage, activation))
    z = stage_rng(0, "warm_up").standard_normal((1, WARM_UP_UNITS, WARM_UP_UNITS))
    batch = NetworkBatch(8.0 * z / np.sqrt(WARM_UP_UNITS), np.zeros((1, WARM_UP_UNITS)), activation)
    start = time.process_time()
    with threadpool_limits(threads):
        batch.activation.sigma(z[0, 0])
        for module in FIRST_CALL_IMPORTS.get(stage, ()):
            importlib.import_module(module)
        for module, func, settings_name, section, needs in STAGES[stage]:
            mod = importlib.import_module(module)
            if needs:
                continue
            settings = stage_settings(getattr(mod, settings_name), config.get(section), section, config)
            getattr(mod, func)(batch, [0], settings)
    seconds = time.process_time() - start
    log.info("%s: warm-up (once per process, not in *_seconds) %.3f CPU-s", stage, seconds)
    return seconds


def _dataset(source: str | Path | xr.Dataset) -> xr.Dataset:
    return source if isinstance(source, xr.Dataset) else io.open_dataset(source)


def run_job(stage: str, job: SweepJob, config: Mapping[str, Any], inputs: Mapping[str, str | Path],
            outputs: Mapping[str, str | Path], threads: int = 1, base_dir: str | Path = ".") -> None:
    """Run one workflow job: ``stage`` on every unit (seed chunk) of ``job``.

    Each stage file of a job holds one netCDF group per unit (named ``unit.name``), written
    atomically once all units are done, so a killed job leaves no file and is redone whole.

    Parameters
    ----------
    stage : str
        ``"equilibria"`` (which first draws the networks and also writes ``outputs["networks"]``)
        or another key of :data:`STAGES`.
    job : SweepJob
    config : mapping
        Workflow config (``seed`` and the stage sections).
    inputs : mapping
        Paths of the job's upstream files by name (``networks`` and upstream stages); none for
        ``equilibria``.
    outputs : mapping
        Paths to write by name (``networks`` and ``equilibria``, or the stage).
    """
    results: dict[str, dict[str, xr.Dataset]] = {name: {} for name in outputs}
    inputs = {name: path for name, path in inputs.items() if name != "training"}  # found by training_path
    groups = {name: io.open_groups(path) for name, path in inputs.items()}
    for activation in dict.fromkeys(unit.point.values["activation"] for unit in job.units):
        warm_up(stage, activation, config, threads)
    for unit in job.units:
        activation = unit.point.values["activation"]
        if stage == "equilibria":
            training = training_path(unit) if unit.point.train_id else None
            networks = run_networks(unit.point, unit.seeds, config["seed"], None, threads, base_dir,
                                    training=None if training is None else Path(base_dir, training))
            results["networks"][unit.name] = networks
        else:
            networks = groups["networks"][unit.name]
        upstream = {name: groups[name][unit.name] for name in groups if name != "networks"}
        results[stage][unit.name] = run_stage(stage, activation, networks, upstream, config, None, threads,
                                              point=unit.point.values)
    for name, datasets in results.items():
        io.write_datasets(datasets, outputs[name])
        log.info("%s: %d chunks -> %s", name, len(datasets), outputs[name])


#: Suffix of the per-stage timing variables: kept out of sweep.nc (not reproducible), in timing.nc.
TIMING_SUFFIX = "_seconds"


def stage_seconds(section: str, seconds: float, n_networks: int, threads: int) -> xr.Variable:
    """Per-network CPU time of one stage call on the networks of a seed chunk.

    Once-per-process costs are not in it (:func:`warm_up` pays them before the first chunk).
    The stages are vectorised over a chunk's networks, so one call's time is not separable per
    network: each network gets an equal share (exact for chunks of one network,
    ``seeds_per_job: 1``).

    Parameters
    ----------
    section : str
        The stage's config section (``equilibria``, ``spectra``, ``dimension``, ``resilience``).
    seconds : float
        CPU seconds of the call (``time.process_time``: every thread of the process).
    n_networks : int
    threads : int
        BLAS threads the job ran with.

    Returns
    -------
    xr.Variable, dims ``network``, units s
    """
    return xr.Variable(("network",), np.full(n_networks, seconds / max(n_networks, 1)), attrs={
        "long_name": f"CPU time of the {section} stage per network",
        "units": "s",
        "timing_split": f"equal share of one call on {n_networks} network(s) (a seed chunk)",
        "threads": threads,
        "comment": "process CPU time (all threads), without the once-per-process warm-up "
                   "(koopnet.pipeline.warm_up); varies from run to run, so it is kept in "
                   "timing.nc beside sweep.nc, which stays byte-reproducible",
    })


def _without_timing(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars([v for v in ds.data_vars if str(v).endswith(TIMING_SUFFIX)])


def swept_keys(sweep: Mapping[str, Any], points: Sequence[SweepPoint]) -> list[str]:
    """Point keys that become dimensions: list-valued config keys, plus ``step`` for files."""
    keys = [k for k in GRID_KEYS if isinstance(sweep.get(k), (list, tuple))]
    keys += [k for k, v in (sweep.get("params") or {}).items() if isinstance(v, (list, tuple))]
    if points and "step" in points[0].values:
        keys.append("step")
    return keys


def run_collect(config: Mapping[str, Any], sweep: str, jobs: Sequence[SweepJob],
                job_files: Sequence[Mapping[str, str | Path]], out: str | Path,
                timing_out: str | Path | None = None) -> xr.Dataset:
    """Combine all jobs of a sweep into ``results/<sweep>/sweep.nc`` (and ``timing.nc``).

    Parameters
    ----------
    jobs : sequence of SweepJob
        Every job of the sweep (:func:`koopnet.sweep.plan_jobs`).
    job_files : sequence of mapping
        For every job, its files by stage (``networks``, ``equilibria``, ``spectra``,
        ``metrics``); each holds one group per unit of the job.
    out : path
        The sweep dataset: everything but the timings, byte-reproducible.
    timing_out : path, optional
        The per-stage CPU times (``*_seconds``) on the same coordinates and with the same
        provenance attributes.

    Returns
    -------
    xr.Dataset
        The sweep dataset with the timings (what the two files hold together).
    """
    parts = []
    for job, files in zip(jobs, job_files):
        groups = [io.open_groups(path) for path in files.values()]
        for unit in job.units:
            datasets = [by_unit[unit.name] for by_unit in groups]
            merged = xr.merge(datasets, compat="no_conflicts", join="exact", combine_attrs="drop_conflicts")
            parts.append((unit.point, merged))
    points = [point for point, _ in parts]
    ds = collect(parts, swept_keys(config["sweeps"][sweep], points), provenance_attrs(_sweep_config(config, sweep), sweep))
    if config["sweeps"][sweep].get("training") is not None:
        ds["step"].attrs["long_name"] = "training step (optimizer updates) of the checkpoint"
    timing = [name for name in ds.data_vars if str(name).endswith(TIMING_SUFFIX)]
    io.write_dataset(ds.drop_vars(timing), out)
    if timing_out is not None:
        io.write_dataset(ds[timing], timing_out)
    return ds


def _sweep_config(config: Mapping[str, Any], sweep: str) -> dict:
    """The part of the config that determines a sweep's numbers, in one spelling.

    Not threads, figures (``paper``, ``figure_formats``), other sweeps, ``seeds_per_job`` or
    ``job_cpu_seconds`` (none changes a number); numbers
    as floats and numeric lists sorted, as the dataset's coordinates are, so that ``[4, 1.0]``
    and ``[1, 4]`` give the same ``config`` and ``config_hash`` (and the same file). The order
    of text lists is kept: it is the order of the dataset's categorical coordinates.
    """
    out = {k: v for k, v in config.items()
           if k not in ("sweeps", "threads", "job_cpu_seconds", "paper", "figure_formats")}
    spec = {k: v for k, v in config["sweeps"][sweep].items() if k != "seeds_per_job"}
    if "params" in spec:
        spec["params"] = {k: _one_spelling(v, _declared_kind(k)) for k, v in spec["params"].items()}
    if "N" in spec:
        spec["N"] = _one_spelling(spec["N"], "integer")
    out["sweeps"] = {sweep: spec}
    return out


def _declared_kind(key: str) -> str | None:
    from .ensembles import PARAMETERS, THETA_PARAMETERS

    kinds = {table[key].kind for tables in (PARAMETERS, THETA_PARAMETERS) for table in tables.values() if key in table}
    return kinds.pop() if len(kinds) == 1 else None


def _one_spelling(value, kind: str | None):
    """Declared numbers as floats, integers as ints; numeric lists sorted."""
    cast = {"number": float, "integer": int}.get(kind)
    if isinstance(value, (list, tuple)):
        values = [cast(v) if cast else v for v in value]
        return sorted(values) if cast else values
    return cast(value) if cast else value
