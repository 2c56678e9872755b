"""DeepLoc: a supervised convolutional classifier of yeast protein localization.

Architecture as in Kraus et al. (2017) and their code: eight 3x3 convolutions with
batch norm and ReLU (64, 64, pool, 128, 128, pool, 256, 256, 256, 256, pool), two fully
connected layers of 512 with batch norm and ReLU, and a linear layer to the classes.
Pooling is 2x2 with stride 2 and, like TensorFlow's ``padding='SAME'``, keeps a last odd
row, so a 60x60 crop goes 60 -> 30 -> 15 -> 8 and the first fully connected layer sees
8 x 8 x 256 values. The paper's dropout is left out: training draws no random numbers
beyond the loop's crops. Convolutions and fully connected layers before a batch norm
have no bias (the norm's shift replaces it).

Training uses random 60x60 crops of the 64x64 cells (cut by the training loop,
``train_crop``); prediction and features average over five 60x60 crops, the centre and
the four corners (:func:`five_crops`).

Feature layers: ``"conv1"`` .. ``"conv8"`` (spatial maximum of the ReLU output, one value
per channel, as for every model in :mod:`protrep.models`), ``"fc1"`` and ``"fc2"``
(the ReLU output of the fully connected layers; ``"fc2"``, the last hidden layer, is the
default).

References
----------
Kraus, O. Z., Grys, B. T., Ba, J., Chong, Y., Frey, B. J., Boone, C., & Andrews, B. J.
(2017). Automated analysis of high-content microscopy data with deep learning.
Molecular Systems Biology, 13(4), 924.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Model, check_image, conv_trunk, resolve_layer, scaled

__all__ = ["DeepLoc", "five_crops"]

CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256)
POOL_AFTER = (2, 4, 8)  # 1-based indices of the convolutions followed by a max pool
FC_UNITS = 512


def five_crops(x, size):
    """The centre and four corner crops of a batch of images.

    Parameters
    ----------
    x : Tensor, shape (B, C, H, W)
        Images with ``H, W >= size``.
    size : int
        Side of the square crops.

    Returns
    -------
    Tensor, shape (5, B, C, size, size)
        Crops in the order centre, top-left, top-right, bottom-left, bottom-right. The
        centre crop starts at row ``(H - size) // 2`` and column ``(W - size) // 2``, so
        for 64x64 images and 60x60 crops it is ``x[..., 2:62, 2:62]``.

    Examples
    --------
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> five_crops(x, 2)[:, 0, 0]
    tensor([[[ 5.,  6.],
             [ 9., 10.]],
    <BLANKLINE>
            [[ 0.,  1.],
             [ 4.,  5.]],
    <BLANKLINE>
            [[ 2.,  3.],
             [ 6.,  7.]],
    <BLANKLINE>
            [[ 8.,  9.],
             [12., 13.]],
    <BLANKLINE>
            [[10., 11.],
             [14., 15.]]])
    """
    h, w = x.shape[-2:]
    if x.ndim != 4 or size < 1 or size > min(h, w):
        raise ValueError(f"five_crops needs (B, C, H, W) images with H, W >= size; got {tuple(x.shape)}, size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    corners = [(top, left), (0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return torch.stack([x[..., i:i + size, j:j + size] for i, j in corners])


class DeepLoc(Model):
    """DeepLoc classifier (Kraus et al. 2017) with the registry's interface.

    Parameters
    ----------
    config : ModelConfig
        ``in_channels``, ``n_classes``, ``image_size`` (the training crop is
        ``image_size * 60 // 64``, 60 for 64x64 cells), ``width`` and ``feature_layer``
        are used.
    seed : int or None, keyword-only
        Seed of the weight initialization.

    Notes
    -----
    ``forward`` on images of side ``train_crop`` returns the plain logits; on larger
    images (validation on whole 64x64 cells) it returns the log of the five-crop average
    of the softmax, so that validation loss and accuracy measure the predictor used at
    test time. Either way ``softmax(out["logits"])`` are the class probabilities.

    References
    ----------
    Kraus et al. (2017), Molecular Systems Biology 13(4), 924.
    """

    default_layer = "fc2"
    is_classifier = True
    feature_layers = tuple(f"conv{i}" for i in range(1, 9)) + ("fc1", "fc2")

    def build(self, config):
        self.train_crop = config.image_size * 60 // 64
        widths = [scaled(c, config.width) for c in CONV_CHANNELS]
        convs, c_in = [], config.in_channels
        for c in widths:
            convs.append(nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            c_in = c
        self.convs = nn.ModuleList(convs)
        side = self.train_crop
        for _ in POOL_AFTER:
            side = math.ceil(side / 2)
        units = scaled(FC_UNITS, config.width)
        self.fc1 = nn.Sequential(nn.Linear(c_in * side * side, units, bias=False), nn.BatchNorm1d(units), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Linear(units, units, bias=False), nn.BatchNorm1d(units), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(units, config.n_classes)

    def linear_layers(self):
        return (self.classifier,)

    def _trunk(self, x, layer="fc2"):
        """Activations of ``layer`` for crops of side ``train_crop``: (B, d)."""
        x, features = conv_trunk(self.convs, x, layer, POOL_AFTER, ceil_mode=True)  # TensorFlow's 'SAME' pooling
        if features is not None:
            return features
        x = self.fc1(x.flatten(1))
        if layer == "fc1":
            return x
        return self.fc2(x)

    def _over_crops(self, x, fn):
        """``fn`` of ``x`` itself when it is a training crop, else ``(5, B, ...)`` over five crops."""
        check_image(x, self.config.in_channels, min_size=self.train_crop)
        if x.shape[-2:] == (self.train_crop, self.train_crop):
            return fn(x), False
        crops = five_crops(x, self.train_crop)
        out = fn(crops.reshape(-1, *crops.shape[2:]))
        return out.reshape(5, x.shape[0], *out.shape[1:]), True

    def log_proba(self, x):
        """Log class probabilities ``(B, n_classes)``, float32, five-crop averaged on large images."""
        out, averaged = self._over_crops(x, lambda c: torch.log_softmax(self.classifier(self._trunk(c)).float(), dim=-1))
        if averaged:
            out = torch.logsumexp(out, dim=0) - math.log(5)
        return out

    def predict_proba(self, x):
        """Class probabilities ``(B, n_classes)``: the mean softmax over five crops.

        Parameters
        ----------
        x : Tensor, shape (B, C, H, W)
            Cells (64x64) whose five 60x60 crops are classified, or crops of side
            ``train_crop``, classified as they are.

        Returns
        -------
        Tensor, float32, shape (B, n_classes)
            Rows sum to 1.
        """
        return self.log_proba(x).exp()

    def embed(self, x, layer=None):
        """Features ``(B, d)`` of ``layer`` (default ``config.feature_layer`` or ``"fc2"``), five-crop averaged."""
        layer = resolve_layer(layer, self.feature_layers, self.config.feature_layer or self.default_layer)
        out, averaged = self._over_crops(x, lambda c: self._trunk(c, layer))
        return out.mean(dim=0) if averaged else out

    def forward(self, batch):
        """Cross-entropy over the labelled cells of ``batch``.

        Returns
        -------
        dict
            ``"loss"``: mean cross-entropy over the cells with ``label >= 0`` (0, with a
            gradient path, when there are none); ``"logits"``: ``(B, n_classes)``.
        """
        x, y = batch["image"], batch["label"]
        if x.shape[-2:] == (self.train_crop, self.train_crop):
            check_image(x, self.config.in_channels, what="batch['image']")
            logits = self.classifier(self._trunk(x)).float()
        else:
            logits = self.log_proba(x)
        per_cell = F.cross_entropy(logits, y, ignore_index=-1, reduction="none")
        n_labelled = (y >= 0).sum().clamp(min=1)
        return {"loss": per_cell.sum() / n_labelled, "logits": logits}
