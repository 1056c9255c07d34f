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
- :mod:`koopnet.tasks`, :mod:`koopnet.learning`: tasks and training by BPTT (the only module
  that imports JAX, on first use).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("koopnet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from .activations import ACTIVATIONS, Activation, get_activation
from .network import Network, NetworkBatch

# Everything else is imported on first use (PEP 562): a workflow job that only needs
# the equilibria does not pay for importing the Koopman and resilience modules.
_LAZY = {
    "draw_weights": "ensembles",
    "draw_theta": "ensembles",
    "load_weight_file": "ensembles",
    "Equilibria": "equilibria",
    "EquilibriumMethod": "equilibria",
    "EquilibriumSettings": "equilibria",
    "EquilibriumStatus": "equilibria",
    "equilibria_dataset": "equilibria",
    "find_equilibria": "equilibria",
    "find_equilibria_batch": "equilibria",
    "SpectraSettings": "koopman",
    "feedforward_family": "koopman",
    "gedmd": "koopman",
    "linear_family": "koopman",
    "polynomial_neuron_family": "koopman",
    "residuals": "koopman",
    "spectra_dataset": "koopman",
    "taylor_generator": "koopman",
    "IntegrationSettings": "simulate",
    "Trajectories": "simulate",
    "TrajectoryStatus": "simulate",
    "integrate": "simulate",
    "DimensionSettings": "dimension",
    "dimension_dataset": "dimension",
    "participation_ratio": "dimension",
    "weight_dimensions": "dimension",
    "ResilienceSettings": "resilience",
    "basin_stability": "resilience",
    "resilience_dataset": "resilience",
    "stability_measures": "resilience",
    "structural_robustness": "resilience",
    "tipping_shifts": "resilience",
    "open_dataset": "io",
    "write_dataset": "io",
}
_SUBMODULES = {"dimension", "ensembles", "equilibria", "io", "koopman", "pipeline", "plotting",
               "resilience", "simulate", "sweep", "tasks", "learning"}


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'koopnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


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
    "IntegrationSettings",
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
    "tasks",
    # not "learning": `from koopnet import *` must not import JAX
]
