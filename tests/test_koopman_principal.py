"""Principal Koopman eigenfunctions in Jacobian eigen-coordinates (degree 2-3, any N) against exact facts."""

from __future__ import annotations

import numpy as np
import pytest

from koopnet import Network
from koopnet.koopman import (
    EigenfunctionStatus,
    polynomial_neuron_family,
    principal_eigenfunctions,
    taylor_generator,
)

EPS = np.finfo(float).eps


def _newton(net, x, steps=4):
    for _ in range(steps):
        x = x - np.linalg.solve(net.jacobian(x), net.vector_field(x))
    return x


def _random_net(n, activation, seed, gain=1.5, symmetric=False):
    """Random W, an equilibrium x* by construction: theta = x* - W sigma(x*)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, n)) * gain / np.sqrt(n)
    if symmetric:  # diag(sigma') W similar to a symmetric matrix: real spectrum, the real-arithmetic path
        W = (W + W.T) / np.sqrt(2)
    x = rng.normal(size=n) * 0.5
    net = Network(W, x - W @ Network(W, np.zeros(n), activation).activation.sigma(x), activation)
    assert np.max(np.abs(net.vector_field(x))) < 1e-14
    return net, x


def _directions(n, m=32, seed=1):
    u = np.random.default_rng(seed).standard_normal((m, n))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def test_linear_activation_is_exact():
    """sigma linear: psi_i = u_i^T (x - x*) exactly, no higher coefficients, residual at round-off."""
    net, x = _random_net(6, "linear", 0, gain=2.0)
    pe = principal_eigenfunctions(net, x, 6, 3)
    assert np.all(pe.status == EigenfunctionStatus.ok)
    assert np.all(pe.quadratic == 0) and np.all(pe.cubic == 0)
    pts = x + np.random.default_rng(2).uniform(-3, 3, (20, 6))
    U = np.linalg.inv(pe.eigenvectors)[pe.modes]
    # |h|_inf <= 3, so |u^T h| <= 3 |u|_1; both sides carry eps cond(V) < 1e-14 relative: 1e-12 is round-off
    np.testing.assert_allclose(pe(pts), (pts - x) @ U.T, rtol=0, atol=1e-12 * 3 * np.abs(U).sum(axis=1).max())
    # the generator residual is at the round-off floor residual_order uses (1e3 eps |J|_1 / rcond(V));
    # the order is then undefined (NaN)
    res = np.abs(pe.generator_residual(pts)) / np.abs(pe(pts))
    J1 = np.abs(net.jacobian(x)).sum(axis=0).max()
    assert np.max(res) < 1e3 * EPS * J1 / pe.rcond
    _, order = pe.residual_order(_directions(6), 0.05)
    assert np.all(np.isnan(order))


@pytest.mark.parametrize("activation", ["tanh", "logistic", "cubic", "tanh-symmetric"])
@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("degree", [2, 3])
def test_agrees_with_taylor_generator(activation, n, degree):
    """The Carleman generator's principal eigenvectors are the same Taylor coefficients up to a scale.

    Both are exact in exact arithmetic; in double precision the generator's eigenvectors carry
    ~eps |M| / gap (|M| < 10, lattice gaps > 0.05 here) and ours ~eps cond(V) (< 20): 1e-10 leaves
    a margin > 100 while a wrong coefficient (sign, factor 2) is O(1).
    """
    symmetric = activation.endswith("-symmetric")
    net, x = _random_net(n, activation.split("-")[0], 10 * n + degree, symmetric=symmetric)
    pe = principal_eigenfunctions(net, x, n, degree)
    if symmetric:
        assert pe.eigenvectors.dtype == np.float64
    tg = taylor_generator(net, x, degree)
    lin = tg.exponents.sum(axis=1) == 1
    for q in range(n):
        col = int(np.argmin(np.abs(tg.eigenvalues[0] - pe.eigenvalues[q])))
        ref = tg.eigenvectors[0][:, col]
        ours = pe.monomial_coefficients(q, tg.exponents)
        scale = np.vdot(ours[lin], ref[lin]) / np.vdot(ours[lin], ours[lin])
        np.testing.assert_allclose(ref / scale, ours, rtol=0, atol=1e-10 * np.abs(ours).max())
    assert np.all(pe.status == EigenfunctionStatus.ok)


def test_complex_pairs_share_coefficients():
    """psi of conj(lambda) is conj(psi): the permuted, conjugated coefficients equal a direct computation."""
    net, x = _random_net(6, "tanh", 3, gain=2.5)
    pe = principal_eigenfunctions(net, x, 6, 3)
    assert np.any(pe.partner >= 0), "the case must have a complex pair"
    for q in np.flatnonzero(pe.partner >= 0):
        direct = principal_eigenfunctions(net, x, pe.modes[q : q + 1], 3)
        assert direct.partner[0] == -1
        scale = np.max(np.abs(direct.cubic[0]))
        np.testing.assert_allclose(pe.cubic[q], direct.cubic[0], rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(pe.quadratic[q], direct.quadratic[0], rtol=0, atol=1e-12 * scale)
        pts = x + 0.1 * _directions(6)
        np.testing.assert_allclose(pe.generator_residual(pts)[:, q], direct.generator_residual(pts)[:, 0],
                                   rtol=1e-10, atol=0)
    # the stage's shortcut: partners' cubic coefficients skipped, residuals and flags unchanged
    lean = principal_eigenfunctions(net, x, 6, 3, conjugate_cubic=False)
    skipped = lean.partner >= 0
    assert np.all(np.isnan(lean.cubic[skipped])) and np.all(np.isfinite(lean.cubic[~skipped]))
    np.testing.assert_array_equal(lean.smallest_divisor, pe.smallest_divisor)
    u = _directions(6)
    np.testing.assert_array_equal(lean.residual_order(u, 0.1), pe.residual_order(u, 0.1))


def test_single_cubic_neuron_matches_exact_eigenfunction():
    """SCIENCE.md 2b: psi = prod_k (x - z_k)^(lambda c_k); normalised at the stable root z_s,
    psi = h exp(s1 h - s2 h^2 / 2 + ...), s_j = sum_{k != s} lambda c_k / (z_s - z_k)^j, so the
    degree-2 and 3 coefficients are s1 and (s1^2 - s2) / 2."""
    w, th = 8.0, -3.8  # p = -x^3/6 + x + 0.2: three real roots, two stable, no symmetry
    pf = polynomial_neuron_family(w, th, "cubic")
    net = Network([[w]], [th], "cubic")
    stable = [k for k in range(3) if abs(pf.roots[k].imag) < 1e-12 and pf.principal_eigenvalues[k].real < 0]
    assert len(stable) == 2
    for s in stable:
        z = pf.roots[s].real
        lam = pf.principal_eigenvalues[s]
        e = lam / pf.principal_eigenvalues  # lambda c_k
        d = z - pf.roots
        others = np.arange(3) != s
        s1 = np.sum(e[others] / d[others])
        s2 = np.sum(e[others] / d[others] ** 2)
        pe = principal_eigenfunctions(net, np.array([_newton(net, np.array([z]))[0]]), 1, 3)
        np.testing.assert_allclose(pe.eigenvalues[0], lam, rtol=1e-12)
        t = pe.taylor_tensors(0)
        np.testing.assert_allclose([t[0][0], t[1][0, 0], t[2][0, 0, 0]], [1.0, s1, (s1**2 - s2) / 2], rtol=1e-11)


def test_logistic_tanh_conjugacy():
    """Logistic (W, theta) is tanh (W/4, W 1/4 + theta/2) in y = x/2; the normalised eigenfunctions obey
    psi_tanh(x/2) = psi_logistic(x)/2 (same Jacobian, same eigenvectors, y-coordinates halved)."""
    net, x = _random_net(5, "logistic", 4, gain=4.0)
    tnet = Network(net.W / 4, net.W @ np.full(5, 0.25) + net.theta / 2, "tanh")
    pl = principal_eigenfunctions(net, x, 3, 3)
    pt = principal_eigenfunctions(tnet, x / 2, 3, 3)
    np.testing.assert_allclose(pt.eigenvalues, pl.eigenvalues, rtol=1e-12)
    pts = x + 0.3 * _directions(5)
    np.testing.assert_allclose(pt(pts / 2), pl(pts) / 2, rtol=1e-10)


@pytest.mark.parametrize("degree", [2, 3])
@pytest.mark.parametrize("n, activation", [(3, "tanh"), (40, "logistic"), (40, "tanh")])
def test_residual_order_is_the_degree_and_catches_a_wrong_coefficient(n, activation, degree, monkeypatch):
    """Relative residual O(r^D): log2 ratio at r and r/2 is D (D + 1 where the degree-(D+1) term
    vanishes; 0.2 for next-order terms at r = 0.05). A wrong sigma''/2 leaves an O(r^2) residual,
    order 1; a wrong sigma'''/6 (degree 3) order 2."""
    from koopnet.koopman import _principal

    net, x = _random_net(n, activation, 7 * n, gain=2.0)
    u = _directions(n)
    pe = principal_eigenfunctions(net, x, 3, degree)
    res, order = pe.residual_order(u, 0.05)
    assert np.all(np.isfinite(res)) and np.all((order >= degree - 0.2) & (order <= degree + 1.2)), order
    good = _principal.sigma_taylor_coefficients
    for wrong_degree in range(2, degree + 1):
        def wrong(act, x0, d, k=wrong_degree):
            c = good(act, x0, d).copy()
            c[..., k] *= 1.5
            return c

        monkeypatch.setattr(_principal, "sigma_taylor_coefficients", wrong)
        _, bad = principal_eigenfunctions(net, x, 3, degree).residual_order(u, 0.05)
        assert np.all(bad < wrong_degree - 1 + 0.5), (wrong_degree, bad)
    monkeypatch.undo()


def test_resonance_is_flagged_not_divided():
    """lambda_2 = 2 lambda_1 (tanh, x1* = 0.5, w1 sech^2(0.5) = 0.5, x2 driven): the second mode has the
    zero divisor 2 lambda_1 - lambda_2 and is flagged; the first is not resonant (|k| r1 - r1 > 0)."""
    w1 = 0.5 / (1 - np.tanh(0.5) ** 2)
    W = np.array([[w1, 0.0], [2.0, 0.0]])
    th = np.array([0.5 - w1 * np.tanh(0.5), 0.0])
    net = Network(W, th, "tanh")
    x = np.array([0.5, 2.0 * np.tanh(0.5)])
    pe = principal_eigenfunctions(net, x, 2, 3)
    np.testing.assert_allclose(pe.eigenvalues.real, [-0.5, -1.0], atol=1e-14)
    assert list(pe.status) == [EigenfunctionStatus.ok, EigenfunctionStatus.resonant]
    assert pe.smallest_divisor[1] < 1e-12 and pe.smallest_divisor[0] >= 0.5 - 1e-12
    assert np.all(np.isfinite(pe.quadratic)) and np.all(np.isfinite(pe.cubic))
    _, order = pe.residual_order(_directions(2), 0.05)
    assert 2.8 <= order[0] <= 4.2 and np.isnan(order[1])


def test_feedforward_jordan_block_is_flagged():
    """SCIENCE.md 2c: J = -I + nilpotent (all eigenvalues -1, one Jordan block): no eigenbasis."""
    W = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [-1.0, 2.0, 0.0]])
    th = np.array([0.2, -0.1, 0.3])
    net = Network(W, th, "tanh")
    x = th.copy()  # x1 = theta1, then each unit driven by the ones above it
    x[1] += 3.0 * np.tanh(x[0])
    x[2] += -np.tanh(x[0]) + 2.0 * np.tanh(x[1])
    assert np.max(np.abs(net.vector_field(x))) < 1e-15
    pe = principal_eigenfunctions(net, x, 3, 3)
    assert np.all(pe.status == EigenfunctionStatus.not_diagonalisable)
    res, order = pe.residual_order(_directions(3), 0.05)
    assert np.all(np.isnan(order))


def test_bad_arguments():
    net, x = _random_net(3, "tanh", 0)
    with pytest.raises(ValueError, match="degree"):
        principal_eigenfunctions(net, x, 3, 4)
    with pytest.raises(ValueError, match="x_star"):
        principal_eigenfunctions(net, x[:2], 3, 2)
