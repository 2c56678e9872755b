"""Training from a sharded dataset on disk equals training on the same cells in memory."""

import multiprocessing

import numpy as np
import pandas as pd
import pytest
import torch

from protrep.data.arrays import NpyRows, is_lazy
from protrep.data.dataset import CellDataset, load_dataset
from protrep.data.shards import write_sharded
from protrep.models import ModelConfig
from protrep.training.batches import CellTensors, StepBatches, StreamedCells, step_generator
from protrep.training.loop import TrainConfig, train

SIZE = 32
CLASSES = ("cytoplasm", "nucleus", "vacuole")
FAST = TrainConfig(epochs=2, batch_size=8, max_steps=7, warmup_steps=2, seed=4, eval_batch_size=8, patience=0,
                   workers=0)
COLS = ["epoch", "global_step", "train_loss", "val_loss", "val_accuracy", "lr"]


@pytest.fixture(scope="module")
def cells(disc_crops):
    """60 two-channel crops of 12 proteins (a bright disc on noise, counts), with masks; 40 train, 20 val."""
    rng = np.random.default_rng(0)
    n = 60
    images, disc = disc_crops(rng, n, SIZE)
    proteins = np.repeat([f"P{k}" for k in range(12)], 5)
    label = np.repeat(np.arange(12) % 3, 5)
    meta = pd.DataFrame({"protein": proteins, "label": label, "localization": np.array(CLASSES)[label],
                         "split": np.where(np.repeat(np.arange(12), 5) < 8, "train", "val")})
    return CellDataset(images, meta, ("gfp", "rfp"), CLASSES, masks=np.broadcast_to(disc, (n, SIZE, SIZE)).copy())


@pytest.fixture(scope="module")
def on_disk(cells, tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded") / "ds"
    write_sharded(path, cells, shard_size=16, progress=False)
    ds = load_dataset(path)
    assert is_lazy(ds.images) and is_lazy(ds.masks)
    return ds


def _model(name):
    return ModelConfig(name=name, width=0.125, latent_dim=16, image_size=SIZE, n_classes=len(CLASSES))


def _weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def _same_run(a, b, history_a, history_b):
    pd.testing.assert_frame_equal(history_a[COLS], history_b[COLS])
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # bitwise


def _children():
    """Pids of this process's live children (joblib's reusable pool may hold some from other tests)."""
    return {p.pid for p in multiprocessing.active_children()}


def _new_children(before):
    return _children() - before


@pytest.mark.slow
@pytest.mark.parametrize("name, background", [("deeploc", 0.0), ("pci", 0.0), ("deeploc", 0.5)])
def test_streamed_training_equals_training_in_memory(name, background, cells, on_disk, tmp_path):
    before = _children()
    config = TrainConfig(**{**FAST.to_dict(), "background": background})
    memory = train(_model(name), config, cells, tmp_path / "memory", progress=False)
    for workers in (0, 2):
        config = TrainConfig(**{**config.to_dict(), "workers": workers})
        streamed = train(_model(name), config, on_disk, tmp_path / f"disk{workers}", progress=False)
        _same_run(tmp_path / "memory", tmp_path / f"disk{workers}", memory, streamed)
    assert not _new_children(before)  # the workers are gone


def test_streamed_batches_equal_in_memory_batches(cells, on_disk):
    index = np.flatnonzero(cells.meta["split"] == "train")
    memory = CellTensors.from_dataset(cells, index, background=True)
    disk = StreamedCells.from_dataset(on_disk, index, background=True)
    assert len(disk) == len(memory) and torch.equal(disk.labels, memory.labels)
    pick = np.array([5, 3, 3, 30, 0])
    a, b = memory.batch(pick, step_generator(0, 1, 2)), disk.batch(pick, step_generator(0, 1, 2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_in_the_middle_of_an_epoch_continues_exactly(on_disk, tmp_path):
    before = _children()
    config = TrainConfig(**{**FAST.to_dict(), "workers": 2})
    whole = train(_model("pci"), config, on_disk, tmp_path / "whole", progress=False)

    def stop(state):  # the second step of the second epoch (5 steps per epoch)
        if state["global_step"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model("pci"), config, on_disk, tmp_path / "cut", progress=False, callback=stop)
    assert not _new_children(before)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["state"]["step"] == 1
    # another number of workers is the same run: it resumes
    config = TrainConfig(**{**config.to_dict(), "workers": 0})
    resumed = train(_model("pci"), config, on_disk, tmp_path / "cut", progress=False, resume=True)
    _same_run(tmp_path / "whole", tmp_path / "cut", whole, resumed)


@pytest.mark.slow
def test_streaming_never_reads_more_than_a_batch_and_its_partners(on_disk, tmp_path, monkeypatch):
    config = TrainConfig(**{**FAST.to_dict(), "background": 0.5})
    limit = 2 * max(config.batch_size, config.eval_batch_size)
    sizes = []
    read = NpyRows.__getitem__

    def counted(self, key):
        out = read(self, key)
        sizes.append(len(out))
        assert len(out) <= limit, f"{len(out)} rows read at once"
        return out

    monkeypatch.setattr(NpyRows, "__getitem__", counted)
    train(_model("pci"), config, on_disk, tmp_path / "run", progress=False)
    assert sizes and max(sizes) <= limit
    # 7 steps of 8 cells and their partners, and 2 validations of 20 cells and theirs, images and masks
    assert sum(sizes) <= 2 * (7 * 2 * 8 + 2 * 2 * 20)


@pytest.mark.slow
def test_a_model_without_partners_trains_the_same_without_reading_them(cells, on_disk, tmp_path, monkeypatch):
    from protrep.models.deeploc import DeepLoc

    memory = train(_model("deeploc"), FAST, cells, tmp_path / "memory", progress=False)
    rows = []
    read = NpyRows.__getitem__
    monkeypatch.setattr(NpyRows, "__getitem__", lambda self, key: rows.append(len(read(self, key))) or read(self, key))
    monkeypatch.setattr(DeepLoc, "uses_partner", False, raising=False)
    streamed = train(_model("deeploc"), FAST, on_disk, tmp_path / "disk", progress=False)
    _same_run(tmp_path / "memory", tmp_path / "disk", memory, streamed)
    assert sum(rows) <= 7 * 8 + 2 * 20  # 7 steps of 8 cells, 2 validations of 20: no partner read


def test_each_process_reads_its_share_of_the_batch(on_disk, monkeypatch):
    data = StreamedCells.from_dataset(on_disk, np.flatnonzero(on_disk.meta["split"] == "train"))
    rows = []
    read = NpyRows.__getitem__
    monkeypatch.setattr(NpyRows, "__getitem__", lambda self, key: rows.append(len(read(self, key))) or read(self, key))
    whole = StepBatches(data, seed=1, batch_size=8)[(0, 2)][1]["index"]
    shares = []
    for rank in range(2):
        rows.clear()
        (at, cells, state) = StepBatches(data, seed=1, batch_size=8, rank=rank, world=2)[(0, 2)]
        assert at == (0, 2) and sum(rows) <= 2 * 4  # four cells and their partners
        shares.append(cells["index"])
    assert torch.equal(torch.stack(shares, 1).flatten(), whole)


def test_workers_must_be_a_count():
    with pytest.raises(ValueError, match="workers"):
        TrainConfig(workers=-1)
