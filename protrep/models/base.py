"""What every registered model shares: its config, its base class, and small helpers.

See :mod:`protrep.models` for the interface and the conventions these implement.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, from_dict

__all__ = ["ModelConfig", "Model", "count_parameters", "scaled", "global_max_pool", "resolve_layer", "check_image",
           "init_weights", "conv_trunk"]


@dataclass(frozen=True)
class ModelConfig(Config):
    """Everything needed to rebuild a model; saved in every checkpoint.

    Parameters
    ----------
    name : str
        Registry key, the name the papers use: ``"deeploc"``, ``"pci"``, ``"ae"``,
        ``"pifia"`` or ``"seresnet"``.
    in_channels : int
        Image channels; channel 0 is the protein (GFP), the others markers (RFP).
    n_classes : int
        Localization classes (DeepLoc and SE-ResNet), or protein classes (PIFiA: the
        number of training proteins, ``len(protein_identity(ds).classes)``).
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

    @classmethod
    def from_dict(cls, d):
        """Rebuild a config from :meth:`to_dict`'s output; unknown keys raise ValueError."""
        if isinstance(d, dict) and "name" not in d:
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


def conv_trunk(convs, x, layer, pool_after, *, ceil_mode):
    """Run ``convs`` in order, 2x2 max pooling after the 1-based indices in ``pool_after``.

    Returns ``(None, features)`` as soon as ``layer`` is ``"conv<i>"`` (the spatial maximum
    of that convolution's output), else ``(activations, None)`` after the last pool.
    """
    for i, conv in enumerate(convs, start=1):
        x = conv(x)
        if layer == f"conv{i}":
            return None, global_max_pool(x)
        if i in pool_after:
            x = F.max_pool2d(x, 2, ceil_mode=ceil_mode)
    return x, None


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
    #: Whether the model classifies localization: trained on labels, with ``predict_proba``.
    is_classifier: bool = False
    #: What the ``label`` of a training cell must be: ``"localization"`` (the dataset's
    #: classes; used by classifiers only) or ``"protein"`` (identity; PIFiA).
    target: str = "localization"
    #: Whether ``forward`` reads ``batch["partner"]`` (a cell of the same protein; Paired
    #: Cell Inpainting). Training streamed from disk reads partner cells only for such models.
    uses_partner: bool = False

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
