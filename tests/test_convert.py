"""``protrep convert``: every source to the sharded format, resumable, with labels and a split."""

import json
import socket
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

import protrep.data.convert as convert_module
from protrep.cli import main
from protrep.data.convert import CONVERT_FORMATS, convert, detect_source_format, match_labels, read_labels
from protrep.data.dataset import CellDataset, load_dataset, load_proteins, write_dataset
from protrep.data.hpa import read_hpa_kaggle
from protrep.data.proteome import CLASSES
from protrep.data.readers import read_crop_folder, read_deeploc_hdf5, read_hpa_crops
from protrep.data.shards import done_shards
from protrep.data.standards import HUH2003_COMPARTMENTS
from protrep.errors import DataError

LAYOUT = {"YAL001C": ["cell_2", "cell_10", "cell_1"], "AAC1": ["a", "b"], "zzz": ["x_1", "x_2", "x_3", "x_4"],
          "P10": ["c"], "P9": ["c", "d"]}


def write_crops(root, layout=LAYOUT, *, shape=(6, 5), dtype=np.float32, seed=0):
    """``<root>/<protein>/<name>_{gfp,rfp}.tif`` with random pixels (float in [0, 0.2] or integer counts)."""
    rng = np.random.default_rng(seed)
    for protein, names in layout.items():
        (root / protein).mkdir(parents=True, exist_ok=True)
        for name in names:
            for channel in ("gfp", "rfp"):
                pixels = (0.2 * rng.random(shape)).astype(dtype) if np.dtype(dtype).kind == "f" else \
                    rng.integers(0, 4000, shape).astype(dtype)
                tifffile.imwrite(root / protein / f"{name}_{channel}.tif", pixels)
    (root / ".hidden").mkdir(exist_ok=True)
    tifffile.imwrite(root / ".hidden" / "q_gfp.tif", np.zeros(shape, dtype))  # ignored, as by the reader
    (root / "notes.txt").write_text("not a crop\n")
    return root


def write_huh(path, rows):
    """A tiny Huh 2003 yeastgfp table: rows are (ORF, gene, [compartments])."""
    header = ["yORF", "gene name", "GFP tagged?", "GFP visualized?", "abundance", "ambiguous", *HUH2003_COMPARTMENTS]
    flags = [["T" if c in comps else "F" for c in HUH2003_COMPARTMENTS] for _, _, comps in rows]
    table = [[orf, gene, "tagged", "visualized", "100", "F", *f] for (orf, gene, _), f in zip(rows, flags)]
    pd.DataFrame(table, columns=header).to_csv(path, index=False)
    return path


def shard_files(root):
    """Bytes of every file of the finished dataset that does not depend on how it was written."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- sources

def test_crop_tree_equals_read_crop_folder(tmp_path):
    src = write_crops(tmp_path / "crops")
    assert detect_source_format(src) == "crop-folder"
    summary = convert(src, tmp_path / "out", shard_size=4, workers=1, progress=False)
    assert summary["finalized"] and summary["n_shards"] == 3 and summary["shards_written"] == 3
    ds, ref = load_dataset(tmp_path / "out"), read_crop_folder(src)
    assert ds.info["version"] == 2 and ds.images.dtype == np.float32 and ds.channels == ("gfp", "rfp")
    np.testing.assert_array_equal(np.asarray(ds.images), ref.images)
    assert ds.meta["protein"].tolist() == ref.meta["protein"].tolist()
    assert ds.meta["name"].tolist() == ref.meta["name"].tolist()
    assert list(dict.fromkeys(ds.meta["protein"])) == ["AAC1", "P9", "P10", "YAL001C", "zzz"]  # natural order
    assert ds.meta.loc[ds.meta["protein"] == "YAL001C", "name"].tolist() == ["cell_1", "cell_2", "cell_10"]
    assert set(ds.meta["split"]) <= {"train", "val", "test"}
    assert ds.meta.groupby("protein")["split"].nunique().max() == 1  # never split within a protein
    params = json.loads((tmp_path / "out" / "convert.json").read_text())
    assert params["format"] == "crop-folder" and params["n_cells"] == 12 and params["shard_size"] == 4


def test_integer_crops_stay_uint16_and_mixed_types_are_refused(tmp_path):
    src = write_crops(tmp_path / "crops", {"A": ["1", "2"], "B": ["1"]}, dtype=np.uint16)
    convert(src, tmp_path / "out", workers=1, progress=False)
    ds = load_dataset(tmp_path / "out")
    assert ds.images.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(ds.images), read_crop_folder(src).images)
    tifffile.imwrite(src / "B" / "1_rfp.tif", np.zeros((6, 5), np.float32))
    with pytest.raises(DataError, match=r"B/1_rfp.tif: float32 pixels"):
        convert(src, tmp_path / "out2", workers=2, progress=False)  # raised in a worker, named here


def test_crop_tree_errors_name_the_file(tmp_path):
    src = write_crops(tmp_path / "crops", {"A": ["1", "2"]})
    (src / "A" / "2_rfp.tif").unlink()
    with pytest.raises(DataError, match=r"A: 2_gfp.tif has no partner 2_rfp.tif"):
        convert(src, tmp_path / "out", workers=1, progress=False)
    tifffile.imwrite(src / "A" / "2_rfp.tif", np.zeros((7, 5), np.float32))
    with pytest.raises(DataError, match=r"2_rfp.tif: crop shape \(7, 5\) differs"):
        convert(src, tmp_path / "out", workers=1, progress=False)
    with pytest.raises(DataError, match="no such file or folder"):
        convert(tmp_path / "nowhere", tmp_path / "out3", progress=False)


def test_deeploc_hdf5_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n, side, classes = 11, 8, ["ER", "Bud", "Nucleus"]
    onehot = np.zeros((n, 3), np.uint8)
    onehot[np.arange(n - 1), np.arange(n - 1) % 3] = 1  # the last cell has no label
    file = tmp_path / "d.hdf5"
    with h5py.File(file, "w") as f:
        f.create_dataset("data1", data=rng.uniform(0, 100, (n, 2 * side * side)))
        f.create_dataset("Index1", data=onehot)
        f.create_dataset("protein", data=np.array([f"P{i % 4}".encode() for i in range(n)]))
        f.attrs["Index1_columns"] = np.array([c.encode() for c in classes])
        f.attrs["data1_columns"] = "GFP channel 8x8, RFP channel 8x8 flattened"
    assert detect_source_format(file) == "deeploc-hdf5"
    convert(file, tmp_path / "out", shard_size=3, workers=1, progress=False)
    ds, ref = load_dataset(tmp_path / "out"), read_deeploc_hdf5(file)
    np.testing.assert_array_equal(np.asarray(ds.images), ref.images)
    assert ds.images.dtype == np.float32 and ds.classes == ref.classes and ds.channels == ref.channels
    for column in ("protein", "label", "localization"):
        assert ds.meta[column].tolist() == ref.meta[column].tolist()


def test_hpa_crop_folder(tmp_path):
    for folder, names in {"A1CF_1_B2": ["c1", "c2"], "AAAS_3": ["c1"]}.items():
        (tmp_path / "hpa" / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            for j, channel in enumerate(("red", "green", "blue")):
                pixels = np.full((4, 4), i + j / 4, np.float32)
                tifffile.imwrite(tmp_path / "hpa" / folder / f"{name}_{channel}.tif", pixels)
    assert detect_source_format(tmp_path / "hpa") == "hpa-crops"
    convert(tmp_path / "hpa", tmp_path / "o1", workers=1, progress=False)
    ds, ref = load_dataset(tmp_path / "o1"), read_hpa_crops(tmp_path / "hpa")
    np.testing.assert_array_equal(np.asarray(ds.images), ref.images)
    for column in ("protein", "sample", "name"):
        assert ds.meta[column].astype(str).tolist() == ref.meta[column].astype(str).tolist()


def test_hpa_kaggle_layout(tmp_path):
    (tmp_path / "kaggle" / "train").mkdir(parents=True)
    pd.DataFrame({"Id": ["a1", "b2"], "Target": ["0 25", "3"]}).to_csv(tmp_path / "kaggle" / "train.csv", index=False)
    for k, image_id in enumerate(("a1", "b2")):
        for j, channel in enumerate(("red", "green", "blue", "yellow")):
            image = Image.fromarray(np.full((8, 8), 10 * k + j, np.uint8))
            image.save(tmp_path / "kaggle" / "train" / f"{image_id}_{channel}.png")
    assert detect_source_format(tmp_path / "kaggle") == "hpa-kaggle"
    convert(tmp_path / "kaggle", tmp_path / "o2", workers=1, progress=False)
    ds, ref = load_dataset(tmp_path / "o2"), read_hpa_kaggle(tmp_path / "kaggle")
    assert ds.images.dtype == np.uint16 and ds.classes == ref.classes  # 8-bit PNGs kept as integers
    np.testing.assert_array_equal(np.asarray(ds.images), ref.images)
    assert ds.meta["localization"].tolist() == ref.meta["localization"].tolist()


def test_protrep_cells_are_resharded(tmp_path):
    rng = np.random.default_rng(2)
    cells = pd.DataFrame({"protein": list("AABBC"), "plate": 1, "well": "A01", "field": 0, "cell": range(5),
                          "x": 1.5, "y": 2.5, "label": [0, 0, 1, 1, -1], "localization": ["ER", "ER", "nucleus",
                          "nucleus", ""], "split": ["train", "train", "val", "val", "test"]})
    proteins = pd.DataFrame({"protein": list("ABC"), "localization": ["ER", "nucleus", ""],
                             "split": ["train", "val", "test"], "abundance": [1.0, 2.0, 3.0]})
    images, masks = rng.integers(0, 999, (5, 2, 4, 4)).astype(np.uint16), rng.random((5, 4, 4)) > 0.5
    write_dataset(tmp_path / "v1", images, masks, cells, proteins, channels=("gfp", "rfp"), classes=("ER", "nucleus"),
                  standards={"compartments": pd.DataFrame({"term": ["ER"], "protein": ["A"]})})
    convert(tmp_path / "v1", tmp_path / "o3", shard_size=2, workers=1, progress=False)
    ds = load_dataset(tmp_path / "o3")
    assert ds.images.dtype == np.uint16 and len(ds.images.parts) == 3
    np.testing.assert_array_equal(np.asarray(ds.images), images)
    np.testing.assert_array_equal(np.asarray(ds.masks), masks)
    assert ds.meta["split"].tolist() == cells["split"].tolist()  # a complete split is kept
    assert load_proteins(tmp_path / "o3")["abundance"].tolist() == [1.0, 2.0, 3.0]
    assert (tmp_path / "o3" / "standards" / "compartments.tsv").is_file()
    assert set(CONVERT_FORMATS) == {"crop-folder", "hpa-crops", "deeploc-hdf5", "hpa-kaggle", "protrep-cells"}


# --------------------------------------------------------------------------- resuming

def test_two_jobs_equal_one_go(tmp_path):
    src = write_crops(tmp_path / "crops")
    convert(src, tmp_path / "one", shard_size=3, workers=2, progress=False)
    first = convert(src, tmp_path / "two", shard_size=3, shard=(0, 2), workers=1, progress=False)
    assert not first["finalized"] and first["shards_written"] == 2 and first["shards_missing"] == 2
    assert "2 remain" in first["message"] and "without --shard" in first["message"]
    assert not (tmp_path / "two" / "dataset.json").exists()
    with pytest.raises(DataError, match="unfinished sharded dataset"):
        load_dataset(tmp_path / "two")
    second = convert(src, tmp_path / "two", shard_size=3, shard=(1, 2), workers=1, progress=False)
    assert second["finalized"] and second["shards_written"] == 2
    assert shard_files(tmp_path / "one") == shard_files(tmp_path / "two")
    again = convert(src, tmp_path / "two", shard_size=3, shard=(1, 2), workers=1, progress=False)
    assert again["finalized"] and again["shards_written"] == 0  # a retried array job: nothing to do
    with pytest.raises(FileExistsError, match="finished"):
        convert(src, tmp_path / "two", shard_size=3, workers=1, progress=False)


def test_killed_conversion_resumes_to_the_same_content(tmp_path, monkeypatch):
    src = write_crops(tmp_path / "crops")
    convert(src, tmp_path / "one", shard_size=3, workers=1, progress=False)
    calls, real = [], convert_module.write_shard

    def dies_at_the_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill between shards
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, "write_shard", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        convert(src, tmp_path / "two", shard_size=3, workers=1, progress=False)
    monkeypatch.setattr(convert_module, "write_shard", real)
    assert done_shards(tmp_path / "two") == [0, 1]
    leftover = tmp_path / "two" / "shards" / f".00002.{socket.gethostname().split('.')[0]}.{dead_pid()}.tmp"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"half")
    summary = convert(src, tmp_path / "two", shard_size=3, workers=1, progress=False)
    assert not leftover.exists()
    assert summary["shards_written"] == 2 and summary["finalized"]
    assert shard_files(tmp_path / "one") == shard_files(tmp_path / "two")


def test_resume_with_other_parameters_is_refused(tmp_path):
    src = write_crops(tmp_path / "crops")
    convert(src, tmp_path / "out", shard_size=3, shard=(0, 2), workers=1, progress=False)
    with pytest.raises(DataError, match=r"convert.json: a conversion with other parameters.*shard_size was 3, now 4"):
        convert(src, tmp_path / "out", shard_size=4, shard=(1, 2), workers=1, progress=False)
    with pytest.raises(DataError, match="seed was 0, now 1"):
        convert(src, tmp_path / "out", shard_size=3, seed=1, workers=1, progress=False)
    write_crops(src, {"new": ["n1"]})  # the source changed
    with pytest.raises(DataError, match="n_cells was 12, now 13"):
        convert(src, tmp_path / "out", shard_size=3, workers=1, progress=False)
    with pytest.raises(ValueError, match="cannot be combined"):
        convert(src, tmp_path / "out", shard_size=4, shard=(0, 2), overwrite=True, progress=False)
    summary = convert(src, tmp_path / "out", shard_size=4, overwrite=True, workers=1, progress=False)
    assert summary["finalized"] and summary["n_cells"] == 13 and summary["shards_written"] == 4


def test_overwrite_only_replaces_datasets_and_conversions(tmp_path):
    src = write_crops(tmp_path / "crops", {"A": ["1"], "B": ["1"]})
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious\n")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="holds neither a protrep-cells dataset nor a conversion"):
            convert(src, user, overwrite=overwrite, progress=False)
    assert (user / "thesis.tex").read_text() == "precious\n"
    with pytest.raises(DataError, match="holds, the source"):
        convert(src, tmp_path, overwrite=True, progress=False)
    (tmp_path / "empty").mkdir()
    convert(src, tmp_path / "empty", workers=1, progress=False)
    with pytest.raises(FileExistsError, match="already a finished protrep-cells dataset"):
        convert(src, tmp_path / "empty", workers=1, progress=False)
    assert convert(src, tmp_path / "empty", overwrite=True, workers=1, progress=False)["finalized"]


# --------------------------------------------------------------------------- labels and split

def test_labels_join_and_report(tmp_path):
    src = write_crops(tmp_path / "crops")
    huh = write_huh(tmp_path / "huh.csv", [("YMR056C", "AAC1", ["mitochondrion"]),
                                          ("YAL001C", "TFC3", ["cytoplasm", "nucleus"]),
                                          ("YBR001C", "ZZZ", ["punctate composite"])])
    table, classes = read_labels(huh)
    assert classes == CLASSES and table["primary"].tolist() == ["mitochondrion", "nucleus", ""]
    key, rows, counts = match_labels(["aac1", "YAL001C", "ZZZ"], table)
    assert key == "gene" and counts == {"orf": 1, "gene": 2} and sorted(rows) == ["ZZZ", "aac1"]
    convert(src, tmp_path / "out", labels=huh, label_key="gene", workers=1, progress=False)
    report = json.loads((tmp_path / "out" / "labels_report.json").read_text())
    assert report["key"] == "gene" and report["matched"] == 2 and report["matched_without_class"] == 1
    assert report["unmatched_proteins"] == ["P10", "P9", "YAL001C"]
    assert report["summary"].startswith("labels: 2 of 5 proteins matched by gene; unmatched: P10, P9, YAL001C")
    ds = load_dataset(tmp_path / "out")
    by = ds.meta.groupby("protein").first()
    assert ds.classes == CLASSES and by.loc["AAC1", "localization"] == "mitochondrion"
    assert by.loc["AAC1", "label"] == CLASSES.index("mitochondrion")
    assert by.loc["zzz", "label"] == -1 and by.loc["P9", "localization"] == ""

    generic = tmp_path / "labels.tsv"
    generic.write_text("protein\tlocalization\nyal001c\tnucleus;cytoplasm\nP9\tER\n")
    convert(src, tmp_path / "out2", labels=generic, workers=1, progress=False)
    by = load_dataset(tmp_path / "out2").meta.groupby("protein").first()
    assert by.loc["YAL001C", "localization"] == "cytoplasm;nucleus"  # class order; primary: the first listed
    assert by.loc["YAL001C", "label"] == CLASSES.index("nucleus") and by.loc["P9", "label"] == CLASSES.index("ER")
    with pytest.raises(ValueError, match="no 'gene' column"):
        convert(src, tmp_path / "out3", labels=generic, label_key="gene", progress=False)
    (tmp_path / "bad.csv").write_text("name,where\nA,ER\n")
    with pytest.raises(DataError, match="bad.csv: columns"):
        convert(src, tmp_path / "out4", labels=tmp_path / "bad.csv", progress=False)


def test_split_is_per_protein_and_stratified(tmp_path):
    layout = {f"P{i:02d}": ["a", "b"] for i in range(20)}
    src = write_crops(tmp_path / "crops", layout, shape=(2, 2))
    generic = tmp_path / "labels.csv"
    generic.write_text("protein,localization\n" + "".join(f"P{i:02d},{['ER', 'nucleus'][i % 2]}\n" for i in range(20)))
    convert(src, tmp_path / "out", labels=generic, split=(0.6, 0.2, 0.2), seed=3, shard_size=7, workers=1,
            progress=False)
    meta = load_dataset(tmp_path / "out").meta
    per = meta.groupby("protein").agg(split=("split", "first"), n=("split", "nunique"), loc=("localization", "first"))
    assert (per["n"] == 1).all()
    counts = per.groupby(["loc", "split"]).size().unstack()
    assert (counts[["train", "val", "test"]].to_numpy() == [[6, 2, 2], [6, 2, 2]]).all()


# --------------------------------------------------------------------------- command line

def test_cli_convert(tmp_path, capsys):
    src = write_crops(tmp_path / "crops", {"A": ["1", "2"], "B": ["1"]})
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out), "--shard-size", "2", "--shard", "0/2", "--workers", "1",
                 "--quiet"]) == 0
    assert "1 remain" in capsys.readouterr().out
    assert main(["convert", str(src), "--out", str(out), "--shard-size", "2", "--workers", "1", "--quiet"]) == 0
    line = capsys.readouterr().out
    assert "3 crops" in line and "dataset.json written" in line and len(line.strip().splitlines()) == 1
    assert main(["convert", str(src), "--out", str(out), "--quiet"]) == 2
    assert "already a finished" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", str(src), "--out", str(out), "--shard", "2/2"])


# --------------------------------------------------------------------------- real data

def test_real_wt2_crops_with_huh2003(shared_data, tmp_path):
    huh = shared_data / "standards" / "yeast" / "huh2003_yeastgfp.csv"
    summary = convert(shared_data / "yeast-crops", tmp_path / "out", labels=huh, shard_size=256, workers=1,
                      progress=False)
    assert summary["n_cells"] == 877 and summary["finalized"] and summary["n_shards"] == 4
    ds = load_dataset(tmp_path / "out")
    assert isinstance(ds, CellDataset) and ds.images.dtype == np.float32  # the crops' own float32, not uint16
    assert ds.meta["protein"].value_counts(sort=False).to_dict() == {"AAC1": 366, "AAH1": 203, "AAP1": 308}
    for i in (0, 300, 876):  # the order of read_crop_folder is checked on synthetic trees; here, spot checks
        protein, name = ds.meta.loc[i, ["protein", "name"]]
        for j, channel in enumerate(("gfp", "rfp")):
            crop = tifffile.imread(shared_data / "yeast-crops" / protein / f"{name}_{channel}.tif")
            np.testing.assert_array_equal(ds.images[i][j], crop)
    by = ds.meta.groupby("protein").first()
    assert by.loc["AAC1", "localization"] == "mitochondrion" and ds.classes[by.loc["AAC1", "label"]] == "mitochondrion"
    assert by.loc["AAH1", "localization"] == "cytoplasm;nucleus"
    report = json.loads((tmp_path / "out" / "labels_report.json").read_text())
    assert report["key"] == "gene" and report["unmatched_proteins"] == ["AAP1"]
    assert by.loc["AAP1", "label"] == -1
