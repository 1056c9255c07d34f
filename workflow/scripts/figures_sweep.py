"""Rule `sweep_figures`: every applicable figure of one sweep (thin layer over koopnet.plotting)."""
from pathlib import Path

from koopnet import io
from koopnet.pipeline import start_job_log
from koopnet.plotting import LEARNING_FIGURES, SWEEP_FIGURES, save_figure

log = start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
# timings live apart from sweep.nc (they are not reproducible); the stage_seconds figure reads them
ds = io.open_dataset(snakemake.input.sweep).merge(io.open_dataset(snakemake.input.timing))
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
formats = snakemake.params.formats  # config figure_formats
for name, make in {**SWEEP_FIGURES, **LEARNING_FIGURES}.items():
    res = make(ds)
    if res is None:
        log.info("%s: skipped (its x parameter is not swept or its variables are missing)", name)
        continue
    fig, data = res
    save_figure(fig, out / f"{name}.png", data=data, formats=formats)
    log.info("%s -> %s/%s.{%s,nc}", name, out, name, ",".join(formats))
