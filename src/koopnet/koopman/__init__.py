"""Koopman generator spectra of rate networks (SCIENCE.md section 2).

Exact eigenfunction families (linear networks, the single cubic neuron, feedforward networks),
principal spectra and lattices at equilibria, principal eigenfunctions to degree 2-3 in Jacobian
eigen-coordinates (any N), the Taylor (Carleman) generator (small N), generator EDMD with
monomial and Gaussian-RBF dictionaries, generator/flow residuals, equilibria read off 1-D
eigenfunctions, and the ``spectra`` workflow stage.
"""

from __future__ import annotations

from ._common import AnalyticFamily, GedmdStatus, KoopmanStatus, match_eigenvalues, multi_indices, sort_eigenvalues
from ._cubic import PolynomialNeuronFamily, polynomial_neuron_family
from ._dictionaries import GaussianRBFDictionary, MonomialDictionary
from ._feedforward import FeedforwardFamily, feedforward_family, feedforward_order
from ._gedmd import GedmdResult, gedmd, sample_basin, sample_box, sample_trajectories
from ._linear import LinearFamily, linear_family
from ._principal import EigenfunctionStatus, PrincipalEigenfunctions, principal_eigenfunctions
from ._perturbative import PerturbativeFamily, perturbative_family, section_matched_eigenfunction
from ._residuals import Residuals, directional_derivative, flow, residuals
from ._stage import SpectraSettings, analytic_family_of, spectra_dataset
from ._taylor import TaylorGenerator, koopman_lattice, sigma_taylor_coefficients, taylor_generator
from ._zeros import EigenfunctionFeatures, equilibria_from_eigenfunction

__all__ = [
    # exact families
    "LinearFamily",
    "linear_family",
    "PolynomialNeuronFamily",
    "polynomial_neuron_family",
    "FeedforwardFamily",
    "feedforward_family",
    "feedforward_order",
    "PerturbativeFamily",
    "perturbative_family",
    "section_matched_eigenfunction",
    "AnalyticFamily",
    "analytic_family_of",
    # equilibria-based spectra
    "koopman_lattice",
    "sigma_taylor_coefficients",
    "TaylorGenerator",
    "taylor_generator",
    "PrincipalEigenfunctions",
    "principal_eigenfunctions",
    "EigenfunctionStatus",
    # generator EDMD
    "MonomialDictionary",
    "GaussianRBFDictionary",
    "GedmdResult",
    "gedmd",
    "sample_box",
    "sample_basin",
    "sample_trajectories",
    # checks
    "Residuals",
    "residuals",
    "directional_derivative",
    "flow",
    "EigenfunctionFeatures",
    "equilibria_from_eigenfunction",
    "match_eigenvalues",
    "sort_eigenvalues",
    "multi_indices",
    # stage
    "SpectraSettings",
    "spectra_dataset",
    "KoopmanStatus",
    "GedmdStatus",
]
