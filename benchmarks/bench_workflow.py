"""Where the workflow's CPU goes: analysis against start-up, files and Snakemake itself.

Runs ``snakemake`` on a config in a fresh temporary directory (default: config/config.yaml,
the default sweep with its figures) and reports

- the CPU seconds of the whole run: Snakemake's own process plus every job it started
  (``getrusage`` of this process and its children);
- the analysis CPU seconds: the stage functions themselves (equilibria_dataset,
  spectra_dataset, dimension_dataset, resilience_dataset), summed from the jobs' logs, where
  ``koopnet.pipeline.run_stage`` records them without imports, file I/O and bookkeeping;
- the CPU of collect and of the figures (run again, alone, at the end);
- the number of jobs per rule.

BLAS is pinned to one thread per job (OMP_NUM_THREADS=1 and friends). The machine may be
shared: CPU seconds are less noisy than wall times, but contention still inflates them a
little; compare runs made at the same time.

Usage::

    python benchmarks/bench_workflow.py [--cores 2] [--configfile config/config.yaml]
           [--src DIR]   # another source tree's src/ and Snakefile (e.g. an older commit)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANALYSIS = re.compile(r"(\w+): \d+ networks, analysis ([0-9.]+) CPU-s")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(tree: Path, workdir: Path, configfile: Path, *args: str) -> tuple[float, str]:
    """Run snakemake; return (CPU seconds of it and its jobs, stdout+stderr)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = children_cpu()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(tree / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(configfile), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return children_cpu() - before, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", default="2")
    parser.add_argument("--configfile", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--src", type=Path, default=REPO, help="source tree (Snakefile and src/)")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="koopnet-bench-workflow-"))
    configfile = args.configfile.resolve()
    load_before = os.getloadavg()[0]
    total, out = snakemake(args.src, workdir, configfile, "--cores", args.cores)
    jobs: dict[str, int] = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", out):
        jobs[rule] = jobs.get(rule, 0) + 1
    analysis: dict[str, float] = {}
    for log in (workdir / "logs").rglob("*.log"):
        for stage, cpu in ANALYSIS.findall(log.read_text()):
            analysis[stage] = analysis.get(stage, 0.0) + float(cpu)
    # collect and the figures alone (their share of the run above)
    collect, _ = snakemake(args.src, workdir, configfile, "--cores", "1", "--forcerun", "collect",
                           "--until", "collect")
    figures, _ = snakemake(args.src, workdir, configfile, "--cores", "1", "--forcerun", "sweep_figures")
    dry, _ = snakemake(args.src, workdir, configfile, "-n")  # Snakemake's start-up and DAG
    a = sum(analysis.values())
    print(f"source tree {args.src}, config {configfile}, --cores {args.cores}, workdir {workdir}")
    print(f"machine load (1-min average) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"jobs: {jobs}")
    print(f"whole run: {total:.1f} CPU-s")
    print(f"  analysis (stage functions): {a:.1f} CPU-s = {100 * a / total:.0f} %  "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(analysis.items())))
    print(f"  collect + figures (rerun alone, incl. Snakemake start-up each): {collect:.1f} + {figures:.1f} CPU-s")
    print(f"  Snakemake start-up and DAG (dry run): {dry:.1f} CPU-s")
    print(f"  collect + figures without that start-up: {collect - dry:.1f} + {figures - dry:.1f} CPU-s")
    rest = total - a - collect - figures
    n = sum(v for k, v in jobs.items() if k in ("equilibria", "spectra", "metrics"))
    print(f"  everything else (job start-up, files, scheduling): {rest:.1f} CPU-s"
          + (f", {rest / n:.2f} per analysis job" if n else ""))
    print(f"analysis share without collect and figures: {100 * a / (total - collect - figures):.0f} %")
    print(f"fixed costs (everything but the analysis): {total - a:.1f} CPU-s")


if __name__ == "__main__":
    main()
