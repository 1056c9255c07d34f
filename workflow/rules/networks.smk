# Draw (or read) the networks of one job: a chunk of seeds of one grid point.


rule networks:
    input:
        weight_file,
    output:
        f"{CHUNK_DIR}/networks.nc",
    log:
        f"{LOG_DIR}/networks.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        point=sweep_point,
        seeds=seed_indices,
        config_seed=config["seed"],
    script:
        "../scripts/networks.py"
