"""Small linear-algebra conventions shared by every stage."""

from __future__ import annotations

import numpy as np

__all__ = ["sort_eigenvalues"]


def sort_eigenvalues(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sort complex eigenvalues by decreasing real part, then decreasing imaginary part.

    NaN entries go last. Works on any leading shape (sorted along ``axis``).
    """
    values = np.asarray(values)
    v = np.moveaxis(values, axis, -1)
    re = np.where(np.isnan(v.real), -np.inf, v.real)
    im = np.where(np.isnan(v.imag), -np.inf, v.imag)
    # lexsort: last key is primary
    order = np.lexsort((-im, -re), axis=-1)
    out = np.take_along_axis(v, order, axis=-1)
    return np.moveaxis(out, -1, axis)
