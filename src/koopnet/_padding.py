"""Padding ragged per-network results into rectangular arrays for xarray.

Ragged inner dimensions (equilibria, modes) are padded with :data:`FILL_FLOAT` (NaN,
or NaN+NaNj for complex) and integer variables with :data:`FILL_INT`. Every padded
variable sits beside a count (``n_equilibria`` ...) that says how many entries are real.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["FILL_FLOAT", "FILL_INT", "pad_stack"]

FILL_FLOAT = np.nan
FILL_INT = -1


def pad_stack(arrays: Sequence[np.ndarray], axis_len: int | None = None, fill=None) -> np.ndarray:
    """Stack arrays that differ in the length of their first axis, padding at its end.

    Parameters
    ----------
    arrays : sequence of arrays, shapes (k_b, *rest)
        One per network; ``rest`` must agree.
    axis_len : int, optional
        Padded length (default: max k_b, at least 1 so that empty results keep a dimension).
    fill : scalar, optional
        Pad value (default :data:`FILL_FLOAT` for float/complex, :data:`FILL_INT` for integers).

    Returns
    -------
    array, shape (B, axis_len, *rest)
    """
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("nothing to stack")
    dtype = np.result_type(*arrays)
    if fill is None:
        if np.issubdtype(dtype, np.integer):
            fill = FILL_INT
        elif np.issubdtype(dtype, np.complexfloating):
            fill = complex(FILL_FLOAT, FILL_FLOAT)  # np.nan alone would give nan+0j
        else:
            fill = FILL_FLOAT
    rest = arrays[0].shape[1:]
    length = max(max(a.shape[0] for a in arrays), 1) if axis_len is None else axis_len
    out = np.full((len(arrays), length, *rest), fill, dtype=dtype)
    for b, a in enumerate(arrays):
        if a.shape[1:] != rest:
            raise ValueError(f"trailing shapes differ: {a.shape[1:]} vs {rest}")
        k = min(a.shape[0], length)
        out[b, :k] = a[:k]
    return out
