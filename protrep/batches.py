"""Turn a :class:`~protrep.dataset.CellDataset` into training batches.

The whole (normalised) dataset is held as one tensor, on the training device when it fits,
and batches are index selections from it: no worker processes, nothing to keep a GPU
waiting for. Every random choice (order, partner cells, augmentation) comes from a
``torch.Generator`` seeded by ``(seed, epoch, step)``, so any step can be reproduced on
its own; this is what makes ``--resume`` continue exactly.
"""

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["percentile_stretch", "CellTensors", "step_generator", "augment", "center_crop"]


def percentile_stretch(images, low=0.1, high=99.9):
    """Scale every cell's every channel to [0, 1] between its own percentiles.

    Parameters
    ----------
    images : ndarray, shape (n, c, h, w)
    low, high : float
        Percentiles mapped to 0 and 1 (values outside are clipped), as DeepLoc does per cell
        (Kraus et al. 2017).

    Returns
    -------
    ndarray of float32, shape (n, c, h, w)
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {x.shape}")
    if len(x) == 0:
        return x.copy()
    flat = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    lo, hi = np.percentile(flat, [low, high], axis=2, keepdims=True)
    out = (flat - lo) / np.maximum(hi - lo, 1e-6)
    return np.clip(out, 0, 1, out=out).reshape(x.shape).astype(np.float32, copy=False)


@dataclass
class CellTensors:
    """Normalised images, labels and protein groups of one set of cells, as tensors.

    Attributes
    ----------
    images : Tensor, float32 (n, c, h, w)
    labels : Tensor, int64 (n,)
        Class index, -1 where unknown.
    protein : ndarray of int (n,)
        Protein code of each cell (for drawing partner cells of the same protein).
    """

    images: torch.Tensor
    labels: torch.Tensor
    protein: np.ndarray

    @classmethod
    def from_dataset(cls, ds, index=None, *, device="cpu"):
        """Select cells ``index`` (all if None) of ``ds``, stretch them and move them to ``device``."""
        index = np.arange(len(ds)) if index is None else np.asarray(index)
        images = percentile_stretch(ds.images[index])
        labels = ds.meta["label"].to_numpy()[index] if "label" in ds.meta else np.full(len(index), -1)
        codes = ds.meta["protein"].astype("category").cat.codes.to_numpy()[index]
        return cls(torch.from_numpy(images).to(device), torch.as_tensor(labels, dtype=torch.int64, device=device),
                   np.asarray(codes))

    def __len__(self):
        return len(self.labels)

    def __post_init__(self):
        # cells grouped by protein: _members[_start[g] + j] is the j-th cell of group g
        self._members = np.argsort(self.protein, kind="stable")
        groups, self._group = np.unique(self.protein, return_inverse=True)
        self._count = np.bincount(self._group, minlength=len(groups))
        self._start = np.concatenate([[0], np.cumsum(self._count)[:-1]])
        self._pos = np.empty(len(self.protein), int)
        self._pos[self._members] = np.arange(len(self.protein)) - self._start[self._group[self._members]]

    def partners(self, index, generator):
        """For each cell in ``index``, another cell of the same protein, uniformly (itself if alone)."""
        index = np.asarray(index)
        g, pos = self._group[index], self._pos[index]
        others = np.maximum(self._count[g] - 1, 1)
        u = torch.rand(len(index), generator=generator, dtype=torch.float64).numpy()
        k = np.minimum((u * others).astype(int), others - 1)
        k = np.where(self._count[g] > 1, k + (k >= pos), pos)  # skip the cell itself
        return self._members[self._start[g] + k]

    def batch(self, index, generator=None):
        """The batch dict the models take: ``image``, ``label``, ``partner`` (and ``index``)."""
        index = np.asarray(index)
        idx = torch.as_tensor(index, device=self.images.device)
        out = {"image": self.images.index_select(0, idx), "label": self.labels.index_select(0, idx), "index": idx}
        if generator is not None:
            pidx = torch.as_tensor(self.partners(index, generator), device=self.images.device)
            out["partner"] = self.images.index_select(0, pidx)
        else:
            out["partner"] = out["image"]
        return out


def step_generator(seed, epoch, step, *, stream=0):
    """A CPU ``torch.Generator`` for one training step, independent of all others.

    ``stream`` separates uses: 0 for a step's partners and augmentation, 1 for an
    epoch's batch order, 2 for validation partners.
    """
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, stream, epoch, step]).generate_state(1)[0]))
    return g


def _dihedral(x, k, flip):
    """Rotate each image by ``k[i]`` quarter turns and mirror it where ``flip[i]``."""
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out


def _random_crop(x, size, generator):
    n, _, h, w = x.shape
    oy = torch.randint(0, h - size + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, w - size + 1, (n,), generator=generator).to(x.device)
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, None, :, None]
    cols = (ox[:, None] + ar)[:, None, None, :]
    b = torch.arange(n, device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[b, c, rows, cols]


def center_crop(x, size):
    """The central ``size`` x ``size`` window of (n, c, h, w) images."""
    h, w = x.shape[-2:]
    if size is None or (h == size and w == size):
        return x
    y0, x0 = (h - size) // 2, (w - size) // 2
    return x[..., y0:y0 + size, x0:x0 + size]


def augment(batch, generator, *, crop=None):
    """Random flips, quarter turns and (if ``crop``) random crops, drawn from ``generator``.

    The image and the partner cell are transformed independently; labels do not change
    (localization is invariant to these transforms).
    """
    out = dict(batch)
    for key in ("image", "partner"):
        x = batch[key]
        n = x.shape[0]
        k = torch.randint(0, 4, (n,), generator=generator).to(x.device)
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = _dihedral(x, k, flip)
        if crop is not None and crop < x.shape[-1]:
            x = _random_crop(x, crop, generator)
        out[key] = x
    return out
