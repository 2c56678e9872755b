"""PIFiA: DeepLoc's backbone trained to tell proteins apart (protein identity as the label).

Razdaibiedina et al. (2024) train the convolutional trunk of DeepLoc to predict *which
protein* a cell shows, a softmax over every protein of the screen, and read the features
of the last hidden layer. No localization label is used: the task is self-supervised, and
cells of proteins with similar patterns must be told apart by whatever differs.

Architecture as in the authors' code (``pifia_network``): eight 3x3 convolutions with
batch norm and ReLU (64, 64, pool, 128, 128, pool, 256, 256, 256, 256, pool), 'valid'
padding and 2x2 pooling without padding, so a 64x64 cell goes 62, 60, 30, 28, 26, 13, 11,
9, 7, 5, 2 and the flattened trunk has 2 x 2 x 256 values; then dense layers of 128 and 64
units with ReLU (``dense1_size=128``, ``num_features=64`` in their training script) and a
linear layer to the proteins. ``width`` scales the convolutions only, as their
``width_factor`` does; the dense sizes are theirs at every width. Their 2% dropout on the
feature layer is left out, as DeepLoc's is (no randomness in ``forward``). The whole 64x64
cell is the input (their crops are 64x64); flips and quarter turns come from the loop.

Channels: the book feeds GFP and the cytosolic RFP marker, as for every other model, so
that chapter 4 compares training objectives on the same input. PIFiA's demo uses GFP
alone (``use_rfp=False``); the RFP marker is the same for every protein, so it carries no
identity and can only help find the cell.

Which proteins are classes: every protein must be a class, so the authors split each
protein's cells into training, validation and test. Here the classes are the proteins of
the dataset's ``train`` split only, with their cells split again within each protein
(:func:`protrep.data.dataset.protein_identity`); validation and test proteins are never a
class, so their embeddings are as held out as DeepLoc's and chapter 4 scores all models on
the same test proteins. ``n_classes`` is then the number of training proteins.

Feature layers: ``"conv1"`` .. ``"conv8"`` (spatial maximum, as for every model),
``"fc1"`` (128) and ``"fc2"`` (64, the default, their ``d2``).

References
----------
Razdaibiedina, A., Brechalov, A., Friesen, H., Mattiazzi Usaj, M., Masinas, M. P. D.,
Garadi Suresh, H., Wang, K., Boone, C., Ba, J., & Andrews, B. (2024). PIFiA: self-supervised
approach for protein functional annotation from single-cell imaging data. Molecular
Systems Biology, 20.
"""

import torch.nn.functional as F
from torch import nn

from .base import Model, check_image, conv_trunk, resolve_layer, scaled

__all__ = ["PIFiA"]

CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256)
POOL_AFTER = (2, 4, 8)
DENSE1, FEATURES = 128, 64


def trunk_side(image_size):
    """Side of the last feature map for cells of ``image_size`` ('valid' convolutions and pools)."""
    side = image_size
    for i in range(1, len(CONV_CHANNELS) + 1):
        side -= 2
        if i in POOL_AFTER:
            side //= 2
    return side


class PIFiA(Model):
    """PIFiA (Razdaibiedina et al. 2024) with the registry's interface.

    Parameters
    ----------
    config : ModelConfig
        ``in_channels``, ``n_classes`` (the number of protein classes), ``image_size``
        (the side of the cells, at least 52 so that the last feature map is not
        empty; the dense layers are sized for it), ``width`` and
        ``feature_layer`` are used.
    seed : int or None, keyword-only
        Seed of the weight initialization.
    """

    default_layer = "fc2"
    feature_layers = tuple(f"conv{i}" for i in range(1, 9)) + ("fc1", "fc2")
    #: What the labels of the training cells are: protein identity, not localization.
    target = "protein"

    def build(self, config):
        side = trunk_side(config.image_size)
        if side < 1:
            raise ValueError(f"pifia needs image_size >= 52 ('valid' convolutions), got {config.image_size}")
        self.train_crop = None
        convs, c_in = [], config.in_channels
        for c in (scaled(c, config.width) for c in CONV_CHANNELS):
            convs.append(nn.Sequential(nn.Conv2d(c_in, c, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.fc1 = nn.Sequential(nn.Linear(c_in * side * side, DENSE1), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Linear(DENSE1, FEATURES), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(FEATURES, config.n_classes)

    def linear_layers(self):
        return (self.classifier,)

    def _check(self, x, what):
        side = self.config.image_size
        check_image(x, self.config.in_channels, min_size=side, what=what)
        if tuple(x.shape[-2:]) != (side, side):
            raise ValueError(f"{what} must be {side} x {side} cells (the dense layers are sized for them), "
                             f"got {tuple(x.shape[-2:])}")

    def _trunk(self, x, layer="fc2"):
        x, features = conv_trunk(self.convs, x, layer, POOL_AFTER, ceil_mode=False)  # 'valid' pooling
        if features is not None:
            return features
        x = self.fc1(x.flatten(1))
        return x if layer == "fc1" else self.fc2(x)

    def embed(self, x, layer=None):
        """Features ``(B, d)`` of ``layer`` (default ``config.feature_layer`` or ``"fc2"``)."""
        self._check(x, "x")
        layer = resolve_layer(layer, self.feature_layers, self.config.feature_layer or self.default_layer)
        return self._trunk(x, layer)

    def forward(self, batch):
        """Cross-entropy of the protein identity over the cells with ``label >= 0``.

        Returns
        -------
        dict
            ``"loss"`` (0 with a gradient path when no cell is labelled) and ``"logits"``
            ``(B, n_classes)``, one column per protein class.
        """
        x, y = batch["image"], batch["label"]
        self._check(x, "batch['image']")
        logits = self.classifier(self._trunk(x)).float()
        per_cell = F.cross_entropy(logits, y, ignore_index=-1, reduction="none")
        return {"loss": per_cell.sum() / (y >= 0).sum().clamp(min=1), "logits": logits}
