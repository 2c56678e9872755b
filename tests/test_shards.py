"""The sharded (version 2) protrep-cells format and the lazy array it is read as."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.arrays import ShardedArray, is_lazy
from protrep.data.dataset import CellDataset, load_dataset
from protrep.data.shards import (clean_temporaries, done_shards, finalize_shards, shard_ranges, write_shard,
                                 write_sharded)
from protrep.errors import DataError


def _dataset(n=23, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 4000, (n, 2, 8, 8)).astype(dtype)
    meta = pd.DataFrame({"protein": [f"P{i % 5}" for i in range(n)], "plate": 1, "well": "A01", "field": 0,
                         "cell": np.arange(n), "x": 1.5, "y": 2.5, "label": np.arange(n) % 2,
                         "localization": np.where(np.arange(n) % 2, "ER", "nucleus"),
                         "split": np.where(np.arange(n) % 5 < 3, "train", "test")})
    return CellDataset(images=images, meta=meta, channels=("gfp", "rfp"), classes=("nucleus", "ER"),
                       masks=rng.random((n, 8, 8)) > 0.5)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), min_size=1, max_size=5).filter(lambda s: sum(s) > 0), data=st.data())
def test_sharded_array_indexes_like_the_concatenation(sizes, data):
    rng = np.random.default_rng(sum(sizes))
    parts = [rng.integers(0, 100, (n, 3)) for n in sizes]
    whole = np.concatenate(parts)
    a = ShardedArray(parts)
    n = len(whole)
    assert a.shape == whole.shape and len(a) == n and a.dtype == whole.dtype
    start, stop = data.draw(st.integers(-n, n)), data.draw(st.integers(-n, n))
    step = data.draw(st.sampled_from([1, 2, -1, 3]))
    assert np.array_equal(a[start:stop:step], whole[start:stop:step])
    index = np.asarray(data.draw(st.lists(st.integers(-n, n - 1), max_size=12)), dtype=np.int64)
    assert np.array_equal(a[index], whole[index])
    mask = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    assert np.array_equal(a[mask], whole[mask])
    i = data.draw(st.integers(-n, n - 1))
    assert np.array_equal(a[i], whole[i]) and np.array_equal(a[i, 1:], whole[i, 1:])
    assert np.array_equal(a[index, 2], whole[index, 2])
    taken = a.take(index)  # lazy selection, then indexed again
    assert is_lazy(taken) and np.array_equal(taken[::-1], whole[index][::-1])
    assert np.array_equal(np.asarray(a), whole)


def test_sharded_array_refuses_mismatched_parts_and_bad_indices():
    with pytest.raises(ValueError, match="part 1"):
        ShardedArray([np.zeros((2, 3)), np.zeros((2, 4))])
    a = ShardedArray([np.zeros((2, 3)), np.zeros((1, 3))])
    with pytest.raises(IndexError):
        a[3]
    with pytest.raises(IndexError):
        a[np.array([0, 5])]
    with pytest.raises(IndexError, match="boolean"):
        a[np.array([True, False])]


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_round_trip_is_lazy_and_equal(tmp_path, dtype):
    ds = _dataset(dtype=dtype)
    header = write_sharded(tmp_path / "s", ds, shard_size=7, progress=False)
    assert header["version"] == 2 and header["shards"] == [["00000", 7], ["00001", 7], ["00002", 7], ["00003", 2]]
    back = load_dataset(tmp_path / "s")
    assert is_lazy(back.images) and is_lazy(back.masks) and back.images.dtype == dtype
    assert np.array_equal(back.images[:], ds.images) and np.array_equal(back.masks[:], ds.masks)
    assert back.meta["protein"].tolist() == ds.meta["protein"].tolist()
    assert back.classes == ds.classes and back.channels == ds.channels
    sub = back.subset(back.meta["split"] == "test")
    assert is_lazy(sub.images) and np.array_equal(sub.images[:], ds.images[ds.meta["split"] == "test"])
    summary = back.summary()
    assert summary["shards"] == 4 and summary["bytes_on_disk"] == ds.images.nbytes + ds.masks.nbytes
    memory = load_dataset(tmp_path / "s", mmap=False)
    assert not is_lazy(memory.images) and memory.images.dtype == np.float32
    assert np.array_equal(memory.images, ds.images.astype(np.float32))
    proteins = pd.read_csv(tmp_path / "s" / "proteins.csv")
    assert proteins["protein"].tolist() == [f"P{i}" for i in range(5)]


def test_unfinished_and_damaged_shards_are_named(tmp_path):
    ds = _dataset()
    root = tmp_path / "s"
    for k, (a, b) in enumerate(shard_ranges(len(ds), 10)[:2]):
        write_shard(root, k, ds.images[a:b], ds.meta.iloc[a:b], ds.masks[a:b])
    with pytest.raises(DataError, match="unfinished sharded dataset .2 shards"):
        load_dataset(root)
    with pytest.raises(DataError, match="2 complete shards, expected 3; missing 00002"):
        finalize_shards(root, channels=ds.channels, n_shards=3)
    with pytest.raises(FileExistsError, match="00001: shard already written"):
        write_shard(root, 1, ds.images[:2], ds.meta.iloc[:2], ds.masks[:2])
    finalize_shards(root, channels=ds.channels, classes=ds.classes)
    assert len(load_dataset(root)) == 20
    head = json.loads((root / "dataset.json").read_text())
    head["shards"][1][1] = 11
    (root / "dataset.json").write_text(json.dumps(head))
    with pytest.raises(DataError, match="00001/images.npy: shape .* does not match dataset.json"):
        load_dataset(root)


def test_shards_of_different_crops_refused(tmp_path):
    ds = _dataset()
    write_shard(tmp_path, 0, ds.images[:3], ds.meta.iloc[:3], ds.masks[:3])
    write_shard(tmp_path, 1, ds.images[3:6, :, :4, :4], ds.meta.iloc[3:6], ds.masks[3:6, :4, :4])
    with pytest.raises(DataError, match="00001: crops of"):
        finalize_shards(tmp_path, channels=ds.channels)


def test_temporaries_of_dead_writers_are_removed(tmp_path):
    import socket
    import subprocess
    import sys

    host = socket.gethostname().split(".")[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "shards" / f".00003.{host}.{int(dead.stdout)}.tmp"
    alive = tmp_path / "shards" / f".00004.{host}.{os.getpid()}.tmp"
    other = tmp_path / "shards" / ".00005.elsewhere.1.tmp"
    for p in (stale, alive, other):
        p.mkdir(parents=True)
    assert clean_temporaries(tmp_path) == [stale]
    assert alive.exists() and other.exists() and done_shards(tmp_path) == []


def test_write_sharded_replaces_only_datasets(tmp_path):
    ds = _dataset()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_sharded(folder, ds, progress=False)
    with pytest.raises(DataError, match="not a protrep-cells dataset; refusing"):
        write_sharded(folder, ds, overwrite=True, progress=False)
    assert (folder / "notes.txt").read_text() == "keep me"
    write_sharded(tmp_path / "s", ds, shard_size=5, progress=False)
    write_sharded(tmp_path / "s", ds.subset(np.arange(4)), overwrite=True, progress=False)
    assert len(load_dataset(tmp_path / "s")) == 4 and done_shards(tmp_path / "s") == [0]


def test_npy_rows_reads_what_numpy_reads(tmp_path):
    from protrep.data.arrays import NpyRows

    rng = np.random.default_rng(1)
    whole = rng.integers(0, 60000, (40, 2, 5, 5)).astype(np.uint16)
    np.save(tmp_path / "a.npy", whole)
    rows = NpyRows(tmp_path / "a.npy")
    assert rows.shape == whole.shape and rows.dtype == whole.dtype and rows.nbytes == whole.nbytes
    for key in (slice(3, 17), slice(0, 40, 3), slice(10, 5), rng.integers(0, 40, 25), np.array([], int),
                np.array([5, 6, 7, 7, 2, 3, 39])):
        assert np.array_equal(rows[key], whole[key])
    sharded = ShardedArray([rows, NpyRows(tmp_path / "a.npy")])
    index = rng.integers(0, 80, 50)
    assert np.array_equal(sharded[index], np.concatenate([whole, whole])[index])
    (tmp_path / "b.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-10])
    with pytest.raises(ValueError, match="b.npy: truncated"):
        NpyRows(tmp_path / "b.npy")
