"""Rules `equilibria`, `spectra`, `metrics`: one analysis stage on every seed chunk of a job."""

from koopnet.pipeline import run_job, start_job_log

start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
run_job(
    snakemake.rule,
    snakemake.params.job,
    snakemake.config,
    dict(snakemake.input.items()),
    dict(snakemake.output.items()),
    threads=snakemake.threads,
)
