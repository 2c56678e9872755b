"""Background settings of single-cell crops: the centre cell kept, its surroundings changed.

A crop of a yeast screen holds its centre cell and pieces of its neighbours. Neighbours
express the same protein, so a model may classify the centre cell by looking at them
(Gupta, Moses & Lu 2025). Keeping the centre cell fixed by its mask, this module builds
crops whose background is one of five *settings*:

============  ===========================================================================
``base``      unaltered
``mask``      everything outside the centre cell set to the crop's background level
``same``      swapped in from a crop of another protein of the same localization class
``diff``      swapped in from a crop of a different localization class (class drawn
              uniformly among the other classes, then a cell uniformly)
``cellfree``  replaced by cell-free background: Gaussian noise with the level and noise
              of the crop's own cell-free pixels
============  ===========================================================================

Intensity normalisation. A crop's *background level* and *noise* are the median and
1.4826 x MAD, per channel, of its cell-free pixels: those outside the centre cell and
outside the (slightly grown) Otsu foreground of the marker channel, see
:func:`background_stats`. ``mask`` fills with the level rather than
with 0 (as Gupta et al. do in their normalised images): in raw camera counts 0 lies below
the camera offset, and the per-cell percentile stretch the models apply would turn it into
a black frame that no real crop has. A swapped-in donor crop is shifted by the difference
of the two background levels, so the recipient keeps its own background level and the
donor's cells keep their contrast over it.

The measurements on these crops are in :mod:`protrep.evaluation.confounding`; the
training-time counterpart, :func:`protrep.training.batches.randomize_background`, applies
the same three replacements to a random share of each batch.

References
----------
Gupta, Moses & Lu (2025). Representation learning methods for single-cell microscopy are
confounded by background cells. PMLR 311.
"""

import numpy as np

from ..errors import DataError
from ..progress import progress as progress_bar

__all__ = ["SETTINGS", "background_stats", "compose", "mask_background", "draw_donors", "background_setting",
           "partial_stats", "background_brightness", "matched_donors"]

SETTINGS = ("base", "mask", "same", "diff", "cellfree")
_MIN_FREE = 64


def background_stats(images, masks, *, marker=1, progress=False):
    """Background level and noise of every crop and channel, from its cell-free pixels.

    Cell-free pixels lie outside the centre cell and outside the foreground of the marker
    channel: Otsu's threshold of the marker smoothed with a Gaussian (sigma 1 px), the
    foreground grown by 2 px to leave out the blurred rims of cells. (Within 1% of the level
    and 20% of the noise found with a full segmentation, :func:`protrep.data.segment.segment_crop`,
    at a fifth of the cost.) Where fewer than 64 pixels are cell-free, all pixels outside the
    centre cell are used.

    Parameters
    ----------
    images : ndarray, shape (n, c, h, w)
    masks : ndarray of bool, shape (n, h, w)
        Centre-cell masks.
    marker : int
        Channel whose foreground marks every cell of the crop (the cytosolic marker).

    Returns
    -------
    level, noise : ndarray of float32, shape (n, c)
        Median and 1.4826 x median absolute deviation of the cell-free pixels.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks, dtype=bool)
    if images.ndim != 4 or masks.shape != (images.shape[0],) + images.shape[2:]:
        raise ValueError(f"images (n, c, h, w) and masks (n, h, w) must match; got {images.shape} and {masks.shape}")
    n, c = images.shape[:2]
    level = np.zeros((n, c), np.float32)
    noise = np.zeros((n, c), np.float32)
    grow = np.zeros((3, 3, 3), bool)
    grow[1] = ndi.generate_binary_structure(2, 1)  # within each crop only
    for start in progress_bar(range(0, n, 1024), desc="background statistics", unit="block", disable=not progress):
        stop = min(start + 1024, n)
        smooth = ndi.gaussian_filter(images[start:stop, marker], sigma=(0, 1, 1))
        fg = np.stack([s > threshold_otsu(s) if s.max() > s.min() else np.zeros(s.shape, bool) for s in smooth])
        fg = ndi.binary_dilation(fg, structure=grow, iterations=2)
        for i in range(start, stop):
            free = ~fg[i - start] & ~masks[i]
            if free.sum() < _MIN_FREE:
                free = ~masks[i] if (~masks[i]).any() else np.ones_like(free)
            values = images[i][:, free]
            med = np.median(values, axis=1)
            level[i] = med
            noise[i] = 1.4826 * np.median(np.abs(values - med[:, None]), axis=1)
    return level, noise


def compose(images, masks, background):
    """The centre cells of ``images`` (where ``masks``) over ``background``; (n, c, h, w), or broadcastable to it."""
    return np.where(masks[:, None], images, background).astype(np.float32, copy=False)


def mask_background(images, masks, level):
    """The centre cells of ``images`` on a constant background: ``level`` (n, c) per crop and channel."""
    return compose(images, masks, level[:, :, None, None])


def draw_donors(labels, proteins, pool_labels, pool_proteins, *, same, rng):
    """A donor cell from ``pool`` for every cell: same class (other protein) or another class.

    Parameters
    ----------
    labels, proteins : arrays (n,)
        Class index and protein of the recipient cells.
    pool_labels, pool_proteins : arrays (m,)
        Class index and protein of the candidate donors.
    same : bool
        True: a donor of the recipient's class, from another protein when the class has
        one (else another cell of the same protein). False: a class drawn uniformly from the
        other classes present in the pool, then a donor uniformly from it.
    rng : numpy Generator

    Returns
    -------
    ndarray of int (n,)
        Index into the pool.
    """
    labels, proteins = np.asarray(labels), np.asarray(proteins)
    pool_labels, pool_proteins = np.asarray(pool_labels), np.asarray(pool_proteins)
    by_class = {k: np.flatnonzero(pool_labels == k) for k in np.unique(pool_labels)}
    present = np.array(sorted(by_class))
    donors = np.empty(len(labels), int)
    for i, (k, p) in enumerate(zip(labels, proteins)):
        if same:
            cand = by_class.get(k)
            if cand is None:
                raise ValueError(f"no donor of class {k} in the pool for a same-class swap")
            other = cand[pool_proteins[cand] != p]
            cand = other if len(other) else cand
        else:
            classes = present[present != k]
            if not len(classes):
                raise ValueError("the pool has no other class to swap in from")
            cand = by_class[classes[rng.integers(len(classes))]]
        donors[i] = cand[rng.integers(len(cand))]
    return donors


def background_setting(ds, setting, *, index=None, donors=None, donor_of=None, stats=None, seed=0):
    """Cells ``index`` of ``ds`` in one background setting, as a new :class:`CellDataset`.

    Parameters
    ----------
    ds : CellDataset
        With centre-cell masks, a ``label`` column (class index, -1 unknown) and ``protein``.
    setting : str
        One of :data:`SETTINGS`.
    index : array of int, optional
        The recipient cells (all if None).
    donors : array of int, optional
        Cells of ``ds`` that may donate backgrounds for ``same`` and ``diff`` (default: every
        labelled cell of a single-localized protein).
    stats : (level, noise), optional
        :func:`background_stats` of all cells of ``ds`` (computed as needed if None).
    seed : int
        Seed of the donors and of the cell-free noise.

    Returns
    -------
    CellDataset
        Images float32, masks and metadata of the recipients; ``meta["donor"]`` holds the
        donor cell of a swap (-1 otherwise).
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown background setting {setting!r}; choose from {list(SETTINGS)}")
    if ds.masks is None:
        raise DataError(ds.source or "dataset", "has no centre-cell masks; background settings need them "
                        "(segment the crops with protrep.data.segment.segment_crop)")
    index = np.arange(len(ds)) if index is None else np.asarray(index)
    rng = np.random.default_rng([seed, SETTINGS.index(setting)])
    images = ds.images[index].astype(np.float32)
    masks = ds.masks[index]
    donor = np.full(len(index), -1)
    if setting != "base":
        level, noise = stats if stats is not None else (None, None)

        def stats_of(idx):
            if level is None:
                return background_stats(ds.images[idx], ds.masks[idx])
            if np.isnan(level[idx]).any():
                raise ValueError("stats lack some of the cells used (NaN); compute them for recipients and donors")
            return level[idx], noise[idx]

        lev, noi = stats_of(index)
        if setting == "mask":
            background = lev[:, :, None, None]
        elif setting == "cellfree":
            background = lev[:, :, None, None] + noi[:, :, None, None] * rng.standard_normal(images.shape,
                                                                                            dtype=np.float32)
        else:
            labels = ds.meta["label"].to_numpy()
            proteins = ds.meta["protein"].to_numpy()
            if donor_of is not None:
                donor = np.asarray(donor_of)
                if donor.shape != index.shape:
                    raise ValueError(f"donor_of must give one donor per recipient: {donor.shape} for {index.shape}")
            else:
                if (labels[index] < 0).any():
                    raise ValueError("same/diff swaps need a class label for every recipient cell")
                if donors is None:
                    donors = np.flatnonzero((labels >= 0) & ~ds.meta["localization"].astype(str).str.contains(";"))
                donors = np.asarray(donors)
                donor = donors[draw_donors(labels[index], proteins[index], labels[donors], proteins[donors],
                                           same=setting == "same", rng=rng)]
            dlev, _ = stats_of(donor)
            background = ds.images[donor].astype(np.float32) + (lev - dlev)[:, :, None, None]
        images = compose(images, masks, background)
    out = ds.subset(index)
    out.images = images
    out.meta = out.meta.assign(donor=donor)
    return out


def partial_stats(ds, index, *, progress=True):
    """:func:`background_stats` of cells ``index`` in arrays over all of ``ds`` (NaN for the others)."""
    index = np.unique(np.asarray(index))
    level = np.full((len(ds), ds.images.shape[1]), np.nan, np.float32)
    noise = level.copy()
    level[index], noise[index] = background_stats(ds.images[index], ds.masks[index], progress=progress)
    return level, noise


def background_brightness(images, masks, level, *, channel=0, q=99.9):
    """How bright a crop's surroundings are: the ``q``-th percentile of ``channel`` outside the centre cell, over the level.

    The per-crop percentile stretch every model applies (:func:`protrep.data.normalize.percentile_stretch`,
    99.9th percentile) is set by the brightest pixels of the crop; a swapped-in background
    brighter than the recipient's own dims its centre cell after the stretch. Matching
    donors on this quantity keeps the stretch as it was (:func:`matched_donors`).

    Returns
    -------
    ndarray of float32 (n,)
        ``percentile(outside, q) - level[:, channel]``, at least 1 (camera units).
    """
    images = np.asarray(images)
    masks = np.asarray(masks, bool)
    out = np.empty(len(images), np.float32)
    for i in range(len(images)):
        outside = images[i, channel][~masks[i]]
        out[i] = np.percentile(outside, q) if outside.size else images[i, channel].max()
    return np.maximum(out - np.asarray(level)[:, channel], 1.0)


def matched_donors(labels, proteins, brightness, recipients, pool, *, same, k=5, rng):
    """A donor for every recipient, of the same class (other protein) or another class, matched in brightness.

    Candidates: cells of ``pool`` of the recipient's class from other proteins (``same``),
    or of any other class (``not same``: every candidate cell equally likely before the
    match, so classes enter in proportion to their cells, not uniformly). The donor is
    drawn uniformly from the ``k`` candidates nearest to the recipient in log
    :func:`background_brightness`, so that same and different swaps change the crops'
    intensity scale equally little.

    Parameters
    ----------
    labels, proteins, brightness : arrays (n,) over the whole dataset
    recipients, pool : arrays of int
        Indices of the recipients and of the cells that may donate.
    same : bool
    k : int
    rng : numpy Generator

    Returns
    -------
    ndarray of int, aligned with ``recipients``
        Dataset index of each donor.

    Raises
    ------
    ValueError
        When a recipient has no candidate (a class with a single protein in the pool, for a
        same-class swap).
    """
    labels, proteins = np.asarray(labels), np.asarray(proteins)
    pool = np.asarray(pool)
    logb = np.log(np.asarray(brightness, np.float64))
    out = np.empty(len(recipients), int)
    for i, r in enumerate(np.asarray(recipients)):
        ok = (labels[pool] == labels[r]) & (proteins[pool] != proteins[r]) if same else labels[pool] != labels[r]
        cand = pool[ok]
        if not len(cand):
            raise ValueError(f"no {'same' if same else 'different'}-class donor in the pool for cell {r} "
                             f"(class {labels[r]}, protein {proteins[r]})")
        near = cand[np.argsort(np.abs(logb[cand] - logb[r]), kind="stable")[:k]]
        out[i] = near[rng.integers(len(near))]
    return out
