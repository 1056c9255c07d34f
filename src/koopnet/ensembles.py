"""Random weight ensembles and input (theta) modes.

Every ensemble is a function ``ensemble(n_units, rng, **params) -> W`` registered in
:data:`ENSEMBLES`; its keyword parameters (with defaults) are the sweepable ensemble
parameters of the workflow config. Every theta mode is registered in :data:`THETA_MODES`
as ``mode(W, rng, **params) -> theta``. User matrices come from :func:`load_weight_file`.

Conventions: ``W[i, j]`` is the weight from unit j to unit i; "gain" g scales the bulk
spectrum so that g = 1 is the edge of the circular law (dense Gaussian entries of variance
g^2 / N have eigenvalues filling the disc of radius g).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "ENSEMBLES",
    "FEEDFORWARD_SPLITS",
    "THETA_MODES",
    "Parameter",
    "PARAMETERS",
    "THETA_PARAMETERS",
    "check_parameter",
    "WeightFileError",
    "draw_weights",
    "draw_theta",
    "ensemble_parameters",
    "feedforward_split",
    "perturbed_feedforward_split",
    "theta_parameters",
    "load_weight_file",
    "gaussian",
    "sparse",
    "dale",
    "lowrank",
    "symmetric",
    "hebbian",
    "feedforward",
    "perturbed_feedforward",
    "orthogonal",
]


def gaussian(n_units: int, rng: np.random.Generator, g: float = 1.0, mu: float = 0.0) -> np.ndarray:
    """Dense Gaussian weights, entries N(mu / N, g^2 / N).

    The bulk of the spectrum fills the disc of radius g (circular law); mu adds an outlier
    eigenvalue near mu along the uniform mode.
    """
    return mu / n_units + g / np.sqrt(n_units) * rng.standard_normal((n_units, n_units))


def sparse(n_units: int, rng: np.random.Generator, g: float = 1.0, p: float = 0.1) -> np.ndarray:
    """Erdos-Renyi weights: each link present with probability p, nonzero weights N(0, g^2 / (N p)).

    The entry variance is g^2 / N, so the spectral radius is ~g as for :func:`gaussian`.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"sparse: density p must be in (0, 1], got {p}")
    mask = rng.random((n_units, n_units)) < p
    weights = g / np.sqrt(n_units * p) * rng.standard_normal((n_units, n_units))
    return np.where(mask, weights, 0.0)


def dale(
    n_units: int,
    rng: np.random.Generator,
    g: float = 1.0,
    f_exc: float = 0.8,
    balanced: bool = True,
) -> np.ndarray:
    """Dale's law: each presynaptic unit (column) is excitatory (+) or inhibitory (-).

    The first ``round(f_exc N)`` columns are excitatory. Magnitudes are |N(0, 1)| scaled so
    that excitatory entries have variance g^2 / N; when ``balanced`` the inhibitory magnitudes
    are scaled by f_exc / (1 - f_exc) so that the expected input to every unit is zero.
    """
    if not 0.0 <= f_exc <= 1.0:
        raise ValueError(f"dale: f_exc must be in [0, 1], got {f_exc}")
    n_exc = int(round(f_exc * n_units))
    scale = g / np.sqrt(n_units * (1.0 - 2.0 / np.pi))  # |Z| has variance 1 - 2/pi
    magnitude = scale * np.abs(rng.standard_normal((n_units, n_units)))
    sign = np.where(np.arange(n_units) < n_exc, 1.0, -1.0)
    if balanced and 0 < n_exc < n_units:
        ratio = n_exc / (n_units - n_exc)
        sign = np.where(sign > 0, 1.0, -ratio)
    return magnitude * sign[None, :]


def lowrank(
    n_units: int,
    rng: np.random.Generator,
    rank: int = 1,
    strength: float = 2.0,
    g: float = 0.0,
) -> np.ndarray:
    """Rank-r structure plus Gaussian noise: W = U diag(strength) V^T + g Z / sqrt(N).

    U and V have orthonormal columns drawn from the Haar measure, so the structured part has
    exactly ``rank`` nonzero singular values, all equal to ``strength``.
    """
    if not 0 <= rank <= n_units:
        raise ValueError(f"lowrank: rank must be in [0, N={n_units}], got {rank}")
    u = _haar_columns(n_units, rank, rng)
    v = _haar_columns(n_units, rank, rng)
    structure = strength * u @ v.T
    return structure + g / np.sqrt(n_units) * rng.standard_normal((n_units, n_units))


def symmetric(n_units: int, rng: np.random.Generator, g: float = 1.0) -> np.ndarray:
    """GOE-like symmetric weights: off-diagonal variance g^2 / N (semicircle on [-2g, 2g])."""
    a = rng.standard_normal((n_units, n_units))
    return g / np.sqrt(2.0 * n_units) * (a + a.T)


def hebbian(n_units: int, rng: np.random.Generator, patterns: int = 1, g: float = 1.0) -> np.ndarray:
    """Hopfield/Hebbian weights W = (g / N) sum_mu xi_mu xi_mu^T with zero diagonal.

    ``patterns`` random +-1 patterns xi_mu are stored; their number is a learning axis.
    """
    xi = rng.choice(np.array([-1.0, 1.0]), size=(patterns, n_units))
    w = g / n_units * xi.T @ xi
    np.fill_diagonal(w, 0.0)
    return w


def feedforward(
    n_units: int, rng: np.random.Generator, g: float = 1.0, layers: int = 0
) -> np.ndarray:
    """Strictly lower-triangular weights, entries N(0, g^2 / N) below the diagonal.

    With ``layers`` = L >= 2 the units are split into L consecutive groups of (nearly) equal
    size and only connections from layer l to layer l + 1 are kept. ``layers`` = 0 keeps
    every link j -> i with j < i.
    """
    w = g / np.sqrt(n_units) * rng.standard_normal((n_units, n_units))
    if layers and layers >= 2:
        layer = np.minimum(np.arange(n_units) * layers // n_units, layers - 1)
        mask = layer[:, None] == layer[None, :] + 1
    else:
        mask = np.tri(n_units, k=-1, dtype=bool)
    return np.where(mask, w, 0.0)


def perturbed_feedforward(
    n_units: int, rng: np.random.Generator, g: float = 1.0, layers: int = 0, eps: float = 0.1
) -> np.ndarray:
    """A :func:`feedforward` W_ff (gain g, ``layers``) plus eps times a random recurrent part R_hat.

    R_hat has Gaussian entries on and above the diagonal (the links that close cycles in the
    feedforward order) scaled to unit spectral norm, so that W = W_ff + eps R_hat gives back
    W_ff = tril(W, -1) and eps = ||triu(W)||_2 exactly (the perturbative family of the spectra stage).
    """
    if eps < 0:
        raise ValueError(f"perturbed_feedforward: eps must be >= 0, got {eps}")
    w_ff = feedforward(n_units, rng, g=g, layers=layers)
    r = np.triu(rng.standard_normal((n_units, n_units)))
    return w_ff + eps * r / np.linalg.norm(r, 2)


def perturbed_feedforward_split(
    W: np.ndarray, g: float = 1.0, layers: int = 0, eps: float = 0.1
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The decomposition W = W_ff + eps R_hat a :func:`perturbed_feedforward` network was built from.

    W_ff = tril(W, -1) exactly (R_hat lives on and above the diagonal), eps is the declared
    parameter (exactly), R_hat = triu(W) / eps (to one rounding of the draw's eps R_hat).

    Parameters
    ----------
    W : array, shape (N, N)
    g, layers, eps
        The ensemble's parameters (those W was drawn with).

    Returns
    -------
    (W_ff, R_hat, eps), or None when W is not such a draw: eps = 0 (no recurrent part), or
    ||triu(W)||_2 differs from eps beyond round-off (e.g. a trained checkpoint of the draw).
    """
    eps = float(eps)
    upper = np.triu(W)
    if eps <= 0.0 or not np.isclose(np.linalg.norm(upper, 2), eps, rtol=1e-12, atol=0.0):
        return None
    return np.tril(W, -1), upper / eps, eps


#: ensemble -> function (W, **params) -> (W_ff, R_hat, eps) or None: the split W = W_ff + eps R_hat
#: (W_ff acyclic in the natural unit order) an ensemble declares for its draws (docs/perturbative.md)
FEEDFORWARD_SPLITS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, float] | None]] = {
    "perturbed_feedforward": perturbed_feedforward_split,
}


def feedforward_split(W: np.ndarray, point: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The declared split W = W_ff + eps R_hat of a network drawn at sweep point ``point``.

    Parameters
    ----------
    W : array, shape (N, N)
    point : mapping or None
        The sweep point's values (``ensemble`` and the ensemble's parameters, as in
        ``SweepPoint.values``); None when unknown.

    Returns
    -------
    (W_ff, R_hat, eps), or None when the ensemble declares no split (every ensemble but
    ``perturbed_feedforward``), the point is unknown, or W is not the ensemble's draw.
    """
    if point is None or point.get("ensemble") not in FEEDFORWARD_SPLITS:
        return None
    name = point["ensemble"]
    params = {k: v for k, v in point.items() if k in ensemble_parameters(name)}
    return FEEDFORWARD_SPLITS[name](np.asarray(W, dtype=float), **params)


def orthogonal(n_units: int, rng: np.random.Generator, g: float = 1.0) -> np.ndarray:
    """g times a Haar-random orthogonal matrix (all singular values g, eigenvalues on |z| = g)."""
    return g * _haar_columns(n_units, n_units, rng)


def _haar_columns(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """n x k matrix with orthonormal columns from the Haar measure (QR with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((n, max(k, 1))))
    q = q * np.sign(np.diag(r))[None, :]
    return q[:, :k]


ENSEMBLES: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (gaussian, sparse, dale, lowrank, symmetric, hebbian, feedforward, orthogonal, perturbed_feedforward)
}


def _theta_zero(W, rng):
    return np.zeros(W.shape[0])


def _theta_constant(W, rng, theta_value: float = 0.0):
    return np.full(W.shape[0], float(theta_value))


def _theta_gaussian(W, rng, theta_std: float = 1.0, theta_value: float = 0.0):
    return theta_value + theta_std * rng.standard_normal(W.shape[0])


def _theta_centered(W, rng, theta_value: float = 0.0):
    # theta = -W 1/2 puts the logistic's midpoint at x = 0 (an equilibrium)
    return -0.5 * W.sum(axis=1) + theta_value


def _theta_file(W, rng):
    raise ValueError("theta_mode 'file' takes theta from the weight file (ensemble 'file'), not from a draw")


THETA_MODES: dict[str, Callable[..., np.ndarray]] = {
    "file": _theta_file,
    "zero": _theta_zero,
    "constant": _theta_constant,
    "gaussian": _theta_gaussian,
    "centered": _theta_centered,
}


@dataclass(frozen=True)
class Parameter:
    """Declaration of one sweepable parameter: its type, range, default and meaning.

    Parameters of :data:`PARAMETERS` / :data:`THETA_PARAMETERS` are checked against these
    declarations before any job runs (:func:`check_parameter`), so a bad value is reported
    with its config key rather than as a traceback inside a job.

    Attributes
    ----------
    kind : {"number", "integer", "boolean", "string"}
        ``number``: a finite real (not a boolean); ``integer``: an int (not 2.0, not a boolean).
    default : object
        Default (must equal the keyword default of the function that takes it; tested).
    description : str
    minimum, maximum : float, optional
        Inclusive bounds, or exclusive ones when ``exclusive_minimum`` / ``exclusive_maximum``.
    at_most_units : bool
        The value may not exceed the number of units N (e.g. a rank).
    """

    kind: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    at_most_units: bool = False

    def problem(self, value: Any, n_units: int | None = None) -> str | None:
        """What is wrong with ``value`` (a sentence), or None when it is acceptable."""
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"must be {'an integer' if self.kind == 'integer' else 'a number'}, got {value!r}"
            if self.kind == "integer" and not isinstance(value, int):
                return f"must be an integer, got {value!r}"
            if not math.isfinite(value):
                return f"must be finite, got {value!r}"
            lo, hi = self.minimum, self.maximum
            if lo is not None and (value <= lo if self.exclusive_minimum else value < lo):
                return f"must be {'>' if self.exclusive_minimum else '>='} {lo}, got {value!r}"
            if hi is not None and (value >= hi if self.exclusive_maximum else value > hi):
                return f"must be {'<' if self.exclusive_maximum else '<='} {hi}, got {value!r}"
            if self.at_most_units and n_units is not None and value > n_units:
                return f"must be <= N = {n_units}, got {value!r}"
            return None
        expected = {"boolean": bool, "string": str}[self.kind]
        if not isinstance(value, expected):
            return f"must be a {self.kind}, got {value!r}"
        return None


_GAIN = Parameter("number", 1.0, "gain: scales the random part so that its spectral radius is about g")

#: Every ensemble's sweepable parameters (a new ensemble adds one entry; its function's keyword
#: defaults must agree, see tests/test_ensembles.py).
PARAMETERS: dict[str, dict[str, Parameter]] = {
    "gaussian": {"g": _GAIN, "mu": Parameter("number", 0.0, "mean coupling: outlier eigenvalue near mu")},
    "sparse": {
        "g": _GAIN,
        "p": Parameter("number", 0.1, "link density", minimum=0.0, exclusive_minimum=True, maximum=1.0),
    },
    "dale": {
        "g": _GAIN,
        "f_exc": Parameter("number", 0.8, "fraction of excitatory units", minimum=0.0, maximum=1.0),
        "balanced": Parameter("boolean", True, "scale inhibition so that the mean input is zero"),
    },
    "lowrank": {
        "rank": Parameter("integer", 1, "rank of the structured part", minimum=0, at_most_units=True),
        "strength": Parameter("number", 2.0, "singular value of the structured part"),
        "g": Parameter("number", 0.0, "gain of the Gaussian noise added to the structure"),
    },
    "symmetric": {"g": _GAIN},
    "hebbian": {
        "patterns": Parameter("integer", 1, "number of stored +-1 patterns", minimum=1),
        "g": _GAIN,
    },
    "feedforward": {
        "g": _GAIN,
        "layers": Parameter("integer", 0, "number of layers (0: every link j -> i with j < i)", minimum=0),
    },
    "orthogonal": {"g": _GAIN},
    "perturbed_feedforward": {
        "g": _GAIN,
        "layers": Parameter("integer", 0, "layers of the feedforward part (0: every link j -> i with j < i; N: a "
                            "chain)", minimum=0),
        "eps": Parameter("number", 0.1, "strength of the recurrent part: ||W - W_ff||_2 (unit-norm random "
                         "links on and above the diagonal)", minimum=0.0),
    },
    "file": {"path": Parameter("string", None, "weight file (.npy, .npz, .nc), relative to the working directory")},
}

_THETA_VALUE = Parameter("number", 0.0, "constant added to every unit's input (state units)")
#: Every theta mode's parameters (same rules as :data:`PARAMETERS`).
THETA_PARAMETERS: dict[str, dict[str, Parameter]] = {
    "file": {},
    "zero": {},
    "constant": {"theta_value": _THETA_VALUE},
    "gaussian": {
        "theta_std": Parameter("number", 1.0, "standard deviation of the Gaussian inputs", minimum=0.0),
        "theta_value": _THETA_VALUE,
    },
    "centered": {"theta_value": _THETA_VALUE},
}


def check_parameter(where: str, key: str, value: Any, ensemble: str, theta_mode: str,
                    n_units: int | None = None) -> None:
    """Raise ValueError (message starting with ``where``) unless ``value`` suits ``key``.

    ``key`` is looked up in the ensemble's declarations first, then in the theta mode's; a
    key that neither takes passes (the caller decides whether that is an error).
    """
    spec = PARAMETERS.get(ensemble, {}).get(key) or THETA_PARAMETERS.get(theta_mode, {}).get(key)
    if spec is None:
        return
    problem = spec.problem(value, n_units)
    if problem:
        raise ValueError(f"{where}: {problem} ({spec.description})")


def _parameters(fn: Callable, skip: int) -> dict[str, object]:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return {p.name: p.default for p in params}


def ensemble_parameters(name: str) -> dict[str, object]:
    """Sweepable parameters of ensemble ``name`` with their defaults (from :data:`PARAMETERS`)."""
    if name == "file":
        return {}
    return {k: p.default for k, p in PARAMETERS[name].items()}


def theta_parameters(mode: str) -> dict[str, object]:
    """Parameters of theta mode ``mode`` with their defaults (from :data:`THETA_PARAMETERS`)."""
    return {k: p.default for k, p in THETA_PARAMETERS[mode].items()}


def draw_weights(name: str, n_units: int, rng: np.random.Generator, **params) -> np.ndarray:
    """Draw one (N, N) weight matrix from ensemble ``name`` (see :data:`ENSEMBLES`)."""
    try:
        fn = ENSEMBLES[name]
    except KeyError:
        raise ValueError(f"unknown ensemble {name!r}; expected one of {sorted(ENSEMBLES)}") from None
    return fn(int(n_units), rng, **params)


def draw_theta(mode: str, W: np.ndarray, rng: np.random.Generator, **params) -> np.ndarray:
    """Input vector theta (N,) for weights W under theta mode ``mode``."""
    try:
        fn = THETA_MODES[mode]
    except KeyError:
        raise ValueError(f"unknown theta mode {mode!r}; expected one of {sorted(THETA_MODES)}") from None
    return fn(W, rng, **params)


class WeightFileError(ValueError):
    """A user weight file is missing, unreadable or malformed (the message names file and problem)."""


def load_weight_file(path: str | Path, keep_shape: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Read user weights from ``.npy``, ``.npz`` or ``.nc``.

    A ``.npy`` holds W; a ``.npz`` or ``.nc`` holds ``W`` and optionally ``theta``.
    W has shape (N, N) or (steps, N, N) (e.g. training checkpoints); theta (N,) or (steps, N).

    Parameters
    ----------
    path : path
    keep_shape : bool
        Return W (and theta) with the file's number of dimensions: (N, N) and (N,) for a
        single matrix, instead of a leading ``steps`` axis of length 1.

    Returns
    -------
    W : array, shape (steps, N, N), or (N, N) with ``keep_shape`` for a single matrix
    theta : array, shape (steps, N) (or (N,) likewise), or None when the file has none

    Raises
    ------
    WeightFileError
        Naming the file and the problem (missing, unreadable, missing ``W``, wrong shape,
        non-square, non-finite values, theta of the wrong shape).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {path}: no such file")
    theta = None
    try:
        if path.suffix == ".npy":
            W = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "W" not in data:
                    raise WeightFileError(
                        f"weight file {path}: no array named 'W' (found {sorted(data.files)})"
                    )
                W = data["W"]
                theta = data["theta"] if "theta" in data else None
        elif path.suffix == ".nc":
            import xarray as xr

            with xr.open_dataset(path) as data:
                if "W" not in data:
                    raise WeightFileError(
                        f"weight file {path}: no variable named 'W' (found {sorted(data.data_vars)})"
                    )
                W = data["W"].values
                theta = data["theta"].values if "theta" in data else None
        else:
            raise WeightFileError(f"weight file {path}: unsupported suffix {path.suffix!r} (.npy, .npz, .nc)")
    except WeightFileError:
        raise
    except Exception as err:  # unreadable or corrupt files
        raise WeightFileError(f"weight file {path}: cannot be read ({err})") from err

    W = np.asarray(W)
    if not np.issubdtype(W.dtype, np.number) or np.iscomplexobj(W):
        raise WeightFileError(f"weight file {path}: W must be real numbers, got dtype {W.dtype}")
    shape = W.shape
    single = W.ndim == 2
    if W.ndim == 2:
        W = W[None]
    if W.ndim != 3 or W.shape[1] != W.shape[2] or W.shape[1] < 1:
        raise WeightFileError(
            f"weight file {path}: W must have shape (N, N) or (steps, N, N) with square N x N "
            f"matrices, got {shape}"
        )
    if not np.all(np.isfinite(W)):
        raise WeightFileError(f"weight file {path}: W contains NaN or inf")
    if theta is not None:
        theta = np.asarray(theta, dtype=float)
        n_steps, n_units = W.shape[0], W.shape[1]
        theta_shape = theta.shape  # reported as given, before broadcasting
        if theta.ndim == 1 and theta.shape[0] == n_units:
            theta = np.broadcast_to(theta, (n_steps, theta.shape[0]))
        if theta.shape != (n_steps, n_units):
            raise WeightFileError(
                f"weight file {path}: theta must have shape ({n_units},) or ({n_steps}, {n_units}), "
                f"got {theta_shape}"
            )
        if not np.all(np.isfinite(theta)):
            raise WeightFileError(f"weight file {path}: theta contains NaN or inf")
    W = W.astype(float)
    if keep_shape and single:
        return W[0], (None if theta is None else theta[0])
    return W, theta
