# Combine every job of a sweep into one self-describing dataset.


localrules:
    collect,


rule collect:
    input:
        sweep_chunk_files,
    output:
        "results/{sweep}/sweep.nc",
    log:
        "logs/{sweep}/collect.log",
    conda:
        "../../environment.yml"
    params:
        code=KOOPNET_SOURCE,
        jobs=lambda wildcards: sweep_jobs(wildcards.sweep),
        stages=STAGE_FILES,
    script:
        "../scripts/collect.py"
