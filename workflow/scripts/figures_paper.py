"""Rule `paper_figures`: the poster's figures from config `paper` (thin layer over koopnet.plotting)."""
import logging
from pathlib import Path

from threadpoolctl import threadpool_limits

from koopnet.plotting import paper_figure, save_figure

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
for noisy in ("fontTools", "matplotlib", "PIL"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
log = logging.getLogger("koopnet")
settings = snakemake.params.settings
with threadpool_limits(snakemake.threads):
    for name in snakemake.params.figures:
        fig, data = paper_figure(name, settings.get(name, {}))
        png = Path(next(f for f in snakemake.output if f.endswith(f"/{name}.png")))
        save_figure(fig, png, data=data)
        log.info("%s -> %s", name, png.with_suffix(".{png,pdf,nc}"))
