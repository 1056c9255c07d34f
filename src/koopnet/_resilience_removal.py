"""Structural robustness by sequential unit removal at O(N^2) per removal.

Private helper of :mod:`koopnet.resilience`. The reference
(:func:`koopnet._resilience_continuation.continue_unit_removal`) continues the state through
each removal with a fresh Jacobian, a Newton solve per iteration and a full ``eigvals`` per
accepted point: O(N^3) per removal, O(N^4) per order. Here one removal sequence (one stable
equilibrium, one random order) is followed with

* **units switched off, not deleted**: removing unit j zeroes column j of W; the unit keeps
  its own (now irrelevant) state, so the Jacobian of the full system is block triangular,
  [[J_kept, 0], [*, -I]], with the spectrum of the kept network plus -1. Removing a unit is
  then a rank-1 change of the Jacobian (its column becomes -e_j);
* **chord Newton with Woodbury updates**: one LU of the Jacobian at a reference state
  (O(N^3)), each removal adding a column to a Woodbury correction (O(N^2)), every Newton
  iteration one pair of triangular solves (O(N^2)). The LU is refreshed at the current state
  when the chord iteration contracts slowly or the correction holds ``_MAX_RANK`` columns;
* **stability of every accepted state, mostly in O(N)**: an upper bound r of the largest
  eigenvalue of the symmetric part of the kept Jacobian is carried along (a removal cannot
  raise it, Cauchy interlacing; a move of the state raises it by at most
  ||W_kept||_2 max|delta sigma'|, Weyl). While r < 0 the state is certified stable; when it
  is not, a Cholesky test of the symmetric part shifted by half the last exact margin
  (O(N^3 / 3)) re-banks it, else ``eigvalsh`` gives it exactly, and only where that is not
  negative (a reactive state) does a **Lyapunov certificate** take over (below), and only
  where that fails are the eigenvalues computed, as in the reference
  (:func:`koopnet._resilience_continuation.certified_stable` is the P = I case);
* **Lyapunov certificates for reactive states**: J is stable if some P > 0 makes
  Q = -(J^T P + P J) positive definite (Lyapunov). P solves J_0^T P + P J_0 = -I at a
  reference state (O(N^3) once, checked positive definite); with G = P W precomputed, every
  later Jacobian J = -I + W D (D = diag(sigma'(x)) on the kept units, 0 on removed ones: the
  switched-off system, whose spectrum is the kept network's plus -1) has
  Q(D) = 2 P - G D - (G D)^T, formed in O(N^2). A Cholesky factorisation of Q(D) - c I
  (N^3 / 3, shift covering its round-off) certifies it and banks the lower bound c of
  lambda_min(Q); until the next one, lambda_min(Q(D')) >= c - 2 ||G (D' - D)||_F (Weyl),
  an O(N) test with the column norms of G. A fail decides nothing: a new P at the current
  state, then ``eigvals``, decide (near a stability boundary, where each P certifies only a
  few states, new solves back off: 1, 2, 4, ... ``eigvals`` decisions between them);
* **contraction certificate**: once ||W_kept||_2 Lip(sigma) < 1 the kept network and every
  network reached by further removals (principal submatrices, columns scaled down) is a
  contraction with a unique, globally stable equilibrium: every later removal is survived.

A removal whose chord step fails (no convergence, or a corrector larger than half the
predicted move: a possible jump to another branch) is continued in p by
:func:`continue_removal`: the reference's steps, Newton corrector and bisection, with
stability decided lazily (sign(det J) from each point's LU rejects points past a fold or
branch point for free; the accepted points are decided by the certificates above, and
eigenvalues where they fail, only once the branch reaches p = 1). Near stability boundaries,
where chord steps fail, a removal that folds thus costs LU factorisations but no
eigenvalues. A removal whose chord step is accepted but ends on an unstable state (by
eigenvalues) loses the state: the branch followed from a stable state lost stability on the
way, which the reference finds by bisection with an ``eigvals`` per step (same survivals on
the tests' random networks).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lu_factor, schur, solve_continuous_lyapunov
from scipy.linalg.lapack import dgetrs

from ._linalg import lu_det_sign, lyapunov_from_schur
from ._resilience_continuation import _cholesky_ok, _leading_eigenvalue
from .activations import Activation

__all__ = ["removal_sequence_survival", "contraction_norm"]

#: Woodbury columns kept before the LU is refreshed (each costs O(N r) per solve).
_MAX_RANK = 32
#: chord iterations contracting the residual by less than this factor trigger a refresh.
_SLOW = 0.25
#: a Lyapunov matrix that certified fewer states than this did not pay for its solve (a
#: Schur form and a blocked triangular solve, about 2 ``eigvals`` at N = 1000): the next solve
#: waits for 1, 2, 4, ... eigenvalue decisions
_LYAPUNOV_PAYS = 2


def contraction_norm(W: np.ndarray) -> float:
    """||W||_2 (largest singular value)."""
    return float(np.linalg.norm(W, 2)) if W.size else 0.0


class _Chord:
    """Approximate solves with J(x) of the network with some units switched off."""

    def __init__(self, W, act, x, alive):
        self.W, self.act = W, act
        self.refresh(x, alive)

    def jacobian(self, x, alive):
        J = self.W * (self.act.dsigma(x) * alive)[None, :]
        J.flat[:: J.shape[0] + 1] -= 1.0
        return J

    def is_at(self, x):
        return np.array_equal(self.x_ref, x)

    def refresh(self, x, alive):
        self.x_ref = x.copy()
        J = self.jacobian(x, alive)
        self.ok = bool(np.all(np.isfinite(J)))
        if self.ok:
            self.lu = lu_factor(J, check_finite=False)
            self.ok = bool(np.all(np.diag(self.lu[0]) != 0))
        self.Z = np.empty((x.size, 0))
        self.rows: list[int] = []

    def switch_off(self, j):
        """J -> J - u e_j^T: column j of the reference Jacobian becomes -e_j."""
        u = self.W[:, j] * self.act.dsigma(self.x_ref[j])
        z = self._lu_solve(u)
        self.Z = np.column_stack([self.Z, z])
        self.rows.append(j)

    def _lu_solve(self, b):
        y, _ = dgetrs(self.lu[0], self.lu[1], b)
        return y

    def solve(self, b):
        y = self._lu_solve(b)
        if self.rows:
            Zr = self.Z[self.rows]
            C = np.eye(len(self.rows)) - Zr
            y = y + self.Z @ np.linalg.solve(C, y[self.rows])
        return y


class _Lyapunov:
    """A Lyapunov matrix P > 0 of one reference Jacobian, tested on later Jacobians -I + W D.

    ``certifies(d)`` is a sufficient test of stability of J = -I + W diag(d): never a false
    pass (P exactly symmetric and checked positive definite; every Cholesky test shifted to
    cover its round-off), a fail decides nothing.
    """

    #: the fraction of lambda_min(Q) (1 at the reference) a Cholesky test first tries to bank
    BANK = 0.25

    def __init__(self, W: np.ndarray, d: np.ndarray):
        N = d.size
        J = W * d[None, :]
        J.flat[:: N + 1] -= 1.0
        self.ok = False
        self.uses = 0  # states certified
        if not np.all(np.isfinite(J)):
            return
        try:  # J^T P + P J = -I; fails (or P is indefinite) when J is not stable
            P = lyapunov_matrix(J)
        except (np.linalg.LinAlgError, ValueError):
            return
        P = 0.5 * (P + P.T)
        self.eps = 8.0 * N * np.finfo(float).eps
        T = P.copy()
        T.flat[:: N + 1] -= self.eps * np.max(np.abs(P))
        if not _cholesky_ok(T):
            return
        self.P, self.G = P, P @ W
        # G is P W up to |E| <= N eps |P| |W| (elementwise), so Q formed from G is the true
        # -(J^T P + P J) up to 2 ||E D||_2 <= 2 N eps ||P||_F ||W||_F max|d|
        self.g_err = 2.0 * N * np.finfo(float).eps * np.linalg.norm(P) * np.linalg.norm(W)
        self.col = np.linalg.norm(self.G, axis=0)  # ||G e_i||
        self.ok = True
        self.bank, self.d_ref = 0.0, None

    def certifies(self, d: np.ndarray, cholesky: bool = True) -> bool:
        """Is -I + W diag(d) certified stable by this P? ``cholesky=False``: the O(N) test only."""
        if not self.ok:
            return False
        if self.d_ref is not None and self.bank > 0:
            drift = 2.0 * np.sqrt(np.sum(((d - self.d_ref) * self.col) ** 2))
            if drift + self.g_err * np.max(np.abs(d)) < self.bank:
                self.uses += 1
                return True
        if not cholesky:
            return False
        GD = self.G * d[None, :]
        Q = 2.0 * self.P - GD - GD.T
        N = d.size
        margin = self.eps * np.max(np.abs(Q)) + self.g_err * np.max(np.abs(d))
        for c in (self.BANK, 0.0):
            T = Q.copy()
            T.flat[:: N + 1] -= c + margin
            if _cholesky_ok(T):
                self.bank, self.d_ref = c, d.copy()
                self.uses += 1
                return True
        self.bank, self.d_ref = 0.0, None
        return False


def lyapunov_matrix(J: np.ndarray) -> np.ndarray:
    """P with J^T P + P J = -I, from the real Schur form of J
    (:func:`koopnet._linalg.lyapunov_from_schur`); about 2.5x faster than
    ``scipy.linalg.solve_continuous_lyapunov`` at N = 1000, which remains the fallback where a
    block would need scaling."""
    P = lyapunov_from_schur(*schur(J, output="real"))
    return solve_continuous_lyapunov(J.T, -np.eye(J.shape[0])) if P is None else P


def _chord_step(chord, field, x, before, after, j, tol, max_iter):
    """Remove unit j from the equilibrium x by chord Newton from the tangent predictor.

    Only fast steps count: every iteration must shrink max|F| by ``_SLOW`` and converge
    within ``max_iter`` iterations, where exact Newton (the reference) would too; anything
    else is left to the reference. Returns (converged, x_new, x_pred).
    """
    # predictor: the tangent of the homotopy W[:, j] -> (1 - p) W[:, j] at p = 0
    push = chord.W[:, j] * chord.act.sigma(x[j]) * before
    x_pred = x + chord.solve(push) * before
    chord.switch_off(j)
    xn = x_pred.copy()
    xn[j] = x[j]
    F = field(xn, after)
    res = np.max(np.abs(F))
    for _ in range(max_iter):
        if res < tol:
            return True, xn, x_pred
        xn -= chord.solve(F) * after
        F = field(xn, after)
        res_new = np.max(np.abs(F))
        if not res_new <= _SLOW * res:
            return False, xn, x_pred
        res = res_new
    return bool(res < tol), xn, x_pred


def _lu_apply(f, b):
    return dgetrs(f[0], f[1], b)[0]


def continue_removal(W, theta, act, x0, j, opts, stable_at) -> tuple[bool, np.ndarray]:
    """Continue a stable equilibrium through the removal of unit j; does it survive?

    The homotopy of :func:`koopnet._resilience_continuation.continue_unit_removal`,
    F(x, p) = -x + W sigma(x) - p W[:, j] sigma(x_j) + theta, p from 0 to 1, followed with the
    reference's steps, tangent predictor, Newton corrector, corrector test and bisection of
    rejected steps (``opts``: its options), but with stability decided lazily:

    * the LU of each corrected point (needed for its tangent) gives sign(det J), which differs
      from a stable state's (-1)^n exactly when an odd number of real eigenvalues are
      positive; such a point (past a fold or branch point, or on another branch) is rejected
      at no cost, as the reference rejects it;
    * other points are accepted provisionally and decided by ``stable_at`` only once the
      branch reaches p = 1: an unstable end point loses the state (the branch lost stability
      on the way, as the chord path concludes; the reference would bisect towards the Hopf
      point), else the others in order, and at the first unstable one the continuation
      resumes from the point before it with half the step, as the reference does after
      rejecting it.

    So a removal that folds, the common way to lose a near-marginal state, costs LU
    factorisations and no eigenvalues, one that ends unstable one stability decision, and a
    survived one a decision per accepted point (mostly by certificates). Survivals equal the
    reference's on the tests' random networks (and 38 of 38 near-critical ones checked once).

    Parameters
    ----------
    W : array, shape (n, n);  theta : array, shape (n,);  x0 : array, shape (n,)
        The kept network and its stable equilibrium.
    j : int
        Position of the removed unit.
    opts : dict
        Options of :func:`continue_unit_removal`.
    stable_at : callable (x : array (n,), p : float) -> bool
        Stability of the corrected state x of the homotopy at p.

    Returns
    -------
    survived : bool
        The branch reached p = 1 through stable states.
    x : array, shape (n,)
        Its state at p = 1 (the last accepted state otherwise).
    """
    n = x0.size
    col = W[:, j].copy()
    ntol, nmax = opts["newton_tol"], opts["newton_max_iter"]
    stable_sign = (-1.0) ** n  # det of a stable J: complex pairs contribute |lambda|^2 > 0

    def field(x, p):
        return -x + W @ act.sigma(x) - p * act.sigma(x[j]) * col + theta

    def factor(x, p):
        J = W * act.dsigma(x)[None, :]
        J[:, j] -= p * act.dsigma(x[j]) * col
        J.flat[:: n + 1] -= 1.0
        return lu_det_sign(J)

    def tangent(f, x):  # dx/dp = -J^-1 dF/dp
        return _lu_apply(f, act.sigma(x[j]) * col)

    def newton(x, p):  # the reference's corrector: up to nmax exact Newton iterations
        x = x.copy()
        for it in range(nmax + 1):
            F = field(x, p)
            res = np.max(np.abs(F))
            if res < ntol:
                return x, True
            if it == nmax or not np.isfinite(res):
                return x, False
            f = factor(x, p)
            if f is None:
                return x, False
            x -= _lu_apply(f, F)
        return x, False

    x = np.array(x0, dtype=float)
    f = factor(x, 0.0)
    if f is None:
        return False, x
    # accepted points (x, p, dx/dp, the step and the attempt that reached it); path[:verified]
    # are stable
    path = [(x, 0.0, tangent(f, x), 0.0, -1)]
    verified = 1
    step, rejected_before = float(opts["initial_step"]), False
    with np.errstate(all="ignore"):
        attempt = 0
        while attempt < opts["max_iter"]:
            attempt += 1
            x, p, v, _, _ = path[-1]
            p_try = min(p + step, 1.0)
            x_pred = x + (p_try - p) * v
            xn, conv = newton(x_pred, p_try)
            fn = None
            if conv:
                corr = np.max(np.abs(xn - x_pred))
                move = np.max(np.abs(x_pred - x))
                if corr <= 0.5 * move + 1e-9 * (1.0 + np.max(np.abs(x))):
                    fn = factor(xn, p_try)
            if fn is not None and fn[2] == stable_sign:
                path.append((xn, p_try, tangent(fn, xn), step, attempt))
                if p_try < 1.0:
                    if not rejected_before:
                        step = min(step * 1.5, float(opts["max_step"]))
                    rejected_before = False
                    continue
                if not stable_at(xn, 1.0):
                    return False, xn  # ends unstable: lost on the way, as on the chord path
                bad = next((k for k in range(verified, len(path) - 1)
                            if not stable_at(*path[k][:2])), None)
                if bad is None:
                    return True, xn
                # the reference rejected this step: its attempts so far end there
                step, attempt = path[bad][3], path[bad][4]
                del path[bad:]
                verified = bad
            # rejected: halve the step; a short enough bracket ends the branch
            step *= 0.5
            rejected_before = True
            if step < opts["tol"]:
                return False, path[-1][0]
    return False, path[-1][0]


def removal_sequence_survival(
    W: np.ndarray,
    theta: np.ndarray,
    act: Activation,
    x0: np.ndarray,
    order: np.ndarray,
    w_norm: float,
    reactivity: float,
    opts: dict,
    shared: dict | None = None,
) -> int:
    """Removals survived by a stable equilibrium when units are removed in ``order``.

    Parameters
    ----------
    W : array, shape (N, N)
    theta : array, shape (N,)
    act : Activation
    x0 : array, shape (N,)
        A stable equilibrium of the intact network.
    order : array of int, shape (N,)
        Removal order (a permutation; at most N - 1 removals are made).
    w_norm : float
        ||W||_2 (the contraction certificate of the intact network, and the Weyl bound).
    reactivity : float
        lambda_max((J + J^T) / 2) at x0 (1/time).
    opts : dict
        Options of :func:`continue_unit_removal` for the fallback (``newton_tol`` and
        ``newton_max_iter`` are also those of the chord Newton).
    shared : dict, optional
        One dict per equilibrium, passed to each of its removal orders: the Lyapunov matrix
        of the intact state is computed once and tried first by every order, and
        ``shared["work"]`` counts the O(N^3) stability decisions made (in ``eigvals``
        equivalents: an ``eigvals`` 1, a Lyapunov solve ``_LYAPUNOV_PAYS``).

    Returns
    -------
    int
        Removals survived, in [0, N - 1] (as the reference counts them).
    """
    N = x0.size
    lip = act.lipschitz
    tol = opts["newton_tol"]
    alive = np.ones(N)
    x = np.array(x0, dtype=float)
    if np.isfinite(lip) and w_norm * lip < 1.0:
        return N - 1  # a contraction stays one under every removal
    chord = _Chord(W, act, x, alive)
    next_norm_check = max(1, N // 32)  # first contraction check of the kept network
    eps = 8.0 * N * np.finfo(float).eps
    # r_ub: an upper bound of lambda_max of the symmetric part of the kept Jacobian. Negative
    # means stable. A removal cannot raise it (Cauchy interlacing: the kept block is a
    # principal submatrix) and a move of the state raises it by at most
    # ||W_kept||_2 max |delta sigma'| (Weyl); it is re-banked by Cholesky tests.
    r_ub = reactivity if np.isfinite(reactivity) else np.inf
    bank = -0.5 * r_ub if r_ub < 0 else 0.0  # a margin a Cholesky test tries to confirm
    lyap: _Lyapunov | None = None  # the Lyapunov certificate of a reactive state
    # eigenvalue decisions before the next Lyapunov solve: one first, since a solve costs
    # about 2 ``eigvals`` and a state lost at its first reactive removal never repays it
    backoff, skip = 0, 1

    def field(x, alive):
        return (-x + W @ (act.sigma(x) * alive) + theta) * alive

    def stable_now(x, alive):
        """(stable?, new r_ub) of the kept network at x; eigenvalues only if not certified."""
        nonlocal bank, lyap, backoff, skip
        keep = np.flatnonzero(alive)
        J = chord.jacobian(x, alive)[np.ix_(keep, keep)]
        S = -0.5 * (J + J.T)
        if bank > 0:  # half the last exact margin: one Cholesky factorisation (N^3 / 3)
            T = S.copy()
            T.flat[:: keep.size + 1] -= bank + eps * np.max(np.abs(J))
            if _cholesky_ok(T):
                return True, -bank
        d = act.dsigma(x) * alive
        if lyap is not None and lyap.certifies(d, cholesky=False):  # O(N)
            return True, np.inf
        react = -np.linalg.eigvalsh(S)[0]  # exact, about 6 Cholesky factorisations
        if react < 0:
            bank = -0.5 * react
            return True, react
        bank = 0.0
        # a reactive state: the last P (one Cholesky), else the intact state's P, else a new
        # P at this state (fails where the state is not stable), else the eigenvalues
        if lyap is not None and lyap.certifies(d):
            return True, react
        if shared is not None and shared.get("eigenvalue_decisions", 0) > 0:
            if "lyapunov" not in shared:
                shared["lyapunov"] = _Lyapunov(W, act.dsigma(np.asarray(x0, dtype=float)))
                shared["work"] = shared.get("work", 0) + _LYAPUNOV_PAYS
            if shared["lyapunov"] is not lyap and shared["lyapunov"].certifies(d):
                lyap = shared["lyapunov"]
                return True, react
        if lyap is not None:  # it stopped certifying: did it pay for its solve?
            backoff = 0 if lyap.uses >= _LYAPUNOV_PAYS else max(1, 2 * backoff)
            skip, lyap = backoff, None
        if skip > 0:  # recent matrices did not pay (a state near its stability boundary)
            skip -= 1
        else:
            lyap = _Lyapunov(W, d)
            if shared is not None:
                shared["work"] = shared.get("work", 0) + _LYAPUNOV_PAYS
            if lyap.certifies(d):
                return True, react
        if shared is not None:
            shared["eigenvalue_decisions"] = shared.get("eigenvalue_decisions", 0) + 1
            shared["work"] = shared.get("work", 0) + 1
        return bool(_leading_eigenvalue(J[None])[0].real < 0), np.inf

    with np.errstate(all="ignore"):
        for k in range(1, N):
            j = int(order[k - 1])
            before = alive.copy()
            after = alive.copy()
            after[j] = 0.0
            ok = False
            stale = bool(chord.rows) or not chord.is_at(x)
            chord_ok, xn, x_pred = _chord_step(chord, field, x, before, after, j, tol,
                                               opts["newton_max_iter"])
            if not chord_ok and stale:  # maybe the stale LU's fault: once more, fresh
                chord.refresh(x, before)
                chord_ok, xn, x_pred = _chord_step(chord, field, x, before, after, j, tol,
                                                   opts["newton_max_iter"])
            alive = after
            if chord_ok:
                # the removed unit still receives input: its state at p = 1, as the reference
                # has it (it counts in the corrector, not in anything else)
                xn[j] = W[j] @ (act.sigma(xn) * alive) + theta[j]
                m = before > 0
                corr = np.max(np.abs(xn - x_pred)[m])
                move = np.max(np.abs(x_pred - x)[m])
                ok = corr <= 0.5 * move + 1e-9 * (1.0 + np.max(np.abs(x[m])))
            if ok:  # the same acceptance test as the reference: stable at p = 1
                r_ub += w_norm * np.max(np.abs(act.dsigma(xn) - act.dsigma(x))[alive > 0])
                if not r_ub < 0:
                    ok, r_ub = stable_now(xn, alive)
                    if not ok:
                        # the branch, followed from a stable state at p = 0, ends unstable at
                        # p = 1 (eigenvalues): it lost stability on the way, as the reference
                        # continuation finds by bisection (an eigvals per step)
                        return k - 1
            if not ok:  # a continuation in p decides this removal
                keep = np.flatnonzero(before)
                pos = int(np.flatnonzero(keep == j)[0])
                at_end = {}

                def stable_at(xk, p):
                    xe, part = x.copy(), before.copy()
                    xe[keep], part[j] = xk, 1.0 - p
                    ok, r = stable_now(xe, part)
                    if p >= 1.0:
                        at_end["r_ub"] = r
                    return ok

                survived, x_last = continue_removal(W[np.ix_(keep, keep)], theta[keep], act,
                                                    x[keep], pos, opts, stable_at)
                if not survived:
                    return k - 1
                xn = x.copy()
                xn[keep] = x_last
                r_ub = at_end["r_ub"]
                chord.refresh(xn, alive)
            x = xn
            if len(chord.rows) >= _MAX_RANK or not chord.ok:
                chord.refresh(x, alive)
            if k >= next_norm_check and np.isfinite(lip):
                keep = np.flatnonzero(alive)
                w_norm = contraction_norm(W[np.ix_(keep, keep)])
                if w_norm * lip < 1.0:
                    return N - 1
                # the norm of a random-like W's principal submatrix falls about like sqrt(n):
                # check next where that predicts a contraction, but at least N / 64 removals
                # and at most twice as many removals as now later (O(log N) norms in all)
                n_pred = keep.size / (w_norm * lip) ** 2
                next_norm_check = k + int(np.clip(keep.size - n_pred, max(1, N // 64), k))
        return N - 1
