"""The ``spectra`` stage: Koopman spectra of every network from its equilibria.

Per network: which exact family applies (and its check against the numerical spectra), the
principal eigenvalues and lattice at every hyperbolic equilibrium, principal eigenfunctions of the
slowest modes to degree 2-3 at every stable equilibrium with their residual order, the slowest decay rate and spectral gap over attractors, and (small N) generator EDMD around
the first attractor with held-out residuals and spurious flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from .._flags import STABLE_TYPES, EquilibriumType, first_stable, flag_attrs
from .._random import stage_rng
from ..network import Network, NetworkBatch
from ._common import (
    AnalyticFamily,
    GedmdStatus,
    KoopmanStatus,
    match_eigenvalues,
    sort_eigenvalues,
)
from ._cubic import polynomial_neuron_family
from ._dictionaries import GaussianRBFDictionary, MonomialDictionary
from ._feedforward import feedforward_family, feedforward_order
from ._gedmd import gedmd, sample_basin, sample_box, sample_trajectories
from ._linear import linear_family
from ._principal import EigenfunctionStatus, principal_eigenfunctions
from ._perturbative_stage import perturbative_part
from ._residuals import residuals
from ._taylor import koopman_lattice

__all__ = ["SpectraSettings", "spectra_dataset", "analytic_family_of"]

_HYPERBOLIC = tuple(int(t) for t in EquilibriumType if t != EquilibriumType.non_hyperbolic)
_STABLE = tuple(int(t) for t in STABLE_TYPES)


@dataclass(frozen=True)
class SpectraSettings:
    """Settings of the ``spectra`` stage (the keys of its config section).

    Attributes
    ----------
    lattice_order : int
        Maximal |k| of the lattice values sum_i k_i lambda_i at each equilibrium (>= 1).
    lattice_max_modes : int
        Length of the ``lattice_mode`` dimension: the slowest lattice values kept per equilibrium.
    analytic_max_units : int
        Exact-family eigenfunctions are checked by their residuals only when N <= this.
    analytic_n_points : int
        Random points (drawn with stage_rng(seed, "spectra")) for the exact-family residual check.
    analytic_box_half_width : float
        Half-width of the box around the first equilibrium holding those points (state units).
    residual_flow_time : float
        Time of the flow residual |psi(x(t)) - exp(lambda t) psi(x(0))| / |psi(x(0))| (units of tau).
    gedmd_max_units : int
        Generator EDMD runs only when N <= this.
    gedmd_dictionary : str
        ``monomial`` (centred at the attractor, scaled by the box half-width) or ``rbf``
        (Gaussian RBFs at training samples plus affine terms).
    gedmd_degree : int
        Total degree of the monomial dictionary.
    gedmd_projection : str
        ``galerkin`` (default; L2 least squares over the samples) or ``taylor`` (degree-triangular
        projection of analytic EDMD, see :func:`koopnet.koopman.gedmd`: its principal eigenvalues
        are those of a polynomial fit of f, far better on near-polynomial fields such as the
        poster's bistable logistic network, worse where the field has nearby complex
        singularities, e.g. some tanh networks; its eigenfunctions are truncations, so more pairs
        exceed the spurious threshold at the box edge). Applies to the monomial dictionary, which
        is centred at the attractor; the ``rbf`` dictionary always uses ``galerkin``.
    gedmd_rbf_centers : int
        Number of Gaussian RBF centres (``rbf`` dictionary).
    gedmd_rbf_width : float
        RBF width relative to the box half-width.
    gedmd_sampling : str
        ``box`` (uniform in the box), ``basin`` (uniform in the box, kept if attracted to the
        attractor) or ``trajectories`` (states along trajectories started in the box).
    gedmd_n_samples : int
        Training samples per network.
    gedmd_n_test : int
        Held-out samples per network for the residuals.
    gedmd_box_half_width : float
        Half-width of the sampling box around the first attractor (state units).
    gedmd_pool_factor : float
        ``basin`` sampling draws pool_factor (n_samples + n_test) candidates.
    gedmd_basin_time : float
        Integration horizon deciding basin membership (units of tau).
    gedmd_trajectory_dt : float
        Time between recorded states for ``trajectories`` sampling (units of tau).
    gedmd_trajectory_length : int
        Recorded states per trajectory for ``trajectories`` sampling.
    gedmd_spurious_threshold : float
        Held-out residual (1/time) above which a gEDMD eigenpair is flagged spurious.
    gedmd_n_modes : int
        Length of the ``gedmd_mode`` dimension (slowest gEDMD eigenvalues kept).
    eigenfunction_modes : int
        Length of the ``eigenfunction_mode`` dimension: principal eigenfunctions of the slowest this
        many modes are expanded at every stable equilibrium (:func:`principal_eigenfunctions`).
    eigenfunction_equilibria : str
        ``stable`` (default) or ``hyperbolic`` (saddles and repellers too: their principal
        eigenfunctions are local, and resonances possible there are flagged).
    eigenfunction_degree : int
        Their Taylor degree D (1, 2 or 3) when N <= eigenfunction_cubic_max_units.
    eigenfunction_cubic_max_units : int
        Above this N the degree is min(eigenfunction_degree, 2): degree 3 costs O(N^4 / 2) per mode
        and N^3 / 2 complex numbers of memory, degree 2 O(N^3).
    eigenfunction_max_units : int
        No expansion above this N (status ``skipped_too_many_units``).
    eigenfunction_check_radius : float
        RMS deviation per unit r of the points around each stable equilibrium (a sphere of radius
        r sqrt(N)) at which the relative generator residual of each expanded eigenfunction is
        measured (and r/2 for its order; state units). Per unit, so that the nonlinearity probed,
        and with it the residual, does not fade with N (a fixed Euclidean radius put the degree-3
        residual at N = 200 at round-off).
    eigenfunction_check_points : int
        Random directions on that sphere (drawn with stage_rng(seed, "eigenfunction_check")). The
        order is a ratio on the same directions: its spread over direction draws was <= 0.08 with
        8, 16 or 32 of them (N = 200, degree 3), while the check's cost grows with their number.
    eigenfunction_small_divisor : float
        Divisors |k . lambda - lambda_i| <= this * max(1, max |lambda|) (1/time) count as resonant:
        their coefficients are set to 0 and the mode is flagged.
    perturbative_max_units : int
        The perturbative family (docs/perturbative.md) runs only when N <= this (0: never), on
        ensembles that declare a split W = W_ff + eps R_hat (``point``, perturbed_feedforward).
    perturbative_max_eps : float
        ... and when the ensemble's eps <= this.
    perturbative_order : int
        Highest order K (cost per point grows like N^K).
    perturbative_eigenvalue : float
        The fixed eigenvalue lambda of the family.
    perturbative_n_points : int
        Sample points per network (stage_rng(seed, "perturbative")).
    perturbative_box_half_width : float
        h: driven units within h of the feedforward equilibrium, |u| in [h/2, 2h]; section |u| = h.
    perturbative_eps_min, perturbative_eps_max : float
        Range of the log eps grid of the breakdown search.
    perturbative_n_eps : int
        Points of that grid.
    """

    lattice_order: int = 3
    lattice_max_modes: int = 32
    analytic_max_units: int = 8
    analytic_n_points: int = 16
    analytic_box_half_width: float = 1.0
    residual_flow_time: float = 1.0
    gedmd_max_units: int = 3
    gedmd_dictionary: str = "monomial"
    gedmd_degree: int = 7
    gedmd_projection: str = "galerkin"
    gedmd_rbf_centers: int = 200
    gedmd_rbf_width: float = 0.5
    gedmd_sampling: str = "basin"
    gedmd_n_samples: int = 1000
    gedmd_n_test: int = 500
    gedmd_box_half_width: float = 1.0
    gedmd_pool_factor: float = 2.0
    gedmd_basin_time: float = 30.0
    gedmd_trajectory_dt: float = 0.1
    gedmd_trajectory_length: int = 10
    gedmd_spurious_threshold: float = 1e-2
    gedmd_n_modes: int = 32
    eigenfunction_modes: int = 3
    eigenfunction_equilibria: str = "stable"
    eigenfunction_degree: int = 3
    eigenfunction_cubic_max_units: int = 200
    eigenfunction_max_units: int = 1000
    eigenfunction_check_radius: float = 0.05
    eigenfunction_check_points: int = 16
    eigenfunction_small_divisor: float = 1e-8
    perturbative_max_units: int = 0
    perturbative_max_eps: float = 1.0
    perturbative_order: int = 2
    perturbative_eigenvalue: float = -1.0
    perturbative_n_points: int = 16
    perturbative_box_half_width: float = 1.0
    perturbative_eps_min: float = 1e-3
    perturbative_eps_max: float = 10.0
    perturbative_n_eps: int = 25

    def __post_init__(self) -> None:
        if self.lattice_order < 1 or self.gedmd_degree < 1:
            raise ValueError("lattice_order and gedmd_degree must be >= 1")
        if self.gedmd_dictionary not in ("monomial", "rbf"):
            raise ValueError("gedmd_dictionary must be 'monomial' or 'rbf'")
        if self.gedmd_projection not in ("taylor", "galerkin"):
            raise ValueError("gedmd_projection must be 'taylor' or 'galerkin'")
        if self.gedmd_sampling not in ("box", "basin", "trajectories"):
            raise ValueError("gedmd_sampling must be 'box', 'basin' or 'trajectories'")
        if self.perturbative_order < 1 or not 0 < self.perturbative_eps_min < self.perturbative_eps_max:
            raise ValueError("perturbative_order must be >= 1 and 0 < perturbative_eps_min < perturbative_eps_max")
        if self.gedmd_trajectory_length < 2:
            raise ValueError("gedmd_trajectory_length must be >= 2 (states per trajectory)")
        if self.eigenfunction_equilibria not in ("stable", "hyperbolic"):
            raise ValueError("eigenfunction_equilibria must be 'stable' or 'hyperbolic'")
        if self.eigenfunction_degree not in (1, 2, 3) or self.eigenfunction_modes < 1:
            raise ValueError("eigenfunction_degree must be 1, 2 or 3 and eigenfunction_modes >= 1")
        if not self.eigenfunction_check_radius > 0 or self.eigenfunction_check_points < 1:
            raise ValueError("eigenfunction_check_radius must be > 0 and eigenfunction_check_points >= 1")
        if not self.eigenfunction_small_divisor >= 0:
            raise ValueError("eigenfunction_small_divisor must be >= 0")


def analytic_family_of(network: Network) -> AnalyticFamily:
    """The exact family that applies: linear activation, N = 1 cubic neuron, feedforward W, or none."""
    if network.activation.name == "linear":
        return AnalyticFamily.linear
    if network.n_units == 1 and network.activation.name == "cubic":
        return AnalyticFamily.cubic_neuron
    if feedforward_order(network.W) is not None:
        return AnalyticFamily.feedforward
    return AnalyticFamily.none


def _analytic_check(net: Network, fam: AnalyticFamily, x_eq, eq_type, jac_ev, seed, s: SpectraSettings):
    """(analytic principal eigenvalues per hyperbolic equilibrium or None, principal error, residual)."""
    n = net.n_units
    hyper = np.isin(eq_type, _HYPERBOLIC)
    analytic = np.full(jac_ev.shape, np.nan + 0j)
    eigfuns = []
    try:
        if fam == AnalyticFamily.linear:
            lf = linear_family(net)
            analytic[hyper] = sort_eigenvalues(lf.principal_eigenvalues)
            eigfuns = [lf.principal_eigenfunction(i) for i in range(n)]
        elif fam == AnalyticFamily.cubic_neuron:
            pf = polynomial_neuron_family(net.W[0, 0], net.theta[0], "cubic")
            for e in np.flatnonzero(hyper):
                k = np.argmin(np.abs(pf.roots - x_eq[e, 0]))
                analytic[e, 0] = pf.principal_eigenvalues[k]
            stable_roots = [k for k in range(pf.roots.size) if pf.principal_eigenvalues[k].real < 0
                            and abs(pf.roots[k].imag) < 1e-12]
            eigfuns = [pf.as_eigenfunction(pf.principal_eigenvalues[k]) for k in stable_roots]
        elif fam == AnalyticFamily.feedforward:
            ff = feedforward_family(net)
            analytic[hyper] = -1.0 + 0j
            # principal eigenfunctions of eigenvalue -1: u and u * Phi_i
            eigfuns = [ff.as_eigenfunction(-1.0)]
            for i in range(n - 1):
                eigfuns.append(
                    ff.as_eigenfunction(
                        -1.0,
                        F=lambda p, i=i: p[..., i],
                        F_gradient=lambda p, i=i: np.eye(n - 1)[i] * np.ones_like(p),
                    )
                )
        else:
            return None, np.nan, np.nan
    except (ValueError, np.linalg.LinAlgError):
        return None, np.inf, np.inf
    err = 0.0
    for e in np.flatnonzero(hyper):
        err = max(err, float(np.max(match_eigenvalues(analytic[e], jac_ev[e])[0])))
    if not np.any(hyper):
        err = np.nan
    res = np.nan
    if n <= s.analytic_max_units and eigfuns:
        rng = stage_rng(seed, "spectra")
        center = x_eq[0] if np.all(np.isfinite(x_eq[0])) else net.theta
        pts = sample_box(rng, center, s.analytic_box_half_width, s.analytic_n_points)
        if fam == AnalyticFamily.feedforward:
            src = feedforward_order(net.W)[0]
            mag = s.analytic_box_half_width * rng.uniform(0.2, 1.0, s.analytic_n_points)
            pts[:, src] = net.theta[src] + np.where(rng.uniform(size=s.analytic_n_points) < 0.5, -mag, mag)
        res = 0.0
        for psi in eigfuns:
            r = residuals(psi, psi.eigenvalue, net, pts, t=s.residual_flow_time)
            fin = np.isfinite(r.generator) & np.isfinite(r.flow)
            res = max(res, r.max if np.all(fin) else np.inf)
    return analytic, err, res


def spectra_dataset(
    batch: NetworkBatch,
    seeds: Sequence[int],
    settings: SpectraSettings | None = None,
    equilibria: xr.Dataset | None = None,
    point: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Stage function of the ``spectra`` rule.

    Parameters
    ----------
    batch : NetworkBatch
        B networks of N units.
    seeds : sequence of int, length B
        Network seeds; gEDMD samples come from stage_rng(seed, "gedmd"), residual-check points
        from stage_rng(seed, "spectra").
    settings : SpectraSettings, optional
    equilibria : xarray.Dataset, optional
        Output of :func:`koopnet.equilibria.equilibria_dataset`: ``x_eq`` (network, equilibrium,
        unit), ``eq_type`` (network, equilibrium), ``jacobian_eigenvalues`` (network, equilibrium,
        mode); stable equilibria first. Computed with default settings when omitted.
    point : mapping, optional
        The sweep point's values (``ensemble`` and its parameters), as ``run_stage`` passes them:
        the perturbative family runs only on ensembles that declare a split W = W_ff + eps R_hat.

    Returns
    -------
    xarray.Dataset
        Dimensions ``network`` (B), ``equilibrium`` (as in ``equilibria``), ``mode`` (N),
        ``lattice_mode`` (settings.lattice_max_modes), ``gedmd_mode`` (settings.gedmd_n_modes).
    """
    s = settings if settings is not None else SpectraSettings()
    if equilibria is None:
        from ..equilibria import equilibria_dataset

        equilibria = equilibria_dataset(batch, seeds)
    B, N = len(batch), batch.n_units
    if len(seeds) != B:
        raise ValueError("one seed per network")
    x_eq_all = np.asarray(equilibria["x_eq"].values, dtype=float).reshape(B, -1, N)
    E = x_eq_all.shape[1]
    eq_type_all = np.asarray(equilibria["eq_type"].values).astype(np.int64).reshape(B, E)
    jac_all = np.asarray(equilibria["jacobian_eigenvalues"].values).astype(complex).reshape(B, E, N)
    hyper = np.isin(eq_type_all, _HYPERBOLIC) & np.all(np.isfinite(x_eq_all), axis=-1)
    stable = np.isin(eq_type_all, _STABLE) & hyper

    family = np.zeros(B, np.int8)
    principal = np.full((B, E, N), np.nan + 0j)
    analytic_err = np.full(B, np.nan)
    analytic_res = np.full(B, np.nan)
    for b in range(B):
        net = batch[b]
        fam = analytic_family_of(net)
        family[b] = int(fam)
        num = sort_eigenvalues(np.where(hyper[b][:, None], jac_all[b], np.nan + 0j))
        principal[b] = num
        analytic, err, res = _analytic_check(net, fam, x_eq_all[b], eq_type_all[b], num, seeds[b], s)
        analytic_err[b], analytic_res[b] = err, res
        if analytic is not None:
            principal[b] = np.where(hyper[b][:, None], analytic, np.nan + 0j)

    # lattice per hyperbolic equilibrium (slowest lattice_max_modes values)
    LM = int(s.lattice_max_modes)
    lattice = np.full((B, E, LM), np.nan + 0j)
    lattice_deg = np.full((B, E, LM), -1, np.int64)
    for b, e in zip(*np.nonzero(hyper)):
        vals, deg = koopman_lattice(principal[b, e], s.lattice_order, LM)
        lattice[b, e, : vals.size] = vals
        lattice_deg[b, e, : deg.size] = deg

    # slowest rate and spectral gap over attractors
    slowest = np.full(B, np.nan)
    gap = np.full(B, np.nan)
    slowest_eq = np.full(B, -1, np.int64)
    kstatus = np.full(B, int(KoopmanStatus.no_stable_equilibrium), np.int8)
    for b in range(B):
        idx = np.flatnonzero(stable[b])
        if idx.size == 0:
            neutral = (eq_type_all[b] == int(EquilibriumType.non_hyperbolic)) & np.all(jac_all[b].real <= 1e-8, axis=-1)
            if neutral.any():
                kstatus[b] = int(KoopmanStatus.non_hyperbolic_equilibrium)
            continue
        rates = -np.max(principal[b, idx].real, axis=1)  # r1 per attractor
        k = int(np.argmin(rates))
        r1 = float(rates[k])
        others = -principal[b, idx[k]].real
        tol = 1e-9 * max(1.0, abs(r1))
        above = others[others > r1 + tol]
        r2 = min(float(np.min(above)) if above.size else np.inf, 2.0 * r1)
        slowest[b], gap[b], slowest_eq[b] = r1, r2 - r1, idx[k]
        kstatus[b] = int(KoopmanStatus.ok)

    gd = _gedmd_part(batch, seeds, s, x_eq_all, stable, principal)
    ef = _eigenfunction_part(batch, seeds, s, x_eq_all, hyper if s.eigenfunction_equilibria == "hyperbolic" else stable)
    gd.update(perturbative_part(batch, seeds, s, point))

    net = ("network",)
    neq = ("network", "equilibrium")

    def v(dims, data, long_name, units="1", **attrs):
        return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})

    data = {
        "analytic_family": xr.Variable(net, family, flag_attrs(AnalyticFamily, "exact Koopman eigenfunction family used")),
        "analytic_principal_error": v(
            net, analytic_err,
            "max distance between analytic principal eigenvalues and the Jacobian eigenvalues of the equilibria stage",
            "1/time", comment="NaN when analytic_family is none or there is no hyperbolic equilibrium",
        ),
        "analytic_residual": v(
            net, analytic_res,
            "max generator and flow residual of the exact principal eigenfunctions at random points",
            "1", comment="relative residuals |U psi - lambda psi|/|psi| and |psi(x(t)) - exp(lambda t) psi(x0)|/|psi(x0)|;"
            " NaN when analytic_family is none or N > analytic_max_units; inf when a check failed",
        ),
        "principal_eigenvalues": v(
            ("network", "equilibrium", "mode"), principal,
            "principal Koopman eigenvalues (Jacobian spectrum) at each hyperbolic equilibrium, slowest first",
            "1/time", comment="analytic values when analytic_family is not none; NaN where eq_type is padding or non_hyperbolic",
        ),
        "lattice_eigenvalues": v(
            ("network", "equilibrium", "lattice_mode"), lattice,
            "Koopman lattice sum_i k_i lambda_i (1 <= |k| <= lattice_order), slowest lattice_max_modes values",
            "1/time", lattice_order=int(s.lattice_order),
        ),
        "lattice_degree": v(("network", "equilibrium", "lattice_mode"), lattice_deg, "|k| of each lattice value (-1 padding)"),
        "koopman_slowest_rate": v(
            net, slowest, "slowest Koopman decay rate over attractors", "1/time",
            definition="min over stable equilibria e of r1(e) = -max_i Re lambda_i(e), lambda_i(e) the principal "
            "eigenvalues at e: the rate at which generic states approach the slowest attractor",
        ),
        "koopman_spectral_gap": v(
            net, gap, "Koopman spectral gap at the slowest attractor", "1/time",
            definition="r2 - r1 at the attractor realising koopman_slowest_rate, where r1 < r2 are the two smallest "
            "distinct decay rates -Re mu over the lattice mu = sum_i k_i lambda_i, |k| >= 1 (complex pairs count once); "
            "r2 = min(smallest principal rate > r1, 2 r1)",
        ),
        "koopman_slowest_equilibrium": v(net, slowest_eq, "index of the attractor realising koopman_slowest_rate (-1 none)"),
        "koopman_status": xr.Variable(net, kstatus, flag_attrs(KoopmanStatus, "attractor Koopman spectrum status")),
        **gd,
        **ef,
    }
    return xr.Dataset(data)


def _eigenfunction_part(batch: NetworkBatch, seeds, s: SpectraSettings, x_eq_all, stable) -> dict:
    """Principal eigenfunctions of the slowest modes at the equilibria in ``stable`` (B, E), checked against f."""
    B, N = len(batch), batch.n_units
    E = x_eq_all.shape[1]
    M = int(s.eigenfunction_modes)
    m = min(M, N)
    degree = int(s.eigenfunction_degree) if N <= s.eigenfunction_cubic_max_units else min(int(s.eigenfunction_degree), 2)
    shape = (B, E, M)
    res = np.full(shape, np.nan)
    order = np.full(shape, np.nan)
    divisor = np.full(shape, np.nan)
    norm2 = np.full(shape, np.nan)
    status = np.full(shape, -1, np.int8)
    skip = N > s.eigenfunction_max_units
    for b in range(B):
        idx = np.flatnonzero(stable[b])
        if idx.size == 0:
            continue
        if skip:
            status[b, idx, :m] = int(EigenfunctionStatus.skipped_too_many_units)
            continue
        # directions drawn for every equilibrium slot up to the last stable one: independent of the batch's E
        u = stage_rng(int(seeds[b]), "eigenfunction_check").standard_normal((idx[-1] + 1, s.eigenfunction_check_points, N))
        u /= np.linalg.norm(u, axis=-1, keepdims=True)
        net = batch[b]
        for e in idx:
            with np.errstate(all="ignore"):
                pe = principal_eigenfunctions(net, x_eq_all[b, e], m, degree, s.eigenfunction_small_divisor,
                                              conjugate_cubic=False)
                res[b, e, :m], order[b, e, :m] = pe.residual_order(u[e], s.eigenfunction_check_radius * np.sqrt(N))
            status[b, e, :m] = pe.status
            divisor[b, e, :m] = pe.smallest_divisor
            if pe.quadratic is not None:
                norm2[b, e, :m] = np.linalg.norm(pe.quadratic, axis=(1, 2))
    efm = ("network", "equilibrium", "eigenfunction_mode")

    def v(data, long_name, units="1", **attrs):
        return xr.Variable(efm, data, {"long_name": long_name, "units": units, **attrs})

    note = ("NaN (status -1) at padding, at equilibria that are not stable (eigenfunction_equilibria), and for modes beyond N; "
            "eigenfunction_mode q is mode q of principal_eigenvalues (slowest first)")
    return {
        "eigenfunction_degree": xr.Variable(("network",), np.full(B, -1 if skip else degree, np.int8), {
            "long_name": "Taylor degree D of the principal eigenfunctions (eigenfunction_degree up to "
                         "eigenfunction_cubic_max_units units, at most 2 above; -1 not computed)", "units": "1"}),
        "eigenfunction_residual": v(
            res, "relative generator residual rms(grad psi . f - lambda psi) / rms(psi) of the degree-D principal "
            "eigenfunction on a sphere of radius eigenfunction_check_radius sqrt(N) around the stable equilibrium", "1/time",
            eigenfunction_check_radius=float(s.eigenfunction_check_radius), comment=note),
        "eigenfunction_residual_order": v(
            order, "log2 of that residual at radius r over radius r/2: about D (D + 1 when the degree-(D+1) term "
            "vanishes) when the Taylor coefficients are right",
            comment="NaN also when the residual is at round-off (linear activation: psi exact) or the mode is resonant"),
        "eigenfunction_smallest_divisor": v(
            divisor, "smallest divisor |k . lambda - lambda_i| (2 <= |k| <= D) of the homological equations", "1/time",
            comment=">= |k| r_1 - r_i (r = -Re lambda) at a stable equilibrium, so the slowest modes are far from "
                    "resonance"),
        "eigenfunction_quadratic_norm": v(
            norm2, "Frobenius norm of the degree-2 coefficients C of psi = y_i + y^T C y + ... in the Jacobian's "
            "eigen-coordinates y (unit-norm eigenvectors)", "1/state",
            comment="how fast the isostables of the mode curve away from the eigenvector hyperplanes; NaN when D < 2"),
        "eigenfunction_status": xr.Variable(efm, status, flag_attrs(
            EigenfunctionStatus, "principal eigenfunction expansion status", padding=True)),
    }


def _gedmd_part(batch: NetworkBatch, seeds, s: SpectraSettings, x_eq_all, stable, principal) -> dict:
    B, N = len(batch), batch.n_units
    K_out = int(s.gedmd_n_modes)
    ev_out = np.full((B, K_out), np.nan + 0j)
    res_out = np.full((B, K_out), np.nan)
    spur_out = np.full((B, K_out), -1, np.int8)
    perr = np.full(B, np.nan)
    status = np.full(B, int(GedmdStatus.skipped_too_many_units), np.int8)
    eq_idx = np.full(B, -1, np.int64)
    n_used = np.zeros(B, np.int64)
    if N <= s.gedmd_max_units:
        first = first_stable(stable)
        has = first >= 0
        eq_idx[:] = first
        status[:] = np.where(has, int(GedmdStatus.ok), int(GedmdStatus.no_stable_equilibrium))
        centers = np.where(has[:, None], x_eq_all[np.arange(B), np.maximum(first, 0)], 0.0)
        centers = np.nan_to_num(centers)
        hw = float(s.gedmd_box_half_width)
        M, Mt = int(s.gedmd_n_samples), int(s.gedmd_n_test)
        rngs = [stage_rng(seed, "gedmd") for seed in seeds]

        def boxes(n):  # n states per network, uniform in its box, from its own stream
            return np.stack([sample_box(r, c, hw, n) for r, c in zip(rngs, centers)])

        if s.gedmd_sampling == "box":
            pts = boxes(M + Mt)
            X, Xt = pts[:, :M], pts[:, M:]
        elif s.gedmd_sampling == "basin":
            P = int(np.ceil(s.gedmd_pool_factor * (M + Mt)))
            pool = boxes(P)
            inside = sample_basin(batch, pool, centers, t_final=s.gedmd_basin_time, tol=1e-3 * max(1.0, hw))
            X = np.empty((B, M, N))
            Xt = np.empty((B, Mt, N))
            for b in range(B):
                sel = pool[b, inside[b]]
                if sel.shape[0] < M + Mt:
                    if status[b] == GedmdStatus.ok:
                        status[b] = int(GedmdStatus.too_few_samples)
                    sel = pool[b, : M + Mt]
                X[b], Xt[b] = sel[:M], sel[M : M + Mt]
        else:
            L = int(s.gedmd_trajectory_length)
            n_tr, n_te = -(-M // L), -(-Mt // L)
            traj = sample_trajectories(batch, boxes(n_tr + n_te), s.gedmd_trajectory_dt, L)
            X, Xt = traj[:, :M], traj[:, n_tr * L : n_tr * L + Mt]
        n_used[:] = M
        finite = np.all(np.isfinite(X), axis=(1, 2)) & np.all(np.isfinite(Xt), axis=(1, 2))
        X = np.where(finite[:, None, None], X, centers[:, None, :])
        Xt = np.where(finite[:, None, None], Xt, centers[:, None, :])
        status[(~finite) & (status == GedmdStatus.ok)] = int(GedmdStatus.failed)
        projection = "galerkin"
        if s.gedmd_dictionary == "monomial":
            dic = MonomialDictionary(N, int(s.gedmd_degree), centers[:, None, :], hw)
            projection = s.gedmd_projection
        else:
            C = min(int(s.gedmd_rbf_centers), M)
            dic = GaussianRBFDictionary(X[:, :C], s.gedmd_rbf_width * hw, centers[:, None, :], hw)
        with np.errstate(all="ignore"):
            try:
                r = gedmd(batch.vector_field, dic, X, Xt, spurious_threshold=s.gedmd_spurious_threshold,
                          projection=projection)
                ok_fit = np.all(np.isfinite(r.eigenvalues), axis=1)
            except np.linalg.LinAlgError:
                r, ok_fit = None, np.zeros(B, bool)
        status[(~ok_fit) & (status == GedmdStatus.ok)] = int(GedmdStatus.failed)
        if r is not None:
            k = min(K_out, r.eigenvalues.shape[1])
            good = status == GedmdStatus.ok
            ev_out[good, :k] = r.eigenvalues[good, :k]
            res_out[good, :k] = r.residual[good, :k]
            spur_out[good, :k] = r.spurious[good, :k]
            for b in np.flatnonzero(good):
                # only eigenpairs that passed the held-out residual test count as estimates
                genuine = np.where(r.spurious[b].astype(bool), np.nan, r.eigenvalues[b])
                perr[b] = np.max(match_eigenvalues(principal[b, first[b]], genuine)[0])
    net = ("network",)
    gm = ("network", "gedmd_mode")

    def v(dims, data, long_name, units="1", **attrs):
        return xr.Variable(dims, data, {"long_name": long_name, "units": units, **attrs})

    return {
        "gedmd_eigenvalues": v(gm, ev_out, "generator-EDMD eigenvalues around the first attractor, slowest first",
                               "1/time", dictionary=s.gedmd_dictionary, sampling=s.gedmd_sampling,
                               projection=s.gedmd_projection if s.gedmd_dictionary == "monomial" else "galerkin",
                               comment="NaN unless gedmd_status is ok"),
        "gedmd_residual": v(gm, res_out, "held-out generator residual rms|U phi - lambda phi| / rms|phi|", "1/time"),
        "gedmd_spurious": xr.Variable(gm, spur_out, {
            "long_name": "gEDMD eigenpair flagged spurious (held-out residual > gedmd_spurious_threshold)",
            "units": "1", "flag_values": [-1, 0, 1], "flag_meanings": "not_computed genuine spurious",
            "threshold": float(s.gedmd_spurious_threshold)}),
        "gedmd_principal_error": v(net, perr, "max distance of the principal eigenvalues to their matched gEDMD eigenvalues",
                                   "1/time", comment="optimal one-to-one matching against the gEDMD eigenvalues not flagged spurious; "
                                   "inf when fewer genuine eigenvalues than principal ones; NaN unless gedmd_status is ok"),
        "gedmd_equilibrium": v(net, eq_idx, "index of the attractor gEDMD is centred on (-1 none)"),
        "gedmd_n_samples": v(net, n_used, "gEDMD training samples"),
        "gedmd_status": xr.Variable(net, status, flag_attrs(GedmdStatus, "generator EDMD status")),
    }
