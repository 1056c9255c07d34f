"""Rule `equilibria`: draw a job's networks, then find their equilibria (thin layer over koopnet.pipeline)."""

from koopnet.pipeline import run_networks, run_stage, start_job_log

start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
run_networks(
    snakemake.params.point,
    snakemake.params.seeds,
    snakemake.params.config_seed,
    snakemake.output.networks,
    threads=snakemake.threads,
)
run_stage(
    "equilibria",
    snakemake.params.activation,
    snakemake.output.networks,
    {},
    snakemake.config,
    snakemake.output.equilibria,
    threads=snakemake.threads,
)
