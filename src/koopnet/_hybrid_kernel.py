"""Compiled per-start Powell hybrid root search (numba; private).

One start at a time, each independent of every other start: MINPACK ``hybrj``'s scaled
dogleg trust region with Broyden rank-1 updates between exact Jacobians (Powell 1970; Moré,
Garbow & Hillstrom, MINPACK-1, 1980), on

    F(y) = -y + A sigma(c + B y) + e = 0,        y in R^d,

as in :mod:`koopnet._equilibria_newton`. Differences from ``hybrj``: the exact Jacobian is
factorised by LU (LAPACK ``getrf``, the call numba itself uses) instead of QR, the model's
inverse is carried as H = J0^-1 - sum_m p_m q_m^T (Sherman-Morrison, so a step costs two
triangular-solve pairs and O(m d), not a refactorisation), the exact Jacobian is also
re-evaluated after ``n_updates`` Broyden updates, and convergence is koopnet's relative
residual test. Starts whose trust region collapses close to a root (residual <= sqrt(tol))
get up to three exact Newton steps.

Bitwise reproducibility: a start's arithmetic reads only its own state and its network's
matrices; no reduction crosses starts, so results do not depend on how starts are batched
(starts run one after the other: the equilibria jobs use one core each, and a threaded
variant would only add compile time). Compiled with ``cache=True``: the first call in a fresh environment compiles
(seconds), later processes load the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.np.linalg import _LAPACK

__all__ = ["ACTIVATION_CODES", "hybrid_search"]

#: Activation names understood by the kernel.
ACTIVATION_CODES = {"logistic": 0, "tanh": 1, "linear": 2, "cubic": 3}

_getrf = _LAPACK().numba_xxgetrf(types.float64)
_KIND = np.int8(ord("d"))

# per-start outcome codes (the values of _equilibria_newton.StartCode)
_ACTIVE, _CONVERGED, _DIVERGED, _SINGULAR, _MAX_ITER, _STALLED = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _sigma(code, x, s, ds):
    """s = sigma(x), ds = sigma'(x) elementwise."""
    for i in range(x.size):
        v = x[i]
        if code == 0:
            if v >= 0.0:
                t = 1.0 / (1.0 + np.exp(-v))
            else:
                z = np.exp(v)
                t = z / (1.0 + z)
            s[i] = t
            ds[i] = t * (1.0 - t)
        elif code == 1:
            t = np.tanh(v)
            s[i] = t
            ds[i] = 1.0 - t * t
        elif code == 2:
            s[i] = 0.5 + 0.25 * v
            ds[i] = 0.25
        else:
            s[i] = 0.5 + 0.25 * v - v * v * v / 48.0
            ds[i] = 0.25 - v * v / 16.0


@njit(cache=True)
def _residual(A, c, Bm, e, has_basis, act, y, x, s, ds, F):
    """x = c + B y, F = A sigma(x) - y + e; returns ||F||_inf / (1 + ||x||_inf)."""
    d, N = A.shape
    for n in range(N):
        acc = c[n]
        if has_basis:
            for j in range(d):
                acc += Bm[n, j] * y[j]
        else:
            acc += y[n]
        x[n] = acc
    _sigma(act, x, s, ds)
    fmax = 0.0
    for i in range(d):
        F[i] = _dot(A[i], s) - y[i] + e[i]
        fmax = max(fmax, abs(F[i]))
    xmax = 0.0
    for n in range(N):
        xmax = max(xmax, abs(x[n]))
    return fmax / (1.0 + xmax)


@njit(cache=True)
def _jacobian(A, Bm, has_basis, ds, J):
    """J = -I + A diag(ds) B (ds = sigma' at the current state)."""
    d, N = A.shape
    if has_basis:
        for i in range(d):
            for j in range(d):
                J[i, j] = 0.0
            for n in range(N):
                a = A[i, n] * ds[n]
                for j in range(d):
                    J[i, j] += a * Bm[n, j]
    else:
        for i in range(d):
            for j in range(d):
                J[i, j] = A[i, j] * ds[j]
    for i in range(d):
        J[i, i] -= 1.0


@njit(cache=True)
def _factor(J, X, piv):
    """LU of J (LAPACK getrf on X = J^T in C order, i.e. J in Fortran order); False if singular."""
    d = J.shape[0]
    for i in range(d):
        for j in range(d):
            v = J[i, j]
            if not np.isfinite(v):
                return False
            X[j, i] = v
    info = _getrf(_KIND, d, d, X.ctypes, d, piv.ctypes)
    if info != 0:
        return False
    for i in range(d):
        if not np.isfinite(X[i, i]):
            return False
    return True


@njit(cache=True)
def _lu_solve(X, piv, b, out):
    """out = J^-1 b from the factors of :func:`_factor` (X[j, i] holds LU(i, j))."""
    d = b.size
    for i in range(d):
        out[i] = b[i]
    for i in range(d):
        p = piv[i] - 1
        if p != i:
            t = out[i]
            out[i] = out[p]
            out[p] = t
    for j in range(d):  # unit lower triangle, column-oriented
        v = out[j]
        if v != 0.0:
            for i in range(j + 1, d):
                out[i] -= X[j, i] * v
    for j in range(d - 1, -1, -1):  # upper triangle
        out[j] /= X[j, j]
        v = out[j]
        if v != 0.0:
            for i in range(j):
                out[i] -= X[j, i] * v


@njit(cache=True)
def _lu_solve_t(X, piv, b, out):
    """out = J^-T b (J^T = U^T L^T P)."""
    d = b.size
    for i in range(d):  # U^T z = b
        out[i] = (b[i] - _dot(X[i, :i], out[:i])) / X[i, i]
    for i in range(d - 1, -1, -1):  # L^T w = z
        out[i] -= _dot(X[i, i + 1 :], out[i + 1 :])
    for i in range(d - 1, -1, -1):
        p = piv[i] - 1
        if p != i:
            t = out[i]
            out[i] = out[p]
            out[p] = t


@njit(cache=True)
def _norm(v):
    acc = 0.0
    for i in range(v.size):
        acc += v[i] * v[i]
    return np.sqrt(acc)


@njit(cache=True)
def _dot(a, b):
    """a . b with four interleaved partial sums (a fixed order: same bits on every run)."""
    n = a.size
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = 0
    while i + 4 <= n:
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        i += 4
    while i < n:
        s0 += a[i] * b[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True)
def _apply_h(X, piv, P, Q, m, b, out):
    """out = H b, H = J0^-1 - sum_{k<m} P_k Q_k^T."""
    _lu_solve(X, piv, b, out)
    for k in range(m):
        t = _dot(Q[k], b)
        for i in range(out.size):
            out[i] -= P[k, i] * t


@njit(cache=True)
def _one_start(A, c, Bm, e, has_basis, act, y, tol, max_iter, div_radius, factor, M, w):
    """Hybrid search from y (overwritten with the final iterate); returns (code, residual, steps, Jacobians).

    ``w`` is a tuple of work arrays (reused across starts, fully re-initialised here).
    """
    (x, s, ds, F, Ft, xt, trial, HF, HFt, D, sN, g, wv, Jgd, step, Jp, u, v, Hu, vH, tmp, J, X,
     piv, P, Q, dst) = w
    d = y.size
    resid = _residual(A, c, Bm, e, has_basis, act, y, x, s, ds, F)
    fnorm = _norm(F)
    jeval = True
    first = True
    fresh = False
    ncsuc = 0
    ncfail = 0
    nslow1 = 0
    nslow2 = 0
    n_iter = 0
    njev = 0
    m = 0
    delta = 0.0
    code = _ACTIVE
    if not np.isfinite(resid):
        code = _DIVERGED
    while code == _ACTIVE:
        if resid <= tol:
            code = _CONVERGED
            break
        if n_iter >= max_iter:
            code = _MAX_ITER
            break
        if jeval:
            _residual(A, c, Bm, e, has_basis, act, y, x, s, ds, tmp)  # ds at y
            _jacobian(A, Bm, has_basis, ds, J)
            njev += 1
            if not _factor(J, X, piv):
                code = _SINGULAR
                break
            _lu_solve(X, piv, F, HF)
            m = 0
            for j in range(d):
                tmp[j] = 0.0
            for i in range(d):
                for j in range(d):
                    tmp[j] += J[i, j] * J[i, j]
            for j in range(d):
                cn = np.sqrt(tmp[j])
                if cn <= 0.0:
                    cn = 1.0
                D[j] = cn if first else max(D[j], cn)
            if first:
                acc = 0.0
                for j in range(d):
                    acc += (D[j] * y[j]) ** 2
                xn = np.sqrt(acc)
                delta = factor * xn if xn > 0.0 else factor
            jeval = False
            fresh = True
        # scaled dogleg: Gauss-Newton point, else along the scaled gradient
        for i in range(d):
            sN[i] = -HF[i]
        acc = 0.0
        for i in range(d):
            acc += (D[i] * sN[i]) ** 2
        nN = np.sqrt(acc)
        if nN <= delta:
            for i in range(d):
                step[i] = sN[i]
                Jp[i] = -F[i]
            pnorm = nN
        else:
            for j in range(d):
                g[j] = 0.0
            for i in range(d):
                fi = F[i]
                for j in range(d):
                    g[j] += J[i, j] * fi
            for j in range(d):
                g[j] /= D[j]
            gn = _norm(g)
            gs = gn if gn > 0.0 else 1.0
            for j in range(d):
                wv[j] = g[j] / gs / D[j]
            for i in range(d):
                Jgd[i] = _dot(J[i], wv)
            JgJg = _dot(Jgd, Jgd)
            sgnorm = gn / JgJg if JgJg > 0.0 else 0.0
            if sgnorm >= delta:  # steepest descent to the boundary
                for i in range(d):
                    step[i] = -delta * (g[i] / gs) / D[i]
                    Jp[i] = -delta * Jgd[i]
                pnorm = delta
            else:  # dogleg between the Cauchy point zC and the Newton point zN
                a = 0.0
                b = 0.0
                cc = 0.0
                for i in range(d):
                    zc = -sgnorm * g[i] / gs
                    dz = D[i] * sN[i] - zc
                    a += dz * dz
                    b += 2.0 * zc * dz
                    cc += zc * zc
                cc -= delta * delta
                tau = 1.0
                if a > 0.0:
                    tau = (-b + np.sqrt(max(b * b - 4.0 * a * cc, 0.0))) / (2.0 * a)
                tau = min(max(tau, 0.0), 1.0)
                acc = 0.0
                for i in range(d):
                    z = tau * D[i] * sN[i] + (1.0 - tau) * (-sgnorm * g[i] / gs)
                    step[i] = z / D[i]
                    Jp[i] = -tau * F[i] - (1.0 - tau) * sgnorm * Jgd[i]
                    acc += z * z
                pnorm = np.sqrt(acc)
        if first:
            delta = min(delta, pnorm)
            first = False
        for i in range(d):
            trial[i] = y[i] + step[i]
        rt = _residual(A, c, Bm, e, has_basis, act, trial, xt, s, dst, Ft)
        finite = np.isfinite(rt)
        fn = _norm(Ft) if finite else np.inf
        actred = 1.0 - (fn / fnorm) ** 2 if fn < fnorm else -1.0
        acc = 0.0
        for i in range(d):
            t = F[i] + Jp[i]
            acc += t * t
        tn = np.sqrt(acc)
        prered = 1.0 - (tn / fnorm) ** 2 if tn < fnorm else 0.0
        ratio = actred / prered if prered > 0.0 else 0.0
        if ratio < 0.1:
            ncsuc = 0
            ncfail += 1
            delta *= 0.5
        else:
            ncfail = 0
            ncsuc += 1
            if ratio >= 0.5 or ncsuc > 1:
                delta = max(delta, pnorm / 0.5)
            if abs(ratio - 1.0) <= 0.1:
                delta = pnorm / 0.5
        acc_step = ratio >= 1e-4 and finite
        if finite:
            _apply_h(X, piv, P, Q, m, Ft, HFt)
        # Broyden factors use the residual before the step
        for i in range(d):
            u[i] = (Ft[i] - F[i]) - Jp[i] if finite else 0.0
        if acc_step:
            for i in range(d):
                y[i] = trial[i]
                F[i] = Ft[i]
            fnorm = fn
            resid = rt
        n_iter += 1
        nslow1 = 0 if actred >= 0.001 else nslow1 + 1
        nslow2 = 0 if actred >= 0.1 else nslow2 + (1 if fresh else 0)
        if acc_step:
            ymax = 0.0
            for i in range(d):
                ymax = max(ymax, abs(y[i]))
            if ymax > div_radius:
                code = _DIVERGED
                break
        acc = 0.0
        for i in range(d):
            acc += (D[i] * y[i]) ** 2
        xn = np.sqrt(acc)
        collapsed = delta <= 1e-15 * max(xn, 1.0)
        if (collapsed or nslow2 >= 5 or nslow1 >= 10) and resid > tol:
            code = _STALLED
            break
        fresh = False
        # Jacobian: re-evaluate after two poor steps, else Broyden update in the scaled norm
        if ncfail >= 2:
            jeval = True
            ncfail = 0
            continue
        if not (finite and pnorm > 0.0):
            continue
        for i in range(d):
            v[i] = D[i] * D[i] * step[i] / (pnorm * pnorm)
        for i in range(d):
            ui = u[i]
            for j in range(d):
                J[i, j] += ui * v[j]
        # H u = H Ft - H F_old - H Jp, with H Jp = step for the model
        for i in range(d):
            Hu[i] = HFt[i] + sN[i] - step[i]
        _lu_solve_t(X, piv, v, vH)
        for k in range(m):
            t = _dot(v, P[k])
            for i in range(d):
                vH[i] -= t * Q[k, i]
        den = 1.0 + _dot(v, Hu)
        if acc_step:
            for i in range(d):
                HF[i] = HFt[i]
        else:
            for i in range(d):
                HF[i] = -sN[i]
        if abs(den) > 1e-12:
            t = _dot(vH, F) / den
            for i in range(d):
                P[m, i] = Hu[i] / den
                Q[m, i] = vH[i]
                HF[i] -= Hu[i] * t
            m += 1
            if m >= M:
                jeval = True
        else:
            jeval = True
    if code == _ACTIVE:
        code = _MAX_ITER
    # stalled close to a root: finish with exact Newton steps
    if (code == _STALLED or code == _MAX_ITER) and resid <= np.sqrt(tol):
        for _ in range(3):
            _residual(A, c, Bm, e, has_basis, act, y, x, s, ds, F)
            _jacobian(A, Bm, has_basis, ds, J)
            njev += 1
            if not _factor(J, X, piv):
                break
            _lu_solve(X, piv, F, step)
            for i in range(d):
                trial[i] = y[i] - step[i]
            rt = _residual(A, c, Bm, e, has_basis, act, trial, xt, s, dst, Ft)
            if not (np.isfinite(rt) and rt < resid):
                break
            for i in range(d):
                y[i] = trial[i]
            resid = rt
            if resid <= tol:
                code = _CONVERGED
                break
    return code, resid, n_iter, njev


@njit(cache=True)
def _work(d, N, M):
    z = np.zeros
    return (z(N), z(N), z(N), z(d), z(d), z(N), z(d), z(d), z(d), z(d), z(d), z(d), z(d),
            z(d), z(d), z(d), z(d), z(d), z(d), z(d), z(d), z((d, d)), z((d, d)),
            np.zeros(d, np.int32), z((M, d)), z((M, d)), z(N))


@njit(cache=True)
def _search(A, c, Bm, e, has_basis, act, net, Y, tol, max_iter, div_radius, factor, M,
                   code, resid, n_iter, njev):
    d, N = A.shape[1], A.shape[2]
    w = _work(d, N, M)
    for k in range(Y.shape[0]):
        b = net[k]
        code[k], resid[k], n_iter[k], njev[k] = _one_start(
            A[b], c[b], Bm[b], e[b], has_basis, act, Y[k], tol, max_iter, div_radius, factor, M, w
        )


def hybrid_search(A, c, basis, e, activation, net, y0, *, tol, max_iter, divergence_radius,
                  factor=100.0, n_updates=None):
    """Powell hybrid search from every start (compiled; see module docstring).

    Parameters
    ----------
    A : array, shape (B, d, N)
    c : array, shape (B, N) or None (zero)
    basis : array, shape (B, N, d) or None (identity, d = N)
    e : array, shape (B, d) or None (zero)
    activation : str
        A key of :data:`ACTIVATION_CODES`.
    net : int array, shape (K,)
        Network of each start.
    y0 : array, shape (K, d)
        Starts.
    tol, max_iter, divergence_radius, factor
        As :func:`koopnet._equilibria_newton.powell_hybrid`.
    n_updates : int, optional
        Broyden updates before the exact Jacobian is re-evaluated (default max(16, d // 2)).

    Returns
    -------
    y : array (K, d); code : int8 array (K,); residual : array (K,); n_iter, n_jacobians : int arrays (K,)
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    B, d, N = A.shape
    c = np.zeros((B, N)) if c is None else np.ascontiguousarray(c, dtype=np.float64)
    has_basis = basis is not None
    Bm = (np.zeros((B, 1, 1)) if basis is None
          else np.ascontiguousarray(basis, dtype=np.float64))
    e = np.zeros((B, d)) if e is None else np.ascontiguousarray(e, dtype=np.float64)
    M = int(max(16, d // 2)) if n_updates is None else int(n_updates)
    Y = np.array(y0, dtype=np.float64, order="C", copy=True).reshape(-1, d)
    K = Y.shape[0]
    code = np.zeros(K, np.int8)
    resid = np.zeros(K)
    n_iter = np.zeros(K, np.int64)
    njev = np.zeros(K, np.int64)
    _search(A, c, Bm, e, has_basis, ACTIVATION_CODES[activation], np.asarray(net, np.int64), Y,
       float(tol), int(max_iter), float(divergence_radius), float(factor), M,
       code, resid, n_iter, njev)
    return Y, code, resid, n_iter, njev
