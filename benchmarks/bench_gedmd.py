"""Benchmark: koopnet generator EDMD vs trajectory-based EDMD (deeptime) at equal sample budgets.

For each case and budget M, both methods get the same M states x_m in the same box and the same
monomial dictionary (centred at the attractor, scaled by the box half-width):

* koopnet ``gedmd``: dPsi(x_m) = grad Psi(x_m) . f(x_m) from the known vector field;
* deeptime ``EDMD``: pairs (x_m, phi_dt(x_m)) from an accurate ODE solve (DOP853, rtol 1e-12),
  Koopman matrix K, continuous-time eigenvalues log(mu)/dt.

Error = largest distance, in an optimal one-to-one matching, from the exact eigenvalues to the
estimated ones: for the linear network the whole lattice {k . (Lambda/4 - 1) : |k| <= degree} (the
dictionary is invariant, so every eigenvalue is exact); for the logistic network the Jacobian
eigenvalues at the attractor. Times are the best of
``--repeat`` runs; "total" includes producing the data (f evaluations vs trajectory pairs).

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gedmd.py [--dt 0.1 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from koopnet import Network, NetworkBatch
from koopnet.koopman import MonomialDictionary, flow, gedmd, match_eigenvalues, multi_indices, sample_basin


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


def run(budgets=(250, 1000, 4000), dts=(0.1, 1.0), repeat=3, seed=1):
    try:
        from deeptime.basis import Monomials
        from deeptime.decomposition import EDMD
    except ImportError:
        print("deeptime is not installed: skipping the benchmark (pip install deeptime)")
        return None
    rows = []
    for name, net, x_eq, lam, degree, hw in _cases():
        n = net.n_units
        batch = NetworkBatch(net.W[None], net.theta[None], net.activation)
        rng = np.random.default_rng(seed)
        pool = x_eq + hw * rng.uniform(-1, 1, (1, 4 * max(budgets), n))
        inside = sample_basin(batch, pool, x_eq[None])[0]
        pool = pool[0, inside]
        for M in budgets:
            X = pool[:M]
            dic = MonomialDictionary(n, degree, x_eq, hw)

            def ours():
                return gedmd(batch.vector_field, dic, X[None])

            t_ours, r = _best(ours, repeat)
            err_ours = match_eigenvalues(lam, r.eigenvalues[0])[0].max()

            for dt in dts:
                t_data, (Y, ok) = _best(lambda: flow(net, X, dt, rtol=1e-12, atol=1e-13), repeat)
                basis = Monomials(p=degree, d=n)
                Xs, Ys = (X - x_eq) / hw, (Y - x_eq) / hw

                def theirs():
                    return EDMD(basis).fit((Xs, Ys)).fetch_model()

                t_fit, model = _best(theirs, repeat)
                mu = np.asarray(model.eigenvalues, dtype=complex)
                ev = np.log(mu[np.abs(mu) > 0]) / dt
                err_edmd = match_eigenvalues(lam, ev)[0].max()
                rows.append((name, M, dt, err_ours, err_edmd, t_ours, t_fit, t_fit + t_data))
    print(f"Times are best of {repeat} runs; dt is the EDMD pair lag (gEDMD needs none).\n")
    print("| case | samples | EDMD dt | gEDMD error | EDMD error | error ratio EDMD/gEDMD | gEDMD [ms] | EDMD fit [ms] | EDMD fit+pairs [ms] | speed-up vs fit | speed-up vs fit+pairs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, M, dt, eo, ee, to, tf, tt in rows:
        ratio = ee / eo if eo > 0 else np.inf
        print(f"| {name} | {M} | {dt:g} | {eo:.2e} | {ee:.2e} | {ratio:.3g} | {1e3 * to:.2f} | {1e3 * tf:.2f} | {1e3 * tt:.2f} | {tf / to:.2g} | {tt / to:.3g} |")
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dt", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    run(dts=tuple(a.dt), repeat=a.repeat)
