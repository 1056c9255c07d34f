# Per-job stages: weight ensembles and equilibria -> Koopman spectra and metrics
# (dimension, resilience). A job holds one or more seed chunks of the grid points (sized by
# their estimated CPU time, config `job_cpu_seconds`); each stage file holds one netCDF group
# per chunk. Drawing a job's networks takes milliseconds, so it shares the equilibria job (one
# Python start-up less per job) but keeps its own file.


rule equilibria:
    input:
        weight_files,
        training=training_files,
    output:
        networks=f"{JOB_DIR}/networks.nc",
        equilibria=f"{JOB_DIR}/equilibria.nc",
    log:
        f"{LOG_DIR}/equilibria.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        job=sweep_job,
        config_seed=config["seed"],  # rerun when the seed changes
        settings=config.get("equilibria", {}),  # rerun when the settings change
    script:
        "../scripts/stage.py"


rule spectra:
    input:
        networks=f"{JOB_DIR}/networks.nc",
        equilibria=f"{JOB_DIR}/equilibria.nc",
    output:
        spectra=f"{JOB_DIR}/spectra.nc",
    log:
        f"{LOG_DIR}/spectra.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        job=sweep_job,
        settings=config.get("spectra", {}),
    script:
        "../scripts/stage.py"


rule metrics:
    input:
        networks=f"{JOB_DIR}/networks.nc",
        equilibria=f"{JOB_DIR}/equilibria.nc",
    output:
        metrics=f"{JOB_DIR}/metrics.nc",
    log:
        f"{LOG_DIR}/metrics.log",
    conda:
        "../../environment.yml"
    threads: THREADS
    params:
        code=KOOPNET_SOURCE,
        job=sweep_job,
        settings={
            k: config.get(k, {}) for k in ("dimension", "resilience", "integration")
        },
    script:
        "../scripts/stage.py"
