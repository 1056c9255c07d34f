"""koopnet: Koopman-spectral analysis of recurrent rate networks dx/dt = -x + W sigma(x) + theta.

The library is pure numpy/scipy/xarray and never imports snakemake; the workflow in
``workflow/`` is a thin layer over the same calls a notebook user makes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .activations import ACTIVATIONS, Activation, get_activation
from .network import Network, NetworkBatch

try:
    __version__ = version("koopnet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "Activation",
    "get_activation",
    "Network",
    "NetworkBatch",
]
