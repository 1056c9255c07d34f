"""Rule `train`: draw a seed chunk's initial networks and train them (thin layer over koopnet.pipeline)."""

from koopnet.pipeline import run_training, start_job_log

start_job_log(snakemake.log[0])  # a failure leaves its traceback in the log
unit = snakemake.params.unit
run_training(unit.point, unit.seeds, snakemake.params.config_seed, snakemake.config, snakemake.output[0])
