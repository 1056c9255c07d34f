"""Benchmark the resilience and dimension stages per N, against the previous implementation.

Networks: logistic, W_ij ~ N(0, g^2 / N), theta = -W 1 / 2 (centered input; SCIENCE.md 6), one
per (N, g); their equilibria from ``equilibria_dataset`` at default settings (not timed). For
each network the stages run as the workflow runs them (``dimension_dataset``,
``resilience_dataset``, default settings), with the resilience parts timed one by one. The
previous implementation's parts, still callable, run on the same network in the same process:

* stability measures with ``eigvals`` of every equilibrium (now read from the equilibria
  stage's spectrum);
* tipping: ``continue_to_tipping(certify=False)``, eigenvalues at every continuation point,
  and no contraction shortcut;
* structural robustness: the continuation reference (``robustness_method="continuation"``),
  eigenvalues at every removal. It costs O(N^4) per order (~250 CPU-s per order at N = 1000),
  so it runs on ``--old-orders`` orders and only up to ``--old-max-n``; the ratio is per order
  and both paths' removals survived are compared on the same orders.

CPU seconds (``time.process_time``), BLAS pinned to one thread.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_resilience.py \\
          [--sizes 100 200 500 1000] [--gains 2 3] [--old-max-n 200] [--old-orders 1]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from koopnet import NetworkBatch
from koopnet._flags import STABLE_TYPES
from koopnet._random import stage_rng
from koopnet._resilience_continuation import continue_to_tipping
from koopnet.dimension import DimensionSettings, dimension_dataset
from koopnet.equilibria import EquilibriumSettings, equilibria_dataset
from koopnet.resilience import (
    ResilienceSettings,
    _removal_continuation,
    basin_stability,
    resilience_dataset,
    stability_measures,
    structural_robustness,
    tipping_shifts,
)


def network(N: int, g: float, seed: int = 12) -> NetworkBatch:
    W = np.random.default_rng(seed).normal(0.0, g / np.sqrt(N), (1, N, N))
    return NetworkBatch(W, -W.sum(axis=2) / 2, "logistic")


def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def run(N: int, g: float, old_max_n: int, old_orders: int) -> dict:
    batch = network(N, g)
    seeds = [5]
    eq = equilibria_dataset(batch, seeds, EquilibriumSettings())
    x = eq.x_eq.values
    stable = np.isin(eq.eq_type.values, [int(t) for t in STABLE_TYPES])
    x = np.where(stable[..., None] | (eq.eq_type.values[..., None] >= 0), x, np.nan)
    xs = np.where(stable[..., None], x, np.nan)
    s = ResilienceSettings()
    row = {"N": N, "g": g, "stable": int(stable.sum()), "eq": int((eq.eq_type.values >= 0).sum())}
    W = np.asarray(batch.W)
    row["w_lip"] = float(np.linalg.norm(W[0], 2) * batch.activation.lipschitz)

    # the stages as the workflow runs them
    row["dimension"], _ = cpu(lambda: dimension_dataset(batch, seeds, DimensionSettings(), eq))
    row["resilience"], _ = cpu(lambda: resilience_dataset(batch, seeds, s, eq))
    # its parts, new
    eigs = eq.jacobian_eigenvalues.values
    row["measures"], (margin, react) = cpu(
        lambda: stability_measures(W, x, batch.activation, eigs))
    w_norm = np.linalg.norm(W, 2, axis=(1, 2))
    row["basin"], _ = cpu(lambda: basin_stability(batch, seeds, xs, stable, s, margin=margin,
                                                  w_norm=w_norm))
    row["tipping"], _ = cpu(lambda: tipping_shifts(batch, xs, stable, s, w_norm=w_norm))
    row["robustness"], (rob, rob_se, _) = cpu(lambda: structural_robustness(
        batch, seeds, xs, stable, s, reactivity=react, w_norm=w_norm))
    row["robustness_units"], row["robustness_se"] = float(np.nanmean(rob)), float(np.nanmean(rob_se))

    # the previous implementation's parts on the same network
    row["measures_old"], _ = cpu(lambda: stability_measures(W, x, batch.activation))
    bb, ee = np.nonzero(stable)
    K = bb.size
    if K:
        args = (np.concatenate([W[bb], W[bb]]), np.concatenate([batch.theta[bb]] * 2),
                batch.activation, np.concatenate([xs[bb, ee]] * 2),
                np.concatenate([np.ones(K), -np.ones(K)]))
        opts = dict(max_shift=s.tipping_max_shift, initial_step=s.tipping_initial_step,
                    max_step=s.tipping_max_step, tol=s.tipping_tol, max_iter=s.tipping_max_iter,
                    newton_tol=s.newton_tol, newton_max_iter=s.newton_max_iter,
                    bifurcation_eig_tol=s.bifurcation_eig_tol)
        row["tipping_old"], _ = cpu(lambda: continue_to_tipping(*args, certify=False, **opts))
    if N <= old_max_n and K:
        rng = stage_rng(seeds[0], "robustness")
        orders = np.stack([rng.permutation(N) for _ in range(s.robustness_orders)])[:old_orders]
        ropts = dict(initial_step=s.robustness_initial_step, max_step=1.0, tol=s.robustness_tol,
                     max_iter=s.tipping_max_iter, newton_tol=s.newton_tol,
                     newton_max_iter=s.newton_max_iter, bifurcation_eig_tol=np.inf,
                     assume_stable_start=True, certify=False)
        t_old, old = cpu(lambda: _removal_continuation(W[0], batch.theta[0], batch.activation,
                                                       xs[bb, ee], orders, ropts))
        chord = ResilienceSettings(robustness_orders=old_orders, robustness_method="chord")
        t_new, (new, _, _) = cpu(lambda: structural_robustness(batch, seeds, xs, stable, chord,
                                                            reactivity=react, w_norm=w_norm))
        row["robustness_old_per_order"] = t_old / (K * old_orders)
        row["robustness_new_per_order"] = t_new / (K * old_orders)
        old_frac = old.reshape(K, old_orders).mean(axis=1) / N
        row["robustness_agree"] = bool(np.array_equal(old_frac, new[bb, ee]))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000])
    ap.add_argument("--gains", type=float, nargs="+", default=[2.0, 3.0])
    ap.add_argument("--old-max-n", type=int, default=200)
    ap.add_argument("--old-orders", type=int, default=1)
    a = ap.parse_args()
    cols = ["N", "g", "eq", "stable", "w_lip", "dimension", "resilience", "measures", "basin",
            "tipping", "robustness", "measures_old", "tipping_old", "robustness_old_per_order",
            "robustness_new_per_order", "robustness_agree", "robustness_units", "robustness_se"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    with threadpool_limits(1):
        for N in a.sizes:
            for g in a.gains:
                r = run(N, g, a.old_max_n, a.old_orders)
                cells = [f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "-"))
                         for c in cols]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
