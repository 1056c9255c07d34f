"""Benchmark: principal Koopman eigenfunctions in the spectra stage at N = 200 and 1000.

Part 1 (the stage): networks of the default ensemble on the target's side of the transition
(gaussian W, logistic, centred input, g = 2: one attractor; g = 8: several), equilibria from the
default ``equilibria`` stage (not timed), then the CPU time of the default ``spectra`` stage, and
of the same stage with the eigenfunctions switched off (``eigenfunction_max_units = 0``): the
difference is their cost, per stable equilibrium. Their residual orders are reported (expected:
the degree, 3 at N <= 200 and 2 above).

Part 2 (the alternative): the Taylor (Carleman) generator, the only other way the library had to
get the same Taylor coefficients, on the same networks and equilibria at small N, degree 3, all
principal modes; CPU ratio and the largest coefficient difference after normalisation.

CPU seconds (time.process_time) with BLAS pinned to one thread. The machine is shared (2 cores,
several jobs): CPU times are less noisy than wall times but still move by ~20 %.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_eigenfunctions.py
      [--n 200 1000] [--g 2 8] [--seeds 1] [--ensemble gaussian] [--theta-value 0] [--taylor-n 4 6 8 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from threadpoolctl import threadpool_limits

from koopnet.equilibria import equilibria_dataset
from koopnet.koopman import SpectraSettings, principal_eigenfunctions, spectra_dataset, taylor_generator
from koopnet.sweep import SweepPoint, build_networks


def _batch(n, g, seeds, ensemble="gaussian", theta_value=0.0):
    values = {"ensemble": ensemble, "activation": "logistic", "theta_mode": "centered", "N": n, "g": g}
    if theta_value:
        values["theta_value"] = theta_value
    point = SweepPoint("bench", values, f"{ensemble}-n{n}-g{g}")
    return build_networks(point, list(range(seeds)), 20261129)


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def stage(ns, gs, seeds, ensemble="gaussian", theta_value=0.0):
    print("| N | g | networks | stable equilibria | spectra stage CPU-s | of which eigenfunctions | per stable eq. "
          "| degree | residual order (min / max over modes) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for g in gs:
            batch, sd = _batch(n, g, seeds, ensemble, theta_value)
            eq = equilibria_dataset(batch, sd)
            s = SpectraSettings()
            t_all, ds = _cpu(lambda: spectra_dataset(batch, sd, s, equilibria=eq))
            off = dataclasses.replace(s, eigenfunction_max_units=0)
            t_off, _ = _cpu(lambda: spectra_dataset(batch, sd, off, equilibria=eq))
            n_stable = int(np.sum(ds.eigenfunction_status.values[..., 0] >= 0))
            order = ds.eigenfunction_residual_order.values
            deg = int(ds.eigenfunction_degree.values[0])
            per = (t_all - t_off) / max(n_stable, 1)
            rng = f"{np.nanmin(order):.2f} / {np.nanmax(order):.2f}" if np.isfinite(order).any() else "-"
            print(f"| {n} | {g} | {len(batch)} | {n_stable} | {t_all:.2f} | {t_all - t_off:.2f} | {per:.2f} | {deg} "
                  f"| {rng} |", flush=True)


def versus_taylor(ns, g=2.0):
    print("\n| N | monomials C(N+3,3) | Taylor generator CPU-s | principal_eigenfunctions CPU-s | ratio "
          "| max coefficient difference |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        batch, sd = _batch(n, g, 1)
        eq = equilibria_dataset(batch, sd)
        stable = np.flatnonzero(np.isin(eq.eq_type.values[0], [0, 1]))
        x = eq.x_eq.values[0, stable[0]]
        net = batch[0]
        reps = 3
        t_tg, tg = _cpu(lambda: [taylor_generator(net, x, 3) for _ in range(reps)][-1])
        t_pe, pe = _cpu(lambda: [principal_eigenfunctions(net, x, n, 3) for _ in range(reps)][-1])
        lin = tg.exponents.sum(axis=1) == 1
        worst = 0.0
        for q in range(n):
            ref = tg.eigenvectors[0][:, int(np.argmin(np.abs(tg.eigenvalues[0] - pe.eigenvalues[q])))]
            ours = pe.monomial_coefficients(q, tg.exponents)
            ref = ref * np.vdot(ref[lin], ours[lin]) / np.vdot(ref[lin], ref[lin])
            worst = max(worst, float(np.max(np.abs(ref - ours)) / np.max(np.abs(ours))))
        print(f"| {n} | {tg.exponents.shape[0]} | {t_tg / reps:.4f} | {t_pe / reps:.4f} | {t_tg / t_pe:.0f}x "
              f"| {worst:.1e} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--g", type=float, nargs="+", default=[2.0, 8.0])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--ensemble", default="gaussian", help="weight ensemble (symmetric: several attractors at g = 8)")
    p.add_argument("--theta-value", type=float, default=0.0,
                   help="added to the centred input: moves the attractor off x = 0, where sigma'' = 0 and the "
                        "degree-2 coefficients vanish")
    p.add_argument("--taylor-n", type=int, nargs="*", default=[4, 6, 8, 10])
    a = p.parse_args()
    with threadpool_limits(1):
        if a.n:
            stage(a.n, a.g, a.seeds, a.ensemble, a.theta_value)
        if a.taylor_n:
            versus_taylor(a.taylor_n)


if __name__ == "__main__":
    main()
