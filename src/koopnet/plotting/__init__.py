"""Figures of koopnet: the poster's figures and per-sweep figures (matplotlib, Agg backend).

Data functions (``*_data``) compute what a figure shows and return an :class:`xarray.Dataset`
(saved beside the figure, and tested); plot functions take data and return a
:class:`matplotlib.figure.Figure`. :func:`save_figure` writes PNG, PDF and the netCDF data.
"""

from __future__ import annotations

from ._poster import (
    PAPER_FIGURES,
    paper_figure,
    cubic_neuron_data,
    feedforward_data,
    linear_network_data,
    plot_cubic_neuron,
    plot_feedforward,
    plot_linear_network,
    plot_recurrent,
    recurrent_data,
)
from ._perturbative import perturbative_data, plot_perturbative
from ._learning import flipflop_memories_data, plot_flipflop_memories
from ._style import save_figure
from ._sweep import (
    LEARNING_FIGURES,
    QUANTITIES,
    SWEEP_FIGURES,
    choose_x,
    network_quantity,
    plot_dimensions,
    plot_equilibria_count,
    plot_koopman_rates,
    plot_perturbative_breakdown,
    plot_learning,
    plot_resilience,
    plot_stage_seconds,
    summarise,
    sweep_figures,
    swept_dims,
)

__all__ = [
    "PAPER_FIGURES",
    "paper_figure",
    "cubic_neuron_data",
    "plot_cubic_neuron",
    "linear_network_data",
    "plot_linear_network",
    "feedforward_data",
    "plot_feedforward",
    "recurrent_data",
    "plot_recurrent",
    "perturbative_data",
    "plot_perturbative",
    "save_figure",
    "QUANTITIES",
    "SWEEP_FIGURES",
    "LEARNING_FIGURES",
    "swept_dims",
    "choose_x",
    "network_quantity",
    "summarise",
    "plot_equilibria_count",
    "plot_koopman_rates",
    "plot_dimensions",
    "plot_resilience",
    "plot_stage_seconds",
    "plot_perturbative_breakdown",
    "plot_learning",
    "flipflop_memories_data",
    "plot_flipflop_memories",
    "sweep_figures",
]
