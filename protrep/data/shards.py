"""Write out-of-core ``protrep-cells`` datasets: shards of ``.npy`` arrays read on demand.

A screen of millions of crops does not fit in memory (a million two-channel 64 x 64 crops
are 16 GB as uint16 and 33 GB as float32), so version 2 of the ``protrep-cells`` format
splits the crops into **shards**, each a folder of plain ``.npy`` arrays whose rows are read
when asked for (:func:`protrep.data.dataset.load_dataset` returns their images as a
:class:`~protrep.data.arrays.ShardedArray`)::

    dataset.json          as version 1, plus "version": 2, "layout": "shards", "dtype",
                          "has_masks", "shard_size" and "shards": [[name, n_cells], ...]
    proteins.csv          one row per protein (as version 1)
    standards/            functional standards (as version 1)
    shards/00000/         images.npy  (n, c, h, w) uint16 counts or float32 intensities
                          masks.npy   (n, h, w) bool centre-cell masks (when the data has them)
                          cells.csv   the shard's rows of the cell table (CELL_COLUMNS first)
    shards/00001/ ...

Each shard is written to a temporary folder beside it and renamed when complete, so
shards are written in parallel (by processes of one machine or by the jobs of a cluster
array) and a killed writer leaves complete shards, which the next run keeps, and a
temporary folder, which the next run removes (:func:`clean_temporaries`).
``dataset.json`` is written last (:func:`finalize_shards`): a folder without it is an
unfinished dataset and is not read.

Why ``.npy`` shards and not a chunked store such as zarr: ``benchmarks/bench_scale.py``
measures random access of single crops, the pattern of shuffled training; a crop of an
``.npy`` shard is one contiguous read with no decompression, no dependency beyond NumPy,
and any tool opens it (``np.load(..., mmap_mode="r")``); the numbers are in the README.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_dir, atomic_file, host_name, remove_dead_writers, writer_alive
from ..errors import DataError
from .dataset import CELL_COLUMNS, FORMAT_NAME, SHARDED_VERSION

__all__ = ["DEFAULT_SHARD_SIZE", "shard_name", "write_shard", "done_shards", "clean_temporaries",
           "finalize_shards", "write_sharded", "shard_ranges", "complete_cells", "writer_alive"]

#: Crops per shard: 4,096 two-channel 64 x 64 uint16 crops are 64 MB.
DEFAULT_SHARD_SIZE = 4096
_SHARD_RE = re.compile(r"^\d{5,}$")
_TMP_RE = re.compile(r"^\.(?P<shard>\d{5,})\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")
_DTYPES = (np.uint16, np.float32)


def shard_name(k):
    """Folder name of shard ``k`` (``00000``, ``00001``, ...)."""
    return f"{int(k):05d}"


def shard_ranges(n, shard_size=DEFAULT_SHARD_SIZE):
    """``[(start, stop), ...]`` of the cells each shard of ``n`` cells holds."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def _check_shard(images, masks, cells):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {images.shape}")
    if images.dtype not in _DTYPES:
        raise ValueError(f"images must be uint16 counts or float32, got {images.dtype}")
    if len(cells) != len(images) or (masks is not None and np.shape(masks) != (len(images), *images.shape[2:])):
        raise ValueError(f"{len(images)} images of {images.shape[2:]}, masks of shape "
                         f"{None if masks is None else np.shape(masks)} and {len(cells)} cell rows must agree")
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks columns {missing}")
    return images


def write_shard(root, k, images, cells, masks=None):
    """Write shard ``k`` of the dataset folder ``root`` atomically; return its folder.

    Parameters
    ----------
    root : str or Path
        The dataset folder (created if missing).
    k : int
        Shard number.
    images : ndarray, uint16 or float32, shape (n, c, h, w)
    cells : DataFrame
        ``n`` rows with at least the columns ``CELL_COLUMNS``.
    masks : ndarray of bool, shape (n, h, w), optional

    Raises
    ------
    FileExistsError
        The shard exists already (a finished shard is never rewritten).
    """
    images = _check_shard(images, masks, cells)
    folder = Path(root) / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / shard_name(k)
    if final.exists():
        raise FileExistsError(f"{final}: shard already written")
    tmp = folder / f".{shard_name(k)}.{host_name()}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        np.save(tmp / "images.npy", np.ascontiguousarray(images))
        if masks is not None:
            np.save(tmp / "masks.npy", np.ascontiguousarray(masks, dtype=bool))
        order = CELL_COLUMNS + [c for c in cells.columns if c not in CELL_COLUMNS]
        cells[order].to_csv(tmp / "cells.csv", index=False, float_format="%.6g", lineterminator="\n")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def done_shards(root):
    """Numbers of the complete shards in ``root/shards``, sorted."""
    folder = Path(root) / "shards"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and _SHARD_RE.match(p.name))


def clean_temporaries(root):
    """Remove the temporary shard folders that killed writers of this machine left in ``root``.

    A temporary folder is named ``.<shard>.<host>.<pid>.tmp``; it is removed when its host
    is this machine and its process is gone. Those of other hosts (cluster jobs writing to
    a shared file system) are left to the jobs of those hosts.

    Returns
    -------
    list of Path
        The folders removed.
    """
    return remove_dead_writers(Path(root) / "shards", _TMP_RE)


def _shard_arrays(folder):
    """``(n, shape, dtype, has_masks)`` of one complete shard, read from the .npy headers only."""
    try:
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(folder / "images.npy", f"unreadable or truncated .npy file ({e})") from None
    if not (folder / "cells.csv").is_file():
        raise DataError(folder, "shard without cells.csv")
    return len(images), images.shape[1:], images.dtype, (folder / "masks.npy").is_file()


def _proteins_of(cells):
    """The protein table a converted dataset gets when none is given: one row per protein."""
    keep = [c for c in ("protein", "localization", "split") if c in cells]
    return cells[keep].drop_duplicates("protein").sort_values("protein").reset_index(drop=True)


def finalize_shards(root, *, channels, classes=(), n_shards=None, proteins=None, standards=None, config=None,
                    extra=None):
    """Check the shards of ``root`` and write ``dataset.json`` (and ``proteins.csv``, ``standards/``).

    Parameters
    ----------
    root : str or Path
    channels, classes : sequence of str
    n_shards : int, optional
        The number of shards the dataset must have; every one of ``0 .. n_shards - 1``
        must be complete. By default the complete shards must be numbered from 0 without gaps.
    proteins : DataFrame, optional
        One row per protein; by default built from the cells (protein, localization, split).
    standards : dict of str to DataFrame, optional
    config, extra : dict, optional
        As :func:`protrep.data.dataset.write_dataset`.

    Returns
    -------
    dict
        The header written to ``dataset.json``.
    """
    root = Path(root)
    done = done_shards(root)
    expected = list(range(n_shards if n_shards is not None else len(done)))
    if not done or done != expected:
        missing = sorted(set(expected) - set(done))
        raise DataError(root, f"{len(done)} complete shards, expected {len(expected)}"
                        + (f"; missing {', '.join(shard_name(k) for k in missing[:5])}" if missing else "")
                        + (f"; unexpected {', '.join(shard_name(k) for k in sorted(set(done) - set(expected))[:5])}"
                           if set(done) - set(expected) else ""))
    counts, first = [], None
    for k in done:
        n, shape, dtype, has_masks = _shard_arrays(root / "shards" / shard_name(k))
        if first is None:
            first = (shape, dtype, has_masks)
        elif (shape, dtype, has_masks) != first:
            raise DataError(root / "shards" / shard_name(k), f"crops of {shape} {dtype} (masks: {has_masks}); "
                            f"shard 00000 has {first[0]} {first[1]} (masks: {first[2]})")
        counts.append([shard_name(k), int(n)])
    shape, dtype, has_masks = first
    if len(channels) != shape[0]:
        raise DataError(root, f"crops have {shape[0]} channels but {len(channels)} names {list(channels)}")
    if proteins is None:
        proteins = _proteins_of(pd.concat([pd.read_csv(root / "shards" / n / "cells.csv",
                                                       usecols=lambda c: c in ("protein", "localization", "split"),
                                                       dtype=str, keep_default_na=False) for n, _ in counts]))
    header = {
        "format": FORMAT_NAME, "version": SHARDED_VERSION, "layout": "shards",
        "channels": list(channels), "classes": list(classes), "image_shape": [int(s) for s in shape],
        "dtype": str(dtype), "has_masks": bool(has_masks), "n_cells": int(sum(n for _, n in counts)),
        "n_proteins": int(len(proteins)), "shard_size": int(max(n for _, n in counts)), "shards": counts,
        "standards": sorted(standards or {}), "config": config or {}, **(extra or {}),
    }
    with atomic_file(root / "proteins.csv", "w") as f:
        proteins.to_csv(f, index=False, float_format="%.6g", lineterminator="\n")
    if standards:
        with atomic_dir(root / "standards", overwrite=True) as tmp:
            for name, table in sorted(standards.items()):
                table[["term", "protein"]].to_csv(tmp / f"{name}.tsv", sep="\t", index=False, lineterminator="\n")
    with atomic_file(root / "dataset.json", "w") as f:
        f.write(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return header


def write_sharded(path, ds, *, shard_size=DEFAULT_SHARD_SIZE, dtype=None, proteins=None, standards=None,
                  config=None, overwrite=False, progress=True):
    """Write a :class:`~protrep.data.dataset.CellDataset` (in memory or lazy) as a sharded folder.

    Shards are written one after the other, reading ``shard_size`` crops at a time, so a lazy
    dataset is copied with bounded memory. An existing folder is replaced only with
    ``overwrite`` and only when it is a ``protrep-cells`` dataset.

    Parameters
    ----------
    path : str or Path
    ds : CellDataset
        With the columns ``CELL_COLUMNS`` (missing ``plate``, ``well``, ``field``, ``cell``,
        ``x``, ``y``, ``label``, ``localization`` and ``split`` are filled with 0, ``""``,
        0, the row number, NaN, NaN, -1, ``""`` and ``""``).
    shard_size : int
    dtype : {"uint16", "float32"}, optional
        Storage type; by default uint16 for integer-valued uint16 data, else float32.
    proteins, standards, config
        As :func:`finalize_shards`.
    """
    from ..progress import progress as progress_bar

    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
        if not (path / "dataset.json").is_file() and not (path / "shards").is_dir():
            raise DataError(path, "is not a protrep-cells dataset; refusing to replace it")
        shutil.rmtree(path)
    dtype = np.dtype(dtype or (np.uint16 if ds.images.dtype == np.uint16 else np.float32))
    cells = complete_cells(ds.meta)
    ranges = shard_ranges(len(ds), shard_size)
    for k, (start, stop) in enumerate(progress_bar(ranges, desc="writing shards", unit="shard", disable=not progress)):
        masks = None if ds.masks is None else np.asarray(ds.masks[start:stop])
        write_shard(path, k, np.asarray(ds.images[start:stop]).astype(dtype, copy=False),
                    cells.iloc[start:stop], masks)
    return finalize_shards(path, channels=ds.channels, classes=ds.classes, n_shards=len(ranges),
                           proteins=proteins, standards=standards, config=config)


def complete_cells(meta):
    """``meta`` with every column of ``CELL_COLUMNS``, filling the missing ones (see :func:`write_sharded`)."""
    cells = meta.reset_index(drop=True).copy()
    fill = {"plate": 0, "well": "", "field": 0, "cell": np.arange(len(cells)), "x": np.nan, "y": np.nan,
            "label": -1, "localization": "", "split": ""}
    for column, value in fill.items():
        if column not in cells:
            cells[column] = value
    return cells
