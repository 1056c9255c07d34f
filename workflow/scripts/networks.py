"""Rule `networks`: draw a job's networks (thin layer over koopnet.pipeline)."""
from koopnet.pipeline import run_networks

run_networks(
    snakemake.params.point,
    snakemake.params.seeds,
    snakemake.params.config_seed,
    snakemake.output[0],
    threads=snakemake.threads,
    log_path=snakemake.log[0],
)
