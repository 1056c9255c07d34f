"""XLA settings for koopnet's JAX code (private; imports no JAX itself).

XLA reads ``XLA_FLAGS`` once, when JAX's CPU backend starts (the first computation, not the
import), so the modules that use JAX (:mod:`koopnet.learning`, :mod:`koopnet.koopman._perturbative`)
call :func:`configure_xla` before anything can start it. The flags:

- ``--xla_cpu_multi_thread_eigen=false``: XLA's Eigen operations (dots, reductions) run on the
  calling thread, not split over the intra-op thread pool, so reductions run in one fixed order
  and results are the same bytes whatever the machine's load or core count.

It does not stop jaxlib's batched LAPACK custom calls from splitting their batch over the intra-op
pool and blocking a pool worker meanwhile, which can hang the process when several run at once
(jaxlib 0.10; docs/perturbative.md, "XLA deadlock"). A batch of one runs inline, so koopnet's jitted
code makes no batched LAPACK call: the perturbative kernels none at all, training's fixed-point loss
one (N, N) matrix at a time (both checked on the compiled HLO in the tests).

An invalid flag makes XLA abort the process, so only flags this jaxlib knows are set (checked in
tests/test_koopman_perturbative.py).
"""

from __future__ import annotations

import os
import sys

__all__ = ["XLA_FLAGS", "configure_xla"]

#: flags koopnet adds to ``XLA_FLAGS`` (a user's own value of the same flag wins)
XLA_FLAGS: tuple[str, ...] = ("--xla_cpu_multi_thread_eigen=false",)


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a JAX without this private helper: assume started, change nothing
        return True


def configure_xla() -> bool:
    """Add :data:`XLA_FLAGS` to the environment unless JAX's backend has already started.

    Returns
    -------
    bool
        True if the flags are in effect for this process (set now, or by the user, before the
        backend started); False if the backend started earlier without them (XLA keeps its
        settings for the life of the process).
    """
    current = os.environ.get("XLA_FLAGS", "").split()
    names = {f.split("=", 1)[0] for f in current}
    missing = [f for f in XLA_FLAGS if f.split("=", 1)[0] not in names]
    if not missing:
        return True
    if _backend_started():
        return False
    os.environ["XLA_FLAGS"] = " ".join(current + missing)
    return True
