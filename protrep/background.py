"""Background confounding of single-cell crops, and background randomisation for training.

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

Measurements follow Gupta et al.: for every pair of classes, a linear SVM on standardised
features, balanced classes, stratified k-fold accuracy (:func:`pairwise_svm`); the mean
over pairs per model and setting is their Table 1 (:func:`table1`). For proteins with
several localizations (or heterogeneous ones), a classifier's mean predicted distribution
with and without background is compared by KL divergence (:func:`distribution_shift`).

:func:`randomize_background` is the training-time counterpart: a batch transform that
masks, swaps or replaces the background of a random share of the crops, so that a model
cannot use the neighbours (``TrainConfig.background``).

References
----------
Gupta, Moses & Lu (2025). Background confounding in single-cell crops of yeast screens.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import DataError
from .progress import progress as progress_bar

__all__ = [
    "SETTINGS",
    "background_stats",
    "compose",
    "mask_background",
    "format_table1",
    "draw_donors",
    "background_setting",
    "randomize_background",
    "pairwise_svm",
    "select_cells",
    "table1",
    "class_sensitivity",
    "gap_change",
    "kl_divergence",
    "distribution_shift",
    "read_published",
    "published_table1",
]

log = logging.getLogger(__name__)

SETTINGS = ("base", "mask", "same", "diff", "cellfree")
_PUBLISHED_FILES = {"base": "base", "mask": "mask", "same": "same", "diff": "diff", "cellfree": "batch"}
_MIN_FREE = 64


# ----------------------------------------------------------------------------- crops
def background_stats(images, masks, *, marker=1, progress=False):
    """Background level and noise of every crop and channel, from its cell-free pixels.

    Cell-free pixels lie outside the centre cell and outside the foreground of the marker
    channel: Otsu's threshold of the marker smoothed with a Gaussian (sigma 1 px), the
    foreground grown by 2 px to leave out the blurred rims of cells. (Within 1% of the level
    and 20% of the noise found with a full segmentation, :func:`protrep.segment.segment_crop`,
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
    m = masks[:, None]
    if isinstance(images, torch.Tensor):
        return torch.where(m, images, background)
    return np.where(m, images, background).astype(np.float32, copy=False)


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


def background_setting(ds, setting, *, index=None, donors=None, stats=None, seed=0):
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
                        "(segment the crops with protrep.segment.segment_crop)")
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
            if (labels[index] < 0).any():
                raise ValueError("same/diff swaps need a class label for every recipient cell")
            if donors is None:
                donors = np.flatnonzero((labels >= 0) & ~ds.meta["localization"].astype(str).str.contains(";"))
            donors = np.asarray(donors)
            pick = draw_donors(labels[index], proteins[index], labels[donors], proteins[donors],
                               same=setting == "same", rng=rng)
            donor = donors[pick]
            dlev, _ = stats_of(donor)
            background = ds.images[donor].astype(np.float32) + (lev - dlev)[:, :, None, None]
        images = compose(images, masks, background)
    out = ds.subset(index)
    out.images = images
    out.meta = out.meta.assign(donor=donor)
    return out


def randomize_background(batch, masks, level, noise, generator, *, p=0.5):
    """Training-time background randomisation of a batch (``TrainConfig.background``).

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

    Returns
    -------
    dict
        A new batch; the other keys are passed through.
    """
    x = batch["image"]
    b = x.shape[0]
    dev = x.device
    u = torch.rand(b, generator=generator).to(dev)
    mode = torch.randint(0, 3, (b,), generator=generator).to(dev)
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
    out["image"] = torch.where(keep, x, compose(x, m, new))
    out["target"] = mask_background(x, m, level.to(dev, x.dtype))
    return out


# ----------------------------------------------------------------------------- linear SVM grid
def select_cells(labels, *, max_per_class=1000, seed=0):
    """Up to ``max_per_class`` cells of every class (labels >= 0), drawn at random, in index order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for k in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == k)
        keep.append(rng.choice(idx, min(len(idx), max_per_class), replace=False) if len(idx) > max_per_class
                    else idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def _pair_accuracy(x, y, folds, C, seed):
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        mu, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0
        svm = LinearSVC(C=C, max_iter=5000, random_state=seed)
        svm.fit((x[train] - mu) / sd, y[train])
        scores.append(float((svm.predict((x[test] - mu) / sd) == y[test]).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _pair_tasks(features, labels, classes, folds, seed):
    labels = np.asarray(labels)
    present = [k for k in range(len(classes)) if (labels == k).sum() >= folds]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            ia, ib = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
            n = min(len(ia), len(ib))
            rng = np.random.default_rng([seed, a, b])  # balanced classes: chance is 0.5
            ia = rng.choice(ia, n, replace=False) if len(ia) > n else ia
            ib = rng.choice(ib, n, replace=False) if len(ib) > n else ib
            idx = np.concatenate([ia, ib])
            yield (a, b, n), features[idx], (labels[idx] == b).astype(int)


def pairwise_svm(features, labels, classes, *, folds=5, C=1.0, seed=0, n_jobs=1, progress=False, desc="SVM pairs"):
    """Linear-SVM accuracy for every pair of classes (Gupta et al. 2025, Table 1).

    For each pair, the larger class is subsampled to the size of the smaller (chance is
    0.5), features are standardised on the training folds, and a ``LinearSVC`` is scored
    by stratified ``folds``-fold cross-validation. Classes with fewer than ``folds`` cells
    are left out.

    Parameters
    ----------
    features : ndarray (n, d)
    labels : array of int (n,)
        Class index per cell; -1 cells are ignored.
    classes : sequence of str
        Names of the class indices.
    n_jobs : int
        Parallel processes (joblib); -1 for all cores.

    Returns
    -------
    DataFrame
        ``Location1, Location2, n_per_class, Accuracy, StdDev`` (the layout of the published
        CSVs, plus the cells per class); accuracy is higher-is-better, StdDev over folds.
    """
    from joblib import Parallel, delayed

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n, d) with one label per row; got {features.shape} and {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf; drop or impute those cells first")
    tasks = list(_pair_tasks(features, labels, classes, folds, seed))
    jobs = (delayed(_pair_accuracy)(x, y, folds, C, seed) for _, x, y in tasks)
    bar = progress_bar(total=len(tasks), desc=desc, unit="pair", disable=not progress)
    results = []
    for r in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
        results.append(r)
        bar.update()
    bar.close()
    rows = [{"Location1": classes[a], "Location2": classes[b], "n_per_class": n, "Accuracy": acc, "StdDev": sd}
            for ((a, b, n), _, _), (acc, sd) in zip(tasks, results)]
    return pd.DataFrame(rows, columns=["Location1", "Location2", "n_per_class", "Accuracy", "StdDev"])


def table1(pairs, *, k=3.0):
    """Mean pairwise accuracy per model and setting, with ``k`` standard errors over pairs.

    Parameters
    ----------
    pairs : DataFrame
        Columns ``model, setting, Accuracy`` (one row per pair, or per pair and donor class).

    Returns
    -------
    DataFrame
        Index ``model``, columns ``(setting, "mean")`` and ``(setting, "err")``: mean and
        ``k`` x standard error of the mean over pairs.
    """
    g = pairs.groupby(["model", "setting"], sort=False)["Accuracy"]
    out = pd.DataFrame({"mean": g.mean(), "err": k * g.std(ddof=1) / np.sqrt(g.count())})
    out = out.unstack("setting").swaplevel(axis=1)
    settings = [s for s in SETTINGS if s in out.columns.get_level_values(0)]
    order = list(dict.fromkeys(pairs["model"]))
    return out.reindex(columns=pd.MultiIndex.from_product([settings, ["mean", "err"]])).reindex(order)


def format_table1(table):
    """:func:`table1` as text for display: ``"mean ± err"`` per setting and the same-minus-different gap."""
    settings = list(dict.fromkeys(table.columns.get_level_values(0)))
    shown = pd.DataFrame({s: [f"{table.loc[m, (s, 'mean')]:.3f} ± {table.loc[m, (s, 'err')]:.3f}" for m in table.index]
                          for s in settings}, index=table.index)
    if {"same", "diff"} <= set(settings):
        gap = table[("same", "mean")] - table[("diff", "mean")]
        shown["same - diff"] = [f"{v:+.3f}" for v in gap]
    return shown


def class_sensitivity(pairs, classes):
    """Background sensitivity per class: mean over the pairs involving it of (same - diff) accuracy.

    Parameters
    ----------
    pairs : DataFrame
        Columns ``model, setting, Location1, Location2, Accuracy`` with settings ``same`` and
        ``diff`` (several rows per pair, e.g. one per donor class, are averaged first).

    Returns
    -------
    DataFrame
        Rows models, columns classes; positive = the classifier relies on the background.
    """
    mean = pairs.groupby(["model", "setting", "Location1", "Location2"], sort=False)["Accuracy"].mean()
    gap = (mean.xs("same", level="setting") - mean.xs("diff", level="setting")).dropna().reset_index()
    long = pd.concat([gap.rename(columns={"Location1": "cls"}), gap.rename(columns={"Location2": "cls"})])
    table = long.groupby(["model", "cls"])["Accuracy"].mean().unstack("cls")
    order = list(dict.fromkeys(pairs["model"]))
    return table.reindex(index=[m for m in order if m in table.index], columns=[c for c in classes if c in table])


def gap_change(pairs, model, reference, *, k=3.0):
    """How much ``model``'s same-minus-different gap differs from ``reference``'s, paired by class pair.

    For every class pair scored for both models, ``(same - diff)`` of ``model`` minus that
    of ``reference``; negative means ``model`` depends less on the background.

    Returns
    -------
    mean, err : float
        Mean over pairs and ``k`` standard errors of it (pairs are the unit, as in
        :func:`table1`).
    """
    acc = pairs.groupby(["model", "setting", "Location1", "Location2"])["Accuracy"].mean()
    scored = {(m, st) for m, st, _, _ in acc.index}
    missing = [m for m in (model, reference) if not {(m, "same"), (m, "diff")} <= scored]
    if missing:
        raise ValueError(f"fewer than two class pairs scored: no same and diff results for {missing}")
    gap = {m: acc.xs((m, "same"), level=("model", "setting")) - acc.xs((m, "diff"), level=("model", "setting"))
           for m in (model, reference)}
    d = (gap[model] - gap[reference]).dropna()
    if len(d) < 2:
        raise ValueError(f"fewer than two class pairs scored for both {model!r} and {reference!r}")
    return float(d.mean()), float(k * d.std(ddof=1) / np.sqrt(len(d)))


# ----------------------------------------------------------------------------- distributions
def kl_divergence(p, q, *, eps=1e-3):
    """KL(p || q) in nats for rows of probability vectors, after mixing each with ``eps`` of uniform.

    The mixing keeps the divergence finite where a class gets probability 0.
    """
    p, q = np.atleast_2d(np.asarray(p, float)), np.atleast_2d(np.asarray(q, float))
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("probabilities must be non-negative")
    k = p.shape[1]
    p = (1 - eps) * p / p.sum(1, keepdims=True) + eps / k
    q = (1 - eps) * q / q.sum(1, keepdims=True) + eps / k
    return (p * np.log(p / q)).sum(1)


def distribution_shift(proteins, proba_with, proba_without, classes, *, threshold=0.1):
    """Per protein: mean predicted distribution with and without background, and their KL divergence.

    Parameters
    ----------
    proteins : array (n,)
        Protein of every cell.
    proba_with, proba_without : ndarray (n, k)
        Predicted class probabilities of the same cells with their background (``base``)
        and without (``mask``).
    threshold : float
        KL divergence (nats) above which a protein's distribution counts as changed; 0.1
        nats is, for a protein split 50:50 between two classes, a shift of about 20 points
        of probability from one to the other.

    Returns
    -------
    DataFrame
        ``protein, n_cells, kl, changed, top_with, top_without`` and the two distributions
        (columns ``with:<class>``, ``without:<class>``).
    """
    classes = list(classes)
    a = pd.DataFrame(np.asarray(proba_with), columns=classes).groupby(np.asarray(proteins)).mean()
    b = pd.DataFrame(np.asarray(proba_without), columns=classes).groupby(np.asarray(proteins)).mean()
    kl = kl_divergence(a.to_numpy(), b.to_numpy())
    out = pd.DataFrame({"protein": a.index, "n_cells": pd.Series(np.asarray(proteins)).value_counts()[a.index].to_numpy(),
                        "kl": kl, "changed": kl > threshold, "top_with": a.idxmax(1).to_numpy(),
                        "top_without": b.idxmax(1).to_numpy()})
    return pd.concat([out, a.add_prefix("with:").reset_index(drop=True),
                      b.add_prefix("without:").reset_index(drop=True)], axis=1)


# ----------------------------------------------------------------------------- published numbers
def read_published(folder):
    """The published pairwise accuracies of Gupta et al. 2025 (``reference-results/gupta2025``).

    Returns
    -------
    DataFrame
        ``model, setting, Location1, Location2, Background, Accuracy, StdDev``; settings
        named as in :data:`SETTINGS` (their ``batch`` files, a cell-free background of a
        different batch, are ``cellfree``), ``Background`` NaN where the file has none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "no such folder of published results")
    frames = []
    for model_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for setting, stem in _PUBLISHED_FILES.items():
            path = model_dir / f"results_{stem}.csv"
            if not path.is_file():
                continue
            table = pd.read_csv(path)
            missing = {"Location1", "Location2", "Accuracy"} - set(table.columns)
            if missing:
                raise DataError(path, f"lacks columns {sorted(missing)}")
            frames.append(table.assign(model=model_dir.name, setting=setting))
    if not frames:
        raise DataError(folder, "holds no results_<setting>.csv files")
    out = pd.concat(frames, ignore_index=True)
    if "Background" not in out:
        out["Background"] = np.nan
    return out[["model", "setting", "Location1", "Location2", "Background", "Accuracy", "StdDev"]]


def published_table1(folder, *, k=3.0):
    """Table 1 of Gupta et al. 2025 recomputed from their CSVs (mean over pairs, and donor classes)."""
    return table1(read_published(folder), k=k)


# ----------------------------------------------------------------------------- the whole experiment
def setting_features(ds, index, extractors, *, settings=SETTINGS, donors=None, stats=None, seed=0, progress=True):
    """Features of cells ``index`` under every background setting, for every feature extractor.

    Parameters
    ----------
    ds : CellDataset
    index : array of int
    extractors : dict of str -> callable
        ``name -> f(CellDataset) -> ndarray (n, d)``, e.g. a model's
        :func:`protrep.inference.embed_cells` or :func:`protrep.handcrafted.handcrafted_features`.
    donors : array of int, optional
        Cells that may donate backgrounds (:func:`background_setting`).
    stats : (level, noise), optional
        :func:`background_stats` of every cell of ``ds``.

    Returns
    -------
    dict of (name, setting) -> ndarray (len(index), d)
        Every extractor sees the same crops in a setting (same donors, same noise).
    """
    out = {}
    steps = [(s, n) for s in settings for n in extractors]
    bar = progress_bar(total=len(steps), desc="features per setting", unit="model", disable=not progress)
    for setting in settings:
        crops = background_setting(ds, setting, index=index, donors=donors, stats=stats, seed=seed)
        for name, extract in extractors.items():
            bar.set_postfix_str(f"{name} / {setting}", refresh=False)
            out[name, setting] = np.asarray(extract(crops), dtype=np.float32)
            bar.update()
    bar.close()
    return out


def background_experiment(ds, extractors, *, settings=SETTINGS, max_per_class=1000, folds=5, seed=0, n_jobs=1,
                          stats=None, progress=True):
    """Gupta et al.'s experiment: features under every setting, then the pairwise-SVM grid.

    Cells: every labelled cell of a single-localized protein (all splits, as in the
    paper), up to ``max_per_class`` per class (:func:`select_cells`); the same cells
    donate the swapped-in backgrounds.

    Returns
    -------
    dict
        ``index`` (the cells used), ``features`` (:func:`setting_features`), ``pairs``
        (long DataFrame: ``model, setting`` + :func:`pairwise_svm` columns) and ``table1``.
    """
    labels = ds.meta["label"].to_numpy()
    index = cells_for(ds, max_per_class=max_per_class, seed=seed)
    if not len(index):
        raise DataError(ds.source or "dataset", "has no labelled cells of single-localized proteins")
    features = setting_features(ds, index, extractors, settings=settings, donors=index, stats=stats, seed=seed,
                                progress=progress)
    frames = []
    for (name, setting), x in features.items():
        pairs = pairwise_svm(x, labels[index], ds.classes, folds=folds, seed=seed, n_jobs=n_jobs, progress=progress,
                             desc=f"SVM {name}/{setting}")
        frames.append(pairs.assign(model=name, setting=setting))
    pairs = pd.concat(frames, ignore_index=True)
    pairs = pairs[["model", "setting"] + [c for c in pairs.columns if c not in ("model", "setting")]]
    return {"index": index, "features": features, "pairs": pairs, "table1": table1(pairs)}


def linear_predictor(extract, train_features, train_labels, n_classes, *, seed=0):
    """A localization classifier for a model without one: logistic regression on its features.

    Fitted on standardised ``train_features`` (n, d) with class indices ``train_labels``;
    returns ``f(CellDataset) -> proba (n, n_classes)`` that extracts features with
    ``extract`` and predicts (classes absent from training get probability 0).
    """
    from .metrics import fit_linear_probe

    model = fit_linear_probe(train_features, train_labels, seed=seed)
    seen = model.classes_

    def predict(crops):
        proba = np.zeros((len(crops), n_classes))
        proba[:, seen] = model.predict_proba(np.asarray(extract(crops)))
        return proba

    return predict


def localization_shift(ds, proteins, predictors, *, cells_per_protein=20, threshold=0.1, stats=None, seed=0,
                       progress=True):
    """How much the predicted localization of each protein changes when its cells lose their background.

    Parameters
    ----------
    ds : CellDataset
    proteins : sequence of str
        The proteins to look at (Gupta et al.: multi-localized ones; here also heterogeneous).
    predictors : dict of str -> callable
        ``name -> f(CellDataset) -> proba (n, k)`` over ``ds.classes``.
    cells_per_protein : int
        Up to this many cells of each protein, drawn at random.
    threshold : float
        KL divergence (nats) above which a protein counts as changed (:func:`distribution_shift`).

    Returns
    -------
    tables : dict of str -> DataFrame
        :func:`distribution_shift` per predictor.
    changed : dict of str -> float
        Fraction of the proteins whose distribution changed.
    """
    rng = np.random.default_rng([seed, 7])
    all_proteins = ds.meta["protein"].to_numpy()
    index = []
    for p in proteins:
        idx = np.flatnonzero(all_proteins == p)
        index.append(np.sort(rng.choice(idx, cells_per_protein, replace=False)) if len(idx) > cells_per_protein
                     else idx)
    index = np.concatenate(index) if index else np.zeros(0, int)
    if not len(index):
        raise ValueError("none of the given proteins has cells in the dataset")
    with_bg = background_setting(ds, "base", index=index)
    without_bg = background_setting(ds, "mask", index=index, stats=stats, seed=seed)
    tables = {}
    for name, predict in progress_bar(predictors.items(), desc="localization shift", unit="model",
                                      disable=not progress):
        tables[name] = distribution_shift(all_proteins[index], predict(with_bg), predict(without_bg), ds.classes,
                                          threshold=threshold)
    return tables, {name: float(t["changed"].mean()) for name, t in tables.items()}


def cells_for(ds, *, max_per_class=1000, seed=0):
    """The cells :func:`background_experiment` uses (single-localized, labelled, capped per class)."""
    labels = ds.meta["label"].to_numpy()
    single = ~ds.meta["localization"].astype(str).str.contains(";").to_numpy()
    return select_cells(np.where(single, labels, -1), max_per_class=max_per_class, seed=seed)


def partial_stats(ds, index, *, progress=True):
    """:func:`background_stats` of cells ``index`` in arrays over all of ``ds`` (NaN for the others)."""
    index = np.unique(np.asarray(index))
    level = np.full((len(ds), ds.images.shape[1]), np.nan, np.float32)
    noise = level.copy()
    level[index], noise[index] = background_stats(ds.images[index], ds.masks[index], progress=progress)
    return level, noise


def run_background(ds, models, *, handcrafted=True, proteins=None, max_per_class=1000, folds=5, cells_per_protein=20,
                   threshold=0.1, n_jobs=1, seed=0, device="cpu", progress=True):
    """Everything of notebook 05 for trained models: ``protrep background`` calls this.

    Parameters
    ----------
    ds : CellDataset
        With centre-cell masks and labels.
    models : dict of str -> nn.Module
        Trained models by the name used in the tables (e.g. ``deeploc``, ``pci``, ``ae``,
        ``deeploc_invariant``). Features are their default layer on the centre crop.
    handcrafted : bool
        Add the CellProfiler-like features of :mod:`protrep.handcrafted` as ``handcrafted``.
    proteins : sequence of str, optional
        Proteins for the localization-shift measurement (default: every multi-localized one).
        Classifiers (models with ``predict_proba``) use their own head; the others a
        logistic regression fitted on their ``base`` features of the SVM cells.

    Returns
    -------
    dict
        :func:`background_experiment`'s results plus ``sensitivity``, ``shift`` (tables per
        model), ``kl_changed_fraction`` and ``summary`` (JSON types: ``table1[model][setting]
        = {"mean", "err"}``, ``kl_changed_fraction[model]``, cell counts, settings).
    """
    from .handcrafted import handcrafted_features
    from .inference import embed_cells, predict_cells

    if ds.masks is None:
        raise DataError(ds.source or "dataset", "has no centre-cell masks; background settings need them")
    extractors = {name: (lambda crops, m=m: embed_cells(m, crops, crops="centre", device=device))
                  for name, m in models.items()}
    if handcrafted:
        extractors["handcrafted"] = lambda crops: handcrafted_features(crops.images, crops.masks,
                                                                       channels=crops.channels)
    index = cells_for(ds, max_per_class=max_per_class, seed=seed)
    if proteins is None:
        multi = ds.meta["localization"].astype(str).str.contains(";")
        proteins = sorted(ds.meta.loc[multi & (ds.meta["label"] >= 0), "protein"].unique())
    shift_cells = np.flatnonzero(ds.meta["protein"].isin(list(proteins)).to_numpy())
    stats = partial_stats(ds, np.concatenate([index, shift_cells]), progress=progress)
    result = background_experiment(ds, extractors, max_per_class=max_per_class, folds=folds, seed=seed,
                                   n_jobs=n_jobs, stats=stats, progress=progress)
    labels = ds.meta["label"].to_numpy()[result["index"]]
    predictors = {}
    for name, extract in extractors.items():
        model = models.get(name)
        if model is not None and hasattr(model, "predict_proba"):
            predictors[name] = lambda crops, m=model: predict_cells(m, crops, device=device)
        else:
            predictors[name] = linear_predictor(extract, result["features"][name, "base"], labels, len(ds.classes),
                                                seed=seed)
    shift, changed = ({}, {}) if not len(proteins) else localization_shift(
        ds, proteins, predictors, cells_per_protein=cells_per_protein, threshold=threshold, stats=stats, seed=seed,
        progress=progress)
    sensitivity = class_sensitivity(result["pairs"], ds.classes)
    t1 = result["table1"]
    summary = {
        "table1": {m: {s: {"mean": float(t1.loc[m, (s, "mean")]), "err": float(t1.loc[m, (s, "err")])}
                       for s in t1.columns.get_level_values(0).unique()} for m in t1.index},
        "kl_changed_fraction": changed,
        "kl_threshold_nats": threshold,
        "n_cells": int(len(result["index"])),
        "n_classes": int(len(np.unique(labels))),
        "n_shift_proteins": int(len(proteins)),
        "sensitivity": {m: {c: float(v) for c, v in row.dropna().items()} for m, row in sensitivity.iterrows()},
    }
    return {**result, "sensitivity": sensitivity, "shift": shift, "kl_changed_fraction": changed, "summary": summary}
