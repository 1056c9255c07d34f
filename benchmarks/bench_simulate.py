"""Benchmark koopnet.simulate.integrate against scipy.integrate.solve_ivp (RK45).

The reference is what a careful user writes: ONE ``solve_ivp(method="RK45")`` call on the
stacked system of all M initial conditions (an M*N-dimensional ODE, right-hand side one matrix
product), same rtol/atol and time limit. Its error norm and step size are shared by all
trajectories, and it cannot stop a trajectory that has settled (a terminal event would stop
all of them), so it always runs to t_max: the per-trajectory control of koopnet shows where
trajectories settle at different times or need different step sizes. ``--loop`` adds the
per-initial-condition loop (one solve_ivp per start, terminal settle event), the earlier
baseline. CPU seconds (time.process_time), single-threaded, all in this process.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_simulate.py [--m 1000] [--n 50] [--loop]
Prints a markdown table (timings, speed ratio, end-state agreement).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.integrate import solve_ivp

from koopnet import NetworkBatch
from koopnet.simulate import TrajectoryStatus, integrate


def make_network(n: int, g: float, seed: int) -> NetworkBatch:
    """Logistic network, entries N(0, g^2/N), theta = -W 1/2 plus small noise (SCIENCE.md 6)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, g / np.sqrt(n), (n, n))
    theta = -W.sum(axis=1) / 2 + rng.normal(0.0, 0.5, n)
    return NetworkBatch(W[None], theta[None], "logistic")


def stacked(batch: NetworkBatch, x0: np.ndarray, t_max: float, rtol: float, atol: float):
    """One solve_ivp call on the stacked (M * N)-dimensional system; (CPU s, end states (M, N), nfev)."""
    net = batch[0]
    m, n = x0.shape[1:]
    W, theta, sigma = net.W, net.theta, net.activation.sigma

    def rhs(t, y):
        X = y.reshape(m, n)
        return (-X + sigma(X) @ W.T + theta).ravel()

    t0 = time.process_time()
    sol = solve_ivp(rhs, (0.0, t_max), x0[0].ravel(), method="RK45", rtol=rtol, atol=atol)
    return time.process_time() - t0, sol.y[:, -1].reshape(m, n), sol.nfev


def run(m: int, n: int, g: float, t_max: float, rtol: float, atol: float, settle_tol: float,
        seed: int = 12, loop: bool = False):
    batch = make_network(n, g, seed=seed)
    x0 = np.random.default_rng(13).uniform(-6.0, 6.0, (1, m, n))

    t0 = time.process_time()
    tr = integrate(batch, x0, t_max, rtol=rtol, atol=atol, settle_tol=settle_tol)
    t_ours = time.process_time() - t0
    t_stack, ends_stack, nfev_stack = stacked(batch, x0, t_max, rtol, atol)
    ok = tr.status[0] == TrajectoryStatus.settled
    dstack = np.max(np.abs(tr.x_final[0] - ends_stack), axis=1)[ok]
    out = {
        "t_stack": t_stack, "ratio_stack": t_stack / t_ours, "nfev_stack": nfev_stack,
        "max_diff_stack": float(dstack.max()) if dstack.size else np.nan,
    }
    if not loop:
        return {
            "m": m, "n": n, "g": g, "t_ours": t_ours, "settled": int(ok.sum()),
            "ours_steps": float(tr.n_steps.mean()), "ours_steps_max": int(tr.n_steps.max()),
            **out,
        }

    net = batch[0]
    rhs = lambda t, x: net.vector_field(x)  # noqa: E731

    def settled(t, x):
        return np.max(np.abs(net.vector_field(x))) - settle_tol

    settled.terminal = True
    ends = np.empty((m, n))
    scipy_settled = np.zeros(m, dtype=bool)
    n_fev = 0
    t0 = time.process_time()
    for i in range(m):
        sol = solve_ivp(rhs, (0.0, t_max), x0[0, i], method="RK45", rtol=rtol, atol=atol,
                        events=settled)
        ends[i] = sol.y[:, -1]
        scipy_settled[i] = sol.status == 1  # the terminal settle event fired
        n_fev += sol.nfev
    t_scipy = time.process_time() - t0

    # end states compared where koopnet settled: scipy's state at its end (settle event or
    # t_max) must be the same equilibrium (unsettled chaotic runs decorrelate and are skipped)
    diff = np.max(np.abs(tr.x_final[0] - ends), axis=1)[ok]
    if diff.size == 0:
        diff = np.array([np.nan])
    # distinct end states (attractors) reached, rounded to 1e-4
    attractors = np.unique(np.round(tr.x_final[0][ok], 4), axis=0).shape[0]
    return {
        "m": m, "n": n, "g": g, "t_ours": t_ours, "t_scipy": t_scipy,
        "ratio": t_scipy / t_ours, "settled": int(ok.sum()),
        "scipy_settled": int(scipy_settled.sum()),
        "max_diff": float(diff.max()), "median_diff": float(np.median(diff)),
        "attractors": attractors, "ours_steps": float(tr.n_steps.mean()),
        "ours_steps_max": int(tr.n_steps.max()), "scipy_fev_per_ic": n_fev / m, **out,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--m", type=int, default=1000, help="initial conditions")
    p.add_argument("--n", type=int, default=50, help="units")
    p.add_argument("--g", type=float, default=6.5, help="coupling gain")
    p.add_argument("--t-max", type=float, default=200.0)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--atol", type=float, default=1e-9)
    p.add_argument("--settle-tol", type=float, default=1e-8)
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 12],
                   help="network seeds (one row each)")
    p.add_argument("--loop", action="store_true", help="also the per-initial-condition loop")
    a = p.parse_args()
    print(f"rtol={a.rtol}, atol={a.atol}, settle_tol={a.settle_tol}, t_max={a.t_max}, "
          f"logistic, g={a.g}, x0 uniform in [-6, 6]^N; CPU seconds\n")
    print("| seed | M | N | g | one solve_ivp on the stacked system (s) | koopnet.simulate (s) "
          "| ratio | koopnet settled | stacked nfev | koopnet accepted steps mean / max "
          "| max abs end-state diff (settled) |"
          + (" per-IC solve_ivp loop (s) | ratio to loop |" if a.loop else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if a.loop else ""))
    for seed in a.seeds:
        r = run(a.m, a.n, a.g, a.t_max, a.rtol, a.atol, a.settle_tol, seed, a.loop)
        row = (f"| {seed} | {r['m']} | {r['n']} | {a.g} | {r['t_stack']:.2f} | {r['t_ours']:.2f} "
               f"| {r['ratio_stack']:.1f}x | {r['settled']}/{r['m']} | {r['nfev_stack']} "
               f"| {r['ours_steps']:.0f} / {r['ours_steps_max']} | {r['max_diff_stack']:.1e} |")
        if a.loop:
            row += f" {r['t_scipy']:.2f} | {r['ratio']:.1f}x |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
