"""Turn a :class:`~protrep.data.dataset.CellDataset` into training batches.

A dataset held in memory becomes one (normalised) tensor, on the training device when it
fits, and batches are index selections from it (:class:`CellTensors`): no worker
processes, nothing to keep a GPU waiting for. A dataset on disk (a sharded
``protrep-cells`` folder, whose images are read on demand) is read batch by batch
(:class:`StreamedCells`): only the rows of a batch and its partner cells are read and
normalised, so memory does not grow with the number of cells, and DataLoader workers read
ahead (:class:`StepBatches`). Both give the same batches, value for value.

Every random choice (order, partner cells, augmentation) comes from a ``torch.Generator``
seeded by ``(seed, epoch, step)``, so any step can be reproduced on its own; this is what
makes ``--resume`` continue exactly. A worker that builds a step's cells hands back the
state of that step's generator with them, and the training process continues from it.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..data.arrays import is_lazy
from ..data.dataset import multi_hot
from ..data.normalize import percentile_stretch

__all__ = ["CellTensors", "StreamedCells", "StepBatches", "step_generator", "augment", "center_crop",
           "randomize_background", "mask_to_level"]


class _ProteinGroups:
    """Partner cells for Paired Cell Inpainting: another cell of the same protein (``self.protein``)."""

    def _group_by_protein(self):
        # cells grouped by protein: _members[_start[g] + j] is the j-th cell of group g
        self._members = np.argsort(self.protein, kind="stable")
        groups, self._group = np.unique(self.protein, return_inverse=True)
        self._count = np.bincount(self._group, minlength=len(groups))
        self._start = np.concatenate([[0], np.cumsum(self._count)[:-1]])
        self._pos = np.empty(len(self.protein), int)
        self._pos[self._members] = np.arange(len(self.protein)) - self._start[self._group[self._members]]

    def __len__(self):
        return len(self.labels)

    def partners(self, index, generator):
        """For each cell in ``index``, another cell of the same protein, uniformly (itself if alone)."""
        index = np.asarray(index)
        g, pos = self._group[index], self._pos[index]
        others = np.maximum(self._count[g] - 1, 1)
        u = torch.rand(len(index), generator=generator, dtype=torch.float64).numpy()
        k = np.minimum((u * others).astype(int), others - 1)
        k = np.where(self._count[g] > 1, k + (k >= pos), pos)  # skip the cell itself
        return self._members[self._start[g] + k]


def _cell_table(ds, index, background):
    """Labels, protein codes and (multi-label data) multi-hot targets of cells ``index``: the small per-cell arrays."""
    labels = ds.meta["label"].to_numpy()[index] if "label" in ds.meta else np.full(len(index), -1)
    codes = ds.meta["protein"].astype("category").cat.codes.to_numpy()[index]
    if background and ds.masks is None:
        from ..errors import DataError

        raise DataError(ds.source or "dataset", "has no centre-cell masks, which background randomisation needs")
    multilabel = (torch.from_numpy(multi_hot(ds.meta["localization"].to_numpy()[index], ds.classes))
                  if ds.info.get("multilabel") else None)
    return torch.as_tensor(labels, dtype=torch.int64), np.asarray(codes), multilabel


@dataclass
class CellTensors(_ProteinGroups):
    """Normalised images, labels and protein groups of one set of cells, as tensors.

    Attributes
    ----------
    images : Tensor, float32 (n, c, h, w)
    labels : Tensor, int64 (n,)
        Class index, -1 where unknown.
    protein : ndarray of int (n,)
        Protein code of each cell (for drawing partner cells of the same protein).
    masks : Tensor of bool (n, h, w), optional
        Centre-cell masks, with ``level`` and ``noise`` (float32 (n, c): background level
        and noise of the normalised crops); present when built with ``background=True``,
        for :func:`randomize_background`.
    multilabel : Tensor of float32 (n, k), optional
        Multi-hot targets over the dataset's classes, present when the dataset is
        multi-label (``ds.info["multilabel"]``, as the HPA images of :mod:`protrep.data.hpa`):
        class j is on where ``classes[j]`` is among the ``;``-separated names of the
        ``localization`` column.
    """

    images: torch.Tensor
    labels: torch.Tensor
    protein: np.ndarray
    masks: torch.Tensor | None = None
    level: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    multilabel: torch.Tensor | None = None

    @classmethod
    def from_dataset(cls, ds, index=None, *, device="cpu", background=False):
        """Select cells ``index`` (all if None) of ``ds``, stretch them and move them to ``device``.

        A dataset already stretched by :func:`protrep.inference.embed.stretched`
        (``info["stretched"]``) is taken as it is: the stretch is per cell, so the result is
        the same, without the cost (3 s per 6,000 crops on 2 cores) in every run.

        ``background=True`` also keeps the centre-cell masks and the background statistics
        of the stretched crops (:func:`protrep.data.backgrounds.background_stats`).
        """
        index = np.arange(len(ds)) if index is None else np.asarray(index)
        labels, codes, multilabel = _cell_table(ds, index, background)
        # a dataset stretched once for several runs (protrep.inference.embed.stretched) is not stretched again
        images = ds.images[index].astype(np.float32) if ds.info.get("stretched") else percentile_stretch(ds.images[index])
        extra = {}
        if background:
            level, noise = _background_stats_of(ds, index, images)
            extra = {"masks": torch.from_numpy(np.ascontiguousarray(ds.masks[index])).to(device),
                     "level": torch.from_numpy(level).to(device), "noise": torch.from_numpy(noise).to(device)}
        if multilabel is not None:
            extra["multilabel"] = multilabel.to(device)
        return cls(torch.from_numpy(images).to(device), labels.to(device), codes, **extra)

    def __post_init__(self):
        self._group_by_protein()

    def batch(self, index, generator=None):
        """The batch dict the models take: ``image``, ``label``, ``partner`` (and ``index``)."""
        index = np.asarray(index)
        idx = torch.as_tensor(index, device=self.images.device)
        out = {"image": self.images.index_select(0, idx), "label": self.labels.index_select(0, idx), "index": idx}
        if self.masks is not None:
            out.update(mask=self.masks.index_select(0, idx), level=self.level.index_select(0, idx),
                       noise=self.noise.index_select(0, idx))
        if self.multilabel is not None:
            out["multilabel"] = self.multilabel.index_select(0, idx)
        if generator is not None:
            pidx = torch.as_tensor(self.partners(index, generator), device=self.images.device)
            out["partner"] = self.images.index_select(0, pidx)
        else:
            out["partner"] = out["image"]
        return out


@dataclass
class StreamedCells(_ProteinGroups):
    """The cells of a dataset on disk, read batch by batch: the out-of-core :class:`CellTensors`.

    Holds only per-cell scalars (labels, protein codes, multi-hot targets) and the lazy
    arrays of a sharded dataset (:class:`~protrep.data.arrays.ShardedArray`); :meth:`batch`
    reads the rows of a batch and of its partner cells, stretches them and, for background
    randomisation, measures their background. Every step is per cell, so the batches equal
    those of :class:`CellTensors` value for value. Batches are CPU tensors (the training
    loop moves them to its device).

    Attributes
    ----------
    images : ShardedArray (n, c, h, w)
        The cells' crops, raw counts (or stretched, where ``stretched``), read on demand.
    labels : Tensor, int64 (n,)
    protein : ndarray of int (n,)
    masks : ShardedArray of bool (n, h, w), optional
        Centre-cell masks, present when built with ``background=True``.
    multilabel : Tensor of float32 (n, k), optional
        As :class:`CellTensors`.
    stretched : bool
        The crops are stretched already (``ds.info["stretched"]``).
    read_partners : bool
        Read the partner cells; where False, ``partner`` is the image itself (for models
        that do not use it: half the reading and stretching), although the partners are
        still drawn, so that the generator goes on as with them.
    """

    images: object
    labels: torch.Tensor
    protein: np.ndarray
    masks: object = None
    multilabel: torch.Tensor | None = None
    stretched: bool = False
    read_partners: bool = True

    @classmethod
    def from_dataset(cls, ds, index=None, *, background=False, read_partners=True):
        """Cells ``index`` (all if None) of ``ds``, left on disk; as :meth:`CellTensors.from_dataset`."""
        index = np.arange(len(ds)) if index is None else np.asarray(index)
        labels, codes, multilabel = _cell_table(ds, index, background)

        def rows(array):  # a lazy array's selection is lazy too: nothing is read here
            return array.take(index) if is_lazy(array) else array[index]

        return cls(rows(ds.images), labels, codes, masks=rows(ds.masks) if background else None,
                   multilabel=multilabel, stretched=bool(ds.info.get("stretched")), read_partners=read_partners)

    def __post_init__(self):
        self._group_by_protein()

    def batch(self, index, generator=None):
        """The batch dict of :meth:`CellTensors.batch` (with ``mask``, ``level``, ``noise`` where masks are kept)."""
        index = np.asarray(index)
        partners = self.partners(index, generator) if generator is not None else None
        read = partners is not None and self.read_partners
        # each row read and stretched once, in ascending order, however often it is asked for
        rows, where = np.unique(np.concatenate([index, partners]) if read else index, return_inverse=True)
        raw = self.images[rows]
        images = torch.from_numpy(raw.astype(np.float32) if self.stretched else percentile_stretch(raw))
        where = torch.from_numpy(where.reshape(-1))
        idx = torch.as_tensor(index)
        out = {"image": images.index_select(0, where[:len(index)]), "label": self.labels.index_select(0, idx),
               "index": idx}
        out["partner"] = images.index_select(0, where[len(index):]) if read else out["image"]
        if self.masks is not None:
            from ..data.backgrounds import background_stats

            masks = np.ascontiguousarray(self.masks[index], dtype=bool)
            level, noise = background_stats(out["image"].numpy(), masks)
            out.update(mask=torch.from_numpy(masks), level=torch.from_numpy(level), noise=torch.from_numpy(noise))
        if self.multilabel is not None:
            out["multilabel"] = self.multilabel.index_select(0, idx)
        return out


class StepBatches(torch.utils.data.Dataset):
    """The cells of training step ``(epoch, step)`` and its generator's state: what a DataLoader worker builds.

    Item ``(epoch, step)`` is ``((epoch, step), cells, state)``: ``cells`` is
    ``data.batch(index, generator)`` for this process's share ``index`` of the step's
    global batch (``order[step * batch_size:(step + 1) * batch_size][rank::world]``, with
    the epoch's order drawn from ``step_generator(seed, epoch, 0, stream=1)``), and
    ``state`` the state (``Generator.get_state()``) of the step's generator
    ``step_generator(seed, epoch, step)`` after the partner cells were drawn. The training
    process continues from ``state`` (background randomisation, augmentation), so the
    random stream does not depend on where, or by how many workers, the cells were read.

    Parameters
    ----------
    data : CellTensors or StreamedCells
    seed, batch_size : int
    rank, world : int
        This process and the number of processes (DistributedDataParallel).
    """

    def __init__(self, data, *, seed, batch_size, rank=0, world=1):
        self.data, self.seed, self.batch_size, self.rank, self.world = data, seed, batch_size, rank, world
        self._order = (None, None)

    def order(self, epoch):
        """The epoch's order of the cells (a permutation of ``range(len(data))``)."""
        if self._order[0] != epoch:
            g = step_generator(self.seed, epoch, 0, stream=1)
            self._order = (epoch, torch.randperm(len(self.data), generator=g).numpy())
        return self._order[1]

    def __getitem__(self, key):
        epoch, step = key
        g = step_generator(self.seed, epoch, step)
        index = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size][self.rank::self.world]
        return (epoch, step), self.data.batch(index, g), g.get_state()


def _background_stats_of(ds, index, images):
    """:func:`protrep.data.backgrounds.background_stats` of the stretched cells ``index`` (``images``).

    Kept in ``ds.info["_background_stats"]`` per cell, so that several runs trained on one
    dataset (chapter 5 fine-tunes nine) compute them once (measured 8 s per run on 2
    cores); :meth:`CellDataset.subset` drops the entry, whose rows belong to ``ds``.
    """
    from ..data.backgrounds import background_stats

    cache = ds.info.get("_background_stats")
    if cache is None or len(cache[0]) != len(ds):
        shape = (len(ds), ds.images.shape[1])
        cache = ds.info["_background_stats"] = (np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32))
    level, noise = cache
    todo = np.isnan(level[index, 0])
    if todo.any():
        level[index[todo]], noise[index[todo]] = background_stats(images[todo], ds.masks[index[todo]])
    return level[index], noise[index]


def step_generator(seed, epoch, step, *, stream=0):
    """A CPU ``torch.Generator`` for one training step, independent of all others.

    ``stream`` separates uses: 0 for a step's partners and augmentation, 1 for an
    epoch's batch order, 2 for validation partners.
    """
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, stream, epoch, step]).generate_state(1)[0]))
    return g


def _dihedral(x, k, flip):
    """Mirror each image where ``flip[i]``, then rotate it by ``k[i]`` quarter turns.

    One pass per group of images sharing a transform (at most eight), each image copied
    once: measured 2.2x faster than flipping and rotating whole-batch copies.
    """
    out = torch.empty_like(x)
    for mirrored in (False, True):
        for r in range(4):
            sel = torch.nonzero((k == r) & (flip == mirrored)).flatten()
            if len(sel) == 0:
                continue
            y = x.index_select(0, sel)
            if mirrored:
                y = y.flip(-1)
            out.index_copy_(0, sel, torch.rot90(y, r, dims=(-2, -1)) if r else y)
    return out


def _crop_offsets(x, size, generator):
    n, _, h, w = x.shape
    oy = torch.randint(0, h - size + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, w - size + 1, (n,), generator=generator).to(x.device)
    return oy, ox


def _crop_at(x, size, oy, ox):
    """The ``size`` x ``size`` window of image ``i`` at row ``oy[i]``, column ``ox[i]``.

    Slices stacked rather than one gather with broadcast indices: 6x faster on CPU for a
    training batch, and the same values.
    """
    return torch.stack([x[i, :, a:a + size, b:b + size] for i, (a, b) in enumerate(zip(oy.tolist(), ox.tolist()))])


def center_crop(x, size):
    """The central ``size`` x ``size`` window of (n, c, h, w) images."""
    h, w = x.shape[-2:]
    if size is None or (h == size and w == size):
        return x
    y0, x0 = (h - size) // 2, (w - size) // 2
    return x[..., y0:y0 + size, x0:x0 + size]


def augment(batch, generator, *, crop=None, drop_channel=None):
    """Random flips, quarter turns and (if ``crop``) random crops, drawn from ``generator``.

    ``drop_channel=(c, p)`` then zeroes channel ``c`` of each image with probability ``p``
    (a model's ``train_channel_dropout``: SE-ResNet learns to do without the HPA ER channel,
    which single-cell crops lack); the draws come after all others, so models without it
    see the same augmentation as before.

    The image and the partner cell are transformed independently; a reconstruction
    ``"target"`` (see :func:`randomize_background`) gets the image's
    transform. Labels do not change (localization is invariant to these transforms).
    """
    out = dict(batch)
    for key, follower in (("image", "target"), ("partner", None)):
        x = batch[key]
        n = x.shape[0]
        k = torch.randint(0, 4, (n,), generator=generator).to(x.device)
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        cut = crop is not None and crop < x.shape[-1]
        offsets = _crop_offsets(x, crop, generator) if cut else None
        for name in (key, follower):
            if name is None or name not in batch:
                continue
            y = _dihedral(batch[name], k, flip)
            out[name] = _crop_at(y, crop, *offsets) if cut else y
    if drop_channel is not None:
        c, p = drop_channel
        x = out["image"]
        keep = (torch.rand(x.shape[0], generator=generator) >= p).to(device=x.device, dtype=x.dtype)
        x = x.clone()
        x[:, c] *= keep[:, None, None]
        out["image"] = x
    return out


def randomize_background(batch, masks, level, noise, generator, *, p=0.5, modes=(0, 1, 2)):
    """Training-time background randomisation of a batch (``TrainConfig.background``).

    The training counterpart of the settings of :mod:`protrep.data.backgrounds` (Gupta et
    al. 2025): it keeps a model from using the neighbours of the centre cell.

    Each crop, with probability ``p``, gets a new background: masked to its level, swapped
    in from another crop of the batch (shifted to its level), or cell-free noise, one of
    the three with equal chance. ``batch["target"]`` becomes the masked crop (the centre
    cell alone), the reconstruction target of autoencoders trained this way.

    Parameters
    ----------
    batch : dict
        With ``"image"`` float (B, C, H, W).
    masks : Tensor of bool (B, H, W)
    level, noise : Tensor (B, C)
        Background level and noise of each crop, in the units of ``batch["image"]``.
    generator : torch.Generator (CPU)
    modes : tuple of int
        The replacements drawn from, with equal chance: 0 masked, 1 swapped, 2 cell-free
        (``(0,)``: masking only, ``TrainConfig.background_mode="mask"``).

    Returns
    -------
    dict
        A new batch; the other keys are passed through.
    """
    x = batch["image"]
    b = x.shape[0]
    dev = x.device
    u = torch.rand(b, generator=generator).to(dev)
    mode = torch.randint(0, len(modes), (b,), generator=generator)
    mode = (mode if tuple(modes) == (0, 1, 2) else torch.as_tensor(modes)[mode]).to(dev)
    partner = torch.randint(0, max(b - 1, 1), (b,), generator=generator)
    partner = (partner + (partner >= torch.arange(b))).clamp(max=b - 1).to(dev)  # another crop of the batch
    gauss = torch.randn(x.shape, generator=generator).to(dev, x.dtype)
    lev = level.to(dev, x.dtype)[:, :, None, None]
    swapped = x[partner] + (lev - lev[partner])
    cellfree = lev + noise.to(dev, x.dtype)[:, :, None, None] * gauss
    new = torch.where((mode == 0)[:, None, None, None], lev, torch.where((mode == 1)[:, None, None, None],
                                                                       swapped, cellfree))
    keep = (u >= p)[:, None, None, None]
    m = masks.to(dev)
    out = dict(batch)
    out["image"] = torch.where(keep, x, torch.where(m[:, None], x, new))
    out["target"] = mask_to_level(x, m, level.to(dev, x.dtype))
    return out


def mask_to_level(images, masks, level):
    """The centre cells of ``images`` (where ``masks``, (B, H, W)) on a constant ``level`` (B, C): tensors.

    :func:`protrep.data.backgrounds.mask_background` for batches on the training device.
    """
    return torch.where(masks[:, None], images, level[:, :, None, None])
