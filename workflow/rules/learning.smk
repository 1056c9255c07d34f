# Training (sweeps with a `training` section): one job per seed chunk of each grid point draws
# the initial networks and trains them (koopnet.learning, JAX); every checkpoint (`step`) is
# then a grid point of its own for the analysis jobs, which read this file.


rule train:
    output:
        "results/{sweep}/training/{unit}.nc",
    log:
        "logs/{sweep}/training/{unit}.log",
    conda:
        "../../environment.yml"
    # JAX runs on one XLA thread (the same bytes on any machine); parallelism comes from jobs
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=KOOPNET_SOURCE,
        unit=train_unit,
        config_seed=config["seed"],
        settings=lambda wildcards: config["sweeps"][wildcards.sweep].get("training"),
        dimension=config.get("dimension", {}),
    script:
        "../scripts/train.py"
