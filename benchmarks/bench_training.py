"""Benchmark the jit-compiled BPTT training step of koopnet.learning against plain matmuls.

Training throughput is reported in trial-steps per CPU second (one trial advanced by one Euler
step, forward and backward). Its achieved GFLOP/s counts only the recurrent matmuls, the
dominant cost: forward r W^T (2 B N^2 per step) and backward dL/dr = g W and dL/dW = g^T r
(4 B N^2 per step), i.e. 6 B N^2 per trial-step (inputs, readout and elementwise work are
O(B N (M + K + 1)) and not counted, so the fraction is a lower bound). The baselines, in the
same run on the same shapes, are

- ``matmul_scan``: the forward chain x <- tanh(x) W^T over the same T steps in a jitted
  lax.scan (what the recurrence costs with nothing else), and
- ``matmul_flat``: one (B T, N) x (N, N) numpy matmul (BLAS on one thread, the machine's
  matmul speed for these shapes).

Everything runs on one thread (XLA single-threaded as in koopnet.learning; BLAS pinned), and
times are CPU seconds (time.process_time), so a loaded machine slows wall time but not these.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_training.py [--n 64 128 256]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from koopnet import learning
from koopnet.ensembles import gaussian
from koopnet.tasks import make_batch

jax, jnp = learning.jax, learning.jnp


def _cpu(fn, repeats: int) -> float:
    fn()  # compile / warm up
    t0 = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t0) / repeats


def run(n: int, bits: int, batch_size: int, duration: float, dt: float, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    b = make_batch("flipflop", rng, batch_size, dt, bits=bits, duration=duration)
    T = b.u.shape[1]
    params = {"W": jnp.asarray(gaussian(n, rng, g=1.5)), "theta": jnp.zeros(n),
              "B": jnp.asarray(rng.standard_normal((n, bits))), "C": jnp.asarray(rng.standard_normal((bits, n)) / n**0.5)}
    opt = learning._Optimizer(1e-3, 1.0)
    state = opt.init(params)
    u, target, mask = jnp.asarray(b.u), jnp.asarray(b.target), jnp.asarray(b.mask)

    def train_step():
        out = learning._trial_update(params, {}, state, u, target, mask, dt=dt, activation="tanh", optimizer=opt)
        jax.block_until_ready(out)

    @jax.jit
    def chain(x, W):
        def step(x, _):
            x = jnp.tanh(x) @ W.T
            return x, None
        return jax.lax.scan(step, x, None, length=T)[0]

    x0 = jnp.asarray(rng.standard_normal((batch_size, n)))
    W = params["W"] / 2.0

    def scan_step():
        jax.block_until_ready(chain(x0, W))

    X = rng.standard_normal((batch_size * T, n))
    Wn = np.asarray(W)

    def flat():
        X @ Wn.T

    t_train = _cpu(train_step, repeats)
    t_scan = _cpu(scan_step, repeats)
    t_flat = _cpu(flat, repeats)
    trial_steps = batch_size * T
    gflop_train = 6 * batch_size * n * n * T / t_train / 1e9
    gflop_scan = 2 * batch_size * n * n * T / t_scan / 1e9
    gflop_flat = 2 * batch_size * n * n * T / t_flat / 1e9
    return dict(n=n, B=batch_size, T=T, t_train=t_train, rate=trial_steps / t_train, gflop_train=gflop_train,
                gflop_scan=gflop_scan, gflop_flat=gflop_flat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--bits", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--dt", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    print("| N | batch | T | CPU s / training step | trial-steps / CPU s | training GFLOP/s | forward scan "
          "GFLOP/s | flat matmul GFLOP/s | training / flat matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for n in a.n:
            r = run(n, a.bits, a.batch, a.duration, a.dt, a.repeats)
            print(f"| {r['n']} | {r['B']} | {r['T']} | {r['t_train']:.4f} | {r['rate']:.3g} | {r['gflop_train']:.2f} "
                  f"| {r['gflop_scan']:.2f} | {r['gflop_flat']:.2f} | {100 * r['gflop_train'] / r['gflop_flat']:.0f} % |")


if __name__ == "__main__":
    main()
