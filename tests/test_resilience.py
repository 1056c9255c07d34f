"""Tests of koopnet.resilience against exact 1-D and mean-field results (SCIENCE.md section 5)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.optimize import brentq

from koopnet import NetworkBatch
from koopnet._flags import EquilibriumType
from koopnet.activations import get_activation
from koopnet.simulate import integrate
from koopnet.resilience import (
    ResilienceSettings,
    TippingStatus,
    basin_stability,
    resilience_dataset,
    tipping_shifts,
)

LOGISTIC = get_activation("logistic")


def roots_1d(beta, theta, act=LOGISTIC):
    """All real roots of -x + beta sigma(x) + theta (bracketed on a fine grid, then brentq)."""
    g = lambda x: -x + beta * act.sigma(np.asarray(x, dtype=float)) + theta  # noqa: E731
    span = abs(beta) + abs(theta) + 5
    xs = np.linspace(-span, span, 200001)
    gv = g(xs)
    idx = np.flatnonzero(np.sign(gv[:-1]) != np.sign(gv[1:]))
    return np.array([brentq(g, xs[i], xs[i + 1], xtol=1e-14) for i in idx])


def equilibria_ds(x_eq_list, types_list, N):
    """An equilibria dataset (the koopnet.equilibria contract) from known equilibria."""
    B = len(x_eq_list)
    E = max(len(x) for x in x_eq_list)
    x_eq = np.full((B, E, N), np.nan)
    eq_type = np.full((B, E), -1, dtype=np.int64)
    for b, (xs, ts) in enumerate(zip(x_eq_list, types_list)):
        order = np.argsort([0 if t in (0, 1) else 1 for t in ts], kind="stable")  # stable first
        x_eq[b, : len(xs)] = np.asarray(xs)[order]
        eq_type[b, : len(ts)] = np.asarray(ts)[order]
    return xr.Dataset({
        "x_eq": (("network", "equilibrium", "unit"), x_eq),
        "eq_type": (("network", "equilibrium"), eq_type),
    })


def one_d_equilibria(beta, theta, N=1):
    """Synchronous equilibria x 1 of the mean-field (or 1-D) logistic network, with types."""
    r = roots_1d(beta, theta)
    slope = -1 + beta * LOGISTIC.dsigma(r)
    types = [EquilibriumType.stable_node if s < 0 else EquilibriumType.saddle for s in slope]
    return [np.full(N, v) for v in r], [int(t) for t in types], r, slope


def fold_thetas(beta):
    """Saddle-node curve beta = 2 + 2 cosh x, theta = x - 1 - e^x: fold thetas (low, high state)."""
    xf = np.arccosh(beta / 2 - 1)
    # the low (x < 0) state dies at x = -xf when theta rises; the high state at x = +xf
    return (-xf) - 1 - np.exp(-xf), xf - 1 - np.exp(xf)


def test_basin_stability_1d_split_at_unstable_root():
    beta, theta = 8.0, -3.5
    xs, types, r, slope = one_d_equilibria(beta, theta)
    assert len(r) == 3
    u = r[1]  # unstable root: the basin boundary
    ds = equilibria_ds([xs], [types], 1)
    stable = np.isin(ds.eq_type.values, [0, 1])
    s = ResilienceSettings(n_initial_conditions=1000)
    batch = NetworkBatch([[[beta]]], [[theta]], "logistic")
    res = basin_stability(batch, [7], ds.x_eq.values, stable, s)
    lo, hi = res["box_lower"][0, 0], res["box_upper"][0, 0]
    # exact box of SCIENCE.md 3: theta + [0, beta], widened by 10 % of its width + 0.1
    np.testing.assert_allclose([lo, hi], [theta - 0.9, theta + beta + 0.9], rtol=0, atol=1e-12)
    expected_low = (u - lo) / (hi - lo)
    S = res["basin_stability"][0]
    se = res["basin_stability_se"][0]
    low = int(np.argmin(ds.x_eq.values[0, :2, 0]))
    assert abs(S[low] - expected_low) < 3 * se[low]
    assert abs(S[1 - low] - (1 - expected_low)) < 3 * se[1 - low]
    assert S[low] + S[1 - low] == 1.0
    assert np.isnan(S[2])  # the saddle gets no basin stability
    assert res["fraction_diverged"][0] == res["fraction_unsettled"][0] == 0.0
    assert res["fraction_unassigned"][0] == 0.0
    # stronger, per initial condition: the label is fixed by the side of u
    from koopnet._random import stage_rng

    x0 = lo + (hi - lo) * stage_rng(7, "basin_stability").random((1000, 1))[:, 0]
    want = np.where(x0 < u, low, 1 - low)
    np.testing.assert_array_equal(res["labels"][0], want)


@pytest.mark.parametrize("method", ["continuation", "chord"])
@pytest.mark.parametrize("beta", [4.5, 6.0, 8.0, 12.0])
def test_tipping_locates_saddle_node_curve(beta, method):
    th_low_dies, th_high_dies = fold_thetas(beta)
    batch_list, eqs = [], []
    thetas = [th_high_dies + 0.2 * (th_low_dies - th_high_dies),
              th_high_dies + 0.8 * (th_low_dies - th_high_dies)]  # inside the bistable range
    for theta in thetas:
        xs, types, r, _ = one_d_equilibria(beta, theta)
        assert len(r) == 3
        eqs.append((xs, types))
    batch = NetworkBatch(np.full((2, 1, 1), beta), np.array(thetas)[:, None], "logistic")
    ds = equilibria_ds([e[0] for e in eqs], [e[1] for e in eqs], 1)
    stable = np.isin(ds.eq_type.values, [0, 1])
    up, down, st_up, st_down = tipping_shifts(batch, ds.x_eq.values, stable,
                                              ResilienceSettings(tipping_method=method))
    for b, theta in enumerate(thetas):
        x = ds.x_eq.values[b, :2, 0]
        lowi, highi = int(np.argmin(x)), int(np.argmax(x))
        # low state tips upward at the fold theta; the high state downward
        assert st_up[b, lowi] == TippingStatus.fold and st_down[b, highi] == TippingStatus.fold
        assert abs(up[b, lowi] - (th_low_dies - theta)) < 1e-6
        assert abs(down[b, highi] - (th_high_dies - theta)) < 1e-6
        # the other directions never fold (sigma saturates): flagged, never a silent NaN
        assert st_down[b, lowi] == TippingStatus.no_fold_in_range and np.isnan(down[b, lowi])
        assert st_up[b, highi] == TippingStatus.no_fold_in_range and np.isnan(up[b, highi])
        assert st_up[b, 2] == st_down[b, 2] == TippingStatus.not_stable


def test_mean_field_reduces_to_1d_problem():
    N, J0, theta0 = 10, 9.0, -4.2
    W = np.full((N, N), J0 / N)
    xs, types, r, slope = one_d_equilibria(J0, theta0, N)
    assert len(r) == 3
    ds = equilibria_ds([xs], [types], N)
    batch = NetworkBatch(W[None], np.full((1, N), theta0), "logistic")
    s = ResilienceSettings(n_initial_conditions=40, robustness_orders=3)
    out = resilience_dataset(batch, [3], s, ds)
    x_sorted = ds.x_eq.values[0, :, 0]
    sl = -1 + J0 * LOGISTIC.dsigma(x_sorted)
    # margins: J = -I + (J0/N) 1 1^T diag(sigma') has eigenvalues -1 (N-1 times), -1 + J0 sigma'
    np.testing.assert_allclose(out.stability_margin.values[0], -np.maximum(sl, -1.0), atol=1e-12)
    # GBB: beta_eff = J0, theta_eff = theta0, x_eff = synchronous value, all exactly
    np.testing.assert_allclose(out.beta_eff.values[0], J0, rtol=1e-14)
    np.testing.assert_allclose(out.theta_eff.values[0], theta0, rtol=1e-14)
    st = np.isin(ds.eq_type.values[0], [0, 1])
    np.testing.assert_allclose(out.x_eff.values[0, st], x_sorted[st], rtol=1e-13)
    # tipping of the N-dim network = 1-D saddle-node curve = the reduction's prediction
    th_low_dies, th_high_dies = fold_thetas(J0)
    lowi = int(np.argmin(np.where(st, x_sorted, np.inf)))
    highi = int(np.argmax(np.where(st, x_sorted, -np.inf)))
    assert abs(out.tipping_shift_up.values[0, lowi] - (th_low_dies - theta0)) < 1e-6
    assert abs(out.tipping_shift_down.values[0, highi] - (th_high_dies - theta0)) < 1e-6
    np.testing.assert_allclose(out.beta_eff_tipping_up.values[0, lowi], th_low_dies - theta0,
                               atol=1e-12)
    np.testing.assert_allclose(out.beta_eff_tipping_down.values[0, highi],
                               th_high_dies - theta0, atol=1e-12)
    assert out.beta_eff_tipping_status_down.values[0, lowi] == TippingStatus.no_fold_in_range
    # robustness: switching a unit off keeps the network mean-field and synchronous with
    # effective coupling J0 (n - p) / N (W_p = (J0/N) 1 (1 - p e_j)^T has rank one), whatever
    # the order. The low state never folds as the coupling falls; the high state folds at
    # the beta of the saddle-node curve where theta0 = x - 1 - e^x, x > 0: it survives the
    # removals k with J0 (N - k) / N above that beta.
    xh = brentq(lambda x: x - 1 - np.exp(x) - theta0, 1e-9, 20.0, xtol=1e-14)
    beta_h = 2 + 2 * np.cosh(xh)
    k = np.arange(1, N)
    survive_high = int(np.sum(np.cumprod(J0 * (N - k) / N > beta_h)))
    assert 0 < survive_high < N - 1  # a non-trivial case
    np.testing.assert_allclose(out.robustness_units.values[0, highi], survive_high / N,
                               atol=1e-15)
    np.testing.assert_allclose(out.robustness_units.values[0, lowi], (N - 1) / N, atol=1e-15)
    assert np.isnan(out.robustness_units.values[0, 2])  # saddle


def test_margins_match_jacobian_spectra_and_batch_invariance():
    from koopnet.equilibria import EquilibriumSettings, equilibria_dataset

    rng = np.random.default_rng(5)
    B, N = 3, 4
    W = rng.normal(0.0, 7.0 / np.sqrt(N), (B, N, N))
    theta = -W.sum(axis=2) / 2
    batch = NetworkBatch(W, theta, "logistic")
    seeds = [11, 12, 13]
    eq = equilibria_dataset(batch, seeds, EquilibriumSettings(n_starts=64))
    s = ResilienceSettings(n_initial_conditions=30, robustness_orders=2)
    out = resilience_dataset(batch, seeds, s, eq)
    ev = eq.jacobian_eigenvalues.values
    valid = eq.eq_type.values >= 0
    np.testing.assert_allclose(out.stability_margin.values[valid],
                               -np.nanmax(ev.real, axis=-1)[valid], rtol=1e-9, atol=1e-12)
    assert np.all(np.isnan(out.stability_margin.values[~valid]))
    # numerical range contains the spectrum: reactivity >= max Re lambda
    assert np.all(out.reactivity.values[valid] >= -out.stability_margin.values[valid] - 1e-12)
    stable = np.isin(eq.eq_type.values, [0, 1])
    assert stable.any()
    np.testing.assert_allclose(out.return_time.values[stable],
                               1 / out.stability_margin.values[stable], rtol=1e-15)
    # basin fractions add up
    tot = (np.nansum(out.basin_stability.values, axis=1) + out.fraction_diverged.values
           + out.fraction_unsettled.values + out.fraction_stalled.values
           + out.fraction_unassigned.values)
    np.testing.assert_allclose(tot, 1.0, atol=1e-12)
    # every variable documented; flags carry CF attributes; no undocumented NaN
    for name, var in out.data_vars.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name
        assert var.dims[0] == "network"
        if "status" in name:
            assert var.attrs["flag_values"][0] == -1 and "fold" in var.attrs["flag_meanings"]
    for d in ("up", "down"):
        nan = np.isnan(out[f"tipping_shift_{d}"].values)
        st = out[f"tipping_status_{d}"].values
        assert np.all(np.isin(st[nan], [-1, 2, 3, 4]))
        assert np.all(np.isin(st[~nan], [0, 1]))
    # bitwise identical alone and in the batch
    for b in range(B):
        one = resilience_dataset(
            NetworkBatch(W[b : b + 1], theta[b : b + 1], "logistic"), seeds[b : b + 1], s,
            eq.isel(network=slice(b, b + 1)),
        )
        xr.testing.assert_identical(one.isel(network=0), out.isel(network=b))


def test_linear_activation_has_no_fold_and_cubic_divergence_counted():
    # linear: one globally stable equilibrium (max Re eig W < 4), no fold in any direction
    W = np.array([[[1.0, -2.0], [0.5, 1.0]]])
    theta = np.array([[0.3, -0.2]])
    A = W[0] / 4 - np.eye(2)
    x_star = np.linalg.solve(A, -(W[0] @ [0.5, 0.5] + theta[0]))
    ds = equilibria_ds([[x_star]], [[int(EquilibriumType.stable_focus)]], 2)
    s = ResilienceSettings(n_initial_conditions=20, robustness_orders=1, tipping_max_shift=3.0)
    out = resilience_dataset(NetworkBatch(W, theta, "linear"), [1], s, ds)
    assert out.tipping_status_up.values[0, 0] == TippingStatus.no_fold_in_range
    assert out.tipping_status_down.values[0, 0] == TippingStatus.no_fold_in_range
    assert out.basin_stability.values[0, 0] == 1.0
    np.testing.assert_allclose(out.stability_margin.values[0, 0],
                               -np.max(np.linalg.eigvals(A).real), rtol=1e-12)
    # cubic, w = -48, theta = 24: p(x) = x^3 - 13 x; 0 stable, basin (-sqrt 13, sqrt 13);
    # box theta +- 30 = [-6, 54]: the rest of the box diverges
    ds = equilibria_ds([[[0.0], [np.sqrt(13)], [-np.sqrt(13)]]], [[0, 2, 2]], 1)
    s = ResilienceSettings(n_initial_conditions=400, box_halfwidth=30.0, robustness_orders=0)
    out = resilience_dataset(NetworkBatch([[[-48.0]]], [[24.0]], "cubic"), [2], s, ds)
    p_in = 2 * np.sqrt(13) / 60
    S, se = out.basin_stability.values[0, 0], out.basin_stability_se.values[0, 0]
    assert abs(S - p_in) < 3 * se
    np.testing.assert_allclose(out.fraction_diverged.values[0], 1 - S, atol=1e-12)
    # the reduction: beta_eff = w; cubic folds where w sigma'(x) = 1
    assert out.beta_eff.values[0] == -48.0
    # margin of x = 0: -p'(0) = 13
    np.testing.assert_allclose(out.stability_margin.values[0, 0], 13.0, rtol=1e-12)


@pytest.mark.parametrize(
    "W, theta, activation, x_guess",
    [
        (2 * np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([3.0, 3.0]), "tanh", [3.0, 7.0]),
        (np.array([[6.0, -4.0], [4.0, 6.0]]), np.array([3.0, -1.0]), "logistic", [5.0, 9.0]),
    ],
)
@pytest.mark.parametrize("method", ["continuation", "chord"])
def test_fold_is_where_det_J_vanishes(W, theta, activation, x_guess, method):
    # 2-D networks whose saturated state folds when the input is lowered: at the located
    # fold the continued state is an equilibrium of the shifted network and J is singular
    from scipy.optimize import fsolve

    from koopnet import Network
    from koopnet._resilience_continuation import continue_to_tipping

    net = Network(W, theta, activation)
    x = fsolve(net.vector_field, x_guess, xtol=1e-13)
    assert np.max(np.linalg.eigvals(net.jacobian(x)).real) < 0
    act = get_activation(activation)
    if method == "chord":
        from koopnet._resilience_tipping import tip_branch

        out = [tip_branch(W, theta, act, x, d) for d in (1.0, -1.0)]
        sh, st, xl = (np.array(v) for v in zip(*out))
    else:
        sh, st, xl = continue_to_tipping(W[None].repeat(2, 0), theta[None].repeat(2, 0), act,
                                         np.stack([x, x]), np.array([1.0, -1.0]))
    assert st[0] == TippingStatus.no_fold_in_range and np.isnan(sh[0])
    assert st[1] == TippingStatus.fold and sh[1] < 0
    shifted = Network(W, theta + sh[1], activation)
    assert np.max(np.abs(shifted.vector_field(xl[1]))) < 1e-8
    ev = np.linalg.eigvals(shifted.jacobian(xl[1]))
    lead = ev[np.argmax(ev.real)]
    # distance 1e-9 in theta from a fold: the critical eigenvalue is O(sqrt(1e-9))
    assert abs(lead) < 1e-3 and abs(np.linalg.det(shifted.jacobian(xl[1]))) < 1e-3


@pytest.mark.parametrize("method", ["continuation", "chord"])
def test_tanh_odd_symmetry_mirrors_tipping_shifts(method):
    # tanh with theta = 0 is odd: x* -> -x* maps equilibria to equilibria and a shift +delta
    # of x* to -delta of -x*, so tipping_shift_up(x*) = -tipping_shift_down(-x*) exactly
    from koopnet.equilibria import equilibria_dataset

    rng = np.random.default_rng(8)
    N = 4
    W = rng.normal(0.0, 6.0 / np.sqrt(N), (1, N, N))
    batch = NetworkBatch(W, np.zeros((1, N)), "tanh")
    eq = equilibria_dataset(batch, [4])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = eq.x_eq.values
    assert stable.sum() >= 2
    up, down, st_up, st_down = tipping_shifts(batch, x, stable,
                                              ResilienceSettings(tipping_method=method))
    pairs = folds = 0
    for e in np.flatnonzero(stable[0]):
        d = np.max(np.abs(x[0] + x[0, e]), axis=1)  # partner -x*
        m = int(np.nanargmin(d))
        if d[m] < 1e-8 and m != e:
            pairs += 1
            assert st_up[0, e] == st_down[0, m]
            if st_up[0, e] in (TippingStatus.fold, TippingStatus.hopf):
                folds += 1
                assert abs(up[0, e] + down[0, m]) < 1e-6
    assert pairs >= 2 and folds >= 1


@pytest.mark.parametrize("method", ["continuation", "chord"])
def test_hopf_and_fold_flags_on_excitatory_inhibitory_pair(method):
    # an E-I pair (Wilson-Cowan-like): from a stable focus, raising the input ends in a fold
    # (a real eigenvalue reaches 0), lowering it in a Hopf point (a complex pair reaches the
    # imaginary axis, the equilibrium survives but loses stability)
    from scipy.optimize import fsolve

    from koopnet import Network
    from koopnet._resilience_continuation import continue_to_tipping

    W = np.array([[18.90306591, -11.25763049], [10.78797412, -3.05587226]])
    theta = np.array([-0.03787215, -0.09585183])
    net = Network(W, theta, "logistic")
    x = fsolve(net.vector_field, [-3.03, -0.65], xtol=1e-13)
    assert np.max(np.linalg.eigvals(net.jacobian(x)).real) < 0
    if method == "chord":
        from koopnet._resilience_tipping import tip_branch

        out = [tip_branch(W, theta, LOGISTIC, x, d) for d in (1.0, -1.0)]
        sh, st, xl = (np.array(v) for v in zip(*out))
    else:
        sh, st, xl = continue_to_tipping(W[None].repeat(2, 0), theta[None].repeat(2, 0),
                                         LOGISTIC, np.stack([x, x]), np.array([1.0, -1.0]))
    assert st[0] == TippingStatus.fold and st[1] == TippingStatus.hopf
    assert sh[0] > 0 > sh[1]
    for k in range(2):
        shifted = Network(W, theta + sh[k], "logistic")
        assert np.max(np.abs(shifted.vector_field(xl[k]))) < 1e-8
        ev = np.linalg.eigvals(shifted.jacobian(xl[k]))
        lead = ev[np.argmax(ev.real)]
        if k == 0:
            assert abs(lead) < 1e-3
        else:
            # Re lambda is linear in delta at a Hopf point: bracket 1e-9 -> |Re| ~ 1e-9
            assert abs(lead.real) < 1e-6 and abs(lead.imag) > 0.1


def test_slow_attractor_is_not_read_as_unsettled():
    # one neuron, w = 3.6 < 4, theta = -1.8: a unique stable equilibrium x* = 0 whose
    # margin is 1 - 3.6/4 = 0.1, so settling from ~2 away to |f| < 1e-8 takes ~170 > t_max
    beta, theta = 3.6, -1.8
    assert -0.0 + beta * LOGISTIC.sigma(0.0) + theta == 0.0  # x* = 0, unique as beta < 4
    ds = equilibria_ds([np.zeros((1, 1))], [np.array([EquilibriumType.stable_node])], 1)
    stable = np.isin(ds.eq_type.values, [0, 1])
    s = ResilienceSettings(n_initial_conditions=50)
    batch = NetworkBatch([[[beta]]], [[theta]], "logistic")
    # the premise: within t_max most trajectories are still on their way
    from koopnet.simulate import integrate, TrajectoryStatus

    lo, hi = theta - 0.46, theta + beta + 0.46
    x0 = np.linspace(lo, hi, 50)[None, :, None]
    integ = s.integration
    tr = integrate(batch, x0, integ.t_max, rtol=integ.rtol, atol=integ.atol,
                   settle_tol=integ.settle_tol)
    assert np.any(tr.status == TrajectoryStatus.unsettled)
    res = basin_stability(batch, [3], ds.x_eq.values, stable, s)
    assert res["fraction_unsettled"][0] == 0.0
    assert res["basin_stability"][0, 0] == 1.0  # the only attractor attracts everything
    # an extension pilot smaller than the unsettled set: its trajectories settle, so all
    # unsettled ones are extended, as without a pilot
    from koopnet.resilience import BasinStatus

    piloted = basin_stability(batch, [3], ds.x_eq.values, stable,
                              ResilienceSettings(n_initial_conditions=50, basin_pilot=5))
    assert 5 < piloted["n_extended"][0] == res["n_extended"][0]
    assert piloted["sampling"][0] == res["sampling"][0] == BasinStatus.all_initial_conditions
    np.testing.assert_array_equal(piloted["labels"], res["labels"])


def test_extension_pilot_stops_where_no_extended_trajectory_settles():
    # the limit cycle of test_basin_pilot_without_a_stable_equilibrium..., with its unstable
    # focus declared a stable equilibrium with a margin for which settling_time asks for
    # 1.5 t_max; no trajectory ever settles, so after the first basin_pilot extended ones (no
    # event) the others are left unsettled at t_max; every label is as with all extended
    from koopnet.resilience import BasinStatus, basin_box, settling_time

    W = 2.0 * np.array([[1.0, -1.0], [1.0, 1.0]])
    batch = NetworkBatch(W[None], np.zeros((1, 2)), "tanh")
    ds = equilibria_ds([[np.zeros(2)]], [[int(EquilibriumType.stable_focus)]], 2)
    stable = np.ones((1, 1), dtype=bool)
    integ = ResilienceSettings().integration
    lo, hi = basin_box(batch)
    t_unit = settling_time(batch, np.ones((1, 1)), stable, hi - lo, integ.settle_tol)[0]
    margin = np.full((1, 1), t_unit / (1.5 * integ.t_max))  # settling_time is 1 / margin
    M, P = 30, 8
    res = basin_stability(batch, [5], ds.x_eq.values, stable,
                          ResilienceSettings(n_initial_conditions=M, basin_pilot=P), margin=margin)
    full = basin_stability(batch, [5], ds.x_eq.values, stable,
                           ResilienceSettings(n_initial_conditions=M, basin_pilot=0), margin=margin)
    assert full["n_extended"][0] == M and full["sampling"][0] == BasinStatus.all_initial_conditions
    assert res["n_extended"][0] == P and res["sampling"][0] == BasinStatus.pilot_extension
    assert res["n_integrated"][0] == full["n_integrated"][0] == M
    assert res["fraction_unsettled"][0] == full["fraction_unsettled"][0] == 1.0
    np.testing.assert_array_equal(res["labels"], full["labels"])


@pytest.mark.parametrize("method", ["continuation", "chord"])
def test_symmetry_breaking_pitchfork_is_a_branch_point_not_a_fold(method):
    # W = [[8, -1], [-1, 8]], theta = -W 1/2 = -3.5: on the symmetric line x = (a, a),
    # a = 7 sigma(a) - 3.5 + delta; J has eigenvalues -1 + 9 sigma'(a) (antisymmetric vector)
    # and -1 + 7 sigma'(a) (symmetric). Raising delta, the lower symmetric state first loses
    # stability where sigma'(a) = 1/9, in the antisymmetric direction, orthogonal to dF/ddelta = 1:
    # a pitchfork (the state persists), not a fold
    W = np.array([[8.0, -1.0], [-1.0, 8.0]])
    s_star = (1 - np.sqrt(1 - 4 / 9)) / 2  # sigma(1 - sigma) = 1/9, lower root
    a_star = np.log(s_star / (1 - s_star))
    delta_star = a_star - 7 * s_star + 3.5
    a0 = brentq(lambda a: -a + 7 / (1 + np.exp(-a)) - 3.5, -10.0, a_star)  # the lower symmetric state
    sig = 1 / (1 + np.exp(-a0))
    assert 9 * sig * (1 - sig) < 1  # stable at delta = 0
    batch = NetworkBatch(W[None], np.full((1, 2), -3.5), "logistic")
    s = ResilienceSettings(tipping_method=method)
    up, down, st_up, st_down = tipping_shifts(batch, np.full((1, 1, 2), a0), np.ones((1, 1), bool), s)
    assert st_up[0, 0] == TippingStatus.branch_point
    assert abs(up[0, 0] - delta_star) < 1e-6
    # the asymmetric stable states (one unit high, one low) of the same network end in folds:
    # their null vectors are not orthogonal to the uniform shift
    from koopnet.equilibria import find_equilibria

    eq = find_equilibria(batch[0], seed=0)
    mixed = [x for x, t in zip(eq.x, eq.eq_type) if t in (0, 1) and abs(x[0] - x[1]) > 1.0]
    assert len(mixed) == 2
    _, _, st_up, st_down = tipping_shifts(batch, np.array(mixed)[None], np.ones((1, 2), bool), s)
    assert set(st_up[0]) | set(st_down[0]) <= {TippingStatus.fold, TippingStatus.no_fold_in_range}
    assert TippingStatus.fold in set(st_up[0]) | set(st_down[0])


def _random_network(seed):
    """Small random logistic/tanh networks across the transition (multistable, reactive cases)."""
    rng = np.random.default_rng(seed)
    N, g = [6, 10, 16, 24][seed % 4], [3.0, 6.0, 10.0][seed % 3]
    act = ["logistic", "tanh"][seed % 2]
    W = rng.normal(0.0, g / np.sqrt(N) * (1.0 if act == "logistic" else 0.3), (1, N, N))
    theta = -W.sum(axis=2) / 2 if act == "logistic" else rng.normal(0.0, 0.3, (1, N))
    return NetworkBatch(W, theta, act)


@pytest.mark.parametrize("seed", [14, 16, 17])
def test_chord_robustness_equals_the_continuation_reference(seed):
    # the O(N^2)-per-removal path against the reference (a continuation with eigenvalues at
    # every removal): the same removals survived for every stable equilibrium and order,
    # on networks where states are lost at various depths (checked non-trivial)
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import structural_robustness

    batch = _random_network(seed)
    N = batch.n_units
    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    kw = dict(robustness_orders=4)
    ref, ref_se, _ = structural_robustness(
        batch, [seed], x, stable, ResilienceSettings(robustness_method="continuation", **kw))
    fast, fast_se, _ = structural_robustness(
        batch, [seed], x, stable, ResilienceSettings(robustness_method="chord", robustness_budget=0, **kw))
    assert np.any(ref[stable] < (N - 1) / N)  # some state is lost before the end
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(fast_se, ref_se)


@pytest.mark.parametrize("seed", [2, 7, 9])
def test_certified_tipping_is_the_eigenvalue_reference_bitwise(seed):
    # the Cholesky certificate only skips eigenvalue computations whose outcome it implies:
    # shifts, statuses and end states identical to eigenvalues at every continuation point
    from koopnet.equilibria import equilibria_dataset
    from koopnet._resilience_continuation import continue_to_tipping

    batch = _random_network(seed)
    eq = equilibria_dataset(batch, [seed])
    st = np.isin(eq.eq_type.values[0], [0, 1])
    xs = eq.x_eq.values[0][st]
    K = len(xs)
    args = (np.repeat(batch.W, 2 * K, 0), np.repeat(batch.theta, 2 * K, 0), batch.activation,
            np.concatenate([xs, xs]), np.r_[np.ones(K), -np.ones(K)])
    ref = continue_to_tipping(*args, certify=False)
    fast = continue_to_tipping(*args, certify=True)
    assert np.any(np.isin(ref[1], [TippingStatus.fold, TippingStatus.hopf]))  # non-trivial
    for a, b in zip(ref, fast):
        np.testing.assert_array_equal(a, b)


def test_contraction_never_tips_and_survives_every_removal():
    # ||W||_2 Lip < 1: for every input and every principal subnetwork the equilibrium is unique
    # and globally stable, so no shift tips it and all N - 1 removals are survived; the
    # continuation reference agrees
    from koopnet.resilience import structural_robustness

    rng = np.random.default_rng(3)
    N = 40
    W = rng.normal(0.0, 1.0, (N, N))
    W *= 3.6 / np.linalg.norm(W, 2)  # Lip 1/4: ||W||_2 / 4 = 0.9
    theta = rng.normal(0.0, 1.0, N)
    batch = NetworkBatch(W[None], theta[None], "logistic")
    tr = integrate(batch, theta[None, None, :], 200.0, settle_tol=1e-12)
    x = tr.x_final[:, :1]
    stable = np.ones((1, 1), dtype=bool)
    s_ref = ResilienceSettings(robustness_method="continuation", robustness_orders=2,
                               tipping_max_shift=3.0)
    up, down, st_up, st_down = tipping_shifts(batch, x, stable)
    assert st_up[0, 0] == st_down[0, 0] == TippingStatus.no_fold_in_range
    fast, _, _ = structural_robustness(batch, [1], x, stable, ResilienceSettings(robustness_orders=2))
    ref, _, _ = structural_robustness(batch, [1], x, stable, s_ref)
    assert fast[0, 0] == ref[0, 0] == (N - 1) / N


def test_basin_pilot_without_a_stable_equilibrium_states_it_after_the_pilot():
    # tanh, W = 2 [[1, -1], [1, 1]], theta = 0: the only equilibrium x = 0 is an unstable focus
    # (J = -I + W, eigenvalues 1 +- 2i) and tanh is bounded: every orbit but x = 0 goes to a
    # limit cycle, so no pilot trajectory settles, diverges or stalls
    from koopnet.resilience import NOT_INTEGRATED, BasinStatus
    from koopnet.simulate import TrajectoryStatus

    W = 2.0 * np.array([[1.0, -1.0], [1.0, 1.0]])
    batch = NetworkBatch(W[None], np.zeros((1, 2)), "tanh")
    ds = equilibria_ds([[np.zeros(2)]], [[int(EquilibriumType.unstable_focus)]], 2)
    stable = np.zeros((1, 1), dtype=bool)
    M, P = 40, 10
    res = basin_stability(batch, [5], ds.x_eq.values, stable,
                          ResilienceSettings(n_initial_conditions=M, basin_pilot=P))
    assert res["sampling"][0] == BasinStatus.pilot_no_stable_equilibrium
    assert res["n_integrated"][0] == P
    assert res["fraction_unsettled"][0] == 1.0
    assert res["fraction_diverged"][0] == res["fraction_stalled"][0] == res["fraction_unassigned"][0] == 0.0
    assert np.all(res["labels"][0, P:] == NOT_INTEGRATED)
    # the pilot is the first P initial conditions of the full run, which agrees: all unsettled
    full = basin_stability(batch, [5], ds.x_eq.values, stable,
                           ResilienceSettings(n_initial_conditions=M, basin_pilot=0))
    assert full["sampling"][0] == BasinStatus.all_initial_conditions and full["n_integrated"][0] == M
    assert full["fraction_unsettled"][0] == 1.0
    np.testing.assert_array_equal(res["labels"][0, :P], full["labels"][0, :P])
    assert np.all(full["labels"][0] != NOT_INTEGRATED)
    np.testing.assert_array_equal(res["box_lower"], full["box_lower"])
    assert TrajectoryStatus.unsettled == 2  # the pilot's test reads this code


def test_basin_pilot_that_finds_a_missed_stable_state_integrates_all():
    # bistable 1-D logistic (beta = 8, theta = -3.5) with only its unstable root known: the
    # pilot's trajectories settle on the two stable roots the "search" missed, so all initial
    # conditions are integrated and the result is the full run's
    from koopnet.resilience import BasinStatus

    beta, theta = 8.0, -3.5
    xs, types, r, _ = one_d_equilibria(beta, theta)
    saddle = [x for x, t in zip(xs, types) if t == int(EquilibriumType.saddle)]
    ds = equilibria_ds([saddle], [[int(EquilibriumType.saddle)]], 1)
    stable = np.zeros((1, 1), dtype=bool)
    batch = NetworkBatch([[[beta]]], [[theta]], "logistic")
    M = 60
    res = basin_stability(batch, [7], ds.x_eq.values, stable,
                          ResilienceSettings(n_initial_conditions=M, basin_pilot=10))
    full = basin_stability(batch, [7], ds.x_eq.values, stable,
                           ResilienceSettings(n_initial_conditions=M, basin_pilot=0))
    assert res["sampling"][0] == BasinStatus.all_initial_conditions and res["n_integrated"][0] == M
    for name in ("fraction_unassigned", "fraction_unsettled", "fraction_diverged", "labels"):
        np.testing.assert_array_equal(res[name], full[name])
    assert res["fraction_unassigned"][0] == 1.0  # every state settles on an unknown stable root


def test_basin_pilot_only_where_no_stable_equilibrium_is_known():
    # the same bistable network with its stable roots known: the pilot rule does not apply
    from koopnet.resilience import BasinStatus

    beta, theta = 8.0, -3.5
    xs, types, _, _ = one_d_equilibria(beta, theta)
    ds = equilibria_ds([xs], [types], 1)
    stable = np.isin(ds.eq_type.values, [0, 1])
    batch = NetworkBatch([[[beta]]], [[theta]], "logistic")
    res = basin_stability(batch, [7], ds.x_eq.values, stable,
                          ResilienceSettings(n_initial_conditions=30, basin_pilot=5))
    assert res["sampling"][0] == BasinStatus.all_initial_conditions and res["n_integrated"][0] == 30
    assert np.nansum(res["basin_stability"][0]) == 1.0


def test_lyapunov_certificate_never_passes_an_unstable_jacobian():
    # J = -I + W diag(d): the certificate from a P at a reactive stable reference d0 is tried
    # on Jacobians near and far from it (units switched off, gains scaled up to instability);
    # every pass must be stable by eigvals, and both outcomes must occur among stable ones
    from koopnet._resilience_removal import _Lyapunov

    rng = np.random.default_rng(3)
    passes = fails_stable = unstable = reactive_passes = 0
    for trial in range(12):
        N = int(rng.integers(8, 30))
        W = rng.normal(0.0, 3.2 / np.sqrt(N), (N, N))
        d0 = np.full(N, 0.25)
        J0 = -np.eye(N) + W * d0
        reactive = np.max(np.linalg.eigvalsh(0.5 * (J0 + J0.T))) > 0  # P = I cannot certify J0
        cert = _Lyapunov(W, d0)
        stable0 = np.max(np.linalg.eigvals(J0).real) < 0
        assert stable0 or not cert.ok  # no P > 0 for an unstable reference
        if not cert.ok:
            continue
        assert cert.certifies(d0)
        for scale in (0.9, 1.0, 1.05, 1.15, 1.3, 1.6):
            d = d0 * scale * rng.uniform(0.8, 1.0, N)
            d[rng.random(N) < 0.2] = 0.0  # switched-off units
            for cholesky in (False, True):
                ok = cert.certifies(d, cholesky=cholesky)
                lam = np.max(np.linalg.eigvals(-np.eye(N) + W * d).real)
                if ok:
                    assert lam < 0
                    passes += 1
                    reactive_passes += reactive
                elif lam < 0:
                    fails_stable += 1
                else:
                    unstable += 1
    # non-trivial on all sides, and it certifies reactive states (what the identity cannot)
    assert passes > 10 and fails_stable > 0 and unstable > 0 and reactive_passes > 0


@pytest.mark.parametrize("N,g,seed", [(32, 5.0, 0), (32, 5.0, 2), (40, 5.0, 1), (40, 4.0, 2)])
def test_reactive_state_robustness_equals_the_eigenvalue_reference(N, g, seed, monkeypatch):
    # logistic, W_ij ~ N(0, g^2 / N), theta = -W 1 / 2 + N(0, 0.25): stable states that are
    # reactive (lambda_max of the symmetric part of J > 0), so the chord path certifies
    # removals by Lyapunov matrices, while the reference computes eigenvalues at every removal;
    # the same removals must be survived (states lost midway in the first three cases)
    import koopnet._resilience_removal as removal
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import stability_measures, structural_robustness

    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, g / np.sqrt(N), (1, N, N))
    batch = NetworkBatch(W, -W.sum(axis=2) / 2 + rng.normal(0.0, 0.5, (1, N)), "logistic")
    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    _, react = stability_measures(W, x, batch.activation)
    assert np.all(react[stable] > 0)  # reactive
    used = []
    original = removal._Lyapunov.certifies

    def counting(self, d, cholesky=True):
        out = original(self, d, cholesky)
        used.append(out)
        return out

    monkeypatch.setattr(removal._Lyapunov, "certifies", counting)
    kw = dict(robustness_orders=3)
    fast, _, _ = structural_robustness(batch, [seed], x, stable,
                                    ResilienceSettings(robustness_method="chord", robustness_budget=0, **kw))
    ref, _, _ = structural_robustness(batch, [seed], x, stable,
                                   ResilienceSettings(robustness_method="continuation", **kw))
    assert any(used)  # the certificate decided some removals
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("seed", [104, 109, 116, 124])
def test_chord_losses_equal_the_continuation_reference(seed):
    # states lost midway (by a removal whose end state is unstable, decided by the chord path
    # without the reference's bisection) on random logistic/tanh networks: the same removals
    # survived as the continuation reference
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import structural_robustness

    rng = np.random.default_rng(seed)
    N, g = int(rng.integers(12, 40)), float(rng.uniform(3.5, 7))
    act = ["logistic", "tanh"][seed % 2]
    W = rng.normal(0.0, g / np.sqrt(N) * (1.0 if act == "logistic" else 0.3), (1, N, N))
    theta = (-W.sum(axis=2) / 2 if act == "logistic" else 0) + rng.normal(0, 0.5, (1, N))
    batch = NetworkBatch(W, theta, act)
    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    kw = dict(robustness_orders=3)
    fast, _, _ = structural_robustness(batch, [seed], x, stable,
                                    ResilienceSettings(robustness_method="chord", robustness_budget=0, **kw))
    ref, _, _ = structural_robustness(batch, [seed], x, stable,
                                   ResilienceSettings(robustness_method="continuation", **kw))
    assert np.all(ref[stable] < 0.9)  # lost midway
    np.testing.assert_array_equal(fast, ref)


def _tipping_reference_and_chord(batch, seed):
    """Tipping of every stable equilibrium of a one-network batch, both directions, by the
    reference continuation and by the chord path (starts' spectra from the equilibria stage)."""
    from koopnet.equilibria import equilibria_dataset

    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    eigs = eq.jacobian_eigenvalues.values
    # every stable state of these networks is reactive (the P = I certificate cannot decide)
    from koopnet.resilience import stability_measures

    _, react = stability_measures(np.asarray(batch.W), x, batch.activation, eigs)
    assert np.all(react[stable] > 0)
    out = {}
    for method in ("continuation", "chord"):
        out[method] = tipping_shifts(batch, x, stable, ResilienceSettings(tipping_method=method),
                                     eigenvalues=eigs)
    return stable, out["continuation"], out["chord"]


@pytest.mark.parametrize("N,g,act,seed", [
    (30, 4.0 / 3.0, "tanh", 3),   # a fold one way, stable to the end of the range the other
    (12, 8.0, "logistic", 6),     # bistable: each state folds one way
    (20, 4.0 / 3.0, "tanh", 27),  # a Hopf point
    (30, 8.0, "logistic", 38),    # three stable states: Hopf points and folds
    (50, 3.0, "logistic", 4),     # a state stable to the end of the range
])
def test_chord_tipping_equals_the_continuation_reference(N, g, act, seed):
    # the O(N^2)-per-step path against the reference (an LU per Newton iteration, eigenvalues
    # wherever a Cholesky certificate fails), on logistic networks below (g = 3) and above
    # (g = 8) the transition at g = 4 and tanh above g = 1, every stable state reactive
    # (checked in the helper): identical statuses, and shifts within a few
    # tipping_tol (both bisect the same bracket to tol = 1e-9; chord and exact Newton may
    # accept a step near a fold at slightly different distances, so allow 10 tol)
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, g / np.sqrt(N), (1, N, N))
    theta = (-W.sum(axis=2) / 2 if act == "logistic" else 0.0) + rng.normal(0, 0.3, (1, N))
    batch = NetworkBatch(W, theta, act)
    stable, ref, fast = _tipping_reference_and_chord(batch, seed)
    assert stable.any()
    for r, f in zip(ref[2:], fast[2:]):
        np.testing.assert_array_equal(f, r)
    for r, f in zip(ref[:2], fast[:2]):
        np.testing.assert_array_equal(np.isnan(f), np.isnan(r))
        np.testing.assert_allclose(f, r, rtol=0, atol=10 * ResilienceSettings().tipping_tol)


@pytest.mark.parametrize("lead", [[-0.02], [-0.02 + 0.6j, -0.02 - 0.6j], [-0.03, -0.01 + 0.4j, -0.01 - 0.4j]])
def test_inertia_certificate_counts_the_eigenvalues_right_of_its_shift(lead):
    # J_ref = -I + W D with a prescribed spectrum (a leading real eigenvalue, complex pair, or
    # both, near the axis; the rest at Re <= -0.4; non-normal eigenvectors): the certificate
    # built from its Schur form claims that J = -I + W D' has exactly k eigenvalues with
    # Re > -beta. Every pass on perturbed D' (of growing size, some pushing the leading ones
    # across the axis) is checked against eigvals; both outcomes must occur
    from scipy.linalg import schur

    from koopnet._resilience_tipping import _Factor, _inertia_from_schur, _schur_eigenvalues

    rng = np.random.default_rng(3)
    N = 24
    rest = -0.4 - rng.uniform(0, 1.0, N - len(lead)) + 0j
    pairs = (N - len(lead)) // 2  # half the rest as complex pairs
    rest[: 2 * (pairs // 2)] = np.repeat(rest[: pairs // 2], 2)
    rest[: 2 * (pairs // 2)] += 1j * np.tile([0.3, -0.3], pairs // 2) * np.repeat(
        rng.uniform(0.5, 2, pairs // 2), 2)
    lam = np.concatenate([np.asarray(lead, dtype=complex), rest])
    # a real matrix with spectrum lam: real 2x2 blocks for the pairs, random similarity
    B = np.zeros((N, N))
    i = 0
    while i < N:
        if lam[i].imag != 0:
            B[i : i + 2, i : i + 2] = [[lam[i].real, lam[i].imag], [-lam[i].imag, lam[i].real]]
            i += 2
        else:
            B[i, i] = lam[i].real
            i += 1
    V = np.eye(N) + 0.3 * rng.normal(size=(N, N)) / np.sqrt(N)
    J_ref = V @ B @ np.linalg.inv(V)
    d = rng.uniform(0.05, 0.25, N)
    W = (J_ref + np.eye(N)) / d[None, :]
    T, Z = schur(W * d[None, :] - np.eye(N), output="real")
    cert = _inertia_from_schur(W, d, T, Z, _schur_eigenvalues(T))
    assert cert is not None and cert.k == len(lead)
    passes = fails = crossed = 0
    for eps in np.geomspace(1e-3, 3.0, 40):
        for _ in range(3):
            d2 = d * (1 + eps * rng.normal(size=N))
            ok = cert.certifies(d2)
            ev = np.linalg.eigvals(W * d2[None, :] - np.eye(N))
            if ok:
                passes += 1
                assert np.count_nonzero(ev.real > -cert.beta) == cert.k
                crossed += bool(np.max(ev.real) > 0)
            else:
                fails += 1
    assert passes > 10 and fails > 10 and crossed > 0
    # sign(det J) from the LU, the exact test of a real eigenvalue across the axis
    fac = _Factor(W, get_activation("linear"))
    for _ in range(5):
        x = rng.normal(size=N)
        fac.refresh(x)
        assert fac.det_sign == np.sign(np.linalg.det(fac.jacobian(x)))


@pytest.mark.parametrize("excess", [0.5, 2.0])
def test_continue_removal_folds_where_the_mean_field_saddle_node_is(excess):
    # W = (J0 / N) 1 1^T, theta = theta0: removing unit j leaves the network mean-field with
    # coupling J0 (N - p) / N, and its high synchronous state folds where that coupling
    # crosses beta_h (the saddle-node curve theta0 = x - 1 - e^x, beta = 2 + 2 cosh x).
    # With J0 = beta_h (1 + excess / N) one removal crosses it (excess 0.5: lost, with no
    # stability decision) or not (excess 2: survived, every unit at the reduced network's
    # high root x = J0 (N - 1) / N sigma(x) + theta0)
    from koopnet._resilience_removal import continue_removal

    N, theta0 = 20, -4.2
    xh = brentq(lambda x: x - 1 - np.exp(x) - theta0, 1e-9, 20.0, xtol=1e-14)
    beta_h = 2 + 2 * np.cosh(xh)
    J0 = beta_h * (1 + excess / N)
    high = brentq(lambda x: -x + J0 * LOGISTIC.sigma(x) + theta0, xh, 50.0, xtol=1e-15)
    W = np.full((N, N), J0 / N)
    theta = np.full(N, theta0)
    s = ResilienceSettings()
    opts = dict(initial_step=s.robustness_initial_step, max_step=1.0, tol=s.robustness_tol,
                max_iter=s.tipping_max_iter, newton_tol=s.newton_tol,
                newton_max_iter=s.newton_max_iter)
    decided = []

    def stable_at(x, p):
        a = np.ones(N)
        a[0] = 1.0 - p
        J = W * (LOGISTIC.dsigma(x) * a)[None, :] - np.eye(N)
        decided.append(p)
        return bool(np.max(np.linalg.eigvals(J).real) < 0)

    survived, x = continue_removal(W, theta, LOGISTIC, np.full(N, high), 0, opts, stable_at)
    coupling = J0 * (N - 1) / N
    if coupling < beta_h:
        assert not survived and decided == []
    else:
        assert survived and decided[-1] == 1.0
        root = brentq(lambda x: -x + coupling * LOGISTIC.sigma(x) + theta0, xh, 50.0, xtol=1e-15)
        np.testing.assert_allclose(x, root, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 8, 12])
def test_near_marginal_removals_equal_the_continuation_reference(seed, monkeypatch):
    # centered logistic networks near their transition (g ~ 4): stable states of small
    # margin, where chord steps fail and continue_removal decides many removals (both ways);
    # the same removals survived as the reference continuation (eigenvalues at every point)
    import koopnet._resilience_removal as removal
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import structural_robustness

    rng = np.random.default_rng(1000 + seed)
    N, g = int(rng.integers(32, 49)), float(rng.uniform(3.6, 4.6))
    W = rng.normal(0.0, g / np.sqrt(N), (1, N, N))
    batch = NetworkBatch(W, -W.sum(axis=2) / 2 + rng.normal(0.0, 0.2, (1, N)), "logistic")
    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    outcomes = []
    original = removal.continue_removal

    def counting(*args):
        out = original(*args)
        outcomes.append(out[0])
        return out

    monkeypatch.setattr(removal, "continue_removal", counting)
    kw = dict(robustness_orders=3)
    fast, _, _ = structural_robustness(batch, [seed], x, stable,
                                    ResilienceSettings(robustness_method="chord", robustness_budget=0, **kw))
    ref, _, _ = structural_robustness(batch, [seed], x, stable,
                                   ResilienceSettings(robustness_method="continuation", **kw))
    assert len(outcomes) > 10 and not all(outcomes)  # removals decided here, some lost
    np.testing.assert_array_equal(fast, ref)


def test_blocked_triangular_sylvester_solver_equals_lapack():
    # the recursive solver of A^T X + X B = C (quasi-triangular real Schur factors, 2x2 blocks
    # for complex pairs never cut) against LAPACK's dtrsyl applied whole, above and below the
    # block size, square (Lyapunov) and rectangular
    from scipy.linalg import schur
    from scipy.linalg.lapack import dtrsyl

    from koopnet._linalg import TRSYL_BLOCK, trsyl_blocked

    rng = np.random.default_rng(0)
    for m, n in [(5, 5), (2 * TRSYL_BLOCK + 7, 2 * TRSYL_BLOCK + 7), (150, 70)]:
        A = schur(rng.normal(size=(m, m)) / np.sqrt(m) - 0.5 * np.eye(m), output="real")[0]
        B = schur(rng.normal(size=(n, n)) / np.sqrt(n) - 0.5 * np.eye(n), output="real")[0]
        assert np.any(np.diag(A, -1) != 0)  # complex pairs: 2x2 blocks to respect
        C = rng.normal(size=(m, n))
        X = trsyl_blocked(A, B, C)
        ref, scale, info = dtrsyl(A, B, C, trana="T", tranb="N")
        assert info == 0 and scale == 1.0
        np.testing.assert_allclose(X, ref, rtol=0, atol=1e-10 * np.max(np.abs(ref)))
        assert np.max(np.abs(A.T @ X + X @ B - C)) < 1e-10 * np.max(np.abs(C))


def test_chord_tipping_of_a_non_reactive_state_needs_no_eigenvalues():
    # logistic, g = 2.5, centered: ||W||_2 / 4 ~ 1.2 (not a contraction: continued), but the
    # symmetric part of J is negative definite (radius ~ sqrt(2) g / 4 < 1): every accepted
    # state is decided by the P = I bound or a Cholesky test, none by eigenvalues, and the LU
    # is refreshed on a few of the ~24 steps per direction (same statuses as the reference)
    from koopnet import _resilience_tipping
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import stability_measures

    N, seed = 60, 0
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, 2.5 / np.sqrt(N), (1, N, N))
    batch = NetworkBatch(W, -W.sum(axis=2) / 2, "logistic")
    eq = equilibria_dataset(batch, [seed])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    eigs = eq.jacobian_eigenvalues.values
    _, react = stability_measures(W, x, batch.activation, eigs)
    assert stable.sum() == 1 and np.all(react[stable] < 0) and np.linalg.norm(W[0], 2) / 4 > 1
    _resilience_tipping.COUNTS.clear()
    fast = tipping_shifts(batch, x, stable, ResilienceSettings(tipping_method="chord"),
                          eigenvalues=eigs, reactivity=react)
    counts = dict(_resilience_tipping.COUNTS)
    ref = tipping_shifts(batch, x, stable, ResilienceSettings(tipping_method="continuation"))
    for r, f in zip(ref[2:], fast[2:]):
        np.testing.assert_array_equal(f, r)
    assert fast[2][stable][0] == TippingStatus.no_fold_in_range
    assert not {"eigvals", "schur", "eig"} & set(counts)
    assert counts["lu"] <= 8


def test_robustness_budget_stops_drawing_orders_where_decisions_are_spent():
    # a near-marginal state (test_near_marginal_removals..., seed 0) needs eigenvalue
    # decisions at many removals: with a budget of one decision it follows exactly 2 orders,
    # and its mean and standard error are those of the first 2 orders of the full run (the
    # orders are fixed draws); a contraction needs none and follows all of them
    from koopnet.equilibria import equilibria_dataset
    from koopnet.resilience import structural_robustness

    rng = np.random.default_rng(1000)
    N, g = int(rng.integers(32, 49)), float(rng.uniform(3.6, 4.6))
    W = rng.normal(0.0, g / np.sqrt(N), (1, N, N))
    batch = NetworkBatch(W, -W.sum(axis=2) / 2 + rng.normal(0.0, 0.2, (1, N)), "logistic")
    eq = equilibria_dataset(batch, [0])
    stable = np.isin(eq.eq_type.values, [0, 1])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    R = 4
    capped = structural_robustness(batch, [0], x, stable,
                                   ResilienceSettings(robustness_orders=R, robustness_budget=1))
    full2 = structural_robustness(batch, [0], x, stable,
                                  ResilienceSettings(robustness_orders=2, robustness_budget=0))
    full = structural_robustness(batch, [0], eq.x_eq.values, stable,
                                 ResilienceSettings(robustness_orders=R, robustness_budget=0))
    found = np.all(np.isfinite(eq.x_eq.values), axis=-1)
    assert np.all(full[2][stable] == R) and np.any(found & ~stable)
    assert np.all(full[2][found & ~stable] == 0) and np.all(full[2][~found] == -1)  # as padded
    assert np.all(capped[2][stable] == 2)
    np.testing.assert_array_equal(capped[0], full2[0])
    np.testing.assert_array_equal(capped[1], full2[1])
    assert not np.array_equal(capped[0], full[0], equal_nan=True)  # the cap changed something
    # a contraction (||W||_2 Lip < 1) decides every removal by its certificate: all orders
    Wc = 0.5 * W / np.linalg.norm(W[0], 2) * 4.0  # ||W||_2 = 2, Lip = 1/4
    cb = NetworkBatch(Wc, -Wc.sum(axis=2) / 2, "logistic")
    xc = equilibria_dataset(cb, [0]).x_eq.values[:, :1]
    out = structural_robustness(cb, [0], xc, np.ones((1, 1), dtype=bool),
                                ResilienceSettings(robustness_orders=R, robustness_budget=1))
    assert out[2][0, 0] == R and out[0][0, 0] == (N - 1) / N


def test_lyapunov_matrix_solves_the_lyapunov_equation():
    # the robustness certificates' P (Schur form + blocked triangular solve) against scipy's
    # Bartels-Stewart solver on a stable non-normal J with complex pairs, larger than a block
    from scipy.linalg import solve_continuous_lyapunov

    from koopnet._linalg import TRSYL_BLOCK
    from koopnet._resilience_removal import lyapunov_matrix

    N = 2 * TRSYL_BLOCK + 9
    J = np.random.default_rng(3).normal(0.0, 0.8 / np.sqrt(N), (N, N)) - np.eye(N)
    assert np.max(np.linalg.eigvals(J).real) < 0 and np.any(np.linalg.eigvals(J).imag != 0)
    P = lyapunov_matrix(J)
    ref = solve_continuous_lyapunov(J.T, -np.eye(N))
    np.testing.assert_allclose(P, ref, rtol=0, atol=1e-10 * np.max(np.abs(ref)))
    assert np.max(np.abs(J.T @ P + P @ J + np.eye(N))) < 1e-10


def test_budgeted_robustness_does_not_depend_on_the_batch():
    # robustness_n_orders counts decisions, so a network's result must not depend on the
    # networks beside it in the batch (job packing): a near-marginal network (chord path, a
    # budget that stops its orders) alone and second in a batch of two, same seed
    from koopnet.equilibria import equilibria_dataset

    rng = np.random.default_rng(1000)
    N, g = int(rng.integers(32, 49)), float(rng.uniform(3.6, 4.6))
    W = rng.normal(0.0, g / np.sqrt(N), (1, N, N))
    theta = -W.sum(axis=2) / 2 + rng.normal(0.0, 0.2, (1, N))
    W2 = np.random.default_rng(5).normal(0.0, 3.0 / np.sqrt(N), (1, N, N))
    s = ResilienceSettings(robustness_orders=4, robustness_budget=3, n_initial_conditions=20)
    alone = NetworkBatch(W, theta, "logistic")
    pair = NetworkBatch(np.concatenate([W2, W]), np.concatenate([-W2.sum(axis=2) / 2, theta]),
                        "logistic")
    r1 = resilience_dataset(alone, [0], s, equilibria_dataset(alone, [0]))
    r2 = resilience_dataset(pair, [7, 0], s, equilibria_dataset(pair, [7, 0]))
    E = r1.sizes["equilibrium"]
    n = r1.robustness_n_orders.values[0]
    assert np.any((n >= 2) & (n < 4))  # the budget stopped some orders
    for name in ("robustness_units", "robustness_units_se", "robustness_n_orders"):
        np.testing.assert_array_equal(r1[name].values[0], r2[name].values[1, :E])


def test_lu_det_sign_is_the_sign_of_the_determinant():
    # the fold test of both continuations reads sign(det J) off one LU: against numpy's det
    # (an independent LU with its own pivoting) on random matrices of either sign; singular
    # and non-finite matrices give None
    from koopnet._linalg import lu_det_sign

    rng = np.random.default_rng(11)
    signs = []
    for n in range(1, 12):
        for _ in range(20):
            A = rng.normal(size=(n, n))
            signs.append(lu_det_sign(A)[2])
            assert signs[-1] == np.sign(np.linalg.det(A))
    assert {-1.0, 1.0} <= set(signs)
    assert lu_det_sign(np.zeros((3, 3))) is None
    assert lu_det_sign(np.full((2, 2), np.nan)) is None
