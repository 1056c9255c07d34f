"""One network through all four stages at default settings: CPU seconds per stage.

Cases (issue 12's targets, one core): logistic activation, centered theta, gaussian ensemble,

    N = 200,  g = 8    target <= 10 s
    N = 1000, g = 2    target <= 60 s   (one attractor)
    N = 1000, g = 8    target <= 10 min

The network is network 0 of the grid point in a sweep with the default config seed, i.e. the
one the workflow draws for that point. Each case runs in its own process (so a ``--timeout``
can stop it, and imports are not shared); BLAS is pinned to one thread there (threadpoolctl
and OMP_NUM_THREADS=1). Stages run as the workflow runs them (``koopnet.pipeline.STAGES``):
equilibria, then spectra, dimension and resilience on its result. Reported per stage:
process CPU seconds of the stage function (``time.process_time``), and the stage's own
``*_seconds`` variables where the dataset records them. Imports and a warm-up of every stage
on an N = 4 network (first-call costs such as loading compiled kernels) are reported apart.

Usage::

    python benchmarks/bench_pipeline.py                 # all three cases
    python benchmarks/bench_pipeline.py --quick         # N = 200, g = 8 only
    python benchmarks/bench_pipeline.py --case 1000 2   # one case (repeatable)
    python benchmarks/bench_pipeline.py --timeout 900   # stop a case after 900 s wall

Prints a markdown table; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = [(200, 8.0, 10.0), (1000, 2.0, 60.0), (1000, 8.0, 600.0)]  # (N, g, target CPU-s)
CONFIG_SEED = 20261129  # config/config.yaml's


def run_case(n_units: int, g: float) -> dict:
    """Run in a child process: the four stages on one network; returns CPU seconds by stage."""
    start = time.process_time()
    import importlib

    from threadpoolctl import threadpool_limits

    from koopnet.pipeline import STAGES, stage_settings
    from koopnet.sweep import build_networks, expand_sweep

    entries = [entry for stage in STAGES.values() for entry in stage]
    modules = {module: importlib.import_module(module) for module, *_ in entries}
    result: dict = {"N": n_units, "g": g, "import_seconds": time.process_time() - start, "stages": {}}

    def network(n: int):
        sweep = {"ensemble": "gaussian", "activation": "logistic", "theta_mode": "centered", "N": n,
                 "params": {"g": g}}
        (point,) = expand_sweep("bench", sweep)
        return build_networks(point, [0], CONFIG_SEED)

    with threadpool_limits(1):
        # warm-up on N = 4: first-call costs (numba cache loads or compiles, lazy imports) are
        # paid once per process, not per network, so they are reported apart
        start = time.process_time()
        done: dict = {}
        small, small_seeds = network(4)
        for module, func, settings_name, section, needs in entries:
            mod = modules[module]
            settings = stage_settings(getattr(mod, settings_name), {}, section)
            done[section] = getattr(mod, func)(small, small_seeds, settings, **{k: done[k] for k in needs})
        result["warmup_seconds"] = time.process_time() - start
        batch, seeds = network(n_units)
        done = {}
        for module, func, settings_name, section, needs in entries:
            mod = modules[module]
            settings = stage_settings(getattr(mod, settings_name), {}, section)
            t0 = time.process_time()
            ds = getattr(mod, func)(batch, seeds, settings, **{k: done[k] for k in needs})
            cpu = time.process_time() - t0
            done[section] = ds
            own = {name: float(ds[name].values.ravel()[0]) for name in ds.data_vars if name.endswith("_seconds")}
            result["stages"][section] = {"cpu_seconds": cpu, "recorded": own}
        eq = done["equilibria"]
        result["n_equilibria"] = int(eq["n_equilibria"].values.ravel()[0]) if "n_equilibria" in eq else None
    return result


def child(n_units: int, g: float, timeout: float | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", str(n_units), str(g)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"N": n_units, "g": g, "error": f"stopped after {timeout:.0f} s wall"}
    if out.returncode != 0:
        return {"N": n_units, "g": g, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only N = 200, g = 8")
    parser.add_argument("--case", nargs=2, action="append", metavar=("N", "G"), help="one case (repeatable)")
    parser.add_argument("--timeout", type=float, help="wall seconds per case")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(int(args.child[0]), float(args.child[1]))))
        return
    targets = {(n, g): t for n, g, t in CASES}
    if args.case:
        cases = [(int(n), float(g)) for n, g in args.case]
    else:
        cases = [(n, g) for n, g, _ in CASES[: 1 if args.quick else None]]
    results = []
    for n_units, g in cases:
        res = child(n_units, g, args.timeout)
        results.append(res)
        print(f"N={n_units} g={g}: {json.dumps(res)}", file=sys.stderr, flush=True)
    stages = sorted({s for r in results for s in r.get("stages", {})},
                    key=lambda s: ["equilibria", "spectra", "dimension", "resilience"].index(s)
                    if s in ("equilibria", "spectra", "dimension", "resilience") else 9)
    print("| N | g | equilibria found | " + " | ".join(f"{s} CPU-s" for s in stages)
          + " | total CPU-s | target | met | imports + warm-up CPU-s |")
    print("|---|---|---|" + "---|" * len(stages) + "---|---|---|---|")
    for r in results:
        target = targets.get((r["N"], r["g"]))
        if "error" in r:
            print(f"| {r['N']} | {r['g']:g} | | " + " | ".join("" for _ in stages)
                  + f" | {r['error']} | {target or ''} | no | |")
            continue
        total = sum(s["cpu_seconds"] for s in r["stages"].values())
        cells = [f"{r['stages'][s]['cpu_seconds']:.2f}" if s in r["stages"] else "" for s in stages]
        met = "" if target is None else ("yes" if total <= target else "no")
        print(f"| {r['N']} | {r['g']:g} | {r['n_equilibria']} | " + " | ".join(cells)
              + f" | {total:.2f} | {'' if target is None else f'<= {target:g}'} | {met} "
              f"| {r['import_seconds']:.2f} + {r['warmup_seconds']:.2f} |")
    recorded = [(r["N"], r["g"], s, v) for r in results for s, d in r.get("stages", {}).items()
                for v in [d["recorded"]] if v]
    if recorded:
        print("\nStage timings recorded in the datasets (`*_seconds`):")
        for n_units, g, s, v in recorded:
            print(f"- N={n_units} g={g:g} {s}: " + ", ".join(f"{k} = {x:.2f}" for k, x in v.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
