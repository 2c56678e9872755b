"""The book's profiles in one place: a profile name gives the configs of every chapter.

==========  ================================================================================
``quick``   the test suite: the whole book in a few minutes on a CPU, numbers meaningless
``default`` ``make book`` and CI: the book on a 2-core CPU within its time budget
            (:mod:`protrep.timing`)
``full``    by hand on a GPU: paper-sized screens and networks
==========  ================================================================================

Every model that chapters 4 and 5 compare (DeepLoc, Paired Cell Inpainting, the
autoencoder) is trained with the **same compute budget** in a profile
(``TrainConfig.budget_tflop``: 3 x forward FLOPs per image x images seen, the same on
every machine), each at the width that the measured quality-against-compute curve shows
best for that budget (``benchmarks/quality_vs_compute.py``; the curves are in chapters 2
and 3):

========  ============  =====================================================================
profile   budget        widths
========  ============  =====================================================================
quick     0.04 TFLOP    0.125 (a few steps)
default   8 TFLOP       DeepLoc 0.125, PCI 0.25, autoencoder 0.5
full      27,000 TFLOP  1.0: the paper's networks; the budget is DeepLoc's 40 epochs over the
                        full profile's 140,000 training cells (4.85 GFLOP per image)
========  ============  =====================================================================

Why these, from the measured curves (``benchmarks/results/quality_vs_compute.csv``, on
an emulation of the slowest CI machine): DeepLoc's test accuracy levels off at 8 TFLOP
(0.925 at 8, 0.923 at 16, width 0.125), 3.2 minutes at the reference rate, half of what
the former 6-epoch run at width 0.25 took for 0.930; at equal compute the narrow network
takes four times the optimisation steps, and wins at every budget. Paired Cell Inpainting
at width 0.25 beats 0.125 on the probe at every budget, with the same held-out AP. The
autoencoder at 0.5 matches 0.25 on held-out AP at 1.7 x less time per TFLOP. Neither
self-supervised model gains held-out AP with more compute in this range (both lose some:
their untrained convolutions already encode a cell's intensity distribution), which
chapter 3 shows.

The background-invariant models of chapter 5 start from the base runs and are fine-tuned
for ``fine_tune_share`` of the budget (``benchmarks/finetune_vs_scratch.py`` compares
this with training them from scratch).
"""

from dataclasses import dataclass

from .config import Config, check_choice, check_int, check_number, check_share
from .data.hpa import HPA_CLASSES
from .data.simulate import SimConfig
from .data.simulate_hpa import HPASimConfig
from .models import ModelConfig
from .training.loop import TrainConfig

__all__ = ["BookProfile", "PROFILES", "book_profile", "yeast_training", "YEAST_MODELS"]

#: The yeast models the book compares, in the order of its tables.
YEAST_MODELS = ("deeploc", "pci", "ae")


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
        Training compute of every compared yeast model (chapters 2, 3; chapter 5's bases).
    widths : dict of str to float
        Width multiplier of each yeast model.
    embed_crops : {"centre", "five"}
        Crops DeepLoc's embeddings average over (chapter 2).
    fine_tune_share : float
        Share of the budget the background-invariant models are fine-tuned for (chapter 5).
    n_boot : int
        Bootstrap replicates of the functional AP (chapters 4, 5).
    huh_proteins : int or None
        ORFs of the Huh 2003 proteome simulation (chapter 4; None: all).
    huh_cells_per_protein : int
    max_per_class : int
        Cells per class in the pairwise SVM grid (chapter 5; Gupta et al.: 1,000).
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
    """

    name: str
    screen: SimConfig
    budget_tflop: float
    widths: dict
    embed_crops: str
    fine_tune_share: float
    n_boot: int
    huh_proteins: int | None
    huh_cells_per_protein: int
    max_per_class: int
    shift_cells_per_protein: int
    hpa_screen: HPASimConfig
    hpa_width: float
    hpa_epochs: int
    hpa_max_steps: int | None
    throughput_images: int

    def __post_init__(self):
        check_choice(self, "embed_crops", ("centre", "five"))
        check_number(self, "budget_tflop", "hpa_width", low=0.0, strict_low=True)
        check_share(self, "fine_tune_share")
        check_int(self, "n_boot", "huh_cells_per_protein", "max_per_class", "shift_cells_per_protein", "hpa_epochs",
                  "throughput_images", low=1)
        check_int(self, "huh_proteins", "hpa_max_steps", low=1, none=True)
        if set(self.widths) != set(YEAST_MODELS) or not all(w > 0 for w in self.widths.values()):
            raise ValueError(f"widths must give a positive width for each of {list(YEAST_MODELS)}, got {self.widths}")
        object.__setattr__(self, "screen", SimConfig.from_dict(self.screen))
        object.__setattr__(self, "hpa_screen", HPASimConfig.from_dict(self.hpa_screen))

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
        name="quick", screen={"n_proteins": 45, "cells_per_protein": 8, "min_per_class": 3}, budget_tflop=0.04,
        widths={"deeploc": 0.125, "pci": 0.125, "ae": 0.125}, embed_crops="centre", fine_tune_share=0.25, n_boot=10,
        huh_proteins=120, huh_cells_per_protein=4, max_per_class=12, shift_cells_per_protein=4,
        hpa_screen={"n_proteins": 48, "images_per_protein": 2, "imaging": {"size": 64}}, hpa_width=0.125,
        hpa_epochs=1, hpa_max_steps=4, throughput_images=4),
    "default": BookProfile(
        name="default", screen={"n_proteins": 450, "cells_per_protein": 40, "min_per_class": 4}, budget_tflop=8.0,
        widths={"deeploc": 0.125, "pci": 0.25, "ae": 0.5}, embed_crops="centre", fine_tune_share=0.25, n_boot=100,
        huh_proteins=1000, huh_cells_per_protein=12, max_per_class=100, shift_cells_per_protein=10,
        hpa_screen={"n_proteins": 300, "images_per_protein": 3, "imaging": {"size": 128}}, hpa_width=0.25,
        hpa_epochs=16, hpa_max_steps=None, throughput_images=32),
    "full": BookProfile(
        name="full", screen={"n_proteins": 2000, "cells_per_protein": 100, "min_per_class": 4},
        budget_tflop=27000.0, widths={"deeploc": 1.0, "pci": 1.0, "ae": 1.0}, embed_crops="five",
        fine_tune_share=0.25, n_boot=200, huh_proteins=None, huh_cells_per_protein=40, max_per_class=1000,
        shift_cells_per_protein=40, hpa_screen={"n_proteins": 2000, "images_per_protein": 6, "imaging": {"size": 512}},
        hpa_width=1.0, hpa_epochs=40, hpa_max_steps=None, throughput_images=512),
}


def book_profile(name, *, seed=0):
    """The :class:`BookProfile` ``name`` with both simulated screens seeded by ``seed``."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    p = PROFILES[name]
    return p.replace(screen=p.screen.replace(seed=seed), hpa_screen=p.hpa_screen.replace(seed=seed))


def yeast_training(model, profile, *, width=None, budget_tflop=None, feature_layer=None, latent_dim=256,
                   **train_options):
    """The model and training configs of a yeast model in a book profile.

    Parameters
    ----------
    model : {"deeploc", "pci", "ae"}
    profile : str or BookProfile
    width, budget_tflop : float, optional
        Override the profile's (None keeps it).
    feature_layer : str, optional
        ``ModelConfig.feature_layer``.
    latent_dim : int
        The autoencoder's bottleneck.
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
    model_config = profile.model_config(model, feature_layer=feature_layer, latent_dim=latent_dim).replace(
        width=width or profile.widths[model])
    options = {"epochs": None, "patience": 0, **train_options}
    return model_config, TrainConfig(budget_tflop=budget_tflop or profile.budget_tflop, **options)
