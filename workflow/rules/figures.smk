# Figures: every sweep's figures (from its sweep.nc alone) and the poster's figures (config `paper`).
# The plotting code is koopnet.plotting; the scripts are thin layers over it.

PAPER_FIGURES = (
    "cubic_neuron",
    "linear_network",
    "feedforward",
    "recurrent",
    "perturbative",
)
PAPER_DIR = "results/paper"
# every file of the poster figures: PNG, PDF and the plotted data as netCDF
PAPER_FIGURE_FILES = [
    f"{PAPER_DIR}/{name}.{ext}"
    for name in PAPER_FIGURES
    for ext in ("png", "pdf", "nc")
]

if "paper" in GRIDS:
    raise WorkflowError(
        "Invalid config: the sweep name 'paper' is reserved for the poster figures"
    )


rule sweep_figures:
    input:
        sweep="results/{sweep}/sweep.nc",
        timing="results/{sweep}/timing.nc",  # CPU per stage (not byte-reproducible)
    output:
        report(
            directory("results/{sweep}/figures"),
            patterns=["{name}.png"],
            category="Sweep figures",
            subcategory="{sweep}",
            labels={"sweep": "{sweep}", "figure": "{name}"},
            caption="../report/sweep_figures.rst",
        ),
    log:
        "logs/{sweep}/figures.log",
    conda:
        "../../environment.yml"
    params:
        code=KOOPNET_SOURCE,
        formats=config["figure_formats"],  # PNG, and PDF on request (a second render)
    script:
        "../scripts/figures_sweep.py"


rule paper_figures:
    output:
        report(
            f"{PAPER_DIR}/cubic_neuron.png",
            category="Poster figures",
            labels={"figure": "1 single cubic neuron"},
            caption="../report/cubic_neuron.rst",
        ),
        report(
            f"{PAPER_DIR}/linear_network.png",
            category="Poster figures",
            labels={"figure": "2 linear recurrent network"},
            caption="../report/linear_network.rst",
        ),
        report(
            f"{PAPER_DIR}/feedforward.png",
            category="Poster figures",
            labels={"figure": "3 feedforward network"},
            caption="../report/feedforward.rst",
        ),
        report(
            f"{PAPER_DIR}/recurrent.png",
            category="Poster figures",
            labels={"figure": "4 towards nonlinear recurrence"},
            caption="../report/recurrent.rst",
        ),
        report(
            f"{PAPER_DIR}/perturbative.png",
            category="Poster figures",
            labels={"figure": "5 perturbative eigenfunctions of W_ff + eps W_rec"},
            caption="../report/perturbative.rst",
        ),
        [f for f in PAPER_FIGURE_FILES if not f.endswith(".png")],
    log:
        "logs/paper/figures.log",
    conda:
        "../../environment.yml"
    params:
        code=KOOPNET_SOURCE,
        figures=PAPER_FIGURES,
        settings=config["paper"],  # rerun when the figure parameters change
    script:
        "../scripts/figures_paper.py"
