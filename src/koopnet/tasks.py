"""Neuroscience tasks for training rate networks (SCIENCE.md section 7); numpy only.

A task is a function ``task(rng, n_trials, dt, **params) -> TaskBatch`` registered in
:data:`TASKS`; its keyword parameters (with defaults) are the task parameters of the workflow
config (``sweeps.<name>.training.task_params``), listed by :func:`task_parameters`. Trials are
sampled on the time grid t_k = k dt, k = 0 .. T - 1 (time in units of the membrane time
constant tau = 1). Every draw comes from the generator passed in, so a batch is a function of
the generator's seed alone.

``fixed_points`` has no trials: :func:`fixed_point_patterns` draws its P target states, and the
training loss is on the vector field at those states (see :mod:`koopnet.learning`).

Task performance (:func:`task_performance`) is a number in [0, 1], documented per task:

- ``flipflop``: bit accuracy, the fraction of masked (trial, time, bit) entries where the readout
  has the sign of the target;
- ``context_integration``, ``working_memory``: the fraction of trials whose readout, averaged over
  the masked response period, has the sign of the target;
- ``fixed_points``: the fraction of patterns stored as stable equilibria (:mod:`koopnet.learning`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "TASKS",
    "TaskBatch",
    "task_parameters",
    "make_batch",
    "task_performance",
    "flipflop",
    "context_integration",
    "working_memory",
    "fixed_points",
    "fixed_point_patterns",
]


@dataclass(frozen=True)
class TaskBatch:
    """A batch of trials.

    Attributes
    ----------
    u : array, shape (n_trials, T, M)
        Input u(t_k) on the time grid (held constant over each step), M task inputs.
    target : array, shape (n_trials, T, K)
        Target readout z(t_k), K task outputs.
    mask : array, shape (n_trials, T, K)
        1 where the readout is scored (loss and performance), else 0.
    """

    u: np.ndarray
    target: np.ndarray
    mask: np.ndarray

    @property
    def n_inputs(self) -> int:
        return self.u.shape[-1]

    @property
    def n_outputs(self) -> int:
        return self.target.shape[-1]


def _steps(duration: float, dt: float) -> int:
    return max(int(round(duration / dt)), 1)


def flipflop(
    rng: np.random.Generator,
    n_trials: int,
    dt: float,
    bits: int = 3,
    duration: float = 20.0,
    pulse_rate: float = 0.1,
    pulse_duration: float = 1.0,
) -> TaskBatch:
    """K-bit flip-flop memory (Sussillo & Barak 2013).

    Time is cut into slots of ``pulse_duration``; in each slot every channel k receives a pulse
    u_k = +-1 (random sign) with probability ``pulse_rate * pulse_duration``, else 0. Output k
    must hold the sign of the last pulse on channel k. It is scored (mask 1) from the end of
    the channel's first pulse on, except during the later pulses themselves (when it switches).

    Parameters
    ----------
    bits : int
        Number of channels K (inputs M = K, outputs K).
    duration : float
        Trial length (time units).
    pulse_rate : float
        Expected pulses per channel per time unit.
    pulse_duration : float
        Length of a pulse and of a slot (time units).
    """
    slot = _steps(pulse_duration, dt)
    n_slots = max(_steps(duration, dt) // slot, 1)
    T = n_slots * slot
    p = min(pulse_rate * pulse_duration, 1.0)
    on = rng.random((n_trials, n_slots, bits)) < p
    sign = rng.choice(np.array([-1.0, 1.0]), size=(n_trials, n_slots, bits))
    pulses = np.where(on, sign, 0.0)
    # last pulse sign so far (0 before the first pulse), per slot
    idx = np.where(on, np.arange(n_slots)[None, :, None], -1)
    last = np.maximum.accumulate(idx, axis=1)
    held = np.where(last >= 0, np.take_along_axis(sign, np.maximum(last, 0), axis=1), 0.0)
    u = np.repeat(pulses, slot, axis=1)
    target = np.repeat(held, slot, axis=1)
    mask = np.repeat(((last >= 0) & ~on).astype(float), slot, axis=1)
    assert u.shape[1] == T
    return TaskBatch(u, target, mask)


def context_integration(
    rng: np.random.Generator,
    n_trials: int,
    dt: float,
    duration: float = 10.0,
    response_duration: float = 2.0,
    coherences: tuple = (0.05, 0.1, 0.2, 0.4),
    noise_std: float = 0.5,
) -> TaskBatch:
    """Context-dependent integration of two noisy streams (Mante, Sussillo, Shenoy & Newsome 2013).

    Inputs (M = 4): two sensory streams s_i(t) = c_i + noise_std xi_i(t) / sqrt(dt) (white noise of
    intensity noise_std^2, so that its integral over the stimulus has variance
    noise_std^2 duration) with coherences c_i drawn from +-``coherences``, and a one-hot context
    cue (channels 3, 4) present throughout. Output (K = 1): the sign of the coherence of the
    cued stream, scored during a response period after the stimulus (inputs there are the
    context cue only).

    Parameters
    ----------
    duration : float
        Stimulus length (time units).
    response_duration : float
        Length of the scored response period (time units).
    coherences : sequence of float
        Magnitudes |c| drawn uniformly (input units).
    noise_std : float
        Noise intensity of each stream (input units x sqrt(time)). The ideal observer (the sign of
        the cued stream's integral) is right with probability Phi(|c| sqrt(duration) / noise_std):
        averaged over the default coherences, 0.81 at the defaults, a ceiling for the network.
    """
    T_stim, T_resp = _steps(duration, dt), _steps(response_duration, dt)
    T = T_stim + T_resp
    mags = np.asarray(coherences, dtype=float)
    c = rng.choice(mags, size=(n_trials, 2)) * rng.choice(np.array([-1.0, 1.0]), size=(n_trials, 2))
    context = rng.integers(0, 2, size=n_trials)
    noise = noise_std / np.sqrt(dt) * rng.standard_normal((n_trials, T_stim, 2))
    u = np.zeros((n_trials, T, 4))
    u[:, :T_stim, :2] = c[:, None, :] + noise
    u[np.arange(n_trials), :, 2 + context] = 1.0
    target = np.zeros((n_trials, T, 1))
    target[:, T_stim:, 0] = np.sign(c[np.arange(n_trials), context])[:, None]
    mask = np.zeros_like(target)
    mask[:, T_stim:, 0] = 1.0
    return TaskBatch(u, target, mask)


def working_memory(
    rng: np.random.Generator,
    n_trials: int,
    dt: float,
    stimulus_duration: float = 1.0,
    delay: float = 5.0,
    response_duration: float = 2.0,
    f_min: float = 0.2,
    f_max: float = 1.0,
    min_difference: float = 0.1,
) -> TaskBatch:
    """Delayed comparison of two scalar stimuli (Romo, Brody, Hernandez & Lemus 1999).

    Input (M = 1): stimulus f1 for ``stimulus_duration``, nothing during ``delay``, then f2 for
    ``stimulus_duration``; f1, f2 uniform in [f_min, f_max] with |f1 - f2| >= min_difference.
    Output (K = 1): +1 if f1 > f2 else -1, scored during the response period after f2.

    Parameters
    ----------
    stimulus_duration, delay, response_duration : float
        Time units.
    f_min, f_max : float
        Stimulus range (input units), f_max - f_min > min_difference.
    min_difference : float
        Smallest |f1 - f2| (input units).
    """
    if not f_max - f_min > min_difference:
        raise ValueError("working_memory: need f_max - f_min > min_difference")
    T_s, T_d, T_r = _steps(stimulus_duration, dt), _steps(delay, dt), _steps(response_duration, dt)
    T = 2 * T_s + T_d + T_r
    # f1 uniform, f2 uniform on the part of [f_min, f_max] at least min_difference away
    f1 = rng.uniform(f_min, f_max, n_trials)
    lo_len = np.clip(f1 - min_difference - f_min, 0.0, None)
    hi_len = np.clip(f_max - f1 - min_difference, 0.0, None)
    r = rng.uniform(0.0, 1.0, n_trials) * (lo_len + hi_len)
    f2 = np.where(r < lo_len, f_min + r, f1 + min_difference + (r - lo_len))
    u = np.zeros((n_trials, T, 1))
    u[:, :T_s, 0] = f1[:, None]
    u[:, T_s + T_d : 2 * T_s + T_d, 0] = f2[:, None]
    target = np.zeros((n_trials, T, 1))
    target[:, 2 * T_s + T_d :, 0] = np.where(f1 > f2, 1.0, -1.0)[:, None]
    mask = np.zeros_like(target)
    mask[:, 2 * T_s + T_d :, 0] = 1.0
    return TaskBatch(u, target, mask)


def fixed_points(
    rng: np.random.Generator,
    n_trials: int,
    dt: float,
    patterns: int = 3,
    amplitude: float = 2.0,
    stability_weight: float = 1.0,
    stability_margin: float = 0.1,
    pattern_tol: float = 0.01,
) -> TaskBatch:
    """No inputs and no readout: P patterns must become stable equilibria (see
    :func:`fixed_point_patterns`); the batch is empty (M = K = 0, T = 1).

    Parameters
    ----------
    patterns : int
        Number P of target states xi_p.
    amplitude : float
        Entries of xi_p are +-amplitude (state units).
    stability_weight : float
        Weight of the stability term of the loss.
    stability_margin : float
        The stability term is max(0, alpha(J(xi_p)) + margin)^2, alpha the spectral abscissa (1/time).
    pattern_tol : float
        A pattern counts as stored when the Newton step ||J(xi_p)^-1 f(xi_p)||_2 is below this
        (state units) and J(xi_p) is stable.
    """
    return TaskBatch(np.zeros((n_trials, 1, 0)), np.zeros((n_trials, 1, 0)), np.zeros((n_trials, 1, 0)))


def fixed_point_patterns(rng: np.random.Generator, n_units: int, patterns: int = 3, amplitude: float = 2.0,
                         **_: object) -> np.ndarray:
    """Target states of the ``fixed_points`` task, shape (P, N), entries +-amplitude."""
    return amplitude * rng.choice(np.array([-1.0, 1.0]), size=(int(patterns), int(n_units)))


TASKS: dict[str, Callable[..., TaskBatch]] = {
    f.__name__: f for f in (flipflop, context_integration, working_memory, fixed_points)
}


def task_parameters(name: str) -> dict[str, object]:
    """Parameters of task ``name`` with their defaults."""
    params = list(inspect.signature(TASKS[name]).parameters.values())[3:]
    return {p.name: p.default for p in params}


def make_batch(name: str, rng: np.random.Generator, n_trials: int, dt: float, **params) -> TaskBatch:
    """One batch of task ``name`` (see :data:`TASKS`)."""
    try:
        fn = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None
    return fn(rng, int(n_trials), float(dt), **params)


def task_performance(name: str, z: np.ndarray, batch: TaskBatch) -> float:
    """Task-specific accuracy in [0, 1] of readouts ``z`` (n_trials, T, K) on ``batch``.

    ``flipflop``: fraction of masked entries with sign(z) == sign(target). ``context_integration``,
    ``working_memory``: fraction of trials whose masked mean readout has the target's sign.
    """
    z = np.asarray(z)
    mask = batch.mask > 0
    if name == "flipflop":
        return float(np.mean((np.sign(z) == np.sign(batch.target))[mask])) if mask.any() else 0.0
    if name in ("context_integration", "working_memory"):
        n = mask.sum(axis=(1, 2))
        mean_z = np.where(mask, z, 0.0).sum(axis=(1, 2)) / np.maximum(n, 1)
        want = np.where(mask, batch.target, 0.0).sum(axis=(1, 2)) / np.maximum(n, 1)
        return float(np.mean(np.sign(mean_z) == np.sign(want)))
    raise ValueError(f"task_performance: no trial-based performance for task {name!r}")
