"""Background confounding of trained models, end to end: ``protrep background`` and chapter 5.

:func:`run_background` measures Table 1 of Gupta, Moses & Lu (2025) under either protocol
of :mod:`protrep.evaluation.protocols` (``"published"``: their layers, classifier, folds
and aggregation; ``"strict"``: held-out proteins, protein-grouped folds, matched donors,
every seed, class-and-seed bootstrap intervals), and, under the strict protocol, how the
predicted localization of held-out multi-localized proteins changes without their
background (KL divergence per protein). It imports the inference layer only when called,
so this module imports without torch.

References
----------
Gupta, Moses & Lu (2025). Representation learning methods for single-cell microscopy are
confounded by background cells. PMLR 311.
"""

import numpy as np

from ..data.backgrounds import SETTINGS, background_setting, background_stats, mask_background, partial_stats
from ..errors import DataError
from .confounding import linear_predictor, localization_shift, select_cells
from .protocols import (PUBLISHED_LAYERS, bootstrap_table, class_bootstrap, first_cells, gap_values, heldout_cells,
                        published_experiment, strict_crops, strict_experiment)

__all__ = ["PROTOCOLS", "masked_view", "extractors_for", "heldout_shift", "run_background", "native_experiment"]

PROTOCOLS = ("strict", "published")


def masked_view(crops):
    """``crops`` with everything outside the centre cell at the crop's background level (masking at input).

    Kept in ``crops.info["_masked_view"]``: the seeds of a masked model see the same view.
    """
    if "_masked_view" not in crops.info:
        level, _ = background_stats(crops.images, crops.masks)
        out = crops.subset(np.arange(len(crops)))
        out.images = mask_background(crops.images, crops.masks, level)
        crops.info["_masked_view"] = out
    return crops.info["_masked_view"]


def _embedder(model, layer, masked, device):
    from ..inference.embed import embed_cells

    def extract(crops):
        return embed_cells(model, masked_view(crops) if masked else crops, layer=layer, crops="centre", device=device)

    extract.raw = masked  # masking reads camera counts: give it crops before the percentile stretch
    return extract


def _cellprofiler(crops):
    from .handcrafted import handcrafted_features

    return handcrafted_features(crops.images, crops.masks, channels=crops.channels)


_cellprofiler.raw = True  # intensity features of camera counts


def extractors_for(models, *, layers=None, masked=(), handcrafted=False, device="cpu"):
    """Feature extractors ``name -> [f(CellDataset) -> (n, d)]``, one per seed.

    Parameters
    ----------
    models : dict of str -> nn.Module or list of nn.Module
        Trained models (a list: one per training seed).
    layers : dict of str -> str, optional
        Feature layer per model (default: each model's own, as in chapter 4).
    masked : collection of str
        Models trained on masked crops: they see their test crops masked too (:func:`masked_view`).
    handcrafted : bool
        Add the CellProfiler-like features of :mod:`protrep.evaluation.handcrafted` as
        ``cellprofiler`` (no seeds: one extractor).

    An extractor with ``raw = True`` needs crops as read (camera counts); the others
    accept crops already percentile-stretched (:func:`protrep.inference.embed.stretched`).
    """
    layers = layers or {}
    out = {name: [_embedder(m, layers.get(name), name in masked, device)
                  for m in (ms if isinstance(ms, (list, tuple)) else [ms])] for name, ms in models.items()}
    if handcrafted:
        out["cellprofiler"] = [_cellprofiler]
    return out


def _predictors(ds, models, extractors, masked, *, max_per_class, seed, device):
    """Per model (first seed): the classifier's own head, or a logistic regression on training-protein features."""
    from ..inference.embed import predict_cells

    train = select_cells(np.where(((ds.meta["split"] == "train")
                                   & ~ds.meta["localization"].astype(str).str.contains(";")).to_numpy(),
                                  ds.meta["label"].to_numpy(), -1), max_per_class=max_per_class, seed=seed)
    train_crops = background_setting(ds, "base", index=train)
    out = {}
    for name, fs in extractors.items():
        m, f = models.get(name), fs[0]
        m = m[0] if isinstance(m, (list, tuple)) else m
        if getattr(m, "is_classifier", False):
            out[name] = lambda crops, m=m, mask=name in masked: predict_cells(
                m, masked_view(crops) if mask else crops, crops="centre", device=device)
        else:
            out[name] = linear_predictor(f, f(train_crops), ds.meta["label"].to_numpy()[train], len(ds.classes),
                                         seed=seed)
    return out


def heldout_shift(ds, models, extractors, *, masked=(), split="test", max_per_class=50, cells_per_protein=20,
                  threshold=0.1, stats=None, seed=0, device="cpu", progress=True):
    """Gupta et al.'s localization shift on held-out multi-localized proteins, every model (first seed).

    For every multi-localized ``split`` protein, the mean predicted distribution of its
    cells with their background and masked, and the KL divergence between the two
    (:func:`protrep.evaluation.confounding.distribution_shift`; a protein counts as
    changed above ``threshold`` nats). Classifiers use their own head; the other models
    a logistic regression fitted on their features of training proteins' cells (up to
    ``max_per_class`` per class), so neither model nor probe has seen the proteins.

    Returns
    -------
    tables : dict of str -> DataFrame
        One row per protein, as the paper's figure.
    changed : dict of str -> float
        The fraction of the proteins whose distribution changed.
    """
    meta = ds.meta
    multi = (meta["split"] == split) & (meta["label"] >= 0) & meta["localization"].astype(str).str.contains(";")
    proteins = sorted(meta.loc[multi, "protein"].unique())
    if not proteins:
        return {}, {}
    predictors = _predictors(ds, models, extractors, masked, max_per_class=max_per_class, seed=seed, device=device)
    tables, changed = localization_shift(ds, proteins, predictors, cells_per_protein=cells_per_protein,
                                         threshold=threshold, stats=stats, seed=seed, progress=progress)
    return tables, changed


def _strict(ds, models, extractors, masked, *, max_per_class, folds, cells_per_protein, threshold, n_boot, n_jobs,
            seed, device, progress, seed_settings):
    index = heldout_cells(ds)
    if ds.meta["label"].iloc[index].nunique() < 2:
        raise DataError(ds.source or "dataset", "has fewer than two classes with two held-out (test) single-localized "
                        "proteins: the strict protocol needs them (simulate more proteins or a larger test share)")
    index = index[select_cells(ds.meta["label"].to_numpy()[index], max_per_class=max_per_class, seed=seed)]
    multi = np.flatnonzero(((ds.meta["split"] == "test") & ds.meta["localization"].astype(str).str.contains(";"))
                           .to_numpy())
    pool = heldout_cells(ds, min_proteins=1)  # diff donors may come from any held-out class
    stats = partial_stats(ds, np.concatenate([pool, multi]), progress=progress)
    crops, _ = strict_crops(ds, index, stats=stats, seed=seed, pool=pool)
    pairs = strict_experiment(crops, extractors, ds.classes, folds=folds, n_jobs=n_jobs, seed=seed, progress=progress,
                              seed_settings=seed_settings)
    gaps = {m: class_bootstrap(gap_values(pairs, m), n_boot=n_boot, seed=seed) for m in extractors}
    shift, changed = heldout_shift(ds, models, extractors, masked=masked, cells_per_protein=cells_per_protein,
                                   threshold=threshold, stats=stats, seed=seed, device=device, progress=progress)
    return {"index": index, "crops": crops, "pairs": pairs, "table": bootstrap_table(pairs, n_boot=n_boot, seed=seed),
            "gaps": gaps, "shift": shift, "kl_changed_fraction": changed}


def run_background(ds, models, *, protocol="strict", masked=(), handcrafted=True, max_per_class=1000, folds=5,
                   cells_per_protein=20, threshold=0.1, n_boot=1000, n_jobs=1, seed=0, device="cpu", progress=True,
                   seed_settings=None):
    """Table 1 of Gupta et al. 2025 for trained models, under one protocol: ``protrep background`` calls this.

    Parameters
    ----------
    ds : CellDataset
        With centre-cell masks, labels, ``protein`` and ``split``.
    models : dict of str -> nn.Module or list of nn.Module
        Trained models by the name used in the tables; a list holds one model per training
        seed (the published protocol uses the first).
    protocol : {"strict", "published"}
        See :mod:`protrep.evaluation.protocols`.
    masked : collection of str
        Models trained on masked crops (``TrainConfig.background_mode="mask"``).
    handcrafted : bool
        Add the CellProfiler-like features as ``cellprofiler`` (strict protocol).
    max_per_class : int
        Published: the first cells per class (their 1,000); strict: held-out cells per class.
    seed_settings : collection of str, optional
        Strict: the settings measured at every training seed; the others at the first
        seed only (None: every setting at every seed).

    Returns
    -------
    dict
        Published: ``pairs``, ``table`` (their aggregation), ``index``, ``summary``.
        Strict: ``pairs`` (per model, seed, setting and class pair), ``table``
        (:func:`protrep.evaluation.protocols.bootstrap_table`), ``gaps`` (same - diff per model,
        with interval), ``shift`` and ``kl_changed_fraction`` (held-out multi-localized
        proteins), ``index``, ``crops``, ``summary``. ``summary`` has JSON types:
        ``table1[model][setting]`` and the protocol's details.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    if not models and not (handcrafted and protocol == "strict"):
        raise ValueError("nothing to measure: models is empty and there are no handcrafted features (handcrafted="
                         "False, or the published protocol); give at least one trained model, by the name it gets in "
                         "the tables (e.g. {'deeploc': model})")
    if ds.masks is None:
        raise DataError(ds.source or "dataset", "has no centre-cell masks; background settings need them")
    if protocol == "published":
        first = {name: (ms[0] if isinstance(ms, (list, tuple)) else ms) for name, ms in models.items()}
        ex = extractors_for(first, layers=PUBLISHED_LAYERS, masked=masked, device=device)
        index = first_cells(ds, n=max_per_class)
        stats = partial_stats(ds, index, progress=progress)
        result = published_experiment(ds, {k: v[0] for k, v in ex.items()}, n_per_class=max_per_class, stats=stats,
                                      seed=seed, n_jobs=n_jobs, progress=progress)
        t = result["table"]
        summary = {"protocol": protocol, "layers": {m: PUBLISHED_LAYERS.get(m, "default") for m in first},
                   "n_cells": int(len(index)), "n_per_class": max_per_class,
                   "table1": {m: {s: float(t.loc[m, (s, "mean")]) for s in SETTINGS} for m in t.index},
                   "table1_err": {m: {s: float(t.loc[m, (s, "err")]) for s in SETTINGS} for m in t.index}}
        return {**result, "summary": summary}
    ex = extractors_for(models, masked=masked, handcrafted=handcrafted, device=device)
    result = _strict(ds, models, ex, masked, max_per_class=max_per_class, folds=folds,
                     cells_per_protein=cells_per_protein, threshold=threshold, n_boot=n_boot, n_jobs=n_jobs, seed=seed,
                     device=device, progress=progress, seed_settings=seed_settings)
    t, pairs = result["table"], result["pairs"]
    summary = {
        "protocol": protocol,
        "table1": {m: {s: float(t.loc[m, (s, "mean")]) for s in SETTINGS} for m in t.index},
        "table1_interval": {m: {s: [float(t.loc[m, (s, "low")]), float(t.loc[m, (s, "high")])] for s in SETTINGS}
                            for m in t.index},
        "same_minus_diff": result["gaps"],
        "kl_changed_fraction": result["kl_changed_fraction"],
        "kl_threshold_nats": threshold,
        "n_cells": int(len(result["index"])),
        "n_proteins": int(ds.meta["protein"].iloc[result["index"]].nunique()),
        "n_classes": int(pairs[["Location1", "Location2"]].stack().nunique()),
        "seeds": int(pairs["seed"].nunique()),
    }
    return {**result, "summary": summary}


def native_experiment(config, proteins, extractors, classes, *, neighbour_share=0.75, per_class=None, folds=5,
                      n_boot=1000, seed=0, n_jobs=1, workers=None, progress=True):
    """The native test of invariance: held-out proteins in ordinary and mixed wells, every model and seed.

    Every held-out single-localized protein is rendered three times
    (:func:`protrep.evaluation.protocols.native_design`): alone (``base``), mixed with a
    held-out protein of its own class (``same``) and of another class (``diff``), each
    neighbour cell expressing the neighbour with probability ``neighbour_share``
    (:func:`protrep.data.mixed.mixed_wells`). The crops of the protein's own cells are
    scored as in the strict protocol (protein-grouped pairwise SVMs within a condition).

    Parameters
    ----------
    config : SimConfig
        The screen the models were trained on (imaging, crops, segmentation, cells per well).
    proteins : DataFrame
        Its proteome table with ``split``.
    extractors : dict of str -> list of callable
        As :func:`protrep.evaluation.protocols.strict_experiment`.

    Returns
    -------
    dict
        ``design``, ``crops`` (condition -> CellDataset), ``pairs``, ``table``
        (:func:`protrep.evaluation.protocols.bootstrap_table`), ``gaps`` (same - diff per
        model with interval), ``foreign_share`` (mean per condition).
    """
    from ..data.mixed import mixed_wells
    from .protocols import native_design

    design = native_design(proteins, per_class=per_class, seed=seed)
    cells = mixed_wells(config, proteins, design, neighbour_share=neighbour_share, seed=seed, workers=workers,
                        progress=progress)
    cells.meta = cells.meta.reset_index(drop=True)
    crops = {c: cells.subset(np.flatnonzero((cells.meta["condition"] == c).to_numpy() & (cells.meta["label"] >= 0)
                                            .to_numpy())) for c in ("base", "same", "diff")}
    pairs = strict_experiment(crops, extractors, classes, folds=folds, n_jobs=n_jobs, seed=seed, progress=progress)
    return {"design": design, "crops": crops, "pairs": pairs, "table": bootstrap_table(pairs, n_boot=n_boot, seed=seed),
            "gaps": {m: class_bootstrap(gap_values(pairs, m), n_boot=n_boot, seed=seed) for m in extractors},
            "foreign_share": {c: float(v.meta["foreign_share"].mean()) for c, v in crops.items()}}
