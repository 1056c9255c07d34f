# Helpers shared by all rules: config validation, the sweep grid, file paths.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

import yaml

from koopnet.config import check_resources, check_stage_settings, schema_errors
from koopnet.ensembles import WeightFileError
from koopnet.pipeline import STAGES
from koopnet.sweep import ConfigError, expand_sweep, seed_chunks, source_hash


def _validate_config():
    """Schema validation (fills defaults) and the settings' cross-key constraints; errors name the key path."""
    schema_file = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    lines = schema_errors(config, yaml.safe_load(schema_file.read_text()))
    if lines:
        detail = "\n".join(lines)
        raise WorkflowError(f"Invalid config ({schema_file.name}):\n{detail}")
    validate(config, "../schemas/config.schema.yaml")  # fills the defaults
    try:
        check_stage_settings(config)
    except ConfigError as err:
        raise WorkflowError(f"Invalid config: {err}") from None


_validate_config()


def _expand_all_sweeps():
    grids = {}
    for name, sweep in config["sweeps"].items():
        try:
            points = expand_sweep(name, sweep, base_dir=Path.cwd())
        except (ConfigError, WeightFileError) as err:
            raise WorkflowError(f"Invalid config: {err}") from None
        chunks = seed_chunks(sweep.get("seeds", 1), sweep.get("seeds_per_job", 1))
        grids[name] = ({p.id: p for p in points}, chunks)
    sizes = {
        name: ([p.n_units for p in points.values()], max(map(len, chunks)))
        for name, (points, chunks) in grids.items()
    }
    try:  # memory and time of the largest job, before the DAG is built
        for warning in check_resources(config, sizes):
            logger.warning(f"Warning: {warning}")
    except ConfigError as err:
        raise WorkflowError(f"Invalid config: {err}") from None
    return grids


# sweep name -> ({point id: SweepPoint}, [seed index ranges, one per job])
GRIDS = _expand_all_sweeps()
THREADS = config.get("threads", 1)
# a parameter of every analysis job: editing the library reruns what it computed
KOOPNET_SOURCE = source_hash()
STAGE_FILES = ("networks", *STAGES)  # one file per stage and job
CHUNK_DIR = "results/{sweep}/points/{point}/chunk{chunk}"
LOG_DIR = "logs/{sweep}/points/{point}/chunk{chunk}"


wildcard_constraints:
    sweep=r"[A-Za-z0-9_-]+",
    point=r"[^/]+",
    chunk=r"\d+",


def sweep_point(wildcards):
    return GRIDS[wildcards.sweep][0][wildcards.point]


def seed_indices(wildcards):
    return list(GRIDS[wildcards.sweep][1][int(wildcards.chunk)])


def weight_file(wildcards):
    """The user weight file a job reads (file ensemble), so that editing it reruns the job."""
    values = sweep_point(wildcards).values
    return [values["path"]] if values["ensemble"] == "file" else []


def activation(wildcards):
    return sweep_point(wildcards).values["activation"]


def sweep_jobs(sweep):
    """(point, chunk index) of every job of a sweep, in a fixed order."""
    points, chunks = GRIDS[sweep]
    return [(p, c) for p in points.values() for c in range(len(chunks))]


def sweep_chunk_files(wildcards):
    """Every job's stage files of a sweep, as a flat list (collect's input)."""
    return [
        f"{CHUNK_DIR}/{stage}.nc".format(sweep=wildcards.sweep, point=p.id, chunk=c)
        for p, c in sweep_jobs(wildcards.sweep)
        for stage in STAGE_FILES
    ]


def all_targets():
    targets = [f"results/{name}/sweep.nc" for name in GRIDS]
    targets += [f"results/{name}/figures" for name in GRIDS]  # rule sweep_figures
    if config.get("paper", {}).get("in_default_target"):
        targets += PAPER_FIGURE_FILES  # rule paper_figures (workflow/rules/figures.smk)
    return targets
