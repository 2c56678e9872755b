"""Convert what users have into the sharded ``protrep-cells`` format (``protrep convert SRC --out DIR``).

Sources (:data:`CONVERT_FORMATS`, detected by :func:`detect_source_format` unless named):

=================  ==================================================================
``crop-folder``    WT2 / Paired Cell Inpainting crops ``<root>/<PROTEIN>/<name>_{gfp,rfp}.tif``
``hpa-crops``      HPA single-cell crops ``<root>/<GENE>_<plate>_<well>/<name>_{red,green,blue}.tif``
``deeploc-hdf5``   DeepLoc / Chong et al. 2015 HDF5 (``data1``, ``Index1``)
``hpa-kaggle``     the HPA Kaggle layout ``train.csv`` + ``train/<Id>_<channel>.png``
``protrep-cells``  a ``protrep-cells`` folder (version 1 or 2), re-sharded
=================  ==================================================================

A conversion never holds the crops in memory. It first builds a deterministic **index** of
the source (for a crop tree, ``os.scandir`` of its folders in the order of
:func:`~protrep.data.readers.read_crop_folder`; for an HDF5 file, its row numbers), with one
metadata row per cell; cell ``i`` goes to shard ``i // shard_size``. The shards are then
read and written by a pool of processes, each shard atomically
(:func:`~protrep.data.shards.write_shard`), so a killed conversion keeps its complete
shards and the next run of the same command skips them (temporaries of dead writers are
removed). ``shard=(i, n)`` converts only the shards ``k`` with ``k % n == i``: the ``n``
jobs of a cluster array split the work, and whichever finds every shard complete writes
``dataset.json``.

The conversion parameters (source, format, shard size, number of cells, a digest of the
index, label and split options) are kept in ``DIR/convert.json``; resuming into ``DIR``
with other parameters is refused. Floating-point crops are stored as float32 (the WT2
crops are float32 in [0, 0.2]), unsigned 8- and 16-bit ones as uint16.

Every converted dataset gets a ``split`` column assigned per protein with
:func:`~protrep.data.dataset.split_by_protein`, stratified by primary class where known (a
``protrep-cells`` source that has a complete split keeps it). Localization labels can be
joined by protein from the Huh et al. 2003 table or a generic table (:func:`read_labels`,
:func:`match_labels`); ``DIR/labels_report.json`` lists what matched.
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..atomic import read_json, write_json
from ..errors import DataError
from ..progress import progress as progress_bar
from ..workers import check_workers, process_pool
from .dataset import FORMAT_NAME, load_dataset, load_proteins, split_by_protein
from .hpa import HPA_CHANNELS, HPA_CLASSES, _parse_target
from .proteome import CLASSES, HUH_CENSUS, HUH_TO_CLASS
# the crop readers' own file patterns, sort key and TIFF reader, so the index has their order and checks
from .readers import (_CROP_RE, _HPA_RE, _check_hdf5, CROP_CHANNELS, DEEPLOC_CHANNELS, HPA_CROP_CHANNELS, _deeploc_channel_names,
                      _deeploc_proteins, _decode, _natural_key, _read_tiff, detect_format, read_field_image)
from .shards import (DEFAULT_SHARD_SIZE, clean_temporaries, complete_cells, done_shards, finalize_shards,
                     writer_alive,
                     shard_name, shard_ranges, write_shard)
from .standards import read_huh2003

__all__ = ["CONVERT_FORMATS", "PARAMS_FILE", "REPORT_FILE", "convert", "detect_source_format", "read_labels",
           "match_labels"]

log = logging.getLogger(__name__)

#: Source formats :func:`convert` reads.
CONVERT_FORMATS = ("crop-folder", "hpa-crops", "deeploc-hdf5", "hpa-kaggle", FORMAT_NAME)
#: File in the output folder holding the conversion parameters.
PARAMS_FILE = "convert.json"
#: File in the output folder reporting which proteins the label table matched.
REPORT_FILE = "labels_report.json"
_LOCK = ".finalize.lock"
_SPLITS = {"train", "val", "test"}


# --------------------------------------------------------------------------- the source index

@dataclasses.dataclass
class _Source:
    """A source's index: one ``meta`` row per cell, and how to read the crops of a row range."""

    format: str
    path: Path
    channels: tuple
    meta: pd.DataFrame
    shape: tuple          # (c, h, w) of every crop
    dtype: np.dtype       # storage type: float32 or uint16
    identity: str         # sha1 of the index: a changed source is not resumed into
    payload: object       # (start, stop) -> picklable argument of ``reader``
    reader: object        # module-level function (payload, dtype, shape) -> (images, masks)
    classes: tuple = ()
    has_masks: bool = False
    proteins: pd.DataFrame | None = None
    standards: dict | None = None
    config: dict | None = None


def _storage_dtype(dtype):
    """uint16 for unsigned integers of up to 16 bits, float32 for everything else."""
    dtype = np.dtype(dtype)
    return np.dtype(np.uint16) if dtype.kind in "ub" and dtype.itemsize <= 2 else np.dtype(np.float32)


def _checked(image, where, dtype, shape):
    """``image`` after checking its shape and type against the first crop's (values: :func:`_check_finite`)."""
    if image.shape != shape:
        raise DataError(where, f"crop shape {image.shape} differs from {shape} of the first crop; "
                               "all crops must have the same size")
    if dtype == np.uint16 and (image.dtype.kind not in "ub" or image.dtype.itemsize > 2):
        raise DataError(where, f"{image.dtype} pixels, but the first crop's are integers stored as uint16; "
                               "all crops must have one pixel type")
    return image


def _check_finite(images, files):
    """Raise naming the first file of ``files[i][j]`` whose crop ``images[i, j]`` has NaN or infinite pixels."""
    if images.dtype.kind != "f" or np.isfinite(images).all():
        return
    i, j = np.argwhere(~np.isfinite(images).all(axis=(2, 3)))[0]
    raise DataError(files[i][j], f"{int((~np.isfinite(images[i, j])).sum())} NaN or infinite pixels")


class _TiffReader:
    """Read many small uncompressed TIFFs of one layout about ten times faster than ``tifffile.imread``.

    A file is first read with tifffile; when it is a single uncompressed, contiguous 2-D
    page whose raw bytes decode to what tifffile returned, its bytes outside the pixel data
    become a template. A later file of the same size whose bytes outside the pixel data are
    identical to a template's has, byte for byte, the same header, so its pixels are read
    straight from the bytes. Any other file is read with tifffile (and its errors raised as
    :class:`DataError`, as the crop readers do).
    """

    def __init__(self):
        self.templates = {}  # file size -> (start, stop, dtype, shape, bytes before, bytes after, pixels)

    def __call__(self, file):
        with open(file, "rb") as f:
            raw = f.read()
        t = self.templates.get(len(raw))
        if t is not None and raw[:t[0]] == t[4] and raw[t[1]:] == t[5]:
            return np.frombuffer(raw, t[2], offset=t[0], count=t[6]).reshape(t[3])
        image = _read_tiff(file)
        if len(self.templates) < 8:
            self._learn(raw, image)
        return image

    def _learn(self, raw, image):
        import io

        import tifffile

        try:
            with tifffile.TiffFile(io.BytesIO(raw)) as tf:
                page = tf.pages[0]
                if len(tf.pages) != 1 or page.compression != 1 or page.samplesperpixel != 1 or image.ndim != 2:
                    return
                offsets, counts = page.dataoffsets, page.databytecounts
                dtype = np.dtype(page.dtype).newbyteorder(tf.byteorder)
        except Exception:  # any oddity: no template, tifffile keeps reading these files
            return
        start, stop = int(offsets[0]), int(offsets[0]) + image.size * dtype.itemsize
        if any(int(o) != int(offsets[0]) + int(sum(counts[:i])) for i, o in enumerate(offsets)) or stop > len(raw):
            return
        if np.array_equal(np.frombuffer(raw, dtype, offset=start, count=image.size).reshape(image.shape), image,
                          equal_nan=True):
            self.templates[len(raw)] = (start, stop, dtype, image.shape, raw[:start], raw[stop:], image.size)


def _read_files(payload, dtype, shape):
    """Crops from image files: ``payload`` is ``(kind, [(file per channel), ...])``."""
    kind, cells = payload
    read = _TiffReader() if kind == "tiff" else read_field_image
    images, size = np.empty((len(cells), *shape), dtype), tuple(shape[1:])
    for i, files in enumerate(cells):
        for j, file in enumerate(files):
            images[i, j] = _checked(read(file), file, dtype, size)
    _check_finite(images, cells)
    return images, None


def _read_hdf5(payload, dtype, shape):
    """Rows ``start:stop`` of a DeepLoc file's ``data1``."""
    path, start, stop = payload
    try:
        with h5py.File(path, "r") as f:
            block = np.asarray(f["data1"][start:stop])
    except OSError as e:
        raise DataError(path, f"truncated or corrupt HDF5 file ({e})") from None
    if block.dtype.kind == "f":
        bad = ~np.isfinite(block)
        if bad.any():
            rows = start + np.flatnonzero(bad.any(axis=1))
            raise DataError(path, f"'data1' has {int(bad.sum())} NaN or infinite pixels "
                                  f"(first in cell {int(rows[0])}, {len(rows)} cells affected)")
    return block.reshape(-1, *shape).astype(dtype, copy=False), None


def _read_npy(payload, dtype, shape):
    """Rows of a ``protrep-cells`` folder: ``payload`` lists ``(file, lo, hi)`` pieces of images and masks."""
    def rows(pieces):
        return np.concatenate([np.load(f, mmap_mode="r", allow_pickle=False)[lo:hi] for f, lo, hi in pieces])

    image_pieces, mask_pieces = payload
    images = rows(image_pieces).astype(dtype, copy=False)
    return images, (rows(mask_pieces).astype(bool, copy=False) if mask_pieces else None)


def _digest(lines):
    h = hashlib.sha1()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _scan_folder(folder, pattern, channels):
    """``[(name, suffixes), ...]`` of the cells of one folder, naturally sorted; every channel required."""
    groups = {}
    with os.scandir(folder) as entries:
        for e in entries:
            m = pattern.match(e.name)
            if m and e.is_file():
                groups.setdefault(m["name"], {})[m["channel"]] = e.name[len(m["name"]) + 1 + len(m["channel"]):]
    shared, cells = {}, []
    for name in sorted(groups, key=_natural_key):
        have = groups[name]
        missing = [c for c in channels if c not in have]
        if missing:
            present = ", ".join(f"{name}_{c}{have[c]}" for c in channels if c in have)
            raise DataError(folder, f"{present} has no partner {', '.join(f'{name}_{c}.tif' for c in missing)}; "
                                    f"every cell needs all of {', '.join('_' + c for c in channels)}")
        suffixes = tuple(have[c] for c in channels)
        cells.append((name, shared.setdefault(suffixes, suffixes)))
    return cells


def _scan_tree(root, pattern, channels):
    """``[(folder, cells), ...]`` in the crop readers' order: the root if it holds crops, else its subfolders.

    Subfolders are taken in natural order, hidden ones skipped, as
    :func:`~protrep.data.readers.read_crop_folder` does.
    """
    if not root.is_dir():
        raise DataError(root, "no such folder" if not root.exists() else "not a folder; expected a crop folder")
    top = _scan_folder(root, pattern, channels)
    if top:
        return [(root, top)]
    with os.scandir(root) as entries:
        subs = sorted((e.name for e in entries if e.is_dir() and not e.name.startswith(".")), key=_natural_key)
    return [(root / s, cells) for s in subs if (cells := _scan_folder(root / s, pattern, channels))]


def _open_tree(path, fmt):
    """Index of a WT2 crop tree or an HPA crop folder, without reading a crop but the first."""
    pattern, channels = (_CROP_RE, CROP_CHANNELS) if fmt == "crop-folder" else (_HPA_RE, HPA_CROP_CHANNELS)
    folders = _scan_tree(path, pattern, channels)
    if not folders:
        raise DataError(path, f"no crops found: expected <folder>/<name>_{{{','.join(channels)}}}.tif files")
    where = np.concatenate([np.full(len(cells), i, np.int32) for i, (_, cells) in enumerate(folders)])
    names = [name for _, cells in folders for name, _ in cells]
    suffixes = [s for _, cells in folders for _, s in cells]
    folder_names = [f.name for f, _ in folders]
    meta = pd.DataFrame({"protein": np.take(folder_names, where), "name": names})
    if fmt == "hpa-crops":
        parts = [f.split("_") for f in folder_names]
        meta = pd.DataFrame({"protein": np.take([p[0] for p in parts], where), "sample": meta["protein"],
                             "plate": np.take([p[1] if len(p) > 1 else "" for p in parts], where),
                             "well": np.take([p[2] if len(p) > 2 else "" for p in parts], where), "name": names})
    meta["label"], meta["localization"] = -1, ""
    dirs = [str(f) for f, _ in folders]

    def payload(start, stop):
        return "tiff", [tuple(os.path.join(dirs[where[i]], f"{names[i]}_{c}{s}") for c, s in zip(channels, suffixes[i]))
                        for i in range(start, stop)]

    first = _read_tiff(payload(0, 1)[1][0][0])
    identity = _digest(f"{folder_names[where[i]]}/{names[i]}{''.join(suffixes[i])}" for i in range(len(names)))
    return _Source(fmt, path, channels, meta, (len(channels), *first.shape), _storage_dtype(first.dtype), identity,
                   payload, _read_files)


def _deeploc_labels(f, n, path, chunk=65536):
    """``(classes, labels)`` from ``Index1`` (argmax per row, -1 for an all-zero row), read in chunks."""
    classes = ()
    if "Index1_columns" in f.attrs:
        classes = tuple(_decode(v).strip() for v in np.atleast_1d(f.attrs["Index1_columns"]))
    labels = np.full(n, -1, np.int64)
    if "Index1" not in f:
        return classes, labels
    onehot = f["Index1"]
    if onehot.ndim != 2 or onehot.shape[0] != n or (classes and onehot.shape[1] != len(classes)):
        raise DataError(path, f"'Index1' has shape {onehot.shape}, expected ({n}, {len(classes) or 'n_classes'}): "
                              "one label row per cell of 'data1'")
    classes = classes or tuple(f"class_{i}" for i in range(onehot.shape[1]))
    for start in range(0, n, chunk):
        block = np.asarray(onehot[start:start + chunk], np.float64)
        if not np.isfinite(block).all():
            raise DataError(path, "'Index1' contains NaN labels")
        has = block.sum(axis=1) > 0
        labels[start:start + len(block)][has] = np.argmax(block[has], axis=1)
    return classes, labels


def _open_deeploc(path):
    """Index of a DeepLoc HDF5 file: its row numbers, proteins and labels (pixels are read per shard)."""
    _check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            if "data1" not in f or not isinstance(f["data1"], h5py.Dataset) or f["data1"].ndim != 2:
                raise DataError(path, f"no 2-D 'data1' dataset (found {sorted(f.keys())}); not a DeepLoc file")
            n, row = f["data1"].shape
            raw_dtype = f["data1"].dtype
            channels = _deeploc_channel_names(f.attrs.get("data1_columns")) or DEEPLOC_CHANNELS
            classes, labels = _deeploc_labels(f, n, path)
            protein = _deeploc_proteins(f, n, path)
    except OSError as e:
        raise DataError(path, f"truncated or corrupt HDF5 file ({e})") from None
    c = len(channels)
    side = int(round(np.sqrt(row / c)))
    if n == 0 or c * side * side != row:
        raise DataError(path, f"'data1' has shape {(n, row)}: rows must be {c} channels of s x s pixels "
                              f"(DeepLoc crops are {c} x 64 x 64 = {c * 64 * 64})")
    localization = np.array([classes[i] if i >= 0 else "" for i in labels], dtype=object)
    meta = pd.DataFrame({"protein": protein, "label": labels, "localization": localization})
    identity = _digest([f"{n} {row} {raw_dtype} {classes}", *protein, labels.tobytes().hex()])
    return _Source("deeploc-hdf5", path, tuple(channels), meta, (c, side, side), _storage_dtype(raw_dtype), identity,
                   lambda start, stop: (str(path), start, stop), _read_hdf5, classes=classes)


def _open_kaggle(path):
    """Index of the HPA Kaggle layout: the rows of ``train.csv``; the PNGs are read per shard."""
    table_file = path / "train.csv"
    try:
        table = pd.read_csv(table_file, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(table_file, f"unreadable CSV ({e})") from None
    if [c for c in ("Id", "Target") if c not in table.columns] or len(table) == 0:
        raise DataError(table_file, "expected columns Id,Target and at least one row (the HPA Kaggle train.csv)")
    localization = [_parse_target(v, table_file, i + 2) for i, v in enumerate(table["Target"])]
    ids = table["Id"].tolist()
    folder = str(path / "train" if (path / "train").is_dir() else path)
    meta = pd.DataFrame({"protein": ids, "Id": ids, "label": -1, "localization": localization})

    def payload(start, stop):
        return "image", [tuple(os.path.join(folder, f"{i}_{c}.png") for c in HPA_CHANNELS) for i in ids[start:stop]]

    first = read_field_image(payload(0, 1)[1][0][0])
    identity = _digest(f"{i} {t}" for i, t in zip(ids, table["Target"]))
    return _Source("hpa-kaggle", path, HPA_CHANNELS, meta, (len(HPA_CHANNELS), *first.shape),
                   _storage_dtype(first.dtype), identity, payload, _read_files, classes=HPA_CLASSES)


def _pieces(files, lengths, start, stop):
    """``(file, lo, hi)`` pieces of consecutive arrays of ``lengths`` rows that hold rows ``start:stop``."""
    out, offset = [], 0
    for f, n in zip(files, lengths):
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            out.append((f, lo, hi))
        offset += n
    return out


def _open_protrep(path):
    """Index of a ``protrep-cells`` folder (version 1 or 2): its rows, cell table, proteins and standards."""
    ds = load_dataset(path, mmap=True)
    header = ds.info
    if header.get("version") == 1:
        folders = [path]
    else:
        folders = [path / "shards" / name for name, _ in header["shards"]]
    lengths = [len(p) for p in ds.images.parts] if hasattr(ds.images, "parts") else [len(ds.images)]
    images = [str(f / "images.npy") for f in folders]
    masks = [str(f / "masks.npy") for f in folders] if ds.masks is not None else []

    def payload(start, stop):
        return _pieces(images, lengths, start, stop), _pieces(masks, lengths, start, stop) if masks else []

    standards = {name: pd.read_csv(path / "standards" / f"{name}.tsv", sep="\t", dtype=str, keep_default_na=False)
                 for name in header.get("standards", [])}
    identity = _digest([json.dumps({k: header.get(k) for k in ("n_cells", "image_shape", "version")}),
                        *ds.meta["protein"].astype(str)])
    return _Source(FORMAT_NAME, path, tuple(ds.channels), ds.meta, tuple(ds.images.shape[1:]),
                   _storage_dtype(ds.images.dtype), identity, payload, _read_npy, classes=tuple(ds.classes),
                   has_masks=ds.masks is not None, proteins=load_proteins(path), standards=standards or None,
                   config=header.get("config"))


def detect_source_format(path):
    """Name the format of a source for :func:`convert`: one of :data:`CONVERT_FORMATS`.

    The HPA Kaggle layout is a folder with ``train.csv`` whose header has ``Id`` and
    ``Target``; everything else is named by :func:`~protrep.data.readers.detect_format`.

    Raises
    ------
    DataError
        The path does not exist or matches none of the formats.
    """
    path = Path(path)
    if path.is_dir() and (path / "train.csv").is_file():
        with open(path / "train.csv", errors="replace") as f:
            head = [c.strip().strip('"') for c in f.readline().split(",")]
        if "Id" in head and "Target" in head:
            return "hpa-kaggle"
    try:
        return detect_format(path)
    except DataError as e:
        raise DataError(path, f"{e.problem.split(';')[0]}; convert reads {', '.join(CONVERT_FORMATS)}") from None


def _open_source(path, fmt):
    openers = {"crop-folder": _open_tree, "hpa-crops": _open_tree, "deeploc-hdf5": lambda p, f: _open_deeploc(p),
               "hpa-kaggle": lambda p, f: _open_kaggle(p), FORMAT_NAME: lambda p, f: _open_protrep(p)}
    if fmt not in openers:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(CONVERT_FORMATS)}")
    return openers[fmt](path, fmt)


# --------------------------------------------------------------------------- labels

def _read_huh_labels(path):
    """Huh 2003 table as label rows: keys ``orf`` and ``gene``; classes mapped with ``HUH_TO_CLASS``."""
    huh = read_huh2003(path)
    mapped = [{HUH_TO_CLASS[c] for c in HUH_TO_CLASS if row[c] and HUH_TO_CLASS[c]}
              for row in huh[list(HUH_TO_CLASS)].to_dict("records")]
    return pd.DataFrame({
        "orf": huh.index.to_numpy(), "gene": huh["gene"].to_numpy(),
        "localization": [";".join(k for k in CLASSES if k in m) for m in mapped],
        # the primary class as huh2003_proteome picks it: the rarest in the Huh 2003 census
        "primary": [min(m, key=HUH_CENSUS.__getitem__) if m else "" for m in mapped],
    }), CLASSES


def _read_generic_labels(path):
    """A CSV/TSV with columns ``protein`` and ``localization`` (``;``-separated; the first is the primary)."""
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable table ({e})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if "protein" not in raw or "localization" not in raw:
        raise DataError(path, f"columns {list(raw.columns)[:8]}: expected 'protein' and 'localization' "
                              "(;-separated classes), or the Huh et al. 2003 yeastgfp table")
    names = [[x.strip() for x in str(v).split(";") if x.strip()] for v in raw["localization"]]
    used = {x for n in names for x in n}
    classes = next((c for c in (CLASSES, HPA_CLASSES) if used <= set(c)), tuple(sorted(used)))
    table = raw[[c for c in ("protein", "orf", "gene") if c in raw]].copy()
    table["localization"] = [";".join(sorted(set(n), key=classes.index)) for n in names]
    table["primary"] = [n[0] if n else "" for n in names]
    return table, tuple(classes)


def read_labels(path):
    """Read a localization table keyed by protein.

    Parameters
    ----------
    path : str or Path
        The Huh et al. 2003 yeastgfp CSV (:func:`~protrep.data.standards.read_huh2003`;
        its 22 compartments are mapped to the 15 classes :data:`~protrep.data.proteome.CLASSES`
        by :data:`~protrep.data.proteome.HUH_TO_CLASS`), or a CSV/TSV (``.tsv``, ``.tab``
        and ``.txt`` are tab-separated) with columns ``protein`` and ``localization``, and
        optionally ``orf`` and ``gene``.

    Returns
    -------
    table : DataFrame
        One row per protein: the key columns (``orf`` and ``gene``, or ``protein`` and
        whichever of ``orf``/``gene`` the table has), ``localization`` (``;``-separated
        classes in class order, ``""`` when none maps) and ``primary`` (the primary class:
        for Huh 2003 the rarest of the protein's classes in the census, as
        :func:`~protrep.data.proteome.huh2003_proteome` picks it; else the first listed).
    classes : tuple of str
        The yeast classes for Huh 2003; for a generic table the yeast or the HPA classes
        when every name is one of them, else the sorted names.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such label table")
    with open(path, errors="replace") as f:
        head = f.readline()
    return _read_huh_labels(path) if "yORF" in head else _read_generic_labels(path)


def match_labels(proteins, table, *, key="auto"):
    """Match protein names to the rows of a label table, case-insensitively.

    Parameters
    ----------
    proteins : sequence of str
        The dataset's protein names (for a crop tree, its folder names).
    table : DataFrame
        From :func:`read_labels`.
    key : {"auto", "orf", "gene", "protein"}
        The table column to match; ``auto`` tries every key column and takes the one that
        matches most proteins (ties: ``protein``, ``orf``, ``gene``).

    Returns
    -------
    key : str
        The column used.
    rows : dict of str to int
        Matched protein -> row position in ``table``.
    counts : dict of str to int
        Matches by every key tried.
    """
    keys = [k for k in ("protein", "orf", "gene") if k in table]
    if key != "auto" and key not in keys:
        raise ValueError(f"the label table has no {key!r} column (it has {keys}); use label_key='auto'")
    counts, found = {}, {}
    for k in keys if key == "auto" else [key]:
        lookup = {}
        for i, value in enumerate(table[k].astype(str)):
            lookup.setdefault(value.strip().upper(), i)
        lookup.pop("", None)
        found[k] = {p: lookup[str(p).strip().upper()] for p in proteins if str(p).strip().upper() in lookup}
        counts[k] = len(found[k])
    best = max(counts, key=counts.get)  # first of the most matched keys
    return best, found[best], counts


def _join_labels(meta, path, key):
    """``meta`` with ``label`` and ``localization`` from the table at ``path``; the classes and a report."""
    table, classes = read_labels(path)
    proteins = sorted(meta["protein"].astype(str).unique())
    used, rows, counts = match_labels(proteins, table, key=key)
    localization = {p: table["localization"].iat[i] for p, i in rows.items()}
    label = {p: classes.index(table["primary"].iat[i]) if table["primary"].iat[i] else -1 for p, i in rows.items()}
    names = meta["protein"].astype(str)
    meta = meta.assign(localization=names.map(localization).fillna("").to_numpy(),
                       label=names.map(label).fillna(-1).astype(np.int64).to_numpy())
    unmatched = [p for p in proteins if p not in rows]
    report = {"table": str(Path(path).resolve()), "key": used, "matches_by_key": counts,
              "n_proteins": len(proteins), "matched": len(rows), "unmatched": len(unmatched),
              "matched_without_class": sum(1 for v in label.values() if v < 0), "unmatched_proteins": unmatched}
    shown = ", ".join(unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
    report["summary"] = (f"labels: {len(rows)} of {len(proteins)} proteins matched by {used}"
                         + (f"; unmatched: {shown} (see {REPORT_FILE})" if unmatched else ""))
    return meta, tuple(classes), report


def _assign_split(meta, classes, fractions, seed):
    """Split per protein, stratified by each protein's most frequent primary class (``""`` when unknown)."""
    label = meta["label"].to_numpy()
    first = meta["localization"].astype(str).str.split(";").str[0].fillna("")
    stratum = np.where(label >= 0, np.take(np.asarray(list(classes) or [""], object), np.maximum(label, 0)), first)
    pairs = pd.DataFrame({"protein": meta["protein"].astype(str).to_numpy(), "stratum": stratum})
    counts = pairs.value_counts().rename("n").reset_index()
    counts["known"] = counts["stratum"] != ""
    counts = counts.sort_values(["protein", "known", "n", "stratum"], ascending=[True, False, False, True])
    per_protein = counts.drop_duplicates("protein").set_index("protein")["stratum"]
    split = split_by_protein(per_protein.index, per_protein.to_numpy(), fractions=fractions, seed=seed)
    return meta.assign(split=pairs["protein"].map(split).to_numpy())


# --------------------------------------------------------------------------- the output folder

def _out_state(out):
    """``new``, ``finished`` (a protrep-cells dataset), ``unfinished`` (a conversion) or ``foreign``."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        return "foreign"
    if (out / "dataset.json").is_file():
        head = read_json(out / "dataset.json", missing="")
        return "finished" if isinstance(head, dict) and head.get("format") == FORMAT_NAME else "foreign"
    if (out / PARAMS_FILE).is_file() or (out / "shards").is_dir():
        return "unfinished"
    return "new" if not any(out.iterdir()) else "foreign"


def _differences(old, new):
    return "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def _refuse(out, state, *, overwrite, finished_ok=False):
    """Raise for a foreign folder at ``out``, or a finished dataset there without ``overwrite``."""
    if state == "foreign":
        raise DataError(out, "exists and holds neither a protrep-cells dataset nor a conversion; refusing to write "
                             "into it or replace it (even with --overwrite): choose a new --out folder")
    if state == "finished" and not overwrite and not finished_ok:
        raise FileExistsError(f"{out}: already a finished protrep-cells dataset; pass overwrite=True (--overwrite) "
                              "to convert again")


def _prepare_out(out, params, *, overwrite, shard):
    """Make ``out`` ready to convert into; return True when it already holds this very conversion, finished."""
    state = _out_state(out)
    old = read_json(out / PARAMS_FILE, missing="") if (out / PARAMS_FILE).is_file() else None
    same = old == params
    if state == "finished" and same and shard[1] > 1:
        return True  # an array job that finds the work done: nothing to do
    _refuse(out, state, overwrite=overwrite)
    if state == "unfinished" and not same and not overwrite:
        what = (f"a conversion with other parameters is under way here ({_differences(old, params)})" if old else
                f"an unfinished sharded dataset not started by protrep convert (no {PARAMS_FILE})")
        raise DataError(out / PARAMS_FILE if old else out, f"{what}; re-run with the same options to resume it, "
                                                           "or pass --overwrite to start again")
    if overwrite and (state == "finished" or (state == "unfinished" and not same)):
        log.info("%s: replacing the %s %s", out, state, "dataset" if state == "finished" else "conversion")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not same:
        write_json(out / PARAMS_FILE, params)
    return False


def _finalize_once(out, source, classes, n_shards, params):
    """Write ``dataset.json`` unless another job is writing it; True when the dataset is finished."""
    lock = out / _LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                host, _, pid = lock.read_text().rpartition(".")
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if not pid.isdigit() or writer_alive(host, int(pid)):  # (no pid yet: being written)
                return (out / "dataset.json").is_file()
            lock.unlink(missing_ok=True)  # left by a killed finalizer
    else:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname().split('.')[0]}.{os.getpid()}")
    try:
        if not (out / "dataset.json").is_file():
            finalize_shards(out, channels=source.channels, classes=classes, n_shards=n_shards,
                            proteins=source.proteins, standards=source.standards, config=source.config,
                            extra={"conversion": params})
    finally:
        lock.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------------- writing shards

def _write_one(out, k, reader, payload, cells, dtype, shape):
    """Read and write shard ``k`` (in a worker); errors come back as values (DataError does not pickle)."""
    try:
        images, masks = reader(payload, dtype, shape)
        write_shard(out, k, images, cells, masks)
    except DataError as e:
        return "error", e.path, e.problem
    except OSError:
        if (Path(out) / "shards" / shard_name(k)).is_dir():
            return "exists", 0, None  # another job wrote it meanwhile (the same content)
        raise
    return "ok", len(images), None


def _write_shards(out, source, cells, todo, ranges, *, workers, progress):
    """Write the shards ``todo``; return ``(shards written, crops written)``."""
    def tasks():
        for k in todo:
            start, stop = ranges[k]
            yield (str(out), k, source.reader, source.payload(start, stop), cells.iloc[start:stop], source.dtype,
                   source.shape)

    written = crops = 0
    total = sum(ranges[k][1] - ranges[k][0] for k in todo)

    def record(result, bar):
        nonlocal written, crops
        status, value, problem = result
        if status == "error":
            raise DataError(value, problem)
        written, crops = written + (status == "ok"), crops + value
        bar.update(value)

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1:
        with progress_bar(total=total, desc="converting", unit="crop", disable=not progress) as bar:
            for task in tasks():
                record(_write_one(*task), bar)
        return written, crops
    # tqdm may start a thread: the bar is made after the first tasks are submitted, so the workers fork first
    with process_pool(workers) as pool:  # its workers end if this process is killed
        pending, queue, bar = set(), tasks(), None
        try:
            while True:
                for task in queue:  # at most two shards per worker in flight: bounded memory
                    pending.add(pool.submit(_write_one, *task))
                    if len(pending) >= 2 * workers:
                        break
                if not pending:
                    break
                bar = bar or progress_bar(total=total, desc="converting", unit="crop", disable=not progress)
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(future.result(), bar)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if bar is not None:
                bar.close()
    return written, crops


# --------------------------------------------------------------------------- convert

def _check_options(src, out, shard, shard_size, split, overwrite):
    i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {tuple(shard)}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-9:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {tuple(split)}")
    if overwrite and n > 1:
        raise ValueError("--overwrite cannot be combined with --shard i/n (n > 1): every job would remove the "
                         "others' shards; remove the old output first, or convert once with --overwrite")
    src, out = src.resolve(), out.resolve()
    if out == src or out in src.parents:
        raise DataError(out, f"is, or holds, the source {src}; choose another --out folder")
    _refuse(out, _out_state(out), overwrite=overwrite, finished_ok=n > 1)  # before reading the source
    return i, n


def _prepare_source(src, fmt, labels, label_key, split, seed):
    """The source index with labels joined and a split; also the classes and the labels report."""
    source = _open_source(src, fmt)
    meta, classes, report = source.meta, source.classes, None
    if labels is not None:
        meta, classes, report = _join_labels(meta, labels, label_key)
        if source.proteins is not None:
            loc = dict(zip(meta["protein"].astype(str), meta["localization"]))
            source.proteins = source.proteins.assign(
                localization=source.proteins["protein"].astype(str).map(loc).fillna("").to_numpy())
    has_split = "split" in meta and meta["split"].astype(str).isin(_SPLITS).all()
    if fmt == FORMAT_NAME and has_split:
        log.info("%s: keeping the source's split", src)
    else:
        meta = _assign_split(meta, classes, split, seed)
        if source.proteins is not None:
            by_protein = dict(zip(meta["protein"].astype(str), meta["split"]))
            source.proteins = source.proteins.assign(split=source.proteins["protein"].astype(str).map(by_protein)
                                                     .fillna("").to_numpy())
    return source, complete_cells(meta), tuple(classes), report


def _params(source, n_cells, shard_size, labels, label_key, split, seed):
    labels_sha1 = None if labels is None else hashlib.sha1(Path(labels).read_bytes()).hexdigest()
    return {"source": str(source.path.resolve()), "format": source.format, "shard_size": int(shard_size),
            "n_cells": int(n_cells), "n_shards": len(shard_ranges(n_cells, shard_size)), "index_sha1": source.identity,
            "image_shape": [int(s) for s in source.shape], "dtype": str(source.dtype),
            "labels": None if labels is None else str(Path(labels).resolve()), "labels_sha1": labels_sha1,
            "label_key": label_key if labels is not None else None, "split": [float(f) for f in split],
            "seed": int(seed)}


def convert(src, out, *, format=None, labels=None, label_key="auto", shard_size=DEFAULT_SHARD_SIZE, shard=(0, 1),
            workers=None, split=(0.7, 0.15, 0.15), seed=0, overwrite=False, progress=True):
    """Convert a dataset to the sharded ``protrep-cells`` format (version 2), resumably.

    Parameters
    ----------
    src : str or Path
        The source (see :data:`CONVERT_FORMATS` and the module docstring).
    out : str or Path
        The output folder. A new or empty folder, or an unfinished conversion with the same
        parameters (which is resumed: complete shards are kept).
    format : str, optional
        One of :data:`CONVERT_FORMATS`; detected by :func:`detect_source_format` if omitted.
    labels : str or Path, optional
        Localization table joined by protein (:func:`read_labels`); replaces the labels
        the source carries. Writes ``out/labels_report.json``.
    label_key : {"auto", "orf", "gene", "protein"}
        Table column matched to the protein names (:func:`match_labels`).
    shard_size : int
        Crops per shard.
    shard : tuple of 2 int
        ``(i, n)``: convert only the shards ``k`` with ``k % n == i`` (one job of ``n``).
    workers : int, optional
        Worker processes (default: all cores); the output does not depend on it.
    split : tuple of 3 float
        Train, validation and test fractions of proteins (:func:`~protrep.data.dataset.split_by_protein`).
    seed : int
        Seed of the split.
    overwrite : bool
        Replace a finished dataset, or an unfinished conversion with other parameters, at
        ``out`` (never a folder that holds neither). Not with ``n > 1`` jobs.
    progress : bool
        Show a progress bar over crops.

    Returns
    -------
    dict
        ``out``, ``format``, ``n_cells``, ``n_shards``, ``shards_written`` (by this call),
        ``shards_done``, ``shards_missing``, ``finalized`` (``dataset.json`` is written),
        ``crops_written``, ``seconds`` (the whole call: index, shards, ``dataset.json``),
        ``crops_per_s`` (crops written per second of it, None when none were), ``labels``
        (the labels summary line or None) and ``message`` (a one-line summary).

    Raises
    ------
    DataError
        Unreadable source or label table (naming the file), a foreign folder at ``out``, or
        an unfinished conversion there with other parameters.
    FileExistsError
        ``out`` holds a finished dataset and ``overwrite`` is False.
    """
    start, src, out = time.perf_counter(), Path(src), Path(out)
    check_workers(workers)
    i, n = _check_options(src, out, shard, shard_size, split, overwrite)
    fmt = format or detect_source_format(src)
    source, cells, classes, report = _prepare_source(src, fmt, labels, label_key, split, seed)
    params = _params(source, len(cells), shard_size, labels, label_key, split, seed)
    ranges = shard_ranges(len(cells), int(shard_size))
    if _prepare_out(out, params, overwrite=overwrite, shard=(i, n)):
        return _summary(out, fmt, ranges, 0, 0, time.perf_counter() - start, True, report, (i, n))
    if report is not None:
        write_json(out / REPORT_FILE, report)
        (log.warning if report["unmatched"] else log.info)("%s", report["summary"])
    if np.prod(source.shape) * source.dtype.itemsize * shard_size > 2 ** 30:
        log.warning("shards of %d crops of %s %s are over 1 GB each in memory; a smaller --shard-size bounds the "
                    "memory of every worker", shard_size, source.shape, source.dtype)
    for p in clean_temporaries(out):
        log.info("removed %s, left by a killed writer", p)
    done = set(done_shards(out))
    todo = [k for k in range(len(ranges)) if k % n == i and k not in done]
    written, crops = _write_shards(out, source, cells, todo, ranges, workers=workers, progress=progress)
    finalized = (out / "dataset.json").is_file()
    if not finalized and len(set(done_shards(out)) & set(range(len(ranges)))) == len(ranges):
        finalized = _finalize_once(out, source, classes, len(ranges), params)
    return _summary(out, fmt, ranges, written, crops, time.perf_counter() - start, finalized, report, (i, n))


def _summary(out, fmt, ranges, written, crops, seconds, finalized, report, shard):
    done = len(set(done_shards(out)) & set(range(len(ranges))))
    n_cells = ranges[-1][1]
    summary = {"out": str(out), "format": fmt, "n_cells": int(n_cells), "n_shards": len(ranges),
               "shards_written": written, "shards_done": done, "shards_missing": len(ranges) - done,
               "finalized": bool(finalized), "crops_written": int(crops), "seconds": round(seconds, 3),
               "crops_per_s": round(crops / seconds, 1) if crops and seconds > 0 else None,
               "labels": None if report is None else report["summary"]}
    rate = f" ({summary['crops_per_s']:,.0f} crops/s)" if summary["crops_per_s"] else ""
    head = (f"{out}: {fmt}, {n_cells:,} crops; wrote {written} shard(s), {crops:,} crops{rate}" +
            (f" [job {shard[0]}/{shard[1]}]" if shard[1] > 1 else ""))
    if finalized:
        tail = f"; {done} of {len(ranges)} shards done, dataset.json written"
    elif done == len(ranges):
        tail = "; all shards done, another job is writing dataset.json"
    else:
        tail = (f"; {done} of {len(ranges)} shards done, {len(ranges) - done} remain: the last job to finish, or "
                "`protrep convert` again without --shard, writes dataset.json")
    summary["message"] = head + tail
    return summary
