"""Scale-free statistics that say whether simulated single-cell crops look like real ones.

Simulated and real crops differ in camera gain, bit depth and normalisation, so every
statistic here is unchanged when a crop is multiplied by a constant, and all but
``fg_bg_ratio_*`` are also unchanged when a constant is added. :func:`crop_statistics`
measures them per crop; :func:`realism_table` compares the medians of two sets.

The real reference set is the 877 WT2 yeast crops of the reference data
(``yeast-crops/<PROTEIN>/<name>_{gfp,rfp}.tif``, 64 x 64 float32). Those crops were
min-max normalised per field of view: every value is ``(raw - field_min) /
(field_max - field_min)``, so they are (nearly) offset-subtracted, with the background a
few grey levels above 0; simulated crops must be brought to the same convention (subtract
the camera offset, or each field's minimum) before ``fg_bg_ratio_*`` is compared, see
``offset`` in :func:`crop_statistics`.
"""

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .segment import segment_crop

__all__ = ["crop_statistics", "realism_table", "psd_slope", "PSD_BAND"]

#: Frequency band (cycles per pixel) of the power-spectrum slope: wavelengths 4-16 px,
#: between the cell scale (~40 px) and the optical / pixel noise floor.
PSD_BAND = (1 / 16, 1 / 4)


def psd_slope(images, *, band=PSD_BAND):
    """Slope of the log radially averaged power spectrum against log frequency.

    Each image has its mean removed and is multiplied by a 2-D Hann window (so the crop
    border does not add a ``1/f^2`` leak), then ``|FFT|^2`` is averaged over rings one
    frequency step wide; the slope is the least-squares fit of ``log P`` on ``log f`` over
    the rings whose mean frequency lies in ``band``. For noise with power ``~ 1/f^beta``
    the slope is ``-beta``; it does not depend on the image's scale or offset.

    Parameters
    ----------
    images : array_like, shape (n, h, w) or (h, w)
        Images; all the same size.
    band : (float, float), default PSD_BAND = (1/16, 1/4)
        Frequencies in cycles per pixel, ``0 < lo < hi <= 0.5``.

    Returns
    -------
    ndarray of float, shape (n,) (a float for one image)
        Slopes; NaN for a constant image.
    """
    x = np.asarray(images, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"images must have shape (n, h, w) or (h, w); got {x.shape}.")
    lo, hi = _band(band)
    n, h, w = x.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2).ravel()
    ring = np.rint(f * max(h, w)).astype(np.int64)
    ring_f = np.bincount(ring, weights=f) / np.maximum(np.bincount(ring), 1)
    use = np.nonzero((ring_f >= lo) & (ring_f <= hi) & (np.bincount(ring) > 0))[0]
    if use.size < 2:
        raise ValueError(
            f"band {band} holds fewer than 2 frequency rings for {h} x {w} images; widen it."
        )
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    x = (x - x.mean(axis=(1, 2), keepdims=True)) * window
    power = np.abs(np.fft.fft2(x)) ** 2
    power = power.reshape(n, -1)
    sel = np.isin(ring, use)
    order = np.argsort(ring[sel], kind="stable")
    r_sorted = ring[sel][order]
    starts = np.r_[0, np.nonzero(np.diff(r_sorted))[0] + 1]
    counts = np.diff(np.r_[starts, r_sorted.size])
    ring_power = np.add.reduceat(power[:, sel][:, order], starts, axis=1) / counts
    lx = np.log(ring_f[use])
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.log(ring_power)
        lxc = lx - lx.mean()
        slope = ((ly - ly.mean(axis=1, keepdims=True)) * lxc).sum(axis=1) / (lxc**2).sum()
    slope[~np.isfinite(slope)] = np.nan
    return float(slope[0]) if single else slope


def _band(band):
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ValueError(f"band must be two frequencies (lo, hi) in cycles/pixel; got {band!r}.")
    if not 0 < lo < hi <= 0.5:
        raise ValueError(f"band must satisfy 0 < lo < hi <= 0.5 cycles/pixel; got {band!r}.")
    return lo, hi


def crop_statistics(
    images,
    masks=None,
    *,
    channels=("gfp", "rfp"),
    segment_channel="rfp",
    offset=0.0,
    margin=2,
    min_fragment_area=30,
    band=PSD_BAND,
):
    """Per-crop statistics for comparing simulated with real single-cell crops.

    The cells in each crop are found by :func:`protrep.data.segment.segment_crop` on the
    ``segment_channel`` (the cytosolic marker). Columns of the result, one row per crop:

    ``diameter_px``
        Equivalent diameter ``2 * sqrt(area / pi)`` of the centre cell (pixels); NaN when
        no cell was found.
    ``coverage``
        Fraction of the crop covered by the centre cell.
    ``neighbour_fragments``
        Number of other segmented objects in the crop (neighbouring cells, usually cut
        by the crop border) with at least ``min_fragment_area`` pixels; with ``masks``,
        objects that mostly lie in the given mask, or overlap it most, are the centre
        cell and not counted.
    ``fg_bg_ratio_<ch>``
        ``(mean over cell pixels - offset) / (mean over background pixels - offset)``:
        cell pixels are all segmented cells in the crop (centre cell and fragments),
        background pixels are those more than ``margin`` pixels from any cell (so the
        blurred cell rims count as neither). Scale-free, but it depends on the offset:
        images must be offset-subtracted the same way for the sets compared (the real WT2
        crops are, by their per-field min-max normalisation; pass a simulator's camera
        offset as ``offset``). NaN without cell or background pixels.
    ``snr_<ch>``
        ``(mean cell - mean background) / std of background``: contrast in units of the
        background noise; scale- and offset-free.
    ``psd_slope_<ch>``
        Slope of the log radially averaged power spectrum against log frequency over
        ``band`` (default 1/16 to 1/4 cycles/pixel, wavelengths 4-16 px), see
        :func:`psd_slope`: near 0 for white noise, more negative for smoother images.

    Parameters
    ----------
    images : array_like, shape (n, c, h, w)
        Crops, channels in the order of ``channels``; any dtype (used as float).
    masks : array_like of bool, shape (n, h, w), optional
        Centre-cell masks. If omitted they are segmented. For a like-for-like comparison
        compute both sets the same way (real crops have no masks, so leave this out for
        simulated crops too, unless testing the segmentation itself).
    channels : sequence of str, default ("gfp", "rfp")
        Names of the channels along axis 1; they name the columns.
    segment_channel : str, default "rfp"
        Channel in which the cells are segmented.
    offset : float or sequence of float, default 0.0
        Value subtracted from the images (per channel if a sequence) before
        ``fg_bg_ratio_*``; the camera offset of raw simulated counts.
    margin : int, default 2
        Pixels around cells excluded from the background.
    min_fragment_area : int, default 30
        Smallest neighbour fragment counted (pixels).
    band : (float, float), default PSD_BAND
        Frequency band of ``psd_slope_*`` in cycles per pixel.

    Returns
    -------
    DataFrame
        One row per crop, columns as above, index 0..n-1.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> rng = np.random.default_rng(0)
    >>> crop = rng.normal(10, 1, (1, 2, 64, 64))
    >>> crop[0, :, disk((32, 32), 18)[0], disk((32, 32), 18)[1]] += 50
    >>> stats = crop_statistics(crop)
    >>> round(float(stats["diameter_px"][0]))
    36
    """
    x, channels, off, masks, margin = _check_crops(images, masks, channels, segment_channel, offset, margin)
    centre, cells, fragments = _segment_crops(x[:, channels.index(segment_channel)], masks, min_fragment_area)
    n, _, h, w = x.shape
    area = centre.sum(axis=(1, 2)).astype(np.float64)
    found = area > 0
    out = {
        "diameter_px": np.where(found, 2 * np.sqrt(area / np.pi), np.nan),
        "coverage": np.where(found, area / (h * w), np.nan),
        "neighbour_fragments": fragments,
    }
    out.update(_contrast(x, channels, off, cells, margin))
    for k, ch in enumerate(channels):
        out[f"psd_slope_{ch}"] = psd_slope(x[:, k], band=band) if n else np.zeros(0)
    return pd.DataFrame(out)


def _check_crops(images, masks, channels, segment_channel, offset, margin):
    """:func:`crop_statistics`' inputs, checked: float64 images, channel names, offsets, masks, margin."""
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(
            f"images must have shape (n, c, h, w); got {x.shape}. "
            "Stack crops as images[i, channel]."
        )
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"images must hold numbers; got dtype {x.dtype}.")
    x = x.astype(np.float64, copy=False)
    n, c, h, w = x.shape
    channels = tuple(str(ch) for ch in channels)
    if len(channels) != c or len(set(channels)) != c:
        raise ValueError(
            f"channels must name the {c} channels of images uniquely; got {channels}."
        )
    if segment_channel not in channels:
        raise ValueError(
            f"segment_channel {segment_channel!r} is not one of {channels}; "
            "pass the name of the cytosolic-marker channel."
        )
    try:
        off = np.broadcast_to(np.asarray(offset, dtype=np.float64), (c,))
    except ValueError:
        off = None
    if off is None or not np.isfinite(off).all():
        raise ValueError(
            f"offset must be a finite number or one per channel ({c}); got {offset!r}."
        )
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (n, h, w):
            raise ValueError(f"masks must have shape {(n, h, w)} (one per crop); got {masks.shape}.")
        masks = masks.astype(bool, copy=False)
    margin = int(margin)
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}.")
    return x, channels, off, masks, margin


def _segment_crops(seg, masks, min_fragment_area):
    """Centre cell, all cells and the count of neighbour fragments of every crop."""
    n, h, w = seg.shape
    centre = np.zeros((n, h, w), dtype=bool)
    cells = np.zeros((n, h, w), dtype=bool)
    fragments = np.zeros(n, dtype=np.int64)
    for i in range(n):  # segmentation is per crop; everything else is vectorised
        m, lab = segment_crop(seg[i], min_area=min(20, min_fragment_area), return_labels=True)
        if masks is not None:
            m = masks[i]
        area = np.bincount(lab.ravel())
        inside = np.bincount(lab.ravel(), weights=m.ravel(), minlength=area.size)
        inside[0] = 0
        # others: not the object that overlaps the centre cell most, nor mostly inside it
        other = (area >= min_fragment_area) & (inside < 0.5 * area)
        other[np.argmax(inside)] = False
        other[0] = False
        fragments[i] = int(other.sum())
        centre[i] = m
        cells[i] = m | (lab > 0)
    return centre, cells, fragments


def _contrast(x, channels, off, cells, margin):
    """``fg_bg_ratio_<ch>`` and ``snr_<ch>`` of every crop (see :func:`crop_statistics`)."""
    out = {}
    if margin:
        near = ndi.binary_dilation(cells, structure=np.ones((1, 3, 3), bool), iterations=margin)
    else:
        near = cells
    bg = ~near
    n_fg = cells.sum(axis=(1, 2))
    n_bg = bg.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, ch in enumerate(channels):
            img = x[:, k]
            fg_mean = (img * cells).sum(axis=(1, 2)) / n_fg
            bg_mean = (img * bg).sum(axis=(1, 2)) / n_bg
            bg_var = (((img - bg_mean[:, None, None]) ** 2) * bg).sum(axis=(1, 2)) / (n_bg - 1)
            ratio = (fg_mean - off[k]) / (bg_mean - off[k])
            snr = (fg_mean - bg_mean) / np.sqrt(bg_var)
            ok = (n_fg > 0) & (n_bg > 1)
            out[f"fg_bg_ratio_{ch}"] = np.where(ok & np.isfinite(ratio), ratio, np.nan)
            out[f"snr_{ch}"] = np.where(ok & np.isfinite(snr), snr, np.nan)
    return out


def realism_table(sim_stats, real_stats, *, tolerance=1.5):
    """Compare the per-statistic medians of simulated and real crops.

    Parameters
    ----------
    sim_stats, real_stats : DataFrame
        Outputs of :func:`crop_statistics`; their common numeric columns are compared.
    tolerance : float, default 1.5
        A statistic is within tolerance when ``1/tolerance <= ratio <= tolerance``.

    Returns
    -------
    DataFrame
        Index ``statistic``; columns ``sim_median``, ``real_median`` (NaN ignored),
        ``ratio`` (``sim_median / real_median``; 1 when both are 0, NaN when undefined)
        and ``within_1_5`` (True when the ratio is within ``tolerance``; the name keeps
        the default).
    """
    for name, df in (("sim_stats", sim_stats), ("real_stats", real_stats)):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{name} must be a DataFrame from crop_statistics; got {type(df).__name__}.")
    if not (np.isscalar(tolerance) and tolerance >= 1):
        raise ValueError(f"tolerance must be a number >= 1; got {tolerance!r}.")
    cols = [
        col
        for col in sim_stats.columns
        if col in real_stats.columns
        and pd.api.types.is_numeric_dtype(sim_stats[col])
        and pd.api.types.is_numeric_dtype(real_stats[col])
    ]
    if not cols:
        raise ValueError("sim_stats and real_stats share no numeric columns; pass crop_statistics outputs.")
    sim = sim_stats[cols].median(skipna=True).astype(float)
    real = real_stats[cols].median(skipna=True).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sim / real
    ratio[(sim == 0) & (real == 0)] = 1.0
    table = pd.DataFrame({"sim_median": sim, "real_median": real, "ratio": ratio})
    table["within_1_5"] = (table["ratio"] >= 1 / tolerance) & (table["ratio"] <= tolerance)
    table.index.name = "statistic"
    return table
