"""Exact Koopman families (SCIENCE.md 2a-2c): generator and flow residuals, zeros/singularities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from koopnet import Network
from koopnet.koopman import (
    equilibria_from_eigenfunction,
    feedforward_family,
    feedforward_order,
    linear_family,
    polynomial_neuron_family,
    residuals,
)

TOL = 1e-8  # relative generator and flow residual of exact eigenpairs


@pytest.mark.parametrize("n", [1, 2, 4])
def test_linear_family_residuals(n):
    rng = np.random.default_rng(10 + n)
    W = rng.normal(size=(n, n)) * 2.0  # generic: complex eigenvalues for n >= 2
    net = Network(W, rng.normal(size=n), "linear")
    fam = linear_family(net)
    np.testing.assert_allclose(np.sort_complex(fam.principal_eigenvalues),
                               np.sort_complex(np.linalg.eigvals(net.jacobian(np.zeros(n)))), atol=1e-12)
    np.testing.assert_allclose(fam.coordinates(fam.equilibrium), 0.0, atol=1e-12)
    pts = fam.equilibrium + rng.uniform(-2, 2, (25, n))
    mus = [np.eye(n)[0], np.ones(n) * 2, rng.integers(0, 4, n)]
    for mu in mus:
        psi = fam.as_eigenfunction(mu)
        r = residuals(psi, psi.eigenvalue, net, pts, t=1.0)
        assert r.flow_ok
        assert r.generator.max() <= TOL and r.flow.max() <= TOL
    # complex mu: the generator identity holds on any branch
    psi = fam.as_eigenfunction(np.full(n, 0.3 - 0.7j))
    assert residuals(psi, psi.eigenvalue, net, pts, t=0.1).generator.max() <= TOL
    # and the batched complex evaluation on a complex grid
    zc = pts + 1j * rng.uniform(-1, 1, pts.shape)
    psi = fam.as_eigenfunction(np.eye(n)[-1])
    assert residuals(psi, psi.eigenvalue, net, zc, t=0.5).max <= TOL


def test_cubic_neuron_poster_case():
    fam = polynomial_neuron_family(8.0, -4.0)
    np.testing.assert_allclose(fam.roots.real, [-np.sqrt(6), 0, np.sqrt(6)], atol=1e-12)
    np.testing.assert_allclose(fam.residues.real, [-0.5, 1.0, -0.5], atol=1e-12)
    # sum_k c_k/(x - z_k) = 1/p(x)
    x = np.linspace(-3, 3, 7) + 0.1
    np.testing.assert_allclose(np.sum(fam.residues / (x[:, None] - fam.roots), axis=1), 1 / fam.vector_field(x), rtol=1e-12)


@pytest.mark.parametrize("w,theta", [(8.0, -4.0), (6.0, -2.5), (2.0, 0.3), (-3.0, 1.0)])
def test_cubic_neuron_residuals(w, theta):
    fam = polynomial_neuron_family(w, theta)
    net = Network([[w]], [theta], "cubic")
    rng = np.random.default_rng(1)
    zr = fam.real_roots
    lo, hi = (zr.min() - 1, zr.max() + 1) if zr.size else (-2, 2)
    pts = rng.uniform(lo, hi, (30, 1))
    pts = pts[np.min(np.abs(pts - fam.roots), axis=1) > 0.05]
    for lam in [-0.01, -0.5 + 0.3j, 1.2, fam.principal_eigenvalues[0]]:
        psi = fam.as_eigenfunction(lam)
        # short flow: trajectories stay on the same side of every root (no branch crossing)
        r = residuals(psi, lam, net, pts, t=0.2)
        assert r.flow_ok and r.max <= TOL
    # complex x (complex plane plots)
    zc = pts[:, 0] + 1j * rng.uniform(0.1, 1.0, pts.shape[0])
    psi = fam.as_eigenfunction(-0.3)
    r = residuals(psi, -0.3, net, zc[:, None], t=0.05)
    assert r.generator.max() <= TOL


@pytest.mark.parametrize("lam", [-0.01, -0.7, -0.2 + 0.5j])
def test_cubic_neuron_zeros_and_singularities_at_roots(lam):
    """Re lambda < 0: zeros at stable roots (p' < 0), singularities at unstable ones."""
    fam = polynomial_neuron_family(8.0, -4.0)
    feats = equilibria_from_eigenfunction(lambda x: fam.eigenfunction(x, lam), (-5.0, 5.0))
    roots = fam.real_roots
    stable = roots[fam.principal_eigenvalues.real[np.argsort(fam.roots.real)] < 0]
    unstable = roots[fam.principal_eigenvalues.real[np.argsort(fam.roots.real)] > 0]
    np.testing.assert_allclose(np.sort(feats.zeros), np.sort(stable), atol=1e-7)
    np.testing.assert_allclose(np.sort(feats.singularities), np.sort(unstable), atol=1e-7)
    # orders Re(lambda c_k)
    expect = (lam * fam.residues).real
    np.testing.assert_allclose(feats.order, expect, rtol=2e-3)


def test_eigenfunction_features_match_equilibria_engine():
    eqm = pytest.importorskip("koopnet.equilibria")
    from koopnet import NetworkBatch
    from koopnet._flags import STABLE_TYPES

    w, theta = 7.0, -3.2
    batch = NetworkBatch([[[w]]], [[theta]], "cubic")
    ds = eqm.equilibria_dataset(batch, [0])
    n = int(ds.n_equilibria[0])
    x_eq = ds.x_eq.values[0, :n, 0]
    st = np.isin(ds.eq_type.values[0, :n], [int(t) for t in STABLE_TYPES])
    fam = polynomial_neuron_family(w, theta)
    feats = equilibria_from_eigenfunction(lambda x: fam.eigenfunction(x, -0.05), (-6.0, 6.0))
    np.testing.assert_allclose(np.sort(feats.zeros), np.sort(x_eq[st]), atol=1e-7)
    np.testing.assert_allclose(np.sort(feats.singularities), np.sort(x_eq[~st]), atol=1e-7)


def test_equilibria_from_eigenfunction_ignores_smooth_extrema():
    # a smooth nonvanishing function with extrema and one genuine zero at 0.3
    feats = equilibria_from_eigenfunction(lambda x: (2 + np.cos(3 * x)) * np.abs(x - 0.3) ** 0.5, (-3, 3))
    np.testing.assert_allclose(feats.location, [0.3], atol=1e-8)
    assert list(feats.kind) == [1]


@pytest.mark.parametrize("activation", ["logistic", "tanh", "cubic"])
@pytest.mark.parametrize("n", [2, 4])
def test_feedforward_family_residuals(activation, n):
    rng = np.random.default_rng(n)
    W = np.tril(rng.normal(size=(n, n)) * 1.5, -1)
    net = Network(W, rng.normal(size=n), activation)
    ff = feedforward_family(net)
    np.testing.assert_allclose(np.linalg.eigvals(net.jacobian(ff.equilibrium)), -1.0, atol=1e-12)
    np.testing.assert_allclose(net.vector_field(ff.equilibrium), 0.0, atol=1e-12)
    pts = net.theta + rng.uniform(-1.5, 1.5, (20, n))
    pts = pts[np.abs(pts[:, 0] - net.theta[0]) > 0.2]

    def F(p):
        return 1.0 + p[..., 0] + 0.3 * np.sin(p[..., -1]) * p[..., 0]

    def Fg(p):
        g = np.zeros_like(p)
        g[..., 0] = 1.0 + 0.3 * np.sin(p[..., -1])
        g[..., -1] += 0.3 * np.cos(p[..., -1]) * p[..., 0]
        return g

    for lam in [-1.0, -0.4 + 0.8j, 0.5]:
        psi = ff.as_eigenfunction(lam, F, Fg)
        r = residuals(psi, lam, net, pts, t=1.0)
        assert r.flow_ok and r.max <= TOL
    # invariants are invariant along the flow
    from koopnet.koopman import flow

    xt, ok = flow(net, pts, 2.0)
    assert ok
    np.testing.assert_allclose(ff.invariants(xt), ff.invariants(pts), rtol=1e-9, atol=1e-9)


def test_feedforward_two_units_matches_poster_invariant():
    """Phi_2 = (x2 - theta2)/(x1 - theta1) + w21 gamma(x1), gamma' = sigma(s)/(s - theta1)^2 (up to a constant)."""
    w21, th = 2.5, np.array([0.4, -0.3])
    net = Network([[0, 0], [w21, 0]], th, "logistic")
    ff = feedforward_family(net)
    sig = net.activation.sigma
    x1 = np.array([0.9, 1.7, 3.0])  # u > 0 side, u_ref = 1
    x2 = np.array([0.2, -1.0, 2.0])
    phi = ff.invariants(np.stack([x1, x2], axis=1))[:, 0]
    gamma = np.array([quad(lambda s: sig(s) / (s - th[0]) ** 2, th[0] + 1.0, a, epsabs=1e-14, epsrel=1e-13)[0] for a in x1])
    expect = (x2 - th[1]) / (x1 - th[0]) + w21 * gamma
    np.testing.assert_allclose(phi, expect, rtol=1e-10, atol=1e-12)


def test_feedforward_order_permuted_dag():
    W = np.array([[0, 0, 1.0], [2.0, 0, 0], [0, 0, 0]])  # 2 -> 0 -> 1
    order = feedforward_order(W)
    assert list(order) == [2, 0, 1]
    assert feedforward_order(np.array([[0, 1.0], [1.0, 0]])) is None
    net = Network(W, [0.1, 0.2, -0.5], "tanh")
    ff = feedforward_family(net)
    rng = np.random.default_rng(0)
    pts = net.theta + rng.uniform(-1, 1, (10, 3))
    pts[:, 2] = net.theta[2] + np.where(rng.uniform(size=10) < 0.5, -1, 1) * rng.uniform(0.3, 1, 10)
    psi = ff.as_eigenfunction(-0.5, lambda p: p[..., 1], lambda p: np.array([0.0, 1.0]) * np.ones_like(p))
    assert residuals(psi, -0.5, net, pts).max <= TOL
