"""Rules `equilibria`, `spectra`, `metrics`: one analysis stage on a job's networks."""

from koopnet.pipeline import run_stage, start_job_log

start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
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
