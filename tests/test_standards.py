"""Functional annotation standards: readers on tiny files, filtering, and the real standards."""

import logging

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.standards import (
    HUH2003_COMPARTMENTS,
    ROOT_TERMS,
    STANDARD_COLUMNS,
    filter_terms,
    huh2003_standard,
    load_standards,
    load_yeast_standards,
    read_complexes,
    read_go_slim,
    read_hpa_locations,
    read_huh2003,
    read_sgd_features,
    read_sgd_pathways,
    read_standard,
    standard_sizes,
    validate_orfs,
)
from protrep.errors import DataError

GO_SLIM = (
    "YAL001C\tTFC3\tS000000001\tC\tnucleus\tGO:0005634\tORF|Verified\n"
    "YAL001C\tTFC3\tS000000001\tC\tnucleus\tGO:0005634\tORF|Verified\n"
    "YAL002W\tVPS8\tS000000002\tC\tendosome\tGO:0005768\tORF|Verified\n"
    "YAL003W\tEFB1\tS000000003\tC\tnucleus\tGO:0005634\tORF|Uncharacterized\n"
    "YAL003W\tEFB1\tS000000003\tC\tcellular component\tGO:0005575\tORF|Uncharacterized\n"
    "YAL003W\tEFB1\tS000000003\tP\ttranslation\tGO:0006412\tORF|Verified\n"
    "CPX-1015\tMET4 complex\tS000217642\tC\tnucleus\tGO:0005634\tprotein complex\n"
    "snR10\tSNR10\tS000006479\tC\tnucleolus\tGO:0005730\tsnoRNA_gene\n"
)

# SGD_features.tab layout: 16 columns; CR line endings as in the reference copy.
FEATURES = "\r".join([
    "SGDID\tType\tQualifier\tName\tGene\tAlias\tParent\tSecondary\tChromosome\tStart\tStop\tStrand\t"
    "GeneticPosition\tCoordVersion\tSeqVersion\tDescription",
    "S1\tORF\tVerified\tYLR372W\tELO3\tSUR4|fatty acid elongase ELO3|APA1\tchromosome 12\t\t12\t1\t2\tW\t\t\t\tdesc",
    "S2\tORF\tVerified\tYGL234W\t\"ADE5,7\"\tbifunctional synthase\tchromosome 7\t\t7\t1\t2\tC\t\t\t\tdesc",
    "S3\tORF\tVerified\tYKL113C\tRAD27\tFEN1|RTH1\tchromosome 11\t\t11\t1\t2\tC\t\t\t\tdesc",
    "S4\tORF\tVerified\tYCR034W\tELO2\tFEN1|VBM2\tchromosome 3\t\t3\t1\t2\tW\t\t\t\tdesc",
    "S5\tORF\tDubious\tYER068C-A\t\t\tchromosome 5\t\t5\t1\t2\tC\t\t\t\t",
    "S6\tCDS\t\t\t\t\tYLR372W\t\t12\t1\t2\tW\t\t\t\t",
]) + "\r"

PATHWAYS = (
    "sphingolipid biosynthesis\tElongase\t2.3.1.199\tSUR4\tPMID:1\n"
    "sphingolipid biosynthesis\tElongase\t2.3.1.199\tFEN1\tPMID:1\n"
    "sphingolipid biosynthesis\tElongase\t2.3.1.199\tELO3\tPMID:1\n"
    "purine biosynthesis\tsynthase\t6.3.3.1\tAde5,7\tPMID:2\n"
    "purine biosynthesis\tsynthase\t6.3.3.1\tNOTAGENE\tPMID:2\n"
    "purine biosynthesis\tother (Pathway)\t\t\t\n"
)

HPA = (
    "Gene\tGene name\tReliability\tValidated\tSupported\tApproved\tUncertain\tGO id\n"
    "ENSG1\tA1CF\tSupported\t\tNucleoplasm\t\t\tNucleoplasm (GO:0005654)\n"
    "ENSG2\tAAAS\tApproved\t\t\tCentrosome;Cytosol\t\tx\n"
    "ENSG3\tTSPAN6\tValidated\tCytosol\t\t\tNucleoli\tx\n"
    "ENSG4\tSCYL3\tUncertain\t\t\t\tMicrotubules\tx\n"
)


def write(path, text, newline=""):
    with open(path, "w", newline=newline) as f:
        f.write(text)
    return path


def assert_data_error(excinfo, *parts):
    message = str(excinfo.value)
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"


def huh_csv(rows):
    header = ["yORF", "gene name", "GFP tagged?", "GFP visualized?", "abundance", "ambiguous",
              *HUH2003_COMPARTMENTS]
    lines = [",".join(f'"{h}"' if " " in h else h for h in header)]
    for orf, gene, abundance, places in rows:
        flags = ["T" if c in places else "F" for c in ["ambiguous", *HUH2003_COMPARTMENTS]]
        lines.append(",".join([orf, gene, "tagged", "visualized", abundance, *flags]))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- readers

def test_go_slim_aspect_and_feature_types(tmp_path):
    file = write(tmp_path / "go_slim_mapping.tab", GO_SLIM)
    c = read_go_slim(file, "C")
    assert list(c.columns) == STANDARD_COLUMNS
    assert c.values.tolist() == [["cellular component", "YAL003W"], ["endosome", "YAL002W"],
                                 ["nucleus", "YAL001C"], ["nucleus", "YAL003W"]]
    assert read_go_slim(file, "P").values.tolist() == [["translation", "YAL003W"]]
    with pytest.raises(ValueError, match="aspect"):
        read_go_slim(file, "X")


def test_go_slim_bad_files(tmp_path):
    bad = write(tmp_path / "six_columns.tab", GO_SLIM + "YAL009W\tSPO7\tS9\tC\tnucleus\tGO:1\n")
    with pytest.raises(DataError) as e:
        read_go_slim(bad)
    assert_data_error(e, "six_columns.tab", "line 9", "6 tab-separated columns", "expected 7")
    with pytest.raises(DataError) as e:
        read_go_slim(write(tmp_path / "empty.tab", "\n\n"))
    assert_data_error(e, "empty.tab", "empty")
    with pytest.raises(DataError) as e:
        read_go_slim(tmp_path / "missing.tab")
    assert_data_error(e, "missing.tab", "no such file")


def test_complexes(tmp_path):
    file = write(tmp_path / "complexes.txt", "ydr009w\tyml051w\typl248c\n\nybl103c\tyol067c\tybl103c\t\n")
    table = read_complexes(file)
    assert table.values.tolist() == [["complex_1", "YDR009W"], ["complex_1", "YML051W"], ["complex_1", "YPL248C"],
                                     ["complex_3", "YBL103C"], ["complex_3", "YOL067C"]]
    with pytest.raises(DataError) as e:
        read_complexes(write(tmp_path / "nothing.txt", ""))
    assert_data_error(e, "nothing.txt", "empty")
    with pytest.raises(DataError) as e:
        read_complexes(write(tmp_path / "spaces.txt", "ydr009w yml051w\n"))
    assert_data_error(e, "spaces.txt", "line 1")


def test_sgd_features_cr_endings_quotes_aliases(tmp_path):
    mapping = read_sgd_features(write(tmp_path / "SGD_features.tsv", FEATURES))
    assert mapping["YLR372W"] == "YLR372W" and mapping["ELO3"] == "YLR372W"
    assert mapping["SUR4"] == "YLR372W" and mapping["APA1"] == "YLR372W"
    assert mapping["ADE5,7"] == "YGL234W"
    assert mapping["YER068C-A"] == "YER068C-A"
    assert "FEN1" not in mapping  # alias of two ORFs: ambiguous, dropped
    assert "FATTY ACID ELONGASE ELO3" not in mapping
    with pytest.raises(DataError) as e:
        read_sgd_features(write(tmp_path / "short.tab", "S1\tORF\tVerified\tYAL001C\n"))
    assert_data_error(e, "short.tab", "line 1", "expected 16")


def test_sgd_pathways_mapping_and_unmapped(tmp_path, caplog):
    features = write(tmp_path / "SGD_features.tsv", FEATURES)
    file = write(tmp_path / "pathways.tab", PATHWAYS)
    with caplog.at_level(logging.WARNING, logger="protrep.data.standards"):
        table = read_sgd_pathways(file, features)
    assert table.values.tolist() == [["purine biosynthesis", "YGL234W"], ["sphingolipid biosynthesis", "YLR372W"]]
    assert table.attrs["n_unmapped"] == 2 and table.attrs["unmapped"] == ["FEN1", "NOTAGENE"]
    assert "NOTAGENE" in caplog.text and "pathways.tab" in caplog.text
    with pytest.raises(DataError) as e:
        read_sgd_pathways(write(tmp_path / "four.tab", "p\te\t1.1\tELO3\n"), features)
    assert_data_error(e, "four.tab", "expected 5")


def test_hpa_locations(tmp_path):
    table = read_hpa_locations(write(tmp_path / "subcellular_location.tsv", HPA))
    assert table.values.tolist() == [["Centrosome", "AAAS"], ["Cytosol", "AAAS"], ["Cytosol", "TSPAN6"],
                                     ["Nucleoplasm", "A1CF"]]  # Uncertain locations left out
    with_uncertain = read_hpa_locations(tmp_path / "subcellular_location.tsv",
                                        reliability=("Validated", "Uncertain"))
    assert set(with_uncertain["protein"]) == {"TSPAN6", "SCYL3"}
    newer = write(tmp_path / "new.tsv", "Gene\tGene name\tMain location\tAdditional location\n"
                                        "E1\tG1\tNucleoli\tCytosol;Vesicles\n")
    assert read_hpa_locations(newer)["term"].tolist() == ["Cytosol", "Nucleoli", "Vesicles"]
    with pytest.raises(DataError) as e:
        read_hpa_locations(write(tmp_path / "nogene.tsv", "Gene\tLocation\nE1\tCytosol\n"))
    assert_data_error(e, "nogene.tsv", "Gene name")


def test_huh2003(tmp_path):
    file = write(tmp_path / "huh.csv", huh_csv([("YAL001C", "TFC3", "125", {"cytoplasm", "nucleus"}),
                                                 ("yal002w", "", '"not visualized"', {"ambiguous", "endosome"})]))
    table = read_huh2003(file)
    assert table.index.tolist() == ["YAL001C", "YAL002W"]
    assert table.loc["YAL001C", "abundance"] == 125 and pd.isna(table.loc["YAL002W", "abundance"])
    assert table.loc["YAL002W", "gene"] == "" and bool(table.loc["YAL002W", "ambiguous"])
    assert table[list(HUH2003_COMPARTMENTS)].to_numpy().sum() == 3
    assert huh2003_standard(table).values.tolist() == [["cytoplasm", "YAL001C"], ["endosome", "YAL002W"],
                                                       ["nucleus", "YAL001C"]]
    with pytest.raises(DataError) as e:
        read_huh2003(write(tmp_path / "cols.csv", "yORF,abundance\nYAL001C,1\n"))
    assert_data_error(e, "cols.csv", "missing columns", "mitochondrion")
    bad = huh_csv([("YAL001C", "TFC3", "1", set())]).replace(",F,", ",maybe,", 1)
    with pytest.raises(DataError) as e:
        read_huh2003(write(tmp_path / "flag.csv", bad))
    assert_data_error(e, "flag.csv", "'maybe'", "T or F")


def test_read_standard(tmp_path):
    file = write(tmp_path / "fine.tsv", "term\tprotein\nb\tP2\na\tP1\nb\tP2\nb\tP1\n")
    assert read_standard(file).values.tolist() == [["a", "P1"], ["b", "P1"], ["b", "P2"]]
    for name, text, message in [("empty.tsv", "", "empty"), ("header.tsv", "term\tprotein\n", "header only"),
                                ("cols.tsv", "name\tprotein\nx\tP\n", "missing columns ['term']"),
                                ("ragged.tsv", "term\tprotein\na\tb\tc\td\n", "line 2 has 4")]:
        with pytest.raises(DataError) as e:
            read_standard(write(tmp_path / name, text))
        assert_data_error(e, name, message)


# --------------------------------------------------------------------------- filtering, checks

def test_filter_terms_example():
    standard = pd.DataFrame({"term": ["big"] * 4 + ["pair"] * 2 + ["single", "cellular component", "other", "other"],
                             "protein": ["A", "B", "C", "D", "A", "B", "C", "A", "A", "B"]})
    assert set(filter_terms(standard)["term"]) == {"big", "pair"}
    assert set(filter_terms(standard, min_size=1)["term"]) == {"big", "pair", "single"}
    assert set(filter_terms(standard, max_size=3)["term"]) == {"pair"}
    assert set(filter_terms(standard, max_fraction=0.5)["term"]) == {"pair"}
    with pytest.raises(ValueError, match="min_size"):
        filter_terms(standard, min_size=0)
    with pytest.raises(ValueError, match="max_fraction"):
        filter_terms(standard, max_fraction=1.5)
    with pytest.raises(ValueError, match="columns"):
        filter_terms(pd.DataFrame({"x": [1]}))


terms = st.sampled_from(["t1", "t2", "t3", "t4", "other", "biological_process"])
proteins = st.sampled_from([f"P{i}" for i in range(8)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(terms, proteins), min_size=0, max_size=40), st.integers(1, 4),
       st.one_of(st.none(), st.integers(1, 8)), st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_filter_terms_invariants(rows, min_size, max_size, max_fraction):
    standard = pd.DataFrame(rows, columns=STANDARD_COLUMNS).drop_duplicates()
    if max_size is not None and max_size < min_size:
        max_size = min_size
    out = filter_terms(standard, min_size=min_size, max_size=max_size, max_fraction=max_fraction)
    assert list(out.columns) == STANDARD_COLUMNS
    # a subset of the input rows, whole terms kept or dropped
    assert set(map(tuple, out.values)) <= set(map(tuple, standard.values))
    for term, group in out.groupby("term"):
        assert len(group) == (standard["term"] == term).sum()
        assert group["protein"].nunique() >= min_size
        assert max_size is None or group["protein"].nunique() <= max_size
        if max_fraction is not None:
            assert group["protein"].nunique() <= max_fraction * standard["protein"].nunique()
    assert not set(out["term"].str.lower()) & ROOT_TERMS
    # without a fraction limit, filtering twice changes nothing
    if max_fraction is None:
        again = filter_terms(out, min_size=min_size, max_size=max_size)
        pd.testing.assert_frame_equal(again, out)


def test_validate_orfs_lists_unknown_names():
    standard = pd.DataFrame({"term": ["a"] * 3, "protein": ["YAL001C", "BOGUS1", "BOGUS2"]})
    validate_orfs(standard, ["YAL001C", "BOGUS1", "BOGUS2"], "ok.tsv")
    with pytest.raises(DataError) as e:
        validate_orfs(standard, {"YAL001C"}, "complexes.txt")
    assert_data_error(e, "complexes.txt", "2 unknown", "BOGUS1", "BOGUS2")


def test_standard_sizes_by_hand():
    standards = {"s": pd.DataFrame({"term": ["A"] * 3 + ["B"] * 2 + ["C"] * 2,
                                    "protein": ["p1", "p2", "p3", "p3", "p4", "p1", "p2"]}),
                 "empty": pd.DataFrame({"term": [], "protein": []})}
    sizes = standard_sizes(standards)
    # pairs: A gives p1p2 p1p3 p2p3, B gives p3p4, C repeats p1p2 -> 4
    assert sizes.loc["s"].tolist() == [3, 4, 4]
    assert sizes.loc["empty"].tolist() == [0, 0, 0]


# --------------------------------------------------------------------------- folders

def test_load_standards_simulator_and_dataset_folders(tmp_path):
    folder = tmp_path / "ds" / "standards"
    folder.mkdir(parents=True)
    write(folder / "compartment.tsv", "term\tprotein\nc1\tP1\nc1\tP2\nc2\tP3\n")
    write(folder / "complex.tsv", "term\tprotein\nk1\tP1\nk1\tP3\n")
    for where in (folder, tmp_path / "ds"):
        standards = load_standards(where)
        assert sorted(standards) == ["compartment", "complex"]
        assert standards["compartment"]["term"].unique().tolist() == ["c1"]  # c2 has one protein
    with pytest.raises(DataError) as e:
        load_standards(tmp_path / "nowhere")
    assert_data_error(e, "nowhere")
    (tmp_path / "blank").mkdir()
    with pytest.raises(DataError) as e:
        load_standards(tmp_path / "blank")
    assert_data_error(e, "blank", "no standards")


def test_load_yeast_folder_synthetic(tmp_path):
    write(tmp_path / "go_slim_mapping.tab", GO_SLIM)
    write(tmp_path / "SGD_features.tsv", FEATURES)
    write(tmp_path / "sgd_biochemical_pathways.tab", PATHWAYS)
    write(tmp_path / "mips_complexes.txt", "ylr372w\tygl234w\n")
    standards = load_standards(tmp_path, min_size=1)
    assert sorted(standards) == ["compartments", "complexes", "pathways", "processes"]
    assert "cellular component" not in set(standards["compartments"]["term"])
    assert standards["complexes"]["protein"].tolist() == ["YGL234W", "YLR372W"]
    (tmp_path / "mips_complexes.txt").unlink()
    with pytest.raises(DataError) as e:
        load_yeast_standards(tmp_path)
    assert_data_error(e, str(tmp_path), "mips_complexes.txt")


# --------------------------------------------------------------------------- real files

@pytest.fixture(scope="module")
def yeast(shared_data):
    return load_yeast_standards(shared_data / "standards" / "yeast")


def test_real_yeast_standards(yeast, shared_data):
    folder = shared_data / "standards" / "yeast"
    sizes = standard_sizes(yeast)
    assert sizes.loc["complexes", "n_terms"] == 214
    assert 1000 < sizes.loc["complexes", "n_proteins"] < 1500
    assert 100 < sizes.loc["pathways", "n_terms"] < 187
    assert 400 < sizes.loc["pathways", "n_proteins"] <= 547
    assert 300 < sizes.loc["compartments", "n_terms"] < 600
    assert 100 < sizes.loc["processes", "n_terms"] < 200
    assert sizes.loc["compartments", "n_proteins"] > 4000
    assert (sizes["n_positive_pairs"] > 0).all()
    for name, table in yeast.items():
        assert list(table.columns) == STANDARD_COLUMNS
        assert not table.duplicated().any()
        assert (table["protein"] == table["protein"].str.upper()).all()
        assert not set(table["term"].str.lower()) & ROOT_TERMS
    mapping = read_sgd_features(folder / "SGD_features.tsv")
    validate_orfs(yeast["pathways"], set(mapping.values()), folder / "sgd_biochemical_pathways.tab")
    validate_orfs(yeast["compartments"], set(mapping.values()), folder / "go_slim_mapping.tab")
    assert mapping["ADE5,7"] == "YGL234W" and mapping["SUR4"] == "YLR372W"
    # the toy crops' proteins are annotated as the data README says
    compartments = yeast["compartments"]
    aac1 = set(compartments.loc[compartments["protein"] == mapping["AAC1"], "term"])
    assert "mitochondrion" in aac1


def test_real_other_standards(shared_data):
    folder = shared_data / "standards"
    assert read_complexes(folder / "yeast" / "bt409_complexes.txt")["term"].nunique() == 409
    huh = read_huh2003(folder / "yeast" / "huh2003_yeastgfp.csv")
    assert huh.shape[0] == 4155 and set(HUH2003_COMPARTMENTS) <= set(huh.columns)
    assert huh2003_standard(huh)["term"].nunique() == 22
    hpa = read_hpa_locations(folder / "hpa" / "subcellular_location.tsv")
    assert 10_000 < hpa["protein"].nunique() < 12_003
    assert hpa.loc[hpa["protein"] == "A1CF", "term"].tolist() == ["Nucleoplasm"]
