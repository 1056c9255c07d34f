"""Tests of koopnet.dimension against exact results (SCIENCE.md section 4)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from koopnet._flags import EquilibriumType
from koopnet.equilibria import EquilibriumStatus
from koopnet.dimension import (
    AttractorStatus,
    DimensionSettings,
    PRSource,
    effective_rank,
    elbow_rank,
    energy_rank,
    koopman_dimension,
    marchenko_pastur_median,
    n_slow_modes,
    nuclear_rank,
    numerical_rank,
    optimal_threshold_coefficient,
    participation_ratio,
    stable_rank,
    threshold_rank,
    weight_dimensions,
)
from koopnet.network import NetworkBatch
from koopnet.simulate import IntegrationSettings


def _orthogonal(rng, n, k=None):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    return q if k is None else q[:, :k]


def _with_singular_values(rng, s):
    n = len(s)
    return _orthogonal(rng, n) @ np.diag(s) @ _orthogonal(rng, n).T


# ------------------------------------------------------------------ closed forms of W ranks


@pytest.mark.parametrize("n", [1, 2, 7, 10])
def test_identity_closed_forms(n):
    d = weight_dimensions(np.eye(n))
    assert d.rank == n and d.energy_rank == int(np.ceil(0.9 * n)) and d.elbow_rank == n
    for v in (d.erank, d.stable_rank, d.nuclear_rank):
        assert v == pytest.approx(n, rel=1e-12)
    # equal singular values are all "noise" for Gavish-Donoho: median * 2.858 > 1
    assert d.threshold_rank == 0


def test_rank_one_closed_forms():
    rng = np.random.default_rng(1)
    n = 12
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    d = weight_dimensions(3.7 * np.outer(u, v))
    assert d.rank == 1 and d.energy_rank == 1 and d.elbow_rank == 1 and d.threshold_rank == 1
    # round-off singular values ~1e-15 s_1 contribute at that level
    for v_ in (d.erank, d.stable_rank, d.nuclear_rank):
        assert v_ == pytest.approx(1.0, abs=1e-12)


def test_known_singular_values_closed_forms():
    rng = np.random.default_rng(2)
    s = np.array([3.0, 1.0, 1.0, 1.0])
    d = weight_dimensions(_with_singular_values(rng, s))
    np.testing.assert_allclose(d.singular_values, s, rtol=1e-13)
    # p = (1/2, 1/6, 1/6, 1/6): H = ln 2 / 2 + ln 6 / 2, erank = sqrt(12)
    assert d.erank == pytest.approx(np.sqrt(12.0), rel=1e-12)
    assert d.stable_rank == pytest.approx(12.0 / 9.0, rel=1e-12)
    assert d.nuclear_rank == pytest.approx(2.0, rel=1e-12)
    # cumulative energy 9, 10, 11, 12; 0.9 * 12 = 10.8
    assert d.energy_rank == 3
    assert energy_rank(s, 0.75) == 1 and energy_rank(s, 0.8) == 2 and energy_rank(s, 1.0) == 4
    # normalised scree: x = (0, 1/3, 2/3, 1), y = (1, 0, 0, 0); farthest below chord at k = 2
    assert d.elbow_rank == 1
    assert d.rank == 4


def test_elbow_closed_form_and_no_elbow():
    s = np.array([10.0, 9.0, 8.0, 1.0, 0.9, 0.8])
    # 1 - x - y = (0, -.09, -.18, .38, .19, 0): elbow point k = 4, elbow rank 3
    assert elbow_rank(s) == 3
    # concave scree: no point below the chord, elbow rank = numerical rank
    assert elbow_rank(np.array([1.0, 1.0, 1.0, 0.5])) == 4
    assert elbow_rank(np.array([2.0, 0.0])) == 1


def test_threshold_constant_square():
    # square matrix: cut = 2.858 median(s) with median 1 here
    assert optimal_threshold_coefficient(1.0) == pytest.approx(2.858, abs=5e-4)
    assert threshold_rank(np.array([10.0, 2.87, 1.0, 1.0, 1.0])) == 2
    assert threshold_rank(np.array([10.0, 2.85, 1.0, 1.0, 1.0])) == 1


def test_marchenko_pastur_median():
    # normalisation of the law and the published polynomial fit of omega(beta)
    # (Gavish & Donoho 2014: omega ~ 0.56 b^3 - 0.95 b^2 + 1.82 b + 1.43, accurate to ~1e-2)
    from koopnet.dimension import _mp_cdf

    for beta in (0.05, 0.3, 0.7, 1.0):
        assert _mp_cdf((1 + np.sqrt(beta)) ** 2, beta) == pytest.approx(1.0, abs=1e-10)
        fit = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
        assert optimal_threshold_coefficient(beta) == pytest.approx(fit, abs=0.02)
    # Monte Carlo: median eigenvalue of X X^T / n, m = 300, n = 600; the sample median's
    # fluctuations are O(1/m) on a density of order 1, so 0.02 is many standard errors
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 600))
    ev = np.linalg.eigvalsh(X @ X.T / 600)
    assert np.median(ev) == pytest.approx(marchenko_pastur_median(0.5), abs=0.02)


def test_batched_equals_single_and_zero_matrix():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5, 8, 8))
    W[2] = 0.0
    batch = weight_dimensions(W)
    for b in range(5):
        one = weight_dimensions(W[b])
        for name in (
            "rank",
            "erank",
            "stable_rank",
            "nuclear_rank",
            "energy_rank",
            "elbow_rank",
            "threshold_rank",
        ):
            assert getattr(batch, name)[b] == getattr(one, name), name
    z = weight_dimensions(W[2])
    assert all(
        getattr(z, n) == 0
        for n in (
            "rank",
            "erank",
            "stable_rank",
            "nuclear_rank",
            "energy_rank",
            "elbow_rank",
            "threshold_rank",
        )
    )
    assert np.all(np.isfinite(batch.erank))


def test_low_rank_plus_noise_recovers_rank():
    rng = np.random.default_rng(5)
    n, r = 200, 4
    U, V = _orthogonal(rng, n, r), _orthogonal(rng, n, r)
    S = np.array([8.0, 6.0, 4.0, 2.0])
    sigma = 0.05  # noise singular values fill [0, 2 sigma] = [0, 0.1], far below S
    W = U @ np.diag(S) @ V.T + sigma / np.sqrt(n) * rng.standard_normal((n, n))
    d = weight_dimensions(W)
    assert d.threshold_rank == r
    assert d.elbow_rank == r
    assert d.rank == n  # the noise is full rank


def test_ginibre_asymptotics():
    # entries N(0, 1/N): singular values -> quarter circle on [0, 2], s_1 -> 2, so
    # stable rank / N -> E[s^2] / 4 = 1/4 and nuclear rank / N -> E[s] / 2 = 4 / (3 pi).
    # At N = 1000, s_1^2 = 4 - 2^(4/3) N^(-2/3) * TW (mean -1.2, sd 1.3): |s_1^2 - 4| ~ 0.03 +- 0.03
    # and sum s^2 / N has relative sd sqrt(2) / N; the limits hold to ~1 % (0.003 and 0.004),
    # so a tolerance 0.01 on ratio / N covers > 4 standard deviations of s_1.
    rng = np.random.default_rng(6)
    n = 1000
    d = weight_dimensions(rng.standard_normal((n, n)) / np.sqrt(n))
    assert d.stable_rank / n == pytest.approx(0.25, abs=0.01)
    assert d.nuclear_rank / n == pytest.approx(4.0 / (3.0 * np.pi), abs=0.01)


# ------------------------------------------------------------------ participation ratio


def test_participation_ratio_closed_forms():
    rng = np.random.default_rng(7)
    n, t = 6, 4000
    # exactly isotropic sample: centred orthonormal columns -> covariance proportional to I
    Q = rng.standard_normal((t, n))
    Q = np.linalg.qr(Q - Q.mean(axis=0))[0]
    assert participation_ratio(Q) == pytest.approx(n, rel=1e-10)
    # rank-1 data: every sample on one line
    line = rng.standard_normal(t)[:, None] * rng.standard_normal(n)[None, :] + rng.standard_normal(n)
    assert participation_ratio(line) == pytest.approx(1.0, rel=1e-10)
    # covariance with eigenvalues (a, b, 0, ...): PR = (a + b)^2 / (a^2 + b^2)
    X = np.zeros((t, n))
    X[:, :2] = Q[:, :2] * np.sqrt([4.0, 1.0])
    assert participation_ratio(X) == pytest.approx(25.0 / 17.0, rel=1e-10)
    # batch, weights, NaN under zero weight, zero variance
    stack = np.stack([Q, line])
    np.testing.assert_array_equal(
        participation_ratio(stack), [participation_ratio(Q), participation_ratio(line)]
    )
    Xn = np.concatenate([line, np.full((3, n), np.nan)])
    w = np.r_[np.ones(t), np.zeros(3)]
    assert participation_ratio(Xn, w) == pytest.approx(1.0, rel=1e-10)
    assert np.isnan(participation_ratio(np.ones((5, n))))


def test_koopman_dimension_and_slow_modes():
    lam = np.array([-1.0, -1.0 + 1e-9, -0.25 + 0.5j, -0.25 - 0.5j, -0.75, np.nan + 1j * np.nan])
    assert koopman_dimension(lam, 1e-6) == 3
    assert koopman_dimension(lam, 0.6) == 2
    assert n_slow_modes(lam, 3.0) == 2  # Re > -1/3
    assert n_slow_modes(lam, 1.2) == 3  # Re > -0.833
    np.testing.assert_array_equal(koopman_dimension(np.stack([lam, lam[::-1]]), 1e-6), [3, 3])


# ------------------------------------------------------------------ stage


def _equilibria_dataset(batch, types_per_net, x_eq_per_net):
    """Equilibria dataset from exactly known equilibria (Jacobian spectra computed at them)."""
    B, N = len(batch), batch.n_units
    E = max(len(t) for t in types_per_net)
    x_eq = np.full((B, E, N), np.nan)
    eq_type = np.full((B, E), -1, dtype=np.int64)
    eigs = np.full((B, E, N), np.nan + 1j * np.nan)
    for b in range(B):
        for e, (t, x) in enumerate(zip(types_per_net[b], x_eq_per_net[b])):
            x_eq[b, e], eq_type[b, e] = x, int(t)
            eigs[b, e] = np.linalg.eigvals(batch[b].jacobian(np.asarray(x)))
    return xr.Dataset(
        {
            "x_eq": (("network", "equilibrium", "unit"), x_eq),
            "eq_type": (("network", "equilibrium"), eq_type),
            "jacobian_eigenvalues": (("network", "equilibrium", "mode"), eigs),
        }
    )


def test_koopman_dimension_low_rank_ensemble():
    # logistic, theta = -W 1/2: x = 0 is an equilibrium with J = -I + W/4.
    # W = U S U^T + noise: eigenvalues of J are -1 + S/4 (distinct from -1 by >= 0.25) and
    # N - r eigenvalues within ~ noise of -1.
    from koopnet.dimension import attractor_spectrum

    rng = np.random.default_rng(8)
    n, r = 30, 3
    Ws = []
    for _ in range(2):
        U = _orthogonal(rng, n, r)
        Ws.append(U @ np.diag([1.0, 2.0, 3.0]) @ U.T + 1e-6 / np.sqrt(n) * rng.standard_normal((n, n)))
    W = np.stack(Ws)
    batch = NetworkBatch(W, -W.sum(axis=2) / 2, "logistic")
    zero = np.zeros(n)
    # network 0 lists no stable equilibrium; network 1 lists a (labelled) saddle before x = 0,
    # which exercises the choice "first stable entry" (its x is a placeholder, not a root)
    eqs = _equilibria_dataset(
        batch,
        [[EquilibriumType.saddle], [EquilibriumType.saddle, EquilibriumType.stable_node]],
        [[zero], [zero + 1.0, zero]],
    )
    lam, index, status = attractor_spectrum(eqs)
    np.testing.assert_array_equal(index, [-1, 1])
    np.testing.assert_array_equal(
        status, [AttractorStatus.no_stable_equilibrium, AttractorStatus.stable_equilibrium]
    )
    assert koopman_dimension(lam[1], 1e-3) == r
    assert n_slow_modes(lam[1], 3.0) == 1  # -0.25 > -1/3 only
    assert n_slow_modes(lam[1], 1.8) == 2  # -0.25, -0.5 > -0.556
    d = weight_dimensions(W)
    np.testing.assert_array_equal(d.threshold_rank, [r, r])


_FAST = dict(n_initial_conditions=3, t_discard=30.0, n_samples=81,
             integration=IntegrationSettings(t_max=60.0, rtol=1e-7, atol=1e-10))


def _stage_inputs(rng, B=3, n=4):
    W = rng.standard_normal((B, n, n)) * 0.5
    batch = NetworkBatch(W, -W.sum(axis=2) / 2, "logistic")  # x = 0 stable (gain < 1/4 * |W|)
    types = [[EquilibriumType.stable_node]] * B
    return batch, _equilibria_dataset(batch, types, [[np.zeros(n)]] * B)


def test_dimension_dataset_batch_vs_alone():
    pytest.importorskip("koopnet.simulate")
    from koopnet.dimension import dimension_dataset

    rng = np.random.default_rng(9)
    batch, eqs = _stage_inputs(rng)
    settings = DimensionSettings(**_FAST)
    seeds = [11, 12, 13]
    full = dimension_dataset(batch, seeds, settings, eqs)
    for name, v in full.data_vars.items():
        assert "long_name" in v.attrs and "units" in v.attrs, name
        assert v.dims[0] == "network"
    assert full["participation_ratio_source"].attrs["flag_meanings"].split()[0] == "settling_transients"
    for b in range(3):
        one = dimension_dataset(
            NetworkBatch(batch.W[b : b + 1], batch.theta[b : b + 1], "logistic"),
            seeds[b : b + 1],
            settings,
            eqs.isel(network=slice(b, b + 1)),
        )
        xr.testing.assert_identical(full.isel(network=slice(b, b + 1)), one)
    np.testing.assert_array_equal(full["participation_ratio_source"], PRSource.settling_transients)
    assert np.all((full["participation_ratio"] >= 1) & (full["participation_ratio"] <= 4))
    np.testing.assert_array_equal(full["koopman_dimension"], 4)
    np.testing.assert_array_equal(full["attractor_status"], AttractorStatus.stable_equilibrium)

    # no stable equilibrium: a flag and -1 counts, never a silent value
    eqs_bad = eqs.copy(deep=True)
    eqs_bad["eq_type"][1, 0] = int(EquilibriumType.saddle)
    bad = dimension_dataset(batch, seeds, settings, eqs_bad)
    np.testing.assert_array_equal(bad["attractor_status"], [0, AttractorStatus.no_stable_equilibrium, 0])
    np.testing.assert_array_equal(bad["koopman_dimension"], [4, -1, 4])
    np.testing.assert_array_equal(bad["n_slow_modes"][1], -1)
    np.testing.assert_array_equal(bad["attractor_equilibrium"], [0, -1, 0])


def test_dynamics_pr_exact_cases():
    pytest.importorskip("koopnet.simulate")
    from koopnet.dimension import dynamics_participation_ratio

    # W = 0: x(t) = theta + exp(-t) z, one trajectory lies on a line -> PR = 1 from its transient
    n = 5
    batch0 = NetworkBatch(np.zeros((1, n, n)), np.ones((1, n)), "logistic")
    pr, src, used = dynamics_participation_ratio(
        batch0, [1], DimensionSettings(**{**_FAST, "n_initial_conditions": 1})
    )
    assert src[0] == PRSource.settling_transients and used[0] == 1
    assert pr[0] == pytest.approx(1.0, abs=1e-8)

    # linear activation, W = 4 I + 4 w R (R a rotation generator on units 0, 1), theta = -W 1/2:
    # A = W/4 - I = w R on the plane, -1 on the rest: neutral circles about x = 0 never settle.
    # Ongoing samples over whole periods give covariance ~ r^2/2 I_2 -> PR = 2; the window holds
    # 5 periods sampled every 1/40 period with both ends included (bias O(1/200)).
    n, omega = 3, 2 * np.pi / 2.0
    W = np.zeros((n, n))
    W[:2, :2] = 4 * np.eye(2) + 4 * omega * np.array([[0.0, -1.0], [1.0, 0.0]])
    batch = NetworkBatch(W[None], -W.sum(axis=1)[None] / 2, "linear")
    s = DimensionSettings(
        n_initial_conditions=3, t_discard=10.0, n_samples=401,
        integration=IntegrationSettings(t_max=20.0, rtol=1e-9, atol=1e-12),
    )
    pr, src, used = dynamics_participation_ratio(batch, [2], s)
    assert src[0] == PRSource.ongoing_activity and used[0] == 3
    assert pr[0] == pytest.approx(2.0, abs=0.02)

    # slow attractor: logistic w = 3.6 I, theta = -1.8, x* = 0 with margin 0.1; from ~2 away the
    # speed falls below settle_tol = 1e-6 only after ~120 > t_max: a slow transient, not activity
    batch = NetworkBatch((3.6 * np.eye(2))[None], np.full((1, 2), -1.8), "logistic")
    s = DimensionSettings(n_initial_conditions=4, t_discard=50.0, n_samples=201,
                          integration=IntegrationSettings(t_max=100.0, settle_tol=1e-6))
    node = (np.zeros((1, 1, 2)), np.array([[0.1]]))  # x* = 0, margin 1 - 3.6/4
    pr, src, used = dynamics_participation_ratio(batch, [3], s, node)
    assert src[0] == PRSource.settling_transients and used[0] == 4
    strict = DimensionSettings(**{**s.__dict__, "approach_tol": s.integration.settle_tol})
    _, src, _ = dynamics_participation_ratio(batch, [3], strict, node)
    # the premise: unsettled at t_max; W symmetric and sigma monotone make it a gradient system,
    # which cannot sustain activity: slow transients, whatever approach_tol says
    assert src[0] == PRSource.slow_transients
    _, src, _ = dynamics_participation_ratio(batch, [3], s)  # no known attractor: the same argument
    assert src[0] == PRSource.slow_transients

    # a limit cycle with a slow bottleneck (SNIC just past onset: tanh, W = [[1.5, -w], [w, 1.5]])
    # crawls at speed < approach_tol near the ghost of the saddle-node, far from any stable
    # equilibrium (the only one, x = 0, is an unstable focus): ongoing activity
    w = 0.229944 + 1e-5
    W = np.array([[1.5, -w], [w, 1.5]])
    snic = NetworkBatch(W[None], np.zeros((1, 2)), "tanh")
    none = (np.full((1, 1, 2), np.nan), np.full((1, 1), np.nan))
    _, src, used = dynamics_participation_ratio(snic, [4], DimensionSettings(n_initial_conditions=8), none)
    assert src[0] == PRSource.ongoing_activity and used[0] == 8


def test_settings_validation():
    with pytest.raises(ValueError, match="integration.t_max"):
        DimensionSettings(t_discard=200.0, integration=IntegrationSettings(t_max=100.0))
    with pytest.raises(ValueError, match="integration.settle_tol"):
        IntegrationSettings(settle_tol=0.0)
    import dataclasses

    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(DimensionSettings))


def _stages(W, theta, activation, settings):
    from koopnet.dimension import dimension_dataset
    from koopnet.equilibria import equilibria_dataset

    batch = NetworkBatch(np.asarray(W, float)[None], np.asarray(theta, float)[None], activation)
    eq = equilibria_dataset(batch, [5])
    return eq, dimension_dataset(batch, [5], settings, eq)


def test_attracting_non_hyperbolic_origin_and_slow_transients_are_not_mislabelled():
    pytest.importorskip("koopnet.simulate")
    # tanh with W = I: x' = -x + tanh x ~ -x^3/3, the origin (J = 0) attracts algebraically,
    # |x(t)| ~ (2 t / 3)^(-1/2) = 0.12 at t = 100: unsettled, yet a gradient system (symmetric W)
    s = DimensionSettings(n_initial_conditions=4, n_samples=101)
    eq, ds = _stages(np.eye(2), np.zeros(2), "tanh", s)
    assert eq["eq_type"].values[0, 0] == EquilibriumType.non_hyperbolic
    assert ds["attractor_status"].values[0] == AttractorStatus.non_hyperbolic_attractor
    assert ds["attractor_equilibrium"].values[0] == 0 and ds["koopman_dimension"].values[0] == -1
    assert ds["participation_ratio_source"].values[0] == PRSource.slow_transients
    assert np.isfinite(ds["participation_ratio"].values[0])
    from koopnet.koopman import KoopmanStatus, SpectraSettings, spectra_dataset

    batch = NetworkBatch(np.eye(2)[None], np.zeros((1, 2)), "tanh")
    spec = spectra_dataset(batch, [5], SpectraSettings(eigenfunction_max_units=0, gedmd_max_units=0), equilibria=eq)
    assert spec["koopman_status"].values[0] == KoopmanStatus.non_hyperbolic_equilibrium
    # not symmetric: W = I + eps R (R the rotation generator) keeps x' = eps R x - x^3/3 + ...:
    # d|x|^2/dt <= -(1/2 - eps)|x|^4 / 3 < 0 for eps < 1/2, so the distance to 0 falls
    # monotonically (the local-decay check) while the rotation keeps it unsettled
    eps = 0.005
    W = np.eye(2) + eps * np.array([[0.0, -1.0], [1.0, 0.0]])
    slow = DimensionSettings(n_initial_conditions=4, n_samples=201, t_discard=200.0,
                             integration=IntegrationSettings(t_max=400.0))
    eq, ds = _stages(W, np.zeros(2), "tanh", slow)
    assert eq["eq_type"].values[0, 0] == EquilibriumType.non_hyperbolic
    assert ds["attractor_status"].values[0] == AttractorStatus.non_hyperbolic_attractor
    assert ds["participation_ratio_source"].values[0] == PRSource.slow_transients
    # a center is not an attractor: linear sigma, W = 4 I + 4 R gives x' = R x (circles)
    W = 4 * np.eye(2) + 4 * np.array([[0.0, -1.0], [1.0, 0.0]])
    eq, ds = _stages(W, -W.sum(axis=1) / 2, "linear", DimensionSettings(n_initial_conditions=2, n_samples=101))
    assert ds["attractor_status"].values[0] == AttractorStatus.no_stable_equilibrium
    assert ds["participation_ratio_source"].values[0] == PRSource.ongoing_activity


def test_no_motion_and_no_equilibrium_for_constant_fields():
    pytest.importorskip("koopnet.simulate")
    s = DimensionSettings(n_initial_conditions=3, n_samples=51, t_discard=5.0,
                          integration=IntegrationSettings(t_max=10.0))
    # linear sigma = 1/2 + x/4 with W = 4 I: f = W 1/2 + theta is constant
    eq, _ = _stages(4 * np.eye(2), np.array([1.0, 0.0]), "linear", s)
    assert eq["equilibrium_status"].values[0] == EquilibriumStatus.no_equilibrium
    # theta = -W 1/2: f = 0, every point is an equilibrium (a continuum) and nothing moves
    eq, ds = _stages(4 * np.eye(2), np.array([-2.0, -2.0]), "linear", s)
    assert eq["equilibrium_status"].values[0] == EquilibriumStatus.singular
    assert ds["participation_ratio_source"].values[0] == PRSource.no_motion
    assert np.isnan(ds["participation_ratio"].values[0])
