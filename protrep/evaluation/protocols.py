"""Background confounding measured two ways: as Gupta et al. did, and strictly.

**Published protocol** (:func:`published_experiment`), as the authors' repository
``microsoft/microscopy-sc-robustness`` runs it (``swap_experiments/run_svm.py`` and
``analyze_swap.ipynb``):

- features: an intermediate convolution layer, spatially max-pooled (:data:`PUBLISHED_LAYERS`:
  PIFiA conv8, PCI conv4 (their ``conv4_1``), DeepLoc conv5; the repository ships the
  features, not their extraction, and we pool as Lu et al. 2019 did for PCI);
- cells: the first ``n`` (1,000) cells of every class in dataset order, every split;
- classifier: ``SVC(kernel="linear", max_iter=100000, random_state=42)`` on unscaled
  features, ``StratifiedKFold(5)`` unshuffled, the two classes concatenated in order;
- settings: ``base`` and ``mask``; ``same``: every cell on a background of its own class
  (donors: the same first cells, another protein where the class has one);
  ``diff`` and ``cellfree``: for a pair ``(L1, L2)`` both classes on the background of a
  third class ``L3``. Their Table 1 keeps, per pair, only the first row whose ``L3`` is
  neither ``L1`` nor ``L2`` (``get_localization_means``), i.e. the first such class in
  class order (actin for 91 of 105 pairs), so only that background is computed here;
- table (:func:`published_table`): ``base``/``mask``: mean per ``Location1``
  (``groupby``, so the last class, vacuole, drops out); ``same``: per class over both
  positions; ``diff``/``cellfree``: per class over the pairs it is in; then mean and 3 SE
  over the classes.

**Strict protocol** (:func:`strict_experiment`), the book's headline: the cells of held-out
(test) proteins only (:func:`heldout_cells`), cross-validation folds grouped by protein
(:func:`protrep.evaluation.confounding.pairwise_svm` with ``groups``), donors drawn from
held-out proteins and matched in background brightness
(:func:`protrep.data.backgrounds.matched_donors`), every model at every training seed,
and intervals from resampling classes and seeds (:func:`class_bootstrap`), not from the
overlapping class pairs.

References
----------
Gupta, Moses & Lu (2025). Representation learning methods for single-cell microscopy are
confounded by background cells. PMLR 311.
"""

import numpy as np
import pandas as pd

from ..data.backgrounds import SETTINGS, background_brightness, background_setting, matched_donors
from ..progress import progress as progress_bar
from .confounding import pairwise_svm_grid

__all__ = [
    "PUBLISHED_LAYERS",
    "first_cells",
    "published_svm",
    "published_experiment",
    "published_table",
    "heldout_cells",
    "strict_crops",
    "strict_experiment",
    "class_bootstrap",
    "bootstrap_table",
    "gap_values",
    "native_design",
]

PUBLISHED_LAYERS = {"deeploc": "conv5", "pci": "conv4", "pifia": "conv8"}
_SEED = 42  # run_svm.py's SEED


# ----------------------------------------------------------------------------- published protocol
def first_cells(ds, *, n=1000):
    """The first ``n`` labelled cells of single-localized proteins of every class, in dataset order (all splits)."""
    labels = ds.meta["label"].to_numpy()
    single = ~ds.meta["localization"].astype(str).str.contains(";").to_numpy()
    keep = [np.flatnonzero((labels == k) & single)[:n] for k in range(len(ds.classes))]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def _svc_accuracy(x1, x2):
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC

    x = np.vstack([x1, x2])
    y = np.array([0] * len(x1) + [1] * len(x2))
    acc = []
    for train, test in StratifiedKFold(n_splits=5).split(x, y):
        model = SVC(kernel="linear", max_iter=100000, random_state=_SEED).fit(x[train], y[train])
        acc.append(float((model.predict(x[test]) == y[test]).mean()))
    return float(np.mean(acc)), float(np.std(acc))


def published_svm(jobs, *, n_jobs=1, progress=False, desc="published SVMs"):
    """``run_svm.py``'s ``get_nn_score_svc`` for many pairs: ``jobs`` is a list of ``(key, x1, x2)``.

    Returns a list of ``(key, accuracy, sd)``; classes with fewer than 5 cells give NaN.
    """
    from joblib import Parallel, delayed

    def one(chunk):
        return [(key, *(_svc_accuracy(a, b) if min(len(a), len(b)) >= 5 else (np.nan, np.nan)))
                for key, a, b in chunk]

    size = max(1, -(-len(jobs) // 16))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    out = []
    bar = progress_bar(total=len(jobs), desc=desc, unit="pair", disable=not progress)
    for r in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(one)(c) for c in chunks):
        out.extend(r)
        bar.update(len(r))
    bar.close()
    return out


def _third_class(a, b, k):
    """The first class index that is neither ``a`` nor ``b``: the only background their table reads."""
    return next(c for c in range(k) if c not in (a, b))


def _published_crops(ds, index, setting, background, stats, seed, pool):
    """Cells ``index`` in ``setting``; for swaps, donors drawn uniformly from the ``pool`` cells of class ``background``."""
    if setting in ("base", "mask", "cellfree"):
        return background_setting(ds, setting, index=index, stats=stats, seed=seed)
    labels = ds.meta["label"].to_numpy()
    proteins = ds.meta["protein"].to_numpy()
    rng = np.random.default_rng([seed, 5, background])
    pool = pool[labels[pool] == background]
    donor = np.empty(len(index), int)
    for i, r in enumerate(index):
        cand = pool[proteins[pool] != proteins[r]]
        cand = cand if len(cand) else pool
        donor[i] = cand[rng.integers(len(cand))]
    return background_setting(ds, setting, index=index, donor_of=donor, stats=stats, seed=seed)


def published_experiment(ds, extractors, *, n_per_class=1000, stats=None, seed=0, n_jobs=1, progress=True):
    """Gupta et al.'s experiment as their code runs it (module docstring), for feature extractors.

    Parameters
    ----------
    ds : CellDataset
    extractors : dict of str -> callable
        ``name -> f(CellDataset) -> (n, d)``: each model at its published layer.
    n_per_class : int
        Their 1,000 first cells per class (fewer where a class has fewer).

    Returns
    -------
    dict
        ``pairs`` (their CSV layout plus ``model, setting``: ``Location1, Location2,
        Background, Accuracy, StdDev``), ``table`` (:func:`published_table`), ``index``.
    """
    labels = ds.meta["label"].to_numpy()
    index = first_cells(ds, n=n_per_class)
    k = len(ds.classes)
    present = [c for c in range(k) if (labels[index] == c).any()]
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
    needed = {("base", c, None) for c in present} | {("mask", c, None) for c in present}
    needed |= {("same", c, c) for c in present}
    for a, b in pairs:
        third = _third_class(a, b, k)
        needed |= {("diff", a, third), ("diff", b, third), ("cellfree", a, None), ("cellfree", b, None)}
    features = {}
    groups = sorted({(s, bg) for s, _, bg in needed}, key=lambda t: (SETTINGS.index(t[0]), -1 if t[1] is None else t[1]))
    bar = progress_bar(total=len(groups), desc="published crops", unit="setting", disable=not progress)
    for setting, bg in groups:
        cls = sorted(c for s, c, b in needed if s == setting and b == bg)
        idx = index[np.isin(labels[index], cls)]
        crops = _published_crops(ds, idx, setting, bg, stats, seed, index)
        for name, extract in extractors.items():
            x = np.asarray(extract(crops), np.float64)
            for c in cls:
                features[name, setting, c, bg] = x[labels[idx] == c]
        bar.update()
    bar.close()
    jobs = []
    for name in extractors:
        for setting in SETTINGS:
            for a, b in pairs:
                bg = {"same": (a, b), "diff": (_third_class(a, b, k),) * 2}.get(setting, (None, None))
                third = _third_class(a, b, k) if setting in ("diff", "cellfree") else None
                jobs.append(((name, setting, a, b, third), features[name, setting, a, bg[0]],
                             features[name, setting, b, bg[1]]))
    rows = [{"model": name, "setting": setting, "Location1": ds.classes[a], "Location2": ds.classes[b],
             "Background": ds.classes[third] if third is not None else np.nan, "Accuracy": acc, "StdDev": sd}
            for (name, setting, a, b, third), acc, sd in published_svm(jobs, n_jobs=n_jobs, progress=progress)]
    table = pd.DataFrame(rows)
    return {"pairs": table, "table": published_table(table, classes=ds.classes), "index": index}


def _per_class(df, setting):
    if setting in ("base", "mask"):
        return df.groupby("Location1")["Accuracy"].mean()
    if setting == "same":
        pair = df.groupby(["Location1", "Location2"])["Accuracy"].mean().reset_index()
        long = pair.melt(id_vars=["Accuracy"], value_vars=["Location1", "Location2"], value_name="loc")
        return long.groupby("loc")["Accuracy"].mean()
    df = df[(df["Background"] != df["Location1"]) & (df["Background"] != df["Location2"])]
    first = df.assign(pair=[tuple(sorted(p)) for p in zip(df["Location1"], df["Location2"])]).drop_duplicates("pair")
    long = first.melt(id_vars=["Accuracy"], value_vars=["Location1", "Location2"], value_name="loc")
    return long.groupby("loc")["Accuracy"].mean()


def published_table(pairs, *, classes=None, k=3.0):
    """Table 1 aggregated as ``analyze_swap.ipynb`` does (module docstring): mean and ``k`` SE over classes.

    Parameters
    ----------
    pairs : DataFrame
        ``model, setting, Location1, Location2, Accuracy`` and, for ``diff`` and
        ``cellfree``, ``Background`` (their CSVs, :func:`protrep.evaluation.confounding.read_published`,
        or :func:`published_experiment`'s).
    classes : sequence of str, optional
        The valid localizations (their ``LOC_KEYS``); all if None.

    Returns
    -------
    DataFrame
        Index ``model``; columns ``(setting, "mean" | "err" | "n_classes")``.
    """
    rows = {}
    for (model, setting), df in pairs.dropna(subset=["Accuracy"]).groupby(["model", "setting"], sort=False):
        per = _per_class(df, setting)
        if classes is not None:
            per = per[per.index.isin(list(classes))]
        rows[model, setting] = {"mean": per.mean(), "err": k * per.std(ddof=1) / np.sqrt(len(per)),
                                "n_classes": len(per)}
    out = pd.DataFrame(rows).T.unstack(1).swaplevel(axis=1)
    settings = [s for s in SETTINGS if s in out.columns.get_level_values(0)]
    order = list(dict.fromkeys(pairs["model"]))
    return out.reindex(columns=pd.MultiIndex.from_product([settings, ["mean", "err", "n_classes"]])).reindex(order)


# ----------------------------------------------------------------------------- strict protocol
def heldout_cells(ds, *, split="test", min_proteins=2):
    """Labelled cells of single-localized ``split`` proteins, in classes with at least ``min_proteins`` of them."""
    meta = ds.meta
    ok = ((meta["split"] == split) & (meta["label"] >= 0) & ~meta["localization"].astype(str).str.contains(";"))
    ok = ok.to_numpy()
    per_class = meta[ok].groupby("label")["protein"].nunique()
    keep = per_class.index[per_class >= min_proteins]
    return np.flatnonzero(ok & meta["label"].isin(keep).to_numpy())


def strict_crops(ds, index, *, stats, pool=None, seed=0, k=5):
    """The held-out cells ``index`` in every setting, donors from ``pool`` (default ``index``) matched in brightness.

    Returns
    -------
    crops : dict of setting -> CellDataset
    donors : dict of setting -> ndarray of int (dataset index of each recipient's donor)
    """
    level, _ = stats
    pool = np.asarray(index if pool is None else pool)
    labels = ds.meta["label"].to_numpy()
    proteins = ds.meta["protein"].to_numpy()
    both = np.union1d(index, pool)
    bright = np.full(len(ds), np.nan, np.float32)
    bright[both] = background_brightness(ds.images[both], ds.masks[both], level[both])
    crops, donors = {}, {}
    for setting in SETTINGS:
        donor = None
        if setting in ("same", "diff"):
            rng = np.random.default_rng([seed, 6, SETTINGS.index(setting)])
            donor = matched_donors(labels, proteins, bright, index, pool, same=setting == "same", k=k, rng=rng)
            donors[setting] = donor
        crops[setting] = background_setting(ds, setting, index=index, donor_of=donor, stats=stats, seed=seed)
    return crops, donors


def strict_experiment(crops, extractors, classes, *, folds=5, n_jobs=1, seed=0, progress=True, seed_settings=None):
    """Pairwise SVMs with protein-grouped folds on the crops of every setting, for every model and seed.

    Features are extracted first (the models use every core), then the grids are fitted
    in parallel, one grid per job (:func:`protrep.evaluation.confounding.pairwise_svm_grid`).

    Parameters
    ----------
    crops : dict of str -> CellDataset
        Setting (or condition) -> crops of held-out cells (:func:`strict_crops`, or the
        native mixed-well crops), each with ``label`` and ``protein``.
    extractors : dict of str -> list of callable
        Model name -> one feature extractor per training seed.
    seed_settings : collection of str, optional
        The settings measured at every seed; the others at the first seed only (None: all).

    Returns
    -------
    DataFrame
        ``model, seed, setting`` + :func:`protrep.evaluation.confounding.pairwise_svm` columns.
    """
    from joblib import Parallel, delayed

    from ..inference.embed import stretched

    every = set(crops) if seed_settings is None else set(seed_settings)
    steps = [(name, s, setting) for name, fs in extractors.items() for s in range(len(fs)) for setting in crops
             if s == 0 or setting in every]
    views = {setting: stretched(c) for setting, c in crops.items()}  # stretched once for every model
    features = {}
    bar = progress_bar(total=len(steps), desc="features", unit="set", disable=not progress)
    for name, s, setting in steps:
        bar.set_postfix_str(f"{name} seed {s} / {setting}", refresh=False)
        f = extractors[name][s]
        features[name, s, setting] = np.asarray(f(crops[setting] if getattr(f, "raw", False) else views[setting]),
                                                np.float32)
        bar.update()
    bar.close()
    jobs = (delayed(pairwise_svm_grid)(features[step], crops[step[2]].meta["label"].to_numpy(), classes,
                                       groups=crops[step[2]].meta["protein"].to_numpy(), folds=folds, seed=seed)
            for step in steps)
    frames = []
    bar = progress_bar(total=len(steps), desc="SVM grids", unit="grid", disable=not progress)
    for (name, s, setting), pairs in zip(steps, Parallel(n_jobs=n_jobs, return_as="generator")(jobs)):
        frames.append(pairs.assign(model=name, seed=s, setting=setting))
        bar.update()
    bar.close()
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "seed", "setting"] + [c for c in out.columns if c not in ("model", "seed", "setting")]]


# ----------------------------------------------------------------------------- uncertainty
def class_bootstrap(values, *, n_boot=1000, level=0.95, seed=0):
    """Mean over seeds and class pairs, with an interval from resampling classes and seeds.

    Class pairs share classes, so they are not independent: a replicate draws the classes
    with replacement (a pair counts as often as the product of its classes' draws) and
    the seeds with replacement, and averages.

    Parameters
    ----------
    values : DataFrame
        ``seed, Location1, Location2, value``: one value per seed and class pair.

    Returns
    -------
    dict
        ``mean`` (over seeds of the mean over pairs), ``low``, ``high`` (percentile
        interval), ``n_classes``, ``n_seeds``.
    """
    classes = sorted(set(values["Location1"]) | set(values["Location2"]))
    seeds = sorted(values["seed"].unique())
    pos = {c: i for i, c in enumerate(classes)}
    v = np.full((len(seeds), len(classes), len(classes)), np.nan)
    s_of = {s: i for i, s in enumerate(seeds)}
    for s, a, b, x in values[["seed", "Location1", "Location2", "value"]].itertuples(index=False):
        v[s_of[s], pos[a], pos[b]] = v[s_of[s], pos[b], pos[a]] = x
    have = ~np.isnan(v)
    v0 = np.nan_to_num(v)
    iu = np.triu(np.ones((len(classes),) * 2, bool), 1)

    def stat(w_cls, w_seed):
        w = np.outer(w_cls, w_cls) * iu
        per_seed = (v0 * w).sum((1, 2)) / np.maximum((have * w).sum((1, 2)), 1e-12)
        return float((per_seed * w_seed).sum() / w_seed.sum())

    mean = stat(np.ones(len(classes)), np.ones(len(seeds)))
    rng = np.random.default_rng([seed, 13])
    boot = [stat(np.bincount(rng.integers(len(classes), size=len(classes)), minlength=len(classes)),
                 np.bincount(rng.integers(len(seeds), size=len(seeds)), minlength=len(seeds))) for _ in range(n_boot)]
    a = (1 - level) / 2
    low, high = np.quantile(boot, [a, 1 - a])
    return {"mean": mean, "low": float(low), "high": float(high), "n_classes": len(classes), "n_seeds": len(seeds)}


def bootstrap_table(pairs, *, n_boot=1000, seed=0):
    """:func:`class_bootstrap` of the accuracy per model and setting: Table 1 with honest intervals.

    Returns
    -------
    DataFrame
        Index ``model``; columns ``(setting, "mean" | "low" | "high")``.
    """
    rows = {}
    for (model, setting), df in pairs.groupby(["model", "setting"], sort=False):
        b = class_bootstrap(df.rename(columns={"Accuracy": "value"}), n_boot=n_boot, seed=seed)
        rows[model, setting] = {k: b[k] for k in ("mean", "low", "high")}
    out = pd.DataFrame(rows).T.unstack(1).swaplevel(axis=1)
    settings = list(dict.fromkeys(pairs["setting"]))
    order = list(dict.fromkeys(pairs["model"]))
    return out.reindex(columns=pd.MultiIndex.from_product([settings, ["mean", "low", "high"]])).reindex(order)


def gap_values(pairs, model, *, reference=None, high="same", low="diff"):
    """Per seed and class pair: ``model``'s ``high - low`` accuracy, minus ``reference``'s when given.

    The input of :func:`class_bootstrap` for the same-minus-different gap of a model, or
    for the paired change of that gap between a model and its reference (same seed, same
    pair: the invariant model of seed s is fine-tuned from the base model of seed s).
    """
    acc = pairs.set_index(["model", "setting", "seed", "Location1", "Location2"])["Accuracy"]

    def gap(m):
        return acc.xs((m, high), level=("model", "setting")) - acc.xs((m, low), level=("model", "setting"))

    d = gap(model) if reference is None else gap(model) - gap(reference)
    return d.dropna().rename("value").reset_index()


# ----------------------------------------------------------------------------- native mixed wells
def native_design(proteins, *, split="test", min_proteins=2, per_class=None, k=3, seed=0):
    """Which wells to render for the native test of invariance: every held-out protein three times.

    ``base``: the protein alone (an ordinary well); ``same``: mixed with another held-out
    protein of its class; ``diff``: mixed with a held-out protein of another class (every
    protein of the other classes a candidate, so classes enter in proportion to their
    proteins). The neighbour is drawn from the ``k`` candidates nearest in log abundance,
    so that the foreign cells are about as bright as the protein's own.

    Parameters
    ----------
    proteins : DataFrame
        The proteome table of a simulated screen (``protein, localization, primary,
        abundance, split``).
    min_proteins : int
        Classes with fewer held-out single-localized proteins are left out (as
        :func:`heldout_cells`).
    per_class : int, optional
        At most this many proteins per class (drawn at random); all if None.

    Returns
    -------
    DataFrame
        ``protein, neighbour, condition`` (three rows per protein).
    """
    t = proteins[(proteins["split"] == split) & ~proteins["localization"].astype(str).str.contains(";")]
    counts = t.groupby("primary")["protein"].nunique()
    kept = t[t["primary"].isin(counts.index[counts >= min_proteins])]
    rng = np.random.default_rng([seed, 17])
    if per_class is not None:
        pick = [np.sort(rng.choice(idx, min(len(idx), per_class), replace=False))
                for idx in kept.groupby("primary", sort=True).indices.values()]
        kept = kept.iloc[np.sort(np.concatenate(pick))]
    if kept.empty:
        raise ValueError(f"no class has {min_proteins} single-localized {split!r} proteins for the native test")
    loga = np.log(t.set_index("protein")["abundance"].astype(float).clip(lower=1.0))
    rows = []
    for p, cls in zip(kept["protein"], kept["primary"]):
        rows.append((p, p, "base"))
        for cond, cand in (("same", t.loc[(t["primary"] == cls) & (t["protein"] != p), "protein"]),
                           ("diff", t.loc[t["primary"] != cls, "protein"])):
            near = cand.to_numpy()[np.argsort(np.abs(loga[cand].to_numpy() - loga[p]), kind="stable")[:k]]
            rows.append((p, near[rng.integers(len(near))], cond))
    return pd.DataFrame(rows, columns=["protein", "neighbour", "condition"])
