"""Tipping continuation at O(N^2) per step away from bifurcations.

Private helper of :mod:`koopnet.resilience`. The reference
(:func:`koopnet._resilience_continuation.continue_to_tipping`) follows a stable equilibrium
of f(x) + delta 1 = 0 in delta with an LU per Newton iteration, a Cholesky certificate per
accepted point and ``eigvals`` wherever that fails (reactive states, every point of the
bisection of a fold or Hopf bracket). Here one branch (one equilibrium, one direction) is
followed with the same steps, the same acceptance test and the same bisection (of a Hopf
bracket excepted, below), but

* **chord Newton on one LU kept across steps**: the LU of J(x) = -I + W diag(sigma'(x)) at a
  reference state serves every corrector iteration (two triangular solves, O(N^2)) and the
  tangent predictor dx/ddelta = -J^-1 1 (iterative refinement with the same factors and a
  product with the current J). It is refreshed (at the predicted state) when an iteration
  contracts the residual by less than ``_SLOW``, at most ``_REFRESHES`` times per attempt
  (then the attempt is rejected, as a Newton failure is in the reference);
* **stability of accepted points, mostly in O(N)**, from the strongest test that decides:

  1. an upper bound r of lambda_max((J + J^T) / 2) (P = I), carried by Weyl's inequality
     (a move of the state raises it by at most min(||W||_2 max|d sigma'|,
     ||W diag(d sigma')||_F)) and re-banked by a shifted Cholesky test (N^3 / 3) or
     ``eigvalsh``; r < 0 certifies stability;
  2. sign(det J), read in O(N) from an LU at the point: a stable real matrix has
     sign det J = (-1)^N, so the other sign proves a real eigenvalue in the right half plane
     (exact; the LU is refreshed at the point only where this or 3 needs it);
  3. an **inertia certificate** (Ostrowski-Schneider): with A = J_ref + beta I and
     A^T H + H A = -I solved at a reference point whose spectrum is known (real Schur form,
     ``dtrsyl``), H has exactly k negative eigenvalues (checked by ``eigvalsh``); for a later
     J = -I + W D, Q(D) = -(A^T H + H A) = 2 (1 - beta) H - G D - (G D)^T (G = H W) positive
     definite proves that J has exactly k eigenvalues with Re > -beta. k = 0 (beta = 0) is a
     Lyapunov certificate of stability; k = 1 (beta between |lambda_1| and the gap to the
     rest of the spectrum) makes the one eigenvalue near 0 real, so sign det J decides
     stability exactly, all the way into a fold. Q is tested as
     :class:`koopnet._resilience_removal._Lyapunov` tests its Q (an O(N) Weyl drift test
     from a banked Cholesky bound, else a shifted Cholesky test). For k >= 1 the group may hold one real eigenvalue (sign det J decides it) and complex
     pairs, each computed by shifted inverse iteration (one complex LU) to a residual at
     round-off level, as ``eigvals`` computes it;
  4. only where none decides: the eigenvalues (``eigvals``; a real Schur form, whose
     spectrum decides and which yields the next inertia certificate, where one is likely to
     pay: a separated leading group in a bracket bisection, or eigenvalues needed again and
     again; a certificate that certified fewer than ``_PAYS`` states makes the next Schur
     form wait for 1, 2, 4, ... ``eigvals`` decisions, as near a crowded spectral edge,
     where each holds only briefly).

  No decision rests on a bound that could be wrong: every certificate is sufficient, every
  test that fails decides nothing, and the last resort is the reference's ``eigvals``;
* **a Hopf point** (a step ends on a state whose leading eigenvalues are a complex pair
  right of the axis, by eigenvalues): the crossing of that pair is located by regula falsi
  (Illinois) on its real part, tracked by inverse iteration (a complex LU per point) instead
  of a bisection with ``eigvals`` at every point, to a bracket shorter than 2 ``tol``; its
  lower end is then verified stable, led by the tracked pair, by ``eigvals`` (else the
  reference's bisection takes over). Like the reference's bisection this samples the
  branch: a loss of stability that occurs and reverses between samples is seen by neither;
* **the start's spectrum is known** (the equilibria stage's ``jacobian_eigenvalues``);
* **the end**: the leading eigenvalue of the last accepted point (when not known) and, at a
  real crossing, the left null vector that separates a fold from a branch point, by inverse
  iteration with the LU at that point (O(N^2) per iteration; ``eig`` where it does not
  converge): the O(N^3) work per branch is a handful of LUs, one Schur form per bracket
  bisection that needs it, and ``eigvals`` at states no certificate reaches.

Results equal the reference's within the bracket tolerance: the same step rules, so the same
statuses, and the shift to a few ``tol`` (a corrector by chord iterations accepts or rejects
a step near a fold at a slightly different distance than exact Newton).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lu_factor, lu_solve, schur
from scipy.linalg.lapack import dgetrs

from ._linalg import lu_det_sign, lyapunov_from_schur
from ._resilience_continuation import TippingStatus, _BRANCH_TOL, _cholesky_ok
from ._resilience_removal import _Lyapunov
from .activations import Activation

__all__ = ["tip_branch", "COUNTS"]

#: a chord iteration shrinking max|F| by less than this factor refreshes the LU
_SLOW = 0.5
#: LU refreshes per continuation attempt (the first at the predicted state)
_REFRESHES = 2
#: chord iterations per attempt
_CHORD_ITER = 40
#: relative residual of the tangent's iterative refinement
_TANGENT_RTOL = 1e-12
#: an inertia certificate that certified fewer states than this (its own point included) did
#: not pay for its Schur form and Lyapunov solve (about 2 ``eigvals`` at N = 1000)
_PAYS = 5
#: steps longer than this fraction of max_step fall back to exact Newton where the chord fails
_EXACT_NEWTON_STEP = 1e-2
#: operation counts of the last calls (benchmarks and tests read them)
COUNTS: dict[str, int] = {}


#: a list to record the attempts, operations and certificates of the next calls (diagnosis)
TRACE: list | None = None


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1
    if TRACE is not None:
        TRACE.append(name)


class _Factor:
    """LU of J(x) = -I + W diag(sigma'(x)) at a reference state x_ref."""

    def __init__(self, W: np.ndarray, act: Activation):
        self.W, self.act = W, act
        self.x_ref = None

    def jacobian(self, x):
        J = self.W * self.act.dsigma(x)[None, :]
        J.flat[:: J.shape[0] + 1] -= 1.0
        return J

    def refresh(self, x):
        _count("lu")
        self.x_ref = x.copy()
        J = self.jacobian(x)
        f = lu_det_sign(J)
        self.ok = f is not None
        self.det_sign = 0
        if self.ok:
            self.lu, self.piv, self.det_sign = f
        return self.ok

    def is_at(self, x):
        return self.x_ref is not None and np.array_equal(self.x_ref, x)

    def solve(self, b, trans=0):
        y, _ = dgetrs(self.lu, self.piv, b, trans=trans)
        return y


def _chord(fac, field, x_pred, tol):
    """Chord Newton from x_pred: (converged, x, ratio): ratio is max|F| over its previous value
    at the iteration that stopped it (0 if converged)."""
    xn = x_pred.copy()
    F = field(xn)
    res = np.max(np.abs(F))
    for _ in range(_CHORD_ITER):
        if res < tol:
            return True, xn, 0.0
        xn = xn - fac.solve(F)
        F = field(xn)
        res_new = np.max(np.abs(F))
        if not res_new <= _SLOW * res:
            return False, xn, res_new / res if res > 0 else np.inf
        res = res_new
    return bool(res < tol), xn, 0.0


class _Inertia(_Lyapunov):
    """H with A^T H + H A = -I, A = J_ref + beta I, tested on later J = -I + W D.

    ``certifies(d)`` (inherited) proves Q(D) = 2 (1 - beta) H - G D - (G D)^T positive definite
    (never a false pass; a fail decides nothing); then J has exactly ``k`` eigenvalues with
    real part > -beta (the inertia of H, checked exactly). Built from the real Schur form
    J_ref = Z T Z^T, so the spectrum it needs is a by-product.
    """

    def __init__(self, W: np.ndarray, d: np.ndarray, T: np.ndarray, Z: np.ndarray,
                 beta: float, k: int):
        N = d.size
        self.ok = False
        self.k, self.beta = k, beta
        eps = np.finfo(float).eps
        H = lyapunov_from_schur(T, Z, beta)
        if H is None:
            return
        ev = np.linalg.eigvalsh(H)  # its inertia, exactly: every eigenvalue clear of round-off
        if not np.all(np.abs(ev) > 8.0 * N * eps * np.max(np.abs(ev))):
            return
        if int(np.count_nonzero(ev < 0)) != k:
            return
        self.eps = 8.0 * N * eps
        self.P = (1.0 - beta) * H  # so that the inherited Q = 2 P - G D - (G D)^T
        self.G = H @ W
        self.g_err = 2.0 * N * eps * np.linalg.norm(H) * np.linalg.norm(W)
        self.col = np.linalg.norm(self.G, axis=0)
        self.bank, self.d_ref = 0.0, None
        self.uses = 0
        self.ok = True


def _leading(ev):
    return ev[np.argmax(ev.real)]


#: at most this many leading eigenvalues are separated from the rest by a certificate
_MAX_LEADING = 5
#: the rest must lie this many times farther left than the leading group
_GAP_RATIO = 4.0


def _split(ev):
    """The leading group a certificate can separate from the rest of the spectrum ev.

    Returns (k, n_real, pairs): the k eigenvalues of largest real part, all in the left half
    plane, with at most one real one (n_real; its sign is then sign(det J)'s) and complete
    conjugate pairs (pairs: one of each, Im > 0), the rest more than ``_GAP_RATIO`` times as
    far left of the axis; k = 0 when there is no such group.
    """
    order = np.argsort(-ev.real, kind="stable")
    e = ev[order]
    if e.size == 0 or not e[0].real < 0:
        return 0, 0, []
    for k in range(1, min(_MAX_LEADING, e.size - 1) + 1):
        lead = e[:k]
        n_real = int(np.count_nonzero(lead.imag == 0))
        if n_real > 1:
            break
        if np.count_nonzero(lead.imag > 0) != np.count_nonzero(lead.imag < 0):
            continue  # a pair split across the boundary
        if -e[k].real > _GAP_RATIO * -e[k - 1].real:
            return k, n_real, [complex(z) for z in lead if z.imag > 0]
    return 0, 0, []


def _inertia_from_schur(W, d, T, Z, ev):
    """The inertia certificate suited to a point with spectrum ev (None if none is): for a
    separated leading group (:func:`_split`: a real eigenvalue, a complex pair or a few, where
    a fold, branch or Hopf point may lie ahead) beta between the group and the rest, so that
    the certificate holds up to the crossing; else k = 0 (a Lyapunov certificate)."""
    k, n_real, pairs = _split(ev)
    if k == 0 and not np.max(ev.real) < 0:
        return None
    if k:
        e = np.sort(-ev.real)  # distances to the axis, ascending
        a, gap = e[k - 1], e[k]
        # beta a quarter into the gap: the Lyapunov operator's eigenvalues lambda_i + lambda_j
        # + 2 beta then stay >= (gap - 3 a) / 2 away from 0 (at the midpoint the equation
        # would be singular: lambda_k + beta = -(lambda_{k+1} + beta))
        beta = a + 0.25 * (min(gap, 1.0 + a) - a)
        cert = _Inertia(W, d, T, Z, beta, k)
    else:
        n_real, pairs = 0, []
        cert = _Inertia(W, d, T, Z, 0.0, 0)
    cert.n_real, cert.sigmas = n_real, pairs
    return cert if cert.ok and cert.certifies(d) else None


def _eig_near(J, sigma, tol):
    """The eigenvalue of J nearest sigma by shifted inverse iteration (one complex LU), if it
    converges (residual ||J u - lambda u|| < tol, |u| = 1) to a non-real eigenvalue; returned
    with Im > 0. Else None."""
    N = J.shape[0]
    _count("complex_lu")
    A = J.astype(complex)
    A.flat[:: N + 1] -= sigma
    lu = lu_factor(A, check_finite=False)
    if not np.all(np.isfinite(lu[0])) or np.any(np.diag(lu[0]) == 0):
        return None
    u = (np.ones(N) + 1j * np.cos(np.arange(N))) / np.sqrt(2.0 * N)
    for _ in range(30):
        y = lu_solve(lu, u, check_finite=False)
        ny = np.linalg.norm(y)
        if not np.isfinite(ny) or ny == 0:
            return None
        u = y / ny
        Ju = J @ u
        lam = np.vdot(u, Ju)
        if np.linalg.norm(Ju - lam * u) < tol:
            if abs(lam.imag) > 1e3 * tol:
                return complex(lam.real, abs(lam.imag))
            return None
    return None


def _leading_pair(J, sigma, beta, tol):
    """:func:`_eig_near` with real part > -beta / 2, else None. Under a certificate that
    exactly k eigenvalues have real part > -beta, it and its conjugate are two of those."""
    lam = _eig_near(J, sigma, tol)
    return lam if lam is not None and lam.real > -0.5 * beta else None


def _inverse_iteration(fac, N, trans, tol=1e-12, max_iter=60):
    """Eigenvector of the smallest-modulus eigenvalue of J (trans=1: of J^T) with the LU."""
    u = np.ones(N) / np.sqrt(N) + 1e-3 * np.cos(np.arange(N))
    u /= np.linalg.norm(u)
    for _ in range(max_iter):
        y = fac.solve(u, trans=trans)
        ny = np.linalg.norm(y)
        if not np.isfinite(ny) or ny == 0:
            return None
        y /= ny
        if y @ u < 0:
            y = -y
        if np.linalg.norm(y - u) < tol:
            return y
        u = y
    return None


def tip_branch(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    x0: np.ndarray,
    direction: float,
    *,
    lead0: complex | None = None,
    reactivity: float = np.inf,
    w_norm: float | None = None,
    max_shift: float = 10.0,
    initial_step: float = 0.05,
    max_step: float = 0.5,
    tol: float = 1e-9,
    max_iter: int = 300,
    newton_tol: float = 1e-10,
    newton_max_iter: int = 8,
    bifurcation_eig_tol: float = 1e-2,
    shared: dict | None = None,
) -> tuple[float, int, np.ndarray]:
    """Continue one stable equilibrium in a uniform input shift until it tips.

    Parameters
    ----------
    W : array, shape (N, N)
    theta : array, shape (N,)
    act : Activation
    x0 : array, shape (N,)
        Equilibrium at delta = 0.
    direction : float
        +1 (shift up) or -1 (shift down).
    lead0 : complex, optional
        Eigenvalue of J(x0) of largest real part, if known (else computed).
    reactivity : float
        lambda_max((J(x0) + J(x0)^T) / 2) if known (1/time), else inf.
    w_norm : float, optional
        ||W||_2 (computed if not given).
    max_shift, initial_step, max_step, tol, max_iter, newton_tol, bifurcation_eig_tol
        As :func:`koopnet._resilience_continuation.continue_branches` (units of theta).
    newton_max_iter : int
        Iterations of the exact Newton corrector that takes over where the chord fails on a
        step longer than ``_EXACT_NEWTON_STEP * max_step``.
    shared : dict, optional
        One dict per equilibrium, passed to both its directions: the inertia certificate of
        the start (a real Schur form of J(x0)) is built once, when a reactive state first
        needs it.

    Returns
    -------
    shift : float
        Signed delta of the bifurcation; NaN unless the status is fold or hopf.
    status : int
        :class:`TippingStatus` code.
    x_last : array, shape (N,)
        Last accepted (stable) equilibrium.
    """
    N = x0.size
    W = np.asarray(W, dtype=float)
    if w_norm is None:
        w_norm = float(np.linalg.norm(W, 2))
    col_w = np.linalg.norm(W, axis=0)  # ||W e_i||: the Frobenius form of the Weyl bound
    dvec = np.full(N, float(direction))
    stable_sign = (-1) ** N  # sign det J of every stable real N x N matrix
    eps = 8.0 * N * np.finfo(float).eps
    x = np.array(x0, dtype=float)
    d_x = act.dsigma(x)
    fac = _Factor(W, act)
    nan = (np.nan, int(TippingStatus.not_stable), x)

    def field(xv, p):
        return -xv + W @ act.sigma(xv) + theta + direction * p

    def jmul(dx, v):
        return -v + W @ (dx * v)

    def tangent(xv):
        """(ok, v) with J(xv) v = -dvec, by refinement with the current LU."""
        dx = act.dsigma(xv)
        v = fac.solve(-dvec)
        nd = np.linalg.norm(dvec)
        prev = np.inf
        for _ in range(50):
            r = -dvec - jmul(dx, v)
            nr = np.linalg.norm(r)
            if not np.isfinite(nr):
                break
            if nr <= _TANGENT_RTOL * nd * (1.0 + np.linalg.norm(v)):
                return True, v
            if not nr <= 0.5 * prev:
                break
            prev = nr
            v = v + fac.solve(r)
        if fac.is_at(xv):
            return bool(np.all(np.isfinite(v))), v
        if not fac.refresh(xv):
            return False, v
        v = fac.solve(-dvec)
        return bool(np.all(np.isfinite(v))), v

    with np.errstate(all="ignore"):
        if not fac.refresh(x):
            return nan
        if lead0 is None:
            _count("eigvals")
            lead0 = _leading(np.linalg.eigvals(fac.jacobian(x)))
        if not np.real(lead0) < 0:
            return nan
        ok, v = tangent(x)
        if not ok:
            return nan
        # stability state of the last accepted point
        lead = complex(lead0)  # its leading eigenvalue, or None (certified, value unknown)
        k1 = False  # certified with one real eigenvalue in its leading group (sign from det J)
        r_ub = float(reactivity) if np.isfinite(reactivity) else np.inf
        bank = -0.5 * r_ub if r_ub < 0 else 0.0
        cert: _Inertia | None = None
        eig_decisions = 0  # eigenvalue decisions since the last inertia certificate
        wait = [0]  # extra eigenvalue decisions before the next Schur form (certificates that
        # did not pay: near a Hopf point, where each certifies only a few states)
        separated = [True]  # the last spectrum's leading eigenvalue (or pair) is separated
        # a reactive state makes eigvalsh wait: [decisions left, current wait]
        sym_skip = [0, 0] if r_ub < 0 or not np.isfinite(r_ub) else [1, 1]

        def by_certificate(xp, J):
            """(stable?, leading pair or None, real?) of J(xp) under the current certificate
            (exactly k eigenvalues right of -beta: at most one real, whose sign is sign(det J)'s,
            and complex pairs, each computed by inverse iteration), or None."""
            if cert.k == 0:  # Lyapunov: stable
                return True, None, False
            pairs = []
            if cert.sigmas:
                J = fac.jacobian(xp) if J is None else J
                for sg in cert.sigmas:
                    lam = _leading_pair(J, sg, cert.beta, 1e-12 * (1.0 + w_norm))
                    if lam is None:
                        return None
                    pairs.append(lam)
                if len(pairs) > 1:  # distinct pairs, or the count is not proven
                    z = np.array(pairs)
                    dist = np.abs(z[:, None] - z[None, :]) + np.eye(z.size)
                    if not np.min(dist) > 1e-6:
                        return None
                cert.sigmas = pairs
            stable = all(lam.real < 0 for lam in pairs)
            if cert.n_real and stable:
                if not fac.is_at(xp):
                    fac.refresh(xp)
                stable = fac.ok and fac.det_sign == stable_sign
            lead_pair = max(pairs, key=lambda z: z.real) if pairs else None
            return bool(stable), lead_pair, bool(cert.n_real)

        def decide(xp, dn, bisecting):
            """(stable?, leading eigenvalue or None, k1?) of J(xp); k1: certified by a k = 1
            certificate (its leading eigenvalue is real)."""
            nonlocal r_ub, bank, cert, eig_decisions
            dd = dn - d_x
            growth = min(w_norm * np.max(np.abs(dd)), np.sqrt(np.sum((col_w * dd) ** 2)))
            r_new = r_ub + growth
            if r_new < 0:  # 1. P = I, O(N)
                r_ub = r_new
                return True, None, False
            r_ub = np.inf
            J = None
            if cert is not None and cert.certifies(dn, cholesky=False):  # 3., O(N)
                out = by_certificate(xp, J)
                if out is not None:
                    return out
            if bank > 0:  # 1. re-banked: one Cholesky factorisation
                _count("cholesky")
                J = fac.jacobian(xp)
                T = -0.5 * (J + J.T)
                T.flat[:: N + 1] -= bank + eps * np.max(np.abs(J))
                if _cholesky_ok(T):
                    r_ub = -bank
                    return True, None, False
            if sym_skip[0] > 0:  # recently reactive: eigvalsh waits (1, 2, 4, ... decisions)
                sym_skip[0] -= 1
            else:
                _count("eigvalsh")
                J = fac.jacobian(xp) if J is None else J
                react = np.linalg.eigvalsh(0.5 * (J + J.T))[-1]
                if react < 0:
                    r_ub, bank = react, -0.5 * react
                    sym_skip[1] = 0
                    return True, None, False
                bank = 0.0
                sym_skip[1] = max(1, 2 * sym_skip[1])
                sym_skip[0] = sym_skip[1]
            if cert is None and not bisecting and shared is not None:
                # the start's certificate, built once per equilibrium for both directions
                if "start" not in shared:
                    _count("schur")
                    xs = np.asarray(x0, dtype=float)
                    T0, Z0 = schur(fac.jacobian(xs), output="real", check_finite=False)
                    _count("inertia")
                    shared["start"] = _inertia_from_schur(W, act.dsigma(xs), T0, Z0,
                                                          _schur_eigenvalues(T0))
                cert = shared["start"]
                if cert is not None:
                    cert.bank, cert.d_ref = 0.0, None  # its bank belonged to the other direction
            if cert is not None:  # 3. with a Cholesky test
                _count("cholesky")
                if cert.certifies(dn):
                    out = by_certificate(xp, J)
                    if out is not None:
                        return out
            # 2. sign(det J): exact proof of a real unstable eigenvalue, worth an LU where such
            # states are likely (in a bracket bisection: across a fold or branch point) or free
            if bisecting or fac.is_at(xp):
                if not fac.is_at(xp):
                    fac.refresh(xp)
                if not fac.ok or fac.det_sign != stable_sign:
                    return False, None, False
            # 4. the eigenvalues: from a real Schur form, which also yields the next inertia
            # certificate, where one is likely to pay (a separated leading eigenvalue or pair
            # in a bracket bisection: a fold, branch or Hopf point ahead; or eigenvalues
            # needed again and again), else eigvals
            J = fac.jacobian(xp) if J is None else J
            eig_decisions += 1
            if (bisecting and separated[0] and eig_decisions > wait[0]) or (
                    eig_decisions >= 3 + wait[0]):
                _count("schur")
                T, Z = schur(J, output="real", check_finite=False)
                ev = _schur_eigenvalues(T)
                lam = _leading(ev)
                new = None
                if lam.real < 0:
                    _count("inertia")
                    new = _inertia_from_schur(W, dn, T, Z, ev)
                    if TRACE is not None:
                        o = np.argsort(-ev.real)
                        TRACE.append(("cert", None if new is None else (new.k, new.beta), ev[o[:3]]))
                # a Schur form and certificate cost about 2 eigvals: one that certified fewer
                # than _PAYS states (or none was built) makes the next wait for 1, 2, 4, ...
                # eigvals decisions (crowded spectra near the axis, where each holds briefly)
                if TRACE is not None and cert is not None:
                    TRACE.append(("paid", cert.k, cert.uses))
                if new is None or (cert is not None and cert.uses < _PAYS):
                    wait[0] = max(1, 2 * wait[0])
                elif cert is not None:
                    wait[0] = 0
                if new is not None:
                    cert = new
                eig_decisions = 0
            else:
                _count("eigvals")
                ev = np.linalg.eigvals(J)
                lam = _leading(ev)
            separated[0] = _split(ev)[0] > 0
            return bool(lam.real < 0), complex(lam), False

        def corrector(x_pred, p_t):
            """Chord Newton at delta = direction * p_t from x_pred: (converged, x)."""
            refreshes = 0
            fxp = lambda xv: field(xv, p_t)  # noqa: E731
            while True:
                conv, xp, ratio = (_chord(fac, fxp, x_pred, newton_tol) if fac.ok
                                   else (False, x_pred, 0.0))
                # a stale LU that contracts slowly is refreshed at the predicted state (the
                # reference's first Newton Jacobian), then at the chord's last iterate; an
                # iteration that does not contract at all (beyond a fold: no solution) is
                # left alone after the first refresh
                if conv:
                    return conv, xp
                if refreshes >= _REFRESHES or (refreshes and not ratio < 1.0):
                    break
                refreshes += 1
                if not fac.refresh(x_pred if refreshes == 1 else xp):
                    return False, xp
            if not exact_newton[0]:
                return False, xp
            # the reference's corrector: Newton with a fresh LU per iteration from x_pred
            xn = x_pred.copy()
            for _ in range(newton_max_iter):
                F = fxp(xn)
                if np.max(np.abs(F)) < newton_tol:
                    return True, xn
                if not fac.refresh(xn):
                    return False, xn
                xn = xn - fac.solve(F)
            return bool(np.max(np.abs(fxp(xn))) < newton_tol), xn

        res_tol = 1e-12 * (1.0 + w_norm)  # eigenpair residual of inverse iteration
        exact_newton = [True]

        def locate_hopf(p_lo, x_lo, v_lo, p_hi, lam_hi):
            """A complex pair found right of the axis at p_hi (x at p_lo stable): the crossing
            of that pair, by regula falsi (Illinois) on its real part, tracked by inverse
            iteration (a complex LU per point) instead of a bisection with ``eigvals`` at
            every point; the lower end is then verified stable by ``eigvals``. Returns
            (p_lo, x_lo, p_hi, lead at x_lo) with p_hi - p_lo < 2 tol, or None (the caller
            goes on as the reference would)."""
            lam_lo = _eig_near(fac.jacobian(x_lo), lam_hi, res_tol)
            if lam_lo is None or not lam_lo.real < 0:
                return None
            g_lo, g_hi, side = lam_lo.real, lam_hi.real, 0
            for _ in range(60):
                w = p_hi - p_lo
                if w < 2.0 * tol:
                    break
                pm = p_lo + w * g_lo / (g_lo - g_hi)
                pm = min(max(pm, p_lo + 0.25 * tol), p_hi - 0.25 * tol)
                conv, xm = corrector(x_lo + (pm - p_lo) * v_lo, pm)
                if not conv:
                    return None
                t = (pm - p_lo) / w
                lam_m = _eig_near(fac.jacobian(xm), (1 - t) * lam_lo + t * lam_hi, res_tol)
                if lam_m is None:
                    return None
                if lam_m.real < 0:
                    ok, vm = tangent(xm)
                    if not ok:
                        return None
                    p_lo, x_lo, v_lo, lam_lo, g_lo = pm, xm, vm, lam_m, lam_m.real
                    if side == -1:
                        g_hi *= 0.5
                    side = -1
                else:
                    p_hi, lam_hi, g_hi = pm, lam_m, lam_m.real
                    if side == 1:
                        g_lo *= 0.5
                    side = 1
            else:
                return None
            _count("eigvals")  # the lower end, verified: stable, led by the tracked pair
            ev = np.linalg.eigvals(fac.jacobian(x_lo))
            lead_v = complex(_leading(ev))
            if not (lead_v.real < 0 and abs(lead_v - lam_lo) < 1e-6 * (1.0 + abs(lam_lo))):
                return None
            return p_lo, x_lo, p_hi, lead_v

        def classify(x, p, step, lead, k1):
            """Status and shift of a branch whose bracket [p, p + 2 step] is closed."""
            psi = None
            if k1:  # a certified real eigenvalue right of -beta: by inverse iteration
                if not fac.is_at(x):
                    fac.refresh(x)
                u = _inverse_iteration(fac, N, 0)
                psi = _inverse_iteration(fac, N, 1)
                mu = None
                if u is not None and psi is not None and abs(psi @ u) > 0:
                    J = fac.jacobian(x)
                    mu = float((psi @ (J @ u)) / (psi @ u))
                    if not np.linalg.norm(J @ u - mu * u) < 1e-8 * (1.0 + w_norm):
                        mu = None
                if mu is None:
                    psi, lead = None, None
                elif lead is None or mu > lead.real:
                    lead = complex(mu)
                else:
                    psi = None
            if lead is None:
                _count("eigvals")
                lead = complex(_leading(np.linalg.eigvals(fac.jacobian(x))))
            near = abs(lead.real) < bifurcation_eig_tol
            if not near:
                return np.nan, int(TippingStatus.continuation_failed), x
            if abs(lead.imag) > bifurcation_eig_tol:
                return direction * (p + step), int(TippingStatus.hopf), x
            if psi is None and abs(lead.imag) == 0 and lead.real < 0:
                if not fac.is_at(x):
                    fac.refresh(x)
                psi = _inverse_iteration(fac, N, 1)
                if psi is not None:  # check: the smallest-modulus left vector is lead's
                    res = fac.jacobian(x).T @ psi - lead.real * psi
                    if not np.linalg.norm(res) < 1e-8 * (1.0 + w_norm):
                        psi = None
            if psi is None:
                _count("eig")
                ev, vec = np.linalg.eig(fac.jacobian(x).T)
                psi = vec[:, np.argmax(ev.real)]
            seen = abs(np.sum(psi * dvec)) / (np.linalg.norm(psi) * np.linalg.norm(dvec))
            st = TippingStatus.branch_point if seen < _BRANCH_TOL else TippingStatus.fold
            return direction * (p + step), int(st), x

        p = 0.0
        step = float(initial_step)
        rejected_before = False
        ever_rejected = False
        hopf_tried = False
        for _ in range(max_iter):
            p_try = p + step
            at_end = p_try >= max_shift
            if at_end:
                p_try = max_shift
            x_pred = x + (p_try - p) * v
            # where the chord fails on a long step, exact Newton (the reference's corrector)
            # decides: a wrong rejection there would change which states are sampled; deep in
            # a bracket bisection failures are genuine (beyond a fold) and it would cost
            # newton_max_iter LUs each
            exact_newton[0] = step > _EXACT_NEWTON_STEP * max_step
            conv, xp = corrector(x_pred, p_try)
            accept = False
            lead_new = None
            if TRACE is not None:
                TRACE.append(("try", p_try, step, conv))
            if conv:
                corr = np.max(np.abs(xp - x_pred))
                move = np.max(np.abs(x_pred - x))
                small = corr <= 0.5 * move + 1e-9 * (1.0 + np.max(np.abs(x)))
                if small:
                    ok, vn = tangent(xp)
                    if ok:
                        dn = act.dsigma(xp)
                        stable, lead_new, k1_new = decide(xp, dn, ever_rejected)
                        accept = stable
            if accept:
                x, p, v, d_x = xp, p_try, vn, dn
                lead, k1 = lead_new, k1_new
                if not rejected_before:
                    step = min(step * 1.5, max_step)
                if at_end:
                    return np.nan, int(TippingStatus.no_fold_in_range), x
                rejected_before = False
                continue
            if (lead_new is not None and lead_new.real >= 0
                    and abs(lead_new.imag) > bifurcation_eig_tol and not hopf_tried):
                # stability lost to a complex pair between p and p_try: locate its crossing
                hopf_tried = True
                found = locate_hopf(p, x, v, p_try, complex(lead_new.real, abs(lead_new.imag)))
                if found is not None:
                    p_lo, x_lo, p_hi, lead_lo = found
                    return classify(x_lo, p_lo, 0.5 * (p_hi - p_lo), lead_lo, False)
            step *= 0.5
            rejected_before = ever_rejected = True
            if step >= tol:
                continue
            return classify(x, p, step, lead, k1)
    return np.nan, int(TippingStatus.continuation_failed), x


def _schur_eigenvalues(T: np.ndarray) -> np.ndarray:
    """Eigenvalues of a real quasi-triangular Schur factor (1x1 and 2x2 diagonal blocks)."""
    N = T.shape[0]
    ev = np.empty(N, dtype=complex)
    i = 0
    while i < N:
        if i + 1 < N and T[i + 1, i] != 0.0:
            a, b, c, dd = T[i, i], T[i, i + 1], T[i + 1, i], T[i + 1, i + 1]
            mid, det = 0.5 * (a + dd), a * dd - b * c
            disc = mid * mid - det
            root = np.sqrt(complex(disc))
            ev[i], ev[i + 1] = mid + root, mid - root
            i += 2
        else:
            ev[i] = T[i, i]
            i += 1
    return ev
