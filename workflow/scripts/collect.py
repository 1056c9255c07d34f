"""Rule `collect`: combine a sweep's jobs into results/<sweep>/sweep.nc and timing.nc."""

from koopnet.pipeline import run_collect, start_job_log

start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
stages = snakemake.params.stages
files = iter(snakemake.input)
jobs = snakemake.params.jobs
job_files = [{stage: next(files) for stage in stages} for _ in jobs]
run_collect(snakemake.config, snakemake.wildcards.sweep, jobs, job_files,
            snakemake.output.sweep, snakemake.output.timing)
