"""Reproducible random streams.

Every random draw in koopnet comes from a generator keyed by a network's integer seed
(derived by the workflow from the config seed, the sweep point and the seed index) and
the name of the stage that draws, never from job order, batch composition or core count.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stage_rng", "stable_hash_words"]


def stable_hash_words(text: str, n_words: int = 4) -> list[int]:
    """32-bit words of the SHA-256 of ``text`` (stable across runs and platforms)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[4 * i : 4 * i + 4], "little") for i in range(n_words)]


def stage_rng(network_seed: int, stage: str) -> np.random.Generator:
    """Generator for one network and one analysis stage.

    Parameters
    ----------
    network_seed : int
        Non-negative integer identifying the network (any size).
    stage : str
        Name of the drawing stage (``"equilibria"``, ``"basin_stability"`` ...); different
        stages get independent streams.
    """
    seed = int(network_seed)
    if seed < 0:
        raise ValueError("network_seed must be non-negative")
    words = []
    while True:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
        if seed == 0:
            break
    return np.random.default_rng(np.random.SeedSequence(words + stable_hash_words(stage)))
