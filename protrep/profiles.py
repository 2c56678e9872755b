"""The book's profiles in one place: a profile name gives the configs of every chapter.

==========  ================================================================================
``quick``   the test suite: the whole book in a few minutes on a CPU, numbers meaningless
``default`` ``make book`` and CI: the book on a 2-core CPU within its time budget
            (:mod:`protrep.timing`)
``full``    by hand on a GPU: paper-sized screens and networks
==========  ================================================================================

Every model that chapters 4 and 5 compare (DeepLoc, Paired Cell Inpainting, the
autoencoder) is trained with the **same compute budget** per seed in a profile
(``TrainConfig.budget_tflop``: 3 x forward FLOPs per image x images seen, the same on
every machine), each at the width that the measured quality-against-compute curve shows
best for that budget (``benchmarks/quality_vs_compute.py``; the curves are in chapters 2
and 3), and with several **seeds**, which chapter 4 combines in paired intervals:

========  ==================  ===============================================================
profile   budget x seeds      widths
========  ==================  ===============================================================
quick     0.04 TFLOP x 2      0.125 (a few steps)
default   2 TFLOP x 3         DeepLoc 0.125, PIFiA 0.25, PCI 0.25, autoencoder 0.5
full      27,000 TFLOP x 3    1.0: the paper's networks; the budget is DeepLoc's 40 epochs over
                              the full profile's training cells (4.85 GFLOP per image)
========  ==================  ===============================================================

Why these, from the measured curves (``benchmarks/results/quality_vs_compute.csv``, on
an emulation of the slowest CI machine, measured on the former default screen of 450
proteins x 40 cells): DeepLoc's test accuracy is 0.875 at 2 TFLOP, 0.892 at 4, 0.921 at 8
and 0.923 at 16 (width 0.125), while its held-out AP at the four scales moves by less than
0.012 between 2 and 16 TFLOP. Three seeds at 2 TFLOP cost less than one seed at 8 did
and buy the seed variance that every comparison of chapter 4 needs; 2 rather than 3 TFLOP
(the budget before PIFiA and chapter 7) is what fits the book's time budget with a fourth
model trained three times and chapter 7's sweep (3 TFLOP gave DeepLoc a test accuracy of
0.920 +- 0.004 over three seeds; the curve puts 2 TFLOP about three points lower, and the
held-out AP within 0.012). At equal compute the narrow network
takes four times the optimisation steps, and wins at every budget. Paired Cell Inpainting
at width 0.25 beats 0.125 on the probe at every budget, with the same held-out AP. The
autoencoder at 0.5 matches 0.25 on held-out AP at 1.7 x less time per TFLOP. PIFiA runs at
0.25, where a 2-TFLOP run costs about what DeepLoc's does; measured on the default screen
(seed 0, held-out AP at compartments / processes / pathways / complexes): width 0.125
(4.9 epochs, 5.7 % of held-out cells of training proteins named correctly, chance 0.3 %)
0.553 / 0.111 / 0.037 / 0.093, width 0.25 (1.3 epochs, 1.1 %) 0.387 / 0.110 / 0.041 /
0.118; PIFiA's identity task is far from converged at either (the authors train 30 epochs),
which chapters 3 and 4 say. Neither PCI nor the autoencoder gains held-out AP with more
compute in this range (both lose some:
their untrained convolutions already encode a cell's intensity distribution), which
chapter 3 shows.

**Measured on a real slow machine** (fp32 matmul 108-128 GFLOP/s, AVX2, 2 cores; the
emulation of ``benchmarks/slow_machine.sh`` had made this class of machine look about 1.5 x
faster for these convolutional workloads): with 30 cells per protein, 5 CellProfiler cells,
the Huh section's CellProfiler and real-abundance ablation, 100 SVM cells per class and 16
HPA epochs, the default notebooks took 2,400 s there (about 3,000 s at the reference rate).
What was cut to fit, rather than the three seeds or the 2-TFLOP budget: 15 cells per
protein (embedding all cells of every seed is what chapters 2-4 spend most on), 3
CellProfiler cells per protein, the Huh section at 600 ORFs x 6 cells without CellProfiler
or the ablation (both in ``full``), 50 cells per class in chapter 5's SVM grid and 12 HPA
epochs.

The default screen has 600 proteins x 15 cells (9,000 cells), split
by protein 60 / 10 / 30 % into training, validation and test: chapter 4 scores its
headline on the 30 % test proteins, which no model saw and which did not choose any
checkpoint (180 proteins; the validation proteins pick the best checkpoint by loss).

The background-invariant models of chapter 5 start from the first seed's base runs and
are fine-tuned for ``fine_tune_share`` of the budget (``benchmarks/finetune_vs_scratch.py``
compares this with training them from scratch).
"""

from dataclasses import dataclass

from .config import Config, check_choice, check_int, check_number, check_share
from .data.hpa import HPA_CLASSES
from .data.simulate import SimConfig
from .data.simulate_hpa import HPASimConfig
from .data.dataset import protein_identity
from .inference.embed import embed_cells, stretched, write_embeddings
from .models import ModelConfig, model_class
from .training.loop import TrainConfig, train
from .training.runs import load_run, resolve_device, run_path

__all__ = ["BookProfile", "PROFILES", "book_profile", "yeast_training", "seed_runs", "identity_classes",
           "YEAST_MODELS"]

#: The yeast models the book compares, in the order of its tables.
YEAST_MODELS = ("deeploc", "pifia", "pci", "ae")


@dataclass(frozen=True)
class BookProfile(Config):
    """Everything a profile sets, chapter by chapter; notebooks read it and let parameters override it.

    Attributes
    ----------
    name : str
        ``quick``, ``default`` or ``full``.
    screen : SimConfig
        The simulated yeast screen (chapter 1; chapters 2-5 read it).
    budget_tflop : float
        Training compute of every compared yeast model and seed (chapters 2, 3; chapter 5's bases).
    seeds : tuple of int
        Training seeds of every compared yeast model (chapters 2, 3); chapter 4 combines
        them in its paired intervals. Chapters 5 and 6 train from the first seed only.
    widths : dict of str to float
        Width multiplier of each yeast model.
    embed_crops : {"centre", "five"}
        Crops DeepLoc's embeddings average over (chapter 2).
    fine_tune_share : float
        Share of the budget the background-invariant models are fine-tuned for (chapter 5).
    n_boot : int
        Bootstrap replicates of the functional AP (chapters 4, 5).
    cellprofiler_cells : int or None
        Cells per protein measured with CellProfiler's modules (``cp-measure``) for the
        CellProfiler baseline of chapter 4 (None: every cell; its cost per cell is measured
        in ``benchmarks/bench_cellprofiler.py``).
    huh_proteins : int or None
        ORFs of the Huh 2003 proteome simulation (chapter 4; None: all).
    huh_cells_per_protein : int
    huh_cellprofiler_cells : int or None
        Cells per ORF measured with ``cp-measure`` in chapter 4's Huh section (None: the
        section leaves CellProfiler out; its cost is about 60 ms per cell on 2 cores).
    huh_abundance_ablation : bool
        Also render the real abundance of every ORF in that section (the ablation row).
    max_per_class : int
        The first cells per class in chapter 5's published protocol (Gupta et al.: 1,000).
    heldout_per_class : int
        Cells of held-out proteins per class in chapter 5's strict protocol.
    native_per_class : int or None
        Held-out proteins per class rendered in mixed wells for the native test (chapter 5;
        None: all).
    shift_cells_per_protein : int
        Cells per multi-localized protein for the localization shift (chapter 5).
    hpa_screen : HPASimConfig
        The simulated HPA screen (chapter 6).
    hpa_width : float
        Width of the SE-ResNet (chapter 6).
    hpa_epochs : int
    hpa_max_steps : int or None
    throughput_images : int
        512 x 512 images timed for the inference throughput (chapter 6).
    sweep_screen : SimConfig
        The screen drawn at every point of chapter 7's sweep (its knobs set per point).
    sweep_levels : tuple of float
        Levels of ``coupling`` and of ``trait_strength`` (their product is the phase diagram).
    sweep_expression_levels : tuple of float
        Levels of ``function_expression`` swept at the book's coupling and trait strength.
    sweep_retrain : bool
        Train every model again at every point (True) or embed the points with the
        chapter 2/3 runs (False); see :mod:`protrep.sweep`.
    sweep_budget_tflop : float
        Training compute per model and seed when retraining.
    sweep_cellprofiler : {"cp-measure", "like"}
        CellProfiler features at every point: CellProfiler's own measurements
        (``cp-measure``, about 60 ms per cell on 2 cores) on ``sweep_cellprofiler_cells``
        cells per protein, or the vectorised CellProfiler-like features of chapter 4
        (``like``, every cell, a fraction of a second).
    sweep_cellprofiler_cells : int
        Cells per protein measured with ``cp-measure``.
    calibration_proteins : int or None
        ORFs (and simulated proteins) of the calibration to the real proteome (None: all).
    """

    name: str
    screen: SimConfig
    budget_tflop: float
    seeds: tuple
    widths: dict
    embed_crops: str
    fine_tune_share: float
    n_boot: int
    cellprofiler_cells: int | None
    huh_proteins: int | None
    huh_cells_per_protein: int
    huh_cellprofiler_cells: int | None
    huh_abundance_ablation: bool
    max_per_class: int
    heldout_per_class: int
    native_per_class: int | None
    shift_cells_per_protein: int
    hpa_screen: HPASimConfig
    hpa_width: float
    hpa_epochs: int
    hpa_max_steps: int | None
    throughput_images: int
    sweep_screen: SimConfig
    sweep_levels: tuple
    sweep_expression_levels: tuple
    sweep_retrain: bool
    sweep_budget_tflop: float
    sweep_cellprofiler: str
    sweep_cellprofiler_cells: int
    calibration_proteins: int | None

    def __post_init__(self):
        check_choice(self, "embed_crops", ("centre", "five"))
        check_number(self, "budget_tflop", "hpa_width", low=0.0, strict_low=True)
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(k, int) and k >= 0 for k in seeds):
            raise ValueError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        object.__setattr__(self, "seeds", seeds)
        check_share(self, "fine_tune_share")
        check_int(self, "n_boot", "huh_cells_per_protein", "max_per_class", "heldout_per_class",
                  "shift_cells_per_protein", "hpa_epochs",
                  "throughput_images", low=1)
        check_int(self, "huh_proteins", "hpa_max_steps", "cellprofiler_cells", "huh_cellprofiler_cells",
                  "native_per_class", low=1,
                  none=True)
        if set(self.widths) != set(YEAST_MODELS) or not all(w > 0 for w in self.widths.values()):
            raise ValueError(f"widths must give a positive width for each of {list(YEAST_MODELS)}, got {self.widths}")
        object.__setattr__(self, "screen", SimConfig.from_dict(self.screen))
        object.__setattr__(self, "hpa_screen", HPASimConfig.from_dict(self.hpa_screen))
        object.__setattr__(self, "sweep_screen", SimConfig.from_dict(self.sweep_screen))
        for name in ("sweep_levels", "sweep_expression_levels"):
            levels = tuple(float(v) for v in getattr(self, name))
            if not levels or not all(0 <= v <= 1 for v in levels):
                raise ValueError(f"{name} must be knob values in [0, 1], got {getattr(self, name)}")
            object.__setattr__(self, name, levels)
        check_number(self, "sweep_budget_tflop", low=0.0, strict_low=True)
        check_int(self, "sweep_cellprofiler_cells", low=1)
        check_choice(self, "sweep_cellprofiler", ("cp-measure", "like"))
        check_int(self, "calibration_proteins", low=60, none=True)

    def model_config(self, model, **overrides):
        """The :class:`~protrep.models.ModelConfig` of a yeast model (or ``"seresnet"``) in this profile."""
        if model == "seresnet":
            return ModelConfig(name="seresnet", in_channels=4, n_classes=len(HPA_CLASSES),
                               image_size=self.hpa_screen.imaging.size, width=self.hpa_width, **overrides)
        if model not in YEAST_MODELS:
            raise ValueError(f"model must be one of {list(YEAST_MODELS) + ['seresnet']}, got {model!r}")
        return ModelConfig(name=model, width=self.widths[model], **overrides)


PROFILES = {
    "quick": BookProfile(
        name="quick",
        screen={"n_proteins": 60, "cells_per_protein": 6, "min_per_class": 4, "split_fractions": (0.4, 0.1, 0.5)},
        budget_tflop=0.04, seeds=(0, 1), widths={"deeploc": 0.125, "pifia": 0.125, "pci": 0.125, "ae": 0.125}, embed_crops="centre",
        fine_tune_share=0.25, n_boot=10, cellprofiler_cells=2,
        huh_proteins=120, huh_cells_per_protein=4, huh_cellprofiler_cells=None, huh_abundance_ablation=True,
        max_per_class=12, heldout_per_class=24, native_per_class=2, shift_cells_per_protein=4,
        hpa_screen={"n_proteins": 48, "images_per_protein": 2, "imaging": {"size": 64}}, hpa_width=0.125,
        hpa_epochs=1, hpa_max_steps=4, throughput_images=4,
        sweep_screen={"n_proteins": 45, "cells_per_protein": 4, "min_per_class": 3, "seed": 100,
                      "split_fractions": (0.6, 0.1, 0.3)},
        sweep_levels=(0.0, 1.0), sweep_expression_levels=(1.0,), sweep_retrain=False, sweep_budget_tflop=0.01,
        sweep_cellprofiler="like", sweep_cellprofiler_cells=1, calibration_proteins=120),
    "default": BookProfile(
        name="default",
        screen={"n_proteins": 600, "cells_per_protein": 15, "min_per_class": 4, "split_fractions": (0.6, 0.1, 0.3)},
        budget_tflop=2.0, seeds=(0, 1, 2), widths={"deeploc": 0.125, "pifia": 0.25, "pci": 0.25, "ae": 0.5}, embed_crops="centre",
        fine_tune_share=0.25, n_boot=100, cellprofiler_cells=3,
        huh_proteins=600, huh_cells_per_protein=6, huh_cellprofiler_cells=None, huh_abundance_ablation=False,
        max_per_class=50, heldout_per_class=75, native_per_class=6, shift_cells_per_protein=10,
        hpa_screen={"n_proteins": 300, "images_per_protein": 3, "imaging": {"size": 128}}, hpa_width=0.25,
        hpa_epochs=12, hpa_max_steps=None, throughput_images=32,
        sweep_screen={"n_proteins": 150, "cells_per_protein": 5, "min_per_class": 4, "seed": 100,
                      "split_fractions": (0.6, 0.1, 0.3)},
        sweep_levels=(0.0, 1.0), sweep_expression_levels=(1.0,), sweep_retrain=False, sweep_budget_tflop=2.0,
        sweep_cellprofiler="like", sweep_cellprofiler_cells=2, calibration_proteins=1000),
    "full": BookProfile(
        name="full",
        screen={"n_proteins": 2000, "cells_per_protein": 100, "min_per_class": 4, "split_fractions": (0.6, 0.1, 0.3)},
        budget_tflop=27000.0, seeds=(0, 1, 2), widths={"deeploc": 1.0, "pifia": 1.0, "pci": 1.0, "ae": 1.0}, embed_crops="five",
        fine_tune_share=0.25, n_boot=200, cellprofiler_cells=None,
        huh_proteins=None, huh_cells_per_protein=40, huh_cellprofiler_cells=10, huh_abundance_ablation=True,
        max_per_class=1000, heldout_per_class=1000, native_per_class=None, shift_cells_per_protein=40,
        hpa_screen={"n_proteins": 2000, "images_per_protein": 6, "imaging": {"size": 512}},
        hpa_width=1.0, hpa_epochs=40, hpa_max_steps=None, throughput_images=512,
        sweep_screen={"n_proteins": 600, "cells_per_protein": 30, "min_per_class": 4, "seed": 100,
                      "split_fractions": (0.6, 0.1, 0.3)},
        sweep_levels=(0.0, 0.5, 1.0), sweep_expression_levels=(0.5, 1.0), sweep_retrain=True,
        sweep_budget_tflop=100.0, sweep_cellprofiler="cp-measure", sweep_cellprofiler_cells=10, calibration_proteins=None),
}


def book_profile(name, *, seed=0):
    """The :class:`BookProfile` ``name`` with both simulated screens seeded by ``seed``."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    p = PROFILES[name]
    return p.replace(screen=p.screen.replace(seed=seed), hpa_screen=p.hpa_screen.replace(seed=seed))


def yeast_training(model, profile, *, width=None, budget_tflop=None, feature_layer=None, latent_dim=256,
                   n_classes=None, **train_options):
    """The model and training configs of a yeast model in a book profile.

    Parameters
    ----------
    model : {"deeploc", "pifia", "pci", "ae"}
    profile : str or BookProfile
    width, budget_tflop : float, optional
        Override the profile's (None keeps it).
    feature_layer : str, optional
        ``ModelConfig.feature_layer``.
    latent_dim : int
        The autoencoder's bottleneck.
    n_classes : int, optional
        ``ModelConfig.n_classes``: PIFiA's number of training proteins
        (:func:`identity_classes`); None keeps the 15 localization classes.
    **train_options
        Any other :class:`~protrep.training.loop.TrainConfig` field (``seed``, ``device``,
        ``lr``, ``batch_size``, ``background``, ``init_from``, ...).

    Returns
    -------
    (ModelConfig, TrainConfig)
        No epoch limit and no early stopping: the budget ends the run, so every model gets
        exactly the same compute.
    """
    profile = profile if isinstance(profile, BookProfile) else book_profile(profile)
    if model not in YEAST_MODELS:
        raise ValueError(f"model must be one of {list(YEAST_MODELS)}, got {model!r}")
    model_config = profile.model_config(model, feature_layer=feature_layer, latent_dim=latent_dim,
                                        **({} if n_classes is None else {"n_classes": n_classes}))
    model_config = model_config.replace(width=width or profile.widths[model])
    options = {"epochs": None, "patience": 0, **train_options}
    return model_config, TrainConfig(budget_tflop=budget_tflop or profile.budget_tflop, **options)


def identity_classes(model, dataset):
    """PIFiA's number of classes on ``dataset`` (its training proteins); None for the other models."""
    if model_class(model).target != "protein":
        return None
    return len(protein_identity(dataset).classes)


def seed_runs(model, profile, dataset, data_dir, *, seeds=None, embed_crops="centre", device="auto", progress=True,
              **options):
    """Train a yeast model once per training seed of the profile and write each run's embeddings.

    Each seed's run lives in :func:`~protrep.training.runs.run_path` ``(data_dir, model,
    profile.name, seed)``; a finished run with the same configuration is reused (resume).
    Every run's protein embeddings are written beside it (``embeddings.proteins.csv.gz``)
    for chapter 4, and the first seed's cell embeddings too (``embeddings.csv.gz``;
    ``protrep embed`` writes them for any run).

    Parameters
    ----------
    model : {"deeploc", "pifia", "pci", "ae"}
    profile : str or BookProfile
    dataset : Dataset
    data_dir : str or Path
    seeds : sequence of int, optional
        The profile's ``seeds`` if None.
    embed_crops : {"centre", "five"}
        Crops DeepLoc's features average over (:func:`protrep.inference.embed.embed_cells`).
    device : str
    progress : bool
    **options
        Passed to :func:`yeast_training` (``width``, ``budget_tflop``, ``lr``, ...).

    Returns
    -------
    dict
        ``{seed: {"history": DataFrame, "run": Path, "features": (n_cells, d) array,
        "protein_table": DataFrame}}``.
    """
    profile = profile if isinstance(profile, BookProfile) else book_profile(profile)
    dev = resolve_device(device)
    out = {}
    seeds = list(profile.seeds if seeds is None else seeds)
    images = stretched(dataset) if len(seeds) > 1 else dataset  # one stretch for every seed's embedding
    for s in seeds:
        model_config, train_config = yeast_training(model, profile, seed=int(s), device=device,
                                                    n_classes=identity_classes(model, dataset), **options)
        run = run_path(data_dir, model, profile.name, seed=int(s))
        history = train(model_config, train_config, dataset, run, resume=True, overwrite=True, progress=progress)
        net, _ = load_run(run, device=dev)
        features = embed_cells(net, images, crops=embed_crops, device=dev)
        _, protein_table = write_embeddings(dataset, features, run / "embeddings.csv.gz", cells=s == seeds[0])
        out[int(s)] = {"history": history, "run": run, "features": features, "protein_table": protein_table}
    return out
