"""Models of single-cell protein localization, in a registry keyed by the papers' names.

Every model is built from a :class:`ModelConfig` by :func:`build_model` and is an
``nn.Module`` with one interface, so that one training loop and one feature extractor
serve them all:

- ``forward(batch) -> dict`` with at least ``"loss"`` (a scalar tensor). ``batch`` holds
  ``"image"`` float32 ``(B, C, H, W)``, channel 0 the protein (GFP) and the others the
  markers (RFP), already normalized per cell and channel to about [0, 1]; ``"label"``
  int64 ``(B,)``, the class index or -1 where unknown; and ``"partner"``, float32 like
  ``"image"``: another cell of the same protein.
- ``embed(x, layer=None) -> (B, d)``: the features of ``config.feature_layer`` (or of
  ``layer``), with eval-mode semantics; the caller sets ``eval()`` and ``no_grad``.
- ``config``, ``train_crop`` (the side of the random crops the loop cuts before calling
  ``forward`` in training, or None for the whole image) and ``feature_layers``.

Registered models:

======== ============================================== ==========================
name     model                                          default feature layer
======== ============================================== ==========================
deeploc  :class:`~protrep.models.deeploc.DeepLoc`       ``"fc2"``
pci      :class:`~protrep.models.pci.PairedCellInpainting` ``"conv4"``
ae       :class:`~protrep.models.ae.ConvAutoencoder`    ``"bottleneck"``
pifia    :class:`~protrep.models.pifia.PIFiA`           ``"fc2"``
seresnet :class:`~protrep.models.seresnet.SEResNet`     ``"pool"``
======== ============================================== ==========================

PIFiA (Razdaibiedina et al. 2024) is trained on protein identity: its class attribute
``target = "protein"`` tells the training loop to relabel the cells by protein
(:func:`protrep.data.dataset.protein_identity`); every other model has ``target =
"localization"`` (classifiers) or uses no labels.

SE-ResNet (Chen 2020) is the multi-label classifier of the Human Protein Atlas track: its
batches may carry ``"multilabel"``, float32 ``(B, n_classes)`` multi-hot, and it also takes
the HPA channel order (red, green, blue, yellow; see ``channel_orders``).

Conventions shared by all models (the helpers below implement them):

- Width: every layer's channel count is ``max(8, round(c * width))``, rounding halves
  up, so one architecture comes in sizes; parameter counts scale about as ``width**2``.
- Features of a convolutional layer are the spatial maximum of its activations, one
  value per channel, as in paired cell inpainting (Lu et al. 2019); the same pooling for
  every model keeps comparisons between layers and models free of a pooling choice.
- Initialization: He (Kaiming) normal, fan-in, for every convolution and linear weight,
  with ReLU's gain, or gain 1 for the layers whose output is not rectified (logits,
  reconstructions, the autoencoder's bottleneck); biases zero; batch norm weight 1 and
  bias 0. The draws come from a ``torch.Generator`` seeded with ``seed`` when one is
  given, so building a model does not touch torch's global random state; with
  ``seed=None`` they come from the global one, as in plain PyTorch.
- No dropout and no other randomness in ``forward``; on CPU every operation used is
  deterministic. Only shapes, never values, steer control flow, so the models run under
  ``torch.autocast`` and with ``channels_last`` tensors unchanged.

Shared pieces (the config, the base class, the helpers above) live in
:mod:`protrep.models.base`, which the model modules import; this package's ``__init__``
only assembles the registry.
"""

from collections.abc import Callable

import torch
from torch import nn

from .ae import ConvAutoencoder
from .base import Model, ModelConfig, count_parameters
from .deeploc import DeepLoc, five_crops
from .pci import PairedCellInpainting
from .pifia import PIFiA
from .seresnet import SEResNet

__all__ = [
    "ModelConfig",
    "Model",
    "REGISTRY",
    "build_model",
    "model_class",
    "count_parameters",
    "training_flops",
    "DeepLoc",
    "PairedCellInpainting",
    "ConvAutoencoder",
    "SEResNet",
    "PIFiA",
    "five_crops",
]


REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "deeploc": DeepLoc,
    "pci": PairedCellInpainting,
    "ae": ConvAutoencoder,
    "seresnet": SEResNet,
    "pifia": PIFiA,
}


def model_class(name):
    """The registered model class ``name`` (its capabilities, e.g. ``is_classifier``, without building it)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models are {sorted(REGISTRY)}")
    return REGISTRY[name]


def build_model(config, *, seed=None):
    """Build the registered model that ``config.name`` names.

    Parameters
    ----------
    config : ModelConfig
    seed : int or None, keyword-only
        Seed of the weight initialization; None draws from torch's global generator.

    Returns
    -------
    nn.Module
        In training mode, on torch's default device, float32.
    """
    if config.name not in REGISTRY:
        raise ValueError(f"unknown model {config.name!r}; known models are {sorted(REGISTRY)}")
    return REGISTRY[config.name](config, seed=seed)


def training_flops(config, *, batch_size=2):
    """Floating-point operations to train on one image: 3 x one forward pass.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
    products) on the inputs the training loop feeds the model: training crops of
    ``train_crop`` (DeepLoc's 60 x 60) or whole images, with a partner cell where the model
    takes one. The backward pass is counted as twice the forward, the usual convention.
    Machine-independent, so a compute budget in FLOPs gives the same run on every machine.

    Parameters
    ----------
    config : ModelConfig
    batch_size : int, keyword-only
        Images of the counted batch (batch norm needs more than one); the count is per image.

    Returns
    -------
    float
        FLOPs per training image.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config, seed=0)
    side = model.train_crop or config.image_size
    g = torch.Generator().manual_seed(0)
    shape = (batch_size, config.in_channels, side, side)
    batch = {"image": torch.rand(shape, generator=g), "partner": torch.rand(shape, generator=g),
             "label": torch.zeros(batch_size, dtype=torch.int64)}
    if config.name == "seresnet":
        batch["multilabel"] = torch.zeros(batch_size, config.n_classes)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(batch)
    return 3.0 * counter.get_total_flops() / batch_size

