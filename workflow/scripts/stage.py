"""Rules `equilibria`, `spectra`, `metrics`: one analysis stage on a job's networks."""
import logging

from koopnet.pipeline import run_stage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)
upstream = {k: v for k, v in snakemake.input.items() if k != "networks"}
run_stage(
    snakemake.rule,
    snakemake.params.activation,
    snakemake.input.networks,
    upstream,
    snakemake.config,
    snakemake.output[0],
    threads=snakemake.threads,
)
