# Helpers shared by all rules: config validation, the sweep grid, file paths.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from koopnet.config import (
    check_resources,
    check_stage_settings,
    fill_defaults,
    load_schema,
    schema_errors,
)
from koopnet.ensembles import WeightFileError
from koopnet.pipeline import STAGES
from koopnet.sweep import (
    ConfigError,
    expand_sweep,
    plan_jobs,
    seed_chunks,
    source_hash,
    training_path,
    training_units,
)


def _validate_config():
    """Schema validation (fills defaults) and the settings' cross-key constraints; errors name the key path."""
    schema_file = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    schema = load_schema(schema_file)
    lines = schema_errors(config, schema)
    if lines:
        detail = "\n".join(lines)
        raise WorkflowError(f"Invalid config ({schema_file.name}):\n{detail}")
    # the defaults, as snakemake.utils.validate would fill them, without parsing the schema again
    fill_defaults(config, schema)
    try:
        check_stage_settings(config)
    except ConfigError as err:
        raise WorkflowError(f"Invalid config: {err}") from None


_validate_config()


def _expand_all_sweeps():
    grids, sizes = {}, {}
    for name, sweep in config["sweeps"].items():
        try:
            points = expand_sweep(name, sweep, base_dir=Path.cwd())
        except (ConfigError, WeightFileError) as err:
            raise WorkflowError(f"Invalid config: {err}") from None
        chunks = seed_chunks(sweep.get("seeds", 1), sweep.get("seeds_per_job", 1))
        jobs = plan_jobs(points, chunks, config.get("job_cpu_seconds", 30), config)
        grids[name] = {job.id: job for job in jobs}
        TRAIN_UNITS[name] = {u.name: u for u in training_units(points, chunks)}
        sizes[name] = ([p.n_units for p in points], max(map(len, chunks)))
    try:  # memory and time of the largest seed chunk, before the DAG is built
        for warning in check_resources(config, sizes):
            logger.warning(f"Warning: {warning}")
    except ConfigError as err:
        raise WorkflowError(f"Invalid config: {err}") from None
    return grids


# trained sweeps: sweep name -> {unit name: JobUnit} of the step-0 points, one `train` job each
TRAIN_UNITS = {}
# sweep name -> {job id: SweepJob}: a job is one or more consecutive seed chunks of the grid
# points (koopnet.sweep.plan_jobs), sized by their estimated CPU time
GRIDS = _expand_all_sweeps()
THREADS = config.get("threads", 1)
# a parameter of every analysis job: editing the library reruns what it computed
KOOPNET_SOURCE = source_hash()
# one file per stage and job, one netCDF group per seed chunk
STAGE_FILES = ("networks", *STAGES)
JOB_DIR = "results/{sweep}/jobs/{job}"
LOG_DIR = "logs/{sweep}/jobs/{job}"


wildcard_constraints:
    sweep=r"[A-Za-z0-9_-]+",
    job=r"[^/]+",
    unit=r"[^/]+",


def sweep_job(wildcards):
    return GRIDS[wildcards.sweep][wildcards.job]


def weight_files(wildcards):
    """The user weight files a job reads (file ensemble), so that editing one reruns the job."""
    values = [unit.point.values for unit in sweep_job(wildcards).units]
    return sorted({v["path"] for v in values if v["ensemble"] == "file"})


def training_files(wildcards):
    """The `train` outputs a job's trained units read (koopnet.sweep.training_path)."""
    units = sweep_job(wildcards).units
    return sorted({training_path(u) for u in units if u.point.train_id})


def train_unit(wildcards):
    return TRAIN_UNITS[wildcards.sweep][wildcards.unit]


def sweep_jobs(sweep):
    """Every job of a sweep, in grid order."""
    return list(GRIDS[sweep].values())


def sweep_job_files(wildcards):
    """Every job's stage files of a sweep, as a flat list (collect's input)."""
    return [
        f"{JOB_DIR}/{stage}.nc".format(sweep=wildcards.sweep, job=job.id)
        for job in sweep_jobs(wildcards.sweep)
        for stage in STAGE_FILES
    ]


def all_targets():
    targets = [f"results/{name}/sweep.nc" for name in GRIDS]
    targets += [f"results/{name}/figures" for name in GRIDS]  # rule sweep_figures
    if config.get("paper", {}).get("in_default_target"):
        targets += PAPER_FIGURE_FILES  # rule paper_figures (workflow/rules/figures.smk)
    return targets
