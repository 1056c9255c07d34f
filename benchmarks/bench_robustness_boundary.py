"""Structural robustness of near-marginal stable states: chord path against the reference.

Networks: the ones config/scale.yaml draws (gaussian, logistic, centered theta; network
``seed`` of the grid point (N, g) under the config seed 20261129), their equilibria from
``equilibria_dataset`` at default settings (not timed; cached in --cache). At g = 5 their
stable states sit at a crowded spectral edge (margins ~0.003 at N = 1000), where chord steps
fail and removals go to :func:`koopnet._resilience_removal.continue_removal`; at g = 3 the
states are far from any boundary (the chord path's ordinary case).

For each network, ``structural_robustness`` with ``robustness_method="chord"`` (the default
from N = 32) and, where ``--reference`` allows it, ``"continuation"`` (the reference: a
continuation with eigenvalues at every accepted point, O(N^3) per step) on the same orders;
CPU seconds (``time.process_time``), BLAS pinned to one thread, ``eigvals`` calls counted,
survivals compared.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_robustness_boundary.py \\
          [--cases 300:5:0 1000:5:0 1000:3:0] [--orders 8] [--reference 1000]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from _cases import workflow_network

import koopnet._resilience_continuation as continuation
import koopnet._resilience_removal as removal
from koopnet._flags import STABLE_TYPES
from koopnet.resilience import ResilienceSettings, structural_robustness





def counted(method: str, batch, seeds, x, stable, orders: int, budget: int):
    """(CPU-s, eigvals calls, robustness, orders followed) of one method."""
    calls = [0]
    original = continuation._leading_eigenvalue

    def counting(J):
        calls[0] += J.shape[0]
        return original(J)

    removal._leading_eigenvalue = continuation._leading_eigenvalue = counting
    try:
        kw = dict(robustness_orders=orders, robustness_method=method)
        if "robustness_budget" in ResilienceSettings.__dataclass_fields__:
            kw["robustness_budget"] = budget  # (absent before session 6: --src of older trees)
        t0 = time.process_time()
        res = structural_robustness(batch, seeds, x, stable, ResilienceSettings(**kw))
        cpu = time.process_time() - t0
        n_orders = res[2] if len(res) > 2 else np.where(stable, orders, 0)
        return cpu, calls[0], res[0], n_orders
    finally:
        removal._leading_eigenvalue = continuation._leading_eigenvalue = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["300:5:0", "1000:5:0", "1000:3:0"],
                    help="N:g:seed")
    ap.add_argument("--orders", type=int, default=8)
    ap.add_argument("--budget", type=int, default=0,
                    help="robustness_budget of the chord path (0: none, so both follow every order)")
    ap.add_argument("--reference", type=int, default=1000,
                    help="run the reference up to this N (it is O(N^4) per order on states that survive)")
    ap.add_argument("--reference-gains", type=float, nargs="+", default=[4.0, 5.0],
                    help="gains on which the reference runs (at g = 3 it would take hours at N = 1000)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/koopnet_bench_cache"))
    args = ap.parse_args()
    print("| N | g | seed | stable states | margin | orders | chord CPU-s | chord eigvals | "
          "reference CPU-s | reference eigvals | ratio | same survivals | robustness | orders followed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for case in args.cases:
            n, g, s = case.split(":")
            N, g, s = int(n), float(g), int(s)
            batch, seeds, eq = workflow_network(N, g, s, args.cache)
            stable = np.isin(eq.eq_type.values, list(STABLE_TYPES))
            x = np.where(stable[..., None], eq.x_eq.values, np.nan)
            ev = eq.jacobian_eigenvalues.values[stable]
            margin = -np.max(ev.real, axis=-1) if ev.size else np.array([np.nan])
            t_c, e_c, r_c, o_c = counted("chord", batch, seeds, x, stable, args.orders, args.budget)
            ref = "n/a", "n/a", "n/a", "n/a"
            if N <= args.reference and g in args.reference_gains:
                t_r, e_r, r_r, _ = counted("continuation", batch, seeds, x, stable, args.orders,
                                           budget=0)
                same = bool(np.array_equal(r_c, r_r, equal_nan=True)) if not args.budget else "n/a"
                ref = (f"{t_r:.1f}", e_r, f"{t_r / t_c:.1f}x", same)
            print(f"| {N} | {g:g} | {s} | {int(stable.sum())} | {np.min(margin):.2g} | {args.orders} | "
                  f"{t_c:.1f} | {e_c} | {ref[0]} | {ref[1]} | {ref[2]} | {ref[3]} | "
                  f"{np.round(r_c[stable], 4).tolist()} | {o_c[stable].tolist()} |", flush=True)


if __name__ == "__main__":
    main()
