"""Tests of koopnet.simulate against exact solutions and scipy.integrate.solve_ivp."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from koopnet import Network, NetworkBatch
from koopnet.simulate import (
    UNASSIGNED,
    TrajectoryStatus,
    assign_to_equilibria,
    integrate,
)


def _random_batch(rng, B, N, g, activation="logistic"):
    W = rng.normal(0.0, g / np.sqrt(N), (B, N, N))
    theta = -W.sum(axis=2) / 2 + rng.normal(0.0, 0.3, (B, N))
    return NetworkBatch(W, theta, activation)


def test_matches_solve_ivp_on_settling_networks():
    # logistic, moderate gain: trajectories settle; same tolerances as RK45 must give the
    # same end states to within the tolerance-driven error (1e-6 relative, stated below)
    rng = np.random.default_rng(1)
    batch = _random_batch(rng, 2, 6, 6.0)
    x0 = rng.normal(0.0, 3.0, (2, 8, 6))
    tr = integrate(batch, x0, 200.0, rtol=1e-8, atol=1e-10, settle_tol=1e-9)
    assert np.all(tr.status == TrajectoryStatus.settled)
    for b in range(2):
        net = batch[b]
        for m in range(8):
            sol = solve_ivp(
                lambda t, x: net.vector_field(x), (0.0, tr.t_end[b, m]), x0[b, m],
                method="RK45", rtol=1e-8, atol=1e-10,
            )
            np.testing.assert_allclose(tr.x_final[b, m], sol.y[:, -1], rtol=0, atol=1e-6)
            # settled: vector field below tolerance at the end state
            assert np.max(np.abs(net.vector_field(tr.x_final[b, m]))) < 1e-9


def test_linear_network_matches_exact_solution_on_t_eval():
    # linear activation: x(t) = x* + expm(A t)(x0 - x*), A = W/4 - I (SCIENCE.md 2a)
    rng = np.random.default_rng(2)
    N = 5
    W = rng.normal(0.0, 1.0, (N, N))
    theta = rng.normal(0.0, 1.0, N)
    net = Network(W, theta, "linear")
    A = W / 4 - np.eye(N)
    b = W @ np.full(N, 0.5) + theta
    x_star = np.linalg.solve(A, -b)
    x0 = rng.normal(0.0, 2.0, (1, 4, N))
    t_eval = np.linspace(0.0, 10.0, 21)
    tr = integrate(NetworkBatch(W[None], theta[None], "linear"), x0, 60.0, rtol=1e-9,
                   atol=1e-12, t_eval=t_eval, settle_tol=1e-10)
    for m in range(4):
        exact = np.stack([x_star + expm(A * t) @ (x0[0, m] - x_star) for t in t_eval])
        # global error of a 1e-9 tolerance run over 10 time units: 1e-7 is ample and tight
        np.testing.assert_allclose(tr.x_eval[0, m], exact, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(tr.x_eval[0, :, 0], x0[0])  # t = 0 sample is x0 itself
    assert np.all(tr.status == TrajectoryStatus.settled)
    margin = -np.max(np.linalg.eigvals(A).real)
    # |x - x*| <= |A^-1| |f| with |f| < settle_tol
    bound = np.linalg.norm(np.linalg.inv(A), 2) * 1e-10 * np.sqrt(N)
    assert np.all(np.linalg.norm(tr.x_final[0] - x_star, axis=1) <= bound + 1e-12)
    assert margin > 0
    assert net.n_units == N


def test_cubic_blow_up_flagged_at_exact_escape_time():
    # N = 1 cubic, w = -48, theta = 24: p(x) = -x + w sigma(x) + theta = x^3 - 13 x with roots
    # 0 (stable) and +-sqrt(13) (unstable). From x0 = 5 > sqrt(13) x escapes to +inf at
    # t* = int_5^inf dx / (x^3 - 13 x) = ln(25 / 12) / 26.
    batch = NetworkBatch([[[-48.0]]], [[24.0]], "cubic")
    np.testing.assert_allclose(batch.vector_field(np.array([[[2.0]]])), [[[8.0 - 26.0]]])
    t_star = np.log(25.0 / 12.0) / 26.0
    tr = integrate(batch, [[[5.0], [-3.0], [3.5]]], 50.0)
    assert tr.status[0, 0] == TrajectoryStatus.diverged
    assert abs(tr.x_final[0, 0, 0]) > 1e6
    # remaining time from x = 1e6 to infinity is ~ 1/(2 * 1e12): negligible; the escape time
    # is integrated with rtol = 1e-6
    assert abs(tr.t_end[0, 0] - t_star) < 1e-5 * t_star
    # -3 and 3.5 lie in the basin of the stable root 0
    assert np.all(tr.status[0, 1:] == TrajectoryStatus.settled)
    assert np.all(np.abs(tr.x_final[0, 1:, 0]) < 1e-8 / 13 * 1.01)
    # the other side: x0 = -5 escapes to -inf at the same time (p is odd)
    tr2 = integrate(batch, [[[-5.0]]], 50.0)
    assert tr2.status[0, 0] == TrajectoryStatus.diverged and tr2.x_final[0, 0, 0] < -1e6
    assert abs(tr2.t_end[0, 0] - t_star) < 1e-5 * t_star
    # far out the escape is almost immediate (first trial steps overflow): still 'diverged',
    # at the exact time of reaching the end state, T(x0) - T(x_end) with
    # T(x) = ln(x^2 / (x^2 - 13)) / 26 the remaining time to escape
    x0 = np.array([40.0, 1e3, 1e5])
    tr3 = integrate(batch, x0[None, :, None], 50.0)
    assert np.all(tr3.status == TrajectoryStatus.diverged)
    T = lambda x: np.log(x**2 / (x**2 - 13)) / 26  # noqa: E731
    np.testing.assert_allclose(tr3.t_end[0], T(x0) - T(tr3.x_final[0, :, 0]), rtol=1e-5)


def test_limit_cycle_is_unsettled():
    # tanh, W = 2 [[1, -1], [1, 1]]: the only equilibrium x = 0 is an unstable focus
    # (J = -I + W has eigenvalues 1 +- 2i) and tanh is bounded, so orbits approach a limit cycle
    W = 2.0 * np.array([[1.0, -1.0], [1.0, 1.0]])
    batch = NetworkBatch(W[None], np.zeros((1, 2)), "tanh")
    t_eval = np.linspace(0, 40, 81)
    tr = integrate(batch, np.array([[[0.1, 0.0], [2.0, -1.0]]]), 40.0, t_eval=t_eval)
    assert np.all(tr.status == TrajectoryStatus.unsettled)
    assert np.all(tr.t_end == 40.0)
    assert np.all(np.isfinite(tr.x_eval))
    np.testing.assert_array_equal(tr.x_eval[:, :, -1], tr.x_final)
    # still oscillating at the end: the vector field is far from zero
    f_end = batch.vector_field(tr.x_final)
    assert np.all(np.max(np.abs(f_end), axis=-1) > 0.1)


def test_settled_samples_held_and_diverged_samples_nan():
    batch = NetworkBatch([[[-48.0]]], [[24.0]], "cubic")
    t_eval = np.linspace(0, 20, 11)
    tr = integrate(batch, [[[5.0], [-0.5]]], 20.0, t_eval=t_eval)
    assert tr.status[0, 0] == TrajectoryStatus.diverged
    assert np.isfinite(tr.x_eval[0, 0, 0, 0]) and np.all(np.isnan(tr.x_eval[0, 0, 1:]))
    assert tr.status[0, 1] == TrajectoryStatus.settled
    after = t_eval > tr.t_end[0, 1]
    assert after.any()
    np.testing.assert_array_equal(tr.x_eval[0, 1, after, 0], tr.x_final[0, 1, 0])


def test_step_budget_gives_stalled():
    batch = NetworkBatch([[[8.0]]], [[-4.0]], "logistic")
    tr = integrate(batch, [[[0.3]]], 100.0, max_steps=3)
    assert tr.status[0, 0] == TrajectoryStatus.stalled
    assert tr.n_steps[0, 0] + tr.n_rejected[0, 0] == 3


def test_bitwise_identical_alone_and_in_batch():
    rng = np.random.default_rng(3)
    batch = _random_batch(rng, 3, 7, 7.0, "cubic")
    x0 = rng.normal(0.0, 4.0, (3, 9, 7))
    t_eval = np.linspace(0, 5, 6)
    full = integrate(batch, x0, 30.0, t_eval=t_eval)
    assert len(set(full.status.ravel().tolist())) >= 2  # mixed endings exercise compaction
    for b in range(3):
        one = integrate(NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], "cubic"),
                        x0[b : b + 1], 30.0, t_eval=t_eval)
        for name in ("x_final", "status", "t_end", "n_steps", "n_rejected", "x_eval"):
            np.testing.assert_array_equal(getattr(full, name)[b], getattr(one, name)[0])


def test_assign_to_equilibria():
    # 1-D bistable logistic unit w = 8, theta = -4: roots -x* , 0, x*
    batch = NetworkBatch([[[8.0]]], [[-4.0]], "logistic")
    tr = integrate(batch, [[[-3.0], [2.0], [0.0]]], 200.0)
    from scipy.optimize import brentq

    r = brentq(lambda x: -x + 8 / (1 + np.exp(-x)) - 4, 1.0, 5.0)
    x_eq = np.array([[[-r], [r], [0.0], [np.nan]]])
    stable = np.array([[True, True, False, False]])
    lab = assign_to_equilibria(tr.x_final, tr.status, x_eq, stable=stable)
    np.testing.assert_array_equal(lab, [[0, 1, UNASSIGNED]])
    # nothing near: unassigned; non-settled: unassigned
    lab2 = assign_to_equilibria(tr.x_final, tr.status, x_eq + 1.0, stable=stable)
    assert np.all(lab2 == UNASSIGNED)
    lab3 = assign_to_equilibria(tr.x_final, np.full((1, 3), 2), x_eq, stable=stable)
    assert np.all(lab3 == UNASSIGNED)


def test_bad_input_raises():
    batch = NetworkBatch([[[1.0]]], [[0.0]], "tanh")
    with pytest.raises(ValueError):
        integrate(batch, np.zeros((1, 2, 3)), 1.0)
    with pytest.raises(ValueError):
        integrate(batch, np.zeros((1, 2, 1)), 1.0, t_eval=[0.5, 0.2])


def test_non_contiguous_initial_conditions():
    # x0 picked by fancy indexing along the trajectory axis need not be C-contiguous; the end
    # states must still be the integrated ones (they were once written into a reshaped copy)
    rng = np.random.default_rng(8)
    batch = _random_batch(rng, 2, 3, 1.5, "tanh")
    x = rng.normal(0.0, 1.0, (2, 5, 3))
    x0 = x[np.arange(2)][:, np.arange(5)]
    x0 = np.asfortranarray(x0)
    assert not x0.flags.c_contiguous
    a = integrate(batch, x0, 5.0)
    b = integrate(batch, np.ascontiguousarray(x0), 5.0)
    np.testing.assert_array_equal(a.x_final, b.x_final)
    assert not np.array_equal(a.x_final, x0)


@pytest.mark.parametrize("T", [21, 401])
def test_dense_samples_match_the_exact_solution_without_extra_steps(T):
    # linear activation: x(t) = x* + expm(A t)(x0 - x*), A = W/4 - I. Dense samples (DOPRI5's
    # quartic interpolant) carry an error of the order of the local tolerance per step, so
    # the same 1e-7 bound as the clipped samples of a 1e-9 run holds; the steps are those of
    # a run without samples
    rng = np.random.default_rng(2)
    N = 5
    W = rng.normal(0.0, 1.0, (N, N))
    theta = rng.normal(0.0, 1.0, N)
    A = W / 4 - np.eye(N)
    x_star = np.linalg.solve(A, -(W @ np.full(N, 0.5) + theta))
    x0 = rng.normal(0.0, 2.0, (1, 4, N))
    t_eval = np.linspace(0.0, 10.0, T)
    batch = NetworkBatch(W[None], theta[None], "linear")
    kw = dict(rtol=1e-9, atol=1e-12, settle_tol=1e-10)
    tr = integrate(batch, x0, 10.0, t_eval=t_eval, dense=True, **kw)
    plain = integrate(batch, x0, 10.0, **kw)
    np.testing.assert_array_equal(tr.n_steps, plain.n_steps)
    np.testing.assert_array_equal(tr.x_final, plain.x_final)
    for m in range(4):
        exact = np.stack([x_star + expm(A * t) @ (x0[0, m] - x_star) for t in t_eval])
        np.testing.assert_allclose(tr.x_eval[0, m], exact, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(tr.x_eval[0, :, 0], x0[0])
    np.testing.assert_array_equal(tr.x_eval[0, :, -1], tr.x_final[0])  # t = t_max: the end state
    clipped = integrate(batch, x0, 10.0, t_eval=t_eval, **kw)
    if T == 401:  # samples denser than the steps: clipping costs steps, dense output does not
        assert np.all(clipped.n_steps > tr.n_steps)


def test_dense_samples_hold_settled_and_nan_diverged_states():
    batch = NetworkBatch([[[-48.0]]], [[24.0]], "cubic")
    t_eval = np.linspace(0, 20, 11)
    tr = integrate(batch, [[[5.0], [-0.5]]], 20.0, t_eval=t_eval, dense=True)
    assert tr.status[0, 0] == TrajectoryStatus.diverged
    assert np.isfinite(tr.x_eval[0, 0, 0, 0]) and np.all(np.isnan(tr.x_eval[0, 0, 1:]))
    assert tr.status[0, 1] == TrajectoryStatus.settled
    after = t_eval > tr.t_end[0, 1]
    np.testing.assert_array_equal(tr.x_eval[0, 1, after, 0], tr.x_final[0, 1, 0])
