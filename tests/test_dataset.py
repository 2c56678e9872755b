import json
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.atomic import atomic_dir, atomic_file
from protrep.data.dataset import CELL_COLUMNS, CellDataset, load_dataset, split_by_protein, write_dataset
from protrep.errors import DataError


def _cells(n):
    return pd.DataFrame({"protein": [f"P{i % 3}" for i in range(n)], "plate": 1, "well": "A01", "field": 0,
                         "cell": np.arange(n) + 1, "x": 10.5, "y": 20.25, "label": np.arange(n) % 2,
                         "localization": "nucleus", "split": "train"})


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 4000, (6, 2, 8, 8)).astype(np.uint16)
    masks = rng.random((6, 8, 8)) > 0.5
    proteins = pd.DataFrame({"protein": ["P0", "P1", "P2"], "localization": ["nucleus"] * 3})
    standards = {"complexes": pd.DataFrame({"term": ["c1", "c1"], "protein": ["P0", "P1"]})}
    path = write_dataset(tmp_path / "ds", images, masks, _cells(6), proteins, channels=("gfp", "rfp"),
                         classes=("nucleus", "ER"), standards=standards, config={"seed": 1})
    return path, images, masks


def test_round_trip(written):
    path, images, masks = written
    ds = load_dataset(path)
    assert np.array_equal(ds.images, images.astype(np.float32)) and np.array_equal(ds.masks, masks)
    assert list(ds.meta.columns) == CELL_COLUMNS and ds.classes == ("nucleus", "ER")
    assert ds.summary()["n_cells"] == 6 and ds.summary()["n_proteins"] == 3
    raw = load_dataset(path, mmap=True)
    assert raw.images.dtype == np.uint16 and np.array_equal(raw.images, images)
    sub = ds.subset(ds.meta["protein"] == "P1")
    assert len(sub) == 2 and sub.masks.shape == (2, 8, 8)


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "images.npy").write_bytes((p / "images.npy").read_bytes()[:200]), "images.npy.*truncated"),
    (lambda p: (p / "masks.npy").unlink(), "masks.npy: missing"),
    (lambda p: (p / "dataset.json").write_text("{"), "dataset.json: corrupt JSON"),
    (lambda p: (p / "dataset.json").unlink(), "not a protrep-cells dataset"),
    (lambda p: (p / "cells.csv").write_text("protein,plate\nP0,1\n"), "cells.csv: missing columns"),
    (lambda p: (p / "dataset.json").write_text(json.dumps({**json.loads((p / "dataset.json").read_text()),
                                                            "n_cells": 7})), "does not match dataset.json"),
])
def test_damaged_dataset_is_named(written, damage, message):
    path = written[0]
    damage(path)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_container_validates_shapes():
    with pytest.raises(DataError, match="3 channels but 2 names"):
        CellDataset(np.zeros((2, 3, 4, 4), np.float32), _cells(2), ("gfp", "rfp"))
    with pytest.raises(DataError, match="2 images but 3 metadata rows"):
        CellDataset(np.zeros((2, 2, 4, 4), np.float32), _cells(3), ("gfp", "rfp"))


def test_atomic_file_and_dir_leave_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "a.txt", "w") as f:
            f.write("half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with atomic_file(tmp_path / "a.txt", "w") as f:
        f.write("whole")
    assert (tmp_path / "a.txt").read_text() == "whole"
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "d"):
            pass
    with atomic_dir(tmp_path / "d", overwrite=True) as d:
        (d / "y").write_text("2")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), n_strata=st.integers(1, 20), seed=st.integers(0, 2 ** 16))
def test_split_by_protein_properties(n, n_strata, seed):
    proteins = [f"P{i}" for i in range(n)]
    strata = np.random.default_rng(seed).integers(0, n_strata, n)
    split = split_by_protein(proteins, strata, seed=seed)
    assert list(split.index) == proteins and set(split) <= {"train", "val", "test"}
    assert split.equals(split_by_protein(proteins, strata, seed=seed))
    for k in np.unique(strata):
        members = split[strata == k]
        if len(members) >= 3:
            assert set(members) == {"train", "val", "test"}
    if n >= 100 and n_strata <= 5:
        frac = split.value_counts(normalize=True)
        assert abs(frac["train"] - 0.7) < 0.1


def test_split_by_protein_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        split_by_protein(["a", "a"])
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_protein(["a", "b"], fractions=(0.5, 0.2, 0.2))
