# Draw (or read) the networks of one job: a chunk of seeds of one grid point.
# Drawing takes milliseconds, so it runs inside the Snakemake process (`run:`) instead of
# paying a Python start-up per job; on a cluster it runs in the job like any other rule.
from koopnet.pipeline import run_networks


rule networks:
    output:
        f"{CHUNK_DIR}/networks.nc",
    log:
        f"{LOG_DIR}/networks.log",
    params:
        point=sweep_point,
        seeds=seed_indices,
        config_seed=config["seed"],
    threads: THREADS
    run:
        run_networks(params.point, params.seeds, params.config_seed, output[0], threads, log[0])
