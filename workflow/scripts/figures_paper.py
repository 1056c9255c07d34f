"""Rule `paper_figures`: the poster's figures from config `paper` (thin layer over koopnet.plotting)."""
from pathlib import Path

from threadpoolctl import threadpool_limits

from koopnet.pipeline import start_job_log
from koopnet.plotting import paper_figure, save_figure

log = start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
settings = snakemake.params.settings
with threadpool_limits(snakemake.threads):
    for name in snakemake.params.figures:
        fig, data = paper_figure(name, settings.get(name, {}))
        png = Path(next(f for f in snakemake.output if f.endswith(f"/{name}.png")))
        save_figure(fig, png, data=data)
        log.info("%s -> %s", name, png.with_suffix(".{png,pdf,nc}"))
