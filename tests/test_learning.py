"""Training (koopnet.learning, koopnet.tasks): task generators, BPTT gradients, known trained results.

Known results: a trained K-bit flip-flop network holds 2^K memories as stable equilibria of its
autonomous dynamics (Sussillo & Barak 2013); gradient training on f(xi_p) = 0 with a stability
penalty stores P patterns as stable equilibria.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from koopnet import Network, find_equilibria
from koopnet.ensembles import gaussian
from koopnet.tasks import TASKS, make_batch, task_parameters, task_performance

learning = pytest.importorskip("koopnet.learning")
jnp = learning.jnp


# ----------------------------------------------------------------------------- tasks


def test_flipflop_target_holds_the_last_pulse():
    b = make_batch("flipflop", np.random.default_rng(0), 16, 0.25, bits=3, duration=30.0)
    T = b.u.shape[1]
    for n, k in itertools.product(range(16), range(3)):  # reference: a plain loop over time
        last, seen_pulse = 0.0, False
        for t in range(T):
            if b.u[n, t, k] != 0:
                last, seen_pulse = b.u[n, t, k], True
            assert b.target[n, t, k] == last
            assert b.mask[n, t, k] == float(seen_pulse and b.u[n, t, k] == 0)
    assert set(np.unique(b.u)) <= {-1.0, 0.0, 1.0}


def test_comparison_tasks_targets():
    b = make_batch("working_memory", np.random.default_rng(1), 200, 0.1, min_difference=0.1)
    f1, f2 = b.u[:, 0, 0], b.u[:, 60, 0]  # f2 starts at (stimulus 1.0 + delay 5.0) / dt = 60
    assert np.all(np.abs(f1 - f2) >= 0.1 - 1e-12)
    resp = b.mask[..., 0] > 0
    assert resp.any(axis=1).all()
    assert np.all((b.target[..., 0] == np.sign(f1 - f2)[:, None]) | ~resp)
    c = make_batch("context_integration", np.random.default_rng(2), 100, 0.1, noise_std=0.0)
    ctx = np.argmax(c.u[:, 0, 2:], axis=1)
    coh = c.u[np.arange(100), 0, ctx]
    assert np.all(c.target[:, -1, 0] == np.sign(coh))
    # a readout equal to the target scores 1, its negative 0
    for name, batch in (("working_memory", b), ("context_integration", c)):
        assert task_performance(name, batch.target, batch) == 1.0
        assert task_performance(name, -batch.target, batch) == 0.0


def test_context_streams_integrate_to_coherence_times_duration():
    """The integral of stream i over the stimulus is c_i duration + noise of variance noise_std^2 duration."""
    dt, duration, sd, n = 0.1, 4.0, 0.8, 4000
    c = make_batch("context_integration", np.random.default_rng(6), n, dt, duration=duration, noise_std=sd,
                   coherences=(0.3,))
    T = int(round(duration / dt))
    integral = c.u[:, :T, :2].sum(axis=1) * dt
    ctx = np.argmax(c.u[:, 0, 2:], axis=1)
    cued = integral[np.arange(n), ctx]
    coh = 0.3 * np.where(c.target[:, -1, 0] > 0, 1.0, -1.0)
    resid = cued - coh * duration
    se_mean, var = sd * np.sqrt(duration / n), sd**2 * duration
    assert abs(resid.mean()) < 4 * se_mean
    # variance of the sample variance of a Gaussian: 2 var^2 / (n - 1)
    assert abs(resid.var(ddof=1) - var) < 4 * np.sqrt(2 / (n - 1)) * var


def test_tasks_are_seeded():
    for name in TASKS:
        a = make_batch(name, np.random.default_rng(5), 4, 0.2)
        b = make_batch(name, np.random.default_rng(5), 4, 0.2)
        assert np.array_equal(a.u, b.u) and np.array_equal(a.target, b.target)
        assert set(task_parameters(name))  # documented, sweepable parameters


# ----------------------------------------------------------------------------- gradients


def _central_difference(fun, params, name, h):
    grad = np.zeros_like(np.asarray(params[name]))
    for idx in np.ndindex(grad.shape):
        plus, minus = dict(params), dict(params)
        plus[name] = params[name].at[idx].add(h)
        minus[name] = params[name].at[idx].add(-h)
        grad[idx] = (float(fun(plus)) - float(fun(minus))) / (2 * h)
    return grad


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_bptt_gradient_matches_finite_differences(activation):
    """Central differences have error h^2 |f'''| / 6 + eps |f| / h: ~1e-10 at h = 1e-5 for O(1) losses."""
    rng = np.random.default_rng(3)
    N, M, K = 3, 2, 2
    params = {"W": jnp.asarray(gaussian(N, rng, g=1.5)), "theta": jnp.asarray(0.3 * rng.standard_normal(N)),
              "B": jnp.asarray(rng.standard_normal((N, M))), "C": jnp.asarray(rng.standard_normal((K, N)))}
    b = make_batch("flipflop", rng, 3, 0.5, bits=2, duration=5.0)
    fun = learning.jax.jit(lambda p: learning.task_loss(p, b.u, b.target, b.mask, 0.5, activation))
    grads = learning.jax.grad(fun)(params)
    for name in params:
        fd = _central_difference(fun, params, name, 1e-5)
        np.testing.assert_allclose(np.asarray(grads[name]), fd, rtol=0, atol=1e-7 * (1 + np.abs(fd).max()))


def test_fixed_point_gradient_matches_finite_differences():
    """Through the eigenvalues too: the abscissa is a simple eigenvalue (or a conjugate pair) here."""
    rng = np.random.default_rng(4)
    N = 4
    params = {"W": jnp.asarray(gaussian(N, rng, g=2.0)), "theta": jnp.asarray(0.1 * rng.standard_normal(N)),
              "B": jnp.zeros((N, 0)), "C": jnp.zeros((0, N))}
    xi = jnp.asarray(0.5 * rng.standard_normal((3, N)))
    fun = learning.jax.jit(lambda p: learning.fixed_point_loss(p, xi, "tanh", 1.0, 2.0))  # margin 2: penalty active
    grads = learning.jax.grad(fun)(params)
    for name in ("W", "theta"):
        fd = _central_difference(fun, params, name, 1e-5)
        np.testing.assert_allclose(np.asarray(grads[name]), fd, rtol=0, atol=1e-7 * (1 + np.abs(fd).max()))


def test_fixed_point_update_runs_no_batched_lapack_call():
    """Regression for the jaxlib 0.10 hang (koopnet._jax, docs/perturbative.md "XLA deadlock").

    A batched LAPACK custom call splits its batch over XLA's intra-op pool and blocks a worker until
    the pieces finish; as many at once as the pool has workers hang the process. A batch of one runs
    inline, so every LAPACK call of the compiled training step (eigvals and its derivative) must act on
    a single (N, N) matrix. Batched over the P patterns, these calls were (P, N, N).
    """
    import re

    jax = learning.jax
    rng = np.random.default_rng(0)
    N, P = 5, 4
    params = {"W": jnp.asarray(gaussian(N, rng, g=2.0)), "theta": jnp.zeros(N)}
    xi = jnp.asarray(rng.standard_normal((P, N)))
    with jax.enable_x64(True):
        step = jax.jit(jax.value_and_grad(lambda p: learning.fixed_point_loss(p, xi, "tanh", 1.0, 2.0)))
        text = step.lower(params).compile().as_text()
    calls = [line for line in text.splitlines() if re.search(r'custom_call_target="lapack_', line)]
    assert calls, "the loss differentiates through eigvals: LAPACK calls expected"
    for line in calls:
        operands = re.findall(r"(?:f64|c128|f32|c64)\[([0-9,]*)\]", line.split("custom-call(", 1)[1])
        assert operands and all(len(dims.split(",")) == 2 for dims in operands), line


# ----------------------------------------------------------------------------- known trained results


@pytest.fixture(scope="module")
def flipflop_run():
    N, K = 32, 2
    W0 = gaussian(N, np.random.default_rng(1), g=1.5)
    settings = learning.TrainingSettings(task="flipflop", task_params={"bits": K}, checkpoints=(0, 50, 300),
                                         learning_rate=1e-2, batch_size=32, dt=0.2)
    return K, learning.train_network(W0, np.zeros(N), "tanh", settings, seed=5)


def test_flipflop_trains_and_its_memories_are_stable_equilibria(flipflop_run):
    """Sussillo & Barak 2013: >= 95 % bit accuracy, and for each of the 2^K memories a stable
    equilibrium of the autonomous network (u = 0) whose readout has that memory's signs."""
    K, run = flipflop_run
    assert run.performance[0] < 0.95 <= run.performance[-1]
    assert list(run.status) == [learning.TrainStatus.not_converged] + [
        learning.TrainStatus.ok if p >= 0.95 else learning.TrainStatus.not_converged for p in run.performance[1:]]
    eq = find_equilibria(Network(run.W[-1], run.theta[-1], "tanh"), seed=3)
    assert eq.n_stable >= 2**K
    z = np.tanh(eq.x[eq.stable]) @ run.C[-1].T
    held = {tuple(row) for row in np.sign(z).astype(int)}
    assert held >= set(itertools.product((-1, 1), repeat=K))


def test_training_is_reproducible_and_step0_is_the_initial_network(flipflop_run):
    K, run = flipflop_run
    W0 = gaussian(32, np.random.default_rng(1), g=1.5)
    assert np.array_equal(run.W[0], W0)
    settings = learning.TrainingSettings(task="flipflop", task_params={"bits": K}, checkpoints=(0, 50),
                                         learning_rate=1e-2, batch_size=32, dt=0.2)
    again = learning.train_network(W0, np.zeros(32), "tanh", settings, seed=5)
    assert np.array_equal(again.W[1], run.W[1]) and np.array_equal(again.C[1], run.C[1])


def test_fixed_points_become_stable_equilibria():
    """Each pattern xi lies within 2 |J(xi)^-1|_2 (|f(xi)|_2 + |f(x*)|_2) of a stable equilibrium x*
    found by the equilibria stage (Newton-Kantorovich, with x* refined to the stage's tolerance)."""
    N, P = 12, 3
    W0 = gaussian(N, np.random.default_rng(1), g=1.5)
    settings = learning.TrainingSettings(task="fixed_points", task_params={"patterns": P, "amplitude": 1.0},
                                         checkpoints=(0, 300), learning_rate=1e-2)
    run = learning.train_network(W0, np.zeros(N), "tanh", settings, seed=5)
    assert run.performance[-1] == 1.0 and run.status[-1] == learning.TrainStatus.ok
    net = Network(run.W[-1], run.theta[-1], "tanh")
    eq = find_equilibria(net, seed=0)
    xi = learning.fixed_point_patterns(learning.stage_rng(5, "training_eval"), N, patterns=P, amplitude=1.0)
    tol = 1e-10  # EquilibriumSettings.tol_residual (relative residual)
    for x in xi:
        J = net.jacobian(x)
        bound = 2 * np.linalg.norm(np.linalg.inv(J), 2) * (
            np.linalg.norm(net.vector_field(x)) + np.sqrt(N) * tol * (1 + np.abs(x).max()) * 2)
        dist = np.linalg.norm(eq.x[eq.stable] - x, axis=1)
        assert dist.min() <= bound


def test_divergence_keeps_earlier_checkpoints():
    N = 4
    W0 = gaussian(N, np.random.default_rng(2), g=1.0)
    settings = learning.TrainingSettings(task="flipflop", task_params={"bits": 1, "duration": 10.0},
                                         checkpoints=(0, 5, 50), learning_rate=1e3, max_grad_norm=1e12,
                                         batch_size=4, eval_trials=4, dt=0.5)
    run = learning.train_network(W0, np.zeros(N), "cubic", settings, seed=1)
    assert run.status[-1] == learning.TrainStatus.diverged
    assert run.status[0] != learning.TrainStatus.diverged
    assert np.array_equal(run.W[0], W0)
    assert np.all(np.isfinite(run.W)) and np.all(np.isfinite(run.loss))
    assert run.steps_done[-1] < 50


# ----------------------------------------------------------------------------- JAX stays optional


def test_library_imports_without_jax():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('jax', 'jaxlib', 'optax'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import koopnet, koopnet.sweep, koopnet.pipeline, koopnet.tasks, koopnet.equilibria, koopnet.koopman\n"
        "import koopnet.dimension, koopnet.resilience, koopnet.plotting, koopnet.io\n"
        "assert not any(m.split('.')[0] in ('jax', 'optax') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_delta_w_rank_bounded_by_patterns_under_gradient_descent():
    """fixed_points without the stability term (weight 0) and with theta frozen: every gradient of
    mean_p |f(xi_p)|^2 wrt W is F sigma(Xi)^T, so plain gradient descent keeps delta_W = A sigma(Xi)^T
    and rank(delta_W) <= P exactly (the Schuessler et al. 2020 mechanism: the update lives in the span
    of the task's few directions). Adam's elementwise scaling does not preserve that span."""
    N, P = 12, 2
    W0 = gaussian(N, np.random.default_rng(7), g=1.5)
    settings = learning.TrainingSettings(
        task="fixed_points", task_params={"patterns": P, "amplitude": 1.0, "stability_weight": 0.0},
        checkpoints=(0, 50), learning_rate=0.05, optimizer="sgd", train_theta=False)
    run = learning.train_network(W0, np.zeros(N), "tanh", settings, seed=2)
    s = np.linalg.svd(run.W[-1] - run.W[0], compute_uv=False)
    assert s[0] > 0  # it learned something
    # 50 updates each round W by <= eps max|W| per entry: ||rounding||_2 <= 50 N eps max|W|
    assert np.all(s[P:] <= 50 * N * np.finfo(float).eps * np.abs(run.W).max())
