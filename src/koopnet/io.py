"""Reading and writing koopnet datasets (netCDF-4).

Complex variables (spectra) are stored as float64 with a trailing dimension ``complex`` whose
coordinate is ``["real", "imag"]`` and an attribute ``complex_encoding``. Every netCDF reader
opens such a file (``xarray.open_dataset(path)`` with its defaults included) and loses
nothing; :func:`open_dataset` reassembles the complex variables. This layout is chosen over
HDF5 compound types because it is readable by any netCDF tool and because the compound type
carries a modification time, which would make two runs of the same config differ in bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import xarray as xr

__all__ = ["write_dataset", "write_datasets", "open_dataset", "open_groups", "encode_complex", "decode_complex"]

COMPLEX_DIM = "complex"
_MARK = "complex_encoding"
_MARK_TEXT = "complex values: trailing dimension 'complex' holds (real, imag)"


def encode_complex(ds: xr.Dataset) -> xr.Dataset:
    """Split every complex variable into a float variable with a trailing ``complex`` dimension."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if np.iscomplexobj(var.values):
            data = np.stack([var.values.real, var.values.imag], axis=-1)
            # one NaN: nan + 0j (a stage's fill) and nan + nanj (collect's padding) are the same
            # missing value, and must give the same bytes whichever job layout produced them
            data[np.isnan(data).any(axis=-1)] = np.nan
            out[name] = xr.Variable((*var.dims, COMPLEX_DIM), data, {**var.attrs, _MARK: _MARK_TEXT})
    if COMPLEX_DIM in out.dims:
        out = out.assign_coords({COMPLEX_DIM: ("complex", ["real", "imag"], {"long_name": "part of a complex value"})})
    return out


def decode_complex(ds: xr.Dataset) -> xr.Dataset:
    """Inverse of :func:`encode_complex`."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if var.attrs.get(_MARK) and var.dims[-1] == COMPLEX_DIM:
            v = var.transpose(..., COMPLEX_DIM).values
            attrs = {k: a for k, a in var.attrs.items() if k != _MARK}
            out[name] = xr.Variable(var.dims[:-1], v[..., 0] + 1j * v[..., 1], attrs)
    if COMPLEX_DIM in out.coords and COMPLEX_DIM not in {d for v in out.data_vars.values() for d in v.dims}:
        out = out.drop_vars(COMPLEX_DIM)
    return out


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
    encoded = encode_complex(ds)
    try:
        encoded.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(encoded))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_datasets(datasets: Mapping[str, xr.Dataset], path: str | os.PathLike) -> None:
    """Write several datasets as the netCDF-4 groups of one file, atomically, in the given order.

    A workflow job that holds several seed chunks writes one file per stage this way (one
    group per chunk); read them back with :func:`open_groups` (or one with
    ``open_dataset(path, group=name)``). The file is opened once for all groups: reopening it
    per group costs time growing with the number of groups already written.
    """
    if not datasets:
        raise ValueError(f"{path}: no datasets to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        root = xr.backends.NetCDF4DataStore.open(tmp, mode="w", format="NETCDF4")
        try:
            for group, ds in datasets.items():
                encoded = encode_complex(ds)
                store = xr.backends.NetCDF4DataStore(root.ds.createGroup(group))
                encoded.dump_to_store(store, encoding=_encoding(encoded))
        finally:
            root.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def open_groups(path: str | os.PathLike) -> dict[str, xr.Dataset]:
    """Every group of a file written by :func:`write_datasets`, loaded, by name (file order).

    Opens the file once: netCDF-4 reads the metadata of all groups on every open.
    """
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return {name: decode_complex(xr.open_dataset(xr.backends.NetCDF4DataStore(group)).load())
                for name, group in nc.groups.items()}


def open_dataset(path: str | os.PathLike, load: bool = True, group: str | None = None) -> xr.Dataset:
    """Open a koopnet netCDF file with complex variables reassembled.

    Parameters
    ----------
    path : path
    load : bool
        Read everything into memory and close the file (default).
    group : str, optional
        A netCDF-4 group (see :func:`write_datasets`); default the root.
    """
    ds = xr.open_dataset(path, engine="netcdf4", group=group)
    if load:
        with ds:
            ds = ds.load()
    return decode_complex(ds)
