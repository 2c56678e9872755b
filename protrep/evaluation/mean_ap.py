"""Per-protein mean average precision (mAP): each protein retrieves its functional partners.

The retrieval metric of Kalinin et al. 2025 [1]_ (the ``copairs`` package [2]_), applied to
protein embeddings and functional standards (:mod:`protrep.data.standards`). Every protein
the standard annotates is a *query*: the other annotated proteins (its *candidates*) are
ranked by the cosine similarity of their embeddings to the query's, most similar first,
and the query's average precision (AP) is computed with the candidates sharing at least
one term with it as *positives*. mAP is the mean over queries. Where the global pairwise
AP of :mod:`protrep.evaluation.retrieval` pools all protein pairs into one ranking (and so
weighs proteins of large terms most), mAP gives every protein one vote.

Each query's AP is tested against random rankings of its candidates: the p-value is the
fraction of ``null_size`` random rankings with the same numbers of positives and
candidates whose AP reaches the observed one, ``(1 + #{null AP >= AP}) / (1 + null_size)``
as in copairs; Benjamini-Hochberg q-values are taken over the queries of one embedding and
standard, and ``fraction_retrieved`` is the fraction of queries with q below 0.05.

The proteins and terms scored are those of the pairwise AP
(:func:`protrep.evaluation.retrieval.functional_ap`): the standard is restricted to the
embedding's proteins and filtered with :func:`protrep.data.standards.filter_terms`.

Conventions, and where they differ from copairs:

- Ties: candidates of equal similarity (to ~1e-15) form one threshold, as in
  :func:`protrep.evaluation.retrieval.average_precision` and scikit-learn; copairs breaks
  ties in favour of positives. The two agree whenever no similarities tie (any
  continuous embedding); duplicate vectors are where they differ.
- Null distribution: copairs draws ``null_size`` random rankings for every distinct
  (positives, candidates) pair. Here the draws of one candidate count are shared: each
  draw is a random ordering of the candidates, and the null AP for k positives is the AP
  of its first k items as the positives (an exact draw for every k, computed for all k at
  once with a Fenwick tree). The nulls of different k are then dependent, which leaves
  every p-value's distribution unchanged, and the cost grows with the largest number of
  positives rather than with their sum.

Cost: the n x n similarities are scored in blocks of rows (about 100 MB at a time);
the null takes ``null_size`` x (largest number of positives) tree steps: about a second
for 2,000 draws and 3,000 positives.

References
----------
.. [1] Kalinin, A. A., Arevalo, J., Serrano, E., Vulliard, L., Tsang, H., Bornholdt, M.,
   Muñoz, A. F., Sivagurunathan, S., Rajwa, B., Carpenter, A. E., Way, G. P. & Singh, S.
   (2025). A versatile information retrieval framework for evaluating profile strength
   and similarity. Nature Communications 16, 5181. doi:10.1038/s41467-025-60306-2
.. [2] copairs: https://github.com/cytomining/copairs
"""

import logging

import numpy as np
import pandas as pd
import scipy.stats

from ..data.standards import filter_terms
from ..progress import progress as progress_bar
from .retrieval import (
    _as_embedding,
    _check_standard,
    _check_standards,
    _overlap_message,
    _standardize,
    coannotation,
)

__all__ = ["MAP_COLUMNS", "PER_PROTEIN_COLUMNS", "map_results_dict", "mean_average_precision", "per_protein_ap",
           "seed_mean_map"]

logger = logging.getLogger(__name__)

#: Columns of the table returned by :func:`per_protein_ap`, in order.
PER_PROTEIN_COLUMNS = ["protein", "ap", "n_positives", "n_candidates", "p_value", "q_value"]
#: Columns of the table returned by :func:`mean_average_precision`, in order.
MAP_COLUMNS = ["method", "standard", "map", "fraction_retrieved", "n_proteins"]

_BLOCK = 1 << 21      # similarities scored at a time (rows x candidates)
_NULL_BLOCK = 2000    # null draws simulated at a time
_TOL = 1e-12          # a null AP within this of the observed one counts as reaching it


# --------------------------------------------------------------------------- validation

def _check_options(null_size, seed, threshold=0.05):
    if isinstance(null_size, bool) or int(null_size) != null_size or null_size < 1:
        raise ValueError(f"null_size must be a positive integer, got {null_size}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return int(null_size), int(seed)


def _restrict(ids, X, proteins):
    """The rows of the embedding whose protein is in ``proteins`` (all rows if None)."""
    if proteins is None:
        return ids, X
    if isinstance(proteins, str):
        raise TypeError("proteins must be a sequence of protein ids, not one string")
    wanted = pd.unique(np.asarray(proteins).astype(str).ravel())
    keep = pd.Index(ids).isin(wanted)
    if not keep.any():
        raise ValueError(f"none of the {len(wanted)} proteins asked for (e.g. {wanted[:3].tolist()}) is in the "
                         f"embedding (e.g. {ids[:3].tolist()})")
    if keep.sum() < len(wanted):
        absent = np.setdiff1d(wanted, ids)
        logger.warning("%d of the %d proteins asked for are not in the embedding (e.g. %s); they are left out",
                       len(absent), len(wanted), absent[:3].tolist())
    return ids[keep], X[keep]


def _unit_rows(X, proteins):
    norms = np.linalg.norm(X, axis=1)
    if (norms == 0).any():
        bad = proteins[norms == 0]
        raise ValueError(f"{len(bad)} proteins have an all-zero embedding (e.g. {bad[:5].tolist()}): their cosine "
                         "similarity is undefined; drop them or fix the embedding")
    return X / norms[:, None]


def _evaluated(embedding, standard, *, proteins, standardize, min_size, max_size, max_fraction):
    """Evaluated protein ids, their unit embeddings and co-annotation, as the pairwise AP chooses them."""
    ids, X = _restrict(*_as_embedding(embedding), proteins)
    _check_standard(standard)
    if standardize:
        X = _standardize(X)  # across the proteins of the embedding (those asked for): one representation
    named = standard["protein"].astype(str)
    restricted = standard[named.isin(ids).to_numpy()]
    if restricted.empty:
        raise ValueError(_overlap_message(ids, named))
    restricted = filter_terms(restricted, min_size=min_size, max_size=max_size, max_fraction=max_fraction)
    keep = pd.Index(ids).isin(restricted["protein"].astype(str))
    evaluated = ids[keep]
    _, shared = coannotation(evaluated, restricted)
    return evaluated, _unit_rows(X[keep], evaluated), shared


# --------------------------------------------------------------------------- observed AP

def _block_ap(key):
    """AP of each row of ``key`` (int64, descending): bit 0 is the label, the rest the tie group."""
    positive = (key & 1).astype(bool)
    tp = np.cumsum(positive, axis=1, dtype=np.int64)
    n_pos = tp[:, -1]
    last = np.arange(key.shape[1])
    group = key >> 1
    if (group[:, 1:] == group[:, :-1]).any():  # ties: every member of a group has the group's last precision
        is_end = np.concatenate([group[:, 1:] != group[:, :-1], np.ones((len(key), 1), bool)], axis=1)
        end = np.where(is_end, last, key.shape[1])
        end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
        precision = np.take_along_axis(tp, end, axis=1) / (end + 1.0)
    else:
        precision = tp / (last + 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positive, precision, 0.0).sum(axis=1) / n_pos, n_pos


def _query_ap(Xn, shared):
    """AP and number of positives of every row as a query against all other rows.

    Similarities become int64 keys that sort like them (the bits of ``s + 2``, a positive
    float, with the last bit replaced by the label), so one ``np.sort`` per block of rows
    ranks the candidates and carries their labels; the query itself gets key 0 and is
    dropped.
    """
    m = len(Xn)
    ap, n_pos = np.empty(m), np.empty(m, np.int64)
    rows_per_block = max(1, _BLOCK // max(m, 1))
    for start in range(0, m, rows_per_block):
        stop = min(m, start + rows_per_block)
        S = Xn[start:stop] @ Xn.T
        S += 2.0
        key = S.view(np.int64)
        key &= ~np.int64(1)
        key |= shared[start:stop]
        key[np.arange(stop - start), np.arange(start, stop)] = 0
        key.sort(axis=1)
        ap[start:stop], n_pos[start:stop] = _block_ap(key[:, :0:-1])
    return ap, n_pos


# --------------------------------------------------------------------------- null distribution

def _first_ranks(n, K, size, rng):
    """1-based ranks of items 0 .. K-1 in ``size`` random orderings of n items, shape (K, size)."""
    keys = rng.integers(0, 1 << 40, (size, n), dtype=np.uint64) << np.uint64(24)
    keys |= np.arange(1, n + 1, dtype=np.uint64)  # random 40-bit keys, ties broken by item: n < 2**24
    keys.sort(axis=1)
    return np.ascontiguousarray((keys[:, :K] & np.uint64((1 << 24) - 1)).astype(np.int64).T)


def _fenwick_aps(ranks, n, ks):
    """AP of the first k of every column of ``ranks`` as the positives, for each k in ``ks``.

    Inserting positives one at a time, at rank x: k AP = sum_i i / r_i grows by
    (1 + c) / x, c the positives ranked above x, plus 1 / r for every positive ranked
    below x (its count of positives at or above it grows by one). A Fenwick tree per
    draw over the n ranks holds 16 per positive plus 1 / rank (which sums to less than
    16), so one prefix sum gives both c and the sum of 1 / r above x.
    """
    K, size = ranks.shape
    levels = int(n).bit_length()
    tree = np.zeros((n + 2) * size)  # node-major: node j of draw s at j * size + s; node n + 1 absorbs
    draw = np.arange(size)
    cap = draw + (n + 1) * size
    total, inv_total = np.zeros(size), np.zeros(size)
    prefix, idx, tmp, flat = np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64), np.empty(
        size, np.int64)
    row = {k: r for r, k in enumerate(ks)}
    out = np.empty((len(ks), size))
    for k in range(K):
        x = ranks[k]
        prefix[:] = 0.0
        np.copyto(idx, x)
        for _ in range(levels):  # prefix sum over ranks <= x
            np.multiply(idx, size, out=flat)
            flat += draw
            prefix += tree[flat]
            np.subtract(idx, 1, out=tmp)
            idx &= tmp
        above = np.floor(prefix / 16.0)
        inv = 1.0 / x
        total += (above + 1.0) * inv + inv_total - (prefix - 16.0 * above)
        inv_total += inv
        value = 16.0 + inv
        np.copyto(idx, x)
        for _ in range(levels):  # add the new positive
            np.multiply(idx, size, out=flat)
            flat += draw
            np.minimum(flat, cap, out=flat)
            tree[flat] += value
            np.negative(idx, out=tmp)
            tmp &= idx
            idx += tmp
        if k + 1 in row:
            out[row[k + 1]] = total / (k + 1)
    return out


def _null_ap(n, ks, null_size, seed):
    """Sorted null APs, shape (len(ks), null_size), of random rankings of n candidates with k positives.

    Seeded by (seed, n) alone, so a protein's p-value does not depend on which other
    proteins or standards are evaluated with it.
    """
    ks = sorted(int(k) for k in ks)
    rng = np.random.default_rng([seed, n])
    blocks = []
    for start in range(0, null_size, _NULL_BLOCK):
        size = min(_NULL_BLOCK, null_size - start)
        blocks.append(_fenwick_aps(_first_ranks(n, ks[-1], size, rng), n, ks))
    null = np.concatenate(blocks, axis=1)
    null.sort(axis=1)
    return dict(zip(ks, null))


def _p_values(scores, null_size, seed, *, progress=False):
    """Add ``p_value`` and ``q_value`` to each table of per-protein scores, in place.

    Draws are shared by all tables with the same number of candidates.
    """
    wanted = {}
    for table in scores:
        for n, k in zip(table["n_candidates"], table["n_positives"]):
            wanted.setdefault(int(n), set()).add(int(k))
    nulls = {}
    for n, ks in progress_bar(sorted(wanted.items()), desc="null APs", unit="candidate count", disable=not progress):
        nulls[n] = _null_ap(n, ks, null_size, seed)
    for table in scores:
        reached = [null_size - np.searchsorted(nulls[n][k], ap - _TOL, side="left")
                   for n, k, ap in zip(table["n_candidates"], table["n_positives"], table["ap"])]
        table["p_value"] = (np.asarray(reached, dtype=np.float64) + 1.0) / (null_size + 1.0)
        table["q_value"] = scipy.stats.false_discovery_control(table["p_value"], method="bh") if len(table) else []
    return scores


# --------------------------------------------------------------------------- public functions

def _scores(embedding, standard, *, proteins, standardize, min_size, max_size, max_fraction):
    evaluated, Xn, shared = _evaluated(embedding, standard, proteins=proteins, standardize=standardize,
                                       min_size=min_size, max_size=max_size, max_fraction=max_fraction)
    ap, n_pos = _query_ap(Xn, shared) if len(evaluated) > 1 else (np.zeros(len(evaluated)), np.zeros(
        len(evaluated), np.int64))
    scored = n_pos > 0
    if not scored.all():
        logger.info("%d of %d proteins have no positive (no term shared with another evaluated protein) and are "
                    "not queries", int((~scored).sum()), len(evaluated))
    return pd.DataFrame({"protein": evaluated[scored], "ap": ap[scored], "n_positives": n_pos[scored],
                         "n_candidates": np.full(int(scored.sum()), len(evaluated) - 1, dtype=np.int64)})


def per_protein_ap(embedding, standard, *, min_size=2, max_size=None, max_fraction=None, proteins=None,
                   standardize=False, null_size=2000, seed=0):
    """Average precision of each protein retrieving its functional partners, with p- and q-values.

    Every protein the (filtered) standard annotates is a query; its candidates are the
    other annotated proteins, ranked by cosine similarity to it (most similar first), and
    the positives are the candidates sharing at least one term with it (see the module
    docstring for ties and the null distribution).

    Parameters
    ----------
    embedding : DataFrame or (sequence of str, array of shape (n, d))
        An embedding table (``protein`` and ``f0000`` ..., one row per protein) or a pair
        (protein ids, features); a protein whose vector is all zero raises.
    standard : DataFrame
        Long-format standard (``term``, ``protein``).
    min_size, max_size, max_fraction
        Term filters of :func:`protrep.evaluation.retrieval.functional_ap`
        (:func:`protrep.data.standards.filter_terms` on the standard restricted to the
        embedding's proteins).
    proteins : sequence of str, optional
        Evaluate only these proteins: both queries and candidates (e.g. held-out proteins).
        Ids not in the embedding are left out with a warning; the term filters apply
        among the proteins kept.
    standardize : bool, default False
        z-score every feature across the embedding's proteins (those of ``proteins``) first.
    null_size : int, default 2000
        Random rankings per (positives, candidates) pair; the smallest p-value is
        1 / (null_size + 1).
    seed : int, default 0
        Seed of the random rankings (``numpy.random.default_rng``).

    Returns
    -------
    DataFrame
        One row per query, columns :data:`PER_PROTEIN_COLUMNS`: ``protein``, ``ap`` (in
        (0, 1], higher is better; a random ranking scores about ``n_positives /
        n_candidates``), ``n_positives``, ``n_candidates``, ``p_value`` and ``q_value``
        (Benjamini-Hochberg over the rows). Annotated proteins without a positive (only
        possible with ``min_size=1``: a term of their own) are skipped: their AP is
        undefined. A query whose candidates are all positive has AP 1 and p-value 1.

    Raises
    ------
    ValueError
        If no protein of the embedding is in the standard, if an evaluated protein's
        vector is all zero, or on a bad option.

    References
    ----------
    .. [1] Kalinin, A. A. et al. (2025). A versatile information retrieval framework for
       evaluating profile strength and similarity. Nature Communications 16, 5181.
    .. [2] copairs: https://github.com/cytomining/copairs
    """
    null_size, seed = _check_options(null_size, seed)
    table = _scores(embedding, standard, proteins=proteins, standardize=standardize, min_size=min_size,
                    max_size=max_size, max_fraction=max_fraction)
    return _p_values([table], null_size, seed)[0][PER_PROTEIN_COLUMNS]


def _summary(table, threshold):
    if table is None or not len(table):
        return {"map": np.nan, "fraction_retrieved": np.nan, "n_proteins": 0}
    return {"map": float(table["ap"].mean()), "fraction_retrieved": float((table["q_value"] < threshold).mean()),
            "n_proteins": len(table)}


def mean_average_precision(embeddings, standards, *, min_size=2, max_size=None, max_fraction=None, proteins=None,
                           standardize=False, null_size=2000, seed=0, threshold=0.05, progress=True):
    """Mean per-protein AP and fraction of proteins retrieved, for several embeddings and standards.

    Parameters
    ----------
    embeddings : dict of str to DataFrame or (ids, X)
        Method name to embedding (see :func:`per_protein_ap`).
    standards : dict of str to DataFrame
        Standard name to long-format standard.
    min_size, max_size, max_fraction, proteins, standardize, null_size, seed
        As for :func:`per_protein_ap`; the random rankings are shared by all cells with the
        same number of candidates.
    threshold : float, default 0.05
        q-value below which a protein counts as retrieved.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    DataFrame
        Long format, one row per (method, standard), columns :data:`MAP_COLUMNS`:
        ``map`` (mean AP over the queries, higher is better), ``fraction_retrieved``
        (fraction of queries with q-value below ``threshold``) and ``n_proteins`` (number
        of queries). A standard with no protein in common with a method (or no query) gets
        NaN scores and a logged warning.

    Raises
    ------
    ValueError
        If a method shares no protein with any standard, or as :func:`per_protein_ap`.

    References
    ----------
    .. [1] Kalinin, A. A. et al. (2025). A versatile information retrieval framework for
       evaluating profile strength and similarity. Nature Communications 16, 5181.
    """
    null_size, seed = _check_options(null_size, seed, threshold)
    if not embeddings or not standards:
        raise ValueError("mean_average_precision needs at least one embedding and one standard")
    _check_standards(standards)
    everything = pd.unique(np.concatenate([s["protein"].astype(str).to_numpy() for s in standards.values()]))
    scores = {}
    bar = progress_bar(total=len(embeddings) * len(standards), desc="per-protein AP", unit="standard",
                       disable=not progress)
    with bar:
        for method, embedding in embeddings.items():
            ids, X = _restrict(*_as_embedding(embedding), proteins)
            if not pd.Index(ids).isin(everything).any():
                raise ValueError(f"method {method!r}: " + _overlap_message(ids, everything, "standards"))
            for name, standard in standards.items():
                bar.set_postfix_str(f"{method} / {name}")
                if standard["protein"].astype(str).isin(ids).any():
                    scores[method, name] = _scores((ids, X), standard, proteins=None, standardize=standardize,
                                                   min_size=min_size, max_size=max_size, max_fraction=max_fraction)
                else:
                    logger.warning("%s: no protein in common with standard %r", method, name)
                bar.update()
    _p_values(list(scores.values()), null_size, seed, progress=progress)
    rows = []
    for method in embeddings:
        for name in standards:
            table = scores.get((method, name))
            if table is not None and not len(table):
                logger.warning("%s / %s: no protein has a positive: mAP is undefined (NaN)", method, name)
            rows.append({"method": method, "standard": name, **_summary(table, threshold)})
    return pd.DataFrame(rows, columns=MAP_COLUMNS)


def seed_mean_map(groups, standards, **options):
    """:func:`mean_average_precision` of methods with one embedding per training seed, averaged over seeds.

    Parameters
    ----------
    groups : dict of str to list
        Method name to its embeddings, one per seed (a list of one for a deterministic method),
        as for :func:`protrep.evaluation.paired.compare_seeds`.
    standards : dict of str to DataFrame
    **options
        Passed to :func:`mean_average_precision` (``proteins``, ``seed``, term filter, ...).

    Returns
    -------
    DataFrame
        One row per (method, standard): ``map`` and ``fraction_retrieved`` (means over seeds)
        and ``n_seeds``.
    """
    method_of = {f"{m}|{k}": m for m, embs in groups.items() for k in range(len(embs))}
    flat = {key: groups[m][int(key.rsplit("|", 1)[1])] for key, m in method_of.items()}
    per_seed = mean_average_precision(flat, standards, **options)
    per_seed["method"] = per_seed["method"].map(method_of)
    grouped = per_seed.groupby(["method", "standard"], sort=False)
    out = grouped[["map", "fraction_retrieved"]].mean()
    out["n_seeds"] = grouped.size()
    return out.reset_index()


def map_results_dict(table):
    """A long :func:`mean_average_precision` table as the nested dicts of a chapter's JSON.

    Returns
    -------
    dict
        ``map`` and ``fraction_retrieved``, each ``{method: {standard: value}}``.
    """
    out = {}
    for column in ("map", "fraction_retrieved"):
        out[column] = {m: {s: float(v) for s, v in zip(g["standard"], g[column])} for m, g in table.groupby(
            "method", sort=False)}
    return out
