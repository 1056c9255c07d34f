# Combine every job of a sweep into one self-describing dataset.


localrules:
    collect,


rule collect:
    input:
        sweep_job_files,
    output:
        sweep="results/{sweep}/sweep.nc",
        timing="results/{sweep}/timing.nc",
    log:
        "logs/{sweep}/collect.log",
    conda:
        "../../environment.yml"
    params:
        code=KOOPNET_SOURCE,
        jobs=lambda wildcards: sweep_jobs(wildcards.sweep),  # rerun when the packing changes
        stages=STAGE_FILES,
    script:
        "../scripts/collect.py"
