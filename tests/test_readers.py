"""Readers of DeepLoc HDF5, WT2/PCI crop folders and HPA crops, on tiny fixtures and real files."""

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from protrep.data.dataset import write_dataset
from protrep.data.readers import (
    FORMATS,
    detect_format,
    open_dataset,
    read_crop_folder,
    read_deeploc_hdf5,
    read_hpa_crops,
)
from protrep.errors import DataError

CLASSES = ["ER", "Bud", "Nucleus"]


# --------------------------------------------------------------------------- fixtures

def write_deeploc(path, n=4, *, side=8, channels_attr="GFP channel 8x8, RFP channel 8x8 flattened",
                  classes=CLASSES, onehot=None, data=None, proteins=None):
    rng = np.random.default_rng(0)
    if data is None:
        data = rng.uniform(0, 100, size=(n, 2 * side * side))
    if onehot is None:
        onehot = np.zeros((n, len(classes)), dtype=np.uint8)
        onehot[np.arange(n), np.arange(n) % len(classes)] = 1
    with h5py.File(path, "w") as f:
        f.create_dataset("data1", data=data)
        if onehot is not False:
            f.create_dataset("Index1", data=onehot)
        if classes is not None:
            f.attrs["Index1_columns"] = np.array([c.encode() for c in classes])
        if channels_attr is not None:
            f.attrs["data1_columns"] = channels_attr
        if proteins is not None:
            f.create_dataset("protein", data=np.array([p.encode() for p in proteins]))
    return path


def write_crops(root, layout, *, shape=(6, 5), seed=0):
    """layout: {protein: [cell names]}; writes <root>/<protein>/<name>_{gfp,rfp}.tif."""
    rng = np.random.default_rng(seed)
    for protein, names in layout.items():
        folder = root / protein
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            for channel in ("gfp", "rfp"):
                tifffile.imwrite(folder / f"{name}_{channel}.tif", rng.random(shape, dtype=np.float32))
    return root


def write_hpa(root, samples, *, shape=(6, 6)):
    """samples: {folder: [cell names]}; the channel value encodes (cell, channel)."""
    for folder, names in samples.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            for j, channel in enumerate(("red", "green", "blue")):
                tifffile.imwrite(root / folder / f"{name}_{channel}.tif",
                                 np.full(shape, 10 * i + j, dtype=np.float32))
    return root


def assert_data_error(excinfo, *parts):
    message = str(excinfo.value)
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"


# --------------------------------------------------------------------------- DeepLoc HDF5

def test_deeploc_roundtrip_channel_first_c_order(tmp_path):
    n, side = 4, 8
    data = np.arange(n * 2 * side * side, dtype=np.float64).reshape(n, -1)
    file = write_deeploc(tmp_path / "d.hdf5", n, side=side, data=data)
    ds = read_deeploc_hdf5(file)
    assert ds.images.dtype == np.float32 and ds.images.shape == (n, 2, side, side)
    np.testing.assert_array_equal(ds.images[1, 0], data[1, :side * side].reshape(side, side))
    np.testing.assert_array_equal(ds.images[1, 1], data[1, side * side:].reshape(side, side))
    assert ds.channels == ("gfp", "rfp")
    assert ds.classes == tuple(CLASSES)
    assert ds.format == "deeploc-hdf5"
    assert ds.meta["label"].tolist() == [0, 1, 2, 0]
    assert ds.meta["localization"].tolist() == ["ER", "Bud", "Nucleus", "ER"]
    assert (ds.meta["protein"] == "unknown").all()


def test_deeploc_all_zero_label_row_is_minus_one_and_default_channels(tmp_path):
    onehot = np.array([[0, 0, 0], [0, 0, 1]], dtype=np.uint8)
    file = write_deeploc(tmp_path / "d.h5", 2, onehot=onehot, channels_attr=None)
    ds = read_deeploc_hdf5(file)
    assert ds.meta["label"].tolist() == [-1, 2]
    assert ds.meta["localization"].tolist() == ["", "Nucleus"]
    assert ds.channels == ("gfp", "rfp")


def test_deeploc_protein_ids_and_no_labels(tmp_path):
    file = write_deeploc(tmp_path / "d.h5", 3, onehot=False, classes=None, proteins=["YAL001C", "YAL002W", "X"])
    ds = read_deeploc_hdf5(file, channels=("a", "b"))
    assert ds.meta["protein"].tolist() == ["YAL001C", "YAL002W", "X"]
    assert ds.meta["label"].tolist() == [-1, -1, -1]
    assert ds.channels == ("a", "b") and ds.classes == ()


def test_deeploc_not_hdf5(tmp_path):
    file = tmp_path / "fake.hdf5"
    file.write_text("this is not an HDF5 file\n")
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "fake.hdf5", "not an HDF5 file")


def test_deeploc_truncated(tmp_path):
    file = write_deeploc(tmp_path / "trunc.hdf5", 50, side=16)
    size = file.stat().st_size
    with open(file, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "trunc.hdf5", "truncated or corrupt")


def test_deeploc_missing_data1(tmp_path):
    file = tmp_path / "nodata.h5"
    with h5py.File(file, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3)))
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "nodata.h5", "data1", "images")


def test_deeploc_wrong_row_length(tmp_path):
    file = write_deeploc(tmp_path / "rows.h5", 2, data=np.zeros((2, 100)), onehot=False)
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "rows.h5", "length 100", "8192")


def test_deeploc_nan_pixels(tmp_path):
    data = np.ones((3, 128))
    data[2, 5] = np.nan
    file = write_deeploc(tmp_path / "nan.h5", 3, data=data)
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "nan.h5", "NaN", "cell 2")


def test_deeploc_label_count_mismatch(tmp_path):
    onehot = np.eye(3, dtype=np.uint8)[:2]
    file = write_deeploc(tmp_path / "labels.h5", 3, onehot=onehot)
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "labels.h5", "Index1", "(2, 3)")


def test_deeploc_class_name_count_mismatch(tmp_path):
    file = write_deeploc(tmp_path / "classes.h5", 3, onehot=np.eye(3, 4, dtype=np.uint8))
    with pytest.raises(DataError) as e:
        read_deeploc_hdf5(file)
    assert_data_error(e, "classes.h5", "4 label columns", "3 classes")


# --------------------------------------------------------------------------- crop folders

def test_crop_folder_root_natural_order(tmp_path):
    write_crops(tmp_path, {"BBB1": ["B_1_10", "B_1_2"], "AAA1": ["A_1_1"]})
    ds = read_crop_folder(tmp_path)
    assert ds.images.shape == (3, 2, 6, 5) and ds.images.dtype == np.float32
    assert ds.channels == ("gfp", "rfp")
    assert ds.meta["protein"].tolist() == ["AAA1", "BBB1", "BBB1"]
    assert ds.meta["name"].tolist() == ["A_1_1", "B_1_2", "B_1_10"]
    assert (ds.meta["label"] == -1).all() and (ds.meta["localization"] == "").all()
    np.testing.assert_array_equal(ds.images[2, 1], tifffile.imread(tmp_path / "BBB1" / "B_1_10_rfp.tif"))


def test_crop_folder_single_protein_folder(tmp_path):
    write_crops(tmp_path, {"PROT1": ["c_1", "c_2"]})
    ds = read_crop_folder(tmp_path / "PROT1")
    assert len(ds) == 2 and ds.proteins == ["PROT1"]


def test_crop_folder_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path / "empty")
    assert_data_error(e, "empty", "no crops")


def test_crop_folder_gfp_without_rfp_names_both(tmp_path):
    write_crops(tmp_path, {"P": ["cell_1", "cell_2"]})
    (tmp_path / "P" / "cell_2_rfp.tif").unlink()
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path)
    assert_data_error(e, "cell_2_gfp.tif", "cell_2_rfp.tif", str(tmp_path / "P"))


def test_crop_folder_rfp_without_gfp(tmp_path):
    write_crops(tmp_path, {"P": ["cell_1"]})
    (tmp_path / "P" / "cell_1_gfp.tif").unlink()
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path)
    assert_data_error(e, "cell_1_rfp.tif", "cell_1_gfp.tif")


def test_crop_folder_shape_mismatch(tmp_path):
    write_crops(tmp_path, {"P": ["cell_1", "cell_2"]})
    tifffile.imwrite(tmp_path / "P" / "cell_2_gfp.tif", np.zeros((7, 7), np.float32))
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path)
    assert_data_error(e, "cell_2_gfp.tif", "(7, 7)", "(6, 5)")


def test_crop_folder_nan(tmp_path):
    write_crops(tmp_path, {"P": ["cell_1"]})
    bad = np.zeros((6, 5), np.float32)
    bad[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "P" / "cell_1_rfp.tif", bad)
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path)
    assert_data_error(e, "cell_1_rfp.tif", "NaN")


@pytest.mark.parametrize("content", [b"not a tiff at all", b"II*\x00garbage", "truncated"])
def test_crop_folder_unreadable_tiff(tmp_path, content):
    write_crops(tmp_path, {"P": ["cell_1"]})
    file = tmp_path / "P" / "cell_1_gfp.tif"
    if content == "truncated":
        content = file.read_bytes()[:100]
    file.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_crop_folder(tmp_path)
    assert_data_error(e, "cell_1_gfp.tif", "unreadable TIFF")


@settings(max_examples=15, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.just(2), st.integers(1, 6), st.integers(1, 6)),
              elements=st.floats(-1e6, 1e6, width=32)))
def test_crop_folder_roundtrip_property(images):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "PROT"
        folder.mkdir()
        for i, cell in enumerate(images):
            tifffile.imwrite(folder / f"cell_{i}_gfp.tif", cell[0])
            tifffile.imwrite(folder / f"cell_{i}_rfp.tif", cell[1])
        ds = read_crop_folder(Path(tmp))
    np.testing.assert_array_equal(ds.images, images)
    assert ds.meta["name"].tolist() == [f"cell_{i}" for i in range(len(images))]


# --------------------------------------------------------------------------- HPA crops

def test_hpa_channel_order_and_meta(tmp_path):
    write_hpa(tmp_path, {"GENE1_762_F2": ["762_F2_1_10", "762_F2_1_9"], "AB_1645_H1_6": ["x_1"]})
    ds = read_hpa_crops(tmp_path)
    assert ds.channels == ("red", "green", "blue")
    assert ds.meta["protein"].tolist() == ["AB", "GENE1", "GENE1"]
    assert ds.meta["plate"].tolist() == ["1645", "762", "762"]
    assert ds.meta["well"].tolist() == ["H1", "F2", "F2"]
    assert ds.meta["name"].tolist() == ["x_1", "762_F2_1_9", "762_F2_1_10"]
    # channel j of cell i was written as 10 * i + j (i = index within its folder)
    assert ds.images[1, :, 0, 0].tolist() == [10, 11, 12]
    assert ds.images[2, :, 0, 0].tolist() == [0, 1, 2]


def test_hpa_missing_channel(tmp_path):
    write_hpa(tmp_path, {"G_1_A1": ["c_1"]})
    (tmp_path / "G_1_A1" / "c_1_blue.tif").unlink()
    with pytest.raises(DataError) as e:
        read_hpa_crops(tmp_path)
    assert_data_error(e, "G_1_A1", "c_1_blue.tif")


def test_hpa_empty_and_shape_mismatch(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError) as e:
        read_hpa_crops(tmp_path / "none")
    assert_data_error(e, "none", "no crops")
    write_hpa(tmp_path / "root", {"G_1_A1": ["c_1", "c_2"]})
    tifffile.imwrite(tmp_path / "root" / "G_1_A1" / "c_2_green.tif", np.zeros((3, 3), np.float32))
    with pytest.raises(DataError) as e:
        read_hpa_crops(tmp_path / "root")
    assert_data_error(e, "c_2_green.tif", "(3, 3)")


# --------------------------------------------------------------------------- dispatch

def test_detect_and_open_every_format(tmp_path):
    write_deeploc(tmp_path / "d.hdf5", 2)
    write_crops(tmp_path / "crops", {"P": ["c_1"]})
    write_hpa(tmp_path / "hpa", {"G_1_A1": ["c_1"]})
    n = 2
    cells = pd.DataFrame({"protein": ["P1", "P2"], "plate": 1, "well": "A01", "field": 0, "cell": [1, 2],
                          "x": 1.0, "y": 1.0, "label": 0, "localization": "ER", "split": "train"})
    write_dataset(tmp_path / "ours", np.zeros((n, 2, 4, 4), np.uint16), np.zeros((n, 4, 4), bool), cells,
                  pd.DataFrame({"protein": ["P1", "P2"], "localization": "ER"}),
                  channels=("gfp", "rfp"), classes=("ER",))
    expected = {"d.hdf5": "deeploc-hdf5", "crops": "crop-folder", "crops/P": "crop-folder",
                "hpa": "hpa-crops", "ours": "protrep-cells"}
    for rel, fmt in expected.items():
        assert detect_format(tmp_path / rel) == fmt
        ds = open_dataset(tmp_path / rel)
        assert ds.format == fmt and ds.images.dtype == np.float32
    assert set(expected.values()) == set(FORMATS)


def test_detect_unknown_and_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    for path in (tmp_path / "notes.txt", tmp_path / "folder"):
        with pytest.raises(DataError) as e:
            open_dataset(path)
        assert_data_error(e, path.name, "supported formats", "deeploc-hdf5", "hpa-crops")
    with pytest.raises(DataError) as e:
        detect_format(tmp_path / "absent")
    assert_data_error(e, "absent", "no such")
    with pytest.raises(ValueError, match="unknown format"):
        open_dataset(tmp_path / "folder", format="tiff-stack")


# --------------------------------------------------------------------------- real files

def test_real_yeast_crops(shared_data):
    ds = open_dataset(shared_data / "yeast-crops")
    assert ds.format == "crop-folder"
    assert ds.images.shape == (877, 2, 64, 64) and ds.images.dtype == np.float32
    assert ds.meta["protein"].value_counts().to_dict() == {"AAC1": 366, "AAP1": 308, "AAH1": 203}
    assert np.isfinite(ds.images).all()


def test_real_hpa_crops(shared_data):
    ds = open_dataset(shared_data / "hpa-crops")
    assert ds.format == "hpa-crops"
    assert ds.images.shape == (62, 3, 128, 128)
    assert ds.meta["protein"].value_counts().to_dict() == {"A1CF": 34, "AAAS": 22, "A4GALT": 6}
    assert ds.channels == ("red", "green", "blue")
    assert 0 <= ds.images.min() and ds.images.max() <= 1


def test_real_deeploc(shared_data):
    file = shared_data / "deeploc-hdf5" / "Schuldiner_test_set.hdf5"
    assert detect_format(file) == "deeploc-hdf5"
    ds = open_dataset(file)
    assert ds.images.shape == (36, 2, 64, 64)
    assert ds.channels == ("rfp", "dic")  # SWAT set: RFP-tagged protein + brightfield
    assert ds.classes == ("ER", "Bud", "Bud Neck", "Cell Periphery", "Cytosol", "Mitochondria",
                          "Nuclear Periphery", "Nucleus", "Punctate", "Vacuole", "Vacuole Membrane")
    assert (ds.meta["label"] >= 0).all()
    assert ds.meta["localization"].value_counts()["Cell Periphery"] == 7
    with h5py.File(file, "r") as f:
        np.testing.assert_array_equal(ds.images[3, 1].ravel(), f["data1"][3, 4096:].astype(np.float32))


def test_real_deeploc_truncated_copy(shared_data, tmp_path):
    copy = tmp_path / "Schuldiner_copy.hdf5"
    shutil.copy(shared_data / "deeploc-hdf5" / "Schuldiner_test_set.hdf5", copy)
    with open(copy, "r+b") as f:
        f.truncate(100_000)
    with pytest.raises(DataError) as e:
        open_dataset(copy)
    assert_data_error(e, "Schuldiner_copy.hdf5", "truncated")
