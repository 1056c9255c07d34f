"""Compare the sweep.nc of the local run with the one of the SLURM run.

Usage: python compare.py LOCAL.nc SLURM.nc

Exits non-zero unless
1. the datasets are identical by xarray.testing.assert_identical (variables, dims,
   coordinates, values, dtypes, attributes; nothing is ignored), opened with
   koopnet.open_dataset (complex spectra reassembled);
2. the two files are the same byte for byte (no timestamps or host names in the data).
"""
from __future__ import annotations

import sys
from pathlib import Path

import xarray as xr

from koopnet import open_dataset


def main(local_path: str, slurm_path: str) -> int:
    local, slurm = open_dataset(local_path), open_dataset(slurm_path)
    try:
        xr.testing.assert_identical(local, slurm)
    except AssertionError as err:
        print(f"FAIL: {local_path} and {slurm_path} differ:\n{err}", file=sys.stderr)
        return 1
    if Path(local_path).read_bytes() != Path(slurm_path).read_bytes():
        print("FAIL: same data but the files differ in bytes", file=sys.stderr)
        return 1
    print(f"OK: sweep.nc identical, byte for byte ({len(local.data_vars)} data variables, dims {dict(local.sizes)})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
