"""Streaming and distributed embedding (:func:`protrep.inference.embed.embed_dataset`, ``protrep embed``).

A tiny synthetic screen (100 cells of 12 proteins in shuffled order, so a protein's cells
lie in several batches) and an untrained DeepLoc saved as a run: the tests compare
numbers computed two ways, which needs no training.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from protrep.atomic import write_json
from protrep.cli import main
from protrep.data.dataset import CellDataset, load_dataset
from protrep.data.shards import write_sharded
from protrep.data.tables import cell_feature_paths, embedding_tables, protein_table_path, read_cell_features, read_table
from protrep.inference.embed import embed_cells, embed_dataset, write_embeddings, write_streamed_embeddings
from protrep.models import ModelConfig, build_model
from protrep.training.runs import load_run, save_checkpoint

BATCH = 32  # 100 cells: batches of 32, 32, 32 and 4


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    """(in-memory dataset, sharded folder of the same cells, run directory of an untrained DeepLoc)."""
    rng = np.random.default_rng(0)
    n = 100
    proteins = np.array([f"P{k:02d}" for k in range(12)])[rng.integers(0, 12, n)]
    counts = rng.poisson(rng.uniform(50, 400, (n, 2, 1, 1)), (n, 2, 64, 64)).astype(np.uint16)
    meta = pd.DataFrame({"protein": proteins, "plate": 1, "well": "A01", "field": rng.integers(0, 3, n),
                         "cell": np.arange(n), "x": 32.0, "y": 32.0, "label": -1, "localization": "", "split": "test"})
    ds = CellDataset(images=counts.astype(np.float32), meta=meta, channels=("gfp", "rfp"), source="synthetic")
    root = tmp_path_factory.mktemp("stream")
    write_sharded(root / "sharded", ds, shard_size=40, progress=False)  # shards of 40 cut across the batches of 32
    config = ModelConfig(name="deeploc", width=0.125)
    (root / "run").mkdir()
    write_json(root / "run" / "run.json", {"model": config.to_dict()})
    save_checkpoint(root / "run" / "checkpoint.pt", {"model": build_model(config, seed=1).state_dict()})
    return ds, root / "sharded", root / "run"


@pytest.fixture(scope="module")
def model(screen):
    return load_run(screen[2])[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("crops", ["centre", "five"])
def test_streamed_protein_table_equals_embedding_tables(screen, model, crops):
    ds = screen[0] if crops == "centre" else screen[0].subset(np.arange(48))  # five crops: 5x the work
    features = embed_cells(model, ds, crops=crops, batch_size=BATCH)
    expected = embedding_tables(ds, features)[1]
    got = embed_dataset(model, ds, crops=crops, batch_size=BATCH, workers=0, progress=False)
    names = [c for c in expected.columns if c.startswith("f")]
    pd.testing.assert_frame_equal(got.drop(columns=names), expected.drop(columns=names))
    assert list(got.columns) == list(expected.columns) and (got[names].dtypes == np.float32).all()
    # pandas averages float32 columns in float32 (compensated), embed_dataset sums in float64: they differ in the
    # last bits (measured: at most 1e-7 of the largest feature); embed_dataset's means are the exact means rounded
    scale = np.abs(features).max()
    np.testing.assert_allclose(got[names], expected[names], rtol=1e-6, atol=1e-6 * scale)
    exact = pd.DataFrame(features.astype(np.float64)).groupby(ds.meta["protein"].to_numpy()).mean()
    np.testing.assert_array_equal(got[names].to_numpy(), exact.to_numpy().astype(np.float32))


def test_npy_cells_equal_embed_cells(screen, model, tmp_path):
    ds = screen[0]  # a DataLoader worker reads and stretches (the other tests read in the process, on two cores)
    embed_dataset(model, ds, crops="centre", batch_size=BATCH, workers=1, cells_out=tmp_path / "c.npy",
                  progress=False)
    written = np.load(tmp_path / "c.npy")
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, embed_cells(model, ds, crops="centre", batch_size=BATCH))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npy"]  # no temporary left


def test_sharded_dataset_gives_the_same_as_in_memory(screen, model, tmp_path):
    ds, sharded, _ = screen
    lazy = load_dataset(sharded)
    assert type(lazy.images).__name__ == "ShardedArray"
    table = embed_dataset(model, lazy, crops="centre", batch_size=BATCH, cells_out=tmp_path / "lazy.npy",
                          progress=False)
    expected = embed_dataset(model, ds, crops="centre", batch_size=BATCH, cells_out=tmp_path / "mem.npy",
                             progress=False)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    np.testing.assert_array_equal(np.load(tmp_path / "lazy.npy"), np.load(tmp_path / "mem.npy"))


def test_cli_writes_each_form_of_the_cells(screen, model, tmp_path):
    ds, sharded, run = screen
    base = ["embed", "--run", str(run), "--data", str(sharded), "--crops", "centre", "--batch-size", str(BATCH),
            "--quiet"]
    for form in ("table", "npy", "none"):
        assert main([*base, "--out", str(tmp_path / form / "e.csv.gz"), "--cells", form]) == 0
    features = embed_cells(model, ds, crops="centre", batch_size=BATCH)
    write_embeddings(ds, features, tmp_path / "before" / "e.csv.gz")  # what protrep embed wrote before streaming
    assert (tmp_path / "table" / "e.csv.gz").read_bytes() == (tmp_path / "before" / "e.csv.gz").read_bytes()
    meta, cells = read_cell_features(tmp_path / "npy" / "e.csv.gz")
    np.testing.assert_array_equal(cells, features)
    pd.testing.assert_frame_equal(meta, read_table(tmp_path / "table" / "e.csv.gz")[list(meta.columns)])
    proteins = [read_table(protein_table_path(tmp_path / form / "e.csv.gz")) for form in ("table", "npy", "none")]
    for other in proteins[1:]:
        pd.testing.assert_frame_equal(other, proteins[0])
    assert sorted(p.name for p in (tmp_path / "npy").iterdir()) == ["e.cells.csv.gz", "e.cells.npy",
                                                                   "e.proteins.csv.gz"]
    assert sorted(p.name for p in (tmp_path / "table").iterdir()) == ["e.csv.gz", "e.proteins.csv.gz"]
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["e.proteins.csv.gz"]


def test_bad_options_fail_before_embedding(screen, model, tmp_path):
    ds = screen[0]
    with pytest.raises(ValueError, match="crops must be"):
        embed_dataset(model, ds, crops="six")
    with pytest.raises(ValueError, match="batch_size"):
        embed_dataset(model, ds, batch_size=0)
    with pytest.raises(ValueError, match="cells must be one of"):
        write_streamed_embeddings(model, ds, tmp_path / "e.csv", cells="csv")
    with pytest.raises(ValueError, match="use a .csv"):
        write_streamed_embeddings(model, ds, tmp_path / "e.txt")
    assert main(["embed", "--run", str(screen[2]), "--data", str(screen[1]), "--out", str(tmp_path / "e.txt"),
                 "--quiet"]) == 2
    assert not any(tmp_path.iterdir())
    assert cell_feature_paths(tmp_path / "e.parquet") == (tmp_path / "e.cells.npy", tmp_path / "e.cells.parquet")


@pytest.mark.slow  # three processes start torch: some 10 s on two cores
def test_two_processes_write_what_one_writes(screen, tmp_path):
    """torchrun with 2 CPU processes (gloo) gives byte-identical files and leaves no part files.

    torchrun runs each process with OMP_NUM_THREADS=1; the features of these models do not
    depend on the thread count on this CPU (measured: 1 and 2 threads bitwise equal), and
    the reference is made with one thread all the same, so the comparison tests the split
    and merge alone.
    """
    _, sharded, run = screen
    args = ["embed", "--run-dir", str(run), "--data", str(sharded), "--crops", "centre", "--batch-size", str(BATCH),
            "--cells", "npy", "--quiet"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(tmp_path / "one" / "e.csv.gz")]) == 0
    finally:
        torch.set_num_threads(threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "protrep", *args, "--out", str(tmp_path / "two" / "e.csv.gz")]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 processes)" in done.stdout
    names = ["e.cells.csv.gz", "e.cells.npy", "e.proteins.csv.gz"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == names  # the parts are gone
    for name in names:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
