"""The book on a user's own screen: the real WT2 crops, real labels and the real yeast standards.

The reference data's 877 real crops of three yeast proteins (``yeast-crops``) are given to
every chapter as ``dataset``, with a label table built here (Huh et al. 2003 for AAC1 and
AAH1; SGD GO-slim component terms for AAP1, which Huh 2003 lacks) and the real yeast
standards folder. The first chapter converts the crop tree once into
``<data_dir>/user-yeast-crops``; the others reuse it. The quick profile with a quarter of its
training compute (``budget_tflop=0.01``) keeps the run under three minutes on two cores.

Checked: every notebook ran and wrote its results JSON naming the dataset; every part that
needs the simulator, and every step three proteins are too few for, says why in the
rendered output and in the JSON's ``skipped``; no chapter states a verdict on three
proteins; the runs on the user's data never take the simulated book's run names.
Without ``PROTREP_SHARED_DATA`` the tests skip.
"""

import json
import time
from pathlib import Path

import pandas as pd
import pytest

import run_book  # scripts/ is put on sys.path by conftest.py

ROOT = Path(__file__).resolve().parents[1]
PROTEINS = ("AAC1", "AAH1", "AAP1")
NAME = "user-yeast-crops"
# what each chapter must skip on three real proteins, and say why
EXPECTED_SKIPS = {
    "01_data": {"segmentation", "segmentation_field", "realism", "real_beside_simulated"},
    "02_cnn": {"real_wt2", "quality_curves", "test_accuracy"},
    "03_autoencoder": {"real_wt2", "quality_curves", "probe"},
    "04_evaluation": {"references", "huh2003", "heldout_ap", "tsne"},
    "05_background": {"native", "strict", "published"},
    "06_hpa": {"hpa"},
    "07_what_decides": {"sweep"},
}


def _labels_csv(shared, path):
    """``protein,localization`` for the three crop proteins: Huh 2003 where it has them, else GO-slim C terms."""
    from protrep.data.convert import match_labels, read_labels
    from protrep.data.proteome import CLASSES

    huh, _ = read_labels(shared / "standards" / "yeast" / "huh2003_yeastgfp.csv")
    _, rows, _ = match_labels(PROTEINS, huh, key="gene")
    go = pd.read_csv(shared / "standards" / "yeast" / "go_slim_mapping.tab", sep="\t", header=None, dtype=str)
    table = []
    for protein in PROTEINS:
        if protein in rows and huh["localization"].iat[rows[protein]]:
            localization = huh["localization"].iat[rows[protein]]
        else:
            terms = set(go.loc[(go[1].str.upper() == protein) & (go[3] == "C"), 4])
            localization = ";".join(c for c in CLASSES if c in terms)
        table.append({"protein": protein, "localization": localization})
    pd.DataFrame(table).to_csv(path, index=False)
    return pd.DataFrame(table).set_index("protein")["localization"]


def _outputs(notebook):
    """All text a notebook's code cells printed or displayed."""
    texts = []
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                texts.append(f"ERROR {out['ename']}: {out['evalue']}")
            text = out.get("text") or out.get("data", {}).get("text/markdown") or ""
            texts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(texts)


@pytest.fixture(scope="module")
def labels(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    return path, _labels_csv(shared_data, path)


def test_labels_come_from_huh_and_go_slim(labels):
    _, table = labels
    assert table["AAC1"] == "mitochondrion"  # Huh 2003
    assert set(table["AAH1"].split(";")) == {"cytoplasm", "nucleus"}  # Huh 2003
    assert set(table["AAP1"].split(";")) == {"cytoplasm", "nucleus"}  # GO-slim: Huh 2003 lacks it


def test_user_dataset_converts_once_and_again_after_a_change(shared_data, labels, tmp_path):
    from protrep.data.convert import PARAMS_FILE
    from protrep.userdata import user_dataset

    path, _ = labels
    out = user_dataset(shared_data / "yeast-crops", tmp_path, labels=path, workers=1)
    assert out == tmp_path / NAME and (out / "dataset.json").is_file()
    stamp = (out / PARAMS_FILE).stat().st_mtime_ns
    assert user_dataset(shared_data / "yeast-crops", tmp_path, labels=path, workers=1) == out
    assert (out / PARAMS_FILE).stat().st_mtime_ns == stamp, "a finished conversion of the same source was redone"
    assert user_dataset(out, tmp_path) == out  # a protrep-cells folder is read where it is
    other = tmp_path / "other.csv"
    other.write_text("protein,localization\nAAC1,mitochondrion\n")
    user_dataset(shared_data / "yeast-crops", tmp_path, labels=other, workers=1)
    assert json.loads((out / PARAMS_FILE).read_text())["labels"] == str(other.resolve())


def test_standards_are_matched_through_gene_names(shared_data, labels, tmp_path):
    from protrep.userdata import book_data

    path, _ = labels
    data = book_data("quick", tmp_path, dataset=shared_data / "yeast-crops", labels=path,
                     standards=shared_data / "standards" / "yeast")
    data.ensure(workers=1)
    ds = data.load()
    proteins = data.proteins(ds)
    assert len(ds) == 877 and sorted(proteins["protein"]) == list(PROTEINS)
    standards = data.load_standards(proteins)
    compartments = standards["compartments"]
    assert set(PROTEINS) <= set(compartments["protein"])  # the standards are keyed by ORF, the crops by gene
    assert data.check(ds, proteins, standards) is not None  # three proteins: not interpretable


def test_run_book_makes_the_data_paths_absolute(tmp_path):
    given = {"dataset": "crops", "labels": "../labels.csv", "standards": None, "data_dir": "../data", "seed": 1}
    made = run_book.absolute_paths(given, cwd=tmp_path / "here")
    assert made["dataset"] == str(tmp_path / "here" / "crops") and made["labels"] == str(tmp_path / "labels.csv")
    assert made["standards"] is None and made["data_dir"] == "../data" and made["seed"] == 1  # book/-relative


@pytest.fixture(scope="module")
def book(shared_data, labels, tmp_path_factory):
    """Run every notebook (quick profile, a quarter of its training compute) on the real crops."""
    tmp = tmp_path_factory.mktemp("book-real")
    parameters = {"profile": "quick", "out_dir": str(tmp / "results"), "data_dir": str(tmp / "data"),
                  "dataset": str(shared_data / "yeast-crops"), "labels": str(labels[0]),
                  "standards": str(shared_data / "standards" / "yeast"), "budget_tflop": 0.01}
    start = time.perf_counter()
    timings = run_book.run_notebooks(run_book.toc_notebooks(ROOT), tmp / "notebooks", parameters=parameters, root=ROOT)
    print("book on the real crops:", ", ".join(f"{p.name} {s:.0f} s" for p, s in timings),
          f"; total {time.perf_counter() - start:.0f} s")
    return {"tmp": tmp, "timings": timings}


@pytest.mark.book
def test_every_notebook_ran_and_names_the_dataset(book):
    assert len(book["timings"]) == len(EXPECTED_SKIPS)
    for executed, _ in book["timings"]:
        results = json.loads((book["tmp"] / "results" / f"{executed.stem}.json").read_text())
        assert results["dataset"] == NAME, executed.stem
        assert "ERROR" not in _outputs(executed), executed.stem


@pytest.mark.book
def test_skipped_parts_say_why(book):
    for executed, _ in book["timings"]:
        stem = executed.stem
        skipped = json.loads((book["tmp"] / "results" / f"{stem}.json").read_text())["skipped"]
        assert EXPECTED_SKIPS[stem] <= set(skipped), (stem, sorted(skipped))
        shown = _outputs(executed)
        for key, why in skipped.items():
            assert len(why) > 40 and why in shown, (stem, key)


@pytest.mark.book
def test_no_verdict_on_three_proteins(book):
    results = {p.stem: json.loads((book["tmp"] / "results" / f"{p.stem}.json").read_text()) for p, _ in book["timings"]}
    for stem in ("01_data", "02_cnn", "03_autoencoder", "04_evaluation", "05_background"):
        assert "not interpretable" in _outputs(book["tmp"] / "notebooks" / f"{stem}.ipynb"), stem
    assert results["04_evaluation"]["claim_holds"] is None
    assert results["04_evaluation"]["pifia_ahead_of_deeploc"] is None
    assert results["03_autoencoder"]["supervised_vs_probes"] is None
    assert results["01_data"]["n_proteins"] == 3 and results["01_data"]["n_cells"] == 877
    assert results["01_data"]["seg_recall_sim"] is None and results["01_data"]["realism"] == {}


@pytest.mark.book
def test_runs_on_user_data_keep_their_own_names(book):
    runs = sorted(p.name for p in (book["tmp"] / "data" / "runs").iterdir())
    assert runs and all(NAME in name for name in runs), runs
