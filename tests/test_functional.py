"""Functional evaluation: pair AP against scikit-learn, hand-worked pairs, bootstrap, baselines, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.metrics.pairwise import cosine_similarity

from protrep.cli import main
from protrep.data.proteome import CLASSES, proteome_standards, synthetic_proteome
from protrep.data.standards import filter_terms
from protrep.data.tables import write_table
from protrep.evaluation.retrieval import (
    RESULT_COLUMNS,
    _rank_pairs,
    _replicate_ap,
    average_precision,
    bootstrap_ap,
    coannotation,
    cosine_similarity_pairs,
    evaluate,
    functional_ap,
    max_f1,
    localization_reference,
    pair_labels,
    random_embedding,
    read_embedding,
)


@st.composite
def ranking(draw, weighted=False):
    """Labels with at least one positive and scores with many ties (few distinct levels)."""
    n = draw(st.integers(1, 60))
    levels = draw(st.integers(1, 8))
    y = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    codes = np.array(draw(st.lists(st.integers(0, levels - 1), min_size=n, max_size=n)))
    spread = draw(st.floats(0.01, 100))
    scores = codes * spread - draw(st.floats(-1, 1))
    if draw(st.booleans()):  # continuous scores too, with ties only by chance
        scores = scores + np.array(draw(st.lists(st.floats(0, 1e-3), min_size=n, max_size=n)))
    y[draw(st.integers(0, n - 1))] = True
    if not weighted:
        return y, scores
    w = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    w[np.flatnonzero(y)[0]] = max(w[np.flatnonzero(y)[0]], 1)
    return y, scores, w


def _brute_max_f1(y, s, w=None):
    precision, recall, _ = precision_recall_curve(y, s, sample_weight=w)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return f1.max()


# --------------------------------------------------------------------------- AP and max F1

@settings(max_examples=150, deadline=None)
@given(ranking())
def test_average_precision_matches_sklearn_with_ties(data):
    y, s = data
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert average_precision(y.astype(int), s) == average_precision(y, s)


@settings(max_examples=100, deadline=None)
@given(ranking())
def test_max_f1_is_the_best_point_of_the_sklearn_curve(data):
    y, s = data
    assert max_f1(y, s) == pytest.approx(_brute_max_f1(y, s), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(ranking(weighted=True))
def test_weighted_ap_equals_ap_of_duplicated_data(data):
    y, s, w = data
    dup = np.repeat(np.arange(len(y)), w)
    expected = average_precision(y[dup], s[dup])
    assert average_precision(y, s, sample_weight=w) == pytest.approx(expected, abs=1e-12)
    assert average_precision(y, s, sample_weight=w) == pytest.approx(
        average_precision_score(y, s, sample_weight=w), abs=1e-9)
    assert max_f1(y, s, sample_weight=w) == pytest.approx(max_f1(y[dup], s[dup]), abs=1e-12)


def test_average_precision_by_hand():
    # ranking: 0.9 (+), 0.8 (-), 0.8 (+) tied, 0.1 (+): thresholds P=1 R=1/3; P=2/3 R=2/3; P=3/4 R=1
    y, s = [1, 0, 1, 1], [0.9, 0.8, 0.8, 0.1]
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert max_f1(y, s) == pytest.approx(2 * 3 / (3 + 1 + 3))
    assert average_precision([1, 0, 0], [0.5, 0.5, 0.5]) == pytest.approx(1 / 3)  # all tied: the prevalence


@pytest.mark.parametrize("y, s, message", [
    ([0, 0, 0], [0.1, 0.2, 0.3], "no positive"),
    ([1, 0], [0.1, np.nan], "NaN"),
    ([1, 0, 1], [0.1, 0.2], "same length"),
    ([1, 2], [0.1, 0.2], "bool or 0/1"),
])
def test_average_precision_validates(y, s, message):
    with pytest.raises(ValueError, match=message):
        average_precision(y, s)
    with pytest.raises(ValueError, match=message):
        max_f1(y, s)


def test_sample_weight_validated():
    with pytest.raises(ValueError, match="non-negative"):
        average_precision([1, 0], [0.2, 0.1], sample_weight=[1, -1])
    with pytest.raises(ValueError, match="no positive"):
        average_precision([1, 0], [0.2, 0.1], sample_weight=[0, 1])


# --------------------------------------------------------------------------- pairs and labels

def test_cosine_pairs_match_sklearn_and_zero_rows_give_zero():
    X = np.random.default_rng(0).standard_normal((7, 5))
    X[3] = 0
    i, j, s = cosine_similarity_pairs(X)
    expected = cosine_similarity(X)
    assert np.all(i < j) and len(s) == 21
    np.testing.assert_allclose(s, expected[i, j], atol=1e-12)
    assert np.isfinite(s).all() and np.all(s[(i == 3) | (j == 3)] == 0)
    with pytest.raises(ValueError, match="2-D"):
        cosine_similarity_pairs(np.zeros(3))


TINY = pd.DataFrame({"term": ["t1", "t1", "t2", "t2", "t3", "t1"],
                     "protein": ["A", "B", "B", "C", "D", "Z"]})  # E unannotated; Z not among the proteins


def test_pair_labels_by_hand():
    proteins = ["A", "B", "C", "D", "E"]
    annotated, shared = coannotation(proteins, TINY)
    assert annotated.tolist() == [True, True, True, True, False]
    assert shared[0, 1] and shared[1, 2] and not shared[0, 2] and not shared[3, 0] and not shared[4].any()
    np.testing.assert_array_equal(shared, shared.T)
    i, j, y = pair_labels(proteins, TINY)
    pairs = {(proteins[a] + proteins[b]): bool(v) for a, b, v in zip(i, j, y)}
    assert pairs == {"AB": True, "AC": False, "AD": False, "BC": True, "BD": False, "CD": False}


def test_functional_ap_by_hand():
    # t3 has one protein, so min_size=2 drops it and D with it: pairs AB (+), AC (-), BC (+)
    X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    table = pd.DataFrame(X, columns=["f0000", "f0001"]).assign(protein=list("ABCDE"))
    result = functional_ap(table, TINY)
    S = cosine_similarity(X[:3])
    expected = average_precision([True, False, True], [S[0, 1], S[0, 2], S[1, 2]])
    assert result == pytest.approx({"ap": expected, "max_f1": 1.0, "n_proteins": 3, "n_pairs": 3, "n_positive": 2,
                                    "prevalence": 2 / 3})
    assert functional_ap((list("ABCDE"), X), TINY)["ap"] == result["ap"]  # (ids, X) form
    with_d = functional_ap(table, TINY, min_size=1)
    assert with_d["n_proteins"] == 4 and with_d["n_pairs"] == 6


def _random_standard(proteins, rng, n_terms=25):
    rows = [(f"term{t}", p) for t in range(n_terms) for p in rng.choice(proteins, rng.integers(1, 12), replace=False)]
    return pd.DataFrame(rows, columns=["term", "protein"]).drop_duplicates()


@pytest.mark.parametrize("discrete", [False, True])
def test_functional_ap_equals_explicit_pairs(discrete):
    rng = np.random.default_rng(1)
    proteins = np.array([f"P{k:03d}" for k in range(80)])
    X = rng.integers(0, 3, (80, 3)).astype(float) if discrete else rng.standard_normal((80, 16))  # ties if discrete
    standard = _random_standard(proteins, rng)
    result = functional_ap((proteins, X), standard, max_fraction=0.5)
    kept = filter_terms(standard, min_size=2, max_fraction=0.5)
    i, j, y = pair_labels(proteins, kept)
    S = cosine_similarity(X)
    assert result["ap"] == pytest.approx(average_precision_score(y, S[i, j]), abs=1e-9)
    assert result["max_f1"] == pytest.approx(_brute_max_f1(y, S[i, j]), abs=1e-9)
    assert result["n_pairs"] == len(y) and result["n_positive"] == y.sum()
    assert result["prevalence"] == pytest.approx(y.mean())


def test_standardize_is_a_z_score_across_proteins():
    rng = np.random.default_rng(2)
    proteins = np.array([f"P{k:03d}" for k in range(50)])
    X = rng.standard_normal((50, 4)) * [1, 10, 100, 0] + [0, 5, 0, 3]  # last feature constant
    standard = _random_standard(proteins, rng)
    z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    assert functional_ap((proteins, X), standard, standardize=True)["ap"] == pytest.approx(
        functional_ap((proteins, z), standard)["ap"], abs=1e-12)


def test_embedding_validation():
    standard = pd.DataFrame({"term": ["t", "t"], "protein": ["A", "B"]})
    with pytest.raises(ValueError, match="repeat"):
        functional_ap((["A", "A", "B"], np.ones((3, 2))), standard)
    with pytest.raises(ValueError, match="NaN"):
        functional_ap((["A", "B"], np.array([[1.0, np.nan], [1.0, 0.0]])), standard)
    with pytest.raises(ValueError, match="feature columns"):
        functional_ap(pd.DataFrame({"protein": ["A", "B"], "x": [1, 2]}), standard)
    with pytest.raises(ValueError, match=r"no protein of the embedding \(2 proteins.*'a'.*upper-cased"):
        functional_ap((["a", "b"], np.ones((2, 2))), standard)
    with pytest.raises(ValueError, match="columns"):
        functional_ap((["A", "B"], np.ones((2, 2))), pd.DataFrame({"protein": ["A"]}))


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_replicate_equals_explicit_duplication():
    # a replicate's weighted AP == AP over all pairs of copies of distinct proteins
    rng = np.random.default_rng(3)
    proteins = np.array([f"P{k:02d}" for k in range(30)])
    X = rng.integers(0, 3, (30, 3)).astype(float)
    standard = _random_standard(proteins, rng, n_terms=10)
    ranked = _rank_pairs((proteins, X), standard, standardize=False, min_size=2, max_size=None, max_fraction=None,
                         pairs=True)
    m = len(ranked.proteins)
    _, shared = coannotation(ranked.proteins, standard)
    S = cosine_similarity(X[pd.Index(proteins).get_indexer(ranked.proteins)])
    for _ in range(5):
        draw = rng.integers(0, m, m)
        a, b = np.triu_indices(m, 1)
        a, b = draw[a], draw[b]
        distinct = a != b  # copies of one protein are not paired
        expected = average_precision(shared[a[distinct], b[distinct]], S[a[distinct], b[distinct]])
        counts = np.bincount(draw, minlength=m).astype(np.int32)
        assert _replicate_ap(ranked, counts) == pytest.approx(expected, abs=1e-12)


@pytest.fixture(scope="module")
def proteome():
    proteins = synthetic_proteome(300, seed=3)
    return proteins, proteome_standards(proteins)


def test_bootstrap_interval_contains_estimate_and_is_seeded(proteome):
    proteins, standards = proteome
    oracle = localization_reference(proteins)
    point = functional_ap(oracle, standards["processes"])["ap"]
    low, high = bootstrap_ap(oracle, standards["processes"], n_boot=40, seed=5)
    assert low < point < high and high - low < 0.2
    assert bootstrap_ap(oracle, standards["processes"], n_boot=40, seed=5) == (low, high)
    assert bootstrap_ap(oracle, standards["processes"], n_boot=40, seed=6) != (low, high)
    assert np.isnan(bootstrap_ap(oracle, standards["processes"], n_boot=0)).all()


# --------------------------------------------------------------------------- baselines

def test_oracle_and_random_embeddings(proteome):
    proteins, standards = proteome
    oracle = localization_reference(proteins)
    features = [f"f{j:04d}" for j in range(len(CLASSES))]
    assert list(oracle.columns) == ["protein", *features]
    np.testing.assert_allclose(oracle[features].sum(axis=1), 1, atol=1e-6)
    row = proteins[proteins["secondary"] != ""].iloc[0]
    values = oracle.set_index("protein").loc[row["protein"]]
    assert values[f"f{CLASSES.index(row['primary']):04d}"] == pytest.approx(row["weight"])
    assert values[f"f{CLASSES.index(row['secondary']):04d}"] == pytest.approx(1 - row["weight"])

    comp = functional_ap(oracle, standards["compartments"])
    assert comp["ap"] > 0.99 and comp["ap"] > comp["prevalence"] + 0.3  # cosine > 0 iff a class is shared
    cplx = functional_ap(oracle, standards["complexes"])
    assert cplx["ap"] > 2 * cplx["prevalence"]  # complexes mostly share a localization

    rand = random_embedding(proteins["protein"], dim=32, seed=1)
    assert rand.shape == (300, 33) and rand.equals(random_embedding(proteins["protein"], dim=32, seed=1))
    for name, margin in [("compartments", 0.1), ("processes", 0.1), ("complexes", 0.5)]:
        r = functional_ap(rand, standards[name])
        assert abs(r["ap"] / r["prevalence"] - 1) < margin, name
    with pytest.raises(ValueError, match="missing columns"):
        localization_reference(proteins.drop(columns="weight"))


# --------------------------------------------------------------------------- evaluate and the CLI

def test_evaluate_long_table(proteome):
    proteins, standards = proteome
    embeddings = {"oracle": localization_reference(proteins), "random": random_embedding(proteins["protein"], seed=0)}
    standards = {**standards, "elsewhere": pd.DataFrame({"term": ["t", "t"], "protein": ["X1", "X2"]})}
    table = evaluate(embeddings, standards, n_boot=5, progress=False)
    assert list(table.columns) == RESULT_COLUMNS
    assert len(table) == 2 * 5 and table["method"].tolist()[:5] == ["oracle"] * 5
    known = table[table["standard"] != "elsewhere"]
    assert (known["ap_low"] <= known["ap_high"]).all() and known["ap"].notna().all()
    assert table.loc[table["standard"] == "elsewhere", "ap"].isna().all()  # no protein in common: NaN row
    row = table[(table["method"] == "oracle") & (table["standard"] == "complexes")].iloc[0]
    assert row["ap"] == pytest.approx(functional_ap(embeddings["oracle"], standards["complexes"])["ap"])
    assert evaluate(embeddings, standards, n_boot=0, progress=False)["ap_low"].isna().all()
    with pytest.raises(ValueError, match="no protein of the embedding"):
        evaluate({"x": random_embedding(["a", "b"])}, standards, progress=False)
    with pytest.raises(TypeError, match="unexpected"):
        evaluate(embeddings, standards, min_sise=3)


def test_cli_evaluate_end_to_end(tmp_path, capsys, proteome, standards_folder):
    proteins, standards = proteome
    folder = standards_folder({k: standards[k] for k in ("compartments", "complexes")})
    oracle = localization_reference(proteins)
    noisy = oracle[oracle.columns[1:]].to_numpy() + np.random.default_rng(0).normal(0, 0.2, (300, 15))
    per_protein = pd.DataFrame(noisy, columns=oracle.columns[1:]).assign(protein=oracle["protein"])
    cells = pd.concat([per_protein.assign(**{c: per_protein[c] + d for c in oracle.columns[1:]})
                       for d in (-0.1, 0.1)])  # two cells per protein, mean = the protein row
    # rows of a protein are averaged only when asked: without cell metadata a repeated protein may be a mistake
    write_table(cells, tmp_path / "cells.csv")
    out = tmp_path / "results.json"
    assert main(["evaluate", "--embeddings", str(tmp_path / "cells.csv"), "--standards", str(folder),
                 "--n-boot", "5", "--out", str(out), "--quiet"]) == 2
    assert "300 proteins have several rows" in capsys.readouterr().err
    assert main(["evaluate", "--embeddings", str(tmp_path / "cells.csv"), "--standards", str(folder),
                 "--n-boot", "5", "--out", str(out), "--quiet", "--average-cells"]) == 0
    text = capsys.readouterr().out
    assert "compartments" in text and "complexes" in text and "prevalence" in text
    results = json.loads(out.read_text())
    assert results["n_boot"] == 5 and not results["standardize"]
    comp = next(r for r in results["results"] if r["standard"] == "compartments")
    assert set(comp) == set(RESULT_COLUMNS)
    expected = functional_ap(read_embedding(tmp_path / "cells.csv", average_cells=True), standards["compartments"])
    assert comp["ap"] == pytest.approx(expected["ap"]) and comp["n_proteins"] == 300
    assert read_embedding(tmp_path / "cells.csv", average_cells=True)["n_cells"].eq(2).all()
    assert main(["evaluate", "--embeddings", str(tmp_path / "cells.csv"), "--standards", str(folder),
                 "--n-boot", "0", "--max-fraction", "0.2", "--standardize", "--out", str(out), "--quiet",
                 "--average-cells"]) == 0
    results = json.loads(out.read_text())
    comp = next(r for r in results["results"] if r["standard"] == "compartments")
    assert results["max_fraction"] == 0.2 and results["standardize"] and comp["ap_low"] is None
    assert comp["n_proteins"] < 300  # proteins only in broad compartments are left out


def test_cli_evaluate_errors(tmp_path, capsys, proteome, standards_folder):
    proteins, standards = proteome
    folder = standards_folder({"complexes": standards["complexes"]})
    pd.DataFrame({"protein": ["A"], "x": ["a"]}).to_csv(tmp_path / "nofeatures.csv", index=False)
    assert main(["evaluate", "--embeddings", str(tmp_path / "nofeatures.csv"), "--standards", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "nofeatures.csv" in err and "no feature columns" in err and "Traceback" not in err
    write_table(random_embedding(["YAL001C", "YAL002W"]), tmp_path / "orfs.csv")
    assert main(["evaluate", "--embeddings", str(tmp_path / "orfs.csv"), "--standards", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "orfs.csv" in err and "2 proteins" in err and "YAL001C" in err and "P00" in err
    assert main(["evaluate", "--embeddings", str(tmp_path / "orfs.csv"), "--standards",
                 str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["evaluate", "--embeddings", str(tmp_path / "absent.csv"), "--standards", str(folder)]) == 2
    assert "no such file" in capsys.readouterr().err
