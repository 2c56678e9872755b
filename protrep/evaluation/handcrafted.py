"""Classical hand-crafted single-cell features: the fast, CellProfiler-like baseline.

CellProfiler-like, vectorised; the real CellProfiler measurements are in
:mod:`protrep.evaluation.cellprofiler` (cp-measure, about 27 ms per cell and core
against 1-2 ms here), which this module stands in for where that is too slow.

Before deep representations, yeast localization screens described every cell by a few
dozen measured features (intensity statistics, radial distribution, texture, shape and
the co-localization of the protein with a marker) and classified or clustered those
(Handfield et al. 2013; Chong et al. 2015). Razdaibiedina & Brechalov (2022) use such a
feature set, standardised and reduced by PCA, as the baseline of their comparison.
:func:`handcrafted_features` measures that set inside the centre-cell mask of every crop,
vectorised across cells (no Python loop over cells), and :func:`handcrafted_pca`
standardises and reduces it.

Scale robustness. Simulated crops are raw camera counts (offset 100 ADU plus a
background), real crops are min-max normalised; so every feature but one is computed on
intensities that are first background-subtracted (a low percentile of the crop) and then
divided by the cell's own mean, and is therefore unchanged when a crop is multiplied by
any positive number. The one exception, ``gfp_log_total``, carries the brightness.

References
----------
.. [1] Handfield, L.-F., Chong, Y. T., Simmons, J., Andrews, B. J. & Moses, A. M.
   Unsupervised clustering of subcellular protein expression patterns in high-throughput
   microscopy images reveals protein complexes and functional relationships between
   proteins. PLoS Comput. Biol. 9, e1003085 (2013).
.. [2] Chong, Y. T. et al. Yeast proteome dynamics from single cell imaging and automated
   analysis. Cell 161, 1413-1424 (2015).
.. [3] Razdaibiedina, A. & Brechalov, A. Learning multi-scale functional representations
   of proteins from single-cell microscopy data. ICLR MLDD workshop (2022).
.. [4] Carpenter, A. E. et al. CellProfiler: image analysis software for identifying and
   quantifying cell phenotypes. Genome Biol. 7, R100 (2006).
.. [5] Haralick, R. M., Shanmugam, K. & Dinstein, I. Textural features for image
   classification. IEEE Trans. Syst. Man Cybern. SMC-3, 610-621 (1973).
"""

import logging

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..data.arrays import blocks, is_lazy

__all__ = [
    "handcrafted_features",
    "handcrafted_pca",
    "feature_table",
    "feature_names",
    "PERCENTILES",
    "GRANULARITY_RADII", "protein_tables"]

log = logging.getLogger(__name__)

PERCENTILES = (10, 25, 50, 75, 90, 99)
GRANULARITY_RADII = (1, 2, 4)
_RFP_PERCENTILES = (10, 50, 90)
_N_ZONES = 4
_LEVELS = 8
_LOCAL_SIZES = (3, 7)
_CHUNK = 64  # cells per vectorised block: small enough to stay in cache (~2 MB per plane stack)


def feature_names(*, rfp=True):
    """Names of the columns of :func:`handcrafted_features`, in order.

    Parameters
    ----------
    rfp : bool, default True
        Include the RFP and GFP/RFP features (absent when the images have no RFP channel).

    Returns
    -------
    list of str
    """
    names = ["gfp_log_total", "gfp_cv", "gfp_skew", "gfp_kurtosis"]
    names += [f"gfp_p{q}" for q in PERCENTILES] + ["gfp_max", "gfp_frac_above_2x", "gfp_frac_above_4x"]
    names += [f"gfp_radial_frac_{k + 1}" for k in range(_N_ZONES)]
    names += [f"gfp_radial_meanfrac_{k + 1}" for k in range(_N_ZONES)]
    names += ["gfp_com_offset", "gfp_gradient"] + [f"gfp_local_cv_{s}" for s in _LOCAL_SIZES]
    names += [f"gfp_granularity_{r}" for r in GRANULARITY_RADII]
    names += [f"gfp_haralick_{p}" for p in ("contrast", "homogeneity", "correlation", "asm", "entropy")]
    names += ["shape_area", "shape_perimeter", "shape_major_axis", "shape_minor_axis", "shape_eccentricity",
              "shape_form_factor"]
    if rfp:
        names += ["rfp_cv", "rfp_skew", "rfp_kurtosis"] + [f"rfp_p{q}" for q in _RFP_PERCENTILES]
        names += ["rfp_dark_frac", "gfp_rfp_pearson", "gfp_rfp_manders", "gfp_rfp_dark_logratio"]
    return names


# ---------------------------------------------------------------------------------------
# validation


def _validate(images, masks, channels, background, min_area):
    images = images if is_lazy(images) else np.asarray(images)  # a sharded dataset's crops stay on disk
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w); got {images.shape}. "
                         "Add a channel axis with images[:, None] for one-channel crops.")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must hold integers or floats; got dtype {images.dtype}.")
    n, c, h, w = images.shape
    if h < 3 or w < 3:
        raise ValueError(f"crops must be at least 3 x 3 pixels; got {h} x {w}.")
    channels = tuple(channels)
    if len(channels) != c:
        raise ValueError(f"images have {c} channels but channels names {len(channels)}: {channels}; "
                         "pass one name per channel, e.g. channels=('gfp', 'rfp').")
    if "gfp" not in channels:
        raise ValueError(f"channels {channels} lack 'gfp'; name the protein channel 'gfp'.")
    if images.dtype.kind == "f" and not all(np.isfinite(b).all() for _, b in blocks(images)):
        raise ValueError("images contain NaN or infinite values; replace them first.")
    if masks is None:
        if "rfp" not in channels:
            raise ValueError("masks=None segments the 'rfp' channel, but channels has no 'rfp'; pass masks.")
    else:
        masks = masks if is_lazy(masks) else np.asarray(masks)
        if masks.shape != (n, h, w):
            raise ValueError(f"masks must have shape (n, h, w) = {(n, h, w)} to match images; got {masks.shape}.")
        if masks.dtype != bool and not all(np.isin(b, (0, 1)).all() for _, b in blocks(masks)):
            raise ValueError("masks must be boolean (or 0/1); convert a label image with labels == k.")
    if background is not None and not (np.isscalar(background) and np.isreal(background)
                                       and 0 <= background <= 100):
        raise ValueError(f"background must be a percentile in [0, 100] or None; got {background!r}.")
    if not (np.isscalar(min_area) and float(min_area) == int(min_area) and min_area >= 1):
        raise ValueError(f"min_area must be an integer >= 1; got {min_area!r}.")
    return images, masks, channels


def _block_masks(crops, masks, rfp):
    """Boolean centre-cell masks of a block of crops (a copy): ``masks`` given, or segmented from channel ``rfp``."""
    if masks is not None:
        return np.array(masks, dtype=bool)
    from ..data.segment import segment_crops

    return segment_crops(crops, channel=rfp)


def _fallback_disk(h, w):
    """Centred disk of radius 0.3 x min(h, w), the size of a typical cell in a 64 px crop."""
    rr, cc = np.ogrid[:h, :w]
    r = 0.3 * min(h, w)
    return (rr - (h - 1) / 2) ** 2 + (cc - (w - 1) / 2) ** 2 <= r * r


# ---------------------------------------------------------------------------------------
# vectorised helpers (arrays of shape (k, h, w) or (k, h * w); no loop over cells)


def _safe(den):
    """Denominator with zeros replaced by 1 (their numerators are 0 as well)."""
    return np.where(den > 0, den, 1.0)


def _masked_sort(x, m):
    """Values of every cell inside its mask, sorted, with +inf after them: (k, h * w)."""
    flat = np.where(m, x, np.inf).reshape(len(x), -1)
    flat.sort(axis=1)
    return flat


def _percentile(sorted_vals, count, q):
    """Linearly interpolated percentile ``q`` (as ``np.percentile``) of each row's first ``count``."""
    pos = q / 100.0 * (count - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, count - 1).astype(np.intp)
    a = np.take_along_axis(sorted_vals, lo[:, None], 1)[:, 0]
    b = np.take_along_axis(sorted_vals, hi[:, None], 1)[:, 0]
    return a + (b - a) * (pos - lo)


def _rank(sorted_vals, count, q):
    """Nearest-rank percentile ``q``: an actual pixel value, so it scales exactly."""
    i = np.rint(q / 100.0 * (count - 1)).astype(np.intp)
    return np.take_along_axis(sorted_vals, i[:, None], 1)[:, 0]


def _moments(x, m, count, total):
    """Coefficient of variation, skewness and excess kurtosis of ``x`` in ``m``.

    Computed on ``x / mean`` (scale-free); all three are 0 for a constant cell.
    """
    mean = total / count
    xn = x / _safe(mean)[:, None, None]
    mu = np.where(total > 0, 1.0, 0.0)
    d = np.where(m, xn - mu[:, None, None], 0.0)
    d2 = d * d
    m2 = d2.sum((1, 2)) / count
    m3 = (d2 * d).sum((1, 2)) / count
    m4 = (d2 * d2).sum((1, 2)) / count
    ok = m2 > 1e-24
    m2s = np.where(ok, m2, 1.0)
    cv = np.sqrt(m2)
    skew = np.where(ok, m3 / m2s ** 1.5, 0.0)
    kurt = np.where(ok, m4 / m2s ** 2 - 3.0, 0.0)
    return cv, skew, kurt


def _edge_distance(m):
    """Euclidean distance of every mask pixel to the nearest non-mask pixel (crop border counts).

    One 2-D ``distance_transform_edt`` for the whole block: the masks, each padded with a
    frame of background, are stacked on top of each other, so no pixel is nearer to
    another cell's background than to its own frame.
    """
    k, h, w = m.shape
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1))).reshape(k * (h + 2), w + 2)
    d = ndi.distance_transform_edt(padded).reshape(k, h + 2, w + 2)
    return d[:, 1:-1, 1:-1]


def _plane_filter(x, fn, size):
    """Apply a separable 2-D rank/mean filter in the image plane only (not across cells)."""
    return fn(x, size=(1, size, size), mode="reflect")


def _sobel_magnitude(x):
    """Sobel gradient magnitude in the image plane (``ndi.sobel`` would also smooth across cells)."""
    deriv, smooth = [-1.0, 0.0, 1.0], [1.0, 2.0, 1.0]
    gr = ndi.correlate1d(ndi.correlate1d(x, deriv, axis=1, mode="reflect"), smooth, axis=2, mode="reflect")
    gc = ndi.correlate1d(ndi.correlate1d(x, deriv, axis=2, mode="reflect"), smooth, axis=1, mode="reflect")
    return np.hypot(gr, gc)


_OFFSETS = (
    (np.s_[:, :, :-1], np.s_[:, :, 1:]),        # 0 degrees
    (np.s_[:, :-1, :], np.s_[:, 1:, :]),        # 90 degrees
    (np.s_[:, :-1, :-1], np.s_[:, 1:, 1:]),     # 135 degrees (down-right)
    (np.s_[:, :-1, 1:], np.s_[:, 1:, :-1]),     # 45 degrees (down-left)
)


def _cooccurrence(levels, m):
    """Symmetric grey-level co-occurrence at distance 1, pooled over 4 directions: (k, L, L)."""
    k = len(levels)
    cell = np.arange(k, dtype=np.intp)[:, None, None] * (_LEVELS * _LEVELS)
    counts = np.zeros(k * _LEVELS * _LEVELS, dtype=np.float64)
    for a, b in _OFFSETS:
        both = m[a] & m[b]
        idx = (cell + levels[a] * _LEVELS + levels[b])[both]
        counts += np.bincount(idx, minlength=counts.size)
    glcm = counts.reshape(k, _LEVELS, _LEVELS)
    return glcm + glcm.transpose(0, 2, 1)


def _haralick(glcm):
    """Contrast, homogeneity, correlation, angular second moment and entropy of each matrix."""
    total = glcm.sum((1, 2))
    p = glcm / _safe(total)[:, None, None]
    i = np.arange(_LEVELS, dtype=np.float64)
    diff2 = (i[:, None] - i[None, :]) ** 2
    contrast = (p * diff2).sum((1, 2))
    homogeneity = (p / (1.0 + diff2)).sum((1, 2))
    asm = (p * p).sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum((1, 2))
    pi = p.sum(2)  # marginal (the matrix is symmetric)
    mu = pi @ i
    var = pi @ (i * i) - mu * mu
    dev = i[None, :] - mu[:, None]
    cov = np.einsum("kij,ki,kj->k", p, dev, dev)
    ok = var > 1e-12
    correlation = np.where(ok, cov / np.where(ok, var, 1.0), 1.0)  # skimage's convention: 1 if constant
    homogeneity = np.where(total > 0, homogeneity, 0.0)
    return contrast, homogeneity, correlation, asm, entropy


def _shape(m, count, rows, cols):
    """Area, boundary-pixel perimeter, axes from second moments, eccentricity, form factor."""
    r0 = (m * rows).sum((1, 2)) / count
    c0 = (m * cols).sum((1, 2)) / count
    dr = np.where(m, rows - r0[:, None, None], 0.0)
    dc = np.where(m, cols - c0[:, None, None], 0.0)
    a = (dr * dr).sum((1, 2)) / count
    c = (dc * dc).sum((1, 2)) / count
    b = (dr * dc).sum((1, 2)) / count
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1 = (a + c) / 2 + root
    l2 = np.maximum((a + c) / 2 - root, 0.0)
    major, minor = 4 * np.sqrt(l1), 4 * np.sqrt(l2)
    ecc = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / _safe(l1), 0, 1)), 0.0)
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    interior = (padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:])
    perimeter = (m & ~interior).sum((1, 2)).astype(np.float64)
    form = 4 * np.pi * count / _safe(perimeter) ** 2
    return count, perimeter, major, minor, ecc, form, r0, c0


def _gfp_intensity(g, m, count, g_total, g_den, g_sorted):
    tiny = np.finfo(np.float64).tiny
    out = {"gfp_log_total": np.log(np.maximum(g_total, tiny))}
    out["gfp_cv"], out["gfp_skew"], out["gfp_kurtosis"] = _moments(g, m, count, g_total)
    for q in PERCENTILES:
        out[f"gfp_p{q}"] = _percentile(g_sorted, count, q) / g_den
    out["gfp_max"] = _rank(g_sorted, count, 100) / g_den
    # x > t * mean, written as x * count > t * total so that it is exact under scaling
    scaled = g * count[:, None, None]
    for t in (2, 4):
        out[f"gfp_frac_above_{t}x"] = ((scaled > t * g_total[:, None, None]) & m).sum((1, 2)) / count
    return out


def _gfp_radial(g_in, m, count, g_total, rows, cols, centre):
    out = {}
    dist = _edge_distance(m)
    rel = dist / _safe(dist.max((1, 2)))[:, None, None]
    zone = np.clip(np.ceil(rel * _N_ZONES).astype(np.intp) - 1, 0, _N_ZONES - 1)  # 0: at the edge
    for z in range(_N_ZONES):
        inz = m & (zone == z)
        frac = (g_in * inz).sum((1, 2)) / _safe(g_total)
        area = inz.sum((1, 2)) / count
        out[f"gfp_radial_frac_{z + 1}"] = frac
        out[f"gfp_radial_meanfrac_{z + 1}"] = np.where(area > 0, frac / _safe(area), 0.0)
    r0, c0 = centre
    gr = (g_in * rows).sum((1, 2)) / _safe(g_total)
    gc = (g_in * cols).sum((1, 2)) / _safe(g_total)
    radius = np.sqrt(count / np.pi)
    out["gfp_com_offset"] = np.where(g_total > 0, np.hypot(gr - r0, gc - c0) / radius, 0.0)
    return out


def _gfp_texture(g, m, count, g_total, g_den, g_sorted):
    out = {"gfp_gradient": (_sobel_magnitude(g) * m).sum((1, 2)) / count / g_den}
    for s in _LOCAL_SIZES:
        mean_s = _plane_filter(g, ndi.uniform_filter, s)
        sq_s = _plane_filter(g * g, ndi.uniform_filter, s)
        sd = np.sqrt(np.maximum(sq_s - mean_s * mean_s, 0.0))
        out[f"gfp_local_cv_{s}"] = (sd * m).sum((1, 2)) / count / g_den
    previous = g
    g32 = g.astype(np.float32)  # min/max filters only pick values: float32 halves their time
    for r in GRANULARITY_RADII:
        opened = _plane_filter(_plane_filter(g32, ndi.minimum_filter, 2 * r + 1), ndi.maximum_filter, 2 * r + 1)
        opened = np.minimum(opened.astype(np.float64), previous)  # a no-op up to float32 rounding
        out[f"gfp_granularity_{r}"] = ((previous - opened) * m).sum((1, 2)) / _safe(g_total)
        previous = opened
    lo, hi = _rank(g_sorted, count, 1), _rank(g_sorted, count, 99)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        levels = np.floor(_LEVELS * (g - lo[:, None, None]) / np.where(span > 0, span, 1.0)[:, None, None])
    levels = np.clip(np.nan_to_num(levels), 0, _LEVELS - 1).astype(np.intp)
    levels[span <= 0] = 0
    har = _haralick(_cooccurrence(levels, m))
    for name, value in zip(("contrast", "homogeneity", "correlation", "asm", "entropy"), har):
        out[f"gfp_haralick_{name}"] = value
    return out


def _rfp_features(r, g, g_in, m, count, g_total, g_mean):
    """RFP intensity and the GFP/RFP relationship."""
    out = {}
    r_total = np.where(m, r, 0.0).sum((1, 2))
    r_den = _safe(r_total / count)
    out["rfp_cv"], out["rfp_skew"], out["rfp_kurtosis"] = _moments(r, m, count, r_total)
    r_sorted = _masked_sort(r, m)
    for q in _RFP_PERCENTILES:
        out[f"rfp_p{q}"] = _percentile(r_sorted, count, q) / r_den
    r_med = _percentile(r_sorted, count, 50)[:, None, None]
    dark = m & (r < 0.5 * r_med)
    n_dark = dark.sum((1, 2))
    out["rfp_dark_frac"] = n_dark / count
    gd = np.where(m, g - g_mean[:, None, None], 0.0)
    rd = np.where(m, r - (r_total / count)[:, None, None], 0.0)
    sxy, sxx, syy = (gd * rd).sum((1, 2)), (gd * gd).sum((1, 2)), (rd * rd).sum((1, 2))
    ok = (sxx > 0) & (syy > 0)
    out["gfp_rfp_pearson"] = np.where(ok, sxy / np.sqrt(_safe(sxx) * _safe(syy)), 0.0)
    out["gfp_rfp_manders"] = (g_in * (r > r_med)).sum((1, 2)) / _safe(g_total)
    n_rest = count - n_dark
    mean_dark = (g_in * dark).sum((1, 2)) / _safe(n_dark)
    mean_rest = (g_in * (m & ~dark)).sum((1, 2)) / _safe(n_rest)
    eps = 0.01 * g_mean
    ratio = np.log2(_safe(mean_dark + eps) / _safe(mean_rest + eps))
    out["gfp_rfp_dark_logratio"] = np.where((n_dark > 0) & (n_rest > 0) & (g_total > 0), ratio, 0.0)
    return out


def _block(gfp, rfp, m, background):
    """All features of one block of cells; ``gfp``, ``rfp`` float64 (k, h, w), ``m`` bool."""
    k, h, w = gfp.shape
    count = m.sum((1, 2)).astype(np.float64)
    rows, cols = np.mgrid[:h, :w].astype(np.float64)

    def prepare(x):
        if background is not None:
            bg = np.percentile(x.reshape(k, -1), background, axis=1, method="nearest")
            x = np.maximum(x - bg[:, None, None], 0.0)
        return x

    g = prepare(gfp)
    g_total = np.where(m, g, 0.0).sum((1, 2))
    g_mean = g_total / count
    g_den = _safe(g_mean)
    g_sorted = _masked_sort(g, m)
    g_in = np.where(m, g, 0.0)
    area, perimeter, major, minor, ecc, form, r0, c0 = _shape(m, count, rows, cols)
    out = _gfp_intensity(g, m, count, g_total, g_den, g_sorted)
    out.update(_gfp_radial(g_in, m, count, g_total, rows, cols, (r0, c0)))
    out.update(_gfp_texture(g, m, count, g_total, g_den, g_sorted))
    out.update(shape_area=area, shape_perimeter=perimeter, shape_major_axis=major, shape_minor_axis=minor,
               shape_eccentricity=ecc, shape_form_factor=form)
    if rfp is not None:
        out.update(_rfp_features(prepare(rfp), g, g_in, m, count, g_total, g_mean))
    return out


# ---------------------------------------------------------------------------------------
# public API


def handcrafted_features(images, masks=None, *, channels=("gfp", "rfp"), background=10.0, min_area=20,
                         chunk_size=_CHUNK):
    """Classical CellProfiler-like features of the centre cell of every crop.

    Everything is measured inside the centre-cell mask, vectorised across cells in
    blocks of ``chunk_size`` (1-2 ms per 64 x 64 cell on one core: 18,000 cells in about
    half a minute).

    Parameters
    ----------
    images : array_like, shape (n, c, h, w)
        Single-cell crops, raw counts or normalised, integers or floats.
    masks : array_like of bool, shape (n, h, w), optional
        Centre-cell mask of every crop. None segments each crop's ``rfp`` channel with
        :func:`protrep.data.segment.segment_crop` (about 1.5 ms per crop).
    channels : sequence of str, default ("gfp", "rfp")
        Names of the channels of ``images`` in order; must contain ``"gfp"`` (the tagged
        protein). ``"rfp"`` (the cytosolic marker) is optional: without it the RFP and
        GFP/RFP features are left out. Other channels are ignored.
    background : float or None, default 10.0
        Percentile of each crop's pixels (per channel, nearest rank) taken as its
        background and subtracted, negative values then clipped to 0; None subtracts
        nothing. Removes the camera offset and the autofluorescence background of raw
        crops, which would otherwise dominate every ratio.
    min_area : int, default 20
        Masks with fewer pixels (empty ones in particular, where segmentation found no
        cell) are replaced by a centred disk of radius ``0.3 * min(h, w)`` (19 px in a
        64 px crop, about a yeast cell). The number replaced is logged and stored in
        ``result.attrs["n_mask_fallback"]``; ``result.attrs["mask_fallback"]`` lists
        their row positions.
    chunk_size : int, default 64
        Cells per vectorised block; bounds memory (about 20 MB of intermediates per 64 cells).

    Returns
    -------
    DataFrame, shape (n, n_features)
        One row per crop, float64, no NaN; columns as listed below (49 with an RFP channel,
        39 without; see :func:`feature_names`).

    Notes
    -----
    Preprocessing: per crop and channel ``x = max(image - background, 0)``; statistics
    are taken over the mask pixels. Every feature except ``gfp_log_total`` and the
    ``shape_*`` features is invariant to multiplying a crop by a positive factor.

    **GFP intensity** (ratios to the cell's mean GFP, so the cell mean itself is 1 by
    construction and the standard deviation equals the coefficient of variation):

    ``gfp_log_total``
        Natural log of the summed GFP inside the mask: the only brightness feature.
    ``gfp_cv``
        Standard deviation / mean (how uneven the protein is).
    ``gfp_skew``, ``gfp_kurtosis``
        Skewness and excess kurtosis (biased moment estimates, as ``scipy.stats``);
        high for a few bright puncta on a dim cell. 0 for a constant cell.
    ``gfp_p10``, ``gfp_p25``, ``gfp_p50``, ``gfp_p75``, ``gfp_p90``, ``gfp_p99``
        Percentiles (linear interpolation, as ``np.percentile``) / mean.
    ``gfp_max``
        Brightest pixel / mean.
    ``gfp_frac_above_2x``, ``gfp_frac_above_4x``
        Fraction of the cell's area brighter than 2x and 4x its mean (punctate and
        concentrated patterns).

    **Radial distribution** (zones of the mask by the Euclidean distance to its edge,
    ``scipy.ndimage.distance_transform_edt`` divided by the cell's largest distance, so
    zone 1 is the outer quarter of that range (the rim) and zone 4 the centre):

    ``gfp_radial_frac_1`` ... ``gfp_radial_frac_4``
        Fraction of the cell's GFP in each zone (they sum to 1).
    ``gfp_radial_meanfrac_1`` ... ``gfp_radial_meanfrac_4``
        That fraction divided by the zone's fraction of the area (1 everywhere for a
        uniform cell; > 1 in zone 1 for the cell periphery), as CellProfiler's MeanFrac.
    ``gfp_com_offset``
        Distance from the GFP-weighted centre of mass to the mask centroid, divided by
        the cell radius ``sqrt(area / pi)`` (polarised patterns: bud neck, bud).

    **Texture**:

    ``gfp_gradient``
        Mean Sobel gradient magnitude over the mask / mean GFP (edges of structures).
    ``gfp_local_cv_3``, ``gfp_local_cv_7``
        Mean local standard deviation in 3 x 3 and 7 x 7 windows / mean GFP (fine and
        coarse local variance).
    ``gfp_granularity_1``, ``gfp_granularity_2``, ``gfp_granularity_4``
        Granularity spectrum: fraction of the cell's GFP removed by a grey opening with a
        structuring element of radius 1, 2, 4 px beyond what the previous, smaller one
        removed. Squares of side ``2r + 1`` are used instead of CellProfiler's disks
        because their openings are separable min/max filters (fast on all cells at once);
        a spot of radius ``< r`` is removed at scale ``r``.
    ``gfp_haralick_contrast``, ``gfp_haralick_homogeneity``, ``gfp_haralick_correlation``,
    ``gfp_haralick_asm``, ``gfp_haralick_entropy``
        Haralick features of the symmetric grey-level co-occurrence matrix at distance 1,
        pooled over the directions 0, 45, 90 and 135 degrees, of pixel pairs both inside
        the mask, with GFP quantised to 8 levels between the cell's 1st and 99th
        percentile (nearest rank). Contrast, homogeneity (``1 / (1 + (i - j)^2)``) and
        correlation as ``skimage.feature.graycoprops`` (correlation 1 for a constant
        cell); ASM the sum of squared probabilities; entropy in bits.

    **Shape of the mask** (pixels; not intensity features):

    ``shape_area``
        Pixel count.
    ``shape_perimeter``
        Count of mask pixels with a 4-neighbour outside the mask or the crop.
    ``shape_major_axis``, ``shape_minor_axis``
        ``4 sqrt(lambda)`` of the eigenvalues of the mask's second central moments (the
        full axes of the ellipse with the same moments, as ``skimage.measure.regionprops``).
    ``shape_eccentricity``
        ``sqrt(1 - lambda_2 / lambda_1)``: 0 for a disk.
    ``shape_form_factor``
        ``4 pi area / perimeter^2`` with the boundary-pixel perimeter: a rough roundness,
        about 1.2 for a disk (a pixel count underestimates the outline's length) and
        lower for elongated or ragged masks.

    **RFP** (only with an ``rfp`` channel; the cytosolic marker is dark in the vacuole and
    nucleus, so its distribution describes those compartments):

    ``rfp_cv``, ``rfp_skew``, ``rfp_kurtosis``
        As for GFP.
    ``rfp_p10``, ``rfp_p50``, ``rfp_p90``
        Percentiles / mean RFP.
    ``rfp_dark_frac``
        Fraction of the area with RFP below half its cell median (vacuole/nucleus proxy).

    **GFP/RFP relationship**:

    ``gfp_rfp_pearson``
        Pearson correlation of GFP and RFP over the mask pixels (0 if either is constant);
        high for cytoplasmic proteins, low or negative for vacuolar or nuclear ones.
    ``gfp_rfp_manders``
        Manders-like overlap: fraction of the cell's GFP in pixels where RFP is above its
        cell median.
    ``gfp_rfp_dark_logratio``
        ``log2`` of mean GFP per pixel in the RFP-dark region (RFP below half its cell
        median) over mean GFP in the rest, each plus 1 % of the cell mean GFP; 0 when
        either region is empty.

    References
    ----------
    .. [1] Handfield et al. (2013), PLoS Comput. Biol. 9, e1003085.
    .. [2] Chong et al. (2015), Cell 161, 1413-1424.
    .. [3] Razdaibiedina & Brechalov (2022), ICLR MLDD workshop.
    .. [4] Carpenter et al. (2006), Genome Biol. 7, R100 (CellProfiler: MeasureObjectIntensity,
       MeasureObjectIntensityDistribution, MeasureGranularity, MeasureTexture,
       MeasureColocalization).
    .. [5] Haralick, Shanmugam & Dinstein (1973), IEEE Trans. Syst. Man Cybern. 3, 610-621.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.full((2, 2, 64, 64), 100, np.float32)
    >>> masks = np.zeros((2, 64, 64), bool)
    >>> masks[:, 12:52, 12:52] = True
    >>> images[:, :, 12:52, 12:52] += 50
    >>> images[1, 0, 30:33, 30:33] += 2000  # one bright spot in the second cell
    >>> f = handcrafted_features(images, masks)
    >>> f.shape
    (2, 49)
    >>> f["gfp_frac_above_4x"].round(4).tolist()  # the 9 spot pixels of 1600
    [0.0, 0.0056]
    """
    images, masks, channels = _validate(images, masks, channels, background, min_area)
    if not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise ValueError(f"chunk_size must be an integer >= 1; got {chunk_size!r}.")
    n, _, h, w = images.shape
    ig = channels.index("gfp")
    ir = channels.index("rfp") if "rfp" in channels else None
    names = feature_names(rfp=ir is not None)
    out = np.empty((n, len(names)), dtype=np.float64)
    fallback = []
    for start in range(0, n, chunk_size):  # one read of crops and masks per block: memory does not grow with n
        crops = np.asarray(images[start:start + chunk_size])
        m = _block_masks(crops, None if masks is None else masks[start:start + chunk_size], ir)
        small = m.sum((1, 2)) < min_area
        if small.any():
            m[small] = _fallback_disk(h, w)
            fallback += (start + np.flatnonzero(small)).tolist()
        rfp = None if ir is None else crops[:, ir].astype(np.float64)
        block = _block(crops[:, ig].astype(np.float64), rfp, m, None if background is None else float(background))
        out[start:start + len(crops)] = np.column_stack([block[c] for c in names])
    if fallback:
        log.warning("%d of %d masks had fewer than %d pixels; replaced by a centred disk", len(fallback), n, min_area)
    if not np.isfinite(out).all():  # a guard, not an expected path: every division is protected
        bad = sorted({names[j] for j in np.nonzero(~np.isfinite(out))[1]})
        raise RuntimeError(f"non-finite handcrafted features {bad}; please report the input")
    table = pd.DataFrame(out, columns=names)
    table.attrs["n_mask_fallback"] = len(fallback)
    table.attrs["mask_fallback"] = fallback
    return table


def feature_table(ds, **kwargs):
    """Hand-crafted features of a :class:`~protrep.data.dataset.CellDataset`.

    Uses ``ds.masks`` when present, else segments every crop's RFP channel.

    Parameters
    ----------
    ds : CellDataset
        Must have a ``"gfp"`` channel (and ``"rfp"`` when it has no masks).
    **kwargs
        Keyword options of :func:`handcrafted_features` (``background``, ``min_area``,
        ``chunk_size``).

    Returns
    -------
    DataFrame
        One row per cell of ``ds`` (row ``i`` describes ``ds.meta.iloc[i]``).
    """
    return handcrafted_features(ds.images, ds.masks, channels=ds.channels, **kwargs)


def handcrafted_pca(features, *, n_components=0.95, seed=0):
    """Standardise features and reduce them by PCA, as the baseline of Razdaibiedina & Brechalov.

    Parameters
    ----------
    features : DataFrame or array_like, shape (n_cells, n_features)
        E.g. the output of :func:`handcrafted_features`; must be finite.
    n_components : float in (0, 1) or int >= 1, default 0.95
        A float keeps the fewest components explaining that fraction of the variance of
        the standardised features; an int keeps that many (at most
        ``min(n_cells, n_features)``).
    seed : int, default 0
        ``random_state`` of the PCA (matters only for randomised solvers; kept for
        reproducibility).

    Returns
    -------
    transformed : ndarray of float64, shape (n_cells, k)
        The principal-component scores.
    pipeline : sklearn.pipeline.Pipeline
        The fitted ``StandardScaler`` then ``PCA``; apply it to new cells with
        ``pipeline.transform``.

    References
    ----------
    .. [1] Razdaibiedina & Brechalov (2022), ICLR MLDD workshop.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"features must be a 2-D table of at least 2 cells and 1 feature; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values; drop or impute them first.")
    if isinstance(n_components, (bool, np.bool_)):
        raise ValueError(f"n_components must be a float in (0, 1) or an integer >= 1; got {n_components!r}.")
    if isinstance(n_components, (int, np.integer)):
        if not 1 <= n_components <= min(x.shape):
            raise ValueError(f"n_components={n_components} must be between 1 and min(n_cells, n_features) = "
                             f"{min(x.shape)}; pass fewer components or a variance fraction like 0.95.")
        n_components = int(n_components)
    elif isinstance(n_components, (float, np.floating)):
        if not 0 < n_components < 1:
            raise ValueError(f"a float n_components is a variance fraction in (0, 1); got {n_components}. "
                             "Pass an int for a number of components.")
        n_components = float(n_components)
    else:
        raise ValueError(f"n_components must be a float in (0, 1) or an integer >= 1; got {n_components!r}.")
    pipeline = make_pipeline(StandardScaler(), PCA(n_components=n_components, svd_solver="full", random_state=seed))
    transformed = pipeline.fit_transform(x)
    return transformed, pipeline


def protein_tables(ds, *, seed=0, **kwargs):
    """Protein tables of the handcrafted features: raw and reduced by PCA (the paper's two baselines).

    Each cell's features (:func:`feature_table`) are averaged per protein; the PCA variant
    reduces standardised cell features first (:func:`handcrafted_pca`), then averages.

    Returns
    -------
    raw, pca : DataFrame
        Protein tables of :func:`protrep.data.tables.embedding_tables`.
    """
    from ..data.tables import embedding_tables

    cells = feature_table(ds, **kwargs)
    raw = embedding_tables(ds, cells.to_numpy(np.float32))[1]
    reduced, _ = handcrafted_pca(cells.to_numpy(), seed=seed)
    return raw, embedding_tables(ds, reduced)[1]
