# Per-job stages: weight ensembles and equilibria -> Koopman spectra and metrics
# (dimension, resilience). Drawing a job's networks takes milliseconds, so it shares the
# equilibria job (one Python start-up less per job) but keeps its own file.


rule equilibria:
    input:
        weight_file,
    output:
        networks=f"{CHUNK_DIR}/networks.nc",
        equilibria=f"{CHUNK_DIR}/equilibria.nc",
    log:
        f"{LOG_DIR}/equilibria.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        point=sweep_point,
        seeds=seed_indices,
        config_seed=config["seed"],
        activation=activation,
        settings=config.get("equilibria", {}),  # rerun when the settings change
    script:
        "../scripts/equilibria.py"


rule spectra:
    input:
        networks=f"{CHUNK_DIR}/networks.nc",
        equilibria=f"{CHUNK_DIR}/equilibria.nc",
    output:
        f"{CHUNK_DIR}/spectra.nc",
    log:
        f"{LOG_DIR}/spectra.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        activation=activation,
        settings=config.get("spectra", {}),
    script:
        "../scripts/stage.py"


rule metrics:
    input:
        networks=f"{CHUNK_DIR}/networks.nc",
        equilibria=f"{CHUNK_DIR}/equilibria.nc",
    output:
        f"{CHUNK_DIR}/metrics.nc",
    log:
        f"{LOG_DIR}/metrics.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        activation=activation,
        settings={k: config.get(k, {}) for k in ("dimension", "resilience")},
    script:
        "../scripts/stage.py"
