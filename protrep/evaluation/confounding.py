"""Background confounding measured: Gupta et al.'s pairwise linear SVMs and localization shifts.

Features of crop-based models change with the cells around the centre cell (Gupta, Moses
& Lu 2025). Given the five background settings of :mod:`protrep.data.backgrounds`, this
module measures, for every pair of classes, a linear SVM on standardised features,
balanced classes, stratified k-fold accuracy (:func:`pairwise_svm`); the mean over pairs
per model and setting is their Table 1 (:func:`table1`). For proteins with several
localizations (or heterogeneous ones), a classifier's mean predicted distribution with and
without background is compared by KL divergence (:func:`distribution_shift`).
:func:`run_background` runs the whole experiment on trained models (``protrep
background``); it imports the inference layer only when called, so this module imports
without torch.

References
----------
Gupta, Moses & Lu (2025). Representation learning methods for single-cell microscopy are
confounded by background cells. PMLR 311.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.backgrounds import SETTINGS, background_setting, partial_stats
from ..errors import DataError
from ..progress import progress as progress_bar

__all__ = [
    "format_table1",
    "pairwise_svm",
    "select_cells",
    "table1",
    "class_sensitivity",
    "gap_change",
    "kl_divergence",
    "distribution_shift",
    "read_published",
    "published_table1",
    "setting_features",
    "background_experiment",
    "linear_predictor",
    "localization_shift",
    "cells_for",
    "run_background",
    "confounded",
    "invariance_verdict",
    "finetune_verdict",
]

log = logging.getLogger(__name__)

_PUBLISHED_FILES = {"base": "base", "mask": "mask", "same": "same", "diff": "diff", "cellfree": "batch"}


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
    """Mean and SD over folds of a standardised linear SVM's accuracy.

    The same numbers as scikit-learn's ``cross_val_score`` of ``StandardScaler`` +
    ``LinearSVC`` over ``StratifiedKFold(folds, shuffle=True)`` (tested), without its
    per-call overhead (measured 37 ms against 10-20 ms of fitting for a pair of 12 cells).
    """
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        mean, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0  # as StandardScaler: constant features are centred, not scaled
        svm = LinearSVC(C=C, max_iter=5000, random_state=seed).fit((x[train] - mean) / sd, y[train])
        scores.append(float((svm.predict((x[test] - mean) / sd) == y[test]).mean()))
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


def _pair_chunk(pairs, folds, C, seed):
    return [_pair_accuracy(x, y, folds, C, seed) for x, y in pairs]


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
    from joblib import Parallel, delayed, effective_n_jobs

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n, d) with one label per row; got {features.shape} and {labels.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf; drop or impute those cells first")
    tasks = list(_pair_tasks(features, labels, classes, folds, seed))
    # a few chunks of pairs per worker: one pair is milliseconds, a joblib round trip more (measured 5x faster)
    size = max(1, -(-len(tasks) // (4 * effective_n_jobs(n_jobs))))
    chunks = [[(x, y) for _, x, y in tasks[i:i + size]] for i in range(0, len(tasks), size)]
    jobs = (delayed(_pair_chunk)(chunk, folds, C, seed) for chunk in chunks)
    bar = progress_bar(total=len(tasks), desc=desc, unit="pair", disable=not progress)
    results = []
    for r in Parallel(n_jobs=n_jobs, return_as="generator")(jobs):
        results.extend(r)
        bar.update(len(r))
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
        :func:`protrep.inference.embed.embed_cells` or :func:`protrep.evaluation.handcrafted.handcrafted_features`.
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
        Add the CellProfiler-like features of :mod:`protrep.evaluation.handcrafted` as ``handcrafted``.
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
    from ..inference.embed import embed_cells, predict_cells
    from .handcrafted import handcrafted_features

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
        if getattr(model, "is_classifier", False):
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


# ----------------------------------------------------------------------------- verdicts
def confounded(table, models, *, min_gap=0.01):
    """Gupta et al.'s finding per model: does the ``same`` setting beat ``diff`` by more than ``min_gap``?

    Parameters
    ----------
    table : DataFrame
        :func:`table1` (index models; columns ``(setting, "mean"|"err")``).
    models : sequence of str
    min_gap : float
        Mean pairwise accuracy by which ``same`` must exceed ``diff``.

    Returns
    -------
    dict
        ``gap`` ({model: same - diff}), ``confounded`` (the models above ``min_gap``),
        ``min_gap``.
    """
    gap = {m: float(table.loc[m, ("same", "mean")] - table.loc[m, ("diff", "mean")]) for m in models}
    return {"gap": gap, "confounded": [m for m in models if gap[m] > min_gap], "min_gap": min_gap}


def invariance_verdict(pairs, table, model, reference, *, k=3.0, tolerance=0.01):
    """Does ``model`` (background-invariant) depend less on the background than ``reference``, at no cost?

    Returns
    -------
    dict
        ``gap_change`` and ``err`` (:func:`gap_change`: paired over class pairs, ``k`` SE),
        ``shrinks`` (one of ``"beyond 3 SE"``, ``"within 3 SE"``, ``"no"``), ``base`` (the
        two models' ``base`` accuracies) and ``base_holds`` (``model``'s within
        ``tolerance`` of the reference's or above).
    """
    change, err = gap_change(pairs, model, reference, k=k)
    shrinks = "beyond 3 SE" if change + err < 0 else "within 3 SE" if change < 0 else "no"
    base = {m: float(table.loc[m, ("base", "mean")]) for m in (reference, model)}
    return {"model": model, "reference": reference, "gap_change": change, "err": err, "shrinks": shrinks,
            "base": base, "base_holds": bool(base[model] >= base[reference] - tolerance)}


def finetune_verdict(rows):
    """Fine-tuned against from-scratch invariant models (``benchmarks/finetune_vs_scratch.py``'s rows).

    Returns
    -------
    dict
        Per model: the paired gap difference and its error, ``same`` (within the error),
        and both models' held-out AP (compartments, processes) and training seconds.
    """
    table = pd.DataFrame(rows).set_index(["model", "start"])
    out = {}
    for name in table.index.get_level_values("model").unique():
        ft, sc = table.loc[(name, "fine-tune")], table.loc[(name, "scratch")]
        out[name] = {"gap_minus_scratch": float(ft["gap_minus_scratch"]), "err": float(ft["gap_minus_scratch_err"]),
                     "same": bool(abs(ft["gap_minus_scratch"]) <= ft["gap_minus_scratch_err"]),
                     **{f"{c}_{which}": float(row[c]) for which, row in (("finetune", ft), ("scratch", sc))
                        for c in ("ap_compartments", "ap_processes", "train_seconds")}}
    return out
