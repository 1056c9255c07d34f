"""Compare the sweep.nc of the local run with the one of the SLURM run.

Usage: python compare.py LOCAL.nc SLURM.nc

Exits non-zero unless
1. the datasets are identical by xarray.testing.assert_identical (variables, dims,
   coordinates, values, dtypes, attributes; nothing is ignored), opened with
   auto_complex=True as koopnet.open_dataset does: the netCDF4 engine otherwise returns
   complex variables as an (r, i) structured dtype, whose NaN padding never compares
   equal to itself, so identical files would be reported as different;
2. every variable and coordinate is bit for bit the same (raw bytes, as stored).
The files themselves may differ in HDF5 bookkeeping bytes, which carry no data.
"""
from __future__ import annotations

import sys

import xarray as xr


def main(local_path: str, slurm_path: str) -> int:
    with (
        xr.open_dataset(local_path, auto_complex=True) as local,
        xr.open_dataset(slurm_path, auto_complex=True) as slurm,
    ):
        try:
            xr.testing.assert_identical(local.load(), slurm.load())
        except AssertionError as err:
            print(f"FAIL: {local_path} and {slurm_path} differ:\n{err}", file=sys.stderr)
            return 1
    with xr.open_dataset(local_path) as local, xr.open_dataset(slurm_path) as slurm:
        differ = [
            name
            for name in local.variables
            if local[name].dtype != slurm[name].dtype
            or local[name].values.tobytes() != slurm[name].values.tobytes()
        ]
        if differ:
            print(f"FAIL: not bit for bit the same: {', '.join(differ)}", file=sys.stderr)
            return 1
        print(
            f"OK: sweep.nc identical, bit for bit ({len(local.data_vars)} data variables, "
            f"dims {dict(local.sizes)})"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
