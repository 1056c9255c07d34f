"""Reading and writing koopnet datasets (netCDF-4).

Complex variables (spectra) are stored with netCDF4's ``auto_complex`` convention, a
compound type with fields ``r`` and ``i`` that h5py/h5netcdf also read as complex. Open
files with :func:`open_dataset` (or ``xarray.open_dataset(path, auto_complex=True)``);
plain ``xarray.open_dataset(path)`` with the netCDF4 engine returns those variables as a
structured (r, i) dtype instead of complex.
"""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

__all__ = ["write_dataset", "open_dataset"]


def _encoding(ds: xr.Dataset) -> dict:
    enc = {}
    for name, var in ds.variables.items():
        # padding is explicit (documented fill values), so no CF _FillValue masking
        enc[name] = {"_FillValue": None}
        if var.dtype.kind in "iu":
            enc[name]["dtype"] = var.dtype
    return enc


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write ``ds`` to netCDF-4 atomically (temp file + rename), so a killed job leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", auto_complex=True, encoding=_encoding(ds))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def open_dataset(path: str | os.PathLike, load: bool = True) -> xr.Dataset:
    """Open a koopnet netCDF file with complex variables decoded.

    Parameters
    ----------
    path : path
    load : bool
        Read everything into memory and close the file (default).
    """
    ds = xr.open_dataset(path, engine="netcdf4", auto_complex=True)
    if load:
        with ds:
            ds = ds.load()
    return ds
