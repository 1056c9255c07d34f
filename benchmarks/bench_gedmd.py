"""Benchmark: koopnet generator EDMD vs trajectory-based EDMD (deeptime) at equal sample budgets.

For each case and budget M, both methods get the same M states x_m in the same box and the same
monomial dictionary (centred at the attractor, scaled by the box half-width):

* koopnet ``gedmd``: dPsi(x_m) = grad Psi(x_m) . f(x_m) from the known vector field, with either
  projection: ``taylor`` (degree-triangular, the ``spectra`` stage default) or ``galerkin`` (L2
  least squares);
* deeptime ``EDMD``: pairs (x_m, phi_dt(x_m)) from an accurate ODE solve (DOP853, rtol 1e-12),
  Koopman matrix K, continuous-time eigenvalues log(mu)/dt.

For disclosure, the same degree-triangular constraint is also applied to the trajectory pairs
("triangular EDMD", this script's numpy, not deeptime): Psi_beta(phi_dt(x)) also has no Taylor
terms below degree |beta| at the attractor, so it shows how much of the gain is the projection
rather than the generator.

Error = largest distance, in an optimal one-to-one matching, from the exact eigenvalues to the
estimated ones: for the linear network the whole lattice {k . (Lambda/4 - 1) : |k| <= degree} (the
dictionary is invariant, so every eigenvalue is exact); for the logistic network the Jacobian
eigenvalues at the attractor. Times are the best of ``--repeat`` runs; "total" includes producing
the data (f evaluations vs trajectory pairs).

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gedmd.py [--dt 0.1 1.0] [--repeat 3]
      [--sweep 5 7 9 11 13]   (degree sweep on the logistic network at 1000 samples)
      [--candidates]          (alternatives measured and not adopted: Legendre dictionary, residual refinement)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from koopnet import Network, NetworkBatch
from koopnet.koopman import MonomialDictionary, flow, gedmd, match_eigenvalues, multi_indices, sample_basin
from koopnet.koopman._gedmd import _taylor_projection


def _best(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _cases():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 3)) * 1.5
    theta = rng.normal(size=3)
    lin = Network(W, theta, "linear")
    x_lin = np.linalg.solve(W / 4 - np.eye(3), -(W @ np.full(3, 0.5) + theta))
    lam_lin = multi_indices(3, 3) @ (np.linalg.eigvals(W) / 4 - 1)
    Wb = np.array([[8.0, -1.0], [-1.0, 8.0]])
    log = Network(Wb, -Wb @ np.full(2, 0.5), "logistic")
    x = np.array([3.2, 3.2])
    for _ in range(30):
        x = x - np.linalg.solve(log.jacobian(x), log.vector_field(x))
    lam_log = np.linalg.eigvals(log.jacobian(x))
    return [
        ("linear N=3, degree 3", lin, x_lin, lam_lin, 3, 1.5),
        ("logistic bistable N=2, degree 7", log, x, lam_log, 7, 1.5),
    ]


def _pool(net, x_eq, hw, n, seed):
    batch = NetworkBatch(net.W[None], net.theta[None], net.activation)
    rng = np.random.default_rng(seed)
    pool = x_eq + hw * rng.uniform(-1, 1, (1, n, net.n_units))
    inside = sample_basin(batch, pool, x_eq[None])[0]
    return batch, pool[0, inside]


def _ct_error(lam, mu, dt):
    mu = np.asarray(mu, dtype=complex)
    return match_eigenvalues(lam, np.log(mu[np.abs(mu) > 0]) / dt)[0].max()


def _triangular_edmd(dic, X, Y):
    """Eigenvalues mu of K with Psi(Y) ~ Psi(X) K under the degree-triangular constraint."""
    R = np.linalg.qr(np.concatenate([dic.evaluate(X), dic.evaluate(Y)], axis=-1), mode="r")
    K = dic.size
    Km, _ = _taylor_projection(R[:, :K], R[:, K:], dic.exponents.sum(axis=1), 1e-13)
    return np.linalg.eigvals(Km)


def _errors(net, batch, X, x_eq, lam, degree, hw, dts, repeat):
    """gEDMD (both projections) and EDMD (deeptime, triangular) errors and times for one sample set."""
    from deeptime.basis import Monomials
    from deeptime.decomposition import EDMD

    dic = MonomialDictionary(net.n_units, degree, x_eq, hw)
    out = {}
    for projection in ("taylor", "galerkin"):
        t, r = _best(lambda: gedmd(batch.vector_field, dic, X[None], projection=projection), repeat)
        out[projection] = (match_eigenvalues(lam, r.eigenvalues[0])[0].max(), t)
    for dt in dts:
        t_data, (Y, ok) = _best(lambda: flow(net, X, dt, rtol=1e-12, atol=1e-13), repeat)
        Xs, Ys = (X - x_eq) / hw, (Y - x_eq) / hw
        t_fit, model = _best(lambda: EDMD(Monomials(p=degree, d=net.n_units)).fit((Xs, Ys)).fetch_model(), repeat)
        out["edmd", dt] = (_ct_error(lam, model.eigenvalues, dt), t_fit, t_data)
        out["tri", dt] = _ct_error(lam, _triangular_edmd(dic, X, Y), dt)
    return out


def run(budgets=(250, 1000, 4000), dts=(0.1, 1.0), repeat=3, seed=1):
    try:
        import deeptime  # noqa: F401
    except ImportError:
        print("deeptime is not installed: skipping the benchmark (pip install deeptime)")
        return None
    rows = []
    for name, net, x_eq, lam, degree, hw in _cases():
        batch, pool = _pool(net, x_eq, hw, 4 * max(budgets), seed)
        for M in budgets:
            e = _errors(net, batch, pool[:M], x_eq, lam, degree, hw, dts, repeat)
            for dt in dts:
                rows.append((name, M, dt, e))
    print(f"Times are best of {repeat} runs; dt is the EDMD pair lag (gEDMD needs none).\n")
    print("Accuracy (target: EDMD error / gEDMD error >= 10 with the stage's taylor projection)\n")
    print("| case | samples | EDMD dt | gEDMD taylor | gEDMD galerkin | deeptime EDMD | ratio EDMD/taylor | ratio EDMD/galerkin | triangular EDMD (disclosure) | ratio triangular EDMD/taylor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, M, dt, e in rows:
        et, eg, ee, etr = e["taylor"][0], e["galerkin"][0], e["edmd", dt][0], e["tri", dt]
        print(f"| {name} | {M} | {dt:g} | {et:.2e} | {eg:.2e} | {ee:.2e} | {_ratio(ee, et)} | {_ratio(ee, eg)} | {etr:.2e} | {_ratio(etr, et)} |")
    print("\nSpeed (target: gEDMD no slower than the EDMD fit)\n")
    print("| case | samples | EDMD dt | gEDMD taylor [ms] | gEDMD galerkin [ms] | EDMD fit [ms] | EDMD fit+pairs [ms] | taylor speed-up vs fit | taylor speed-up vs fit+pairs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, M, dt, e in rows:
        tt, tg = e["taylor"][1], e["galerkin"][1]
        _, tf, td = e["edmd", dt]
        print(f"| {name} | {M} | {dt:g} | {1e3 * tt:.2f} | {1e3 * tg:.2f} | {1e3 * tf:.2f} | {1e3 * (tf + td):.2f} | {tf / tt:.2g} | {(tf + td) / tt:.3g} |")
    return rows


def _ratio(a, b):
    return f"{a / b:.3g}" if b > 0 else "inf"


def sweep(degrees, M=1000, dts=(0.1, 1.0), seed=1):
    """Degree sweep on the logistic network (same samples for every method and degree)."""
    name, net, x_eq, lam, _, hw = _cases()[1]
    batch, pool = _pool(net, x_eq, hw, 4 * M, seed)
    print(f"\nDegree sweep, logistic bistable N=2, {M} samples, box half-width {hw}\n")
    print("| degree | K | gEDMD taylor | gEDMD galerkin | " + " | ".join(
        f"deeptime EDMD dt={dt:g} | triangular EDMD dt={dt:g}" for dt in dts) + " |")
    print("|---|---|---|---|" + "---|---|" * len(dts))
    for degree in degrees:
        e = _errors(net, batch, pool[:M], x_eq, lam, degree, hw, dts, 1)
        K = MonomialDictionary(2, degree, x_eq, hw).size
        cells = [f"{e['edmd', dt][0]:.2e} | {e['tri', dt]:.2e}" for dt in dts]
        print(f"| {degree} | {K} | {e['taylor'][0]:.2e} | {e['galerkin'][0]:.2e} | " + " | ".join(cells) + " |")


class _Legendre:
    """Tensor Legendre polynomials P_a(z_1) ... P_c(z_N), total degree <= D, z = (x - c)/s (for both methods)."""

    def __init__(self, n, degree, center, scale):
        self.alpha, self.degree, self.center, self.scale = multi_indices(n, degree), degree, center, scale
        self.size = self.alpha.shape[0]

    def _tables(self, x):
        from numpy.polynomial import legendre

        z = (np.asarray(x) - self.center) / self.scale
        eye = np.eye(self.degree + 1)
        P = np.stack([legendre.legval(z, eye[k]) for k in range(self.degree + 1)], axis=-1)  # (..., M, N, D+1)
        dP = np.stack([legendre.legval(z, legendre.legder(eye[k])) if k else 0 * z for k in range(self.degree + 1)], -1)
        return P, dP

    def evaluate(self, x):
        P, _ = self._tables(x)
        return np.prod([P[..., n, self.alpha[:, n]] for n in range(self.alpha.shape[1])], axis=0)

    def generator(self, x, fx):
        P, dP = self._tables(x)
        rate = np.asarray(fx) / self.scale
        n_units = self.alpha.shape[1]
        out = 0.0
        for j in range(n_units):
            term = rate[..., j : j + 1] * dP[..., j, self.alpha[:, j]]
            for n in range(n_units):
                if n != j:
                    term = term * P[..., n, self.alpha[:, n]]
            out = out + term
        return out


def _min_residual_eigenvalue(A, B, lam0):
    """lambda near lam0 minimising min_c ||(B - lambda A) c|| / ||A c|| (A, B: R-factor blocks)."""
    from scipy.optimize import minimize

    Ainv = np.linalg.inv(np.linalg.qr(A, mode="r"))

    def res(p):
        return np.linalg.svd((B - (p[0] + 1j * p[1]) * A) @ Ainv, compute_uv=False)[-1]

    opt = minimize(res, [lam0.real, lam0.imag], method="Nelder-Mead", options=dict(xatol=1e-12, fatol=1e-16, maxiter=2000))
    return opt.x[0] + 1j * opt.x[1]


def candidates(dts=(0.1, 1.0), seed=1):
    """Alternatives measured on the logistic network and not adopted (same states for every method)."""
    from deeptime.decomposition import EDMD

    name, net, x_eq, lam, _, hw = _cases()[1]
    batch, pool = _pool(net, x_eq, hw, 16000, seed)
    print(f"\nLegendre dictionary (given to both), logistic, 1000 samples, box half-width {hw}\n")
    print("| degree | gEDMD galerkin | " + " | ".join(f"deeptime EDMD dt={dt:g}" for dt in dts) + " |")
    print("|---|---|" + "---|" * len(dts))
    X = pool[:1000]
    Ys = {dt: flow(net, X, dt, rtol=1e-12, atol=1e-13)[0] for dt in dts}
    for degree in (5, 7, 9, 11, 13):
        leg = _Legendre(2, degree, x_eq, hw)
        r = gedmd(batch.vector_field, leg, X[None])
        cells = []
        for dt in dts:
            mu = EDMD(lambda a: leg.evaluate(a)).fit((X, Ys[dt])).fetch_model().eigenvalues
            cells.append(f"{_ct_error(lam, mu, dt):.2e}")
        print(f"| {degree} | {match_eigenvalues(lam, r.eigenvalues[0])[0].max():.2e} | " + " | ".join(cells) + " |")
    print("\nResidual-minimising refinement of the galerkin eigenvalues (degree 7, training states)\n")
    print("| samples | gEDMD galerkin | refined | Rayleigh quotient |")
    print("|---|---|---|---|")
    for M in (1000, 4000):
        X = pool[:M]
        dic = MonomialDictionary(2, 7, x_eq, hw)
        r = gedmd(batch.vector_field, dic, X[None])
        err, idx = match_eigenvalues(lam, r.eigenvalues[0])
        R = np.linalg.qr(dic.values_and_generator(X, net.vector_field(X)), mode="r")
        A, B = R[:, : dic.size], R[:, dic.size :]
        ref = np.array([_min_residual_eigenvalue(A, B, r.eigenvalues[0, k]) for k in idx])
        c = r.eigenvectors[0][:, idx]
        rq = np.sum((A @ c).conj() * (B @ c), axis=0) / np.sum(np.abs(A @ c) ** 2, axis=0)
        print(f"| {M} | {err.max():.2e} | {np.abs(ref - lam).max():.2e} | {np.abs(rq - lam).max():.2e} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dt", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sweep", type=int, nargs="*", default=None, help="degrees of a logistic degree sweep")
    p.add_argument("--candidates", action="store_true", help="also measure the alternatives not adopted")
    a = p.parse_args()
    run(dts=tuple(a.dt), repeat=a.repeat)
    if a.sweep:
        sweep(a.sweep, dts=tuple(a.dt))
    if a.candidates:
        candidates(dts=tuple(a.dt))
