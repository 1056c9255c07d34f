"""Small linear-algebra conventions shared by every stage."""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dgetrf, dtrsyl

__all__ = ["sort_eigenvalues", "trsyl_blocked", "TRSYL_BLOCK", "lu_det_sign", "lyapunov_from_schur"]


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


#: blocks of the recursive Sylvester solver solved by LAPACK's dtrsyl
TRSYL_BLOCK = 64


def _split_point(T, n):
    """A block boundary near n / 2 that does not cut a 2x2 diagonal block of T."""
    k = n // 2
    if T[k, k - 1] != 0.0:
        k += 1
    return k if 0 < k < n else None


def trsyl_blocked(A, B, C):
    """X with A^T X + X B = C for quasi-upper-triangular A, B (real Schur factors).

    Recursive halving: the off-diagonal updates are matrix products (level-3 BLAS), the
    blocks of at most ``TRSYL_BLOCK`` rows and columns go to LAPACK's ``dtrsyl`` (level 2,
    about 10x slower than a product per flop at N = 1000 when applied whole). None if a
    block needs scaling against overflow (dtrsyl's scale < 1) or fails.
    """
    m, n = A.shape[0], B.shape[0]
    if m <= TRSYL_BLOCK and n <= TRSYL_BLOCK:
        try:
            X, scale, info = dtrsyl(A, B, C, trana="T", tranb="N")
        except ValueError:
            return None
        return X if info >= 0 and scale == 1.0 else None
    if m >= n:
        k = _split_point(A, m)
        if k is None:
            return None
        X1 = trsyl_blocked(A[:k, :k], B, C[:k])
        if X1 is None:
            return None
        X2 = trsyl_blocked(A[k:, k:], B, C[k:] - A[:k, k:].T @ X1)
        return None if X2 is None else np.vstack([X1, X2])
    k = _split_point(B, n)
    if k is None:
        return None
    X1 = trsyl_blocked(A, B[:k, :k], C[:, :k])
    if X1 is None:
        return None
    X2 = trsyl_blocked(A, B[k:, k:], C[:, k:] - X1 @ B[:k, k:])
    return None if X2 is None else np.hstack([X1, X2])


def lu_det_sign(J: np.ndarray):
    """LU factors of J (LAPACK getrf: lu, 0-based pivots) and sign(det J) = (-1)^(row swaps)
    prod sign(u_ii); None where J is not finite or exactly singular."""
    if not np.all(np.isfinite(J)):
        return None
    lu, piv, info = dgetrf(J)
    u = np.diag(lu)
    if info != 0 or not np.all(np.isfinite(u)):
        return None
    swaps = np.count_nonzero(piv != np.arange(piv.size))
    return lu, piv, (-1.0) ** (swaps + np.count_nonzero(u < 0))


def lyapunov_from_schur(T: np.ndarray, Z: np.ndarray, beta: float = 0.0):
    """H with A^T H + H A = -I for A = J + beta I, from the real Schur form J = Z T Z^T
    (T^T X + X T = -I shifted, by :func:`trsyl_blocked`; H = Z X Z^T, symmetrised); None
    where a block of the triangular solve would need scaling."""
    N = T.shape[0]
    Tb = T + beta * np.eye(N) if beta else T
    X = trsyl_blocked(Tb, Tb, -np.eye(N))
    if X is None or not np.all(np.isfinite(X)):
        return None
    H = Z @ X @ Z.T
    return 0.5 * (H + H.T)
