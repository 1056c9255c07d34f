"""Benchmark: koopnet's equilibrium search vs a per-start loop of scipy.optimize.root (hybr).

Gaussian logistic networks W_ij ~ N(0, g^2/N) with g = 8 (effective gain g/4 = 2, past the
transition at 4), theta = -W 1/2 (centered), one network per N. The default mode (issue 11)
measures distinct verified equilibria per CPU-second (time.process_time, BLAS pinned to one
thread) at N = 50, 100, 200, 500: koopnet at the defaults a user gets (index retries on;
compiled hybrid kernel from at most 256 random starts up to N = 300, stopping once the sample
saturates, homotopy paths beyond; reflection of the equilibria found, the network being
odd-symmetric) and without the early stop, against
what a researcher writes by hand: for each of koopnet's random starts (uniform in the exact
search box, from stage_rng(seed, "equilibria"))
``scipy.optimize.root(f, x0, jac=J, method="hybr")``, keeping solutions with relative residual
<= 1e-8 (``success`` is not required: hybr also ends on genuine roots it flags as not
converged), deduplicated with the same relative tolerance 1e-6, with 256 starts and with
koopnet's budget rule (same rounds, same saturation test, roots completed by reflection; the
ratio is taken against this one). At N = 500 the scipy loop gets 32 starts (its rate per
CPU-second is what is compared). "scipy at koopnet's CPU s" is the
scipy rate times koopnet's time: the count scipy would reach in that time if its rate held
(it falls as starts land on known equilibria, so this favours scipy).

``--floor`` measures instead the best speed-up any numpy/scipy implementation of the *same*
algorithm (as many exact Jacobians and steps per start as MINPACK) could reach: per N, hybr's
Jacobian and function evaluations per start (one network, all starts) and the per-matrix cost
of the cheapest numpy/scipy primitives for them (a factorisation per Jacobian: a LAPACK
``getrf`` call or one matrix of a batched ``np.linalg.inv``; two applications of the factors
per step: two ``getrs`` calls or two passes of a batched stacked product over the inverses).
The floor counts nothing else (no function evaluations, no W products, no trust-region
arithmetic), so hybr's time over the floor bounds the speed-up from above.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_equilibria.py [--quick | --floor | --sizes N ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import root

from koopnet import Network
from koopnet.config import estimate_job
from koopnet.equilibria import (
    EquilibriumSettings,
    _dedup,
    _draw_unit_starts,
    _full_problem,
    _mirror_pairs,
    _saturated,
    find_equilibria,
    search_box,
)


def gaussian_logistic(N: int, seed: int, g: float = 8.0) -> Network:
    W = np.random.default_rng(seed).normal(0.0, g / np.sqrt(N), (N, N))
    return Network(W, -W.sum(axis=1) / 2, "logistic")


def scipy_problem(net: Network, seed: int, n_starts: int):
    """koopnet's starts (n_starts, N) and the vector field and Jacobian as a user writes them."""
    N = net.n_units
    lo, hi, _ = search_box(net.W, net.theta, net.activation)
    x0s = lo + (hi - lo) * _draw_unit_starts([seed], n_starts, N)[0]
    W, th, act = net.W, net.theta, net.activation
    idx = np.arange(N)

    def f(x):
        return -x + W @ act.sigma(x) + th

    def jac(x):
        J = W * act.dsigma(x)
        J[idx, idx] -= 1.0
        return J

    return x0s, f, jac


def baseline(net: Network, seed: int, n_starts: int, same_rule: bool = False) -> tuple[float, np.ndarray, int]:
    """Loop of scipy hybr from koopnet's starts; returns (CPU seconds, distinct roots, starts used).

    ``same_rule``: the starts run in koopnet's rounds (min_starts, then start_batch more) and stop
    on koopnet's saturation test (:func:`koopnet.equilibria._saturated`: index sum of the roots
    found 1, Chao1 over mirror pairs expects < 1 missing), and the roots are completed by their
    mirror images as koopnet's reflection does (the network is odd-symmetric): the same budget
    rule, so the ratio compares the per-start cost and landings of the two solvers.
    """
    N = net.n_units
    x0s, f, jac = scipy_problem(net, seed, n_starts)
    st = EquilibriumSettings(n_starts=n_starts)
    problem = _full_problem(net.W[None], net.theta[None], net.activation)
    t = time.process_time()
    X = np.zeros((n_starts, N))
    ok = np.zeros(n_starts, bool)
    n_end = min(n_starts, st.min_starts) if same_rule else n_starts
    n0 = 0
    while True:
        for k in range(n0, n_end):
            r = root(f, x0s[k], jac=jac, method="hybr")
            X[k] = r.x
            # accepted on the residual alone: hybr also ends on genuine roots it flags as not converged
            ok[k] = np.all(np.isfinite(r.x)) and np.max(np.abs(f(r.x))) <= 1e-8 * (1 + np.max(np.abs(r.x)))
        n0 = n_end
        if n_end >= n_starts or not same_rule or _saturated(problem, 0, X[:n_end], ok[:n_end], True, st):
            break
        n_end = min(n_starts, n_end + st.start_batch)
    lab = _dedup(X[None, :n0], ok[None, :n0], 1e-6)[0]
    roots = X[:n0][lab == np.arange(n0)]
    if same_rule and roots.shape[0]:
        _, mirrored = _mirror_pairs(roots, 1e-6)
        roots = np.concatenate([roots, -roots[~mirrored]])
    return time.process_time() - t, roots, n0


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def hybr_counts(net: Network, seed: int, n_starts: int) -> tuple[float, float, float]:
    """(seconds, mean njev, mean nfev) per start of the scipy hybr loop on one network."""
    x0s, f, jac = scipy_problem(net, seed, n_starts)
    t = time.perf_counter()
    counts = np.array([(r.njev, r.nfev) for r in (root(f, x0, jac=jac, method="hybr") for x0 in x0s)])
    return (time.perf_counter() - t) / n_starts, *counts.mean(axis=0)


def primitive_costs(N: int, K: int = 256, repeat: int = 3) -> dict[str, float]:
    """Seconds per matrix of the factorisation / application primitives on (K, N, N)."""
    from scipy.linalg.lapack import dgetrf, dgetrs

    rng = np.random.default_rng(0)
    J = rng.normal(size=(K, N, N)) + N * np.eye(N)
    b = rng.normal(size=(K, N))
    facs = [dgetrf(J[k].T) for k in range(K)]

    def getrf():
        for k in range(K):
            dgetrf(J[k].T)

    def getrs():
        for k in range(K):
            dgetrs(facs[k][0], facs[k][1], b[k], trans=1)

    out = {
        "getrf": min(_timeit(getrf) for _ in range(repeat)),
        "getrs": min(_timeit(getrs) for _ in range(repeat)),
        "inv": min(_timeit(lambda: np.linalg.inv(J)) for _ in range(repeat)),
        "pass": min(_timeit(lambda: np.einsum("kij,kj->ki", J, b)) for _ in range(repeat)),
    }
    return {k: v / K for k, v in out.items()}


def floor(sizes=(50, 100, 200), n_starts: int = 256) -> None:
    """Print the speed-up bound of a numpy/scipy implementation of hybr's algorithm."""
    print(
        "| N | hybr s/start | njev/start | nfev/start | getrf us | getrs us | inv us | pass us "
        "| floor LU s/start | floor dense s/start | best possible speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for N in sizes:
        seed = 1000 * N
        t, njev, nfev = hybr_counts(gaussian_logistic(N, seed), seed, n_starts)
        c = primitive_costs(N)
        lu = njev * c["getrf"] + 2 * nfev * c["getrs"]
        dense = njev * c["inv"] + 2 * nfev * c["pass"]
        print(
            f"| {N} | {t:.4f} | {njev:.1f} | {nfev:.1f} | {1e6 * c['getrf']:.0f} | {1e6 * c['getrs']:.0f} "
            f"| {1e6 * c['inv']:.0f} | {1e6 * c['pass']:.1f} | {lu:.4f} | {dense:.4f} | {t / min(lu, dense):.1f}x |"
        )


def discovery(sizes=(50, 100, 200, 500), n_starts: int = 256, scipy_starts=None) -> None:
    """Distinct verified equilibria per CPU-second: koopnet at its defaults (index retries on,
    random starts that stop when the sample saturates, up to random_start_max_units; homotopy
    paths beyond; reflection of the equilibria found, the network being odd-symmetric), koopnet
    without the early stop, and the scipy hybr loop (accepted by residual) from koopnet's random
    starts, with a fixed number of starts and with koopnet's budget rule. One network per N,
    BLAS pinned to one thread, CPU seconds (time.process_time); koopnet.config.estimate_job's
    equilibria estimate for comparison."""
    from threadpoolctl import threadpool_limits

    scipy_starts = scipy_starts or {500: 32, 1000: 8}
    print(
        "| N | variant | CPU s | starts | distinct | per CPU-s | ratio to scipy (same rule) | scipy at koopnet's CPU s "
        "| index sum | missing >= | Chao1 (se) | strategies (random / homotopy / reflection) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        find_equilibria(gaussian_logistic(8, 0))  # warm-up (imports, numba cache)
        for N in sizes:
            seed = 1000 * N
            net = gaussian_logistic(N, seed)
            S_b = scipy_starts.get(N, n_starts)
            tb, roots_b, used_b = baseline(net, seed, S_b)
            rows = [(f"scipy hybr loop ({S_b} starts)", tb, used_b, roots_b.shape[0], None)]
            rate_b = roots_b.shape[0] / tb
            if N <= EquilibriumSettings().random_start_max_units:
                ts, roots_s, used_s = baseline(net, seed, n_starts, same_rule=True)
                rows.append(("scipy hybr loop, koopnet's stopping rule + reflection", ts, used_s, roots_s.shape[0], None))
                rate_b = roots_s.shape[0] / ts
            for name, st in (
                ("koopnet defaults", EquilibriumSettings(n_starts=n_starts)),
                ("koopnet, no early stop", EquilibriumSettings(n_starts=n_starts, stop_expected_missing=0)),
            ):
                if N > st.random_start_max_units and name != "koopnet defaults":
                    continue  # no random starts: the early stop does not apply
                t = time.process_time()
                r = find_equilibria(net, st, seed=seed)
                rows.append((name, time.process_time() - t, r.n_starts, r.n_equilibria, r))
            for name, t, used, n, r in rows:
                rate = n / t
                ratio = "" if r is None else (f"{rate / rate_b:.1f}x" if rate_b > 0 else "inf (scipy 0)")
                at = "" if r is None else f"{rate_b * t:.1f}"
                extra = "| | | | |"
                if r is not None:
                    strat = np.bincount(r.strategy, minlength=5)
                    extra = (
                        f"| {r.index_sum} | {r.n_missing_min} | {r.n_estimate:.1f} ({r.n_estimate_se:.1f}) "
                        f"| {strat[1]} / {strat[2]} / {strat[4]} |"
                    )
                print(f"| {N} | {name} | {t:.2f} | {used} | {n} | {rate:.2f} | {ratio} | {at} {extra}", flush=True)
            print(f"<!-- N = {N}: estimate_job equilibria {estimate_job({}, N, 1).parts['newton']:.1f} s -->", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N in {20, 50} only")
    ap.add_argument("--floor", action="store_true", help="speed-up bound of hybr's algorithm in numpy")
    ap.add_argument("--starts", type=int, default=256)
    ap.add_argument("--sizes", type=int, nargs="*", default=[50, 100, 200, 500])
    args = ap.parse_args()
    if args.floor:
        floor(n_starts=args.starts)
        return
    discovery((20, 50) if args.quick else tuple(args.sizes), n_starts=args.starts)


if __name__ == "__main__":
    main()
