"""Effective ranks of the learned change delta_W = W - W0 per task (Schuessler et al. 2020).

Trains one tanh network per task and initial gain (Gaussian W0, default task parameters and
training settings unless given) and prints, after ``--steps`` optimizer updates, the task
performance and the erank / energy rank (90 %) / numerical rank of delta_W next to those of W0.
Not a timing benchmark: the numbers are a study, quoted in docs/learning.md.

Run:  OMP_NUM_THREADS=1 python benchmarks/delta_w_ranks.py [--n 128] [--steps 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from koopnet.dimension import weight_dimensions
from koopnet.ensembles import gaussian
from koopnet.learning import TrainingSettings, train_network

TASK_PARAMS = {"flipflop": {"bits": 3}, "context_integration": {}, "working_memory": {}, "fixed_points": {}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--g", type=float, nargs="+", default=[0.5, 1.5])
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--tasks", nargs="+", default=list(TASK_PARAMS))
    a = p.parse_args()
    print(f"N = {a.n}, {a.steps} steps, optimizer {a.optimizer}, learning rate {a.lr}, tanh, Gaussian W0")
    print("| task | g | performance | erank dW | energy rank dW | rank dW | erank W0 | energy rank W0 | "
          "norm dW / norm W0 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in a.tasks:
        for g in a.g:
            W0 = gaussian(a.n, np.random.default_rng(1), g=g)
            s = TrainingSettings(task=task, task_params=TASK_PARAMS[task], checkpoints=(0, a.steps),
                                 optimizer=a.optimizer, learning_rate=a.lr)
            run = train_network(W0, np.zeros(a.n), "tanh", s, seed=1)
            d, w = weight_dimensions(run.W[-1] - W0), weight_dimensions(W0)
            rel = np.linalg.norm(run.W[-1] - W0) / np.linalg.norm(W0)
            print(f"| {task} | {g} | {run.performance[-1]:.3f} | {d.erank:.1f} | {d.energy_rank} | {d.rank} | "
                  f"{w.erank:.1f} | {w.energy_rank} | {rel:.2f} |", flush=True)


if __name__ == "__main__":
    main()
