"""Shared style and saving helpers of :mod:`koopnet.plotting` (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .. import io  # noqa: E402
from .._flags import STABLE_TYPES, EquilibriumType  # noqa: E402

__all__ = ["RC", "EQ_STYLE", "FIGURE_FORMATS", "new_figure", "save_figure", "mark_equilibria", "axis_label"]

#: rcParams used by every figure (readable at poster and screen size)
RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "axes.grid": False,
    "pdf.fonttype": 42,
}

#: marker style of each equilibrium type (EquilibriumType code -> matplotlib kwargs)
EQ_STYLE = {
    int(EquilibriumType.stable_node): dict(marker="o", mfc="black", mec="black", ms=8, label="stable node"),
    int(EquilibriumType.stable_focus): dict(marker="o", mfc="tab:blue", mec="black", ms=8, label="stable focus"),
    int(EquilibriumType.saddle): dict(marker="X", mfc="tab:red", mec="black", ms=9, label="saddle"),
    int(EquilibriumType.unstable_node): dict(marker="o", mfc="white", mec="black", ms=8, label="unstable node"),
    int(EquilibriumType.unstable_focus): dict(marker="o", mfc="tab:orange", mec="black", ms=8,
                                              label="unstable focus"),
    int(EquilibriumType.non_hyperbolic): dict(marker="s", mfc="tab:gray", mec="black", ms=8,
                                              label="non-hyperbolic"),
}
STABLE_CODES = tuple(int(t) for t in STABLE_TYPES)


def new_figure(*args, **kwargs) -> tuple[Figure, np.ndarray]:
    """``plt.subplots`` with the package rcParams and constrained layout; figures are closed by saving."""
    with plt.rc_context(RC):
        kwargs.setdefault("layout", "constrained")
        fig, axes = plt.subplots(*args, **kwargs)
    return fig, axes


#: Image formats :func:`save_figure` can write (PNG always, since the report shows it).
FIGURE_FORMATS = ("png", "pdf")


def save_figure(fig: Figure, png: str | Path, pdf: str | Path | None = None, data: xr.Dataset | None = None,
                nc: str | Path | None = None, close: bool = True, dpi: float | None = None,
                formats: Sequence[str] = FIGURE_FORMATS) -> list[Path]:
    """Save a figure as PNG (and PDF), and the data behind it as netCDF.

    Parameters
    ----------
    fig : Figure
    png : path
        PNG output; ``pdf`` and ``nc`` default to the same stem with ``.pdf`` / ``.nc``
        (pass them explicitly, or pass ``data=None`` to write no netCDF).
    data : Dataset, optional
        The data plotted (written with :func:`koopnet.io.write_dataset`).
    close : bool
        Close the figure afterwards (frees memory in long workflows).
    dpi : float, optional
        PNG resolution (default ``RC["savefig.dpi"]``, 150).
    formats : sequence of str
        Image formats, some of :data:`FIGURE_FORMATS` including ``"png"``. Each costs a full
        render (a PDF about as much as the PNG), so the workflow's sweep figures write only the
        formats of config ``figure_formats``.

    Returns
    -------
    list of Path
        The files written.
    """
    unknown = sorted(set(formats) - set(FIGURE_FORMATS))
    if unknown or "png" not in formats:
        raise ValueError(f"formats {list(formats)}: expected 'png' and some of {list(FIGURE_FORMATS)}")
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    out = [png]
    engine = fig.get_layout_engine()
    with plt.rc_context(RC):
        fig.savefig(png, dpi=dpi if dpi is not None else RC["savefig.dpi"])
        if "pdf" in formats:
            pdf = Path(pdf) if pdf is not None else png.with_suffix(".pdf")
            # the PNG's draw placed everything (constrained layout: two passes over every axes'
            # tick labels, half of a small-multiples figure's drawing time); the PDF keeps that
            # placement instead of computing it again
            if engine is not None:
                fig.set_layout_engine("none")
            try:
                fig.savefig(pdf, metadata={"CreationDate": None})  # no timestamp: same figure, same bytes
            finally:
                if engine is not None:
                    fig.set_layout_engine(engine)
            out.append(pdf)
    if data is not None:
        nc = Path(nc) if nc is not None else png.with_suffix(".nc")
        io.write_dataset(data, nc)
        out.append(nc)
    if close:
        plt.close(fig)
    return out


def mark_equilibria(ax, x: np.ndarray, y: np.ndarray, eq_type: Iterable[int], seen: set | None = None,
                    zorder: int = 5) -> None:
    """Plot equilibria with the marker of their type (one legend entry per type).

    Parameters
    ----------
    x, y : arrays, shape (E,)
        Coordinates (NaN entries, the padding, are skipped).
    eq_type : ints, shape (E,)
        :class:`koopnet._flags.EquilibriumType` codes (-1 padding skipped).
    seen : set, optional
        Types already in the legend of this axes (updated in place).
    """
    seen = set() if seen is None else seen
    for xi, yi, t in zip(np.ravel(x), np.ravel(y), np.ravel(eq_type)):
        t = int(t)
        if t < 0 or not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        style = dict(EQ_STYLE[t])
        label = style.pop("label")
        ax.plot([xi], [yi], linestyle="none", zorder=zorder, label=None if t in seen else label, **style)
        seen.add(t)


def axis_label(var: xr.DataArray, fallback: str | None = None) -> str:
    """``long_name [units]`` of a variable (units ``1`` shown as dimensionless)."""
    name = var.attrs.get("long_name", fallback or var.name or "")
    units = var.attrs.get("units")
    if units in (None, ""):
        return str(name)
    if units == "1":  # dimensionless: counts, ratios, ranks
        return str(name)
    return f"{name} [{units}]"
