"""Training settings of the book's profiles for the yeast models, in one place.

Every model that chapters 4 and 5 compare (DeepLoc, Paired Cell Inpainting, the
autoencoder) is trained with the **same compute budget** in a profile
(``TrainConfig.budget_tflop``: 3 x forward FLOPs per image x images seen, the same on every
machine), each at the width that the measured quality-against-compute curve shows best
for that budget (``benchmarks/quality_vs_compute.py``; the curves are in chapters 2 and 3):

========  ============  =====================================================================
profile   budget        widths
========  ============  =====================================================================
quick     0.04 TFLOP    0.125 (the test suite: a few steps, numbers meaningless)
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
for ``FINE_TUNE_SHARE`` of the budget (``benchmarks/finetune_vs_scratch.py`` compares
this with training them from scratch).
"""

from .models import ModelConfig
from .train import TrainConfig

__all__ = ["BUDGET_TFLOP", "WIDTHS", "FINE_TUNE_SHARE", "yeast_training"]

#: Training compute of every compared yeast model, TFLOP, per profile.
BUDGET_TFLOP = {"quick": 0.04, "default": 8.0, "full": 27000.0}

#: Width multiplier of each model per profile.
WIDTHS = {
    "quick": {"deeploc": 0.125, "pci": 0.125, "ae": 0.125},
    "default": {"deeploc": 0.125, "pci": 0.25, "ae": 0.5},
    "full": {"deeploc": 1.0, "pci": 1.0, "ae": 1.0},
}

#: Share of the budget the background-invariant models are fine-tuned for (chapter 5).
FINE_TUNE_SHARE = 0.25


def yeast_training(model, profile, *, width=None, budget_tflop=None, feature_layer=None, latent_dim=256,
                   **train_options):
    """The model and training configs of ``model`` in a book profile.

    Parameters
    ----------
    model : {"deeploc", "pci", "ae"}
    profile : {"quick", "default", "full"}
    width, budget_tflop : float, optional
        Override the profile's (None keeps it).
    feature_layer : str, optional
        ``ModelConfig.feature_layer``.
    latent_dim : int
        The autoencoder's bottleneck.
    **train_options
        Any other :class:`~protrep.train.TrainConfig` field (``seed``, ``device``, ``lr``,
        ``batch_size``, ``background``, ``init_from``, ...).

    Returns
    -------
    (ModelConfig, TrainConfig)
        No epoch limit and no early stopping: the budget ends the run, so every model gets
        exactly the same compute.
    """
    if profile not in BUDGET_TFLOP:
        raise ValueError(f"profile must be one of {sorted(BUDGET_TFLOP)}, got {profile!r}")
    if model not in WIDTHS[profile]:
        raise ValueError(f"model must be one of {sorted(WIDTHS[profile])}, got {model!r}")
    model_config = ModelConfig(name=model, width=width or WIDTHS[profile][model], feature_layer=feature_layer,
                               latent_dim=latent_dim)
    options = {"epochs": None, "patience": 0, **train_options}
    return model_config, TrainConfig(budget_tflop=budget_tflop or BUDGET_TFLOP[profile], **options)
