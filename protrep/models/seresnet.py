"""SE-ResNet: a residual network with squeeze-and-excitation blocks for multi-label localization.

Chen (2020) classified Human Protein Atlas images into the 28 subcellular classes of the
Kaggle "Human Protein Atlas Image Classification" challenge with a convolutional network
of residual and squeeze-and-excitation layers. The report gives no layer table, so the
layout here is the usual ResNet-18 (He et al. 2016): a 7x7 stride-2 stem convolution and
a 3x3 stride-2 max pool, then four stages of two basic blocks (64, 128, 256, 512 channels;
stages 2-4 halve the resolution), each block followed by squeeze-and-excitation (Hu et
al. 2018: global average, a bottleneck of channels/16, sigmoid gates per channel) before
the residual sum; global average pooling and one linear layer to ``n_classes`` logits.

The output is **multi-label**: one sigmoid per class, not a softmax, because an HPA image
often shows a protein in two or three compartments. The loss is the sigmoid focal loss
(Lin et al. 2017, gamma = 2, no alpha), summed over classes and averaged over images. It
was chosen over a positive-weighted binary cross-entropy because the 28 classes are
heavily imbalanced (Nucleoplasm on about 40% of the Kaggle images, Rods & rings on
0.04%) and most of the 28 x n sigmoid terms are easy negatives: the focal factor
``(1 - p_t) ** gamma`` down-weights those without per-class weights, which would have to
be counted on each dataset and stored in the model config to rebuild a run. The
classifier's bias starts at ``log(0.05 / 0.95)`` (every class at probability 0.05, Lin et
al.'s prior initialization), so the first steps are not spent pushing 27 negatives down.

Targets: ``batch["multilabel"]``, float ``(B, n_classes)`` multi-hot, when the dataset is
multi-label (:class:`~protrep.training.batches.CellTensors` adds it); otherwise the one-hot of
``batch["label"]`` (cells with label -1 contribute nothing), so the model also trains on
the single-label yeast datasets.

Channels: any number (``in_channels``); for HPA images the order is
:data:`protrep.data.hpa.HPA_CHANNELS` (red microtubules, green protein, blue nucleus, yellow
ER). With 4 input channels the training loop zeroes the yellow channel of 30% of the
training images (``train_channel_dropout``, drawn from the loop's per-step generator, so
``forward`` itself stays deterministic): HPA single-cell crops without an ER channel can
then be classified with a channel of zeros, a case the model has seen.

Feature layers, named as in He et al.'s table: ``"conv1"`` (the stem convolution),
``"conv2"`` .. ``"conv5"`` (the four stages; spatial maximum of the activations, as for
every model of :mod:`protrep.models`) and ``"pool"`` (the global average that the
classifier reads; the default).

References
----------
Chen, H. (2020). Extracting cellular location of human proteins using deep learning.
arXiv:2006.03800.

He, K., Zhang, X., Ren, S., & Sun, J. (2016). Deep residual learning for image
recognition. CVPR.

Hu, J., Shen, L., & Sun, G. (2018). Squeeze-and-excitation networks. CVPR.

Lin, T.-Y., Goyal, P., Girshick, R., He, K., & Dollar, P. (2017). Focal loss for dense
object detection. ICCV.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Model, check_image, global_max_pool, resolve_layer, scaled

__all__ = ["SEResNet", "focal_loss"]

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
SE_REDUCTION = 16
FOCAL_GAMMA = 2.0
PRIOR = 0.05  # initial probability of every class
ER_DROPOUT = 0.3  # fraction of 4-channel training images whose yellow (ER) channel is zeroed


def focal_loss(logits, target, *, gamma=FOCAL_GAMMA, weight=None):
    """Sigmoid focal loss (Lin et al. 2017), summed over classes, averaged over weighted rows.

    Parameters
    ----------
    logits, target : Tensor, shape (B, k)
        Logits and multi-hot targets (float, 0 or 1).
    gamma : float, keyword-only
        Focusing parameter; 0 gives the binary cross-entropy.
    weight : Tensor of shape (B,) or None, keyword-only
        Per-row weight (0 drops a row); the mean is over the rows with weight > 0.

    Returns
    -------
    Tensor
        Scalar, float32; lower is better.
    """
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    per_row = ((1 - p_t) ** gamma * bce).sum(dim=1)
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / (weight > 0).sum().clamp(min=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the global average (Hu et al. 2018): ``x * sigmoid(W2 relu(W1 mean(x)))``."""

    def __init__(self, channels):
        super().__init__()
        hidden = max(4, channels // SE_REDUCTION)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None].to(x.dtype)


class SEBasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, squeeze-and-excitation, then the residual sum."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class SEResNet(Model):
    """SE-ResNet-18 multi-label classifier (Chen 2020) with the registry's interface.

    Parameters
    ----------
    config : ModelConfig
        ``in_channels``, ``n_classes``, ``width`` and ``feature_layer`` are used; the
        network is fully convolutional, so ``image_size`` only has to be at least 32.
    seed : int or None, keyword-only
        Seed of the weight initialization.

    Notes
    -----
    ``forward`` returns ``"loss"`` (focal loss) and ``"logits"`` ``(B, n_classes)``;
    ``sigmoid(logits)`` are the per-class probabilities (:meth:`predict_proba`), which
    do not sum to 1. Decisions use per-class thresholds tuned on validation images
    (:func:`protrep.evaluation.metrics.tune_thresholds`).
    """

    default_layer = "pool"
    is_classifier = True
    feature_layers = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool")
    channel_orders = (("gfp", "rfp"), ("red", "green", "blue", "yellow"))

    def __init__(self, config, *, seed=None):
        super().__init__(config, seed=seed)
        with torch.no_grad():  # deterministic, no random draw
            self.classifier.bias.fill_(math.log(PRIOR / (1 - PRIOR)))

    def build(self, config):
        self.train_crop = None
        self.train_channel_dropout = (3, ER_DROPOUT) if config.in_channels == 4 else None
        widths = [scaled(c, config.width) for c in STAGE_CHANNELS]
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, widths[0], 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c_in = [], widths[0]
        for i, c in enumerate(widths):
            blocks = [SEBasicBlock(c_in if j == 0 else c, c, 2 if (i > 0 and j == 0) else 1)
                      for j in range(BLOCKS_PER_STAGE)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(c_in, config.n_classes)

    def linear_layers(self):
        gates = [m.se.fc2 for stage in self.stages for m in stage]
        return (self.classifier, *gates)

    def _features(self, x, layer="pool"):
        check_image(x, self.config.in_channels, min_size=32)
        x = self.stem(x)
        if layer == "conv1":
            return global_max_pool(x)
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for i, stage in enumerate(self.stages, start=2):
            x = stage(x)
            if layer == f"conv{i}":
                return global_max_pool(x)
        return x.mean(dim=(2, 3))

    def embed(self, x, layer=None):
        """Features ``(B, d)`` of ``layer`` (default ``config.feature_layer`` or ``"pool"``)."""
        layer = resolve_layer(layer, self.feature_layers, self.config.feature_layer or self.default_layer)
        return self._features(x, layer)

    def predict_proba(self, x):
        """Per-class probabilities ``(B, n_classes)``, float32: the sigmoid of the logits."""
        return torch.sigmoid(self.classifier(self._features(x)).float())

    def forward(self, batch):
        """Focal loss against ``batch["multilabel"]`` (or the one-hot of ``batch["label"]``).

        Returns
        -------
        dict
            ``"loss"``: scalar focal loss over the images with a target (0, with a
            gradient path, when none has one); ``"logits"``: ``(B, n_classes)`` float32.
        """
        logits = self.classifier(self._features(batch["image"])).float()
        if "multilabel" in batch:
            target, weight = batch["multilabel"].float(), None
        else:
            label = batch["label"]
            weight = (label >= 0).float()
            target = F.one_hot(label.clamp(min=0), self.config.n_classes).float() * weight[:, None]
        return {"loss": focal_loss(logits, target, weight=weight), "logits": logits}
