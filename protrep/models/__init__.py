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
seresnet :class:`~protrep.models.seresnet.SEResNet`     ``"pool"``
======== ============================================== ==========================

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

Shared pieces live at the top of this file and the models are imported at its end, so
the model modules can import them from ``protrep.models``.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import from_dict

__all__ = [
    "ModelConfig",
    "REGISTRY",
    "build_model",
    "count_parameters",
    "training_flops",
    "DeepLoc",
    "PairedCellInpainting",
    "ConvAutoencoder",
    "SEResNet",
    "five_crops",
]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved in every checkpoint.

    Parameters
    ----------
    name : str
        Registry key, the name the papers use: ``"deeploc"``, ``"pci"``, ``"ae"`` or
        ``"seresnet"``.
    in_channels : int
        Image channels; channel 0 is the protein (GFP), the others markers (RFP).
    n_classes : int
        Localization classes (DeepLoc and SE-ResNet).
    image_size : int
        Side of the square crops in the dataset.
    width : float
        Width multiplier: every layer's channels times ``width``, rounded, at least 8.
    feature_layer : str or None
        Layer that ``embed`` returns by default; None takes the model's default
        (DeepLoc ``"fc2"``, PCI ``"conv4"``, AE ``"bottleneck"``).
    latent_dim : int
        Size of the autoencoder's bottleneck (AE only; not scaled by ``width``).
    """

    name: str
    in_channels: int = 2
    n_classes: int = 15
    image_size: int = 64
    width: float = 1.0
    feature_layer: str | None = None
    latent_dim: int = 256

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a registered model name, got {self.name!r}")
        for field, low in (("in_channels", 1), ("n_classes", 2), ("image_size", 8), ("latent_dim", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{field} must be an integer >= {low}, got {value!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int | float) or not self.width > 0:
            raise ValueError(f"width must be a positive number, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        if self.feature_layer is not None and not isinstance(self.feature_layer, str):
            raise ValueError(f"feature_layer must be a layer name or None, got {self.feature_layer!r}")

    def to_dict(self):
        """The fields as a plain dict of JSON types."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild a config from :meth:`to_dict`'s output; unknown keys raise ValueError."""
        if "name" not in d:
            raise ValueError("ModelConfig needs a 'name'")
        return from_dict(cls, d)


# ---------------------------------------------------------------------------------------
# Pieces shared by the models


def scaled(channels, width):
    """Channels of a layer at ``width``: ``max(8, round(channels * width))``, halves up."""
    return max(8, int(channels * width + 0.5))


def count_parameters(model):
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def global_max_pool(x):
    """Spatial maximum of ``(B, C, H, W)`` activations: ``(B, C)``."""
    return x.amax(dim=(2, 3))


def resolve_layer(layer, valid, default):
    """``layer`` (or ``default`` when None), checked against ``valid``."""
    layer = default if layer is None else layer
    if layer not in valid:
        raise ValueError(f"unknown feature layer {layer!r}; valid layers are {list(valid)}")
    return layer


def check_image(x, channels, *, min_size=1, multiple=1, what="x"):
    """Raise ValueError unless ``x`` is ``(B, channels, H, W)`` with usable H and W."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{what} must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if min(h, w) < min_size or h % multiple or w % multiple:
        raise ValueError(f"{what} has H, W = {h}, {w}; the model needs sides >= {min_size}"
                         + (f" and divisible by {multiple}" if multiple > 1 else ""))


def init_weights(model, generator=None, *, linear=()):
    """He-normal conv and linear weights, zero biases, batch norm at identity.

    Parameters
    ----------
    model : nn.Module
        Initialized in place; buffers of batch norm are reset too.
    generator : torch.Generator or None
        Source of the random draws; None uses torch's global generator.
    linear : iterable of nn.Module, keyword-only
        Layers whose output is not rectified (logits, reconstructions, bottlenecks):
        their weights get gain 1 instead of ReLU's sqrt(2).
    """
    linear = {id(m) for m in linear}
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            gain = "linear" if id(m) in linear else "relu"
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=gain, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.reset_parameters()


class Model(nn.Module):
    """Base of the registered models: builds on the meta device, then initializes.

    Subclasses create their layers in ``build(config)``. Building on the meta device
    skips PyTorch's default initialization, which would draw from the global random
    state; :func:`init_weights` then draws from ``seed``'s generator.
    """

    default_layer: str
    feature_layers: tuple
    #: Channel orders the model takes (``check_compatible`` accepts a dataset whose
    #: channels start with one of them): protein first, cytosolic marker second.
    channel_orders: tuple = (("gfp", "rfp"),)

    def __init__(self, config, *, seed=None):
        super().__init__()
        self.config = config
        device = torch.get_default_device()
        with torch.device("meta"):
            self.build(config)
        self.to_empty(device=device)
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        init_weights(self, generator, linear=self.linear_layers())
        resolve_layer(config.feature_layer, self.feature_layers, self.default_layer)

    def build(self, config):
        raise NotImplementedError

    def linear_layers(self):
        """Layers with no ReLU after them, initialized with gain 1."""
        return ()


from protrep.models.ae import ConvAutoencoder  # noqa: E402
from protrep.models.deeploc import DeepLoc, five_crops  # noqa: E402
from protrep.models.pci import PairedCellInpainting  # noqa: E402
from protrep.models.seresnet import SEResNet  # noqa: E402

REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "deeploc": DeepLoc,
    "pci": PairedCellInpainting,
    "ae": ConvAutoencoder,
    "seresnet": SEResNet,
}


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

