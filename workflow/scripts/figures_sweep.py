"""Rule `sweep_figures`: every applicable figure of one sweep (thin layer over koopnet.plotting)."""
import logging
from pathlib import Path

from koopnet import io
from koopnet.plotting import SWEEP_FIGURES, save_figure

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
for noisy in ("fontTools", "matplotlib", "PIL"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
log = logging.getLogger("koopnet")
ds = io.open_dataset(snakemake.input[0])
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
for name, make in SWEEP_FIGURES.items():
    res = make(ds)
    if res is None:
        log.info("%s: skipped (its x parameter is not swept or its variables are missing)", name)
        continue
    fig, data = res
    save_figure(fig, out / f"{name}.png", data=data)
    log.info("%s -> %s/%s.{png,pdf,nc}", name, out, name)
