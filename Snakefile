# koopnet: Koopman-spectral parameter sweeps over recurrent rate networks.
# The stages live in workflow/rules/; the analyses in the koopnet library (src/koopnet).
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# The default sweep, unless config files were given (--configfile replaces it rather than
# adding sweeps to it); `--config key=value` still overrides single keys of the default.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/learning.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),
