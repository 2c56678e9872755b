"""A convolutional autoencoder: the plain self-supervised baseline.

The encoder halves the resolution four times with stride-2 3x3 convolutions (32, 64,
128, 256 channels, each with batch norm and ReLU; 64x64 -> 4x4) and maps the result
linearly to a vector of ``latent_dim``, the bottleneck. The decoder mirrors it: a
linear layer back to 256 x 4 x 4 (batch norm, ReLU), then four steps of 2x nearest
upsampling and a 3x3 convolution with batch norm and ReLU (128, 64, 32, 32 channels),
and a 1x1 convolution to the image channels. Upsampling followed by a convolution
avoids the checkerboard artefacts of transposed convolutions. The loss is the mean
squared error over all channels.

Feature layers: ``"conv1"`` .. ``"conv4"`` (spatial maximum of the encoder's ReLU
outputs, one value per channel) and ``"bottleneck"`` (the latent vector, the default).
``latent_dim`` is not scaled by ``width``, so the bottleneck's two linear layers grow
only linearly with it.

References
----------
Hinton, G. E., & Salakhutdinov, R. R. (2006). Reducing the dimensionality of data with
neural networks. Science, 313(5786), 504-507.
"""

import torch.nn.functional as F
from torch import nn

from .base import Model, check_image, global_max_pool, resolve_layer, scaled

__all__ = ["ConvAutoencoder"]

ENCODER_CHANNELS = (32, 64, 128, 256)
DECODER_CHANNELS = (128, 64, 32, 32)


def _block(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvAutoencoder(Model):
    """Convolutional autoencoder with the registry's interface.

    Parameters
    ----------
    config : ModelConfig
        ``in_channels``, ``image_size`` (divisible by 16), ``width``, ``latent_dim`` and
        ``feature_layer`` are used.
    seed : int or None, keyword-only
        Seed of the weight initialization.
    """

    default_layer = "bottleneck"
    feature_layers = ("conv1", "conv2", "conv3", "conv4", "bottleneck")

    def build(self, config):
        if config.image_size % 16:
            raise ValueError(f"ae needs image_size divisible by 16, got {config.image_size}")
        self.train_crop = None
        enc = [scaled(c, config.width) for c in ENCODER_CHANNELS]
        self.encoder = nn.ModuleList(_block(c_in, c, stride=2) for c_in, c in zip((config.in_channels, *enc), enc))
        self._grid = (enc[-1], config.image_size // 16, config.image_size // 16)
        flat = enc[-1] * self._grid[1] * self._grid[2]
        self.to_latent = nn.Linear(flat, config.latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(config.latent_dim, flat, bias=False), nn.BatchNorm1d(flat), nn.ReLU(inplace=True))
        dec = [scaled(c, config.width) for c in DECODER_CHANNELS]
        self.decoder = nn.Sequential(*(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _block(c_in, c))
                                       for c_in, c in zip((enc[-1], *dec), dec)),
                                     nn.Conv2d(dec[-1], config.in_channels, 1))

    def linear_layers(self):
        return (self.to_latent, self.decoder[-1])

    def _encode(self, x, layer="bottleneck"):
        size = self.config.image_size
        check_image(x, self.config.in_channels, min_size=size)
        if x.shape[-2:] != (size, size):
            raise ValueError(f"ae was built for {size}x{size} images, got {tuple(x.shape[-2:])}")
        for i, block in enumerate(self.encoder, start=1):
            x = block(x)
            if layer == f"conv{i}":
                return global_max_pool(x)
        return self.to_latent(x.flatten(1))

    def embed(self, x, layer=None):
        """Features ``(B, d)`` of ``layer`` (default ``config.feature_layer`` or ``"bottleneck"``)."""
        layer = resolve_layer(layer, self.feature_layers, self.config.feature_layer or self.default_layer)
        return self._encode(x, layer)

    def decode(self, z):
        """Reconstructed images ``(B, in_channels, H, W)`` from latent vectors ``(B, latent_dim)``."""
        return self.decoder(self.from_latent(z).view(-1, *self._grid))

    def forward(self, batch):
        """Reconstruction loss of ``batch["image"]`` (or of ``batch["target"]`` where given).

        With background randomisation the target is the centre cell alone
        (:func:`protrep.training.batches.randomize_background`), so the code cannot spend
        capacity on the neighbours.

        Returns
        -------
        dict
            ``"loss"``: mean squared error over all pixels and channels;
            ``"reconstruction"``: ``(B, in_channels, H, W)``.
        """
        x = batch["image"]
        reconstruction = self.decode(self._encode(x))
        target = batch.get("target", x)
        return {"loss": F.mse_loss(reconstruction.float(), target.float()), "reconstruction": reconstruction}
