"""Functional evaluation of protein embeddings: do similar proteins share a function?

The protocol of Razdaibiedina & Brechalov 2022 [1]_: every unordered pair of distinct
proteins is scored by the cosine similarity of their (protein-averaged) embeddings, and
the pairs are ranked by that score, most similar first. A pair is *positive* for a
functional standard (compartments, processes, pathways, complexes; see
:mod:`protrep.data.standards`) when both proteins share at least one of its terms and
*negative* when both are annotated but share none; pairs with a protein the standard does
not annotate are left out. The score of an embedding on a standard is the average
precision (AP) of that ranking, reported with its prevalence (the fraction of positive
pairs, which is what a random ranking scores in expectation) and a bootstrap interval
over proteins.

Embeddings are given either as an embedding table (:mod:`protrep.inference.embed`: a
``protein`` column and feature columns ``f0000`` ...) or as a pair ``(protein ids, X)``
with ``X`` of shape (n, d).

Cost: every function here holds the n x n similarity and co-annotation matrices of the
evaluated proteins and the n (n - 1) / 2 pair scores, about 50 n^2 bytes at peak
(5,000 proteins: about 1.3 GB; 10,000 proteins: about 5 GB). The yeast proteome
(~6,000 ORFs) fits on a laptop; much larger sets would need a pair sample.

References
----------
.. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
   representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse

from ..data.proteome import CLASSES
from ..data.standards import STANDARD_COLUMNS, filter_terms
from ..data.tables import feature_columns, protein_embedding, read_table
from ..progress import progress as progress_bar

__all__ = [
    "cosine_similarity_pairs",
    "coannotation",
    "pair_labels",
    "average_precision",
    "max_f1",
    "functional_ap",
    "bootstrap_ap",
    "random_embedding",
    "localization_reference",
    "generative_reference",
    "read_embedding",
    "evaluate",
    "RESULT_COLUMNS", "results_dict"]

logger = logging.getLogger(__name__)

#: Columns of the table returned by :func:`evaluate`, in order.
RESULT_COLUMNS = ["method", "standard", "ap", "ap_low", "ap_high", "max_f1", "n_proteins", "n_pairs",
                  "n_positive", "prevalence"]


# --------------------------------------------------------------------------- validation helpers

def _check_matrix(X, name="X"):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n proteins, d features), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ValueError(f"{name} has NaN or infinite values in {len(bad)} rows (first: {bad[:5].tolist()}); "
                         "drop or impute them first")
    return X


def _check_standard(standard):
    missing = [c for c in STANDARD_COLUMNS if c not in getattr(standard, "columns", [])]
    if missing:
        raise ValueError(f"standard must be a DataFrame with columns {STANDARD_COLUMNS}; missing {missing}")
    return standard


def _as_embedding(embedding):
    """``(ids, X)`` from an embedding table or an ``(ids, X)`` pair; ids as str, X float64."""
    if isinstance(embedding, pd.DataFrame):
        if "protein" not in embedding.columns:
            raise ValueError("embedding table has no 'protein' column; expected protein + f0000, f0001, ...")
        features = feature_columns(embedding)
        if not features:
            raise ValueError(f"embedding table has no feature columns f0000, f0001, ...; its columns are "
                             f"{list(embedding.columns)[:8]} (read_embedding or protrep.data.tables.protein_embedding "
                             "take any numeric columns; or pass (ids, X))")
        ids, X = embedding["protein"].to_numpy(), embedding[features].to_numpy()
    else:
        try:
            ids, X = embedding
        except (TypeError, ValueError):
            raise ValueError("embedding must be a DataFrame (protein + feature columns) or a pair (protein ids, X)"
                             ) from None
    ids = np.asarray(ids).astype(str)
    X = _check_matrix(X)
    if ids.ndim != 1 or len(ids) != len(X):
        raise ValueError(f"{ids.size} protein ids for {len(X)} embedding rows")
    if len(np.unique(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()[:5].tolist()
        raise ValueError(f"protein ids repeat (e.g. {dup}); average the cells of each protein first "
                         "(table.groupby('protein')[features].mean(), or read_embedding)")
    return ids, X


def _standardize(X):
    """z-score every feature across proteins (features with zero variance are only centred)."""
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - X.mean(axis=0)) / sd


def _overlap_message(ids, standard_proteins, what="standard"):
    ids = np.asarray(ids).astype(str)
    std = np.unique(np.asarray(standard_proteins).astype(str))
    msg = (f"no protein of the embedding ({len(ids)} proteins, e.g. {ids[:3].tolist()}) is in the {what} "
           f"({len(std)} proteins, e.g. {std[:3].tolist()})")
    if len(np.intersect1d(np.char.upper(ids), np.char.upper(std))):
        msg += "; they match when upper-cased: the standards use upper-case ids"
    else:
        msg += "; both must use the same ids (e.g. systematic ORF names, not gene names)"
    return msg


# --------------------------------------------------------------------------- pairs and labels

def _cosine_matrix(X):
    norms = np.linalg.norm(X, axis=1)
    norms[norms == 0] = 1.0  # zero vectors stay zero: similarity 0 to everything
    Xn = X / norms[:, None]
    return Xn @ Xn.T


def cosine_similarity_pairs(X):
    """Cosine similarity of every unordered pair of rows.

    Parameters
    ----------
    X : array of float, shape (n, d)
        One row per protein; must be finite.

    Returns
    -------
    i, j : ndarray of int, shape (n (n - 1) / 2,)
        Row indices with ``i < j``, in the order of ``numpy.triu_indices(n, 1)``.
    s : ndarray of float64, same shape
        Cosine similarity in [-1, 1] (higher = more similar). A zero row has similarity 0
        to every row (scikit-learn's convention), never NaN.
    """
    X = _check_matrix(X)
    i, j = np.triu_indices(len(X), 1)
    return i, j, _cosine_matrix(X)[i, j]


def _membership(proteins, standard):
    """Sparse (proteins x terms) membership of the rows of ``standard`` naming ``proteins``."""
    proteins = np.asarray(proteins).astype(str)
    rows = pd.Index(proteins).get_indexer(standard["protein"].astype(str))
    keep = rows >= 0
    terms, cols = np.unique(standard["term"].astype(str).to_numpy()[keep], return_inverse=True)
    data = np.ones(int(keep.sum()), dtype=np.int32)
    return scipy.sparse.csr_matrix((data, (rows[keep], cols)), shape=(len(proteins), len(terms)))


def coannotation(proteins, standard):
    """Which proteins a standard annotates, and which pairs share a term.

    Parameters
    ----------
    proteins : sequence of str, length n
        Protein ids (unique); rows of ``standard`` naming other proteins are ignored.
    standard : DataFrame
        Long format with columns ``term`` and ``protein`` (:mod:`protrep.data.standards`).

    Returns
    -------
    annotated : ndarray of bool, shape (n,)
        True for proteins with at least one term.
    shared : ndarray of bool, shape (n, n)
        ``shared[i, j]`` is True when proteins i and j share at least one term
        (symmetric; the diagonal equals ``annotated``). Computed as ``M @ M.T > 0`` from
        a sparse membership matrix M (proteins x terms), whose cost grows with the sum of
        squared term sizes; the dense boolean result takes n^2 bytes (100 MB for 10,000
        proteins), which is why this is meant for up to about 10,000 proteins.
    """
    _check_standard(standard)
    proteins = np.asarray(proteins).astype(str)
    if len(np.unique(proteins)) != len(proteins):
        raise ValueError("proteins must be unique")
    M = _membership(proteins, standard)
    annotated = np.diff(M.indptr) > 0
    product = (M @ M.T).tocoo()
    shared = np.zeros((len(proteins), len(proteins)), dtype=bool)
    shared[product.row, product.col] = True
    return annotated, shared


def pair_labels(proteins, standard):
    """Positive and negative protein pairs of a standard.

    Parameters
    ----------
    proteins : sequence of str, length n
    standard : DataFrame
        Long format (``term``, ``protein``).

    Returns
    -------
    i, j : ndarray of int
        Indices into ``proteins`` with ``i < j``, over all pairs of annotated proteins
        (pairs with a protein the standard does not annotate are excluded).
    y : ndarray of bool
        True (positive) when the two proteins share at least one term, False (negative)
        when they share none.

    References
    ----------
    .. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
       representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
    """
    annotated, shared = coannotation(proteins, standard)
    a = np.flatnonzero(annotated)
    u, v = np.triu_indices(len(a), 1)
    return a[u], a[v], shared[a[u], a[v]]


# --------------------------------------------------------------------------- ranking metrics

def _check_binary(y_true, y_score, sample_weight):
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1 or y_score.ndim != 1 or len(y_true) != len(y_score):
        raise ValueError(f"y_true and y_score must be 1-D of the same length, got shapes {y_true.shape} "
                         f"and {y_score.shape}")
    if y_true.dtype != bool:
        if not np.isin(y_true, [0, 1]).all():
            raise ValueError("y_true must be bool or 0/1 (True = positive pair)")
        y_true = y_true.astype(bool)
    if not np.isfinite(y_score).all():
        raise ValueError("y_score has NaN or infinite values")
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y_true.shape:
            raise ValueError(f"sample_weight must have shape {y_true.shape}, got {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must be finite and non-negative")
    positives = w[y_true].sum() if w is not None else np.count_nonzero(y_true)
    if positives <= 0:
        raise ValueError("y_true has no positive (with positive weight): average precision is undefined")
    return y_true, y_score, w


def _thresholds(pos_desc, neg_asc):
    """The curve's points where recall changes: one per distinct positive score.

    Given the positive scores sorted descending and the negative scores sorted
    ascending, returns ``last`` (index in ``pos_desc`` of the last positive of each
    distinct score, i.e. number of positives scoring at least that score, minus one) and
    ``n_above`` (number of negatives scoring at least that score; tied negatives count,
    as they share the threshold). Points at negative-only thresholds are not needed: there
    recall does not change (no AP term) and F1 is lower than at the positive threshold
    above them.
    """
    last = np.r_[np.flatnonzero(pos_desc[1:] != pos_desc[:-1]), len(pos_desc) - 1]
    n_above = len(neg_asc) - np.searchsorted(neg_asc, pos_desc[last], side="left")
    return last, n_above


def _weighted_counts(last, n_above, w_pos_desc, w_neg_desc, dtype=np.float64):
    """Cumulative positive and negative weight at each threshold of :func:`_thresholds`."""
    tp = np.cumsum(w_pos_desc, dtype=dtype)[last]
    fp = np.concatenate([np.zeros(1, dtype), np.cumsum(w_neg_desc, dtype=dtype)])[n_above]
    return tp, fp


def _split_curve(y_true, y_score, sample_weight=None):
    """(tp, fp) at each distinct positive score, descending, from one sort per class."""
    s_pos, s_neg = y_score[y_true], y_score[~y_true]
    if sample_weight is None:  # values only: sorting is faster than argsort
        pos_desc, neg_asc = np.sort(s_pos)[::-1], np.sort(s_neg)
        last, n_above = _thresholds(pos_desc, neg_asc)
        return last + 1, n_above
    o_pos, o_neg = np.argsort(s_pos)[::-1], np.argsort(s_neg)
    last, n_above = _thresholds(s_pos[o_pos], s_neg[o_neg])
    return _weighted_counts(last, n_above, sample_weight[y_true][o_pos], sample_weight[~y_true][o_neg[::-1]])


def _ap_from_curve(tp, fp):
    p = tp[-1] if len(tp) else 0
    if p <= 0:
        return float("nan")
    tp, fp = tp.astype(np.float64), fp.astype(np.float64)
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = tp / p
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _max_f1_from_curve(tp, fp):
    p = tp[-1] if len(tp) else 0
    if p <= 0:
        return float("nan")
    tp, fp = tp.astype(np.float64), fp.astype(np.float64)
    return float(np.max(2 * tp / (tp + fp + p)))  # F1 = 2PR / (P + R) = 2 TP / (TP + FP + positives)


def average_precision(y_true, y_score, *, sample_weight=None):
    """Average precision of a ranking, exactly as scikit-learn computes it.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds k (descending),
    with precision P_k and recall R_k of the items scoring at least the k-th threshold.
    Tied scores form one threshold, as in ``sklearn.metrics.average_precision_score``
    (which this matches to rounding, ~1e-15); no interpolation. Vectorised: the positive and
    the negative scores are sorted separately and the curve is read off at the distinct
    positive scores by binary search (no argsort of all items).

    Parameters
    ----------
    y_true : array of bool (or 0/1), shape (n,)
        True for positives (e.g. protein pairs sharing a term).
    y_score : array of float, shape (n,)
        Scores, higher = more likely positive (e.g. cosine similarity).
    sample_weight : array of float, shape (n,), optional
        Non-negative weights; an item of integer weight w counts as w copies of it (with
        the same score), so the weighted AP equals the AP of the duplicated data.

    Returns
    -------
    float
        In (0, 1]; higher is better. A random ranking scores the prevalence (fraction of
        positives) in expectation.

    Raises
    ------
    ValueError
        If ``y_true`` has no positive: AP is undefined (scikit-learn warns and returns 0).

    References
    ----------
    .. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
       representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
    """
    y_true, y_score, w = _check_binary(y_true, y_score, sample_weight)
    return _ap_from_curve(*_split_curve(y_true, y_score, w))


def max_f1(y_true, y_score, *, sample_weight=None):
    """Maximal F1 score over the thresholds of the precision-recall curve.

    The curve is the one of :func:`average_precision` (one point per distinct score, as
    ``sklearn.metrics.precision_recall_curve``); F1 = 2 P R / (P + R).

    Parameters
    ----------
    y_true : array of bool (or 0/1), shape (n,)
    y_score : array of float, shape (n,)
        Higher = more likely positive.
    sample_weight : array of float, shape (n,), optional

    Returns
    -------
    float
        In (0, 1]; higher is better.
    """
    y_true, y_score, w = _check_binary(y_true, y_score, sample_weight)
    return _max_f1_from_curve(*_split_curve(y_true, y_score, w))


# --------------------------------------------------------------------------- functional AP

@dataclass
class _RankedPairs:
    """The evaluated pairs, split into positives and negatives, each sorted by similarity."""

    proteins: np.ndarray      # (m,) ids of the annotated proteins present in the embedding
    n_pairs: int
    n_positive: int
    last: np.ndarray          # see _thresholds
    n_above: np.ndarray
    pos_pairs: tuple = None   # (i, j) int32 indices into proteins, positives by descending similarity
    neg_pairs: tuple = None   # (i, j) of negatives by descending similarity

    def counts(self):
        """(tp, fp) at each threshold: the unweighted precision-recall curve."""
        return self.last + 1, self.n_above


def _rank_pairs(embedding, standard, *, standardize, min_size, max_size, max_fraction, pairs=False):
    """Everything AP needs for one embedding and one standard; ``pairs`` keeps the
    (i, j) of every sorted pair, for the bootstrap (one argsort instead of a sort)."""
    ids, X = _as_embedding(embedding)
    _check_standard(standard)
    if standardize:
        X = _standardize(X)  # across all proteins of the embedding: one representation for every standard
    named = standard["protein"].astype(str)
    restricted = standard[named.isin(ids).to_numpy()]
    if restricted.empty:
        raise ValueError(_overlap_message(ids, named))
    restricted = filter_terms(restricted, min_size=min_size, max_size=max_size, max_fraction=max_fraction)
    keep = pd.Index(ids).isin(restricted["protein"].astype(str))  # hashing; np.isin sorts strings
    proteins = ids[keep]
    m = len(proteins)
    _, shared = coannotation(proteins, restricted)
    upper = np.triu(np.ones((m, m), dtype=bool), 1)
    positive = upper & shared
    negative = upper
    negative &= ~shared  # in place: upper is no longer needed
    del shared, upper
    S = _cosine_matrix(X[keep])
    s_pos, s_neg = S[positive], S[negative]  # row-major: pairs (i < j) in triu order
    del S
    ranked = _RankedPairs(proteins=proteins, n_pairs=m * (m - 1) // 2, n_positive=len(s_pos),
                          last=np.zeros(0, np.int64), n_above=np.zeros(0, np.int64))
    if not len(s_pos):
        return ranked
    if not pairs:
        ranked.last, ranked.n_above = _thresholds(np.sort(s_pos)[::-1], np.sort(s_neg))
        return ranked
    dtype = np.int32 if m < 2**31 else np.int64
    o_pos, o_neg = np.argsort(s_pos)[::-1], np.argsort(s_neg)
    ranked.last, ranked.n_above = _thresholds(s_pos[o_pos], s_neg[o_neg])
    del s_pos, s_neg
    o_neg = o_neg[::-1]
    ranked.pos_pairs = tuple(k.astype(dtype)[o_pos] for k in np.nonzero(positive))
    del positive
    ranked.neg_pairs = tuple(k.astype(dtype)[o_neg] for k in np.nonzero(negative))
    return ranked


def _point(ranked):
    n_pairs, n_positive = ranked.n_pairs, ranked.n_positive
    if n_positive == 0:
        logger.warning("no positive pairs among the %d evaluated proteins: AP is undefined (NaN)",
                       len(ranked.proteins))
    tp, fp = ranked.counts()
    return {
        "ap": _ap_from_curve(tp, fp),
        "max_f1": _max_f1_from_curve(tp, fp),
        "n_proteins": len(ranked.proteins),
        "n_pairs": n_pairs,
        "n_positive": n_positive,
        "prevalence": n_positive / n_pairs if n_pairs else float("nan"),
    }


def _replicate_ap(ranked, counts):
    """Weighted AP of the pairs among proteins drawn ``counts`` times (a pair counts c_i c_j)."""
    (pi, pj), (ni, nj) = ranked.pos_pairs, ranked.neg_pairs
    w_pos = counts[pi]
    w_pos *= counts[pj]
    w_neg = counts[ni]
    w_neg *= counts[nj]
    return _ap_from_curve(*_weighted_counts(ranked.last, ranked.n_above, w_pos, w_neg, np.int64))


def _bootstrap(ranked, n_boot, seed, *, progress=False):
    m = len(ranked.proteins)
    if n_boot < 1 or ranked.n_positive == 0:
        return float("nan"), float("nan")
    if ranked.pos_pairs is None:
        raise ValueError("internal: ranked pairs without their indices")
    rng = np.random.default_rng(seed)
    aps = np.empty(n_boot)
    for b in progress_bar(range(n_boot), desc="bootstrap", unit="replicate", disable=not progress):
        counts = np.bincount(rng.integers(0, m, m), minlength=m).astype(np.int32)
        aps[b] = _replicate_ap(ranked, counts)
    if np.isnan(aps).any():
        logger.warning("%d of %d bootstrap replicates had no positive pair and were left out",
                       int(np.isnan(aps).sum()), n_boot)
    if np.isnan(aps).all():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(aps, [2.5, 97.5])
    return float(low), float(high)


def _check_n_boot(n_boot):
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot}")
    return int(n_boot)


def functional_ap(embedding, standard, *, standardize=False, min_size=2, max_size=None, max_fraction=None):
    """Average precision of retrieving functionally related protein pairs by cosine similarity.

    Proteins present in both the embedding and the standard are kept; the standard is
    restricted to them and then filtered with :func:`protrep.data.standards.filter_terms`:
    terms with fewer than ``min_size`` (default 2) of these proteins are dropped (they
    make no pair), as are root or catch-all terms (:data:`protrep.data.standards.ROOT_TERMS`)
    and, when given, terms larger than ``max_size`` or covering more than
    ``max_fraction`` of the kept proteins. The proteins that still have a term are
    evaluated: every pair of them is positive when they share a term and negative
    otherwise (:func:`pair_labels`), and pairs are ranked by the cosine similarity of the
    two embeddings, high = predicted positive.

    Parameters
    ----------
    embedding : DataFrame or (sequence of str, array of shape (n, d))
        An embedding table with a ``protein`` column and feature columns ``f0000`` ...
        (one row per protein), or a pair (protein ids, features).
    standard : DataFrame
        Long-format standard (``term``, ``protein``).
    standardize : bool, default False
        z-score every feature across all proteins of the embedding before the cosine
        (features on different scales otherwise weigh by their variance).
    min_size : int, default 2
    max_size : int, optional
    max_fraction : float in (0, 1], optional
        Term filters, see above.

    Returns
    -------
    dict
        ``ap`` (float, higher is better; NaN without positive pairs), ``max_f1`` (maximal
        F1 over the precision-recall curve), ``n_proteins`` (evaluated proteins),
        ``n_pairs`` (n_proteins (n_proteins - 1) / 2), ``n_positive`` (positive pairs) and
        ``prevalence`` (n_positive / n_pairs: the expected AP of a random ranking).

    Raises
    ------
    ValueError
        If no protein of the embedding is in the standard (the message shows ids of both,
        so that e.g. gene names against ORF names are easy to spot).

    References
    ----------
    .. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
       representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
    """
    ranked = _rank_pairs(embedding, standard, standardize=standardize, min_size=min_size, max_size=max_size,
                         max_fraction=max_fraction)
    return _point(ranked)


def bootstrap_ap(embedding, standard, *, n_boot=100, seed=0, standardize=False, min_size=2, max_size=None,
                 max_fraction=None):
    """95% bootstrap interval of :func:`functional_ap`, resampling proteins.

    Each replicate draws the evaluated proteins with replacement (as many as there are)
    and scores the pairs among the drawn proteins: a pair of distinct proteins drawn
    ``c_i`` and ``c_j`` times counts ``c_i c_j`` times, while the copies of a protein
    drawn twice are *not* paired with each other (such a pair would have similarity 1 and
    share every term: a free positive the original data does not have). Proteins rather
    than pairs are resampled because pairs sharing a protein are not independent.

    Implementation: the positive and the negative pairs are each sorted by similarity
    once, with their protein indices; a replicate is the weighted
    AP (:func:`average_precision` with ``sample_weight = c_i c_j``) over the same sorted
    pairs, which equals the AP of the explicitly duplicated pairs, in O(pairs) time
    without another sort.

    Parameters
    ----------
    embedding, standard, standardize, min_size, max_size, max_fraction
        As for :func:`functional_ap`.
    n_boot : int, default 100
        Number of replicates.
    seed : int or numpy.random.Generator, default 0
        Seed of ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns
    -------
    low, high : float
        2.5th and 97.5th percentiles of the replicate APs (NaN if ``n_boot`` is 0 or the
        standard has no positive pair). Replicates without a positive pair are left out.

    References
    ----------
    .. [1] Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap.
       Chapman & Hall.
    """
    n_boot = _check_n_boot(n_boot)
    ranked = _rank_pairs(embedding, standard, standardize=standardize, min_size=min_size, max_size=max_size,
                         max_fraction=max_fraction, pairs=n_boot > 0)
    return _bootstrap(ranked, n_boot, seed)


# --------------------------------------------------------------------------- baselines

def _table(proteins, X):
    table = pd.DataFrame(np.asarray(X, dtype=np.float32), columns=[f"f{j:04d}" for j in range(X.shape[1])])
    table.insert(0, "protein", np.asarray(proteins).astype(str))
    return table


def random_embedding(proteins, *, dim=64, seed=0):
    """A baseline embedding of independent standard normal features.

    Parameters
    ----------
    proteins : sequence of str
    dim : int, default 64
    seed : int or numpy.random.Generator, default 0

    Returns
    -------
    DataFrame
        Embedding table: ``protein`` and ``f0000`` ... float32 columns. Its functional AP
        is the standard's prevalence in expectation.
    """
    proteins = np.asarray(proteins).astype(str)
    if proteins.ndim != 1:
        raise ValueError("proteins must be a 1-D sequence of ids")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    rng = np.random.default_rng(seed)
    return _table(proteins, rng.standard_normal((len(proteins), int(dim))))


def _equal_weight(block, reference):
    """``block`` centred and scaled so its rows' RMS norm equals that of ``reference``'s rows."""
    block = block - block.mean(axis=0)
    rms = np.sqrt((block ** 2).sum(axis=1).mean())
    target = np.sqrt((reference ** 2).sum(axis=1).mean())
    return block * (target / rms) if rms > 0 else block


def _localization_matrix(proteins_table):
    missing = [c for c in ("protein", "primary", "secondary", "weight") if c not in proteins_table.columns]
    if missing:
        raise ValueError(f"proteins_table is missing columns {missing}; expected a proteome table "
                         "(protrep.data.proteome.synthetic_proteome or a dataset's proteins.csv)")
    index = {c: k for k, c in enumerate(CLASSES)}
    primary = proteins_table["primary"].astype(str)
    secondary = proteins_table["secondary"].fillna("").astype(str)
    unknown = sorted((set(primary) | set(secondary) - {""}) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown localization classes {unknown[:5]}; expected protrep.data.proteome.CLASSES")
    weight = proteins_table["weight"].to_numpy(dtype=np.float64)
    n = len(proteins_table)
    X = np.zeros((n, len(CLASSES)))
    rows = np.arange(n)
    X[rows, primary.map(index).to_numpy()] = weight
    has2 = (secondary != "").to_numpy()
    X[rows[has2], secondary[has2].map(index).to_numpy()] += 1 - weight[has2]
    return X


def localization_reference(proteins_table, *, abundance=False):
    """The simulator's true localization of each protein, as an embedding: a localization-only reference.

    Not a ceiling: whatever else the simulator renders (pattern traits, brightness) can
    carry function too, and an image model can beat this reference below the
    compartment scale.

    Parameters
    ----------
    proteins_table : DataFrame
        A proteome table (:func:`protrep.data.proteome.synthetic_proteome`, or ``proteins.csv``
        of a simulated dataset) with columns ``protein``, ``primary``, ``secondary`` (``""``
        or NaN if none), ``weight`` (of the primary pattern) and, for ``abundance``,
        ``abundance``.
    abundance : bool, default False
        Append the log abundance (centred, scaled so that its RMS equals the RMS norm of the
        localization vectors: equal weight): the "localization + abundance" reference of
        the Huh-proteome section, where the real abundance is rendered.

    Returns
    -------
    DataFrame
        Embedding table with 15 features ``f0000`` ... ``f0014``, one per class of
        :data:`protrep.data.proteome.CLASSES` in that order: ``weight`` on the primary class,
        ``1 - weight`` on the secondary (plus ``f0015``, the abundance, when asked).
    """
    X = _localization_matrix(proteins_table)
    if abundance:
        if "abundance" not in proteins_table.columns:
            raise ValueError("proteins_table has no 'abundance' column")
        log_a = np.log(proteins_table["abundance"].to_numpy(dtype=np.float64).clip(1e-3))[:, None]
        X = np.hstack([X, _equal_weight(log_a, X)])
    return _table(proteins_table["protein"], X)


def generative_reference(proteins_table):
    """The latent state each simulated protein was drawn from: localization and pattern traits.

    On the synthetic proteome (:func:`protrep.data.proteome.synthetic_proteome`) a
    protein's function shapes the images only through its localization vector and its
    four pattern traits (brightness is drawn independently of function); this embedding
    holds exactly those, the traits centred and scaled to the localization block's RMS
    norm (equal weight). It is the simulator's generative reference for an embedding
    measured from the images: what a perfect model of the rendered pattern could know.
    It is a reference under this cosine weighting, not a proven bound: another weighting
    of the two blocks can score higher on a given standard.

    Parameters
    ----------
    proteins_table : DataFrame
        As for :func:`localization_reference`, plus ``trait_0`` ... ``trait_3``.

    Returns
    -------
    DataFrame
        Embedding table with 19 features: 15 localization, 4 traits.
    """
    traits = [c for c in proteins_table.columns if str(c).startswith("trait_")]
    if not traits:
        raise ValueError("proteins_table has no trait_0 ... columns; expected a simulated proteome table")
    X = _localization_matrix(proteins_table)
    T = _equal_weight(proteins_table[sorted(traits)].to_numpy(dtype=np.float64), X)
    return _table(proteins_table["protein"], np.hstack([X, T]))


# --------------------------------------------------------------------------- files and the whole table

def read_embedding(path, *, features=None, feature_prefix=None, average_cells=None):
    """Read a protein embedding table for evaluation: protrep's, or any table of numbers per protein.

    Parameters
    ----------
    path : str or Path
        Any table :func:`protrep.data.tables.read_table` reads (CSV, CSV.gz, Parquet) with a
        ``protein`` column and feature columns: protrep's ``f0000`` ... when present, and
        otherwise every numeric column but the cell metadata (``plate``, ``well``,
        ``field``, ``cell``, ``split``, ``label``, ``n_cells``); non-numeric columns are
        ignored with a logged warning (:func:`protrep.data.tables.embedding_features`).
    features : sequence of str, optional
        Use exactly these columns as features.
    feature_prefix : str, optional
        Use the columns whose name starts with this (e.g. ``"dim_"``).
    average_cells : bool, optional
        Average the rows of each protein (a per-cell table; ``n_cells`` then counts them).
        By default only a per-cell table of ``protrep embed`` (features ``f0000`` ... and
        cell metadata, no ``n_cells``) is averaged, as protein embeddings are made
        (:func:`protrep.data.tables.embedding_tables`); in any other table, a protein table
        among them, a repeated protein is an error.

    Returns
    -------
    DataFrame
        One row per protein: ``protein``, ``n_cells`` (when known) and the features as
        ``f0000``, ``f0001``, ... (a table with other feature names has them renamed in the
        order chosen, the names kept in ``attrs["feature_names"]``).

    Raises
    ------
    DataError
        Naming the file: no ``protein`` column or no feature column, a repeated protein
        (see ``average_cells``), or proteins whose vector has NaN or infinite values, is
        all zero or constant (cosine similarity undefined or meaningless), listed by id,
        or proteins that all share one vector up to scale (AP would be the prevalence).
    """
    return protein_embedding(read_table(path), features=features, feature_prefix=feature_prefix,
                             average_cells=average_cells, source=path)


def _filter_options(caller, options):
    """The term-filter keywords of ``caller`` with their defaults; unknown ones raise TypeError."""
    unknown = set(options) - {"min_size", "max_size", "max_fraction"}
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword arguments {sorted(unknown)}")
    return {"min_size": 2, "max_size": None, "max_fraction": None, **options}


def _check_standards(standards):
    """:func:`_check_standard` on every standard of a dict, naming the one that fails."""
    for name, standard in standards.items():
        try:
            _check_standard(standard)
        except ValueError as e:
            raise ValueError(f"standard {name!r}: {e}") from None


def evaluate(embeddings, standards, *, n_boot=100, seed=0, standardize=False, progress=True, **filter_options):
    """Functional AP of several embeddings on several standards, with bootstrap intervals.

    Parameters
    ----------
    embeddings : dict of str to DataFrame or (ids, X)
        Method name to embedding (see :func:`functional_ap`).
    standards : dict of str to DataFrame
        Standard name to long-format standard (e.g. :func:`protrep.data.standards.load_standards`).
    n_boot : int, default 100
        Bootstrap replicates per cell (0: no interval).
    seed : int, default 0
        Seed of every bootstrap: methods evaluated on the same proteins see the same
        resamples (paired comparison).
    standardize : bool, default False
        z-score features first (see :func:`functional_ap`).
    progress : bool, default True
        Show a progress bar.
    **filter_options
        ``min_size``, ``max_size``, ``max_fraction`` as for :func:`functional_ap`.

    Returns
    -------
    DataFrame
        Long format, one row per (method, standard), columns :data:`RESULT_COLUMNS`:
        ``method, standard, ap, ap_low, ap_high, max_f1, n_proteins, n_pairs,
        n_positive, prevalence``. A standard without positive pairs among a method's
        proteins (or with no protein in common) gets NaN scores and a logged warning.

    Raises
    ------
    ValueError
        If a method shares no protein with any standard (the message shows ids of both).

    References
    ----------
    .. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
       representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
    """
    filter_options = _filter_options("evaluate", filter_options)
    n_boot = _check_n_boot(n_boot)
    if not embeddings or not standards:
        raise ValueError("evaluate needs at least one embedding and one standard")
    _check_standards(standards)
    everything = pd.unique(np.concatenate([s["protein"].astype(str).to_numpy() for s in standards.values()]))
    rows = []
    bar = progress_bar(total=len(embeddings) * len(standards), desc="functional AP", unit="standard",
                       disable=not progress)
    with bar:
        for method, embedding in embeddings.items():
            ids, X = _as_embedding(embedding)
            if not pd.Index(ids).isin(everything).any():
                raise ValueError(f"method {method!r}: " + _overlap_message(ids, everything, "standards"))
            for name, standard in standards.items():
                bar.set_postfix_str(f"{method} / {name}")
                row = {"method": method, "standard": name}
                if not standard["protein"].astype(str).isin(ids).any():
                    logger.warning("%s: no protein in common with standard %r", method, name)
                    row.update(ap=np.nan, ap_low=np.nan, ap_high=np.nan, max_f1=np.nan, n_proteins=0, n_pairs=0,
                               n_positive=0, prevalence=np.nan)
                else:
                    ranked = _rank_pairs((ids, X), standard, standardize=standardize, pairs=n_boot > 0,
                                         **filter_options)
                    row.update(_point(ranked))
                    row["ap_low"], row["ap_high"] = _bootstrap(ranked, n_boot, seed)
                rows.append(row)
                bar.update()
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def results_dict(table):
    """A long :func:`evaluate` table as the nested dicts of a chapter's JSON.

    Returns
    -------
    dict
        ``ap``, ``ap_ci`` (``[low, high]``) and ``max_f1``, each ``{method: {standard: value}}``.
    """
    ap = {m: {s: float(v) for s, v in row.items()}
          for m, row in table.pivot(index="method", columns="standard", values="ap").iterrows()}
    ci = {m: {s: [float(r["ap_low"]), float(r["ap_high"])] for s, r in g.set_index("standard").iterrows()}
          for m, g in table.groupby("method")}
    f1 = {m: {s: float(v) for s, v in row.items()}
          for m, row in table.pivot(index="method", columns="standard", values="max_f1").iterrows()}
    return {"ap": ap, "ap_ci": ci, "max_f1": f1}
