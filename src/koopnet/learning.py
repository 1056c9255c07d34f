"""Training rate networks on tasks by backpropagation through time (JAX + optax, float64).

The trained model is the network of every other stage with task inputs entering through the
external input (SCIENCE.md section 7):

    dx/dt = -x + W sigma(x) + theta + B u(t),        z(t) = C sigma(x(t)).

The readout is taken from the rates sigma(x), not from x: rates are what downstream neurons
(and W itself) see, and a bounded rate makes the readout's scale that of C alone.

Integration: forward Euler with step ``dt`` from x(0) = 0, u held constant over each step;
z is read after each step. Euler has exactly the equilibria of the flow (x + dt f(x) = x iff
f(x) = 0), so the memories a trained network holds are equilibria the ``equilibria`` stage
finds in the continuous-time autonomous network (u = 0).

Training: Adam (or plain gradient descent, ``optimizer: sgd``) with gradient clipping by global
norm (optax), full BPTT through the Euler
scan, jit-compiled, float64. Every random draw (initial B and C, every training batch, the
evaluation batch) comes from numpy generators keyed by the network seed
(``stage_rng(seed, "training")``, ``stage_rng(seed, "training_eval")``), and XLA runs on one
thread, so a network's checkpoints are the same bytes whatever the job's batch or core count.

This is the only koopnet module that imports JAX.
"""

from __future__ import annotations

from ._jax import configure_xla

configure_xla()  # one XLA thread: reductions in a fixed order (same bytes on any machine load)

from dataclasses import dataclass, field  # noqa: E402
from enum import IntEnum  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any, Mapping, Sequence  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import xarray as xr  # noqa: E402

from ._flags import flag_attrs  # noqa: E402
from ._random import stage_rng  # noqa: E402
from .activations import ACTIVATIONS, get_activation  # noqa: E402
from .network import NetworkBatch  # noqa: E402
from .tasks import TASKS, TaskBatch, fixed_point_patterns, make_batch, task_parameters, task_performance  # noqa: E402

__all__ = [
    "TrainStatus",
    "TrainingSettings",
    "TrainingRun",
    "train_network",
    "training_dataset",
    "rollout",
    "task_loss",
    "fixed_point_loss",
    "fixed_point_performance",
]


class TrainStatus(IntEnum):
    """Status of a checkpoint.

    ok: task_performance >= target_performance; not_converged: below it; diverged: the loss or
    the parameters became NaN/inf before this checkpoint, training stopped and the checkpoint
    holds the last finite parameters.
    """

    ok = 0
    not_converged = 1
    diverged = 2


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of the ``train`` rule; the fields are the keys of ``sweeps.<name>.training``."""

    task: str = "flipflop"
    """Task name, a key of :data:`koopnet.tasks.TASKS`."""
    task_params: Mapping[str, Any] = field(default_factory=dict)
    """Keyword parameters of the task function (defaults from its signature)."""
    checkpoints: Sequence[int] = (0, 10, 100, 1000)
    """Training steps (optimizer updates) saved as checkpoints; strictly increasing, starting at 0."""
    learning_rate: float = 1e-2
    """Learning rate of the optimizer."""
    optimizer: str = "adam"
    """``adam`` (optax.adam) or ``sgd`` (plain gradient descent, optax.sgd: its updates stay in the span of the gradients, which is what the low-rank theory of delta_W assumes)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm before the Adam update."""
    batch_size: int = 32
    """Trials per training batch (a fresh batch every step)."""
    eval_trials: int = 128
    """Trials of the fixed evaluation batch (loss and performance of every checkpoint)."""
    dt: float = 0.2
    """Euler step (time units, tau = 1)."""
    train_input: bool = True
    """Train B (else it keeps its initial value)."""
    train_readout: bool = True
    """Train C."""
    train_theta: bool = True
    """Train theta."""
    input_scale: float = 1.0
    """Initial B has entries N(0, input_scale^2)."""
    readout_scale: float = 1.0
    """Initial C has entries N(0, readout_scale^2 / N)."""
    target_performance: float = 0.95
    """A checkpoint is ``ok`` when its task performance reaches this, else ``not_converged``."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"training.task: unknown task {self.task!r}; expected one of {sorted(TASKS)}")
        unknown = sorted(set(self.task_params) - set(task_parameters(self.task)))
        if unknown:
            raise ValueError(f"training.task_params: unknown key(s) {unknown} for task {self.task!r}; "
                             f"expected some of {sorted(task_parameters(self.task))}")
        steps = list(self.checkpoints)
        if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"training.checkpoints: must be strictly increasing and start at 0, got {steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"training.learning_rate: must be > 0, got {self.learning_rate}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"training.optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.dt > 0:
            raise ValueError(f"training.dt: must be > 0, got {self.dt}")

    @property
    def params(self) -> dict[str, Any]:
        """Task parameters with defaults filled in."""
        return {**task_parameters(self.task), **dict(self.task_params)}


@dataclass(frozen=True)
class TrainingRun:
    """Checkpoints of one trained network (S checkpoints).

    Attributes
    ----------
    steps : int array (S,)
        Training steps of the checkpoints.
    W : array (S, N, N); theta : array (S, N); B : array (S, N, M); C : array (S, K, N)
    loss : array (S,)
        Task loss on the evaluation batch (NaN only when the initial network itself overflows
        on it: status diverged at step 0).
    performance : array (S,)
        Task performance on the evaluation batch (:func:`koopnet.tasks.task_performance`).
    status : int8 array (S,)
        :class:`TrainStatus`.
    steps_done : int array (S,)
        Optimizer updates behind the stored parameters (< steps after a divergence).
    """

    steps: np.ndarray
    W: np.ndarray
    theta: np.ndarray
    B: np.ndarray
    C: np.ndarray
    loss: np.ndarray
    performance: np.ndarray
    status: np.ndarray
    steps_done: np.ndarray


# ----------------------------------------------------------------------------- model


def _sigma(name: str):
    act = get_activation(name)
    if name == "logistic":
        return jax.nn.sigmoid
    if name == "tanh":
        return jnp.tanh
    if act.polynomial is not None:
        coeffs = tuple(float(c) for c in act.polynomial)
        return lambda x: sum(c * x**k for k, c in enumerate(coeffs) if c != 0.0)
    raise ValueError(f"no JAX form for activation {name!r}")


def rollout(params: Mapping[str, jnp.ndarray], u: jnp.ndarray, dt: float, activation: str) -> jnp.ndarray:
    """Readout z of the Euler-integrated network on inputs u.

    Parameters
    ----------
    params : mapping with W (N, N), theta (N,), B (N, M), C (K, N)
    u : array (n_trials, T, M)
    dt : float
    activation : str

    Returns
    -------
    z : array (n_trials, T, K); z[:, k] = C sigma(x(t_{k+1})).
    """
    sigma = _sigma(activation)
    W, theta, B, C = params["W"], params["theta"], params["B"], params["C"]
    x0 = jnp.zeros((u.shape[0], W.shape[0]), dtype=W.dtype)

    def step(x, u_k):
        r = sigma(x)
        x = x + dt * (-x + r @ W.T + theta + u_k @ B.T)
        return x, sigma(x) @ C.T

    _, z = jax.lax.scan(step, x0, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(z, 0, 1)


def task_loss(params, u, target, mask, dt: float, activation: str):
    """Masked mean squared readout error sum mask (z - target)^2 / sum mask."""
    z = rollout(params, u, dt, activation)
    return jnp.sum(mask * (z - target) ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


def _fixed_point_terms(params, xi, activation: str):
    sigma = _sigma(activation)
    W, theta = params["W"], params["theta"]
    f = -xi + sigma(xi) @ W.T + theta
    dsig = jax.vmap(jax.grad(lambda s: sigma(s)))(xi.ravel()).reshape(xi.shape)
    J = -jnp.eye(W.shape[0]) + W[None, :, :] * dsig[:, None, :]
    return f, J


def fixed_point_loss(params, xi, activation: str, stability_weight: float, stability_margin: float):
    """mean_p |f(xi_p)|^2 / N + weight mean_p max(0, alpha(J(xi_p)) + margin)^2.

    alpha is the spectral abscissa max Re eig J (differentiated through the eigenvalues).
    """
    f, J = _fixed_point_terms(params, xi, activation)
    # One (N, N) eigenproblem per pattern: jaxlib 0.10 splits a batched LAPACK call over XLA's
    # intra-op pool and blocks a worker meanwhile, which can hang the process (koopnet._jax);
    # a batch of one runs inline on the calling thread.
    alpha = jax.lax.map(lambda Jp: jnp.max(jnp.real(jnp.linalg.eigvals(Jp))), J)
    return jnp.mean(f**2) + stability_weight * jnp.mean(jnp.maximum(alpha + stability_margin, 0.0) ** 2)


def fixed_point_performance(W: np.ndarray, theta: np.ndarray, xi: np.ndarray, activation: str,
                            pattern_tol: float) -> float:
    """Fraction of patterns stored: Newton step |J(xi)^-1 f(xi)|_2 <= pattern_tol and J(xi) stable.

    For a small Newton step the nearest equilibrium is within about that distance (Newton-Kantorovich),
    and it is stable when J(xi) is (by continuity of the spectrum).
    """
    act = get_activation(activation)
    f = -xi + act.sigma(xi) @ W.T + theta
    J = -np.eye(W.shape[0]) + W[None] * act.dsigma(xi)[:, None, :]
    step = np.linalg.solve(J, f[..., None])[..., 0]
    alpha = np.linalg.eigvals(J).real.max(axis=-1)
    return float(np.mean((np.linalg.norm(step, axis=-1) <= pattern_tol) & (alpha < 0)))


# ----------------------------------------------------------------------------- training


@partial(jax.jit, static_argnames=("dt", "activation", "optimizer"))
def _trial_update(trainable, frozen, opt_state, u, target, mask, *, dt, activation, optimizer):
    def loss_fn(tr):
        return task_loss({**frozen, **tr}, u, target, mask, dt, activation)

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss


@partial(jax.jit, static_argnames=("activation", "optimizer", "weight", "margin"))
def _fixed_point_update(trainable, frozen, opt_state, xi, *, activation, optimizer, weight, margin):
    def loss_fn(tr):
        return fixed_point_loss({**frozen, **tr}, xi, activation, weight, margin)

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss


_rollout_jit = jax.jit(rollout, static_argnames=("dt", "activation"))
_fixed_point_loss_jit = jax.jit(fixed_point_loss, static_argnames=("activation", "stability_weight",
                                                                    "stability_margin"))


@dataclass(frozen=True)
class _Optimizer:
    """Hashable wrapper so the optax transform can be a static jit argument (one compile per setting)."""

    learning_rate: float
    max_grad_norm: float
    name: str = "adam"

    @property
    def tx(self):
        step = optax.adam(self.learning_rate) if self.name == "adam" else optax.sgd(self.learning_rate)
        return optax.chain(optax.clip_by_global_norm(self.max_grad_norm), step)

    def init(self, params):
        return self.tx.init(params)

    def update(self, grads, state, params):
        return self.tx.update(grads, state, params)


def train_network(W0: np.ndarray, theta0: np.ndarray, activation: str, settings: TrainingSettings,
                  seed: int) -> TrainingRun:
    """Train one network from (W0, theta0) and return its checkpoints.

    Parameters
    ----------
    W0 : array (N, N); theta0 : array (N,)
        Initial weights and input (from any ensemble and theta mode).
    activation : str
    settings : TrainingSettings
    seed : int
        Network seed: B, C and every batch come from ``stage_rng(seed, "training")``, the
        evaluation batch (and the fixed_points patterns) from ``stage_rng(seed, "training_eval")``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    N = W0.shape[0]
    task, tparams = settings.task, settings.params
    rng = stage_rng(seed, "training")
    eval_rng = stage_rng(seed, "training_eval")
    is_fp = task == "fixed_points"
    if is_fp:
        xi = jnp.asarray(fixed_point_patterns(eval_rng, N, **tparams))
        M = K = 0
    else:
        eval_batch = make_batch(task, eval_rng, settings.eval_trials, settings.dt, **tparams)
        M, K = eval_batch.n_inputs, eval_batch.n_outputs
    params = {
        "W": jnp.asarray(W0, dtype=jnp.float64),
        "theta": jnp.asarray(theta0, dtype=jnp.float64),
        "B": jnp.asarray(settings.input_scale * rng.standard_normal((N, M))),
        "C": jnp.asarray(settings.readout_scale / np.sqrt(N) * rng.standard_normal((K, N))),
    }
    names = ["W"] + [n for n, on in (("B", settings.train_input), ("C", settings.train_readout),
                                     ("theta", settings.train_theta)) if on and not (is_fp and n in ("B", "C"))]
    trainable = {n: params[n] for n in names}
    frozen = {n: v for n, v in params.items() if n not in names}
    optimizer = _Optimizer(float(settings.learning_rate), float(settings.max_grad_norm), settings.optimizer)
    opt_state = optimizer.init(trainable)
    fp_kw = dict(weight=float(tparams["stability_weight"]), margin=float(tparams["stability_margin"])) if is_fp else {}

    def evaluate(p):
        if is_fp:
            loss = float(_fixed_point_loss_jit(p, xi, activation, fp_kw["weight"], fp_kw["margin"]))
            perf = fixed_point_performance(np.asarray(p["W"]), np.asarray(p["theta"]), np.asarray(xi),
                                           activation, float(tparams["pattern_tol"]))
            return loss, perf
        z = np.asarray(_rollout_jit(p, jnp.asarray(eval_batch.u), settings.dt, activation))
        err = eval_batch.mask * (z - eval_batch.target) ** 2
        loss = float(err.sum() / max(eval_batch.mask.sum(), 1.0))
        return loss, task_performance(task, z, eval_batch)

    records = []
    done, diverged = 0, False
    for target_step in settings.checkpoints:
        while not diverged and done < target_step:
            if is_fp:
                new, new_state, loss = _fixed_point_update(trainable, frozen, opt_state, xi, activation=activation,
                                                           optimizer=optimizer, **fp_kw)
            else:
                b = make_batch(task, rng, settings.batch_size, settings.dt, **tparams)
                new, new_state, loss = _trial_update(trainable, frozen, opt_state, jnp.asarray(b.u),
                                                     jnp.asarray(b.target), jnp.asarray(b.mask),
                                                     dt=settings.dt, activation=activation, optimizer=optimizer)
            if not (np.isfinite(float(loss)) and all(bool(jnp.all(jnp.isfinite(v))) for v in new.values())):
                diverged = True  # keep the last finite parameters
                break
            trainable, opt_state = new, new_state
            done += 1
        if diverged and records:  # the last checkpoint whose evaluation was finite is kept
            records.append((*records[-1][:3], int(TrainStatus.diverged), records[-1][4]))
            continue
        p = {**frozen, **trainable}
        loss, perf = evaluate(p)
        if not np.isfinite(loss):
            diverged = True
            if records:
                records.append((*records[-1][:3], int(TrainStatus.diverged), records[-1][4]))
                continue
        if diverged:
            status = TrainStatus.diverged
        else:
            status = TrainStatus.ok if perf >= settings.target_performance else TrainStatus.not_converged
        records.append((p, loss, perf, int(status), done))

    def stack(key):
        return np.stack([np.asarray(r[0][key]) for r in records])

    return TrainingRun(
        steps=np.asarray(settings.checkpoints, dtype=np.int64),
        W=stack("W"), theta=stack("theta"), B=stack("B"), C=stack("C"),
        loss=np.array([r[1] for r in records]),
        performance=np.array([r[2] for r in records]),
        status=np.array([r[3] for r in records], dtype=np.int8),
        steps_done=np.array([r[4] for r in records], dtype=np.int64),
    )


# ----------------------------------------------------------------------------- dataset


def training_dataset(batch: NetworkBatch, seeds: Sequence[int], settings: TrainingSettings,
                     rank_tol: float | None = None, energy_fraction: float = 0.9) -> xr.Dataset:
    """Stage function of the ``train`` rule: train every network of a job.

    Networks are trained one at a time (each its own jit-compiled loop), so a network's result
    does not depend on which others share its job.

    Returns
    -------
    Dataset with dims (network, step, unit, presynaptic_unit, task_input, task_output):
    W, theta, B, C (not for fixed_points), delta_W = W - W(step 0), train_loss, task_performance, train_status,
    train_steps_done and the effective ranks of delta_W (``delta_w_*``, as in
    :func:`koopnet.dimension.weight_dimensions`).
    """
    from .dimension import weight_dimensions

    runs = [train_network(np.asarray(batch.W[i]), np.asarray(batch.theta[i]), batch.activation.name, settings, s)
            for i, s in enumerate(seeds)]
    W = np.stack([r.W for r in runs])
    delta = W - W[:, :1]
    dims = weight_dimensions(delta, rank_tol=rank_tol, energy_fraction=energy_fraction)
    net_step = ("network", "step")

    def v(dims_, data, long_name, units="1", **attrs):
        return xr.Variable(dims_, data, {"long_name": long_name, "units": units, **attrs})

    data = {
        "W": v(net_step + ("unit", "presynaptic_unit"), W, "weight from presynaptic unit j to unit i"),
        "theta": v(net_step + ("unit",), np.stack([r.theta for r in runs]), "external input theta", "state"),
        "B": v(net_step + ("unit", "task_input"), np.stack([r.B for r in runs]),
               "input weights B (task input m to unit i)", "state"),
        "C": v(net_step + ("task_output", "unit"), np.stack([r.C for r in runs]),
               "readout weights C (z = C sigma(x))"),
        "delta_W": v(net_step + ("unit", "presynaptic_unit"), delta, "learned change of W, W(step) - W(step 0)"),
        "train_loss": v(net_step, np.stack([r.loss for r in runs]),
                        "task loss on the fixed evaluation batch"),
        "task_performance": v(net_step, np.stack([r.performance for r in runs]),
                              f"task performance ({settings.task}) on the fixed evaluation batch"),
        "train_status": xr.Variable(net_step, np.stack([r.status for r in runs]),
                                    flag_attrs(TrainStatus, "training status of the checkpoint")),
        "train_steps_done": v(net_step, np.stack([r.steps_done for r in runs]),
                              "optimizer updates behind the checkpoint's parameters"),
        "delta_w_rank": v(net_step, dims.rank.astype(np.int64), "numerical rank of delta_W"),
        "delta_w_erank": v(net_step, dims.erank, "effective rank of delta_W (Roy-Vetterli)"),
        "delta_w_stable_rank": v(net_step, dims.stable_rank, "stable rank of delta_W"),
        "delta_w_nuclear_rank": v(net_step, dims.nuclear_rank, "nuclear rank of delta_W"),
        "delta_w_energy_rank": v(net_step, dims.energy_rank.astype(np.int64),
                                 f"smallest rank capturing {energy_fraction} of sum s^2 of delta_W"),
        "delta_w_elbow_rank": v(net_step, dims.elbow_rank.astype(np.int64), "elbow rank of delta_W"),
        "delta_w_threshold_rank": v(net_step, dims.threshold_rank.astype(np.int64),
                                    "Gavish-Donoho threshold rank of delta_W"),
    }
    if data["B"].shape[-1] == 0:  # fixed_points: no inputs, no readout (zero-length dims are not written)
        del data["B"], data["C"]
    return xr.Dataset(data, coords={"step": ("step", np.asarray(settings.checkpoints, dtype=np.int64))},
                      attrs={"task": settings.task})
