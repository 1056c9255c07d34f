"""Shared helpers of :mod:`koopnet.koopman`: flags, multi-indices, eigenvalue ordering and matching."""

from __future__ import annotations

import itertools
from enum import IntEnum
from functools import lru_cache

import numpy as np

from .._linalg import sort_eigenvalues

__all__ = [
    "AnalyticFamily",
    "GedmdStatus",
    "KoopmanStatus",
    "multi_indices",
    "sort_eigenvalues",
    "match_eigenvalues",
]


class AnalyticFamily(IntEnum):
    """Exact eigenfunction family that applies to a network (SCIENCE.md 2a-2c)."""

    none = 0
    linear = 1
    feedforward = 2
    cubic_neuron = 3


class KoopmanStatus(IntEnum):
    """Outcome of the attractor-based Koopman spectrum of one network."""

    ok = 0
    no_stable_equilibrium = 1
    #: no hyperbolic stable equilibrium, but a non-hyperbolic one without unstable eigenvalues
    #: (it may attract, algebraically: see the metrics stage's attractor_status); no rates
    non_hyperbolic_equilibrium = 2


class GedmdStatus(IntEnum):
    """Outcome of the generator-EDMD fit of one network."""

    ok = 0
    skipped_too_many_units = 1
    no_stable_equilibrium = 2
    too_few_samples = 3
    failed = 4


@lru_cache(maxsize=64)
def _multi_indices_cached(n: int, degree: int) -> np.ndarray:
    rows = []
    for d in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(n), d):
            alpha = np.zeros(n, dtype=np.int64)
            for i in combo:
                alpha[i] += 1
            rows.append(alpha)
    out = np.array(rows, dtype=np.int64).reshape(-1, n)
    out.setflags(write=False)
    return out


def multi_indices(n: int, degree: int) -> np.ndarray:
    """All multi-indices alpha in N^n with |alpha| <= degree, graded by total degree.

    Parameters
    ----------
    n : int
        Number of variables.
    degree : int
        Maximal total degree D.

    Returns
    -------
    array of int, shape (C(n + D, D), n)
        Row 0 is the zero multi-index, then the n unit vectors e_0..e_{n-1}, then degree 2 ...
    """
    return _multi_indices_cached(int(n), int(degree))


def match_eigenvalues(reference: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of reference eigenvalues to candidate eigenvalues.

    Parameters
    ----------
    reference : array, shape (k,)
        Eigenvalues to find (NaN entries are ignored).
    candidates : array, shape (m,)
        Eigenvalues to search in, m >= k after dropping NaN.

    Returns
    -------
    errors : array of float, shape (k,)
        |matched candidate - reference| for each reference entry (inf if unmatched, NaN for NaN input).
    index : array of int, shape (k,)
        Index into ``candidates`` of the match (-1 if none).
    """
    reference = np.asarray(reference, dtype=complex).ravel()
    candidates = np.asarray(candidates, dtype=complex).ravel()
    errors = np.full(reference.shape, np.inf)
    index = np.full(reference.shape, -1, dtype=np.int64)
    ok_r = np.flatnonzero(~np.isnan(reference))
    ok_c = np.flatnonzero(~np.isnan(candidates))
    errors[np.isnan(reference)] = np.nan
    if ok_r.size == 0 or ok_c.size == 0:
        return errors, index
    cost = np.abs(reference[ok_r, None] - candidates[None, ok_c])
    from scipy.optimize import linear_sum_assignment  # lazy: scipy.optimize costs ~0.5 s to import

    rows, cols = linear_sum_assignment(cost)
    errors[ok_r[rows]] = cost[rows, cols]
    index[ok_r[rows]] = ok_c[cols]
    return errors, index
