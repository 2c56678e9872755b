"""Any embedding table evaluates: feature columns of user tables, checks naming the file, the CLI."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from protrep.cli import main
from protrep.data.proteome import proteome_standards, synthetic_proteome
from protrep.data.tables import embedding_features, write_table
from protrep.errors import DataError
from protrep.evaluation.mean_ap import MAP_COLUMNS, mean_average_precision
from protrep.evaluation.retrieval import RESULT_COLUMNS, functional_ap, read_embedding


def _write(tmp_path, name, table):
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------- feature columns

def test_user_table_with_plain_names(tmp_path):
    path = _write(tmp_path, "mine.csv", pd.DataFrame({"protein": ["A", "B"], "f0": [1.0, 0.5], "f1": [0.0, 2.0]}))
    table = read_embedding(path)
    assert list(table.columns) == ["protein", "f0000", "f0001"]
    assert table.attrs["feature_names"] == ["f0", "f1"]
    np.testing.assert_array_equal(table[["f0000", "f0001"]], [[1.0, 0.0], [0.5, 2.0]])


def test_numeric_columns_are_features_metadata_and_text_are_not(tmp_path, caplog):
    path = _write(tmp_path, "dims.csv", pd.DataFrame({
        "protein": ["A", "B", "C"], "gene": ["a", "b", "c"], "plate": [1, 1, 2], "dim_1": [1.0, 2.0, 0.0],
        "dim_2": [0.0, 1.0, 3.0], "flag": [True, False, True]}))
    with caplog.at_level(logging.WARNING):
        table = read_embedding(path)
    assert table.attrs["feature_names"] == ["dim_1", "dim_2"]
    assert "gene" in caplog.text and "flag" in caplog.text and "plate" not in caplog.text
    assert list(table.columns) == ["protein", "f0000", "f0001"]


def test_choosing_features(tmp_path):
    frame = pd.DataFrame({"protein": ["A", "B"], "dim_1": [1.0, 2.0], "dim_2": [3.0, 1.0], "score": [0.1, 0.9]})
    path = _write(tmp_path, "choose.csv", frame)
    assert read_embedding(path, feature_prefix="dim_").attrs["feature_names"] == ["dim_1", "dim_2"]
    assert read_embedding(path, features=["dim_2", "score"]).attrs["feature_names"] == ["dim_2", "score"]
    assert read_embedding(path).attrs["feature_names"] == ["dim_1", "dim_2", "score"]
    with pytest.raises(DataError, match=r"choose\.csv.*\['nope'\] are not in the table"):
        read_embedding(path, features=["dim_1", "nope"])
    with pytest.raises(DataError, match=r"choose\.csv.*no feature columns start with 'x_'"):
        read_embedding(path, feature_prefix="x_")
    with pytest.raises(DataError, match="not both"):
        read_embedding(path, features=["dim_1"], feature_prefix="dim_")
    with pytest.raises(ValueError, match="not numeric"):
        embedding_features(frame.assign(dim_3=["a", "b"]), prefix="dim_")


def test_protrep_tables_read_as_before(tmp_path):
    cells = pd.DataFrame({"protein": ["A", "A", "B"], "plate": [1, 1, 1], "cell": [0, 1, 2], "split": "test",
                          "f0000": [0.0, 4.0, 0.0], "f0001": [0.0, 2.0, 1.0], "extra": [5.0, 5.0, 5.0]})
    write_table(cells, tmp_path / "cells.csv")
    table = read_embedding(tmp_path / "cells.csv")  # cells are averaged per protein (a zero cell is fine)
    assert list(table.columns) == ["protein", "n_cells", "f0000", "f0001"]
    assert table["n_cells"].tolist() == [2, 1] and table["f0000"].tolist() == [2.0, 0.0]
    assert "feature_names" not in table.attrs
    proteins = cells.drop_duplicates("protein", keep="last")
    write_table(proteins, tmp_path / "proteins.csv")
    same = read_embedding(tmp_path / "proteins.csv")
    assert list(same.columns) == list(proteins.columns)  # a protein table comes back as it is
    with pytest.raises(DataError, match="several rows"):
        read_embedding(tmp_path / "cells.csv", average_cells=False)


# --------------------------------------------------------------------------- checks naming the file

def test_repeated_proteins_are_an_error_unless_averaged(tmp_path):
    path = _write(tmp_path, "dup.csv", pd.DataFrame({"protein": ["A", "B", "A"], "x": [1.0, 2.0, 3.0],
                                                     "y": [0.0, 1.0, 1.0]}))
    with pytest.raises(DataError, match=r"dup\.csv: 1 protein has several rows: \['A'\]"):
        read_embedding(path)
    table = read_embedding(path, average_cells=True)
    assert table["n_cells"].tolist() == [2, 1] and table["f0000"].tolist() == [2.0, 2.0]


@pytest.mark.parametrize(("bad", "message"), [
    ([0.0, 0.0, 0.0], "all-zero vector"),
    ([0.3, 0.3, 0.3], "constant vector"),
    ([1.0, np.nan, 0.0], "NaN or infinite"),
    ([1.0, np.inf, 0.0], "NaN or infinite"),
])
def test_vectors_cosine_cannot_compare(tmp_path, bad, message):
    frame = pd.DataFrame({"protein": ["A", "B", "C"], "d1": [1.0, bad[0], 0.5], "d2": [0.0, bad[1], 0.5],
                          "d3": [2.0, bad[2], 0.1]})
    path = _write(tmp_path, "bad.csv", frame)
    with pytest.raises(DataError, match=rf"bad\.csv: 1 protein has (an? )?{message}.*\['B'\]"):
        read_embedding(path)


def test_no_features_or_no_protein(tmp_path):
    with pytest.raises(DataError, match=r"text\.csv: no feature columns"):
        read_embedding(_write(tmp_path, "text.csv", pd.DataFrame({"protein": ["A"], "name": ["a"]})))
    with pytest.raises(DataError, match="no 'protein' column"):
        read_embedding(_write(tmp_path, "anon.csv", pd.DataFrame({"gene": ["A"], "x": [1.0]})))
    with pytest.raises(DataError, match="no protein id"):
        read_embedding(_write(tmp_path, "blank.csv", pd.DataFrame({"protein": ["A", None], "x": [1.0, 2.0]})))


# --------------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def proteome():
    proteins = synthetic_proteome(200, seed=5)
    return proteins, proteome_standards(proteins)


def _user_table(proteins, seed=0):
    """A user's embedding: protein, dim_1 ... dim_6 (localization multi-hot plus noise), and a text column."""
    hot = proteins["localization"].str.get_dummies(sep=";").to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    X = np.hstack([hot, np.zeros((len(hot), max(0, 6 - hot.shape[1])))])[:, :6] + rng.normal(0, 0.3, (len(hot), 6))
    table = pd.DataFrame(X, columns=[f"dim_{j + 1}" for j in range(6)])
    table.insert(0, "protein", proteins["protein"].to_numpy())
    table["source"] = "lab"
    return table


def test_cli_map_on_a_user_table(tmp_path, capsys, proteome, standards_folder):
    proteins, standards = proteome
    folder = standards_folder({k: standards[k] for k in ("compartments", "complexes")})
    path = _write(tmp_path, "mine.csv", _user_table(proteins).assign(score=1.0))
    out = tmp_path / "map.json"
    assert main(["evaluate", "--embeddings", str(path), "--standards", str(folder), "--metric", "map",
                 "--feature-prefix", "dim_", "--null-size", "300", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mAP" in text and "compartments" in text and "6 features" in text
    results = json.loads(out.read_text())
    assert results["metric"] == "map" and results["null_size"] == 300
    assert results["features"] == [f"dim_{j + 1}" for j in range(6)]
    assert set(results["map"]) == set(results["fraction_retrieved"]) == {"compartments", "complexes"}
    assert all(set(r) == set(MAP_COLUMNS) for r in results["results"])
    expected = mean_average_precision({"mine.csv": read_embedding(path, feature_prefix="dim_")},
                                      {k: standards[k] for k in ("compartments", "complexes")}, null_size=300,
                                      progress=False).set_index("standard")
    for name in ("compartments", "complexes"):
        assert results["map"][name] == pytest.approx(expected.loc[name, "map"])
        assert results["fraction_retrieved"][name] == pytest.approx(expected.loc[name, "fraction_retrieved"])
    assert results["fraction_retrieved"]["compartments"] > 0.5


def test_cli_ap_on_a_user_table_with_named_features(tmp_path, capsys, proteome, standards_folder):
    proteins, standards = proteome
    folder = standards_folder({"compartments": standards["compartments"]})
    path = _write(tmp_path, "mine.csv", _user_table(proteins))
    out = tmp_path / "ap.json"
    assert main(["evaluate", "--embeddings", str(path), "--standards", str(folder), "--features", "dim_1,dim_2,dim_3",
                 "--n-boot", "0", "--out", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert results["metric"] == "ap" and results["features"] == ["dim_1", "dim_2", "dim_3"]
    assert set(results["results"][0]) == set(RESULT_COLUMNS)
    X = _user_table(proteins)[["dim_1", "dim_2", "dim_3"]].to_numpy()
    expected = functional_ap((proteins["protein"], X), standards["compartments"])["ap"]
    assert results["results"][0]["ap"] == pytest.approx(expected)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: pd.concat([t, t.iloc[:2]]), "2 proteins have several rows"),
    (lambda t: t.assign(dim_1=np.where(t.index == 3, np.nan, t["dim_1"])), "NaN or infinite values"),
    (lambda t: t.assign(**{f"dim_{j + 1}": np.where(t.index == 3, 0.0, t[f"dim_{j + 1}"]) for j in range(6)}),
     "all-zero vector"),
])
def test_cli_errors_name_the_file_and_proteins(tmp_path, capsys, proteome, change, message, standards_folder):
    proteins, standards = proteome
    folder = standards_folder({"complexes": standards["complexes"]})
    table = _user_table(proteins)
    path = _write(tmp_path, "broken.csv", change(table))
    for metric in ("ap", "map"):
        assert main(["evaluate", "--embeddings", str(path), "--standards", str(folder), "--metric", metric]) == 2
        err = capsys.readouterr().err
        assert "broken.csv" in err and message in err and "Traceback" not in err
        shown = table["protein"].iloc[:2].tolist() if "several" in message else [table["protein"].iloc[3]]
        assert all(p in err for p in shown)
    assert main(["evaluate", "--embeddings", str(path), "--standards", str(folder), "--features", "dim_1,nope"]) == 2
    assert "nope" in capsys.readouterr().err
