"""Benchmark the tipping continuation: the chord path against the continuation reference.

Networks as the workflow builds them (``expand_sweep`` + ``build_networks``, config seed
20261129: gaussian logistic networks, centered input), their equilibria from
``equilibria_dataset`` at default settings (not timed; cached as pickles in ``--cache``).
For each network ``tipping_shifts`` runs twice in the same process on the same stable
equilibria: ``tipping_method="continuation"`` (the reference: an LU per Newton iteration,
eigenvalues wherever the P = I Cholesky certificate fails) and ``tipping_method="chord"``
(:mod:`koopnet._resilience_tipping`; the starts' spectra from the equilibria stage, as
``resilience_dataset`` passes them). CPU seconds (``time.process_time``), BLAS pinned to one
thread; the chord path's operation counts (LUs, Cholesky tests, ``eigvals``, Schur forms) and
whether statuses agree exactly and shifts to 10 ``tipping_tol`` are printed beside them.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_tipping.py \\
          [--sizes 200 500 1000] [--gains 3 8] [--seeds 0] [--cache /tmp/koopnet_tipping]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from _cases import workflow_network



def case(N: int, g: float, seed: int, cache: str):
    """(batch, seeds, equilibria dataset) of one workflow network, cached."""
    return workflow_network(N, g, seed, cache)


def run(N: int, g: float, seed: int, cache: str) -> dict:
    from koopnet import _resilience_tipping
    from koopnet._flags import STABLE_TYPES
    from koopnet.resilience import ResilienceSettings, stability_measures, tipping_shifts

    batch, seeds, eq = case(N, g, seed, cache)
    stable = np.isin(eq.eq_type.values, [int(t) for t in STABLE_TYPES])
    x = np.where(stable[..., None], eq.x_eq.values, np.nan)
    eigs = eq.jacobian_eigenvalues.values
    W = np.asarray(batch.W)
    row = {"N": N, "g": g, "seed": seed, "stable": int(stable.sum())}
    _, react = stability_measures(W, x, batch.activation, eigs)
    w_norm = np.linalg.norm(W, 2, axis=(1, 2))
    row["w_lip"] = float(w_norm[0] * batch.activation.lipschitz)
    out = {}
    for method in ("continuation", "chord"):
        s = ResilienceSettings(tipping_method=method)
        _resilience_tipping.COUNTS.clear()
        t0 = time.process_time()
        out[method] = tipping_shifts(batch, x, stable, s, w_norm=w_norm, eigenvalues=eigs,
                                     reactivity=react)
        row[method] = time.process_time() - t0
    row["counts"] = dict(_resilience_tipping.COUNTS)
    ref, new = out["continuation"], out["chord"]
    tol = 10 * ResilienceSettings().tipping_tol
    same = all(np.array_equal(a[stable], b[stable]) for a, b in zip(ref[2:], new[2:]))
    close = all(np.array_equal(np.isnan(a[stable]), np.isnan(b[stable]))
                and np.all(np.nan_to_num(np.abs(a[stable] - b[stable])) <= tol)
                for a, b in zip(ref[:2], new[:2]))
    row["agree"] = "yes" if same and close else "NO"
    names = {0: "fold", 1: "hopf", 2: "none", 3: "failed", 5: "branch"}
    row["statuses"] = " ".join(f"{names.get(int(u), u)}/{names.get(int(d), d)}"
                               for u, d in zip(new[2][stable], new[3][stable]))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    ap.add_argument("--gains", type=float, nargs="+", default=[3.0, 8.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cache", default="/tmp/koopnet_tipping")
    args = ap.parse_args()
    print("| N | g | seed | stable | ‖W‖₂ Lip | statuses (up/down) | continuation CPU-s | chord CPU-s | ratio | agree | chord operations |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for N in args.sizes:
            for g in args.gains:
                for seed in args.seeds:
                    r = run(N, g, seed, args.cache)
                    ratio = r["continuation"] / r["chord"] if r["chord"] > 0 else float("nan")
                    ops = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
                    print(f"| {N} | {g:g} | {seed} | {r['stable']} | {r['w_lip']:.3g} | {r['statuses']} | "
                          f"{r['continuation']:.3g} | {r['chord']:.3g} | {ratio:.2g} | {r['agree']} | {ops} |",
                          flush=True)


if __name__ == "__main__":
    main()
