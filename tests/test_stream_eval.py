"""Prediction, handcrafted and CellProfiler features and the background settings on a sharded dataset.

Each gives the same numbers from the crops on disk as from the same crops in memory, and
reads them in blocks: no call reads more rows at once than its block (or the cells it
was asked for), so memory does not grow with the size of the screen.
"""

import numpy as np
import pandas as pd
import pytest

from protrep.data import arrays
from protrep.data.arrays import NpyRows, is_lazy
from protrep.data.backgrounds import SETTINGS, background_setting, partial_stats
from protrep.data.dataset import CellDataset, load_dataset
from protrep.data.shards import write_sharded
from protrep.evaluation.handcrafted import feature_table
from protrep.evaluation.protocols import strict_crops

SIZE = 48
CLASSES = ("cytoplasm", "nucleus", "vacuole")
BLOCK = 16


@pytest.fixture(scope="module")
def cells(disc_crops):
    """72 two-channel crops (uint16 counts) of 12 proteins: a bright disc, a brighter dot, noise; masks of the disc."""
    rng = np.random.default_rng(3)
    n = 72
    images, disc = disc_crops(rng, n, SIZE, np.float64)
    dot = rng.integers(SIZE // 2 - 6, SIZE // 2 + 6, (n, 2))
    for i, (y, x) in enumerate(dot):
        images[i, 0, y - 1:y + 2, x - 1:x + 2] += 3000
    proteins = np.repeat([f"P{k:02d}" for k in range(12)], 6)
    label = np.repeat(np.arange(12) % 3, 6)
    masks = np.broadcast_to(disc, (n, SIZE, SIZE)).copy()
    masks[5] = False  # an empty mask: the handcrafted features fall back to a disk, CellProfiler reports it
    meta = pd.DataFrame({"protein": proteins, "label": label, "localization": np.array(CLASSES)[label],
                         "split": np.where(np.repeat(np.arange(12), 6) < 6, "train", "test")})
    return CellDataset(images.astype(np.uint16), meta, ("gfp", "rfp"), CLASSES, masks=masks)


@pytest.fixture(scope="module")
def on_disk(cells, tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded") / "ds"
    write_sharded(path, cells, shard_size=20, progress=False)  # shards of 20 cut across the blocks of 16
    ds = load_dataset(path)
    assert is_lazy(ds.images) and is_lazy(ds.masks)
    return ds


@pytest.fixture
def reads(monkeypatch):
    """Rows of every read from the shards, with blocks of :data:`BLOCK` rows."""
    sizes = []
    read = NpyRows.__getitem__
    monkeypatch.setattr(NpyRows, "__getitem__", lambda self, key: sizes.append(len(read(self, key))) or read(self, key))
    monkeypatch.setattr(arrays, "BLOCK_ROWS", BLOCK)
    return sizes


def test_handcrafted_features_stream_and_equal_in_memory(cells, on_disk, reads):
    memory = feature_table(cells, chunk_size=8)
    disk = feature_table(on_disk, chunk_size=8)
    pd.testing.assert_frame_equal(memory, disk)
    assert disk.attrs["mask_fallback"] == memory.attrs["mask_fallback"] == [5]
    assert reads and max(reads) <= BLOCK


def test_handcrafted_features_segment_in_blocks_without_masks(cells, on_disk, reads):
    unmasked = CellDataset(on_disk.images, on_disk.meta, on_disk.channels, CLASSES)
    memory = feature_table(CellDataset(cells.images, cells.meta, cells.channels, CLASSES), chunk_size=8)
    pd.testing.assert_frame_equal(memory, feature_table(unmasked, chunk_size=8))
    assert max(reads) <= BLOCK


def test_cellprofiler_measurements_stream_with_the_same_cache_key(cells, on_disk, reads):
    pytest.importorskip("cp_measure")
    from protrep.evaluation.cellprofiler import _cache_key, measure_cells

    first = np.arange(24)
    memory, disk = cells.subset(first), on_disk.subset(first)
    a = measure_cells(memory.images, memory.masks, n_jobs=1, chunk_size=8, progress=False)
    b = measure_cells(disk.images, disk.masks, n_jobs=1, chunk_size=8, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["empty"] == b.attrs["empty"] == [5]
    key = _cache_key(memory.images, memory.masks, ("gfp", "rfp"), "cell")
    assert key == _cache_key(disk.images, disk.masks, ("gfp", "rfp"), "cell")
    assert key != _cache_key(memory.images, ~memory.masks, ("gfp", "rfp"), "cell")
    assert max(reads) <= BLOCK


def test_predictions_stream_and_equal_in_memory(cells, on_disk, reads):
    from protrep.inference.embed import predict_cells
    from protrep.models import ModelConfig, build_model

    model = build_model(ModelConfig(name="deeploc", width=0.125, image_size=SIZE, n_classes=len(CLASSES)), seed=0)
    memory = predict_cells(model, cells, crops="centre", batch_size=BLOCK)
    disk = predict_cells(model, on_disk, crops="centre", batch_size=BLOCK)
    np.testing.assert_array_equal(memory, disk)
    assert memory.shape == (len(cells), len(CLASSES)) and max(reads) <= BLOCK


@pytest.mark.parametrize("setting", SETTINGS)
def test_background_settings_read_only_the_cells_involved(cells, on_disk, reads, setting):
    index = np.flatnonzero(cells.meta["split"] == "test")[::2]
    pool = np.arange(len(cells))  # every cell may donate a background
    stats = partial_stats(cells, pool, progress=False)
    np.testing.assert_array_equal(np.stack(stats), np.stack(partial_stats(on_disk, pool, progress=False)))
    reads.clear()
    memory = background_setting(cells, setting, index=index, stats=stats, seed=2)
    disk = background_setting(on_disk, setting, index=index, stats=stats, seed=2)
    np.testing.assert_array_equal(memory.images, disk.images)
    pd.testing.assert_frame_equal(memory.meta, disk.meta[memory.meta.columns])  # the format adds plate, well...
    # the recipients, their masks and (for a swap) their donors: no other cell is read
    assert sum(reads) <= (3 if setting in ("same", "diff") else 2) * len(index)


def test_strict_crops_equal_in_memory(cells, on_disk):
    index = np.flatnonzero(cells.meta["split"] == "test")
    stats = partial_stats(cells, index, progress=False)
    memory, donors_m = strict_crops(cells, index, stats=stats, seed=1, k=2)
    disk, donors_d = strict_crops(on_disk, index, stats=stats, seed=1, k=2)
    for setting in SETTINGS:
        np.testing.assert_array_equal(memory[setting].images, disk[setting].images)
    assert donors_m.keys() == donors_d.keys() and all(np.array_equal(donors_m[s], donors_d[s]) for s in donors_m)
