"""Apply trained models: cell and protein embeddings, predicted localization distributions.

The tables these write and their files are described in :mod:`protrep.data.tables`.

:func:`embed_cells` returns the features of every cell at once, which a screen of a million
cells does not fit. :func:`embed_dataset` streams instead: batches of crops are read (from
a sharded dataset read on demand, or from memory) and stretched, by DataLoader workers
while the model runs where there are cores to spare (:func:`default_workers`), the features of each protein are summed (float64) as they come, and the
cell features go, if asked for, straight into a float32 ``.npy`` file; memory holds a few
batches and the protein sums, whatever the number of cells. :func:`write_streamed_embeddings`
writes the files of ``protrep embed`` this way.

Launched by ``torchrun`` (``WORLD_SIZE > 1``; :func:`init_distributed`), rank ``r`` of
``W`` embeds the global batches ``r, r + W, r + 2W, ...`` (the batch boundaries of one
process, so each cell's features come from the same computation), writes them as a part
file beside the output, and after a barrier rank 0 merges the parts in batch order into the
files one process writes, summing the proteins in the same order, and removes the parts:
the outputs are identical to those of a single process (measured and tested on CPU, where
the features of these models also do not depend on the number of threads).
"""

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ..atomic import atomic_file
from ..data.arrays import NpyRows
from ..data.normalize import percentile_stretch
from ..data.tables import (cell_feature_paths, cell_metadata, embedding_tables, protein_table, protein_table_path,
                           write_table)
from ..errors import DataError
from ..training.runs import load_run, resolve_device

__all__ = ["embed_cells", "predict_cells", "forward_examples", "write_embeddings", "embed_runs", "stretched",
           "embed_dataset", "write_streamed_embeddings", "init_distributed", "default_workers", "CELL_FORMS"]

log = logging.getLogger(__name__)

#: Forms of the cell features that :func:`write_streamed_embeddings` (``protrep embed --cells``) writes.
CELL_FORMS = ("table", "npy", "none")


def _batches(ds, batch_size, device):
    done = ds.info.get("stretched", False)  # stretched once by `stretched` for several models
    for start in range(0, len(ds), batch_size):
        x = ds.images[start:start + batch_size]
        x = np.ascontiguousarray(x, dtype=np.float32) if done else percentile_stretch(x)
        yield torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)


def stretched(ds):
    """``ds`` with every crop already percentile-stretched, for embedding it with several runs.

    The stretch is the same whichever model follows (:func:`protrep.data.normalize.percentile_stretch`),
    so doing it once saves about 5 s per 18,000 crops and run on two cores; the images
    take float32 memory (590 MB for 18,000 two-channel 64 x 64 crops). Embedding functions
    of this module recognise the result (``info["stretched"]``) and skip their own stretch.
    """
    from ..data.dataset import CellDataset

    if ds.info.get("stretched", False):
        return ds
    return CellDataset(images=percentile_stretch(ds.images), meta=ds.meta, channels=ds.channels, classes=ds.classes,
                       masks=ds.masks, source=ds.source, format=ds.format, info={**ds.info, "stretched": True})


def _prepare(model, device):
    """Eval mode on ``device``, channels-last (measured 1.5-2x faster on CPU for these models)."""
    return model.to(device).eval().to(memory_format=torch.channels_last)


@torch.no_grad()
def embed_cells(model, ds, *, layer=None, crops="five", batch_size=256, device="cpu"):
    """Features of every cell of ``ds`` (per-cell percentile stretch first), shape (n, d) float32.

    ``crops``: for models trained on crops (DeepLoc), ``"five"`` averages the features of
    the centre and corner crops, ``"centre"`` uses the centre crop only (5x cheaper).
    """
    from ..training.batches import center_crop

    if crops not in ("five", "centre"):
        raise ValueError(f"crops must be 'five' or 'centre', got {crops!r}")
    model = _prepare(model, device)
    size = model.train_crop if crops == "centre" else None
    out = [model.embed(center_crop(x, size), layer).float().cpu().numpy() for x in _batches(ds, batch_size, device)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def predict_cells(model, ds, *, crops="five", batch_size=256, device="cpu"):
    """Class probabilities of every cell, shape (n, k).

    ``crops="five"`` averages over the centre and corner crops (test-time augmentation, as
    DeepLoc); ``"centre"`` classifies the centre crop only (5x cheaper).
    """
    from ..training.batches import center_crop

    if not getattr(model, "is_classifier", False):
        raise ValueError(f"model {model.config.name!r} does not classify localization; use a deeploc run")
    if crops not in ("five", "centre"):
        raise ValueError(f"crops must be 'five' or 'centre', got {crops!r}")
    model = _prepare(model, device)
    size = model.train_crop if crops == "centre" else None
    out = [model.predict_proba(center_crop(x, size)).float().cpu().numpy() for x in _batches(ds, batch_size, device)]
    return np.concatenate(out)


@torch.no_grad()
def forward_examples(model, ds, index, *, seed=0, device="cpu"):
    """Run the model on cells ``index`` (with partner cells of the same protein) in eval mode.

    For looking at what a model does: returns a dict of numpy arrays, ``image`` and
    ``partner`` (the normalised inputs) and every array the model's ``forward`` returns
    (e.g. ``prediction`` for Paired Cell Inpainting, ``reconstruction`` for the
    autoencoder), centre-cropped to the model's training crop where it has one.
    """
    from ..training.batches import CellTensors, center_crop, step_generator

    model = model.to(device).eval()
    index = np.asarray(index)
    proteins = ds.meta["protein"].to_numpy()
    keep = np.flatnonzero(np.isin(proteins, proteins[index]))  # only the proteins involved, for partners
    cells = CellTensors.from_dataset(ds, keep, device=device)
    batch = cells.batch(np.searchsorted(keep, index), step_generator(seed, 0, 0, stream=3))
    batch = {k: center_crop(v, model.train_crop) if k in ("image", "partner") else v for k, v in batch.items()}
    out = model(batch)
    result = {"image": batch["image"], "partner": batch["partner"], **{k: v for k, v in out.items() if v.ndim > 0}}
    return {k: v.float().cpu().numpy() for k, v in result.items()}


def write_embeddings(ds, features, path, *, cells=True):
    """Write the cell table to ``path`` and the protein table beside it (:func:`protein_table_path`).

    ``cells=False`` writes the protein table only (the cell table of 18,000 crops takes 4 to
    12 s to format and compress).

    Returns
    -------
    cells, proteins : DataFrame
        The two tables of :func:`embedding_tables`.
    """
    cell_table, proteins = embedding_tables(ds, features)
    if cells:
        write_table(cell_table, path)
    write_table(proteins, protein_table_path(path))
    return cell_table, proteins




def embed_runs(runs, ds, *, crops="centre", device="cpu"):
    """Protein embeddings of ``ds`` by each of several trained runs (e.g. one per training seed).

    Parameters
    ----------
    runs : sequence of str or Path
        Run directories (:func:`protrep.training.runs.load_run`).
    ds : Dataset
    crops : {"centre", "five"}
    device : str or torch.device

    Returns
    -------
    list of DataFrame
        One protein table per run, in the order of ``runs``.
    """
    tables = []
    ds = stretched(ds) if len(runs) > 1 else ds
    for run in runs:
        model, _ = load_run(run, device=device)
        tables.append(embedding_tables(ds, embed_cells(model, ds, crops=crops, device=device))[1])
    return tables


# ----------------------------------------------------------------------------- streaming and distributed embedding
class _StretchedBatches(torch.utils.data.Dataset):
    """Batch ``k`` of ``images`` (rows ``k * batch_size`` on), percentile-stretched, as a float32 tensor."""

    def __init__(self, images, batch_size, done):
        self.images, self.batch_size, self.done = images, batch_size, done

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, k):
        x = self.images[k * self.batch_size:(k + 1) * self.batch_size]
        x = np.ascontiguousarray(x, dtype=np.float32) if self.done else percentile_stretch(x)
        return torch.from_numpy(x)


class _ProteinSums:
    """Float64 sums of the features of each protein's cells, added batch by batch in a fixed order."""

    def __init__(self, proteins):
        self.codes, self.names = pd.Series(proteins).factorize(sort=True)  # as groupby(sort=True); NaN: -1
        self.counts = np.bincount(self.codes[self.codes >= 0], minlength=len(self.names))
        self.sums = None

    def add(self, start, features):
        """Add the features of the cells ``start, start + 1, ...``."""
        if self.sums is None:
            self.sums = np.zeros((len(self.names), features.shape[1]))
        codes = self.codes[start:start + len(features)]
        keep = codes >= 0
        np.add.at(self.sums, codes[keep], features[keep].astype(np.float64))

    def table(self):
        return protein_table(self.names, np.zeros((len(self.names), 0)) if self.sums is None else self.sums,
                             self.counts)


class _RowsFile:
    """A float32 ``(n, d)`` ``.npy`` file written row block by row block, in order, under a temporary
    name renamed to ``path`` when all ``n`` rows are in (nothing is written when ``path`` is None).

    Rows go through plain writes rather than a memory map: the dirty pages of a map of a
    million rows would count in the process's memory until written back.
    """

    def __init__(self, path, n):
        self.path, self.n, self.rows = None if path is None else Path(path), n, 0
        self._stack, self._file = contextlib.ExitStack(), None

    def _open(self, d):
        self._file = self._stack.enter_context(atomic_file(self.path, "wb"))
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.n, int(d))}
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, rows):
        if self.path is None:
            return
        if self._file is None:
            self._open(rows.shape[1])
        self._file.write(np.ascontiguousarray(rows, dtype="<f4").data)
        self.rows += len(rows)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if self.path is not None and kind is None:
            try:
                if self._file is None:
                    self._open(0)
                if self.rows != self.n:
                    raise RuntimeError(f"{self.path}: {self.rows} rows written of {self.n}")
            except BaseException as e:
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
        return self._stack.__exit__(kind, value, tb)


def _world():
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device="auto"):
    """This process's ``(rank, world_size, device)``, joining the process group when launched by ``torchrun``.

    As :mod:`protrep.training.loop` does: when ``WORLD_SIZE > 1`` (set by ``torchrun``,
    which also sets ``RANK``, ``LOCAL_RANK`` and the rendezvous address) the default process
    group is initialised, with NCCL and the GPU ``cuda:LOCAL_RANK`` when ``device`` resolves
    to CUDA and with gloo on the CPU. A single process gets ``(0, 1, device)``.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` (:func:`protrep.training.runs.resolve_device`).
    """
    device = resolve_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = _world()
    return rank, world, device


def default_workers(device="cpu"):
    """DataLoader processes that read and stretch crops while a model on ``device`` runs.

    Reading and percentile-stretching run at about 5,000 crops/s per core (two-channel
    64 x 64 crops), about a tenth of the time of DeepLoc's centre crop on a CPU: on a
    CPU one worker hides it when the process has more than two cores, and none is used on
    two or fewer, where a worker competes with the model's threads (measured on two busy
    cores: within +-10% of none, either way). A GPU runs the model many times faster than
    one core stretches, so it gets every spare core of its process (its share of the cores
    under ``torchrun``, ``LOCAL_WORLD_SIZE``), at most 8.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if torch.device(device).type == "cuda":
        return max(1, min(8, share - 1))
    return 1 if share > 2 else 0


def _features(model, ds, batches, *, batch_size, size, layer, device, workers):
    """``(k, features)`` (float32 ndarray) of the batches ``k`` in ``batches`` of ``ds``, in that order."""
    from ..training.batches import center_crop

    data = _StretchedBatches(ds.images, batch_size, ds.info.get("stretched", False))
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=batches, num_workers=workers,
                                         pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
    with torch.no_grad():
        for k, x in zip(batches, loader):
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yield k, model.embed(center_crop(x, size), layer).float().cpu().numpy()


def _part_path(parts, rank, world):
    return Path(f"{parts}.part{rank:04d}-of-{world:04d}.npy")


def _merge_parts(parts, n, batch_size, world, sums, cells_out):
    """Rank 0: the parts' rows in global batch order into ``cells_out`` and ``sums``; the parts removed."""
    files = [_part_path(parts, r, world) for r in range(world)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(missing[0], f"part of rank {files.index(missing[0])} missing after the barrier: the "
                        "parts must be on a file system every rank can reach (a shared folder across nodes)")
    rows = [NpyRows(f) for f in files]
    with _RowsFile(cells_out, n) as out:
        for k, start in enumerate(range(0, n, batch_size)):
            at = (k // world) * batch_size  # rank k % W wrote its batches one after the other
            features = rows[k % world][at:at + min(batch_size, n - start)]
            sums.add(start, features)
            out.write(features)
    for f in files:
        f.unlink()
    log.info("merged %d parts of %d cells into %s", world, n, cells_out or "the protein table")


def _check_options(crops, batch_size, workers):
    if crops not in ("five", "centre"):
        raise ValueError(f"crops must be 'five' or 'centre', got {crops!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if workers is not None and int(workers) < 0:
        raise ValueError(f"workers must be 0 (read in this process) or more, got {workers}")


def embed_dataset(model, ds, *, layer=None, crops="five", batch_size=256, device="cpu", workers=None,
                  cells_out=None, parts=None, progress=True):
    """The protein embedding of ``ds``, computed batch by batch without holding all cell features.

    Parameters
    ----------
    model : nn.Module
        A trained model (:func:`protrep.training.runs.load_run`).
    ds : CellDataset
        In memory or read on demand (a sharded ``protrep-cells`` folder).
    layer : str, optional
        Feature layer (default: the model's).
    crops : {"five", "centre"}
        As :func:`embed_cells`.
    batch_size : int
        Crops per batch; the features of a cell depend only on the batch it is in, so the
        same ``batch_size`` gives the same numbers in one process or in many.
    device : str or torch.device
    workers : int, optional
        DataLoader processes reading and percentile-stretching the next batches while the
        model runs (0: in this process); by default :func:`default_workers`.
    cells_out : str or Path, optional
        Also write the cell features, float32 ``(n, d)`` in the order of ``ds``, to this
        ``.npy`` file (under a temporary name, renamed when complete).
    parts : str or Path, optional
        In a distributed run, the path prefix of the per-rank part files (on a file system
        every rank reaches); by default ``cells_out`` with a leading dot. Required there
        when ``cells_out`` is not given.
    progress : bool
        A progress bar (on rank 0).

    Returns
    -------
    DataFrame or None
        ``protein``, ``n_cells`` and the mean features ``f0000`` ..., the protein table of
        :func:`protrep.data.tables.embedding_tables`. The means are those of float64 sums,
        rounded once to float32 (the exact means, correctly rounded); pandas' float32
        means in ``embedding_tables`` differ from them in the last bits (measured: by at
        most 1e-7 of the largest feature). None on the ranks other than 0 of a distributed
        run (see the module docstring).
    """
    from ..progress import progress as progress_bar

    _check_options(crops, batch_size, workers)
    rank, world = _world()
    if world > 1 and parts is None:
        if cells_out is None:
            raise ValueError("a distributed run needs cells_out or parts: a place every rank can write its part")
        parts = Path(cells_out).with_name(f".{Path(cells_out).name}")
    device = torch.device(device)
    workers = default_workers(device) if workers is None else int(workers)
    model = _prepare(model, device)
    n, sums = len(ds), _ProteinSums(ds.meta["protein"])
    batches = list(range(rank, -(-n // batch_size), world))
    mine = sum(min(batch_size, n - k * batch_size) for k in batches)
    bar = progress_bar(total=mine, desc="embedding", unit="crop", disable=not progress or rank != 0)
    features = _features(model, ds, batches, batch_size=batch_size, device=device, workers=workers,
                         size=model.train_crop if crops == "centre" else None, layer=layer)
    with bar, _RowsFile(cells_out if world == 1 else _part_path(parts, rank, world), mine) as out:
        for k, f in features:
            if world == 1:
                sums.add(k * batch_size, f)
            out.write(f)
            bar.update(len(f))
    if world == 1:
        return sums.table()
    dist.barrier()
    if rank != 0:
        return None
    _merge_parts(parts, n, batch_size, world, sums, cells_out)
    return sums.table()


def write_streamed_embeddings(model, ds, path, *, cells="table", layer=None, crops="five", batch_size=256,
                              device="cpu", workers=None, progress=True):
    """Embed ``ds`` with :func:`embed_dataset` and write the files of ``protrep embed --out path``.

    Parameters
    ----------
    model, ds, layer, crops, batch_size, device, workers, progress
        As :func:`embed_dataset`.
    path : str or Path
        The cell table's name, ``.csv``, ``.csv.gz`` or ``.parquet``; the protein table is
        always written beside it (:func:`protrep.data.tables.protein_table_path`).
    cells : {"table", "npy", "none"}
        The cell features' form. ``"table"``: the cell table at ``path``, as
        :func:`write_embeddings` (built in memory: for datasets of up to some 100,000
        cells). ``"npy"``: a float32 ``<stem>.cells.npy`` and the cell metadata
        ``<stem>.cells<suffix>`` (:func:`protrep.data.tables.cell_feature_paths`), written as
        the batches come, for any number of cells; ``path`` itself is not written.
        ``"none"``: the protein table only.

    Returns
    -------
    DataFrame or None
        The protein table (None on the ranks other than 0 of a distributed run).
    """
    if cells not in CELL_FORMS:
        raise ValueError(f"cells must be one of {', '.join(CELL_FORMS)}, got {cells!r}")
    path = Path(path)
    proteins_path = protein_table_path(path)  # a bad suffix fails before the embedding, not after
    features_path, meta_path = cell_feature_paths(path)
    scratch = path.with_name(f".{path.name}.features.npy")  # "table": the features on their way to the table
    cells_out = {"table": scratch, "npy": features_path, "none": None}[cells]
    proteins = embed_dataset(model, ds, layer=layer, crops=crops, batch_size=batch_size, device=device,
                             workers=workers, cells_out=cells_out, parts=path.with_name(f".{path.name}"),
                             progress=progress)
    if proteins is None:
        return None
    if cells == "npy":
        write_table(cell_metadata(ds.meta), meta_path)
    elif cells == "table":
        try:
            write_table(embedding_tables(ds, np.load(scratch, mmap_mode="r"))[0], path)
        finally:
            scratch.unlink(missing_ok=True)
    write_table(proteins, proteins_path)
    return proteins
