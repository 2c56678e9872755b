"""Real CellProfiler measurements of every cell (cp-measure): the paper's handcrafted baseline.

Razdaibiedina & Brechalov (2022) compare CNN protein embeddings with CellProfiler
features of the same cells, standardised and reduced by PCA. :func:`measure_cells` makes
those measurements with ``cp-measure`` (CellProfiler's measurement modules as functions on
arrays) inside the centre-cell mask of every crop, and :func:`cellprofiler_tables` turns
them into the two protein tables of the baseline. The faster, vectorised
"CellProfiler-like" feature set is :mod:`protrep.evaluation.handcrafted`.

What is measured, per cell (column names ``{Module}_{Feature}_{CHANNEL}``; numbers of
features per cell, per channel or per channel pair):

=======================  =========================================================  ======
``AreaShape_``           MeasureObjectSizeShape: size, shape, moments, Zernike      99
                         shape, Feret diameters; once per cell (the mask has no
                         channel)
``Intensity_``           MeasureObjectIntensity, whole object and its edge          15/ch
``Granularity_``         MeasureGranularity, a 16-step spectrum                     16/ch
``Texture_``             MeasureTexture: 13 Haralick features in 4 directions at    52/ch
                         scale 3, 256 grey levels
``RadialDistribution_``  MeasureObjectIntensityDistribution: 4 rings (FracAtD,      72/ch
                         MeanFrac, RadialCV) and intensity Zernikes to n = 9
                         (magnitude and phase)
``Correlation_``         MeasureColocalization of every channel pair: Pearson and   8/pair
                         slope, Manders, rank-weighted (RWC) and Costes-
                         thresholded Manders, each fraction both ways
                         (``_GFP_RFP``: the fraction of GFP)
=======================  =========================================================  ======

417 features for a GFP/RFP cell. Left out: coordinates of the cell in its crop
(``Location_*``, ``AreaShape_Center_*``, ``AreaShape_BoundingBox{Minimum,Maximum}_*``,
which say where the crop was cut, not what the cell is) and moments that are undefined or
zero by definition (normalised moments of order < 2, central moments of order 1).

Choices, and why:

- **Intensity scale.** CellProfiler works on images in [0, 1]. ``rescale="cell"`` (the
  default) first stretches every crop and channel between its own 0.1 and 99.9
  percentiles, :func:`protrep.data.normalize.percentile_stretch`, the very input every CNN
  of the book sees, so baseline and models get the same pixels (and texture's 256 grey
  levels are filled; the raw 16-bit counts of a dim cell would use a handful).
  ``rescale="none"`` measures images that already lie in [0, 1].
- **Costes' threshold grid** (``scale_max``). cp-measure requires it for float input: the
  threshold search steps through ``1 / scale_max`` of the intensity range. CellProfiler
  takes the storage maximum of the integer image it loaded. Our crops are 16-bit camera
  counts mapped linearly onto [0, 1] (a range of at most 65535 counts), so
  :data:`COSTES_SCALE_MAX` = 65535 makes one grid step at most one count: the search can
  put the threshold between any two distinct intensities, as CellProfiler does on the raw
  16-bit image. 255 would quantise the threshold to 1/255 of the range (tens of counts in
  a bright cell): on simulated crops it moves the Costes coefficients of a few cells by up
  to 0.9 (median 0.001), for 3.0 instead of 5.0 ms per cell. Costes is undefined (NaN) in
  about one cell in five, where no background subset has a non-negative GFP-RFP
  correlation (the protein avoids the cytosolic marker), whatever the scale.
- **Granularity** (:data:`GRANULARITY`). CellProfiler's defaults are made for whole
  fields: subsampling by 0.25 would shrink a 64 px crop to 16 px with the cell about 10 px
  across, sample every fourth pixel (so a punctum of the simulator's 1 px PSF can fall
  between samples) and leave half of the 16-step spectrum beyond the cell's size. On
  crops we subsample by 0.5 (5 instead of 3.5 ms per channel); the background is still
  CellProfiler's (a 0.25 image opened by a disk of radius 10). Granularity is a
  whole-image measurement (background removal and openings see the neighbourhood), so
  every cell is measured on its own full crop.
- **Speed.** Most modules measure every object of a label image in one call, so the
  cells of a chunk are cut to their mask's bounding box plus :data:`MARGIN` px, laid
  side by side (:data:`GAP` px apart) in one label image and measured together: 2-8x
  less time in size and shape, Feret, intensity and radial distribution, 28 % less in
  all, 27 instead of 38 ms per GFP/RFP cell on one core
  (``benchmarks/bench_cellprofiler.py``). The result is the same, to round-off (1e-13 of
  a feature's spread), as cp-measure on every full crop alone, and so does not depend on
  which cells are measured together. To keep it so, three modules still see every cell
  alone (:data:`ALONE`): granularity, which works on the whole image (background
  removal, openings), and the Zernike features (shape and intensity), whose enclosing
  circle is computed in image coordinates: moved into a mosaic, pixels lying exactly on
  the circle fall in or out by round-off, which moves a tenth of the Zernike values by
  more than 0.1 of the feature's spread. A cell cut by the crop's border is measured
  alone too, where the cut is the image's border and not an edge of the object. Worker
  processes and the parent run numpy's BLAS on one thread: faster here (texture does
  many tiny products) and the same numbers for any ``n_jobs``.

References
----------
.. [1] Razdaibiedina, A. & Brechalov, A. Learning multi-scale functional representations
   of proteins from single-cell microscopy data. ICLR MLDD workshop (2022).
.. [2] Stirling, D. R. et al. CellProfiler 4: improvements in speed, utility and usability.
   BMC Bioinformatics 22, 433 (2021).
.. [3] Muñoz, A. F. et al. cp_measure: API-first feature extraction for image-based
   profiling workflows. arXiv:2507.01163 (2025).
.. [4] Costes, S. V. et al. Automatic and quantitative measurement of protein-protein
   colocalization in live cells. Biophys. J. 86, 3993-4003 (2004).
"""

import functools
import hashlib
import itertools
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.arrays import blocks, is_lazy

__all__ = [
    "ALONE",
    "COSTES_SCALE_MAX",
    "GRANULARITY",
    "cellprofiler_tables",
    "feature_names",
    "measure_cells",
    "select_cells",
]

log = logging.getLogger(__name__)

#: Costes' threshold grid for our [0, 1] float images (see the module docstring).
COSTES_SCALE_MAX = 65535
#: MeasureGranularity settings for 64 px single-cell crops (see the module docstring).
GRANULARITY = {"subsample_size": 0.5, "image_sample_size": 0.25, "element_size": 10, "granular_spectrum_length": 16}
#: Pixels kept around each mask's bounding box in a mosaic.
MARGIN = 2
#: Background pixels between two cells of a mosaic.
GAP = 2

SHAPE_MODULES = ("sizeshape", "zernike", "feret")
CHANNEL_MODULES = ("intensity", "granularity", "texture", "radial_distribution", "radial_zernikes")
PAIR_MODULES = ("pearson", "manders_fold", "rwc", "costes")
#: Modules that measure every cell on its own full crop, never in a mosaic (see the module docstring).
ALONE = ("granularity", "zernike", "radial_zernikes")
_PREFIX = {"sizeshape": "AreaShape_", "zernike": "AreaShape_", "feret": "AreaShape_", "texture": "Texture_"}
_LEFT_OUT = re.compile(r"^(Location_|Center_|BoundingBox(Minimum|Maximum)_|NormalizedMoment_(0_0|0_1|1_0)$"
                       r"|CentralMoment_(0_1|1_0)$)")
_MOSAIC_WIDTH = 512
_CHUNK = 64
_MAX_MISSING = 0.5  # a feature undefined in more than half of the cells is dropped, not imputed


# ---------------------------------------------------------------------------------------
# cp-measure functions and column names


@functools.cache
def _functions():
    """Module name -> cp-measure function with our settings (labels are already 1..N)."""
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements

    fns = {**get_core_measurements(sanitize=False), **get_correlation_measurements(sanitize=False)}
    fns["granularity"] = functools.partial(fns["granularity"], **GRANULARITY)
    fns["costes"] = functools.partial(fns["costes"], scale_max=COSTES_SCALE_MAX)
    return fns


def _column(module, key, channels):
    """CellProfiler-style name of cp-measure's ``key``; ``channels`` is () for shape, (c,) or (c1, c2)."""
    names = [c.upper() for c in channels]
    if module in PAIR_MODULES:
        base, _, which = key.rpartition("_")
        if which in ("1", "2"):  # Manders, RWC, Costes: _1 is the first channel's fraction
            return f"{base}_{'_'.join(names if which == '1' else names[::-1])}"
        return f"{key}_{'_'.join(names)}"
    return "_".join([_PREFIX.get(module, "") + key, *names])


@functools.cache
def _module_keys(module):
    """The measurement keys cp-measure returns for ``module``, in its order (probed on a disc)."""
    rr, cc = np.mgrid[:32, :32]
    mask = ((rr - 15.5) ** 2 + (cc - 15.5) ** 2 <= 100).astype(np.int32)
    pixels = np.random.default_rng(0).uniform(0.2, 0.8, (32, 32))
    fn = _functions()[module]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn(pixels, pixels[::-1], mask) if module in PAIR_MODULES else fn(mask, pixels)
    return tuple(k for k in out if not _LEFT_OUT.match(k))


def feature_names(channels=("gfp", "rfp")):
    """Names of the columns of :func:`measure_cells`, in order.

    Shape features once, then every channel's intensity, granularity, texture and radial
    distribution, then the colocalization of every pair of channels (in channel order).

    Parameters
    ----------
    channels : sequence of str
        Channel names in image order (upper-cased in the column names).

    Returns
    -------
    list of str
    """
    channels = tuple(channels)
    names = [_column(m, k, ()) for m in SHAPE_MODULES for k in _module_keys(m)]
    names += [_column(m, k, (c,)) for c in channels for m in CHANNEL_MODULES for k in _module_keys(m)]
    names += [_column(m, k, pair) for pair in itertools.combinations(channels, 2)
              for m in PAIR_MODULES for k in _module_keys(m)]
    return names


# ---------------------------------------------------------------------------------------
# one chunk of cells (runs in a worker process)


def _boxes(masks):
    """Bounding box of every mask plus MARGIN px, clipped to the crop: list of (slice, slice)."""
    h, w = masks.shape[1:]
    out = []
    for m in masks:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        out.append((slice(max(rows[0] - MARGIN, 0), min(rows[-1] + 1 + MARGIN, h)),
                    slice(max(cols[0] - MARGIN, 0), min(cols[-1] + 1 + MARGIN, w))))
    return out


def _mosaic(pixels, masks, boxes, cells):
    """The boxes of ``cells`` side by side, GAP px apart: labels 1..k (int32) and (c, H, W) float64."""
    sizes = [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in (boxes[i] for i in cells)]
    width = max(_MOSAIC_WIDTH, max(w for _, w in sizes))
    places, y, x, row = [], 0, 0, 0
    for h, w in sizes:  # shelf packing: left to right, a new row when the width is used up
        if x + w > width:
            y, x, row = y + row + GAP, 0, 0
        places.append((y, x))
        x, row = x + w + GAP, max(row, h)
    labels = np.zeros((y + row, width), np.int32)
    out = np.zeros((pixels.shape[1], y + row, width))
    for k, (i, (y0, x0), (h, w)) in enumerate(zip(cells, places, sizes)):
        labels[y0:y0 + h, x0:x0 + w][masks[i][boxes[i]]] = k + 1
        out[:, y0:y0 + h, x0:x0 + w] = pixels[i][(slice(None), *boxes[i])]
    return labels, out


def _call(module, args_of, cells, failures):
    """cp-measure's ``module`` on ``cells`` together: key -> array of one value per cell.

    If the call raises, every cell is measured alone so that only the cell at fault loses
    this module's features (NaN); it is added to ``failures`` as (cell, module, error).
    """
    fn = _functions()[module]
    try:
        return {k: np.asarray(v, np.float64).reshape(len(cells)) for k, v in fn(*args_of(cells)).items()}
    except Exception as e:  # noqa: BLE001 - cp-measure raises many types (ValueError, IndexError, QhullError, ...)
        if len(cells) == 1:
            failures.append((int(cells[0]), module, f"{type(e).__name__}: {e}"))
            return {}
    parts = [_call(module, args_of, [c], failures) for c in cells]
    keys = next((p.keys() for p in parts if p), ())
    return {k: np.array([p[k][0] if p else np.nan for p in parts]) for k in keys}


def _calls(channels, source):
    """(module, channel names, cells -> arguments of its cp-measure function) of every call.

    ``source(cells)`` gives the label image and the (c, h, w) pixels the cells lie in.
    """

    def shape(cells):
        return source(cells)[0], None

    def channel(cells, c):
        labels, pixels = source(cells)
        return labels, pixels[c]

    def pair(cells, a, b):
        labels, pixels = source(cells)
        return pixels[a], pixels[b], labels

    calls = [(m, (), shape) for m in SHAPE_MODULES]
    calls += [(m, (name,), functools.partial(channel, c=c)) for c, name in enumerate(channels)
              for m in CHANNEL_MODULES]
    calls += [(m, (na, nb), functools.partial(pair, a=a, b=b))
              for (a, na), (b, nb) in itertools.combinations(enumerate(channels), 2) for m in PAIR_MODULES]
    return calls


def _groups(module, cells, cut):
    """How ``module`` measures the cells: lists measured together (in a mosaic) or alone (full crop).

    Every cell is measured alone by the modules of :data:`ALONE`, and so is a cell cut by
    the crop's border (``cut``): in its crop the cut is the image's border, not an edge of
    the object (MeasureObjectIntensity's edge, the rings of
    MeasureObjectIntensityDistribution); in a mosaic it would be one.
    """
    if module in ALONE:
        return [[c] for c in cells]
    return [[c for c in cells if not cut[c]]] + [[c] for c in cells if cut[c]]


def _measure_chunk(images, masks, channels, rescale, names):
    """Measurements of a chunk of cells: (k, len(names)) float64, failures, seconds per module."""
    from threadpoolctl import threadpool_limits

    from ..data.normalize import percentile_stretch

    pixels = np.asarray(percentile_stretch(images) if rescale == "cell" else images, np.float64)
    out = np.full((len(images), len(names)), np.nan)
    index = {name: j for j, name in enumerate(names)}
    cells = np.flatnonzero(masks.any((1, 2)))
    cut = masks[:, 0].any(1) | masks[:, -1].any(1) | masks[:, :, 0].any(1) | masks[:, :, -1].any(1)
    failures, seconds, boxes = [], {}, dict(zip(cells, _boxes(masks[cells])))
    mosaics = {}

    def source(subset):  # a cell alone: its full crop; several: their mosaic
        if len(subset) == 1:
            return masks[subset[0]].astype(np.int32), pixels[subset[0]]
        if tuple(subset) not in mosaics:
            mosaics[tuple(subset)] = _mosaic(pixels, masks, boxes, subset)
        return mosaics[tuple(subset)]

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined Costes, 0/0 in rings of one pixel: NaN, counted later
        for module, chans, args_of in _calls(channels, source):
            start = time.perf_counter()
            for group in _groups(module, cells, cut):
                for key, values in (_call(module, args_of, group, failures) if group else {}).items():
                    j = index.get(_column(module, key, chans))
                    if j is not None:
                        out[group, j] = values
            seconds[module] = seconds.get(module, 0.0) + time.perf_counter() - start
    return out, failures, seconds


# ---------------------------------------------------------------------------------------
# all cells


def _validate(images, masks, channels, rescale, n_jobs, chunk_size):
    channels = tuple(channels)
    images, masks = (a if is_lazy(a) else np.asarray(a) for a in (images, masks))  # a sharded dataset stays on disk
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w); got {images.shape}. "
                         "Add a channel axis with images[:, None] for one-channel crops.")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must hold integers or floats; got dtype {images.dtype}.")
    if len(channels) != images.shape[1]:
        raise ValueError(f"images have {images.shape[1]} channels but channels names {len(channels)}: "
                         f"{channels}; pass one name per channel, e.g. channels=('gfp', 'rfp').")
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"masks must have shape (n, h, w) = {(images.shape[0], *images.shape[2:])} to match "
                         f"images; got {masks.shape}.")
    if masks.dtype != bool:
        if not all(np.isin(b, (0, 1)).all() for _, b in blocks(masks)):
            raise ValueError("masks must be boolean (or 0/1); convert a label image with labels == k.")
        if not is_lazy(masks):
            masks = masks.astype(bool)
    if rescale not in ("cell", "none"):
        raise ValueError(f"rescale must be 'cell' (per-crop percentile stretch) or 'none'; got {rescale!r}.")
    if not all(np.isfinite(b).all() for _, b in blocks(images)):
        raise ValueError("images contain NaN or infinite values; replace them first.")
    if rescale == "none" and images.size:
        low = min((b.min() for _, b in blocks(images)), default=0)
        high = max((b.max() for _, b in blocks(images)), default=0)
        if low < 0 or high > 1:
            raise ValueError(f"rescale='none' measures images in [0, 1] as CellProfiler does; these span "
                             f"[{low:g}, {high:g}]. Use rescale='cell' or divide them first.")
    for name, value in (("n_jobs", n_jobs), ("chunk_size", chunk_size)):
        if value is not None and not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1 (or None); got {value!r}.")
    return images, masks, channels


def _report(n, empty, failures, names_of_cells):
    """Log the cells without measurements (empty masks) and the module calls that failed."""
    if len(empty):
        log.warning("%d of %d cells have an empty mask and no measurements (NaN): cells %s", len(empty), n,
                    names_of_cells(empty[:10]) + (" ..." if len(empty) > 10 else ""))
    if failures:
        cells = sorted({c for c, _, _ in failures})
        log.warning("a cp-measure call failed for %d of %d cells (their features from that module are NaN): %s", len(cells),
                    n, "; ".join(f"cell {names_of_cells([c])} {m}: {e}" for c, m, e in failures[:10])
                    + (" ..." if len(failures) > 10 else ""))


def measure_cells(images, masks, *, channels=("gfp", "rfp"), rescale="cell", n_jobs=None, chunk_size=_CHUNK,
                  progress=True):
    """CellProfiler measurements of the centre cell of every crop (cp-measure).

    Parameters
    ----------
    images : array_like, shape (n, c, h, w)
        Crops, any real dtype, channels in the order of ``channels``.
    masks : array_like of bool, shape (n, h, w)
        The cell to measure in every crop. An empty mask gives a row of NaN (logged).
    channels : sequence of str, default ("gfp", "rfp")
        Channel names; every channel is measured, and every pair is colocalized.
    rescale : {"cell", "none"}, default "cell"
        ``"cell"``: stretch every crop and channel to [0, 1] between its 0.1 and 99.9
        percentiles first (the CNNs' input); ``"none"``: the images already lie in [0, 1].
    n_jobs : int, optional
        Worker processes (joblib); None uses every available core. The result does not
        depend on it.
    chunk_size : int, default 64
        Cells per task, measured together in one mosaic (the result does not depend on it).
    progress : bool, default True
        Show a progress bar (cells).

    Returns
    -------
    DataFrame, shape (n, n_features)
        float64, columns :func:`feature_names` of ``channels`` (417 for GFP and RFP); row
        ``i`` describes crop ``i``. NaN where a feature is undefined (e.g. Costes' threshold
        of a flat cell), for every feature of an empty mask, and for a module whose
        cp-measure call raised on that cell (logged with the cell and the error).
        ``attrs``: ``empty`` and ``failed`` (indices of cells), ``failures`` (cell,
        module, error) and ``seconds`` (time per module, summed over workers).

    References
    ----------
    .. [1] Stirling et al. (2021), BMC Bioinformatics 22, 433 (CellProfiler 4).
    .. [2] Muñoz et al. (2025), arXiv:2507.01163 (cp_measure).

    Examples
    --------
    >>> import numpy as np
    >>> images = np.full((1, 2, 32, 32), 0.25)
    >>> masks = np.zeros((1, 32, 32), bool)
    >>> masks[0, 8:24, 8:24] = True
    >>> f = measure_cells(images, masks, rescale="none", n_jobs=1, progress=False)
    >>> f[["AreaShape_Area", "Intensity_MeanIntensity_GFP"]].iloc[0].tolist()
    [256.0, 0.25]
    """
    from joblib import Parallel, cpu_count, delayed

    from ..progress import progress as bar

    images, masks, channels = _validate(images, masks, channels, rescale, n_jobs, chunk_size)
    names = feature_names(channels)
    n = len(images)
    out = np.full((n, len(names)), np.nan)
    failures, seconds = [], {}
    starts = range(0, n, chunk_size)
    tasks = (delayed(_measure_chunk)(images[s:s + chunk_size], np.asarray(masks[s:s + chunk_size], bool), channels, rescale, names)
             for s in starts)
    with bar(total=n, desc="CellProfiler", unit="cell", disable=not progress) as pbar:
        results = Parallel(n_jobs=n_jobs or cpu_count(), return_as="generator")(tasks)
        for s, (values, chunk_failures, chunk_seconds) in zip(starts, results):
            out[s:s + len(values)] = values
            failures += [(s + c, m, e) for c, m, e in chunk_failures]
            for m, t in chunk_seconds.items():
                seconds[m] = seconds.get(m, 0.0) + t
            pbar.update(len(values))
    empty = np.concatenate([s + np.flatnonzero(~np.asarray(b, bool).any((1, 2))) for s, b in blocks(masks)]
                           or [np.zeros(0, np.int64)])
    _report(n, empty, failures, lambda cells: ", ".join(str(c) for c in cells))
    table = pd.DataFrame(out, columns=names)
    table.attrs.update(empty=empty.tolist(), failed=sorted({c for c, _, _ in failures}),
                       failures=[list(f) for f in failures], seconds=seconds)
    return table


# ---------------------------------------------------------------------------------------
# protein tables


def select_cells(proteins, cells_per_protein=None, *, seed=0):
    """Positions of at most ``cells_per_protein`` cells of every protein, drawn without replacement.

    Parameters
    ----------
    proteins : array_like of str, shape (n,)
        The protein of every cell (``ds.meta["protein"]``).
    cells_per_protein : int, optional
        None keeps every cell.
    seed : int, default 0
        Seed of ``np.random.default_rng``; proteins draw in sorted order.

    Returns
    -------
    ndarray of intp
        Sorted positions (cells keep their order).
    """
    if cells_per_protein is not None and not (isinstance(cells_per_protein, (int, np.integer))
                                              and cells_per_protein >= 1):
        raise ValueError(f"cells_per_protein must be an integer >= 1 or None; got {cells_per_protein!r}.")
    groups = pd.Series(np.asarray(proteins)).groupby(np.asarray(proteins), sort=True).indices
    rng = np.random.default_rng(seed)
    keep = []
    for protein in sorted(groups):
        index = groups[protein]
        if cells_per_protein is not None and len(index) > cells_per_protein:
            index = rng.choice(index, cells_per_protein, replace=False)
        keep.append(index)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.intp)


def _prepare(values, names, fit):
    """Drop mostly-undefined and constant features, impute the rest; all from the ``fit`` cells.

    Returns the (n, k) finite features and the k names kept.
    """
    finite = np.isfinite(values)
    missing = 1 - finite[fit].mean(0)
    keep = missing <= _MAX_MISSING
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN columns are dropped
        median = np.nanmedian(np.where(finite, values, np.nan)[fit], axis=0)
    x = np.where(finite, values, median)[:, keep]
    constant = np.ptp(x[fit], axis=0) == 0
    x, kept = x[:, ~constant], [n for n, k in zip(np.asarray(names)[keep], ~constant) if k]
    imputed = ~finite[:, keep][:, ~constant]
    dropped = list(np.asarray(names)[~keep])
    log.info("CellProfiler features: %d of %d kept; dropped %d undefined in more than %d%% of the cells%s and %d "
             "constant; imputed %d values in %d cells with the feature's median", len(kept), len(names), len(dropped),
             round(100 * _MAX_MISSING), f" ({', '.join(dropped[:5])}{' ...' * (len(dropped) > 5)})" * bool(dropped),
             int(constant.sum()), int(imputed.sum()), int(imputed.any(1).sum()))
    return x, kept


def _cache_key(images, masks, channels, rescale):
    """Hash of the pixels, masks and settings, and of the code that measures them."""
    from importlib.metadata import version

    from ..config import source_hash

    h = hashlib.sha256()
    for a in (images, masks):  # block by block: the same digest as the whole array, without reading it all at once
        h.update(f"{a.shape}{a.dtype}".encode())
        for _, b in blocks(a):
            h.update(np.ascontiguousarray(b).data)
    settings = [list(channels), rescale, GRANULARITY, COSTES_SCALE_MAX, MARGIN, GAP, _MOSAIC_WIDTH,
                version("cp-measure"), source_hash(sys.modules[__name__])]
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def _measure_cached(images, masks, cache_dir, **options):
    """:func:`measure_cells`, read from or written to ``cache_dir`` (None: no cache)."""
    from ..atomic import atomic_file

    if cache_dir is None:
        return measure_cells(images, masks, **options)
    path = Path(cache_dir) / f"cellprofiler-{_cache_key(images, masks, options['channels'], options['rescale'])}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                log.info("CellProfiler measurements of %d cells read from %s", len(z["values"]), path)
                return pd.DataFrame(z["values"], columns=z["columns"].tolist())
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s: unreadable cache (%s); measuring again", path, e)
    cells = measure_cells(images, masks, **options)
    with atomic_file(path, "wb") as f:
        np.savez(f, values=cells.to_numpy(), columns=np.array(cells.columns, dtype=str))
    return cells


def cellprofiler_tables(ds, *, cells_per_protein=None, seed=0, n_jobs=None, pca_variance=0.95, fit_proteins=None,
                        rescale="cell", cache_dir=None, progress=True):
    """Protein tables of CellProfiler features: standardised, and reduced by PCA (the paper's baselines).

    Every selected cell is measured (:func:`measure_cells`); features undefined in more
    than half of the cells or constant are dropped, remaining undefined values imputed
    with the feature's median, and the features standardised; the first table averages
    them per protein, the second reduces them by PCA to ``pca_variance`` of the variance
    first, as :func:`protrep.evaluation.handcrafted.protein_tables`. Medians, scaling and
    PCA are estimated on the cells of ``fit_proteins`` only, when given, so that held-out
    proteins shape none of them. Cells with no measurement (empty mask) are left out.

    Parameters
    ----------
    ds : CellDataset
        Uses ``ds.masks``, or segments each crop's ``"rfp"`` channel without them.
    cells_per_protein : int, optional
        Measure at most this many cells of every protein (:func:`select_cells`); None
        measures all (about 27 ms per cell and core for GFP and RFP 64 px crops).
    seed : int, default 0
        Seed of the cell selection and of the PCA.
    n_jobs : int, optional
        Worker processes; None uses every available core.
    pca_variance : float in (0, 1) or int, default 0.95
        ``n_components`` of :func:`protrep.evaluation.handcrafted.handcrafted_pca`.
    fit_proteins : iterable of str, optional
        Proteins whose cells fit the preprocessing and the PCA (e.g. the training split).
    rescale : {"cell", "none"}, default "cell"
        See :func:`measure_cells`.
    cache_dir : str or Path, optional
        Keep the cell measurements there, keyed by a hash of the measured pixels, masks,
        settings and code (written atomically); a second call reads them back.
    progress : bool, default True

    Returns
    -------
    cellprofiler, cellprofiler_pca : DataFrame
        Protein tables of :func:`protrep.data.tables.embedding_tables` (``protein``,
        ``n_cells``, ``f0000`` ...); ``attrs["feature_names"]`` of the first names its
        columns.

    References
    ----------
    .. [1] Razdaibiedina & Brechalov (2022), ICLR MLDD workshop.
    """
    from ..data.tables import embedding_tables
    from .handcrafted import handcrafted_pca

    sub = ds.subset(select_cells(ds.meta["protein"].astype(str), cells_per_protein, seed=seed))
    masks = sub.masks if sub.masks is not None else _segment(sub)
    cells = _measure_cached(sub.images, masks, cache_dir, channels=sub.channels, rescale=rescale, n_jobs=n_jobs,
                            progress=progress)
    measured = np.isfinite(cells.to_numpy()).any(1)
    sub = sub.subset(measured)
    fit = np.ones(len(sub), bool)
    if fit_proteins is not None:
        fit = sub.meta["protein"].astype(str).isin([str(p) for p in fit_proteins]).to_numpy()
        if fit.sum() < 2:
            raise ValueError(f"fit_proteins match {int(fit.sum())} measured cells of the dataset; the PCA needs at "
                             "least 2. Pass protein ids of ds.meta['protein'] (e.g. the training split).")
    x, kept = _prepare(cells.to_numpy()[measured], list(cells.columns), fit)
    _, pipeline = handcrafted_pca(x[fit], n_components=pca_variance, seed=seed)
    raw = embedding_tables(sub, pipeline[0].transform(x))[1]
    reduced = embedding_tables(sub, pipeline.transform(x))[1]
    raw.attrs["feature_names"] = kept
    return raw, reduced


def _segment(ds):
    """Centre-cell masks of crops that came without them, from the RFP channel."""
    from ..data.segment import segment_crops

    if "rfp" not in ds.channels:
        raise ValueError(f"the dataset has no masks and no 'rfp' channel to segment (channels {ds.channels}).")
    return segment_crops(ds.images, channel=ds.channels.index("rfp"))
