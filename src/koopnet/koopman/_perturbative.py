"""Perturbative Koopman eigenfunctions of nearly feedforward networks (SCIENCE.md 2d.4).

f_eps(x) = -x + (W_ff + eps W_rec) sigma(x) + theta with W_ff acyclic, so L_eps = L_0 + eps L_1,
L_1 = v(x) . grad, v = W_rec sigma(x). In the feedforward coordinates of :mod:`._feedforward`
(tau = log(side u), u = x_s - theta_s the source coordinate, and the invariants Phi) the unperturbed
generator is L_0 = -d/dtau and the perturbation is L_1 = a d/dtau + b . grad_Phi with

    a = L_1 tau = v_s / u,        b = L_1 Phi.

At a fixed eigenvalue lambda, psi = u^(-lambda) (F_0(Phi) + eps F_1 + ... + eps^K F_K) solves
(L_eps - lambda) psi = O(eps^(K+1)) when, order by order,

    dF_k/dtau = a (dF_(k-1)/dtau - lambda F_(k-1)) + b . grad_Phi F_(k-1),   F_k = 0 on u = side u_ref,

a quadrature along the unperturbed trajectory (Phi fixed) from the reference section to the point.
All quadratures of one point share one Chebyshev-Lobatto grid on the straight tau-path from the
section to the point (spectral accuracy for analytic integrands); the trajectory itself is a chain
of such quadratures (the y-equations are strictly triangular). Phi-derivatives of the previous
order are taken by forward-mode automatic differentiation (JAX, holomorphic, float64) through the
same discretisation, and the generator residual by JAX directional derivatives of the whole
construction in x, i.e. independently of the equations used to build the orders.

JAX is imported here only, lazily, so that the rest of koopnet imports without it; XLA is configured
(koopnet._jax: single-threaded Eigen operations) before the first kernel can start its backend.
All four activations share one kernel per (N, K, Q, section data): sigma(z) = a + b tanh(c z) + d z + e z^3
with traced coefficients, so a test or a sweep compiles once per network size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from .._jax import configure_xla
from ..network import Network
from ._feedforward import feedforward_order

__all__ = ["PerturbativeFamily", "perturbative_family", "section_matched_eigenfunction"]

RESUMMATIONS = ("none", "exponential")
_CHUNK = 32  # points per compiled call
_JIT = __import__("os").environ.get("KOOPNET_PERTURBATIVE_JIT", "1") != "0"


@lru_cache(maxsize=None)
def chebyshev_cumulative(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev-Lobatto nodes on [0, 1] and the matrix of the indefinite integral from 0.

    Returns
    -------
    s : array, shape (Q,)
        Nodes, s[0] = 0, s[-1] = 1.
    C : array, shape (Q, Q)
        (C @ g)[q] = integral_0^{s_q} g(s) ds for g the interpolant of its nodal values.
    """
    from numpy.polynomial import chebyshev as cheb

    q = np.arange(n_nodes)
    t = -np.cos(np.pi * q / (n_nodes - 1))  # in [-1, 1], increasing
    V = cheb.chebvander(t, n_nodes - 1)  # values of T_n at the nodes
    E = np.empty((n_nodes, n_nodes))
    for n in range(n_nodes):
        e = np.zeros(n_nodes)
        e[n] = 1.0
        E[:, n] = cheb.chebval(t, cheb.chebint(e, lbnd=-1, scl=0.5))
    C = E @ np.linalg.inv(V)
    return (t + 1.0) / 2.0, C


#: sigma(z) = a + b tanh(c z) + d z + e z^3 for every supported activation (SCIENCE.md 1); the
#: coefficients are traced arguments, so one compiled kernel serves all four activations
SIGMA_COEFFICIENTS: dict[str, tuple[float, float, float, float, float]] = {
    "logistic": (0.5, 0.5, 0.5, 0.0, 0.0),  # 1 / (1 + e^-z), holomorphic and without overflow
    "tanh": (0.0, 1.0, 1.0, 0.0, 0.0),
    "linear": (0.5, 0.0, 0.0, 0.25, 0.0),
    "cubic": (0.5, 0.0, 0.0, 0.25, -1.0 / 48.0),
}


def _sigma_coefficients(name: str) -> tuple[float, float, float, float, float]:
    if name not in SIGMA_COEFFICIENTS:
        raise ValueError(f"perturbative_family: unsupported activation {name!r}; expected one of {sorted(SIGMA_COEFFICIENTS)}")
    return SIGMA_COEFFICIENTS[name]


def _forward_substitution(L, r):
    """Solve L b = r for lower-triangular L, shape (..., d, d), r (..., d), in plain XLA operations.

    Not ``jnp.linalg.solve``: jaxlib 0.10's batched LAPACK kernels (getrf, trsm custom calls) split
    their batch over XLA's intra-op thread pool and block the pool worker that runs them until the
    pieces are done (``jax::ParallelBatchMap``, ``absl::BlockingCounter::Wait``). When as many of them
    run concurrently as the pool has workers (2 on a 2-core machine), no worker is left to run the
    pieces and the process hangs forever in a futex wait (docs/perturbative.md, "XLA deadlock").
    d = N - 1 is small, so the unrolled substitution is also cheap.
    """
    import jax.numpy as jnp

    cols = []
    for i in range(L.shape[-1]):
        acc = r[..., i]
        for j in range(i):
            acc = acc - L[..., i, j] * cols[j]
        cols.append(acc / L[..., i, i])
    return jnp.stack(cols, axis=-1) if cols else r


@lru_cache(maxsize=64)
def _compiled(n: int, K: int, Q: int, section_data: Callable | None):
    """jit-compiled per-point kernels for one (N, K, Q, section data).

    Network parameters, the activation's coefficients and lambda are traced arguments, so one
    compilation serves every network of the same shape, whatever its activation.
    """
    import jax
    import jax.numpy as jnp

    s_np, C_np = chebyshev_cumulative(Q)
    d = n - 1

    def sigma(z, P):
        a, b, c, d1, e = (P["sigma"][i] for i in range(5))
        return a + b * jnp.tanh(c * z) + d1 * z + e * z**3

    def _sweep(first_y, shift, u, P):
        """Forward substitution over the driven units (W_ff strictly lower-triangular).

        y_i = first_y[i-1] + delta (C g_i - shift * (C g_i)(s=1)), g_i = -sum_{j<i} W_ij sigma(x_j) / u.
        Returns x on the nodes, shape (Q, N), and y, shape (Q, N - 1).
        """
        Wff, th, delta = P["Wff"], P["theta"], P["delta"]
        C = jnp.asarray(C_np, dtype=complex)
        cols, sigs, ys = [th[0] + u], [], []
        for i in range(1, n):
            sigs.append(sigma(cols[-1], P))
            g = -(jnp.stack(sigs, axis=-1) @ Wff[i, :i]) / u
            cg = C @ g
            y = first_y[i - 1] + delta * (cg - shift * cg[-1])
            ys.append(y)
            cols.append(th[i] + u * y)
        Y = jnp.stack(ys, axis=-1) if ys else jnp.zeros((Q, 0), dtype=complex)
        return jnp.stack(cols, axis=-1), Y

    def path_from_phi(phi, delta, side, P):
        """x on the nodes of the trajectory through (tau, Phi), shape (Q, N); and u (Q,)."""
        u = side * jnp.exp(P["tau_ref"] + jnp.asarray(s_np) * delta)
        X, _ = _sweep(phi, 0.0, u, {**P, "delta": delta})
        return X, u

    def invariants(x, side, P):
        """Phi(x) and Delta = tau_x - tau_ref by transport from x to the section."""
        th, tau_ref = P["theta"], P["tau_ref"]
        ux = x[0] - th[0]
        delta = jnp.log(side * ux) - tau_ref
        if d == 0:
            return jnp.zeros((0,), dtype=complex), delta
        u = side * jnp.exp(tau_ref + jnp.asarray(s_np) * delta)
        _, ys = _sweep((x[1:] - th[1:]) / ux, 1.0, u, {**P, "delta": delta})
        return ys[0], delta

    def coefficients(phi, delta, side, P):
        """a = L_1 tau and b = L_1 Phi on the nodes, shapes (Q,), (Q, N - 1); and the section point."""
        Wff, Wrec, th = P["Wff"], P["Wrec"], P["theta"]
        X, u = path_from_phi(phi, delta, side, P)
        sX = sigma(X, P)
        v = sX @ Wrec.T
        a = v[:, 0] / u
        if d == 0:
            return a, jnp.zeros((Q, 0), dtype=complex), X
        f0 = -(X - th) + sX @ Wff.T
        # d y / d Phi on the nodes (unit lower-triangular): columns of the Jacobian of the path
        dy = jax.jacfwd(lambda p: path_from_phi(p, delta, side, P)[0][:, 1:], holomorphic=True)(phi)
        dy = dy / u[:, None, None]
        rhs = (v[:, 1:] + a[:, None] * f0[:, 1:]) / u[:, None]
        b = _forward_substitution(dy, rhs)
        return a, b, X

    def levels(k, phi, delta, side, P):
        """F_0..F_k and dF/dtau on the nodes, shapes (k+1, Q) each."""
        lam = P["lam"]
        C = jnp.asarray(C_np, dtype=complex)
        if k == 0:
            if section_data is None:
                F0 = jnp.ones((Q,), dtype=complex)
            else:
                X, _ = path_from_phi(phi, delta, side, P)
                F0 = jnp.full((Q,), section_data(X[0]) * (side * jnp.exp(P["tau_ref"])) ** lam)
            return F0[None], jnp.zeros((1, Q), dtype=complex)

        def top(p):
            F, h = levels(k - 1, p, delta, side, P)
            return F[k - 1], (F, h)

        if d:
            dF, (F, h) = jax.jacfwd(top, has_aux=True, holomorphic=True)(phi)  # (Q, d)
        else:
            _, (F, h) = top(phi)
            dF = jnp.zeros((Q, 0), dtype=complex)
        a, b, _ = coefficients(phi, delta, side, P)
        hk = a * (h[k - 1] - lam * F[k - 1]) + jnp.sum(b * dF, axis=-1)
        Fk = delta * (C @ hk)
        return jnp.concatenate([F, Fk[None]]), jnp.concatenate([h, hk[None]])

    def orders_at(x, side, P):
        """psi_k(x) for k = 0..K, shape (K+1,)."""
        phi, delta = invariants(x, side, P)
        F, _ = levels(K, phi, delta, side, P)
        ux = x[0] - P["theta"][0]
        return jnp.power(ux, -P["lam"]) * F[:, -1]

    def terms_at(x, side, P):
        """psi_k, L_0 psi_k and L_1 psi_k at one point, shape (3, K+1)."""
        Wff, Wrec, th = P["Wff"], P["Wrec"], P["theta"]
        sx = sigma(x, P)
        f0 = -(x - th) + sx @ Wff.T
        v = sx @ Wrec.T
        fun = lambda z: orders_at(z, side, P)  # noqa: E731
        # one linearisation, two tangents: the construction is traced and compiled once, not twice
        psi, lin = jax.linearize(fun, x)
        L = jax.vmap(lin)(jnp.stack([f0, v]))
        return jnp.stack([psi, L[0], L[1]])

    # XLA's backend optimisation roughly halves compilation (measured 7.1 -> 3.7 s CPU, N = 2, K = 2)
    # for ~2x slower kernels that are already ~0.2 ms per point: compilation dominates here
    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    wrap = (lambda f: jax.jit(f, compiler_options=opts)) if _JIT else (lambda f: f)
    v_orders = wrap(jax.vmap(orders_at, in_axes=(0, 0, None)))
    v_terms = wrap(jax.vmap(terms_at, in_axes=(0, 0, None)))
    v_inv = wrap(jax.vmap(lambda x, side, P: invariants(x, side, P)[0], in_axes=(0, 0, None)))
    return v_orders, v_terms, v_inv


def _log_series(psi: np.ndarray, dpsi: np.ndarray | None = None):
    """Coefficients S_k of log(sum_k eps^k psi_k) and, optionally, of a derivation D applied to them.

    Parameters
    ----------
    psi : array, shape (K+1, ...)
    dpsi : array, shape (K+1, ...), optional
        D psi_k for a first-order differential operator D (L_0 or L_1).

    Returns
    -------
    S, DS : arrays, shape (K+1, ...) (S_0 = log psi_0, principal branch)
    """
    K = psi.shape[0] - 1
    r = psi / psi[0]
    S = np.empty_like(r)
    S[0] = np.log(psi[0])
    DS = None
    if dpsi is not None:
        dr = (dpsi - r * dpsi[0]) / psi[0]
        DS = np.empty_like(r)
        DS[0] = dpsi[0] / psi[0]
    for k in range(1, K + 1):
        S[k] = r[k] - sum(j * S[j] * r[k - j] for j in range(1, k)) / k
        if dpsi is not None:
            DS[k] = dr[k] - sum(j * (DS[j] * r[k - j] + S[j] * dr[k - j]) for j in range(1, k)) / k
    return S, DS


@dataclass(frozen=True, eq=False)
class PerturbativeFamily:
    """Eigenfunctions of f_eps = -x + (W_ff + eps W_rec) sigma(x) + theta as a series in eps.

    psi(x; eps) = u^(-lambda) sum_{k<=K} eps^k F_k(x), with F_0 = the section data and F_k = 0 on the
    reference section u = +-u_ref for k >= 1 (this fixes the family's freedom F order by order).

    Attributes
    ----------
    network_ff : Network
        The feedforward part (acyclic W_ff, any activation of SCIENCE.md 1), with theta.
    W_rec : array, shape (N, N)
        The recurrent perturbation (any support).
    order : int
        K, the highest order computed.
    lam : complex
        The eigenvalue (fixed; every lambda is an eigenvalue of the feedforward generator).
    u_ref : float
        |u| of the reference section (state units).
    n_nodes : int
        Chebyshev-Lobatto nodes Q of each quadrature (per point, on the tau-path to the section).
    section_data : callable, optional
        JAX-traceable g(x) (N,) -> complex: psi_0 = g on the section, so F_0(Phi) = (side u_ref)^lambda
        g(x_section(Phi)). None means F_0 = 1 (psi_0 = u^(-lambda)).
    """

    network_ff: Network
    W_rec: np.ndarray
    order: int = 2
    lam: complex = -1.0
    u_ref: float = 1.0
    n_nodes: int = 40
    section_data: Callable | None = None
    _perm: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        net = self.network_ff
        perm = feedforward_order(net.W)
        if perm is None:
            raise ValueError("perturbative_family needs an acyclic W_ff (a feedforward network_ff)")
        _sigma_coefficients(net.activation.name)
        configure_xla()  # before anything starts JAX's backend (koopnet._jax)
        W_rec = np.asarray(self.W_rec, dtype=float)
        if W_rec.shape != net.W.shape or not np.all(np.isfinite(W_rec)):
            raise ValueError(f"W_rec must be a finite {net.W.shape} matrix, got shape {W_rec.shape}")
        if int(self.order) < 0:
            raise ValueError(f"order must be >= 0, got {self.order}")
        if not self.u_ref > 0:
            raise ValueError(f"u_ref must be > 0, got {self.u_ref}")
        if int(self.n_nodes) < 4:
            raise ValueError(f"n_nodes must be >= 4, got {self.n_nodes}")
        object.__setattr__(self, "W_rec", W_rec)
        object.__setattr__(self, "order", int(self.order))
        object.__setattr__(self, "lam", complex(self.lam))
        object.__setattr__(self, "_perm", perm)

    # -- helpers ------------------------------------------------------------------------------
    def network(self, eps: float) -> Network:
        """The full network W_ff + eps W_rec (same theta and activation)."""
        net = self.network_ff
        return Network(net.W + eps * self.W_rec, net.theta, net.activation)

    @property
    def source(self) -> int:
        """Index of the source unit whose coordinate u = x_s - theta_s carries u^(-lambda)."""
        return int(self._perm[0])

    def _params(self):
        import jax.numpy as jnp

        p = self._perm
        net = self.network_ff
        return {
            "Wff": jnp.asarray(net.W[p][:, p], dtype=complex),
            "Wrec": jnp.asarray(self.W_rec[p][:, p], dtype=complex),
            "theta": jnp.asarray(net.theta[p], dtype=complex),
            "tau_ref": jnp.asarray(np.log(self.u_ref), dtype=complex),
            "lam": jnp.asarray(self.lam, dtype=complex),
            "sigma": jnp.asarray(_sigma_coefficients(net.activation.name), dtype=complex),
        }

    def _prepare(self, x):
        x = np.asarray(x)
        lead = x.shape[:-1]
        xs = x.reshape(-1, x.shape[-1])[:, self._perm].astype(complex)
        u = xs[:, 0] - self.network_ff.theta[self._perm[0]]
        bad = u == 0
        xs[bad, 0] += 1.0  # placeholder, masked below
        side = np.where(np.real(u) < 0, -1.0, 1.0).astype(complex)
        return xs, side, bad, lead

    def _run(self, which: int, x):
        import jax

        with jax.enable_x64(True):
            kern = _compiled(self.network_ff.n_units, self.order,
                             int(self.n_nodes), self.section_data)[which]
            xs, side, bad, lead = self._prepare(x)
            P = self._params()
            # fixed-size chunks: one compilation whatever the number of points
            m = xs.shape[0]
            pad = -m % _CHUNK
            xs = np.concatenate([xs, np.repeat(xs[-1:], pad, axis=0)]) if m else xs
            side = np.concatenate([side, np.repeat(side[-1:], pad)]) if m else side
            out = np.concatenate([np.asarray(kern(xs[i:i + _CHUNK], side[i:i + _CHUNK], P))
                                  for i in range(0, xs.shape[0], _CHUNK)])[:m]
        out = np.where(bad.reshape((-1,) + (1,) * (out.ndim - 1)), np.nan, out)
        return out, lead

    # -- public API -----------------------------------------------------------------------------
    def invariants(self, x: np.ndarray) -> np.ndarray:
        """Phi(x) of the unperturbed network by the spectral transport, shape (..., N - 1)."""
        out, lead = self._run(2, x)
        return out.reshape(*lead, -1)

    def orders(self, x: np.ndarray) -> np.ndarray:
        """psi_k(x) = u^(-lambda) F_k(x) for k = 0..K.

        Parameters
        ----------
        x : array, shape (..., N), real or complex

        Returns
        -------
        complex array, shape (K+1, ...); NaN where u = 0
        """
        out, lead = self._run(0, x)
        return np.moveaxis(out, -1, 0).reshape(self.order + 1, *lead)

    def generator_terms(self, x: np.ndarray) -> np.ndarray:
        """psi_k, L_0 psi_k and L_1 psi_k at the points (JAX directional derivatives in x).

        Returns
        -------
        complex array, shape (3, K+1, ...)
        """
        out, lead = self._run(1, x)
        return np.moveaxis(out, 0, -1).reshape(3, self.order + 1, *lead)

    def eigenfunction(self, x: np.ndarray, eps: float, order: int | None = None, resum: str = "none") -> np.ndarray:
        """psi^(K)(x; eps), the truncation at ``order`` (default K).

        resum = "exponential" returns psi_0 exp(sum_{1<=k<=K} eps^k S_k), S_k the coefficients of
        log(sum eps^k psi_k): the same O(eps^(K+1)) approximation with the secular eps log u terms
        summed into a renormalised exponent of u.

        Returns
        -------
        complex array, shape (...)
        """
        return self.evaluate(self.orders(x), eps, order, resum)

    def evaluate(self, psi_k: np.ndarray, eps, order: int | None = None, resum: str = "none") -> np.ndarray:
        """Sum precomputed orders (K+1, ...) at eps (scalar or array broadcast against the points)."""
        K = self.order if order is None else int(order)
        self._check(K, resum)
        psi_k = psi_k[: K + 1]
        eps = np.asarray(eps)
        powers = eps[..., None] ** np.arange(K + 1)  # (..., K+1)
        if resum == "none":
            return np.moveaxis(np.moveaxis(psi_k, 0, -1) * powers, -1, 0).sum(axis=0)
        S, _ = _log_series(psi_k)
        Ssum = np.moveaxis(np.moveaxis(S, 0, -1) * powers, -1, 0).sum(axis=0)
        return np.exp(Ssum)

    def residual(self, x: np.ndarray, eps, order: int | None = None, resum: str = "none",
                 terms: np.ndarray | None = None) -> np.ndarray:
        """Relative generator residual |(L_eps - lambda) psi^(K)| / |lambda psi^(K)|.

        Parameters
        ----------
        x : array, shape (M, N) (ignored when ``terms`` is given)
        eps : float or array, shape (E,)
        order : int, optional
            K' <= K (default K).
        resum : "none" or "exponential"
        terms : array, shape (3, K+1, M), optional
            :meth:`generator_terms` computed once, reused across eps and orders.

        Returns
        -------
        array, shape (E, M) (or (M,) for scalar eps)
        """
        K = self.order if order is None else int(order)
        self._check(K, resum)
        if terms is None:
            terms = self.generator_terms(x)
        psi, L0, L1 = terms[0, : K + 1], terms[1, : K + 1], terms[2, : K + 1]
        eps = np.asarray(eps, dtype=float)
        e = eps.reshape(-1, *([1] * (psi.ndim - 1)))
        lam = self.lam
        if resum == "none":
            num = sum(e**k * ((L0[k] - lam * psi[k]) + e * L1[k]) for k in range(K + 1))
            den = lam * sum(e**k * psi[k] for k in range(K + 1))
            out = np.abs(num) / np.abs(den)
        else:
            # (L - lambda) e^S = e^S (L S - lambda): the relative residual is |L_eps S - lambda| / |lambda|
            S, L0S = _log_series(psi, L0)
            _, L1S = _log_series(psi, L1)
            LS = sum(e**k * (L0S[k] + e * L1S[k]) for k in range(K + 1))
            out = np.abs(LS - lam) / abs(lam)
        return out if eps.ndim else out[0]

    def _check(self, K: int, resum: str) -> None:
        if not 0 <= K <= self.order:
            raise ValueError(f"order must be in 0..{self.order}, got {K}")
        if resum not in RESUMMATIONS:
            raise ValueError(f"resum must be one of {RESUMMATIONS}, got {resum!r}")


def perturbative_family(network_ff: Network, W_rec: np.ndarray, order: int = 2, lam: complex = -1.0,
                        u_ref: float = 1.0, n_nodes: int = 40,
                        section_data: Callable | None = None) -> PerturbativeFamily:
    """Perturbative eigenfunctions of W_ff + eps W_rec around the exact feedforward family.

    Parameters
    ----------
    network_ff : Network
        Feedforward part: acyclic W_ff, theta, activation (logistic, tanh, cubic or linear).
    W_rec : array, shape (N, N)
        Recurrent perturbation.
    order : int
        K: orders 0..K are computed (cost grows like N^K per point).
    lam : complex
        Eigenvalue.
    u_ref : float
        Reference section |u| = u_ref where F_k = 0 for k >= 1.
    n_nodes : int
        Chebyshev-Lobatto nodes per quadrature.
    section_data : callable, optional
        JAX-traceable g(x) giving psi_0 on the section (default: psi_0 = u^(-lambda)).

    Raises
    ------
    ValueError
        If W_ff has a cycle, W_rec has the wrong shape, or an argument is out of range.
    """
    return PerturbativeFamily(network_ff, W_rec, order=order, lam=lam, u_ref=u_ref, n_nodes=n_nodes,
                              section_data=section_data)


def section_matched_eigenfunction(network: Network, source: int, u_ref: float, lam: complex,
                                  x: np.ndarray, section_value: Callable | None = None,
                                  rtol: float = 1e-12, atol: float = 1e-13) -> np.ndarray:
    """The exact eigenfunction of the full network with given data on the section |x_s - theta_s| = u_ref.

    psi(x) = exp(-lambda t) psi(phi_t(x)), t the flow time from x to the section (negative when the
    point lies inside it), valid where the trajectory crosses the section transversally. This is the
    non-perturbative eigenfunction the series approximates (same section data).

    Parameters
    ----------
    network : Network
        The full network (any W).
    source : int
        Index s of the section coordinate u = x_s - theta_s.
    u_ref : float
    lam : complex
    x : array, shape (M, N), real
    section_value : callable, optional
        g(x_section) (numpy); default (side u_ref)^(-lambda).

    Returns
    -------
    complex array, shape (M,); NaN where the section was not reached
    """
    from scipy.integrate import solve_ivp

    x = np.asarray(x, dtype=float)
    out = np.full(x.shape[0], np.nan, dtype=complex)
    th = network.theta[source]
    for m, x0 in enumerate(x):  # one event-located solve per point (a reference, not a hot path)
        u0 = x0[source] - th
        side = -1.0 if u0 < 0 else 1.0
        direction = 1.0 if abs(u0) > u_ref else -1.0

        def event(t, z):
            return abs(z[source] - th) - u_ref

        event.terminal = True
        sol = solve_ivp(lambda t, z: direction * network.vector_field(z), (0.0, 60.0), x0, method="DOP853",
                        rtol=rtol, atol=atol, events=event)
        if sol.status != 1 or sol.t_events[0].size == 0:
            continue
        t_hit = direction * sol.t_events[0][0]
        x_hit = sol.y_events[0][0]
        g = (side * u_ref + 0j) ** (-complex(lam)) if section_value is None else section_value(x_hit)
        out[m] = np.exp(-complex(lam) * t_hit) * g
    return out
