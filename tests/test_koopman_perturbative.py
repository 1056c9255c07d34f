"""Perturbative eigenfunctions of W_ff + eps W_rec (SCIENCE.md 2d.4), against exact facts.

- eps = 0: the exact feedforward family (section 2c), computed independently (DOP853 transport).
- (L_eps - lambda) psi^(K) = eps^(K+1) L_1 psi_K when every order solves its equation, so the
  relative generator residual (computed by differentiating the whole construction in x, not from
  the order equations) has log-log slope K + 1 in eps; a corrupted order breaks it.
- Linear activation: the series is the Taylor expansion in eps of the exact linear-network
  eigenfunction with the same data on the reference section, in closed form through e^{At}.
- Nonlinear: the same comparison against the non-perturbative section-matched eigenfunction
  (event-located DOP853 flow of the full network).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from koopnet import Network
from koopnet.koopman import feedforward_family, perturbative_family, section_matched_eigenfunction

LAM = -0.7 + 0.3j
EPS = np.geomspace(0.01, 0.1, 5)  # one decade, inside the asymptotic range of these networks
SLOPE_TOL = 0.25  # the acceptance band on the fitted log-log slope


def _network(activation: str, n: int, seed: int, permute: bool = False):
    rng = np.random.default_rng(seed)
    W = np.tril(rng.normal(size=(n, n)) * 2.0, -1)
    theta = rng.normal(size=n)
    W_rec = rng.normal(size=(n, n))
    perm = rng.permutation(n) if permute else np.arange(n)
    W, theta, W_rec = W[perm][:, perm], theta[perm], W_rec[perm][:, perm]
    net = Network(W, theta, activation)
    source = int(np.flatnonzero(~W.any(axis=1))[0]) if permute else 0
    # sample points away from u = 0: |u| in [0.5, 2], the driven units within 1.5 of theta
    x = theta + rng.uniform(-1.5, 1.5, (12, n))
    x[:, source] = theta[source] + rng.choice([-1.0, 1.0], 12) * rng.uniform(0.5, 2.0, 12)
    return net, W_rec, x


CASES = {
    "logistic-2": ("logistic", 2, 1, False),
    "tanh-2": ("tanh", 2, 2, False),
    "logistic-3": ("logistic", 3, 3, False),
    "tanh-3": ("tanh", 3, 4, False),
    "logistic-5-permuted": ("logistic", 5, 5, True),
}
_TERMS: dict = {}


def _terms(name):
    if name not in _TERMS:
        net, W_rec, x = _network(*CASES[name])
        fam = perturbative_family(net, W_rec, order=2, lam=LAM)
        _TERMS[name] = fam, x, fam.generator_terms(x)
    return _TERMS[name]


def _slope(fam, terms, K, resum="none"):
    r = fam.residual(None, EPS, order=K, terms=terms, resum=resum)  # (E, M)
    rms = np.sqrt(np.mean(r**2, axis=1))
    return np.polyfit(np.log(EPS), np.log(rms), 1)[0]


@pytest.mark.parametrize("name", ["logistic-2", "tanh-3"])
def test_order_zero_is_the_feedforward_family(name):
    fam, x, terms = _terms(name)
    ff = feedforward_family(fam.network_ff)
    exact = ff.eigenfunction(x, LAM)
    # DOP853 at rtol 1e-13 against the spectral transport: agreement to ~1e-12 relative
    np.testing.assert_allclose(terms[0, 0], exact, rtol=1e-10)
    np.testing.assert_allclose(fam.evaluate(terms[0], 0.0), exact, rtol=1e-10)
    # and the zeroth-order generator identity: (L_0 - lambda) psi_0 = 0
    np.testing.assert_allclose(terms[1, 0], LAM * terms[0, 0], rtol=1e-10)


def test_complex_points_and_invariants():
    fam, x, terms = _terms("logistic-2")
    ff = feedforward_family(fam.network_ff)
    z = x + 0.1j * np.linspace(-1, 1, x.size).reshape(x.shape)
    np.testing.assert_allclose(fam.invariants(z), ff.invariants(z), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fam.generator_terms(z)[0, 0], ff.eigenfunction(z, LAM), rtol=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_residual_scales_as_eps_to_the_order_plus_one(name):
    fam, x, terms = _terms(name)
    for K in range(3):
        assert abs(_slope(fam, terms, K) - (K + 1)) <= SLOPE_TOL, (name, K)
        # the exponential resummation is an O(eps^(K+1)) approximation as well
        assert abs(_slope(fam, terms, K, "exponential") - (K + 1)) <= SLOPE_TOL, (name, K)


def test_a_corrupted_order_breaks_the_slope():
    fam, x, terms = _terms("tanh-2")
    bad = terms.copy()
    bad[:, 1] *= 1.5  # psi_1 -> (1 + delta) psi_1, delta = 1/2 (L is linear: all three rows scale)
    # residual now has delta eps (L_0 - lambda) psi_1 = -delta eps L_1 psi_0: slope 1
    for K in (1, 2):
        s = _slope(fam, bad, K)
        assert s < K + 1 - SLOPE_TOL and abs(s - 1.0) <= SLOPE_TOL


def _linear_exact(net, W_rec, eps, x, source, u_ref, lam):
    """Exact eigenfunction of the linear network W_ff + eps W_rec (complex eps allowed) with data
    (side u_ref)^(-lambda) on |u| = u_ref: exp(-lambda t) (side u_ref)^(-lambda), t the flow time to the
    section, x(t) = x* + e^{At}(x - x*)."""
    W = net.W + eps * W_rec
    A = W / 4.0 - np.eye(len(x))
    b = W @ np.full(len(x), 0.5) + net.theta
    xs = -np.linalg.solve(A, b)
    u0 = x[source] - net.theta[source]
    side = np.sign(u0)
    t = np.log(abs(u0) / u_ref) + 0j  # the unperturbed flow time, then Newton
    for _ in range(50):
        E = expm(A * t)
        g = side * (xs + E @ (x - xs))[source] - side * net.theta[source] - u_ref
        dg = side * (A @ E @ (x - xs))[source]
        t = t - g / dg
        if abs(g) < 1e-15:
            break
    return np.exp(-lam * t) * (side * u_ref + 0j) ** (-lam)


def test_linear_series_is_the_taylor_expansion_of_the_exact_eigenfunction():
    rng = np.random.default_rng(7)
    n = 3
    net = Network(np.tril(rng.normal(size=(n, n)) * 2.0, -1), rng.normal(size=n), "linear")
    W_rec = rng.normal(size=(n, n))
    fam = perturbative_family(net, W_rec, order=2, lam=LAM, u_ref=1.0)
    x = net.theta + rng.uniform(-1.5, 1.5, (6, n))
    x[:, 0] = net.theta[0] + np.array([0.6, -0.8, 1.4, -1.9, 0.9, -1.2])
    psi = fam.generator_terms(x)[0]
    # Taylor coefficients in eps of the exact function by the Cauchy integral on |eps| = r
    # (trapezoid rule, exponentially accurate; round-off amplified by r^-k)
    r, M = 0.05, 16
    e = r * np.exp(2j * np.pi * np.arange(M) / M)
    for m in range(x.shape[0]):
        vals = np.array([_linear_exact(net, W_rec, ek, x[m], 0, 1.0, LAM) for ek in e])
        for k in range(3):
            ck = np.mean(vals * np.exp(-2j * np.pi * k * np.arange(M) / M)) / r**k
            # tolerance: 1e3 x the round-off of the Cauchy sum (1e-15 / r^k) and of the quadrature
            assert abs(ck - psi[k, m]) <= 1e3 * 1e-15 / r**k * abs(psi[0, m]) + 1e-11 * abs(psi[0, m]), (m, k)


def test_nonlinear_series_converges_to_the_section_matched_eigenfunction():
    fam, x, terms = _terms("logistic-2")
    x = x[:6]
    psi = terms[0][:, :6]
    errs = np.empty((3, EPS.size))
    for j, eps in enumerate(EPS[[0, 2, 4]]):
        exact = section_matched_eigenfunction(fam.network(eps), fam.source, fam.u_ref, LAM, x)
        for K in range(3):
            errs[K, j] = np.sqrt(np.mean(np.abs(fam.evaluate(psi, eps, K) - exact) ** 2 / np.abs(exact) ** 2))
    for K in range(3):
        s = np.polyfit(np.log(EPS[[0, 2, 4]]), np.log(errs[K, :3]), 1)[0]
        assert abs(s - (K + 1)) <= SLOPE_TOL, (K, s)


def test_bad_input():
    net, W_rec, _ = _network("logistic", 2, 1)
    with pytest.raises(ValueError, match="acyclic"):
        perturbative_family(Network(net.W + net.W.T, net.theta, "logistic"), W_rec)
    with pytest.raises(ValueError, match="W_rec"):
        perturbative_family(net, np.ones((3, 3)))
    fam = perturbative_family(net, W_rec, order=2, lam=LAM)
    with pytest.raises(ValueError, match="order"):
        fam.residual(None, 0.1, order=3, terms=np.ones((3, 3, 1)))
    with pytest.raises(ValueError, match="resum"):
        fam.residual(None, 0.1, resum="pade", terms=np.ones((3, 3, 1)))
    # u = 0 is the family's singular set: NaN there, never a crash
    assert np.isnan(fam.generator_terms(np.array([[net.theta[0], 0.3]]))).all()


def test_ensemble_and_stage_variables():
    from koopnet import NetworkBatch
    from koopnet.ensembles import draw_weights
    from koopnet.koopman import SpectraSettings
    from koopnet.koopman._perturbative_stage import PerturbativeStatus, perturbative_part

    rng = np.random.default_rng(3)
    W = draw_weights("perturbed_feedforward", 2, rng, g=4.0, eps=0.05)
    # the stage's split is exact: W_ff = tril(W, -1), eps = ||triu(W)||_2
    np.testing.assert_allclose(np.linalg.norm(np.triu(W), 2), 0.05, rtol=1e-14)
    W_gauss = draw_weights("gaussian", 2, rng, g=2.0)
    batch = NetworkBatch(np.stack([W, W_gauss]), np.zeros((2, 2)) - 1.0, "logistic")
    off = perturbative_part(batch, [1, 2], SpectraSettings())  # perturbative_max_units = 0 by default
    assert np.all(off["perturbative_status"].values == PerturbativeStatus.not_applicable)
    assert np.all(np.isnan(off["perturbative_residual"].values))
    s = SpectraSettings(perturbative_max_units=3, perturbative_max_eps=0.5, perturbative_n_points=8, perturbative_n_eps=9)
    out = perturbative_part(batch, [1, 2], s)
    st = out["perturbative_status"].values
    assert st[1] == PerturbativeStatus.not_applicable and np.isnan(out["perturbative_breakdown_eps"].values[1])
    assert st[0] in (PerturbativeStatus.ok, PerturbativeStatus.no_breakdown_in_range)
    np.testing.assert_allclose(out["perturbative_eps"].values[0], 0.05, rtol=1e-12)
    r = out["perturbative_residual"].values[0]
    assert np.all(np.diff(np.log(r)) < 0)  # at eps = 0.05 each order helps (residual ~ eps^(k+1))
