"""Generator EDMD: exactness on affine fields, convergence on a bistable network, spurious flags."""

from __future__ import annotations

import numpy as np
import pytest

from koopnet import Network, NetworkBatch
from koopnet.koopman import (
    GaussianRBFDictionary,
    MonomialDictionary,
    gedmd,
    match_eigenvalues,
    multi_indices,
    sample_basin,
    sample_box,
    sample_trajectories,
)


def _linear_batch(n, seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, n)) * 1.5
    theta = rng.normal(size=n)
    net = Network(W, theta, "linear")
    x_eq = np.linalg.solve(W / 4 - np.eye(n), -(W @ np.full(n, 0.5) + theta))
    return net, NetworkBatch(W[None], theta[None], "linear"), x_eq, rng


@pytest.mark.parametrize("n,degree", [(1, 4), (2, 4), (3, 3), (4, 2), (4, 4)])
def test_monomial_gedmd_linear_network_is_the_lattice(n, degree):
    net, batch, x_eq, rng = _linear_batch(n, 7 * n + degree)
    lam = np.linalg.eigvals(net.W) / 4 - 1
    dic = MonomialDictionary(n, degree, x_eq[None, None, :], 1.5)
    X = sample_box(rng, x_eq, 1.5, 4 * dic.size + 50)[None]
    Xt = sample_box(rng, x_eq, 1.5, 200)[None]
    r = gedmd(batch.vector_field, dic, X, Xt)
    lattice = multi_indices(n, degree) @ lam
    err, _ = match_eigenvalues(lattice, r.eigenvalues[0])
    assert err.max() <= 1e-9
    assert not r.spurious.any()  # the dictionary is invariant: every eigenpair is genuine
    assert r.residual.max() <= 1e-9


def test_monomial_dictionary_generator_matches_finite_differences():
    rng = np.random.default_rng(0)
    c, s = np.array([0.3, -0.2, 0.1]), np.array([1.5, 0.7, 2.0])
    dic = MonomialDictionary(3, 4, c, s)
    x = rng.normal(size=(5, 3))
    v = rng.normal(size=(5, 3))
    h = 1e-6
    fd = (dic.evaluate(x + h * v) - dic.evaluate(x - h * v)) / (2 * h)
    np.testing.assert_allclose(dic.generator(x, v), fd, rtol=1e-7, atol=1e-8)
    # the one-pass [Psi | dPsi] used by gedmd is the same arithmetic as the separate calls
    np.testing.assert_array_equal(dic.values_and_generator(x, v), np.concatenate([dic.evaluate(x), dic.generator(x, v)], -1))
    rbf = GaussianRBFDictionary(rng.normal(size=(7, 3)), 0.8, c, 2.0)
    fd = (rbf.evaluate(x + h * v) - rbf.evaluate(x - h * v)) / (2 * h)
    np.testing.assert_allclose(rbf.generator(x, v), fd, rtol=1e-7, atol=1e-9)
    assert rbf.size == 7 + 4


def test_rbf_gedmd_linear_network_principal_eigenvalues():
    """Affine terms make the principal eigenfunctions z = P^-1(Ax+b) exact members of the span."""
    n = 5
    net, batch, x_eq, rng = _linear_batch(n, 3)
    lam = np.linalg.eigvals(net.W) / 4 - 1
    X = sample_box(rng, x_eq, 1.0, 800)[None]
    Xt = sample_box(rng, x_eq, 1.0, 300)[None]
    dic = GaussianRBFDictionary(X[:, :150], 0.7, x_eq[None, None, :], 1.0)
    r = gedmd(batch.vector_field, dic, X, Xt)
    err, idx = match_eigenvalues(lam, r.eigenvalues[0])
    assert err.max() <= 1e-8
    assert not r.spurious[0, idx].any()
    assert 0 in np.round(np.abs(r.eigenvalues[0]), 10)


def _bistable():
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    theta = -W @ np.full(2, 0.5)
    net = Network(W, theta, "logistic")
    x = np.array([3.2, 3.2])
    for _ in range(30):
        x = x - np.linalg.solve(net.jacobian(x), net.vector_field(x))
    return net, NetworkBatch(W[None], theta[None], "logistic"), x


def test_gedmd_bistable_logistic_converges_with_degree():
    net, batch, x_eq = _bistable()
    lam = np.linalg.eigvals(net.jacobian(x_eq))
    np.testing.assert_allclose(np.sort(lam.real), [-0.74492354, -0.67204455], atol=1e-7)
    rng = np.random.default_rng(5)
    hw = 1.5
    pool = sample_box(rng, x_eq, hw, 3000)[None]
    inside = sample_basin(batch, pool, x_eq[None])
    assert inside.mean() > 0.5
    pts = pool[inside][None]
    X, Xt = pts[:, :1500], pts[:, 1500:2000]
    errors = []
    for degree in (3, 5, 7, 9):
        r = gedmd(batch.vector_field, MonomialDictionary(2, degree, x_eq, hw), X, Xt)
        err, idx = match_eigenvalues(lam, r.eigenvalues[0])
        errors.append(err.max())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[2] < 1e-2 and errors[3] < 1e-3


def test_gedmd_trajectory_sampling_recovers_principal_eigenvalues():
    net, batch, x_eq = _bistable()
    lam = np.linalg.eigvals(net.jacobian(x_eq))
    rng = np.random.default_rng(1)
    init = sample_box(rng, x_eq, 1.0, 160)[None]
    pts = sample_trajectories(batch, init, 0.2, 10)
    assert pts.shape == (1, 1600, 2)
    r = gedmd(batch.vector_field, MonomialDictionary(2, 7, x_eq, 1.0), pts[:, ::2], pts[:, 1::2])
    assert match_eigenvalues(lam, r.eigenvalues[0])[0].max() < 1e-3


def test_spurious_flags_on_truncated_dictionary():
    """dx1 = mu x1, dx2 = lam (x2 - x1^2): eigenfunctions x1 (mu) and x2 - lam/(lam - 2 mu) x1^2 (lam).

    Degree 1 lacks x1^2: the lam eigenpair is spurious, the mu one genuine. At degree 2 the span of
    {1, x1, x1^2, x2} is invariant (exact eigenvalues 0, mu, 2 mu, lam), while x1 x2 and x2^2 map onto
    x1^3 and x1^2 x2, outside the dictionary: the modes near mu + lam and 2 lam are spurious.
    """
    mu, lam = -0.5, -2.0

    def f(x):
        return np.stack([mu * x[..., 0], lam * (x[..., 1] - x[..., 0] ** 2)], axis=-1)

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (1, 400, 2))
    Xt = rng.uniform(-1, 1, (1, 200, 2))
    r1 = gedmd(f, MonomialDictionary(2, 1, np.zeros(2), 1.0), X, Xt)  # default threshold 1e-2
    ev = r1.eigenvalues[0]
    i_mu = np.argmin(np.abs(ev - mu))
    i_lam = np.argmin(np.abs(ev - lam))
    assert abs(ev[i_mu] - mu) < 1e-12 and abs(ev[i_lam] - lam) < 0.05  # the eigenvalues alone look plausible
    assert not r1.spurious[0, i_mu] and r1.spurious[0, i_lam]
    assert r1.residual[0, i_lam] > 0.1
    r2 = gedmd(f, MonomialDictionary(2, 2, np.zeros(2), 1.0), X, Xt)
    genuine = np.array([0, mu, 2 * mu, lam])
    err, idx = match_eigenvalues(genuine, r2.eigenvalues[0])
    assert err.max() < 1e-10
    assert not r2.spurious[0, idx].any() and r2.residual[0, idx].max() < 1e-10
    others = np.setdiff1d(np.arange(6), idx)
    assert r2.spurious[0, others].all()


@pytest.mark.parametrize("projection", ["galerkin", "taylor"])
def test_gedmd_batched_equals_alone(projection):
    rng = np.random.default_rng(4)
    W = rng.normal(size=(3, 2, 2)) * 3
    theta = rng.normal(size=(3, 2))
    batch = NetworkBatch(W, theta, "tanh")
    X = rng.uniform(-1, 1, (3, 300, 2))
    Xt = rng.uniform(-1, 1, (3, 100, 2))
    dic = MonomialDictionary(2, 4, np.zeros((3, 1, 2)), 1.0)
    r = gedmd(batch.vector_field, dic, X, Xt, projection=projection)
    for b in range(3):
        one = NetworkBatch(W[b : b + 1], theta[b : b + 1], "tanh")
        r1 = gedmd(one.vector_field, MonomialDictionary(2, 4, np.zeros((1, 1, 2)), 1.0), X[b : b + 1], Xt[b : b + 1],
                   projection=projection)
        np.testing.assert_array_equal(r.eigenvalues[b], r1.eigenvalues[0])
        np.testing.assert_array_equal(r.residual[b], r1.residual[0])


def test_gedmd_eigenfunctions_of_a_batch_satisfy_the_generator_identity():
    # two linear networks: the monomial dictionary is invariant, so every phi = Psi v obeys
    # grad phi . f = lambda phi exactly (to round-off) at any point
    nets = [_linear_batch(2, seed) for seed in (11, 12)]
    batch = NetworkBatch(np.stack([n.W for n, *_ in nets]), np.stack([n.theta for n, *_ in nets]), "linear")
    centre = np.stack([x_eq for _, _, x_eq, _ in nets])[:, None, :]
    rng = np.random.default_rng(5)
    dic = MonomialDictionary(2, 3, centre, 1.5)
    X = centre + rng.uniform(-1.5, 1.5, (2, 80, 2))
    Xt = centre + rng.uniform(-1.5, 1.5, (2, 30, 2))
    r = gedmd(batch.vector_field, dic, X, Xt)
    for mode in range(3):
        phi = r.eigenfunction(Xt, mode)
        assert phi.shape == (2, 30)
        lam = r.eigenvalues[:, mode][:, None]
        dphi = np.einsum("bmk,bk->bm", dic.generator(Xt, batch.vector_field(Xt)), r.eigenvectors[..., :, mode])
        np.testing.assert_allclose(dphi, lam * phi, atol=1e-8 * np.abs(phi).max())
        for b in range(2):  # network b's eigenfunction uses network b's eigenvector
            np.testing.assert_allclose(phi[b], dic.evaluate(Xt)[b] @ r.eigenvectors[b, :, mode])


# --- Taylor (degree-triangular) projection -------------------------------------------------------


def _degree(dic):
    return dic.exponents.sum(axis=1)


@pytest.mark.parametrize("n,degree", [(1, 5), (2, 4), (3, 3)])
def test_taylor_projection_linear_network_is_the_lattice(n, degree):
    net, batch, x_eq, rng = _linear_batch(n, 5 * n + degree)
    lam = np.linalg.eigvals(net.W) / 4 - 1
    dic = MonomialDictionary(n, degree, x_eq[None, None, :], 1.5)
    X = sample_box(rng, x_eq, 1.5, 4 * dic.size + 50)[None]
    Xt = sample_box(rng, x_eq, 1.5, 200)[None]
    r = gedmd(batch.vector_field, dic, X, Xt, projection="taylor")
    err, _ = match_eigenvalues(multi_indices(n, degree) @ lam, r.eigenvalues[0])
    assert err.max() <= 1e-9
    assert r.residual.max() <= 1e-9 and not r.spurious.any()
    deg = _degree(dic)
    assert np.all(r.matrix[0][deg[:, None] < deg[None, :]] == 0.0)  # block-triangular by degree
    assert r.rank[0] == dic.size


def _quadratic_field(c, J, Q):
    """f(x) = J z + Q(z, z) with z = x - c: an equilibrium at c with Jacobian J."""

    def f(x):
        z = x - c
        return z @ J.T + np.einsum("ijk,...j,...k->...i", Q, z, z)

    return f


def test_taylor_projection_quadratic_field_exact_below_the_top_degree():
    """For a quadratic field, U maps degree d monomials into degrees d..d+1: inside a degree-D dictionary
    for d <= D - 1, so the Taylor projection's diagonal blocks d <= D - 1 are exact and carry the
    lattice {k . lambda : |k| <= D - 1} (lambda = eig J). The Galerkin fit of the top block leaks into
    every degree and moves even the principal eigenvalues."""
    c = np.array([0.3, -0.2])
    J = np.array([[-1.0, 0.4], [0.3, -1.8]])
    Q = np.zeros((2, 2, 2))
    Q[0, 0, 0], Q[0, 0, 1], Q[1, 1, 1], Q[1, 0, 0] = 0.5, -0.7, 0.9, 0.2
    f = _quadratic_field(c, J, Q)
    lam = np.linalg.eigvals(J)
    D = 4
    rng = np.random.default_rng(2)
    dic = MonomialDictionary(2, D, c, 1.2)
    X = sample_box(rng, c, 1.2, 400)[None]
    r = gedmd(f, dic, X, projection="taylor")
    low = multi_indices(2, D - 1) @ lam
    assert match_eigenvalues(low, r.eigenvalues[0])[0].max() <= 1e-10
    g = gedmd(f, dic, X)
    assert match_eigenvalues(lam, g.eigenvalues[0])[0].max() > 1e-4  # the case discriminates


def test_taylor_projection_bistable_logistic_principal_eigenvalues():
    net, batch, x_eq = _bistable()
    lam = np.linalg.eigvals(net.jacobian(x_eq))
    rng = np.random.default_rng(5)
    errors = {}
    for hw in (1.0, 1.5):
        pool = sample_box(rng, x_eq, hw, 3000)[None]
        pts = pool[sample_basin(batch, pool, x_eq[None])][None]
        X, Xt = pts[:, :1000], pts[:, 1000:1500]
        dic = MonomialDictionary(2, 7, x_eq, hw)
        for projection in ("galerkin", "taylor"):
            r = gedmd(batch.vector_field, dic, X, Xt, projection=projection)
            err, idx = match_eigenvalues(lam, r.eigenvalues[0])
            errors[hw, projection] = err.max()
            if hw == 1.0:  # the principal Taylor eigenfunctions pass the held-out residual test
                assert not r.spurious[0, idx].any()
    for hw in (1.0, 1.5):
        assert errors[hw, "taylor"] < 1e-5 and errors[hw, "taylor"] < errors[hw, "galerkin"] / 100, errors


def test_taylor_projection_rank_deficient_samples():
    """Samples on the invariant line z2 = 0 of dz = diag(a, b) z: every column with a z2 factor vanishes
    there, so the triangular factor is singular and the per-degree truncated-SVD fit takes over. Columns
    z1^k give the exact eigenvalues k a; the vanishing ones give 0."""
    a, b = -0.6, -1.3

    def f(x):
        return x * np.array([a, b])

    D = 4
    x = np.zeros((1, 60, 2))
    x[..., 0] = np.linspace(-1, 1, 60)
    dic = MonomialDictionary(2, D, np.zeros(2), 1.0)
    r = gedmd(f, dic, x, projection="taylor")
    assert r.rank[0] == D + 1
    assert np.all(np.isfinite(r.eigenvalues))
    assert match_eigenvalues(a * np.arange(D + 1), r.eigenvalues[0])[0].max() <= 1e-10
    few = gedmd(f, dic, x[:, :5], projection="taylor")  # fewer samples than functions
    assert few.rank[0] == 5 and np.all(np.isfinite(few.eigenvalues))


def test_taylor_projection_needs_a_monomial_dictionary():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (1, 50, 2))
    rbf = GaussianRBFDictionary(X[:, :10], 0.5)
    with pytest.raises(ValueError, match="monomial"):
        gedmd(lambda x: -x, rbf, X, projection="taylor")
    with pytest.raises(ValueError, match="projection"):
        gedmd(lambda x: -x, MonomialDictionary(2, 2, np.zeros(2)), X, projection="petrov")


def _nested_lstsq(Psi, dPsi, degree):
    """Independent reference of the taylor projection: one lstsq per degree d, columns of degree >= d."""
    K = degree.size
    L = np.zeros((K, K))
    for d in np.unique(degree):
        cols, beta = np.flatnonzero(degree >= d), np.flatnonzero(degree == d)
        L[np.ix_(cols, beta)] = np.linalg.lstsq(Psi[:, cols], dPsi[:, beta], rcond=None)[0]
    return L


@pytest.mark.parametrize("case", ["regular", "fallback", "near_fallback", "few_samples"])
def test_taylor_projection_is_the_nested_least_squares(case):
    """L equals per-degree least squares on a nonlinear field (QR path, rank-deficient fallback,
    fewer samples than functions); triangular by degree in every path."""
    from koopnet.koopman._gedmd import _taylor_projection

    rng = np.random.default_rng(8)
    n, D = 2, 4
    dic = MonomialDictionary(n, D, np.zeros(n), 1.0)
    degree = np.asarray(dic.exponents).sum(axis=-1)

    def f(x):  # nonlinear, so that degree >= |beta| columns matter
        return np.stack([-0.7 * x[..., 0] + x[..., 1] ** 2, -1.2 * x[..., 1] + np.sin(x[..., 0])], axis=-1)

    M = {"regular": 200, "fallback": 200, "near_fallback": 200, "few_samples": 9}[case]
    X = rng.uniform(-1, 1, (M, n))
    if case == "fallback":
        X[:, 1] = 0.0  # every column with an x2 factor vanishes: the factor is singular
    if case == "near_fallback":
        X[:, 1] *= 1e-9  # numerically singular, not exactly
    Psi = dic.evaluate(X)
    dPsi = dic.generator(X, f(X))
    L, rank = _taylor_projection(Psi[None], dPsi[None], degree, 1e-12)
    L = L[0]
    assert np.all(L[degree[:, None] < degree[None, :]] == 0.0)  # block triangular by degree
    if case == "regular":
        assert rank[0] == degree.size
        np.testing.assert_allclose(L, _nested_lstsq(Psi, dPsi, degree), rtol=0, atol=1e-10)
    else:
        assert rank[0] < degree.size
        # the fit reproduces the data wherever the reference (minimum-norm) fit does
        ref = _nested_lstsq(Psi, dPsi, degree)
        np.testing.assert_allclose(Psi @ L, Psi @ ref, rtol=0, atol=1e-8)
        assert np.all(np.isfinite(L))


def test_spectra_stage_taylor_projection_option():
    import dataclasses

    import xarray as xr

    from koopnet._flags import EquilibriumType
    from koopnet.koopman import SpectraSettings, spectra_dataset

    net, batch, x_eq = _bistable()
    lam = np.linalg.eigvals(net.jacobian(x_eq))
    lam = lam[np.lexsort((-lam.imag, -lam.real))]
    eq = xr.Dataset({  # the equilibria contract, attractor (3.23, 3.23) only
        "x_eq": (("network", "equilibrium", "unit"), x_eq[None, None]),
        "eq_type": (("network", "equilibrium"), np.array([[int(EquilibriumType.stable_node)]])),
        "jacobian_eigenvalues": (("network", "equilibrium", "mode"), lam[None, None].astype(complex)),
    })
    s = SpectraSettings(gedmd_sampling="box", gedmd_n_samples=600, gedmd_n_test=300)
    assert s.gedmd_projection == "galerkin"  # the default; taylor is not better on every network
    galerkin = spectra_dataset(batch, [3], s, equilibria=eq)
    taylor = spectra_dataset(batch, [3], dataclasses.replace(s, gedmd_projection="taylor"), equilibria=eq)
    e_t, e_g = float(taylor.gedmd_principal_error[0]), float(galerkin.gedmd_principal_error[0])
    assert e_t < 1e-6 and e_t < e_g / 100, (e_t, e_g)
    assert taylor.gedmd_eigenvalues.attrs["projection"] == "taylor"
    assert galerkin.gedmd_eigenvalues.attrs["projection"] == "galerkin"
    rbf = SpectraSettings(gedmd_sampling="box", gedmd_dictionary="rbf", gedmd_n_samples=300, gedmd_n_test=100,
                          gedmd_rbf_centers=40)
    assert spectra_dataset(batch, [3], rbf, equilibria=eq).gedmd_eigenvalues.attrs["projection"] == "galerkin"
    with pytest.raises(ValueError, match="gedmd_projection"):
        SpectraSettings(gedmd_projection="petrov")
