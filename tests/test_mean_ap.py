"""Per-protein mAP: against the copairs package, by hand, null distribution, properties, errors."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.proteome import proteome_standards, synthetic_proteome
from protrep.evaluation.mean_ap import (
    seed_mean_map,
    MAP_COLUMNS,
    PER_PROTEIN_COLUMNS,
    _null_ap,
    map_results_dict,
    mean_average_precision,
    per_protein_ap,
)
from protrep.evaluation.retrieval import coannotation, functional_ap, random_embedding

copairs_compute = pytest.importorskip("copairs.compute")
copairs_ap = pytest.importorskip("copairs.map.average_precision")


def _random_standard(proteins, rng, n_terms=25, largest=15):
    rows = [(f"term{t}", p) for t in range(n_terms)
            for p in rng.choice(proteins, rng.integers(2, largest), replace=False)]
    return pd.DataFrame(rows, columns=["term", "protein"]).drop_duplicates()


def _no_near_ties(X, shared, gap=1e-6):
    """True when no positive and negative candidate of any query are within ``gap`` in cosine:
    then copairs' float32 similarities cannot order them differently from our float64 ones."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    for i in range(len(S)):
        others = np.arange(len(S)) != i
        pos, neg = np.sort(S[i, others & shared[i]]), S[i, others & ~shared[i]]
        if len(pos) and len(neg):
            at = np.clip(np.searchsorted(pos, neg), 1, len(pos) - 1) if len(pos) > 1 else np.zeros(len(neg), int)
            nearest = np.minimum(np.abs(pos[at] - neg), np.abs(pos[at - 1] - neg) if len(pos) > 1 else np.inf)
            if nearest.min() < gap:
                return False
    return True


@pytest.fixture(scope="module")
def multilabel():
    """150 proteins with 16-d Gaussian embeddings and a standard of overlapping terms."""
    rng = np.random.default_rng(2)  # a seed without near-ties (see _no_near_ties)
    ids = np.array([f"P{k:03d}" for k in range(150)])
    return ids, rng.standard_normal((150, 16)), _random_standard(ids, rng)


# --------------------------------------------------------------------------- against copairs

def test_ap_matches_copairs_on_overlapping_terms(multilabel):
    """copairs' rank lists and AP (its own pair similarities, sort and AP code) on our positive and
    negative pairs: copairs' public API cannot express "shares at least one term"."""
    ids, X, standard = multilabel
    ours = per_protein_ap((ids, X), standard, null_size=10)
    evaluated = ours["protein"].to_numpy()
    Xe = X[pd.Index(ids).get_indexer(evaluated)]
    _, shared = coannotation(evaluated, standard)
    assert _no_near_ties(Xe, shared)
    i, j = np.triu_indices(len(evaluated), 1)
    pairs = np.stack([i, j], axis=1)
    similarity = copairs_compute.get_similarity_fn("cosine", progress_bar=False)
    pos, neg = pairs[shared[i, j]], pairs[~shared[i, j]]
    index, ranked, counts = copairs_ap.build_rank_lists(pos, neg, similarity(Xe, pos, 1000), similarity(Xe, neg, 1000))
    ap, configs = copairs_compute.ap_contiguous(ranked, counts)
    np.testing.assert_allclose(ours["ap"].to_numpy()[index], ap, rtol=0, atol=1e-6)
    assert np.array_equal(ours["n_positives"].to_numpy()[index], configs[:, 0])
    assert np.array_equal(ours["n_candidates"].to_numpy()[index], configs[:, 1])
    assert len(index) == len(ours)
    table = mean_average_precision({"x": (ids, X)}, {"s": standard}, null_size=10, progress=False)
    assert table["map"].iloc[0] == pytest.approx(ap.mean(), abs=1e-6)


def test_ap_and_p_values_match_copairs_public_api(tmp_path, monkeypatch):
    """One term per protein: copairs' own pair finding, AP and p-values on the same input."""
    monkeypatch.setenv("HOME", str(tmp_path))  # copairs caches null distributions in ~/.copairs
    rng = np.random.default_rng(4)
    ids = np.array([f"P{k:03d}" for k in range(120)])
    terms = rng.choice([f"t{k}" for k in range(6)], 120, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    centres = rng.standard_normal((6, 12))
    X = centres[pd.factorize(terms, sort=True)[0]] * 0.4 + rng.standard_normal((120, 12))
    standard = pd.DataFrame({"term": terms, "protein": ids})
    null_size = 2000
    ours = per_protein_ap((ids, X), standard, null_size=null_size, seed=3).set_index("protein").loc[ids]
    assert _no_near_ties(X, terms[:, None] == terms[None, :])
    theirs = copairs_ap.average_precision(pd.DataFrame({"term": terms}), X, pos_sameby=["term"], pos_diffby=[],
                                          neg_sameby=[], neg_diffby=["term"], progress_bar=False)
    np.testing.assert_allclose(ours["ap"], theirs["average_precision"], rtol=0, atol=1e-6)
    assert ours["ap"].mean() == pytest.approx(theirs["average_precision"].mean(), abs=1e-6)
    assert np.array_equal(ours["n_candidates"], theirs["n_total_pairs"])
    p_theirs = copairs_ap.p_values(theirs, null_size=null_size, seed=0, progress_bar=False)
    p_ours = ours["p_value"].to_numpy()
    # two Monte Carlo estimates of the same p-value: their difference has sd sqrt(2 p (1 - p) / null_size)
    p = (p_ours + p_theirs) / 2
    assert (np.abs(p_ours - p_theirs) <= 5 * np.sqrt(2 * p * (1 - p) / null_size) + 3 / null_size).all()
    assert np.abs(p_ours - p_theirs).mean() < 0.01
    assert ((p_ours < 0.05) == (p_theirs < 0.05)).mean() > 0.9
    statsmodels = pytest.importorskip("statsmodels.stats.multitest")
    np.testing.assert_allclose(ours["q_value"], statsmodels.multipletests(p_ours, method="fdr_bh")[1], rtol=1e-12)


# --------------------------------------------------------------------------- by hand

def _angles(*degrees):
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_by_hand():
    # A 0°, B 10°, C 50°, D 95°; terms {A, B} and {C, D}
    standard = pd.DataFrame({"term": ["t1", "t1", "t2", "t2"], "protein": ["A", "B", "C", "D"]})
    table = per_protein_ap((["A", "B", "C", "D"], _angles(0, 10, 50, 95)), standard, null_size=99)
    assert list(table.columns) == PER_PROTEIN_COLUMNS
    # A: B, C, D -> 1; B: A, C, D -> 1; C: B (40°), D (45°), A (50°) -> 1/2; D: C (45°), B, A -> 1
    np.testing.assert_allclose(table["ap"], [1, 1, 0.5, 1])
    assert table["n_positives"].tolist() == [1] * 4 and table["n_candidates"].tolist() == [3] * 4
    # a random ranking puts the one positive first with probability 1/3
    assert table["p_value"].iloc[0] == pytest.approx(1 / 3, abs=0.15)
    assert table["p_value"].iloc[2] == pytest.approx(2 / 3, abs=0.15)
    mean = mean_average_precision({"m": (["A", "B", "C", "D"], _angles(0, 10, 50, 95))}, {"s": standard},
                                  null_size=99, progress=False)
    assert mean["map"].iloc[0] == pytest.approx(0.875)


def test_overlapping_terms_and_ties_by_hand():
    # t1 = {A, B, E}, t2 = {C, E}: E's positives are A, B and C; D is annotated by no term
    standard = pd.DataFrame({"term": ["t1", "t1", "t1", "t2", "t2"], "protein": ["A", "B", "E", "C", "E"]})
    ids = ["A", "B", "C", "D", "E"]
    X = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 1, 2], [1, 1, 1]], dtype=float)  # exact ties below
    table = per_protein_ap((ids, X), standard, null_size=10).set_index("protein")
    assert "D" not in table.index and (table["n_candidates"] == 3).all()  # D is neither query nor candidate
    assert table["n_positives"].to_dict() == {"A": 2, "B": 2, "C": 1, "E": 3}
    # A: B+ (0.71), E+ (0.58), C- (0) -> 1
    assert table.loc["A", "ap"] == pytest.approx(1.0)
    # B: E+ (0.82), then A+ and C- tied (both 1/sqrt 2): the tie is one threshold at rank 3 holding
    # 2 positives, so A's precision is 2/3 -> AP (1 + 2/3) / 2
    assert table.loc["B", "ap"] == pytest.approx((1 + 2 / 3) / 2)
    # C: B- (0.71), E+ (0.58), A- (0) -> 1/2
    assert table.loc["C", "ap"] == pytest.approx(0.5)
    # E: B+ (0.82), A+ and C+ tied (0.58): every candidate positive -> 1
    assert table.loc["E", "ap"] == pytest.approx(1.0)


def test_duplicate_vectors_tie_against_the_query():
    # A and B identical; C's positive is A, its negative B: a tie of one positive and one negative
    standard = pd.DataFrame({"term": ["t1", "t1", "t2", "t2"], "protein": ["A", "C", "B", "D"]})
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [-1.0, 0.1]])
    table = per_protein_ap((["A", "B", "C", "D"], X), standard, null_size=10).set_index("protein")
    assert table.loc["C", "ap"] == pytest.approx(0.5)  # copairs, breaking ties for the positive, says 1


# --------------------------------------------------------------------------- null distribution

def _brute_null(k, n, size, rng):
    ranks = np.sort(np.argsort(rng.random((size, n)), axis=1)[:, :k], axis=1) + 1
    return (np.arange(1, k + 1) / ranks).mean(axis=1)


@pytest.mark.parametrize(("n", "ks"), [(5, [1]), (12, [1, 3, 12]), (40, [2, 7, 20, 39])])
def test_null_is_the_ap_of_random_rankings(n, ks):
    null = _null_ap(n, ks, 6000, seed=1)
    rng = np.random.default_rng(2)
    for k in ks:
        assert np.all(np.diff(null[k]) >= 0)  # sorted
        brute = _brute_null(k, n, 6000, rng)
        assert null[k].mean() == pytest.approx(brute.mean(), abs=4 * brute.std() / np.sqrt(3000) + 1e-12)
        for q in (0.5, 0.9, 0.99):
            assert np.quantile(null[k], q) == pytest.approx(np.quantile(brute, q), abs=0.05)
    if ks[0] == 1:  # one positive: AP = 1 / its rank, every rank equally likely
        values, counts = np.unique(np.round(1 / null[1]).astype(int), return_counts=True)
        assert values.tolist() == list(range(1, n + 1))
        np.testing.assert_allclose(counts / counts.sum(), 1 / n, atol=0.03)
    if ks[-1] == n:  # every candidate positive: AP is 1
        np.testing.assert_allclose(null[n], 1.0)


def test_null_is_seeded_by_candidates_alone():
    a, b = _null_ap(30, [2, 5], 500, seed=7), _null_ap(30, [5, 20], 500, seed=7)
    np.testing.assert_array_equal(a[5], b[5])
    assert not np.array_equal(_null_ap(30, [5], 500, seed=8)[5], a[5])
    many = _null_ap(30, [5], 4100, seed=7)  # more draws than one block of the simulation
    assert len(many[5]) == 4100


# --------------------------------------------------------------------------- properties

@st.composite
def partition(draw):
    n = draw(st.integers(3, 30))
    n_terms = draw(st.integers(1, 5))
    labels = draw(st.lists(st.integers(0, n_terms - 1), min_size=n, max_size=n))
    return np.array([f"P{k:02d}" for k in range(n)]), np.array(labels), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(partition())
def test_perfect_embedding_scores_one(data):
    ids, labels, seed = data
    standard = pd.DataFrame({"term": [f"t{k}" for k in labels], "protein": ids})
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.standard_normal((8, 8)))[0][: labels.max() + 1]  # orthogonal directions
    X = centres[labels] * rng.uniform(0.5, 2, (len(ids), 1))  # any positive scale: cosine 1 within a term
    table = per_protein_ap((ids, X), standard, null_size=50)
    assert (table["ap"] == 1).all()
    assert len(table) == sum(int((labels == t).sum()) for t in np.unique(labels) if (labels == t).sum() > 1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16))
def test_invariant_to_row_order_and_scale(seed):
    rng = np.random.default_rng(seed)
    ids = np.array([f"P{k:02d}" for k in range(40)])
    X = rng.standard_normal((40, 5))
    standard = _random_standard(ids, rng, n_terms=8, largest=10)
    base = per_protein_ap((ids, X), standard, null_size=200, seed=seed).set_index("protein").sort_index()
    order = rng.permutation(40)
    shuffled = per_protein_ap((ids[order], X[order] * rng.uniform(0.1, 10, (40, 1))),
                              standard.sample(frac=1, random_state=seed), null_size=200, seed=seed)
    shuffled = shuffled.set_index("protein").sort_index()
    pd.testing.assert_frame_equal(base, shuffled, check_exact=False, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the evaluated proteins

@pytest.fixture(scope="module")
def proteome():
    proteins = synthetic_proteome(300, seed=3)
    return proteins, proteome_standards(proteins)


def multi_hot_localization(proteins):
    """Multi-hot localization classes of each protein: a good embedding for the compartments."""
    hot = proteins["localization"].str.get_dummies(sep=";").astype(float)
    return pd.concat([proteins[["protein"]], hot.set_axis([f"f{j:04d}" for j in range(hot.shape[1])], axis=1)],
                     axis=1)


def test_same_proteins_as_pairwise_ap_and_long_table(proteome):
    proteins, standards = proteome
    embeddings = {"reference": multi_hot_localization(proteins),
                  "random": random_embedding(proteins["protein"], seed=0)}
    elsewhere = pd.DataFrame({"term": ["t", "t"], "protein": ["X1", "X2"]})
    table = mean_average_precision(embeddings, {**standards, "elsewhere": elsewhere}, null_size=500, progress=False,
                                   max_fraction=0.5)
    assert list(table.columns) == MAP_COLUMNS and len(table) == 2 * (len(standards) + 1)
    for name, standard in standards.items():
        row = table[(table["method"] == "reference") & (table["standard"] == name)].iloc[0]
        pairwise = functional_ap(embeddings["reference"], standard, max_fraction=0.5)
        assert row["n_proteins"] == pairwise["n_proteins"]
        alone = per_protein_ap(embeddings["reference"], standard, null_size=500, max_fraction=0.5)
        assert row["map"] == pytest.approx(alone["ap"].mean())
        assert row["fraction_retrieved"] == pytest.approx((alone["q_value"] < 0.05).mean())  # same draws
    far = table[table["standard"] == "elsewhere"]
    assert far["map"].isna().all() and (far["n_proteins"] == 0).all()
    by = table[table["standard"] != "elsewhere"].set_index(["method", "standard"])
    assert (by.loc["reference", "map"] > by.loc["random", "map"]).all()
    assert by.loc[("reference", "compartments"), "fraction_retrieved"] > 0.9
    assert (by.loc["random", "fraction_retrieved"] < 0.05).all()
    nested = map_results_dict(table)
    assert set(nested) == {"map", "fraction_retrieved"}
    assert nested["map"]["random"]["compartments"] == pytest.approx(by.loc[("random", "compartments"), "map"])


def test_seed_mean_map_averages_each_method_over_its_seeds(proteome):
    proteins, standards = proteome
    groups = {"random": [random_embedding(proteins["protein"], seed=s) for s in range(3)],
              "reference": [multi_hot_localization(proteins)]}
    options = {"null_size": 300, "progress": False, "max_fraction": 0.5}
    table = seed_mean_map(groups, standards, **options).set_index(["method", "standard"])
    for name in standards:
        per_seed = [mean_average_precision({"x": e}, {name: standards[name]}, **options).iloc[0]
                    for e in groups["random"]]
        row = table.loc[("random", name)]
        assert row["n_seeds"] == 3
        assert row["map"] == pytest.approx(np.mean([r["map"] for r in per_seed]), nan_ok=True)
        assert row["fraction_retrieved"] == pytest.approx(np.mean([r["fraction_retrieved"] for r in per_seed]),
                                                          nan_ok=True)
    assert (table.xs("reference", level="method")["n_seeds"] == 1).all()


def test_proteins_restricts_queries_and_candidates(proteome, caplog):
    proteins, standards = proteome
    embedding = multi_hot_localization(proteins)
    held_out = proteins["protein"].iloc[::3].tolist()
    restricted = per_protein_ap(embedding, standards["processes"], proteins=held_out, null_size=300)
    alone = per_protein_ap(embedding[embedding["protein"].isin(held_out)], standards["processes"], null_size=300)
    pd.testing.assert_frame_equal(restricted, alone)
    assert set(restricted["protein"]) <= set(held_out)
    assert (restricted["n_candidates"] < len(held_out)).all()
    with caplog.at_level(logging.WARNING):
        per_protein_ap(embedding, standards["processes"], proteins=[*held_out, "NOPE"], null_size=10)
    assert "NOPE" in caplog.text
    table = mean_average_precision({"x": embedding}, {"p": standards["processes"]}, proteins=held_out, null_size=300,
                                   progress=False)
    assert table["map"].iloc[0] == pytest.approx(alone["ap"].mean())


def test_min_size_one_skips_proteins_without_a_positive():
    standard = pd.DataFrame({"term": ["t1", "t1", "solo"], "protein": ["A", "B", "C"]})
    X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    table = per_protein_ap((["A", "B", "C"], X), standard, min_size=1, null_size=10)
    assert table["protein"].tolist() == ["A", "B"]  # C's only term is its own: a candidate, not a query
    assert (table["ap"] == 1).all() and (table["n_candidates"] == 2).all()
    assert per_protein_ap((["A", "B", "C"], X), standard, null_size=10)["n_candidates"].tolist() == [1, 1]


def test_all_candidates_positive():
    standard = pd.DataFrame({"term": ["t", "t", "t"], "protein": ["A", "B", "C"]})
    table = per_protein_ap((["A", "B", "C"], np.array([[1.0, 0], [0, 1], [-1, 0.2]])), standard, null_size=10)
    assert (table["ap"] == 1).all() and (table["p_value"] == 1).all()  # a random ranking does as well


# --------------------------------------------------------------------------- errors

def test_errors(multilabel):
    ids, X, standard = multilabel
    first = pd.Index(ids).get_loc(standard["protein"].iloc[0])
    zero = X.copy()
    zero[first] = 0
    with pytest.raises(ValueError, match=rf"all-zero.*{ids[first]}"):
        per_protein_ap((ids, zero), standard)
    with pytest.raises(ValueError, match="NaN"):
        per_protein_ap((ids, np.vstack([np.full(16, np.nan), X[1:]])), standard)
    with pytest.raises(ValueError, match="repeat"):
        per_protein_ap((np.r_[ids[:1], ids[:-1]], X), standard)
    with pytest.raises(ValueError, match="no protein of the embedding"):
        per_protein_ap((np.char.lower(ids), X), standard)
    with pytest.raises(ValueError, match="columns"):
        per_protein_ap((ids, X), standard.rename(columns={"term": "go"}))
    with pytest.raises(ValueError, match="null_size"):
        per_protein_ap((ids, X), standard, null_size=0)
    with pytest.raises(ValueError, match="seed"):
        per_protein_ap((ids, X), standard, seed=-1)
    with pytest.raises(ValueError, match="none of the 1 proteins"):
        per_protein_ap((ids, X), standard, proteins=["nope"])
    with pytest.raises(TypeError, match="not one string"):
        per_protein_ap((ids, X), standard, proteins="P001")
    with pytest.raises(ValueError, match="threshold"):
        mean_average_precision({"x": (ids, X)}, {"s": standard}, threshold=1.5)
    with pytest.raises(ValueError, match="at least one"):
        mean_average_precision({}, {"s": standard})
    with pytest.raises(ValueError, match=r"method 'x'.*no protein of the embedding"):
        mean_average_precision({"x": (np.char.lower(ids), X)}, {"s": standard}, progress=False)


def test_evaluation_imports_without_torch():
    code = ("import sys, protrep.evaluation.mean_ap; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
