"""Rule `networks`: draw a job's networks (thin layer over koopnet.pipeline)."""
import logging

from koopnet.pipeline import run_networks

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
run_networks(
    snakemake.params.point,
    snakemake.params.seeds,
    snakemake.params.config_seed,
    snakemake.output[0],
    threads=snakemake.threads,
)
