"""Parameter sweeps: grid expansion, per-network seeds, network datasets and collection.

A sweep config names an ensemble, an activation, a theta mode (`theta_mode`), N and any ensemble or theta
parameter (under ``params``); each may be a scalar or a list, and the sweep is the grid of
the lists. Every grid point holds ``seeds`` networks, processed ``seeds_per_job`` at a time.

Reproducibility: network ``k`` of a grid point is drawn from a seed derived with numpy's
``SeedSequence`` from (config seed, what determines W, k); see :func:`network_seed`. It does
not depend on job order, core count, ``seeds_per_job``, the sweep's name or how numbers are
written in the YAML; sweeps over activations and inputs are paired (the same W under each).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr
import yaml

from ._linalg import sort_eigenvalues
from ._padding import FILL_INT
from ._random import stable_hash_words, stage_rng
from .activations import ACTIVATIONS
from .ensembles import (
    ENSEMBLES,
    PARAMETERS,
    THETA_MODES,
    THETA_PARAMETERS,
    check_parameter,
    draw_theta,
    draw_weights,
    ensemble_parameters,
    load_weight_file,
    theta_parameters,
)
from .network import NetworkBatch

__all__ = [
    "ConfigError",
    "SweepPoint",
    "GRID_KEYS",
    "expand_sweep",
    "seed_chunks",
    "JobUnit",
    "SweepJob",
    "estimated_cpu_seconds",
    "plan_jobs",
    "network_seed",
    "build_networks",
    "networks_dataset",
    "batch_from_dataset",
    "collect",
    "config_hash",
    "provenance_attrs",
    "source_hash",
    "training_path",
    "training_units",
]

#: Keys of a sweep that form grid axes (besides ``params`` entries and a file's ``step``).
GRID_KEYS = ("ensemble", "activation", "theta_mode", "N")


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


@dataclass(frozen=True)
class SweepPoint:
    """One grid point of a sweep.

    Attributes
    ----------
    sweep : str
        Sweep name.
    values : dict
        Grid values: ensemble, activation, theta_mode, N, ensemble/theta parameters, and ``step``
        for file ensembles (checkpoint index) and trained sweeps (training step of the checkpoint).
    id : str
        Path-safe identifier, unique within the sweep.
    """

    sweep: str
    values: Mapping[str, Any]
    id: str
    train_id: str | None = None
    """Trained sweeps: id of the step-0 point whose ``train`` job trains this point's networks."""

    @property
    def n_units(self) -> int:
        return int(self.values["N"])


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _safe(value) -> str:
    if isinstance(value, str) and ("/" in value or "." in value):
        value = Path(value).stem
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(value))


def expand_sweep(name: str, sweep: Mapping[str, Any], base_dir: str | Path = ".") -> list[SweepPoint]:
    """Expand a (schema-validated) sweep config into its grid points.

    Checks what a JSON schema cannot: ensemble/theta parameters that no ensemble of the
    sweep accepts, empty lists, ``seeds_per_job > seeds``, and weight files (read here so a
    bad file fails before any job, naming the file and the problem).

    Raises
    ------
    ConfigError
        Naming the key, e.g. ``sweeps.gain.params.q``.
    """
    key = f"sweeps.{name}"
    axes: dict[str, list] = {}
    for k in GRID_KEYS:
        if k not in sweep:
            if k == "N" and _as_list(sweep.get("ensemble")) == ["file"]:
                continue
            raise ConfigError(f"{key}.{k}: missing")
        axes[k] = _as_list(sweep[k])
    params = dict(sweep.get("params") or {})
    for k, v in params.items():
        axes[k] = _as_list(v)
    for k, v in axes.items():
        where = f"{key}.params.{k}" if k in params else f"{key}.{k}"
        if len(v) == 0:
            raise ConfigError(f"{where}: empty list")
        if len(set(_canonical(_number(x)) for x in v)) != len(v):  # 2 and 2.0 are one value
            raise ConfigError(f"{where}: repeated values {v}")
    for ens in axes["ensemble"]:
        if ens != "file" and ens not in ENSEMBLES:
            raise ConfigError(f"{key}.ensemble: unknown ensemble {ens!r}; expected one of {sorted(ENSEMBLES) + ['file']}")
    if "file" in axes["ensemble"] and len(axes["ensemble"]) > 1:
        raise ConfigError(f"{key}.ensemble: 'file' cannot be swept together with random ensembles")
    for act in axes["activation"]:
        if act not in ACTIVATIONS:
            raise ConfigError(f"{key}.activation: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    for mode in axes["theta_mode"]:
        if mode not in THETA_MODES:
            raise ConfigError(f"{key}.theta_mode: unknown theta mode {mode!r}; expected one of {sorted(THETA_MODES)}")
    for n in axes.get("N", []):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{key}.N: must be a positive integer, got {n!r}")
    for k in ("seeds", "seeds_per_job"):
        v = sweep.get(k, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key}.{k}: must be a positive integer, got {v!r}")
    seeds, per_job = sweep.get("seeds", 1), sweep.get("seeds_per_job", 1)
    if per_job > seeds:
        raise ConfigError(f"{key}.seeds_per_job: {per_job} exceeds seeds = {seeds}")

    is_file = axes["ensemble"] == ["file"]
    checkpoints = _check_training(key, sweep, is_file)
    for k in params:
        accepted = [e for e in axes["ensemble"] if k in ensemble_parameters(e)]
        accepted += [t for t in axes["theta_mode"] if k in theta_parameters(t)]
        if is_file and k == "path":
            continue
        if not accepted:
            raise ConfigError(
                f"{key}.params.{k}: not a parameter of ensemble(s) {axes['ensemble']} "
                f"or theta mode(s) {axes['theta_mode']}"
            )
        missing = [e for e in axes["ensemble"] if not is_file and k not in ensemble_parameters(e)]
        if missing and not any(k in theta_parameters(t) for t in axes["theta_mode"]):
            raise ConfigError(f"{key}.params.{k}: not a parameter of ensemble(s) {missing}")
    for k in params:  # types and ranges declared in ensembles.PARAMETERS / THETA_PARAMETERS
        for v in axes[k]:
            for ens, mode, n in itertools.product(axes["ensemble"], axes["theta_mode"], axes.get("N", [None])):
                try:
                    check_parameter(f"{key}.params.{k}", k, v, ens, mode, n)
                except ValueError as err:
                    raise ConfigError(str(err)) from None
    for k in params:  # numbers as floats: `g: 2` and `g: 2.0` are one grid value, one coordinate dtype
        kinds = {spec.kind for e in axes["ensemble"] for spec in [PARAMETERS.get(e, {}).get(k)] if spec}
        kinds |= {spec.kind for t in axes["theta_mode"] for spec in [THETA_PARAMETERS[t].get(k)] if spec}
        if kinds == {"number"}:
            axes[k] = [float(v) for v in axes[k]]
    if "file" in axes["theta_mode"] and not is_file:
        raise ConfigError(f"{key}.theta_mode: 'file' takes theta from a weight file (ensemble 'file')")
    files: dict[str, tuple] = {}
    if is_file:
        if "path" not in params:
            raise ConfigError(f"{key}.params.path: the 'file' ensemble needs a weight file path")
        if "N" in sweep:
            raise ConfigError(f"{key}.N: leave N out for the 'file' ensemble (it comes from the file)")
        for path in axes["path"]:
            W, theta = load_weight_file(Path(base_dir, path), keep_shape=True)  # WeightFileError names the file
            if theta is None and "file" in axes["theta_mode"]:
                raise ConfigError(f"{key}.theta_mode: 'file', but weight file {path} holds no theta")
            files[path] = W
    # `step` is a grid axis only when a file holds W of shape (steps, N, N)
    stepped = any(W.ndim == 3 for W in files.values())

    names = list(axes)
    points: list[SweepPoint] = []
    for combo in itertools.product(*(axes[k] for k in names)):
        values = dict(zip(names, combo))
        if is_file:
            W = files[values["path"]]
            values["N"] = int(W.shape[-1])
            if stepped:
                for step in range(W.shape[0] if W.ndim == 3 else 1):
                    points.append(_point(name, {**values, "step": step}))
            else:
                points.append(_point(name, values))
        elif checkpoints:
            for step in checkpoints:
                points.append(_point(name, {**values, "step": step}))
        else:
            points.append(_point(name, values))
    ids = [p.id for p in points]
    if len(set(ids)) != len(ids):  # sanitised values collided: fall back to indexed ids
        points = [SweepPoint(p.sweep, p.values, f"p{i:05d}_{p.id}") for i, p in enumerate(points)]
    if checkpoints:  # every checkpoint reads the networks trained in its step-0 point's train job
        first: dict[str, str] = {}
        for p in points:  # checkpoints ascend, so step 0 comes first
            first.setdefault(_canonical({k: v for k, v in p.values.items() if k != "step"}), p.id)
        points = [SweepPoint(p.sweep, p.values, p.id,
                             first[_canonical({k: v for k, v in p.values.items() if k != "step"})]) for p in points]
    return points


def _check_training(key: str, sweep: Mapping[str, Any], is_file: bool) -> list[int]:
    """Checkpoint steps of a trained sweep ([] without training), after the checks a schema cannot make."""
    if sweep.get("training") is None:
        return []
    from .tasks import TASKS, task_parameters

    training = dict(sweep["training"] or {})
    where = f"{key}.training"
    if is_file:
        raise ConfigError(f"{where}: the 'file' ensemble holds its own checkpoints; train a random ensemble")
    task = training.get("task", "flipflop")
    if task not in TASKS:
        raise ConfigError(f"{where}.task: unknown task {task!r}; expected one of {sorted(TASKS)}")
    for k in training.get("task_params") or {}:
        if k not in task_parameters(task):
            raise ConfigError(f"{where}.task_params.{k}: not a parameter of task {task!r} "
                              f"(expected some of {sorted(task_parameters(task))})")
    steps = training.get("checkpoints", [0, 10, 100, 1000])
    if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"{where}.checkpoints: must be strictly increasing and start at 0, got {steps}")
    lr = training.get("learning_rate", 1e-2)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"{where}.learning_rate: must be > 0, got {lr!r}")
    return [int(s) for s in steps]


def training_path(unit: "JobUnit") -> str:
    """The ``train`` output holding the checkpoints of a trained unit's networks (relative to the workdir)."""
    return f"results/{unit.point.sweep}/training/{unit.point.train_id}_chunk{unit.chunk}.nc"


def training_units(points: Sequence[SweepPoint], chunks: Sequence[range]) -> list["JobUnit"]:
    """The units (step-0 point x seed chunk) that a trained sweep's ``train`` jobs run, in grid order."""
    return [JobUnit(p, c, tuple(seeds)) for p in points if p.train_id == p.id for c, seeds in enumerate(chunks)]


def _point(sweep: str, values: dict) -> SweepPoint:
    # e.g. gaussian_logistic_centered_N12_g2.0: categorical values bare, numbers with their key
    parts = [_safe(values[k]) for k in ("ensemble", "activation", "theta_mode")]
    parts += [f"{k}{_safe(v)}" for k, v in values.items() if k not in ("ensemble", "activation", "theta_mode")]
    return SweepPoint(sweep, values, "_".join(parts))


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def seed_chunks(seeds: int, seeds_per_job: int) -> list[range]:
    """Seed indices of each job: ``seeds`` networks in chunks of ``seeds_per_job``."""
    return [range(s, min(s + seeds_per_job, seeds)) for s in range(0, seeds, seeds_per_job)]


@dataclass(frozen=True)
class JobUnit:
    """One seed chunk of one grid point: the smallest piece of work, never split across jobs.

    Attributes
    ----------
    point : SweepPoint
    chunk : int
        Index of the seed chunk (see :func:`seed_chunks`).
    seeds : tuple of int
        Seed indices of its networks.
    """

    point: SweepPoint
    chunk: int
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        """Its netCDF group name in a job's stage files, e.g. ``gaussian_tanh_centered_N6_g2.0_chunk0``."""
        return f"{self.point.id}_chunk{self.chunk}"


@dataclass(frozen=True)
class SweepJob:
    """Consecutive units run by one workflow job (one Snakemake job per stage).

    Attributes
    ----------
    id : str
        Its directory name: the first unit's name and how many units follow, e.g.
        ``gaussian_logistic_centered_N6_g0.5_chunk0+8``.
    units : tuple of JobUnit
    """

    id: str
    units: tuple[JobUnit, ...]


def estimated_cpu_seconds(n_units: int, config: Mapping[str, Any] | None = None) -> float:
    """Rough CPU seconds of one network through all stages (one core).

    0.5 s of Python-level work that does not grow with N (the default sweep's networks, N <= 12,
    take 0.3-0.6 s of analysis each) plus the flop count of :func:`koopnet.config.estimate_job`
    at the config's settings. Only decides how many networks share a job; the numbers
    computed never depend on it.
    """
    from .config import estimate_job  # (koopnet.config imports this module)

    return 0.5 + estimate_job(config or {}, n_units, 1).seconds


def plan_jobs(points: Sequence[SweepPoint], chunks: Sequence[range], cpu_seconds: float,
              config: Mapping[str, Any] | None = None) -> list[SweepJob]:
    """Pack a sweep's units (every point x seed chunk, in grid order) into jobs.

    Fewer, fuller jobs spend less CPU on start-up (about 1 CPU-s of imports per job and
    stage). The sweep's estimated cost (:func:`estimated_cpu_seconds`) is cut into
    ``ceil(total / cpu_seconds)`` equal shares, and the consecutive units whose cost midpoints
    fall in one share form a job. A unit estimated above ``cpu_seconds`` forms a job of its
    own, so one large network never holds up small ones.

    Parameters
    ----------
    points : sequence of SweepPoint
        The sweep's grid points, in grid order.
    chunks : sequence of range
        Seed indices of each chunk (:func:`seed_chunks`).
    cpu_seconds : float
        Target estimated CPU seconds per job; 0 gives one unit per job.
    config : mapping, optional
        Workflow config (its stage settings enter the estimate).

    Returns
    -------
    list of SweepJob
        In grid order; every unit in exactly one job; at most ``ceil(total / cpu_seconds)``
        jobs besides the units that run alone; a job of several units is estimated at most
        ``2 * cpu_seconds`` (its share plus half of each end unit).
    """
    units = [JobUnit(p, c, tuple(seeds)) for p in points for c, seeds in enumerate(chunks)]
    if cpu_seconds <= 0:
        return [SweepJob(f"{u.name}+0", (u,)) for u in units]
    if not units:
        return []
    per_network = {n: estimated_cpu_seconds(n, config) for n in {u.point.n_units for u in units}}
    costs = [len(u.seeds) * per_network[u.point.n_units] for u in units]
    total = sum(costs)
    n_jobs = max(1, math.ceil(total / cpu_seconds))  # shares of at most cpu_seconds
    groups: list[list[JobUnit]] = []
    last, done, last_alone = None, 0.0, False
    for unit, cost in zip(units, costs):
        index = min(n_jobs - 1, int((done + cost / 2) * n_jobs / total))
        alone = cost > cpu_seconds
        if index != last or alone or last_alone:
            groups.append([])
        groups[-1].append(unit)
        last, done, last_alone = index, done + cost, alone
    return [SweepJob(f"{g[0].name}+{len(g) - 1}", tuple(g)) for g in groups]


def _number(v):
    """Numbers as floats, so that `g: 2` and `g: 2.0` name the same networks."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def network_seed(config_seed: int, point: SweepPoint, seed_index: int) -> int:
    """Integer seed (63 bits) of network ``seed_index`` of ``point``.

    Keyed by the config seed, what determines W (ensemble, N, the ensemble's parameters with
    their defaults filled in, or the weight file and step) and the index. The activation and
    the theta mode/parameters are left out, so sweeps over them are paired: the same W (and the
    same random draws for theta) under each setting.
    """
    values = point.values
    ensemble = values["ensemble"]
    if ensemble == "file":
        key = {"ensemble": "file", "path": values["path"], "step": values.get("step", 0)}
    else:
        params = {**ensemble_parameters(ensemble), **{k: v for k, v in values.items() if k in ensemble_parameters(ensemble)}}
        key = {"ensemble": ensemble, "N": int(values["N"]), **{k: _number(v) for k, v in params.items()}}
    entropy = [int(config_seed) & 0xFFFFFFFF, int(config_seed) >> 32 & 0xFFFFFFFF]
    entropy += stable_hash_words(_canonical(key), 8) + [int(seed_index)]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def build_networks(
    point: SweepPoint, seed_indices: Sequence[int], config_seed: int, base_dir: str | Path = "."
) -> tuple[NetworkBatch, list[int]]:
    """Draw (or read) the networks ``seed_indices`` of ``point``.

    Returns
    -------
    batch : NetworkBatch
        B = len(seed_indices) networks.
    seeds : list of int
        Their network seeds (every later random draw is keyed by them).
    """
    values = dict(point.values)
    ensemble, mode = values.pop("ensemble"), values.pop("theta_mode")
    values.pop("activation"), values.pop("N")
    theta_keys = theta_parameters(mode)
    theta_params = {k: v for k, v in values.items() if k in theta_keys}
    seeds = [network_seed(config_seed, point, k) for k in seed_indices]
    Ws, thetas = [], []
    if ensemble == "file":
        W_all, theta_all = load_weight_file(Path(base_dir, values["path"]))
        step = values.get("step", 0)
    for seed in seeds:
        rng = stage_rng(seed, "network")
        if ensemble == "file":
            W = W_all[step]
            # the file's theta only with theta_mode 'file' (the dataset's theta_mode says which)
            theta = theta_all[step] if mode == "file" else draw_theta(mode, W, rng, **theta_params)
        else:
            ens_keys = ensemble_parameters(ensemble)
            W = draw_weights(ensemble, point.n_units, rng, **{k: v for k, v in values.items() if k in ens_keys})
            theta = draw_theta(mode, W, rng, **theta_params)
        Ws.append(W)
        thetas.append(theta)
    return NetworkBatch(np.stack(Ws), np.stack(thetas), point.values["activation"]), seeds


def networks_dataset(batch: NetworkBatch, seeds: Sequence[int]) -> xr.Dataset:
    """Weights, inputs, seeds and the spectrum and singular values of W.

    Returns
    -------
    Dataset with dims (network, unit, presynaptic_unit, mode)
    """
    W = np.asarray(batch.W)
    eig = sort_eigenvalues(np.linalg.eigvals(W))
    sv = np.linalg.svd(W, compute_uv=False)
    return xr.Dataset(
        {
            "W": (("network", "unit", "presynaptic_unit"), W,
                  {"long_name": "weight from presynaptic unit j to unit i", "units": "1"}),
            "theta": (("network", "unit"), np.asarray(batch.theta),
                      {"long_name": "external input theta", "units": "state"}),
            "network_seed": (("network",), np.asarray(seeds, dtype=np.int64),
                             {"long_name": "seed of the network's random streams", "units": "1"}),
            "w_eigenvalues": (("network", "mode"), eig,
                              {"long_name": "eigenvalues of W, by real part then imaginary part (descending)",
                               "units": "1"}),
            "w_singular_values": (("network", "mode"), sv,
                                  {"long_name": "singular values of W (descending)", "units": "1"}),
        }
    )


def batch_from_dataset(ds: xr.Dataset, activation: str) -> tuple[NetworkBatch, list[int]]:
    """Rebuild the NetworkBatch and seeds from a :func:`networks_dataset`."""
    return NetworkBatch(ds["W"].values, ds["theta"].values, activation), [int(s) for s in ds["network_seed"].values]


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config in canonical JSON (key order and YAML layout do not matter)."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 over the library's source files (paths and contents).

    The version number does not change with every edit; this does. The workflow passes it as
    a rule parameter so that a change in the library reruns the analyses, and stores it in
    the dataset.
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance_attrs(config: Mapping[str, Any], sweep: str) -> dict[str, str]:
    """Global attributes: koopnet version and source hash, the config as YAML, its hash, the sweep name."""
    from . import __version__

    return {
        "title": f"koopnet sweep {sweep!r}",
        "sweep": sweep,
        "koopnet_version": __version__,
        "koopnet_source_sha256": source_hash(),
        "config": yaml.safe_dump(_plain(config), sort_keys=True),
        "config_hash": config_hash(config),
        "Conventions": "CF-1.10",
    }


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --- collection ---------------------------------------------------------------------------


def _pad_to(ds: xr.Dataset, sizes: Mapping[str, int]) -> xr.Dataset:
    """Pad inner dimensions at their end to ``sizes`` with the documented fill values."""
    out, padded = {}, False
    for name in ds.data_vars:
        var = ds.variables[name]  # (not ds[name]: building a DataArray per variable is slow)
        pad = {d: (0, sizes[d] - var.sizes[d]) for d in var.dims if d in sizes and sizes[d] > var.sizes[d]}
        if pad:
            fill = {"i": FILL_INT, "u": FILL_INT, "b": False, "c": complex(np.nan, np.nan)}.get(var.dtype.kind, np.nan)
            data = np.pad(var.values, [pad.get(d, (0, 0)) for d in var.dims], constant_values=fill)
            var = xr.Variable(var.dims, data, var.attrs)
            padded = True
        out[name] = var
    return xr.Dataset(out, coords=ds.coords, attrs=ds.attrs) if padded else ds


def collect(
    parts: Iterable[tuple[SweepPoint, xr.Dataset]],
    swept: Sequence[str],
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Combine per-job datasets (dim ``network`` plus inner dims) into one sweep dataset.

    Parameters
    ----------
    parts : iterable of (SweepPoint, Dataset)
        Each dataset has a ``seed`` coordinate along ``network`` (renamed here to dim ``seed``).
    swept : sequence of str
        Point keys that become dimensions (the config's list-valued keys, plus ``step``);
        the other point values become scalar coordinates.
    attrs : mapping, optional
        Global attributes (provenance).

    Returns
    -------
    Dataset with dims (*swept, seed, inner dims...): numeric swept labels ascending, text labels
    (ensemble, activation, ...) in the order the parts first show them (the config's order);
    ragged inner dims padded with NaN (float/complex) or -1 (integer flags).
    """
    parts = list(parts)
    sizes: dict[str, int] = {}
    for _, ds in parts:
        for d, n in ds.sizes.items():
            if d != "network":
                sizes[d] = max(sizes.get(d, 0), n)
    pieces = []
    for point, ds in parts:
        ds = _pad_to(ds, sizes).swap_dims({"network": "seed"})
        ds = ds.expand_dims({k: [point.values[k]] for k in swept})
        pieces.append(ds)
    combined = xr.combine_by_coords(
        pieces, compat="no_conflicts", data_vars="all", coords="different", join="outer",
        combine_attrs="drop_conflicts",
    )
    # combine_by_coords sorts labels: right for numbers (axes of figures), but categories keep the
    # config's order (parts arrive in grid order), so ds.isel(ensemble=1) is the second one listed
    combined = combined.reindex({
        k: list(dict.fromkeys(p.values[k] for p, _ in parts))
        for k in swept
        if combined[k].dtype.kind in "OUS"
    })
    first = parts[0][0].values
    scalars = {k: v for k, v in first.items() if k not in swept}
    for k in list(scalars):  # a value that differs between points (N of weight files): one per point
        if len({_canonical(p.values.get(k)) for p, _ in parts}) > 1:
            scalars[k] = _per_point(combined, parts, swept, k)
    combined = combined.assign_coords({k: v for k, v in scalars.items()})
    for k in list(swept) + list(scalars):
        combined[k].attrs.setdefault("long_name", _COORD_NAMES.get(k, f"sweep parameter {k}"))
        combined[k].attrs.setdefault("units", "1")
    combined["seed"].attrs.update(long_name="network index within the grid point", units="1")
    combined = combined.transpose(*swept, "seed", ...)
    combined.attrs = dict(attrs or {})
    if "network" in combined.dims:
        raise AssertionError("collect: leftover 'network' dimension")
    return combined


def _per_point(combined: xr.Dataset, parts, swept: Sequence[str], key: str) -> xr.DataArray:
    """Coordinate over the swept dims holding each point's value of ``key`` (-1 where no point is)."""
    shape = [combined.sizes[d] for d in swept]
    out = np.full(shape, FILL_INT, dtype=np.int64)
    index = {d: {v: i for i, v in enumerate(combined[d].values.tolist())} for d in swept}
    for point, _ in parts:
        out[tuple(index[d][point.values[d]] for d in swept)] = point.values[key]
    return xr.DataArray(out, dims=tuple(swept))


_COORD_NAMES = {
    "ensemble": "weight ensemble",
    "activation": "activation function sigma",
    "theta_mode": "input (theta) mode",
    "N": "number of units",
    "g": "gain",
    "step": "checkpoint index in the weight file",
    "path": "weight file",
}
