"""Tests of the equilibria engine against exact results (SCIENCE.md sections 1-3, 6)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import brentq

from koopnet import Network, NetworkBatch
from koopnet._flags import EquilibriumType
from koopnet.activations import get_activation
from koopnet.equilibria import (
    EquilibriumMethod,
    EquilibriumSettings,
    EquilibriumStatus,
    EquilibriumStrategy,
    chao1,
    classify_equilibrium,
    contraction_certificate,
    equilibria_dataset,
    find_equilibria,
    find_equilibria_batch,
    is_feedforward,
    _mirror_chao1,
)

FULL = EquilibriumSettings(exact_paths=False)


def match(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """Same set of points (rows) up to order, within atol (max-norm)."""
    if a.shape != b.shape:
        return False
    d = np.max(np.abs(a[:, None, :] - b[None, :, :]), axis=-1)
    return bool(np.all(d.min(axis=1) <= atol) and np.all(d.min(axis=0) <= atol))


def residual(net: Network, x: np.ndarray) -> np.ndarray:
    return np.max(np.abs(net.vector_field(x)), axis=-1) / (1 + np.max(np.abs(x), axis=-1))


# ------------------------------------------------------------------------ exact paths


def test_poster_cubic_neuron_matches_numpy_roots():
    # SCIENCE.md 2b: w = 8, theta = -4: roots -sqrt(6) (stable), 0 (unstable), sqrt(6) (stable)
    r = find_equilibria(Network([[8.0]], [-4.0], "cubic"))
    assert r.method == EquilibriumMethod.polynomial and r.status == EquilibriumStatus.ok
    np.testing.assert_allclose(np.sort(r.x[:, 0]), [-np.sqrt(6), 0, np.sqrt(6)], atol=1e-12)
    # stable first; p'(+-sqrt 6) = -2, p'(0) = 1
    assert list(r.eq_type) == [EquilibriumType.stable_node] * 2 + [EquilibriumType.unstable_node]
    np.testing.assert_allclose(r.jacobian_eigenvalues[:, 0].real, [-2, -2, 1], atol=1e-12)


@pytest.mark.parametrize(
    "w,theta", [(8.0, -4.0), (6.0, -2.5), (-3.0, 1.0), (12.0, -5.0), (2.0, 0.7)]
)
def test_cubic_neuron_vs_numpy_roots(w, theta):
    r = find_equilibria(Network([[w]], [theta], "cubic"))
    z = np.roots([-w / 48, 0.0, w / 4 - 1, w / 2 + theta])
    real = np.sort(z[np.abs(z.imag) < 1e-9].real)
    np.testing.assert_allclose(np.sort(r.x[:, 0]), real, rtol=1e-12, atol=1e-12)
    assert r.n_estimate == len(real) and r.n_estimate_se == 0


@pytest.mark.parametrize("act", ["logistic", "tanh", "cubic"])
def test_feedforward_forward_substitution(act):
    rng = np.random.default_rng(5)
    N = 7
    W = np.tril(rng.normal(0, 1.5, (N, N)), k=-1)
    theta = rng.normal(0, 1, N)
    perm = rng.permutation(N)  # a DAG in disguise: P W P^T is not triangular
    Wp, thp = W[np.ix_(perm, perm)], theta[perm]
    sigma = get_activation(act).sigma
    x = np.zeros(N)
    for i in range(N):  # independent forward substitution
        x[i] = theta[i] + W[i, :i] @ sigma(x[:i])
    for Wm, th, ref in [(W, theta, x), (Wp, thp, x[perm])]:
        r = find_equilibria(Network(Wm, th, act))
        assert r.method == EquilibriumMethod.feedforward and r.n_equilibria == 1
        np.testing.assert_allclose(r.x[0], ref, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(r.jacobian_eigenvalues, -np.ones((1, N)))
        assert r.eq_type[0] == EquilibriumType.stable_node and r.status == EquilibriumStatus.ok
    assert is_feedforward(Wp) and not is_feedforward(W + np.triu(np.ones((N, N)), 1) * 0.1)


def test_feedforward_search_finds_the_unique_equilibrium():
    rng = np.random.default_rng(6)
    W = np.tril(rng.normal(0, 3.0, (6, 6)), k=-1)
    net = Network(W, rng.normal(0, 1, 6), "logistic")
    exact = find_equilibria(net)
    search = find_equilibria(net, FULL, seed=1)
    assert search.method == EquilibriumMethod.newton and search.n_equilibria == 1
    np.testing.assert_allclose(search.x, exact.x, atol=1e-10)


def test_feedforward_cubic_overflow_is_flagged():
    N = 12
    W = np.diag(np.full(N - 1, 50.0), k=-1)
    r = find_equilibria(Network(W, np.full(N, 3.0), "cubic"))
    assert r.status == EquilibriumStatus.overflow and r.n_equilibria == 0
    # the equilibrium exists and is unique, it is only not representable
    assert r.n_estimate == 1.0 and r.n_estimate_se == 0.0


def test_feedforward_upstream_transients_do_not_overflow():
    # unit 1 is 200 - 400 sigma(x0) = 0 at equilibrium, but 200 if evaluated before unit 0
    # is final, and the cubic sigma of the downstream chain would overflow from there
    N = 6
    W = np.zeros((N, N))
    W[1, 0] = -400.0
    W[np.arange(2, N), np.arange(1, N - 1)] = 1.0
    theta = np.zeros(N)
    theta[1] = 200.0
    sigma = get_activation("cubic").sigma
    x = np.zeros(N)
    for i in range(N):
        x[i] = theta[i] + W[i, :i] @ sigma(x[:i])
    for perm in [np.arange(N), np.array([5, 3, 0, 4, 1, 2])]:
        r = find_equilibria(Network(W[np.ix_(perm, perm)], theta[perm], "cubic"))
        assert r.status == EquilibriumStatus.ok and r.n_equilibria == 1
        np.testing.assert_allclose(r.x[0], x[perm], rtol=1e-14, atol=1e-14)


def test_polynomial_path_survives_a_tiny_leading_coefficient():
    # 1e-300 cubic term: the monic companion matrix would overflow; the root near theta stays
    w, theta = 1e-300, 1e10
    r = find_equilibria(Network([[w]], [theta], "cubic"))
    p = np.array([-w / 48, 0.0, w / 4 - 1.0, w / 2 + theta])  # descending, as numpy.roots
    assert r.status == EquilibriumStatus.ok and r.n_equilibria == 1
    np.testing.assert_allclose(r.x[0, 0], theta, rtol=1e-15)
    assert np.polyval(p / 1e10, r.x[0, 0]) == pytest.approx(0.0, abs=1e-15)
    # the same scaling leaves ordinary cubics exact
    r = find_equilibria(Network([[2.0]], [0.3], "cubic"))
    roots = np.roots([-2 / 48, 0.0, 2 / 4 - 1.0, 1.0 + 0.3])
    np.testing.assert_allclose(r.x[:, 0], roots[np.abs(roots.imag) < 1e-12].real, rtol=1e-13)


def test_linear_network_unique_solution_and_spectrum():
    rng = np.random.default_rng(7)
    N = 6
    W = rng.normal(0, 2.0, (N, N))
    theta = rng.normal(0, 1, N)
    r = find_equilibria(Network(W, theta, "linear"))
    A = W / 4 - np.eye(N)
    x = np.linalg.solve(A, -(W @ np.full(N, 0.5) + theta))
    assert r.method == EquilibriumMethod.linear and r.n_equilibria == 1
    np.testing.assert_allclose(r.x[0], x, rtol=1e-12, atol=1e-12)
    ev = np.linalg.eigvals(W) / 4 - 1
    np.testing.assert_allclose(
        np.sort_complex(r.jacobian_eigenvalues[0]), np.sort_complex(ev), atol=1e-12
    )
    # SCIENCE.md 6: stable iff max Re eig W < 4
    assert (r.n_stable == 1) == (np.max(np.linalg.eigvals(W).real) < 4)


def test_linear_singular_is_flagged():
    # sigma = 1/2 + x/4, W = 4 I: f = (W/4 - I) x + W 1/2 + theta = 2 + theta, a constant
    r = find_equilibria(Network(4.0 * np.eye(3), -2.0 * np.ones(3), "linear"))  # f = 0: a continuum
    assert r.status == EquilibriumStatus.singular and r.n_equilibria == 0
    assert r.fraction_converged == 0.0
    assert np.isnan(r.n_estimate) and np.isnan(r.n_estimate_se)  # no count, not "exactly 0"
    r = find_equilibria(Network(4.0 * np.eye(3), np.ones(3), "linear"))  # f = 3: no zero at all
    assert r.status == EquilibriumStatus.no_equilibrium and r.n_equilibria == 0
    assert r.n_estimate == 0.0 and r.n_estimate_se == 0.0  # proven: exactly none


# ------------------------------------------------------------------- search, theory


def test_logistic_tanh_conjugacy():
    # SCIENCE.md 1: logistic (W, theta) is tanh (W/4, W 1/4 + theta/2) with x = 2 y
    rng = np.random.default_rng(11)
    for W in [np.array([[8.0, -1.0], [-1.0, 8.0]]), rng.normal(0, 6.0, (3, 3))]:
        theta = -W.sum(axis=1) / 2 + rng.normal(0, 0.3, W.shape[0])
        lg = find_equilibria(Network(W, theta, "logistic"), seed=2)
        th = find_equilibria(Network(W / 4, W.sum(axis=1) / 4 + theta / 2, "tanh"), seed=2)
        assert lg.n_equilibria == th.n_equilibria >= 1
        assert match(lg.x, 2 * th.x, 1e-9)
        order = np.lexsort(lg.x.T[::-1])
        order_t = np.lexsort(th.x.T[::-1])
        np.testing.assert_allclose(
            lg.jacobian_eigenvalues[order], th.jacobian_eigenvalues[order_t], atol=1e-9
        )
    assert lg.method == th.method == EquilibriumMethod.newton


@pytest.mark.parametrize("act,scale", [("logistic", 3.8), ("tanh", 0.95)])
def test_contraction_gives_exactly_one(act, scale):
    rng = np.random.default_rng(12)
    for k in range(3):
        W = rng.normal(0, 1, (10, 10))
        W *= scale / np.linalg.norm(W, 2)
        r = find_equilibria(Network(W, rng.normal(0, 2, 10), act), FULL, seed=k)
        assert r.contraction_certified
        assert r.n_equilibria == 1 and r.n_stable == 1
        assert r.n_estimate == 1.0 and r.n_estimate_se == 0.0
        assert r.hits[0] == r.n_converged > 0.9 * r.n_starts


def test_tanh_zero_input_odd_symmetric_count():
    rng = np.random.default_rng(13)
    for k, g in enumerate([1.5, 2.5, 3.0]):
        N = 4
        W = rng.normal(0, g / np.sqrt(N), (N, N))
        r = find_equilibria(Network(W, np.zeros(N), "tanh"), seed=k)
        assert r.n_equilibria % 2 == 1
        assert np.min(np.max(np.abs(r.x), axis=1)) < 1e-12  # contains 0
        assert match(r.x, -r.x, 1e-9)  # symmetric under x -> -x
        # SCIENCE.md 6: x = 0 stable iff the spectral abscissa of W is < 1
        zero = np.argmin(np.max(np.abs(r.x), axis=1))
        stable0 = r.eq_type[zero] in (EquilibriumType.stable_node, EquilibriumType.stable_focus)
        assert stable0 == (np.max(np.linalg.eigvals(W).real) < 1)


def brute_force_2d(W: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """All equilibria of a 2-unit logistic network by a 1-D reduction and sign changes.

    From f_1 = 0: sigma(x2) = (x1 - theta1 - W11 sigma(x1)) / W12, so x2 = logit(...) where the
    right side is in (0, 1); then g(x1) = f_2(x1, x2(x1)) changes sign at every simple root.
    """
    s = get_activation("logistic").sigma
    lo = theta[0] + min(W[0, 0], 0) + min(W[0, 1], 0)
    hi = theta[0] + max(W[0, 0], 0) + max(W[0, 1], 0)

    def x2_of(x1):
        u = (x1 - theta[0] - W[0, 0] * s(x1)) / W[0, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((u > 0) & (u < 1), np.log(u / (1 - u)), np.nan)

    def g(x1):
        x2 = x2_of(x1)
        return -x2 + theta[1] + W[1, 0] * s(x1) + W[1, 1] * s(x2)

    grid = np.linspace(lo - 1e-3 * np.pi, hi + 1e-3 * np.e, 400_001)  # no grid point on a root
    v = g(grid)
    roots = []
    for i in np.flatnonzero(
        np.isfinite(v[:-1]) & np.isfinite(v[1:]) & (np.sign(v[:-1]) != np.sign(v[1:]))
    ):
        x1 = brentq(g, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-15)
        roots.append([x1, float(x2_of(x1))])
    return np.array(roots).reshape(-1, 2)


def test_two_units_match_brute_force():
    st = EquilibriumSettings()
    rng = np.random.default_rng(14)
    cases = [np.array([[8.0, -1.0], [-1.0, 8.0]])] + [rng.normal(0, 6.0, (2, 2)) for _ in range(5)]
    total = 0
    for k, W in enumerate(cases):
        theta = -W.sum(axis=1) / 2 + rng.normal(0, 0.5, 2) * (k > 0)
        net = Network(W, theta, "logistic")
        ref = brute_force_2d(W, theta)
        r = find_equilibria(net, st, seed=k)
        assert match(r.x, ref, 1e-8), (k, r.x, ref)
        total += len(ref)
    assert total > len(cases)  # the cases include multistable networks (9 equilibria in the first)


def test_lowrank_reduction_matches_full_search_and_1d_count():
    rng = np.random.default_rng(15)
    N = 8
    u = rng.normal(0, 1, N)
    v = u + rng.normal(0, 0.3, N)  # overlapping left/right vectors: multistable
    W = 7.0 * np.outer(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    theta = rng.normal(0, 0.1, N)
    net = Network(W, theta, "tanh")
    low = find_equilibria(net, seed=1)
    full = find_equilibria(net, FULL, seed=1)
    assert low.method == EquilibriumMethod.lowrank and low.rank == 1
    assert full.method == EquilibriumMethod.newton
    assert match(low.x, full.x, 1e-8)
    # independent 1-D count: kappa = s v_hat . tanh(theta + u_hat kappa)
    uh, vh, s = u / np.linalg.norm(u), v / np.linalg.norm(v), 7.0
    h = lambda k: -k + s * np.tanh(theta[None, :] + np.outer(k, uh)) @ vh
    grid = np.linspace(-s * np.abs(vh).sum() - 1e-3 * np.pi, s * np.abs(vh).sum(), 200_001)
    hv = h(grid)
    n_sign = int(np.sum(np.sign(hv[:-1]) != np.sign(hv[1:])))
    assert low.n_equilibria == n_sign >= 3
    np.testing.assert_array_less(residual(net, low.x), 1e-14)


def test_jacobian_eigenvalues_match_finite_differences():
    rng = np.random.default_rng(16)
    N = 5
    W = rng.normal(0, 8 / np.sqrt(N), (N, N))
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    r = find_equilibria(net, seed=3)
    assert r.n_equilibria >= 1
    h = 1e-6
    for x, ev in zip(r.x, r.jacobian_eigenvalues):
        E = np.eye(N) * h
        Jfd = (net.vector_field(x + E) - net.vector_field(x - E)).T / (2 * h)
        ref = np.linalg.eigvals(Jfd)
        d = np.abs(ev[:, None] - ref[None, :])
        assert np.all(d.min(axis=1) < 1e-7) and np.all(d.min(axis=0) < 1e-7)
        assert np.all(np.diff(ev.real) <= 0)  # sorted by real part descending


def test_results_are_refined_and_classified():
    rng = np.random.default_rng(17)
    N = 6
    W = rng.normal(0, 8 / np.sqrt(N), (N, N))
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    r = find_equilibria(net, seed=4)
    np.testing.assert_array_less(r.residual, 1e-10)
    np.testing.assert_allclose(residual(net, r.x), r.residual, rtol=0, atol=1e-15)
    # eigenvalues from an independent finite-difference Jacobian decide the types
    E = EquilibriumType
    for x, t, nu in zip(r.x, r.eq_type, r.n_unstable_dims):
        J = np.array([(net.vector_field(x + h) - net.vector_field(x - h)) / 2e-6 for h in 1e-6 * np.eye(N)]).T
        re = np.linalg.eigvals(J).real
        assert nu == (re > 0).sum()
        assert (t in (E.stable_node, E.stable_focus)) == bool(np.all(re < 0))
        assert (t == E.saddle) == bool(np.any(re > 0) and np.any(re < 0))
    assert r.hits.sum() == r.n_converged
    stable = r.stable
    assert not np.any(np.diff(stable.astype(int)) > 0)  # stable ones first


def test_classification_cases():
    ev = np.array(
        [
            [-1 + 2j, -1 - 2j, -3],  # stable focus
            [-0.5, -1 + 2j, -1 - 2j],  # stable node (leading eigenvalue real)
            [1.0, -1.0, -2.0],  # saddle, 1 unstable direction
            [2.0, 1.0 + 1j, 1.0 - 1j],  # unstable focus (slowest growth complex)
            [3.0, 2.0, 1.0],  # unstable node
            [0.0, -1.0, -2.0],  # non-hyperbolic
        ]
    )
    t, nu = classify_equilibrium(ev)
    E = EquilibriumType
    assert list(t) == [
        E.stable_focus,
        E.stable_node,
        E.saddle,
        E.unstable_focus,
        E.unstable_node,
        E.non_hyperbolic,
    ]
    assert list(nu) == [0, 0, 1, 3, 3, 0]


def test_chao1_values():
    # hand-computed: n = 12 hits, f1 = 3, f2 = 2, S_obs = 6, A = 11/12;
    # S = 6 + A 3*2/(2*3) = 6.91667; var = A + A^2 75/36 + A^2 72/324 = 2.853974
    est, se = chao1(np.array([1, 1, 1, 2, 2, 5]), 6)
    assert est == pytest.approx(6.916666666666667, rel=1e-14)
    assert se == pytest.approx(np.sqrt(2.8539737654320985), rel=1e-12)
    # f2 = 0: n = 8, f1 = 3, A = 7/8: S = 4 + A 3 = 6.625;
    # var = A 3 + A^2 3*25/4 - A^2 81/(4 S) = 2.625 + 14.35547 - 2.34021 = 14.64026
    est, se = chao1(np.array([1, 1, 1, 5]), 4)
    assert est == pytest.approx(6.625, rel=1e-14)
    assert se == pytest.approx(np.sqrt(14.640256485849056), rel=1e-12)
    # a doubleton lowers the estimate *and* its uncertainty (the bias-corrected pair)
    est2, se2 = chao1(np.array([1, 1, 1, 2]), 4)
    assert est2 < 6.625 and se2 < se
    assert chao1(np.array([10, 7]), 2) == (2.0, 0.0)  # no singletons: everything seen


def test_deflation_finds_more_from_few_starts():
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    few = EquilibriumSettings(n_starts=3)
    plain = find_equilibria(net, few, seed=0)
    defl = find_equilibria(
        net, EquilibriumSettings(n_starts=3, deflation_rounds=8, deflation_starts=3), seed=0
    )
    assert defl.n_equilibria > plain.n_equilibria
    d = np.max(np.abs(plain.x[:, None] - defl.x[None]), axis=-1)
    assert np.all(d.min(axis=1) < 1e-9)  # deflation keeps what the plain search found
    np.testing.assert_array_less(residual(net, defl.x), 1e-10)
    assert defl.hits.sum() == defl.n_converged == plain.n_converged
    ref = brute_force_2d(W, -W.sum(axis=1) / 2)
    d = np.max(np.abs(defl.x[:, None] - ref[None]), axis=-1)
    assert np.all(d.min(axis=1) < 1e-8)  # every deflation find is a true equilibrium


def test_no_convergence_is_flagged_not_raised():
    rng = np.random.default_rng(18)
    W = rng.normal(0, 4.0, (5, 5))
    r = find_equilibria(
        Network(W, -W.sum(axis=1) / 2, "logistic"),
        EquilibriumSettings(max_iter=0, homotopy_work=0),
        seed=0,
    )
    assert r.status == EquilibriumStatus.no_convergence and r.n_equilibria == 0
    assert r.fraction_converged == 0.0
    assert np.isnan(r.n_estimate) and np.isnan(r.n_estimate_se)
    # a contraction has exactly one equilibrium whether or not the search converged
    Wc = 0.5 * W / np.linalg.norm(W, 2)
    r = find_equilibria(
        Network(Wc, np.zeros(5), "logistic"), EquilibriumSettings(max_iter=0, homotopy_work=0)
    )
    assert r.status == EquilibriumStatus.no_convergence and r.contraction_certified
    assert r.n_estimate == 1.0 and r.n_estimate_se == 0.0


# ------------------------------------------------------------ degenerate equilibria


def _non_hyperbolic_single(r, x_true, atol):
    assert r.n_equilibria == 1, r.x
    assert r.hits[0] == r.n_converged == r.n_starts  # every start is on the one equilibrium
    assert r.eq_type[0] == EquilibriumType.non_hyperbolic
    assert r.status == EquilibriumStatus.unrefined  # its position is known to ~tol^(1/3) only
    np.testing.assert_allclose(r.x[0], x_true, atol=atol)


def test_pitchfork_point_is_one_non_hyperbolic_equilibrium():
    # tanh, W = I, theta = 0: dx/dt = -x + tanh x = -x^3/3 + ..., a triple root at 0 in every
    # unit. Starts stop at residual 1e-10, i.e. up to ~1e-3 from 0, in all directions.
    _non_hyperbolic_single(find_equilibria(Network(np.eye(3), np.zeros(3), "tanh")), 0.0, 2e-3)
    # one critical direction only (W = Q diag(1, 0.5) Q^T)
    c, s_ = np.cos(0.3), np.sin(0.3)
    Q = np.array([[c, -s_], [s_, c]])
    r = find_equilibria(Network(Q @ np.diag([1.0, 0.5]) @ Q.T, np.zeros(2), "tanh"), seed=3)
    _non_hyperbolic_single(r, 0.0, 2e-3)


def test_logistic_cusp_is_one_non_hyperbolic_equilibrium():
    # SCIENCE.md 5: logistic w = 4, theta = -2 is the cusp; x* = 0 with f'(0) = f''(0) = 0
    _non_hyperbolic_single(find_equilibria(Network([[4.0]], [-2.0], "logistic")), 0.0, 2e-3)


def test_near_fold_roots_are_distinct_and_correctly_typed():
    # logistic w = 8: fold at sigma(x) = (1 - 1/sqrt 2)/2; theta just below it has two roots
    # 2 sqrt(delta / |f''|) apart, theta just above it none there (one far root remains)
    sg = (1 - np.sqrt(0.5)) / 2
    x_fold = np.log(sg / (1 - sg))
    th_fold = x_fold - 8 * sg
    for delta, n_near in [(-1e-6, 2), (-1e-10, 2)]:
        r = find_equilibria(Network([[8.0]], [th_fold + delta], "logistic"))
        ref = np.array([brentq(lambda x: -x + 8 / (1 + np.exp(-x)) + th_fold + delta, a, b)
                        for a, b in [(-1.9, x_fold), (x_fold, -1.6), (4, 6)]])
        assert r.n_equilibria == n_near + 1 and r.hits.sum() == r.n_converged
        assert match(r.x, ref[:, None], 1e-8)
        types = sorted(int(t) for t in r.eq_type)
        E = EquilibriumType
        assert types == sorted([E.stable_node, E.stable_node, E.unstable_node])
    # beyond the fold: one equilibrium near x_fold within the residual tolerance (a ghost)
    r = find_equilibria(Network([[8.0]], [th_fold + 1e-10], "logistic"))
    assert r.n_equilibria == 2 and r.status == EquilibriumStatus.unrefined
    assert sorted(int(t) for t in r.eq_type) == [E.stable_node, E.non_hyperbolic]


def test_double_root_is_not_called_hyperbolic():
    # cubic neuron with a double root at x = sqrt 2 (f = f' = 0 there)
    r = find_equilibria(Network([[8.0]], [-4 - 2 * np.sqrt(2) / 3], "cubic"))
    i = np.argmin(np.abs(r.x[:, 0] - np.sqrt(2)))
    assert abs(r.x[i, 0] - np.sqrt(2)) < 1e-7
    assert r.eq_type[i] == EquilibriumType.non_hyperbolic


def test_refined_equilibria_are_distinct_and_inside_the_exact_box():
    rng = np.random.default_rng(21)
    for act, g in [("logistic", 8.0), ("tanh", 2.5)]:
        N = 8
        W = rng.normal(0, g / np.sqrt(N), (N, N))
        theta = -W.sum(axis=1) / 2 if act == "logistic" else rng.normal(0, 0.2, N)
        r = find_equilibria(Network(W, theta, act), seed=5)
        d = np.max(np.abs(r.x[:, None] - r.x[None]), axis=-1) + np.eye(r.n_equilibria) * 1e9
        assert np.all(d > 1e-6 * (1 + np.abs(r.x).max()))
        a, b = (0.0, 1.0) if act == "logistic" else (-1.0, 1.0)
        lo = theta + np.minimum(a * W, b * W).sum(axis=1)  # SCIENCE.md 3, written out
        hi = theta + np.maximum(a * W, b * W).sum(axis=1)
        assert np.all((r.x >= lo) & (r.x <= hi))


@pytest.mark.parametrize("act,lip", [("logistic", 0.25), ("tanh", 1.0)])
def test_contraction_certificate_threshold(act, lip):
    rng = np.random.default_rng(22)
    W = rng.normal(0, 1, (6, 6))
    W /= np.linalg.norm(W, 2) * lip
    assert contraction_certificate(0.99 * W, get_activation(act))
    assert not contraction_certificate(1.01 * W, get_activation(act))
    assert not contraction_certificate(W, get_activation("cubic"))  # no global Lipschitz bound


# -------------------------------------------------------------- dataset and batching


def _mixed_batch(N=6, B=5):
    rng = np.random.default_rng(19)
    W = rng.normal(0, 8 / np.sqrt(N), (B, N, N))
    W[1] = np.tril(W[1], -1)  # feedforward
    W[2] = 8 * np.outer(rng.normal(size=N), rng.normal(size=N)) / N  # rank 1
    W[3] *= 0.1  # contraction
    theta = -W.sum(axis=2) / 2
    return NetworkBatch(W, theta, "logistic"), [101, 7, 33, 2**40 + 5, 0]


def test_batch_equals_alone_bitwise():
    batch, seeds = _mixed_batch()
    st = EquilibriumSettings(n_starts=64, chunk_elements=3000)  # several chunks
    ds = equilibria_dataset(batch, seeds, st)
    methods = set(ds.equilibrium_method.values.tolist())
    assert {
        EquilibriumMethod.newton,
        EquilibriumMethod.feedforward,
        EquilibriumMethod.lowrank,
    } <= methods
    for b in range(len(batch)):
        one = equilibria_dataset(
            NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], "logistic"), [seeds[b]], st
        )
        n = int(one.n_equilibria[0])
        assert n == int(ds.n_equilibria[b])
        for name, var in one.data_vars.items():
            a, c = var.values[0], ds[name].values[b]
            if "equilibrium" in var.dims:
                a, c = a[:n], c[:n]
            assert a.tobytes() == c.tobytes(), name
        # padding beyond n is the fill value
        assert np.all(np.isnan(ds.x_eq.values[b, n:])) and np.all(ds.eq_type.values[b, n:] == -1)
    # a different batch order gives the same per-network bytes
    perm = [4, 2, 0, 3, 1]
    ds2 = equilibria_dataset(
        NetworkBatch(batch.W[perm], batch.theta[perm], "logistic"), [seeds[p] for p in perm], st
    )
    for i, p in enumerate(perm):
        n = int(ds.n_equilibria[p])
        assert ds2.x_eq.values[i, :n].tobytes() == ds.x_eq.values[p, :n].tobytes()
        assert (
            ds2.jacobian_eigenvalues.values[i, :n].tobytes()
            == ds.jacobian_eigenvalues.values[p, :n].tobytes()
        )


def test_dataset_schema():
    batch, seeds = _mixed_batch()
    ds = equilibria_dataset(batch, seeds, EquilibriumSettings(n_starts=32))
    required = {
        "n_equilibria": ("network",),
        "n_stable": ("network",),
        "n_equilibria_estimate": ("network",),
        "n_equilibria_estimate_se": ("network",),
        "fraction_converged": ("network",),
        "contraction_certified": ("network",),
        "equilibrium_method": ("network",),
        "equilibrium_status": ("network",),
        "x_eq": ("network", "equilibrium", "unit"),
        "eq_residual": ("network", "equilibrium"),
        "eq_type": ("network", "equilibrium"),
        "eq_hits": ("network", "equilibrium"),
        "n_unstable_dims": ("network", "equilibrium"),
        "jacobian_eigenvalues": ("network", "equilibrium", "mode"),
    }
    for name, dims in required.items():
        assert ds[name].dims == dims, name
    for name, var in ds.data_vars.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name
    for name in ["eq_type", "equilibrium_method", "equilibrium_status", "contraction_certified"]:
        assert len(ds[name].attrs["flag_values"]) == len(ds[name].attrs["flag_meanings"].split())
    assert ds.jacobian_eigenvalues.dtype == np.complex128
    assert ds.sizes["unit"] == ds.sizes["mode"] == batch.n_units
    assert int(ds.contraction_certified[3]) == 1
    n = ds.n_equilibria.values
    for b in range(len(batch)):  # real entries are never NaN
        assert np.all(np.isfinite(ds.x_eq.values[b, : n[b]]))
        assert np.all(np.isfinite(ds.jacobian_eigenvalues.values[b, : n[b]]))
    for name in ["n_equilibria_estimate", "n_equilibria_estimate_se", "fraction_converged"]:
        assert np.all(np.isfinite(ds[name].values))
    assert np.all(ds.n_equilibria_estimate.values >= n)
    hits = np.where(ds.eq_hits.values > 0, ds.eq_hits.values, 0).sum(axis=1)
    np.testing.assert_array_equal(hits, ds.n_converged.values)
    np.testing.assert_allclose(
        ds.fraction_converged.values[ds.n_starts.values > 0],
        (ds.n_converged / ds.n_starts).values[ds.n_starts.values > 0],
    )


def test_custom_activation_is_rejected_by_the_search():
    from koopnet.activations import Activation

    own = Activation("mine", np.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: 0 * x, 1.0, (-1.0, 1.0))
    with pytest.raises(ValueError, match="built-in activations"):
        find_equilibria(Network(np.ones((2, 2)), np.zeros(2), own), FULL)


def test_settings_from_config_section():
    st = EquilibriumSettings(**{"n_starts": 16, "tol_residual": 1e-11, "box_halfwidth": 5.0})
    assert st.n_starts == 16
    r = find_equilibria_batch(NetworkBatch(np.zeros((1, 3, 3)), np.ones((1, 3)), "cubic"), [0], st)[
        0
    ]
    # W = 0 is feedforward: x = theta exactly
    assert r.method == EquilibriumMethod.feedforward and np.array_equal(r.x, np.ones((1, 3)))


def test_lowrank_unbounded_cubic_matches_full_search():
    rng = np.random.default_rng(21)
    N = 5
    u = rng.normal(0, 1, N)
    W = 6.0 * np.outer(u, u + rng.normal(0, 0.2, N)) / N
    net = Network(W, rng.normal(0, 0.2, N), "cubic")
    low = find_equilibria(net, seed=2)
    full = find_equilibria(net, FULL, seed=2)
    assert low.method == EquilibriumMethod.lowrank and low.rank == 1
    assert low.n_equilibria >= 2 and match(low.x, full.x, 1e-8)
    np.testing.assert_array_less(residual(net, low.x), 1e-12)


# ------------------------------------------------ hybrid search internals (factored Broyden)


@pytest.mark.parametrize("n_updates", [1, 3, None])
def test_hybrid_broyden_variants_match_brute_force(n_updates):
    """The hybrid search, with the exact Jacobian re-evaluated after 1, 3 or the default number
    of Broyden updates, lands only on exact 2-unit equilibria and finds all nine from 256 starts."""
    from koopnet import _equilibria_newton as eqn
    from koopnet.equilibria import _dedup, _draw_unit_starts, search_box

    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    theta = -W.sum(axis=1) / 2
    net = Network(W, theta, "logistic")
    lo, hi, _ = search_box(W, theta, net.activation)
    y0 = lo + (hi - lo) * _draw_unit_starts([0], 256, 2)
    prob = eqn.NewtonProblem(A=W[None], c=None, basis=None, e=theta[None], activation=net.activation)
    y, code, _, _ = eqn.powell_hybrid(
        prob, y0, tol=1e-10, max_iter=200, divergence_radius=1e8, n_updates=n_updates
    )
    ok = code == eqn.StartCode.converged
    lab = _dedup(y, ok, 1e-6)[0]
    roots = y[0, lab == np.arange(256)]
    assert match(roots, brute_force_2d(W, theta), 1e-8)


def test_compiled_search_does_not_depend_on_the_other_starts():
    """A start's result (bits) does not depend on which other starts share the kernel call."""
    from koopnet._hybrid_kernel import hybrid_search

    rng = np.random.default_rng(31)
    N, B, S = 12, 2, 24
    W = rng.normal(0, 8 / np.sqrt(N), (B, N, N))
    theta = -W.sum(axis=2) / 2
    net = np.repeat(np.arange(B), S)
    y0 = rng.uniform(-4, 4, (B * S, N))
    kw = dict(tol=1e-10, max_iter=200, divergence_radius=1e8)
    ref = hybrid_search(W, None, None, theta, "logistic", net, y0, **kw)
    sub = np.arange(0, B * S, 3)[::-1]  # other starts, other order
    out = hybrid_search(W, None, None, theta, "logistic", net[sub], y0[sub], **kw)
    for a, b in zip(ref, out):
        assert a[sub].tobytes() == b.tobytes()
    assert np.any(ref[1] == 1)  # something converged


def test_hybrid_start_at_a_root_converges_at_once():
    """A start on a root (model Jacobian exact there) converges without a step; one near it
    converges to it in a few steps: the factored J and H stay consistent."""
    from koopnet._equilibria_newton import NewtonProblem, StartCode, powell_hybrid

    rng = np.random.default_rng(21)
    N = 12
    W = rng.normal(0, 8 / np.sqrt(N), (N, N))
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    r = find_equilibria(net, seed=5)
    x0 = r.x[0]
    prob = NewtonProblem(
        A=W[None], c=None, basis=None, e=net.theta[None], activation=net.activation
    )
    y0 = np.stack([x0, x0 + 1e-4 * rng.normal(size=N)])[None]
    y, code, res, it = powell_hybrid(prob, y0, tol=1e-10, max_iter=50, divergence_radius=1e8)
    assert np.all(code == StartCode.converged)
    assert it[0, 0] == 0 and it[0, 1] <= 6
    assert np.max(np.abs(y[0, 1] - x0)) < 1e-8


def test_index_sum_proves_incompleteness():
    # SCIENCE.md 1: W = [[8, -1], [-1, 8]] has 4 attractors, 4 saddles and 1 repeller:
    # 4 - 4 + 1 = 1. Brute force gives the truth; two starts cannot find all nine.
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    theta = -W.sum(axis=1) / 2
    truth = brute_force_2d(W, theta).shape[0]
    assert truth == 9
    net = Network(W, theta, "logistic")
    full = find_equilibria(net, seed=0)
    assert full.n_equilibria == 9 and full.index_sum == 1 and full.n_missing_min == 0
    for n_starts in (1, 2, 3, 5):
        r = find_equilibria(net, EquilibriumSettings(n_starts=n_starts, index_retries=0), seed=0)
        expected = int(np.sum((-1) ** r.n_unstable_dims))
        assert r.index_sum == expected
        assert r.n_missing_min == abs(1 - expected) <= truth - r.n_equilibria
    r = find_equilibria(net, EquilibriumSettings(n_starts=2, index_retries=0), seed=0)
    assert r.n_equilibria < 9 and r.n_missing_min >= 1
    # not applicable: unbounded activation, or a non-hyperbolic equilibrium
    assert find_equilibria(Network([[2.0]], [0.3], "cubic")).index_sum is None
    assert find_equilibria(Network([[4.0]], [-2.0], "logistic")).n_missing_min == -1


def test_index_deficit_triggers_a_search_with_more_starts():
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    few = EquilibriumSettings(n_starts=2, index_retries=0, homotopy_work=0)
    r0 = find_equilibria(net, few, seed=0)
    assert r0.n_missing_min > 0 and r0.n_starts == 2
    r = find_equilibria(net, EquilibriumSettings(n_starts=2, index_retries=5, homotopy_work=0), seed=0)
    k = int(np.log2(r.n_starts // 2))
    assert r.n_starts == 2 * 2**k and 1 <= k <= 5
    # stops as soon as nothing is provably missing beyond what Chao1 expects
    assert r.n_missing_min == 0 or k == 5 or chao1(r.hits, r.n_equilibria)[0] >= r.n_equilibria + r.n_missing_min
    # the kept search is exactly a plain search with that many starts ...
    direct = find_equilibria(net, EquilibriumSettings(n_starts=r.n_starts, index_retries=0, homotopy_work=0), seed=0)
    np.testing.assert_array_equal(r.x, direct.x)
    np.testing.assert_array_equal(r.hits, direct.hits)
    # ... and keeps what the smaller search found (its starts come first; the network is
    # centered, so an equilibrium and its reflection are merged and either may represent it,
    # both refined to round-off)
    d = np.max(np.abs(r0.x[:, None] - r.x[None]), axis=-1)
    assert np.all(d.min(axis=1) <= 1e-13)
    assert r.n_equilibria >= r0.n_equilibria


def test_retries_only_where_the_index_refutes_chao1():
    rng = np.random.default_rng(23)
    retried = 0
    for k in range(12):
        N = 10
        W = rng.normal(0, 3.0 / np.sqrt(N), (N, N))
        net = Network(W, rng.normal(0, 0.3, N), "tanh")
        # early stop off: the retry is what is tested
        plain = EquilibriumSettings(n_starts=48, index_retries=0, homotopy_work=0, stop_expected_missing=0)
        r0 = find_equilibria(net, plain, seed=k)
        r = find_equilibria(net, replace(plain, index_retries=1), seed=k)
        refuted = r0.n_missing_min > 0 and chao1(r0.hits, r0.n_equilibria)[0] < r0.n_equilibria + r0.n_missing_min
        assert (r.n_starts == 96) == refuted and (r.n_starts == 48) == (not refuted)
        retried += refuted
    assert retried >= 1


def test_estimate_is_never_below_the_proven_lower_bound():
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    for n_starts in (1, 2, 3, 5, 8):
        r = find_equilibria(net, EquilibriumSettings(n_starts=n_starts, index_retries=0), seed=1)
        assert r.n_estimate >= r.n_equilibria + r.n_missing_min
        plain, _ = chao1(r.hits, r.n_equilibria)
        assert r.n_estimate == max(plain, r.n_equilibria + r.n_missing_min)


# ------------------------------------------------------------------ homotopy paths

HOMOTOPY_ONLY = EquilibriumSettings(random_start_max_units=0)  # every N counts as large


def test_homotopy_finds_the_unique_equilibrium_of_a_contraction():
    """A contraction has exactly one equilibrium (Banach); every homotopy path reaches it, so
    one path is run (no random start is used)."""
    rng = np.random.default_rng(41)
    N = 7
    W = rng.normal(size=(N, N))
    W *= 3.0 / np.linalg.norm(W, 2)  # ||W||_2 Lip = 0.75 < 1
    theta = rng.normal(0, 1, N)
    net = Network(W, theta, "logistic")
    x = theta.copy()
    for _ in range(400):  # Picard iteration, contraction factor 0.75
        x = theta + W @ net.activation.sigma(x)
    r = find_equilibria(net, HOMOTOPY_ONLY, seed=2)
    assert r.contraction_certified and r.n_starts == 0
    assert r.n_equilibria == 1 and np.max(np.abs(r.x[0] - x)) < 1e-12
    assert r.strategy[0] == EquilibriumStrategy.homotopy
    assert r.crossings[0] == 1  # certified unique: one path, which crosses lam = 1 once


@pytest.mark.parametrize("k", range(6))
def test_homotopy_finds_only_true_equilibria_and_at_least_one(k):
    """Past the transition, homotopy crossings are exact equilibria (brute force in 2-D), at least one per network."""
    rng = np.random.default_rng(100 + k)
    W = rng.normal(0, 6.0, (2, 2)) if k else np.array([[8.0, -1.0], [-1.0, 8.0]])
    theta = -W.sum(axis=1) / 2 + rng.normal(0, 0.5, 2) * (k > 0)
    ref = brute_force_2d(W, theta)
    r = find_equilibria(Network(W, theta, "logistic"), HOMOTOPY_ONLY, seed=k)
    assert r.n_equilibria >= 1 and r.n_starts == 0
    d = np.max(np.abs(r.x[:, None] - ref[None]), axis=-1)
    assert np.all(d.min(axis=1) < 1e-8)
    # k = 0 is odd-symmetric: mirror images of the crossings may come from reflection
    hom = r.strategy == EquilibriumStrategy.homotopy
    assert hom.any() and np.all(hom | (r.strategy == EquilibriumStrategy.reflection) * (k == 0))
    assert np.all(r.crossings[hom] >= 1)


def test_homotopy_takes_over_where_random_starts_find_nothing():
    """Random starts that cannot converge (max_iter = 0) leave the network to the homotopy
    paths, which find its equilibrium: status ok, the strategy says who found it."""
    rng = np.random.default_rng(18)
    W = rng.normal(0, 4.0, (5, 5))
    net = Network(W, -W.sum(axis=1) / 2, "logistic")  # x = 0 is an equilibrium (centered)
    r = find_equilibria(net, EquilibriumSettings(max_iter=0), seed=0)
    assert r.status == EquilibriumStatus.ok and r.n_equilibria >= 1 and r.n_converged == 0
    assert np.all(r.strategy == EquilibriumStrategy.homotopy)
    np.testing.assert_array_less(residual(net, r.x), 1e-14)


def test_default_search_is_complete_where_the_truth_is_known():
    """Exhaustive truth: 2-unit networks by brute force (sign changes of the 1-D reduction,
    refined by brentq) and rank-1 networks by the exact 1-D reduction. The default search
    finds every equilibrium (the target is >= 99 %; on these cases all)."""
    rng = np.random.default_rng(51)
    total = found = 0
    for k in range(12):
        W = rng.normal(0, 6.0, (2, 2))
        theta = -W.sum(axis=1) / 2 + rng.normal(0, 0.5, 2)
        ref = brute_force_2d(W, theta)
        r = find_equilibria(Network(W, theta, "logistic"), seed=k)
        d = np.max(np.abs(ref[:, None] - r.x[None]), axis=-1)
        total += len(ref)
        found += int(np.sum(d.min(axis=1) < 1e-8))
    for k in range(6):  # rank 1, N = 30: kappa = s v.tanh(theta + u kappa), sign changes on a grid
        N = 30
        u, v = rng.normal(size=N), rng.normal(size=N)
        v = u + 0.5 * v
        uh, vh = u / np.linalg.norm(u), v / np.linalg.norm(v)
        s = 6.0
        theta = rng.normal(0, 0.1, N)
        net = Network(s * np.outer(uh, vh), theta, "tanh")
        h = lambda kap: -kap + s * np.tanh(theta[None, :] + np.outer(kap, uh)) @ vh
        grid = np.linspace(-s * np.abs(vh).sum() - 1e-3 * np.pi, s * np.abs(vh).sum(), 200_001)
        hv = h(grid)
        truth = int(np.sum(np.sign(hv[:-1]) != np.sign(hv[1:])))
        r = find_equilibria(net, seed=k)
        total += truth
        found += min(r.n_equilibria, truth)
        assert r.n_equilibria <= truth
    assert found == total


def test_strategy_flags_in_the_dataset_and_batch_independence_with_homotopy():
    batch, seeds = _mixed_batch()
    ds = equilibria_dataset(batch, seeds, HOMOTOPY_ONLY)
    assert ds.eq_strategy.attrs["flag_meanings"].split()[0] == "padding"
    newton = ds.equilibrium_method.values == EquilibriumMethod.newton
    n = ds.n_equilibria.values
    for b in np.flatnonzero(newton):
        assert np.all(ds.eq_strategy.values[b, : n[b]] == EquilibriumStrategy.homotopy)
        assert np.all(ds.eq_crossings.values[b, : n[b]] >= 1) and ds.n_starts.values[b] == 0
    assert np.all(ds.eq_strategy.values[ds.equilibrium_method.values == EquilibriumMethod.feedforward, 0] == EquilibriumStrategy.exact)
    for b in range(len(batch)):
        one = equilibria_dataset(
            NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], "logistic"), [seeds[b]], HOMOTOPY_ONLY
        )
        k = int(one.n_equilibria[0])
        for name in ("x_eq", "eq_crossings", "eq_strategy", "n_equilibria_estimate"):
            a, c = one[name].values[0], ds[name].values[b]
            if "equilibrium" in one[name].dims:
                a, c = a[:k], c[:k]
            assert a.tobytes() == c.tobytes(), name


def test_reflection_completes_the_pairs_of_an_odd_symmetric_network():
    """Centered logistic: f(-x) = -f(x) exactly, so the equilibria are symmetric under x -> -x.
    Few starts find some; every one found comes with its mirror image."""
    rng = np.random.default_rng(61)
    N = 12
    W = rng.normal(0, 8 / np.sqrt(N), (N, N))
    net = Network(W, -0.5 * W.sum(axis=1), "logistic")
    r = find_equilibria(net, EquilibriumSettings(n_starts=8, index_retries=0), seed=3)
    d = np.max(np.abs(r.x[:, None] + r.x[None]), axis=-1)  # distance of -x_i to x_j
    assert np.all(d.min(axis=1) <= 1e-12)
    assert np.any(r.strategy == EquilibriumStrategy.reflection)
    np.testing.assert_array_less(residual(net, r.x), 1e-14)
    # a mirror pair shares its eigenvalues (J(-x) = J(x), sigma' even): computed once, equal to
    # those of the Jacobian at each point (eigenvalue condition ~ 1e-12 here)
    J = -np.eye(N) + net.W * net.activation.dsigma(r.x)[:, None, :]
    for i, j in enumerate(d.argmin(axis=1)):
        assert r.jacobian_eigenvalues[i].tobytes() == r.jacobian_eigenvalues[j].tobytes()
        direct = np.sort_complex(np.linalg.eigvals(J[i]))
        np.testing.assert_allclose(np.sort_complex(r.jacobian_eigenvalues[i]), direct, atol=1e-10)
    # not symmetric: no reflection
    net2 = Network(W, -0.5 * W.sum(axis=1) + 0.1, "logistic")
    r2 = find_equilibria(net2, EquilibriumSettings(n_starts=8, index_retries=0), seed=3)
    assert not np.any(r2.strategy == EquilibriumStrategy.reflection)


def test_random_starts_stop_when_saturated_as_a_search_with_that_many_starts():
    """Sequential stopping: starts run in rounds (min_starts, then start_batch more) and a
    network stops once the index sum of what it found is 1 and Chao1 expects < 1 missing. A
    network that stopped after n starts has exactly the result of a plain search with n starts,
    and whether and when it stops does not depend on the other networks of the batch."""
    rng = np.random.default_rng(71)
    N, B = 24, 4
    W = rng.normal(0, 8 / np.sqrt(N), (B, N, N))
    theta = -W.sum(axis=2) / 2
    theta[2:] += rng.normal(0, 0.5, (2, N))  # networks 2, 3 are not odd-symmetric
    seeds = [3, 5, 7, 11]
    st = EquilibriumSettings(n_starts=512, min_starts=16, start_batch=16, index_retries=0, homotopy_work=0)
    res = find_equilibria_batch(NetworkBatch(W, theta, "logistic"), seeds, st)
    used = [r.n_starts for r in res]
    assert min(used) < 512 and len(set(used)) > 1  # stopped early, in different rounds
    for b, r in enumerate(res):
        net = Network(W[b], theta[b], "logistic")
        alone = find_equilibria(net, st, seed=seeds[b])
        assert alone.n_starts == r.n_starts
        assert alone.x.tobytes() == r.x.tobytes() and alone.hits.tobytes() == r.hits.tobytes()
        if r.n_starts < 512:
            assert r.n_starts % 16 == 0
            assert r.index_sum == 1 and r.n_estimate - r.n_equilibria < st.stop_expected_missing
            plain = find_equilibria(net, replace(st, n_starts=r.n_starts, stop_expected_missing=0), seed=seeds[b])
            assert plain.x.tobytes() == r.x.tobytes() and plain.hits.tobytes() == r.hits.tobytes()


def test_mirror_pooled_chao1():
    """Odd-symmetric networks: Chao1 over the pairs {x*, -x*} with summed hits, in equilibria.
    Pairs hit (1, 0), (1, 1) and x* = 0 hit 2: pooled counts 1, 2, 2 over 3 species, n = 5:
    chao1 = 3 + (4/5) 1 * 0 / (2 * 3) = 3 pairs -> 2 * 3 - 1 = 5 equilibria, all observed; the
    standard error is twice that of the pooled counts."""
    a, c = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    x = np.array([a, -a, c, -c, [0.0, 0.0]])[[0, 2, 3, 4]]  # -a not found: reflection adds it
    est, se, observed = _mirror_chao1(x, np.array([1, 1, 1, 2]), 1e-6)
    assert observed == 5 and est == 5.0 and se == 2 * chao1(np.array([1, 2, 2]), 3)[1] > 0
    # two singleton pairs, no doubletons: chao1 = 2 + (1/2) 2 * 1 / 2 = 2.5 pairs -> 5 equilibria
    est, _, observed = _mirror_chao1(np.array([a, c]), np.array([1, 1]), 1e-6)
    assert observed == 4 and est == 5.0


def test_homotopy_path_never_crosses_twice_at_one_equilibrium():
    """A path is a smooth curve through (x*, 1) once for each equilibrium it crosses at (x* is
    regular), so the crossings of one path are distinct; a repeat means the tracker jumped or
    the crossing's Newton refinement converged elsewhere (3 repeats on this network before the
    crossing-step rule). g = 8, N = 50: paths fold across lam = 1 many times."""
    from koopnet._equilibria_homotopy import homotopy_crossings
    from koopnet._random import stage_rng
    from koopnet.equilibria import _dedup

    N = 50
    W = np.random.default_rng(50_000).normal(0.0, 8.0 / np.sqrt(N), (N, N))
    net = Network(W, -W.sum(axis=1) / 2, "logistic")
    b = net.theta + stage_rng(50_000, "equilibria_homotopy").random((8, N)) @ W.T
    x, path, _ = homotopy_crossings(W, net.theta, net.activation, b, max_work=3000, tol=1e-10)
    assert np.bincount(path).max() >= 9  # folding paths
    np.testing.assert_array_less(residual(net, x), 1e-10)
    for p in np.unique(path):
        xp = x[path == p]
        lab = _dedup(xp[None], np.ones((1, len(xp)), bool), 1e-6)[0]
        assert np.all(lab == np.arange(len(xp))), p


def test_is_feedforward_cycles_of_every_length():
    """Acyclic support <=> feedforward: a self-loop, a 2-cycle and a 3-cycle (no shorter one)
    are all cycles; a strictly lower-triangular pattern, permuted, is acyclic. Batches mixing
    both answer per matrix."""
    N = 5
    ff = np.tril(np.ones((N, N)), -1)
    perm = np.random.default_rng(3).permutation(N)
    ff = ff[perm][:, perm]
    self_loop = ff.copy()
    self_loop[2, 2] = 1.0
    two = np.zeros((N, N))
    two[0, 1] = two[1, 0] = 1.0
    three = np.zeros((N, N))
    three[1, 0] = three[2, 1] = three[0, 2] = 1.0
    assert is_feedforward(ff) and not is_feedforward(self_loop)
    assert not is_feedforward(two) and not is_feedforward(three)
    np.testing.assert_array_equal(is_feedforward(np.stack([ff, three, self_loop, ff])), [True, False, False, True])
    np.testing.assert_array_equal(is_feedforward(np.stack([two, self_loop])), [False, False])
