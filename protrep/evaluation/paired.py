"""Functional AP over training seeds, and paired intervals of the difference between two methods.

A learned embedding is one draw from its training: another seed gives another network
and another AP. Comparing two methods by their single-seed APs, or by whether two marginal
bootstrap intervals overlap, ignores both that variance and the pairing of the
resamples (both methods are scored on the same proteins). :func:`compare_seeds` does the
comparison a reviewer asks for:

* every method is a list of embeddings, one per training seed (one for a deterministic
  method such as CellProfiler features or a reference);
* each bootstrap replicate resamples the **proteins** (pairs weighted by how often both
  of their proteins were drawn, as :func:`protrep.evaluation.retrieval.bootstrap_ap`
  does) and, independently for each method, its **seeds** with replacement; the
  statistic of a method is its AP averaged over the drawn seeds;
* a comparison ``a-b`` is the difference of the two statistics within each replicate
  (the same proteins for both: a paired bootstrap), and its 95% interval is the 2.5 and
  97.5 percentiles over replicates. The verdict is ``ahead`` only when the whole interval
  lies above 0, ``behind`` when it lies below, ``not separable`` otherwise.

With three seeds the seed resampling is coarse; it widens the interval by the seed
variance rather than pretending there is none.
"""

import logging

import numpy as np
import pandas as pd

from ..progress import progress as progress_bar
from .retrieval import (_as_embedding, _check_n_boot, _check_standards, _filter_options, _point, _rank_pairs,
                        _replicate_ap)

__all__ = ["compare_seeds", "paired_results_dict", "ahead_everywhere", "order_agreement", "RAZDAIBIEDINA_AP",
           "VERDICTS"]

logger = logging.getLogger(__name__)

#: The verdicts of a paired comparison.
VERDICTS = ("ahead", "behind", "not separable")

SEED_COLUMNS = ["method", "standard", "ap", "ap_low", "ap_high", "ap_seed_sd", "n_seeds", "max_f1", "n_proteins",
                "n_pairs", "n_positive", "prevalence"]
PAIRED_COLUMNS = ["comparison", "standard", "diff", "low", "high", "verdict"]


def _verdict(low, high):
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not separable"
    return "ahead" if low > 0 else "behind" if high < 0 else "not separable"


def _common(groups, proteins):
    """Every method's embeddings restricted to the proteins all of them have, in one sorted order."""
    tables = {m: [_as_embedding(e) for e in embs] for m, embs in groups.items()}
    common = None
    for embs in tables.values():
        for ids, _ in embs:
            common = set(ids) if common is None else common & set(ids)
    if proteins is not None:
        common &= set(np.asarray(proteins).astype(str))
    if not common:
        raise ValueError("the methods (and `proteins`) share no protein: nothing to compare")
    order = np.array(sorted(common))
    for m, embs in tables.items():
        dropped = max(len(ids) for ids, _ in embs) - len(order)
        if dropped > 0 and proteins is None:
            logger.warning("%s: %d proteins that another method lacks are left out of the comparison", m, dropped)
    out = {}
    for m, embs in tables.items():
        out[m] = []
        for ids, X in embs:
            pos = pd.Index(ids).get_indexer(order)
            out[m].append((order, X[pos]))
    return out


def _check_groups(groups, comparisons):
    if not groups:
        raise ValueError("compare_seeds needs at least one method")
    for m, embs in groups.items():
        if not isinstance(embs, (list, tuple)) or not embs:
            raise ValueError(f"method {m!r}: give a non-empty list of embeddings, one per training seed")
    pairs = []
    for c in comparisons:
        parts = tuple(c) if isinstance(c, (tuple, list)) else tuple(str(c).split("-", 1))
        a, b = (parts + (None, None))[:2]
        if len(parts) != 2 or a not in groups or b not in groups:
            raise ValueError(f"comparison {c!r}: both methods must be among {sorted(groups)}")
        pairs.append((a, b))
    return pairs


def _one_standard(ranked, pairs, n_boot, rng, progress, name):
    """Point values and bootstrap replicates for every method and comparison on one standard."""
    methods = list(ranked)
    points = {m: [_point(r) for r in ranked[m]] for m in methods}
    stats = {m: np.full(n_boot, np.nan) for m in methods}
    m_proteins = len(ranked[methods[0]][0].proteins)
    usable = all(r.n_positive > 0 for rs in ranked.values() for r in rs)
    for b in progress_bar(range(n_boot if usable else 0), desc=f"paired bootstrap: {name}", unit="replicate",
                          disable=not progress, leave=False):
        counts = np.bincount(rng.integers(0, m_proteins, m_proteins), minlength=m_proteins).astype(np.int32)
        for m in methods:
            aps = np.array([_replicate_ap(r, counts) for r in ranked[m]])
            stats[m][b] = aps[rng.integers(0, len(aps), len(aps))].mean()
    rows, paired = [], []
    for m in methods:
        ap = np.array([p["ap"] for p in points[m]])
        low, high = (np.nanpercentile(stats[m], [2.5, 97.5]) if np.isfinite(stats[m]).any() else (np.nan, np.nan))
        first = points[m][0]
        rows.append({"method": m, "standard": name, "ap": float(ap.mean()), "ap_low": float(low),
                     "ap_high": float(high), "ap_seed_sd": float(ap.std(ddof=1)) if len(ap) > 1 else 0.0,
                     "n_seeds": len(ap), "max_f1": float(np.mean([p["max_f1"] for p in points[m]])),
                     **{k: first[k] for k in ("n_proteins", "n_pairs", "n_positive", "prevalence")}})
    for a, b in pairs:
        diff = np.mean([p["ap"] for p in points[a]]) - np.mean([p["ap"] for p in points[b]])
        d = stats[a] - stats[b]
        low, high = np.nanpercentile(d, [2.5, 97.5]) if np.isfinite(d).any() else (np.nan, np.nan)
        paired.append({"comparison": f"{a}-{b}", "standard": name, "diff": float(diff), "low": float(low),
                       "high": float(high), "verdict": _verdict(low, high)})
    return rows, paired


def compare_seeds(groups, standards, *, comparisons=(), proteins=None, n_boot=200, seed=0, standardize=False,
                  progress=True, **filter_options):
    """Functional AP of methods trained with several seeds, and paired intervals of their differences.

    Parameters
    ----------
    groups : dict of str to list
        Method name to its embeddings, one per training seed (tables with a ``protein``
        column, or ``(ids, X)``); a deterministic method is a list of one.
    standards : dict of str to DataFrame
        Standard name to long-format standard (``term``, ``protein``).
    comparisons : sequence of str or (str, str)
        ``"a-b"`` or ``(a, b)``: the AP of ``a`` minus that of ``b``.
    proteins : sequence of str, optional
        Score only these proteins (e.g. the held-out test proteins). Otherwise every
        protein that all methods embed.
    n_boot : int, default 200
        Bootstrap replicates (proteins and seeds resampled together, see the module).
    seed : int, default 0
        Seed of the resampling; every method sees the same protein resamples.
    standardize : bool, default False
        z-score features across proteins first.
    progress : bool, default True
    **filter_options
        ``min_size``, ``max_size``, ``max_fraction`` of
        :func:`protrep.data.standards.filter_terms`, as for
        :func:`protrep.evaluation.retrieval.evaluate`.

    Returns
    -------
    table : DataFrame
        One row per (method, standard): ``ap`` (mean over seeds), ``ap_low``/``ap_high``
        (95% interval over proteins and seeds), ``ap_seed_sd`` (standard deviation over
        seeds), ``n_seeds``, ``max_f1`` (mean over seeds), ``n_proteins``, ``n_pairs``,
        ``n_positive``, ``prevalence``.
    paired : DataFrame
        One row per (comparison, standard): ``diff`` (difference of the seed means),
        ``low``/``high`` (its paired 95% interval) and ``verdict`` (:data:`VERDICTS`).

    References
    ----------
    .. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
       representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
    """
    filter_options = _filter_options("compare_seeds", filter_options)
    n_boot = _check_n_boot(n_boot)
    pairs = _check_groups(groups, comparisons)
    _check_standards(standards)
    common = _common(groups, proteins)
    rows, paired = [], []
    for k, (name, standard) in enumerate(standards.items()):
        ranked = {m: [_rank_pairs(e, standard, standardize=standardize, pairs=n_boot > 0, **filter_options)
                      for e in embs] for m, embs in common.items()}
        r, p = _one_standard(ranked, pairs, n_boot, np.random.default_rng([seed, k]), progress, name)
        rows += r
        paired += p
    return pd.DataFrame(rows, columns=SEED_COLUMNS), pd.DataFrame(paired, columns=PAIRED_COLUMNS)


def paired_results_dict(table, paired):
    """:func:`compare_seeds`'s tables as a chapter's JSON.

    Returns
    -------
    dict
        ``ap``, ``ap_ci``, ``ap_seed_sd`` (``{method: {standard: value}}``) and ``paired``
        (``{comparison: {standard: {"diff", "low", "high", "verdict"}}}``).
    """
    def nested(col):
        return {m: {r["standard"]: (r[col] if isinstance(r[col], str) else float(r[col])) for _, r in g.iterrows()}
                for m, g in table.groupby("method", sort=False)}
    ci = {m: {r["standard"]: [float(r["ap_low"]), float(r["ap_high"])] for _, r in g.iterrows()}
          for m, g in table.groupby("method", sort=False)}
    pd_ = {c: {r["standard"]: {"diff": float(r["diff"]), "low": float(r["low"]), "high": float(r["high"]),
                               "verdict": r["verdict"]} for _, r in g.iterrows()}
           for c, g in paired.groupby("comparison", sort=False)}
    return {"ap": nested("ap"), "ap_ci": ci, "ap_seed_sd": nested("ap_seed_sd"), "paired": pd_}


#: Razdaibiedina & Brechalov 2022, AP of protein-pair retrieval read off their figure (real
#: yeast screen, real standards: GO CC, GO BP slim, KEGG pathways, complexes), as listed in
#: the reference data's README; ``cellprofiler_pca`` is their "CellProfiler + PCA".
RAZDAIBIEDINA_AP = {
    "deeploc": {"compartments": 0.118, "processes": 0.137, "pathways": 0.129, "complexes": 0.080},
    "pci": {"compartments": 0.124, "processes": 0.083, "pathways": 0.049, "complexes": 0.011},
    "cellprofiler": {"compartments": 0.083, "processes": 0.075, "pathways": 0.047, "complexes": 0.008},
    "cellprofiler_pca": {"compartments": 0.089, "processes": 0.081, "pathways": 0.065, "complexes": 0.011},
}


def order_agreement(ours, *, paper=None, methods=("deeploc", "pci", "cellprofiler")):
    """Per standard, the order of ``methods`` by AP in the paper and here, and whether they agree.

    Absolute APs of a simulated screen are not comparable with the paper's (they depend on
    the standards' sizes and prevalence); the order of the methods is what can carry over.

    Parameters
    ----------
    ours : dict
        ``{method: {standard: AP}}`` (e.g. ``paired_results_dict(...)["ap"]``).
    paper : dict, optional
        The same for the paper; :data:`RAZDAIBIEDINA_AP` by default.
    methods : sequence of str

    Returns
    -------
    DataFrame
        One row per standard of the paper: ``paper_order`` and ``our_order`` (methods joined
        by " > "), ``same_leader`` and ``same_order`` (None where one of our APs is undefined).
    """
    paper = RAZDAIBIEDINA_AP if paper is None else paper
    missing = [m for m in methods if m not in ours or m not in paper]
    if missing:
        raise ValueError(f"no AP for {missing} in ours or in the paper; give every one of {list(methods)}")
    rows = []
    for s in paper[methods[0]]:
        p_order = sorted(methods, key=lambda m: -paper[m][s])
        if any(not np.isfinite(ours[m].get(s, np.nan)) for m in methods):
            rows.append({"standard": s, "paper_order": " > ".join(p_order), "our_order": "undefined (no AP)",
                         "same_leader": None, "same_order": None})
            continue
        o_order = sorted(methods, key=lambda m: -ours[m][s])
        rows.append({"standard": s, "paper_order": " > ".join(p_order), "our_order": " > ".join(o_order),
                     "same_leader": p_order[0] == o_order[0], "same_order": p_order == o_order})
    return pd.DataFrame(rows)


def ahead_everywhere(paired, *, comparisons=("deeploc-pci", "deeploc-ae")):
    """Razdaibiedina & Brechalov's claim on paired intervals: is the first method of each comparison
    *ahead* (whole 95% interval above 0) at every standard?

    Parameters
    ----------
    paired : dict
        ``{comparison: {standard: {"verdict": ...}}}`` (``paired_results_dict(...)["paired"]``).
    comparisons : sequence of str
        Default: the supervised CNN against both self-supervised models.

    Returns
    -------
    bool
    """
    missing = [c for c in comparisons if c not in paired]
    if missing:
        raise ValueError(f"no paired result for {missing}; compare them first")
    return all(v["verdict"] == "ahead" for c in comparisons for v in paired[c].values())
