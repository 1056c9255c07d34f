"""Each weight ensemble's defining property, theta modes, and weight-file errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from koopnet import ensembles
from koopnet.ensembles import WeightFileError, draw_theta, draw_weights, load_weight_file


def rng(seed=0):
    return np.random.default_rng(seed)


def test_gaussian_circular_law_radius():
    # circular law: eigenvalues fill the disc of radius g; at N = 400 the edge is within a few %
    g, n = 1.5, 400
    W = draw_weights("gaussian", n, rng(), g=g)
    radius = np.abs(np.linalg.eigvals(W)).max()
    assert radius == pytest.approx(g, rel=0.08)
    assert W.std() == pytest.approx(g / np.sqrt(n), rel=0.02)
    # largest singular value -> 2g
    assert np.linalg.svd(W, compute_uv=False)[0] == pytest.approx(2 * g, rel=0.05)


def test_gaussian_mean_outlier():
    # mu/N on every entry adds an outlier eigenvalue ~mu along the uniform mode
    W = draw_weights("gaussian", 400, rng(1), g=0.5, mu=3.0)
    eig = np.linalg.eigvals(W)
    assert eig.real.max() == pytest.approx(3.0, abs=0.2)


def test_sparse_density_and_radius():
    g, p, n = 2.0, 0.1, 400
    W = draw_weights("sparse", n, rng(2), g=g, p=p)
    density = np.count_nonzero(W) / n**2
    # binomial density: 5 standard deviations
    assert abs(density - p) < 5 * np.sqrt(p * (1 - p) / n**2)
    assert np.abs(np.linalg.eigvals(W)).max() == pytest.approx(g, rel=0.12)


@pytest.mark.parametrize("balanced", [True, False])
def test_dale_column_signs(balanced):
    n, f = 100, 0.8
    W = draw_weights("dale", n, rng(3), g=1.0, f_exc=f, balanced=balanced)
    n_exc = int(round(f * n))
    assert np.all(W[:, :n_exc] >= 0) and np.all(W[:, n_exc:] <= 0)
    row_sums = W.sum(axis=1)
    if balanced:
        # expected input is zero: mean row sum is within 4 standard errors of 0
        assert abs(row_sums.mean()) < 4 * row_sums.std() / np.sqrt(n)
    else:
        assert row_sums.mean() > 4 * row_sums.std() / np.sqrt(n)


def test_lowrank_exact_rank_and_noise():
    n, r = 50, 3
    W = draw_weights("lowrank", n, rng(4), rank=r, strength=2.5, g=0.0)
    s = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(s[:r], 2.5, rtol=1e-12)
    assert s[r] < 1e-12 * s[0]
    Wn = draw_weights("lowrank", n, rng(4), rank=r, strength=2.5, g=0.1)
    assert np.linalg.matrix_rank(Wn) == n  # noise makes it full rank


def test_symmetric_semicircle():
    g, n = 1.0, 400
    W = draw_weights("symmetric", n, rng(5), g=g)
    np.testing.assert_array_equal(W, W.T)
    eig = np.linalg.eigvalsh(W)
    assert eig.max() == pytest.approx(2 * g, rel=0.05)
    assert eig.min() == pytest.approx(-2 * g, rel=0.05)


def test_hebbian_structure_and_stored_pattern():
    # W = (g/N) Xi^T Xi - (g P/N) I for +-1 patterns Xi (P x N): symmetric, zero diagonal, entries
    # g/N times integers of P's parity, and spectrum: N - P eigenvalues exactly -g P/N
    n, P, g = 200, 3, 1.5
    W = draw_weights("hebbian", n, rng(6), patterns=P, g=g)
    np.testing.assert_array_equal(W, W.T)
    assert np.all(np.diag(W) == 0)
    counts = W[~np.eye(n, dtype=bool)] * n / g
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert np.abs(counts).max() <= P and np.all((np.round(counts) - P) % 2 == 0)
    eig = np.linalg.eigvalsh(W)
    np.testing.assert_allclose(eig[: n - P], -g * P / n, atol=1e-12)
    assert np.all(eig[n - P :] > 0.5 * g)
    # one pattern: read it off the first row and check it is a fixed point of x -> sign(W x)
    W1 = draw_weights("hebbian", n, rng(7), patterns=1, g=g)
    xi = np.sign(W1[0])  # W1[0, j] = (g/N) xi_0 xi_j: the pattern up to its global sign
    xi[0] = 1.0
    np.testing.assert_array_equal(np.sign(W1 @ xi), xi)


@pytest.mark.parametrize("layers", [0, 3])
def test_feedforward_strictly_lower_triangular(layers):
    W = draw_weights("feedforward", 12, rng(7), g=1.0, layers=layers)
    assert np.all(np.triu(W) == 0)
    if layers:
        layer = np.minimum(np.arange(12) * layers // 12, layers - 1)
        i, j = np.nonzero(W)
        assert np.all(layer[i] == layer[j] + 1)


def test_orthogonal_singular_values():
    W = draw_weights("orthogonal", 20, rng(8), g=0.7)
    np.testing.assert_allclose(W @ W.T, 0.49 * np.eye(20), atol=1e-12)


def test_theta_modes():
    W = draw_weights("gaussian", 10, rng(10))
    np.testing.assert_array_equal(draw_theta("zero", W, rng()), np.zeros(10))
    np.testing.assert_array_equal(draw_theta("constant", W, rng(), theta_value=-2.0), np.full(10, -2.0))
    np.testing.assert_allclose(draw_theta("centered", W, rng()), -W @ np.full(10, 0.5))
    theta = draw_theta("gaussian", np.zeros((2000, 2000)), rng(11), theta_std=3.0)
    assert theta.std() == pytest.approx(3.0, rel=0.05)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown ensemble 'nope'"):
        draw_weights("nope", 3, rng())
    with pytest.raises(ValueError, match="unknown theta mode"):
        draw_theta("nope", np.eye(3), rng())


# --- weight files ----------------------------------------------------------------------------


def test_load_npz_with_steps_and_theta(tmp_path):
    W = rng(12).standard_normal((3, 4, 4))
    theta = rng(13).standard_normal(4)
    np.savez(tmp_path / "w.npz", W=W, theta=theta)
    W2, theta2 = load_weight_file(tmp_path / "w.npz")
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(theta2, np.broadcast_to(theta, (3, 4)))


def test_load_npy_and_nc(tmp_path):
    W = rng(14).standard_normal((5, 5))
    np.save(tmp_path / "w.npy", W)
    W2, theta = load_weight_file(tmp_path / "w.npy")
    np.testing.assert_array_equal(W2, W[None])
    assert theta is None
    xr.Dataset({"W": (("i", "j"), W), "theta": (("i",), np.ones(5))}).to_netcdf(tmp_path / "w.nc")
    W3, theta3 = load_weight_file(tmp_path / "w.nc")
    np.testing.assert_array_equal(W3, W[None])
    np.testing.assert_array_equal(theta3, np.ones((1, 5)))


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: np.savez(p / "w.npz", X=np.eye(3)), "no array named 'W'"),
        (lambda p: np.savez(p / "w.npz", W=np.ones((3, 4))), "square"),
        (lambda p: np.savez(p / "w.npz", W=np.ones(3)), "shape"),
        (lambda p: np.savez(p / "w.npz", W=np.array([[1.0, np.nan], [0, 1]])), "NaN or inf"),
        (lambda p: np.savez(p / "w.npz", W=np.eye(3), theta=np.ones(4)), "theta must have shape"),
        (lambda p: (p / "w.npz").write_bytes(b"not a zip"), "cannot be read"),
    ],
)
def test_bad_weight_files_name_file_and_problem(tmp_path, make, problem):
    make(tmp_path)
    with pytest.raises(WeightFileError) as err:
        load_weight_file(tmp_path / "w.npz")
    assert str(tmp_path / "w.npz") in str(err.value)
    assert problem in str(err.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(WeightFileError, match="no such file"):
        load_weight_file(tmp_path / "absent.npz")
    (tmp_path / "w.txt").write_text("1 2")
    with pytest.raises(WeightFileError, match="unsupported suffix"):
        load_weight_file(tmp_path / "w.txt")
