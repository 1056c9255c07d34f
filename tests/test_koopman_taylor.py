"""Taylor coefficients of sigma, the Koopman lattice and the Taylor (Carleman) generator."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import fsolve

from koopnet import Network, get_activation
from koopnet.koopman import (
    koopman_lattice,
    match_eigenvalues,
    multi_indices,
    residuals,
    sigma_taylor_coefficients,
    taylor_generator,
)


@pytest.mark.parametrize("name", ["logistic", "tanh", "linear", "cubic"])
def test_sigma_taylor_low_orders_match_derivatives(name):
    act = get_activation(name)
    x = np.array([-2.3, -0.4, 0.0, 0.7, 3.1])
    a = sigma_taylor_coefficients(name, x, 6)
    np.testing.assert_allclose(a[:, 0], act.sigma(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(a[:, 1], act.dsigma(x), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a[:, 2] * 2, act.d2sigma(x), rtol=1e-12, atol=1e-15)


def test_sigma_taylor_known_series():
    # tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835
    a = sigma_taylor_coefficients("tanh", np.array(0.0), 9)
    np.testing.assert_allclose(a, [0, 1, 0, -1 / 3, 0, 2 / 15, 0, -17 / 315, 0, 62 / 2835], atol=1e-16)
    # logistic third derivative s(1-s)(1-6s+6s^2); logistic = 1/2 + tanh(x/2)/2
    x = np.array([-1.0, 0.5, 2.0])
    s = 1 / (1 + np.exp(-x))
    a = sigma_taylor_coefficients("logistic", x, 3)
    np.testing.assert_allclose(a[:, 3] * 6, s * (1 - s) * (1 - 6 * s + 6 * s * s), rtol=1e-12)
    a0 = sigma_taylor_coefficients("logistic", np.array(0.0), 9)
    at = sigma_taylor_coefficients("tanh", np.array(0.0), 9)
    k = np.arange(10)
    expect = at / 2 / 2.0**k
    expect[0] += 0.5
    np.testing.assert_allclose(a0, expect, atol=1e-16)
    # complex expansion point agrees with the analytic derivative
    z = np.array(0.3 + 0.4j)
    act = get_activation("logistic")
    np.testing.assert_allclose(sigma_taylor_coefficients("logistic", z, 2)[1], act.dsigma(z), rtol=1e-13)


def test_lattice_pruned_equals_full_enumeration():
    rng = np.random.default_rng(0)
    lam = -rng.uniform(0.2, 3, 5) + 1j * rng.normal(size=5)
    full = multi_indices(5, 4)[1:] @ lam
    full = full[np.lexsort((-full.imag, -full.real))]
    vals, deg = koopman_lattice(lam, 4, 20)
    np.testing.assert_allclose(vals, full[:20], atol=1e-14)
    vals_all, deg_all = koopman_lattice(lam, 4)
    assert vals_all.size == full.size and deg_all.max() == 4 and deg_all.min() == 1


def _eq(net, guess):
    x = fsolve(net.vector_field, guess, xtol=1e-10)
    for _ in range(3):  # Newton polish
        x = x - np.linalg.solve(net.jacobian(x), net.vector_field(x))
    assert np.max(np.abs(net.vector_field(x))) < 1e-12
    return x


@pytest.mark.parametrize(
    "activation,W,theta,guess",
    [
        ("logistic", [[8, -1], [-1, 8]], [-3.5, -3.5], [3, 3]),
        ("logistic", [[8, -1], [-1, 8]], [-3.5, -3.5], [4, -4]),
        ("tanh", [[0.5, -1.2, 0.3], [0.9, 0.2, -0.4], [0.1, 0.7, -0.3]], [0.1, -0.2, 0.3], [0, 0, 0]),
        ("cubic", [[1.0, 0.5], [-0.5, 0.8]], [0.2, -0.1], [0, 0]),
    ],
)
def test_taylor_generator_eigenvalues_are_the_lattice(activation, W, theta, guess):
    net = Network(W, theta, activation)
    x = _eq(net, guess)
    for D in (1, 3, 5):
        tg = taylor_generator(net, x, D)
        lam = np.linalg.eigvals(net.jacobian(x))
        np.testing.assert_allclose(np.sort_complex(tg.principal_eigenvalues[0]), np.sort_complex(lam), atol=1e-12)
        lattice = multi_indices(net.n_units, D) @ lam
        err, _ = match_eigenvalues(lattice, tg.eigenvalues[0])
        assert err.max() <= 1e-10
        assert tg.lattice_error[0] <= 1e-10


@pytest.mark.parametrize(
    "W, theta, activation, guess",
    [
        ([[8, -1], [-1, 8]], [-3.5, -3.5], "logistic", [3, 3]),
        # the conjugate tanh system (W/4, W 1/4 + theta/2) and a cubic network: their sigma has
        # other higher Taylor coefficients, which only the eigenfunctions (not the lattice) see
        ([[2, -0.25], [-0.25, 2]], [0.0, 0.0], "tanh", [1.5, 1.5]),
        ([[1.5, 0.5], [-0.5, 1.0]], [0.3, -0.2], "cubic", [0.5, 0.0]),
    ],
)
def test_taylor_principal_eigenfunctions_converge_with_degree(W, theta, activation, guess):
    net = Network(W, theta, activation)
    x = _eq(net, guess)
    rng = np.random.default_rng(2)
    pts = x + rng.uniform(-0.2, 0.2, (30, 2))
    worst = []
    for D in (2, 4, 6):
        tg = taylor_generator(net, x, D)
        r = max(residuals(tg.as_eigenfunction(m), tg.eigenvalues[0, m], net, pts, t=0.5).max for m in tg.principal_modes())
        worst.append(r)
    assert worst[0] > worst[1] > worst[2]
    assert worst[2] < 1e-4


@pytest.mark.parametrize("activation", ["logistic", "tanh"])
def test_taylor_residual_order_is_the_degree_and_catches_a_wrong_coefficient(activation, monkeypatch):
    """The principal Taylor eigenfunctions' residual against the true f falls like r^D; a wrong
    second-order coefficient of sigma drops the observed order to about 1."""
    from koopnet.koopman import _taylor
    from koopnet.koopman._taylor import taylor_principal_residuals

    W = np.array([[8.0, -1.0], [-1.0, 8.0]]) / (1.0 if activation == "logistic" else 4.0)
    # tanh: the conjugate of the logistic network (x = 2 y), theta = W 1/4 - W 1/4 = 0
    theta = -W.sum(axis=1) / 2 if activation == "logistic" else np.zeros(2)
    net = Network(W, theta, activation)
    x = fsolve(net.vector_field, np.full(2, 3.0 if activation == "logistic" else 1.6), xtol=1e-12)
    lam = np.linalg.eigvals(net.jacobian(x))
    assert np.all(lam.real < 0)
    u = np.random.default_rng(1).standard_normal((1, 40, 2))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    args = (W[None], theta[None], activation, x[None], lam[None])
    for D in (2, 3, 4):
        res, order = taylor_principal_residuals(*args, D, u, 0.05)
        # theory: order D, or D + 1 when the degree-D term of the residual vanishes; 0.2 for the
        # next-order terms at r = 0.05
        assert np.isfinite(res[0]) and D - 0.2 <= order[0] <= D + 1.2, (D, res, order)
    good = _taylor.sigma_taylor_coefficients

    def wrong(act, x0, degree):
        c = good(act, x0, degree).copy()
        c[..., 2] *= 1.5
        return c

    monkeypatch.setattr(_taylor, "sigma_taylor_coefficients", wrong)
    _, order = taylor_principal_residuals(*args, 3, u, 0.05)
    assert order[0] < 1.5, order


def test_taylor_residual_is_nan_where_it_cannot_judge():
    from koopnet.koopman._taylor import taylor_principal_residuals

    u = np.random.default_rng(2).standard_normal((1, 20, 2))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    # feedforward: J = -I + nilpotent, repeated eigenvalue -1 (Jordan block)
    W = np.array([[0.0, 0.0], [3.0, 0.0]])
    th = np.array([0.2, -0.1])
    x = np.array([th[0], th[1] + 3.0 * np.tanh(th[0])])
    res, order = taylor_principal_residuals(W[None], th[None], "tanh", x[None], np.array([[-1.0, -1.0]]), 3, u, 0.05)
    assert np.isnan(res[0]) and np.isnan(order[0])
    # resonance lambda_2 = 2 lambda_1: tanh, x1* = 0.5, w1 sech^2(0.5) = 0.5
    w1 = 0.5 / (1 - np.tanh(0.5) ** 2)
    W = np.array([[w1, 0.0], [2.0, 0.0]])
    th = np.array([0.5 - w1 * np.tanh(0.5), 0.0])
    x = np.array([0.5, 2.0 * np.tanh(0.5)])
    lam = np.array([-0.5, -1.0])
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(Network(W, th, "tanh").jacobian(x)).real), [-1.0, -0.5])
    res, order = taylor_principal_residuals(W[None], th[None], "tanh", x[None], lam[None], 3, u, 0.05)
    assert np.isfinite(res[0]) and np.isnan(order[0])
