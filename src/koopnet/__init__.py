"""koopnet: Koopman-spectral analysis of recurrent rate networks dx/dt = -x + W sigma(x) + theta.

The library is pure numpy/scipy/xarray and never imports snakemake; the workflow in
``workflow/`` is a thin layer over the same calls a notebook user makes.

Modules, by concern:

- :mod:`koopnet.network`, :mod:`koopnet.activations`: the model (vector field, Jacobian).
- :mod:`koopnet.ensembles`: random weight ensembles, theta modes, user weight files.
- :mod:`koopnet.equilibria`: find, refine, classify and count equilibria.
- :mod:`koopnet.koopman`: exact eigenfunction families, principal/Taylor spectra, generator EDMD.
- :mod:`koopnet.simulate`: batched adaptive integration with per-trajectory events.
- :mod:`koopnet.dimension`: effective dimensionality of W and of the dynamics.
- :mod:`koopnet.resilience`: margins, basin stability, tipping, robustness.
- :mod:`koopnet.sweep`, :mod:`koopnet.pipeline`, :mod:`koopnet.io`: sweeps, stages, files.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("koopnet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from . import dimension, ensembles, equilibria, io, koopman, resilience, simulate, sweep
from .activations import ACTIVATIONS, Activation, get_activation
from .dimension import DimensionSettings, dimension_dataset, participation_ratio, weight_dimensions
from .ensembles import draw_theta, draw_weights, load_weight_file
from .equilibria import (
    Equilibria,
    EquilibriumMethod,
    EquilibriumSettings,
    EquilibriumStatus,
    equilibria_dataset,
    find_equilibria,
    find_equilibria_batch,
)
from .io import open_dataset, write_dataset
from .koopman import (
    SpectraSettings,
    feedforward_family,
    gedmd,
    linear_family,
    polynomial_neuron_family,
    residuals,
    spectra_dataset,
    taylor_generator,
)
from .network import Network, NetworkBatch
from .resilience import (
    ResilienceSettings,
    basin_stability,
    resilience_dataset,
    stability_measures,
    structural_robustness,
    tipping_shifts,
)
from .simulate import Trajectories, TrajectoryStatus, integrate

__all__ = [
    "__version__",
    # the model
    "ACTIVATIONS",
    "Activation",
    "get_activation",
    "Network",
    "NetworkBatch",
    # ensembles
    "draw_weights",
    "draw_theta",
    "load_weight_file",
    # analyses
    "Equilibria",
    "EquilibriumSettings",
    "find_equilibria",
    "find_equilibria_batch",
    "EquilibriumMethod",
    "EquilibriumStatus",
    "equilibria_dataset",
    "SpectraSettings",
    "linear_family",
    "polynomial_neuron_family",
    "feedforward_family",
    "taylor_generator",
    "gedmd",
    "residuals",
    "spectra_dataset",
    "integrate",
    "Trajectories",
    "TrajectoryStatus",
    "DimensionSettings",
    "weight_dimensions",
    "participation_ratio",
    "dimension_dataset",
    "ResilienceSettings",
    "stability_measures",
    "basin_stability",
    "tipping_shifts",
    "structural_robustness",
    "resilience_dataset",
    # files
    "open_dataset",
    "write_dataset",
    # submodules
    "dimension",
    "ensembles",
    "equilibria",
    "io",
    "koopman",
    "resilience",
    "simulate",
    "sweep",
]
