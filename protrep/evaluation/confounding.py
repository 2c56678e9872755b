"""Background confounding measured: Gupta et al.'s pairwise linear SVMs and localization shifts.

Features of crop-based models change with the cells around the centre cell (Gupta, Moses
& Lu 2025). Given the five background settings of :mod:`protrep.data.backgrounds`, this
module measures, for every pair of classes, a linear SVM on standardised features,
balanced classes, stratified k-fold accuracy (:func:`pairwise_svm`); the mean over pairs
per model and setting is their Table 1 (:func:`table1`). For proteins with several
localizations (or heterogeneous ones), a classifier's mean predicted distribution with and
without background is compared by KL divergence (:func:`distribution_shift`).
The two protocols (Gupta et al.'s and the strict one) are in
:mod:`protrep.evaluation.protocols`; :func:`protrep.evaluation.background.run_background`
runs either on trained models (``protrep background``).

References
----------
Gupta, Moses & Lu (2025). Representation learning methods for single-cell microscopy are
confounded by background cells. PMLR 311.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.backgrounds import SETTINGS, background_setting
from ..errors import DataError
from ..progress import progress as progress_bar

__all__ = [
    "format_table1",
    "format_interval",
    "table_dict",
    "pairwise_svm",
    "pairwise_svm_grid",
    "select_cells",
    "table1",
    "class_sensitivity",
    "gap_change",
    "kl_divergence",
    "distribution_shift",
    "read_published",
    "setting_features",
    "background_experiment",
    "linear_predictor",
    "localization_shift",
    "cells_for",
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


def fold_ranks(labels, groups=None, *, seed=0):
    """Each cell's rank within its class, the unit of the cross-validation folds of :func:`pairwise_svm`.

    Without ``groups`` the cells of every class are shuffled and ranked; with ``groups``
    (e.g. the protein of every cell) the groups of every class are shuffled and ranked and
    every cell takes its group's rank, so a protein's cells never straddle a fold. A pair
    of classes cut into ``k`` folds puts a cell in fold ``rank % k``: stratified (every
    fold holds both classes) and, with groups, grouped.

    Returns
    -------
    ranks : ndarray of int (n,)
        -1 for cells without a class.
    units : dict of int -> int
        Cells (or groups) per class.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 11])
    ranks = np.full(len(labels), -1)
    units = {}
    for k in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == k)
        if groups is None:
            ranks[idx] = rng.permutation(len(idx))
            units[int(k)] = len(idx)
        else:
            uniq, inverse = np.unique(np.asarray(groups)[idx], return_inverse=True)
            ranks[idx] = rng.permutation(len(uniq))[inverse]
            units[int(k)] = len(uniq)
    return ranks, units


def _pair_problems(x, labels, ranks, units, pairs, folds, seed, standardize):
    """Train and test sets of every (pair, fold): lists of arrays, standardised on the training rows."""
    problems = []
    for a, b in pairs:
        ia, ib = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
        n = min(len(ia), len(ib))
        rng = np.random.default_rng([seed, a, b])  # balanced classes: chance is 0.5
        ia = np.sort(rng.choice(ia, n, replace=False)) if len(ia) > n else ia
        ib = np.sort(rng.choice(ib, n, replace=False)) if len(ib) > n else ib
        idx = np.concatenate([ia, ib])
        y = (labels[idx] == b).astype(int)
        k = min(folds, units[a], units[b])
        fold = ranks[idx] % k
        for f in range(k):
            train, test = fold != f, fold == f
            if not test.any() or len(np.unique(y[train])) < 2:
                continue
            xtr, xte = x[idx[train]], x[idx[test]]
            if standardize:  # as StandardScaler: constant features are centred, not scaled
                mean, sd = xtr.mean(0), xtr.std(0)
                sd[sd == 0] = 1.0
                xtr, xte = (xtr - mean) / sd, (xte - mean) / sd
            problems.append(((a, b), n, k, xtr, y[train], xte, y[test]))
    return problems


def _solve_problems(problems, C):
    """Accuracy of every problem's linear SVM, fitted as one padded batch."""
    from .linear_svm import decision_function, fit_linear_svms

    m, t, d = max(len(p[3]) for p in problems), max(len(p[5]) for p in problems), problems[0][3].shape[1]
    xtr, ytr, valid = np.zeros((len(problems), m, d)), np.zeros((len(problems), m)), np.zeros((len(problems), m), bool)
    xte = np.zeros((len(problems), t, d))
    for i, p in enumerate(problems):
        xtr[i, :len(p[3])], ytr[i, :len(p[3])], valid[i, :len(p[3])] = p[3], p[4], True
        xte[i, :len(p[5])] = p[5]
    scores = decision_function(fit_linear_svms(xtr, ytr, valid, C=C), xte)
    return [float(((scores[i, :len(p[6])] > 0) == (p[6] == 1)).mean()) for i, p in enumerate(problems)]


def pairwise_svm(features, labels, classes, *, groups=None, folds=5, C=1.0, seed=0, n_jobs=1, progress=False,
                 desc="SVM pairs", chunk=256):
    """Linear-SVM accuracy for every pair of classes (Gupta et al. 2025, Table 1).

    For each pair, the larger class is subsampled to the size of the smaller (chance is
    0.5), features are standardised on the training folds, and a linear SVM
    (``LinearSVC``'s objective: squared hinge, ``C``, regularised intercept; solved in
    batches by :mod:`protrep.evaluation.linear_svm`, the same optimum) is scored by
    stratified ``k``-fold cross-validation (:func:`fold_ranks`), ``k = folds`` or fewer
    where a class has fewer units. Without ``groups`` the folds split cells, and classes
    with fewer than ``folds`` cells are left out; with ``groups`` (the protein of every
    cell) they split proteins, so no protein is both trained and tested on, and classes
    with fewer than two proteins are left out.

    Parameters
    ----------
    features : ndarray (n, d)
    labels : array of int (n,)
        Class index per cell; -1 cells are ignored.
    classes : sequence of str
        Names of the class indices.
    groups : array (n,), optional
        Group (protein) of every cell, for grouped folds.
    n_jobs : int
        Parallel processes (joblib) over chunks of problems; -1 for all cores.

    Returns
    -------
    DataFrame
        ``Location1, Location2, n_per_class, folds, Accuracy, StdDev`` (the layout of the
        published CSVs, plus cells per class and folds); accuracy is higher-is-better,
        StdDev over folds.
    """
    from joblib import Parallel, delayed, effective_n_jobs

    problems = _grid_problems(features, labels, classes, groups, folds, seed)
    if not problems:
        return _pairs_frame([], [], classes)
    chunks = [problems[i:i + chunk] for i in range(0, len(problems), chunk)]
    bar = progress_bar(total=len(problems), desc=desc, unit="fit", disable=not progress)
    acc = []
    jobs = min(effective_n_jobs(n_jobs), len(chunks))
    for r in Parallel(n_jobs=jobs, return_as="generator")(delayed(_solve_problems)(c, C) for c in chunks):
        acc.extend(r)
        bar.update(len(r))
    bar.close()
    return _pairs_frame(problems, acc, classes)


def pairwise_svm_grid(features, labels, classes, *, groups=None, folds=5, C=1.0, seed=0):
    """:func:`pairwise_svm` in this process, all problems in one batch: one job of a parallel map over grids."""
    problems = _grid_problems(features, labels, classes, groups, folds, seed)
    return _pairs_frame(problems, _solve_problems(problems, C) if problems else [], classes)


def _grid_problems(features, labels, classes, groups, folds, seed):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n, d) with one label per row; got {features.shape} and {labels.shape}")
    if groups is not None and len(groups) != len(labels):
        raise ValueError(f"groups must give one group per cell; got {len(groups)} for {len(labels)} cells")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf; drop or impute those cells first")
    ranks, units = fold_ranks(labels, groups, seed=seed)
    least = 2 if groups is not None else folds
    present = [k for k in range(len(classes)) if units.get(k, 0) >= least]
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
    return _pair_problems(features, labels, ranks, units, pairs, folds, seed, True)


def _pairs_frame(problems, acc, classes):
    """Per pair: the mean and SD over folds of the problems' accuracies, in the published CSVs' layout."""
    columns = ["Location1", "Location2", "n_per_class", "folds", "Accuracy", "StdDev"]
    if not problems:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame({"pair": [p[0] for p in problems], "n": [p[1] for p in problems],
                          "folds": [p[2] for p in problems], "acc": acc})
    rows = [{"Location1": classes[a], "Location2": classes[b], "n_per_class": int(r["n"].iloc[0]),
             "folds": int(r["folds"].iloc[0]), "Accuracy": float(r["acc"].mean()), "StdDev": float(r["acc"].std(ddof=0))}
            for (a, b), r in table.groupby("pair", sort=False)]
    return pd.DataFrame(rows, columns=columns)


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


def format_interval(v, *, sign=True):
    """``{"mean", "low", "high"}`` as ``"+0.012 [-0.003, +0.030]"`` (``sign=False``: no plus signs)."""
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"{f.format(v['mean'])} [{f.format(v['low'])}, {f.format(v['high'])}]"


def format_table1(table, *, gaps=None, suffix=""):
    """A Table 1 as text for display, one column per setting and the same-minus-different gap.

    ``table`` has ``(setting, "mean")`` and either ``(setting, "err")`` (shown ``mean ± err``,
    :func:`table1`, :func:`protrep.evaluation.protocols.published_table`) or ``(setting,
    "low")`` and ``(setting, "high")`` (shown ``mean [low, high]``,
    :func:`protrep.evaluation.protocols.bootstrap_table`). ``gaps`` (model -> ``{"mean",
    "low", "high"}``) gives the gap its interval; otherwise it is ``same - diff`` of the
    means. ``suffix`` is appended to every row name.
    """
    settings = [s for s in dict.fromkeys(table.columns.get_level_values(0)) if (s, "mean") in table.columns]
    if (settings[0], "err") in table.columns:
        cells = {s: [f"{table.loc[m, (s, 'mean')]:.3f} ± {table.loc[m, (s, 'err')]:.3f}" for m in table.index]
                 for s in settings}
    else:
        cells = {s: [format_interval({k: table.loc[m, (s, k)] for k in ("mean", "low", "high")}, sign=False)
                     for m in table.index] for s in settings}
    shown = pd.DataFrame(cells, index=[f"{m}{suffix}" for m in table.index])
    if gaps is not None:
        shown["same - diff"] = [format_interval(gaps[m]) for m in table.index]
    elif {"same", "diff"} <= set(settings):
        shown["same - diff"] = [f"{v:+.3f}" for v in table[("same", "mean")] - table[("diff", "mean")]]
    return shown


def table_dict(table, *, stat="mean"):
    """``{model: {setting: value}}`` of a Table 1 (JSON types), the ``stat`` column of every setting."""
    settings = [s for s in dict.fromkeys(table.columns.get_level_values(0)) if (s, stat) in table.columns]
    return {m: {s: float(table.loc[m, (s, stat)]) for s in settings} for m in table.index}


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
    """The book's earlier protocol: features under every setting, then the pairwise-SVM grid.

    Cells: every labelled cell of a single-localized protein (all splits), up to
    ``max_per_class`` per class (:func:`select_cells`); the same cells donate the swapped-in
    backgrounds, drawn at random; folds split cells. Kept for
    ``benchmarks/finetune_vs_scratch.py``, which measured with it; chapter 5 uses the two
    protocols of :mod:`protrep.evaluation.protocols`.

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


# ----------------------------------------------------------------------------- verdicts
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
