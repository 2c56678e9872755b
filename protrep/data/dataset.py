"""Single-cell datasets: the in-memory container and the on-disk ``protrep-cells`` format.

In memory every reader returns a :class:`CellDataset`: images ``(n, c, h, w)`` with a named
channel order, an optional centre-cell mask per crop, and a per-cell metadata table.

On disk a ``protrep-cells`` dataset is one folder::

    dataset.json    format, version, channels, classes, image shape, generating config
    images.npy      uint16 (n, c, h, w) raw camera counts, channel order as in dataset.json
    masks.npy       bool   (n, h, w)   mask of the centre cell of every crop
    cells.csv       one row per crop, columns CELL_COLUMNS (row i describes images[i])
    proteins.csv    one row per protein: protein, localization, abundance, split, ...
    standards/      functional standards, one TSV per scale (columns: term, protein)

``cells.csv`` columns:

=============  ======  ============================================================
protein        str     protein (ORF) id; all cells of a well express the same protein
plate          int     plate number (illumination and background differ by plate)
well           str     well name, e.g. ``B07``
field          int     field of view within the well
cell           int     label of the cell in the field's segmentation
x, y           float   centre of the crop in field pixel coordinates
label          int     index in ``classes`` of the cell's own localization, -1 if unknown
localization   str     the protein's annotated classes, ``;``-separated
split          str     ``train``, ``val`` or ``test``; assigned per protein, never per cell
=============  ======  ============================================================

The folder is written atomically (to a temporary folder, then renamed), so a killed run
leaves no half dataset.

Version 2 of the format holds the same tables with the crops split into shards of
``.npy`` arrays read on demand, for screens that do not fit in memory (:mod:`protrep.data.shards`
writes it); :func:`load_dataset` reads both, and a version 2 dataset's ``images`` and
``masks`` are lazy arrays (:class:`~protrep.data.arrays.ShardedArray`) that read the rows asked for.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_dir, read_json
from ..errors import DataError
from .arrays import NpyRows, ShardedArray, is_lazy

__all__ = [
    "CellDataset",
    "CELL_COLUMNS",
    "FORMAT_NAME",
    "write_dataset",
    "load_dataset",
    "split_by_protein",
    "protein_identity",
    "load_proteins",
]

FORMAT_NAME = "protrep-cells"
FORMAT_VERSION = 1
#: Version of the sharded layout (:mod:`protrep.data.shards`).
SHARDED_VERSION = 2
CELL_COLUMNS = ["protein", "plate", "well", "field", "cell", "x", "y", "label", "localization", "split"]


@dataclass
class CellDataset:
    """Single-cell crops with metadata.

    Attributes
    ----------
    images : ndarray, shape (n, c, h, w)
        Crops; float32 in memory (readers convert), uint16 on disk for ``protrep-cells``.
    meta : DataFrame
        One row per crop, at least the column ``protein``; see the module docstring.
    channels : tuple of str
        Channel names in the order of axis 1 of ``images`` (e.g. ``("gfp", "rfp")``).
    classes : tuple of str
        Localization class names that the ``label`` column indexes.
    masks : ndarray of bool, shape (n, h, w), optional
        Centre-cell mask of every crop.
    source : str, optional
        The file or folder the data came from.
    format : str, optional
        Name of the format it was read from.
    """

    images: np.ndarray
    meta: pd.DataFrame
    channels: tuple
    classes: tuple = ()
    masks: np.ndarray | None = None
    source: str | None = None
    format: str | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        where = self.source or "dataset"
        if self.images.ndim != 4:
            raise DataError(where, f"images must have shape (n, c, h, w), got {self.images.shape}")
        if len(self.meta) != len(self.images):
            raise DataError(where, f"{len(self.images)} images but {len(self.meta)} metadata rows")
        if self.images.shape[1] != len(self.channels):
            raise DataError(where, f"images have {self.images.shape[1]} channels but {len(self.channels)} names {self.channels}")
        if self.masks is not None and self.masks.shape != (self.images.shape[0], *self.images.shape[2:]):
            raise DataError(where, f"masks of shape {self.masks.shape} do not match images {self.images.shape}")
        self.channels = tuple(self.channels)
        self.classes = tuple(self.classes)

    def __len__(self):
        return len(self.images)

    @property
    def proteins(self):
        """Sorted unique protein ids."""
        return sorted(self.meta["protein"].astype(str).unique())

    def subset(self, index):
        """Return the cells at ``index`` (integer positions or a boolean mask) as a new dataset."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        def rows(array):  # a sharded array stays on disk: a lazy selection
            return array.take(index) if is_lazy(array) else array[index]

        return CellDataset(
            images=rows(self.images),
            meta=self.meta.iloc[index].reset_index(drop=True),
            channels=self.channels,
            classes=self.classes,
            masks=None if self.masks is None else rows(self.masks),
            source=self.source,
            format=self.format,
            info={k: v for k, v in self.info.items() if not k.startswith("_")},  # "_": caches of these cells
        )

    def summary(self):
        """Return what ``protrep inspect`` prints: format, counts, channels, size, classes."""
        n, c, h, w = self.images.shape
        out = {
            "source": self.source,
            "format": self.format,
            "n_cells": int(n),
            "n_proteins": int(self.meta["protein"].nunique()) if "protein" in self.meta else None,
            "channels": list(self.channels),
            "image_size": [int(h), int(w)],
            "dtype": str(self.images.dtype),
            "classes": list(self.classes),
            "has_masks": self.masks is not None,
        }
        if is_lazy(self.images):
            parts = self.images.parts
            out["shards"] = len(parts)
            out["bytes_on_disk"] = int(sum(p.nbytes for p in parts)
                                       + (0 if self.masks is None else sum(p.nbytes for p in self.masks.parts)))
        if "split" in self.meta:
            out["splits"] = {k: int(v) for k, v in self.meta["split"].value_counts().sort_index().items()}
        return out


def split_by_protein(proteins, strata=None, *, fractions=(0.7, 0.15, 0.15), seed=0):
    """Assign each protein to ``train``/``val``/``test``, so no protein spans two splits.

    Parameters
    ----------
    proteins : sequence of str
        Unique protein ids.
    strata : sequence, optional
        A stratum per protein (e.g. its primary localization); each stratum is split
        separately, and a stratum of three proteins or more gives at least one to each
        split (a stratum of two gives one to train and one to validation or test), so that
        every split sees every class.
    fractions : tuple of 3 floats
        Train, validation and test fractions; must sum to 1.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    Series
        Split name indexed by protein.
    """
    proteins = pd.Index(proteins)
    if not proteins.is_unique:
        raise ValueError("proteins must be unique; pass each protein once")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    strata = pd.Series(np.zeros(len(proteins)) if strata is None else np.asarray(strata), index=proteins)
    rng = np.random.default_rng(seed)
    out = pd.Series("train", index=proteins, dtype=object)
    for _, group in sorted(strata.groupby(strata).groups.items(), key=lambda kv: str(kv[0])):
        members = np.array(sorted(group))
        rng.shuffle(members)
        n = len(members)
        n_test = int(round(fractions[2] * n))
        n_val = int(round(fractions[1] * n))
        if n >= 3:  # every split sees every stratum that has three proteins or more
            n_test, n_val = max(n_test, 1 if fractions[2] else 0), max(n_val, 1 if fractions[1] else 0)
        elif n == 2 and n_test + n_val == 0 and fractions[1] + fractions[2] > 0:
            if rng.random() < fractions[2] / (fractions[1] + fractions[2]):
                n_test = 1
            else:
                n_val = 1
        out[members[:n_test]] = "test"
        out[members[n_test:n_test + n_val]] = "val"
    return out


def protein_identity(ds, *, val_share=0.1, seed=0):
    """The protein-identity task of PIFiA on ``ds``: the training proteins as classes.

    Each protein of the ``train`` split becomes a class (sorted by name); its cells are
    split again, ``val_share`` of them (at least one where the protein has two or more) to
    ``val`` and the rest to ``train``. Cells of the validation and test proteins get label
    -1 and split ``test``: they are never a class, so a model trained on this task embeds
    them as unseen proteins, and the held-out evaluation of chapter 4 stays held out.
    (Razdaibiedina et al. 2024 make every protein of the screen a class and split cells
    within proteins; their features then come from cells of proteins the model was trained
    to recognise.)

    Parameters
    ----------
    ds : CellDataset
        With ``protein`` and ``split`` columns.
    val_share : float, keyword-only
        Share of each training protein's cells used to validate (and pick checkpoints).
    seed : int, keyword-only
        Seed of the split of cells.

    Returns
    -------
    CellDataset
        The same images (not copied) with new ``label`` and ``split`` columns, ``classes``
        the protein ids and ``info["task"] == "protein identity"``.
    """
    if "split" not in ds.meta:
        raise DataError(ds.source or "dataset", "has no 'split' column: the protein-identity task takes its "
                        "classes from the training proteins (write the dataset with a split by protein)")
    if not 0 <= val_share < 1:
        raise ValueError(f"val_share must be in [0, 1), got {val_share}")
    meta = ds.meta.copy()
    proteins = meta["protein"].astype(str).to_numpy()
    is_train = (meta["split"] == "train").to_numpy()
    classes = tuple(sorted(set(proteins[is_train])))
    if len(classes) < 2:
        raise DataError(ds.source or "dataset", f"has {len(classes)} training protein(s); the protein-identity "
                        "task needs at least two")
    code = pd.Index(classes).get_indexer(proteins)
    rng = np.random.default_rng([seed, 7])
    split = np.full(len(meta), "test", dtype=object)
    for k in range(len(classes)):
        cells = rng.permutation(np.flatnonzero(code == k))
        n_val = int(round(val_share * len(cells)))
        n_val = max(n_val, 1) if val_share > 0 and len(cells) >= 2 else n_val
        split[cells[:n_val]], split[cells[n_val:]] = "val", "train"
    meta["label"], meta["split"] = np.where(is_train, code, -1), split
    return CellDataset(images=ds.images, meta=meta, channels=ds.channels, classes=classes, masks=ds.masks,
                       source=ds.source, format=ds.format, info={**ds.info, "task": "protein identity"})


def write_dataset(path, images, masks, cells, proteins, *, channels, classes, standards=None,
                  config=None, extra=None, overwrite=False):
    """Write a ``protrep-cells`` folder atomically.

    Parameters
    ----------
    path : str or Path
        Destination folder; must not exist unless ``overwrite``.
    images : ndarray of uint16, shape (n, c, h, w)
    masks : ndarray of bool, shape (n, h, w)
    cells : DataFrame
        One row per crop with the columns ``CELL_COLUMNS``.
    proteins : DataFrame
        One row per protein, at least ``protein`` and ``localization``.
    channels, classes : sequence of str
    standards : dict of str to DataFrame, optional
        Scale name to a long table with columns ``term`` and ``protein``.
    config : dict, optional
        Generating configuration, stored in ``dataset.json`` so the data can be rebuilt.
    extra : dict, optional
        Further entries for ``dataset.json`` (e.g. measured segmentation recall).
    overwrite : bool
        Replace an existing dataset (a folder holding ``dataset.json``, or an empty one;
        a folder of other files is refused).
    """
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"cells table lacks columns {missing}")
    if images.dtype != np.uint16:
        raise ValueError(f"images must be uint16 raw counts, got {images.dtype}")
    if len(cells) != len(images) or len(masks) != len(images):
        raise ValueError(f"{len(images)} images, {len(masks)} masks and {len(cells)} cell rows must agree")
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "channels": list(channels),
        "classes": list(classes),
        "image_shape": list(images.shape[1:]),
        "n_cells": int(len(images)),
        "n_proteins": int(len(proteins)),
        "standards": sorted(standards or {}),
        "config": config or {},
        **(extra or {}),
    }
    with atomic_dir(path, overwrite=overwrite, marker="dataset.json") as tmp:
        np.save(tmp / "images.npy", np.ascontiguousarray(images))
        np.save(tmp / "masks.npy", np.ascontiguousarray(masks, dtype=bool))
        cells[CELL_COLUMNS + [c for c in cells.columns if c not in CELL_COLUMNS]].to_csv(
            tmp / "cells.csv", index=False, float_format="%.6g", lineterminator="\n")
        proteins.to_csv(tmp / "proteins.csv", index=False, float_format="%.6g", lineterminator="\n")
        if standards:
            (tmp / "standards").mkdir()
            for name, table in sorted(standards.items()):
                table[["term", "protein"]].to_csv(tmp / "standards" / f"{name}.tsv", sep="\t", index=False,
                                                  lineterminator="\n")
        (tmp / "dataset.json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return Path(path)


def _read_header(path):
    path = Path(path)
    head = path / "dataset.json"
    if not head.is_file() and (path / "shards").is_dir():
        n = sum(1 for p in (path / "shards").iterdir() if p.is_dir() and p.name.isdigit())
        raise DataError(path, f"an unfinished sharded dataset ({n} shards written, no dataset.json yet): "
                        "run the same `protrep convert` again to finish it")
    header = read_json(head, missing="not a protrep-cells dataset (no dataset.json)")
    if header.get("format") != FORMAT_NAME:
        raise DataError(head, f"format is {header.get('format')!r}, expected {FORMAT_NAME!r}")
    if header.get("version") not in (FORMAT_VERSION, SHARDED_VERSION):
        raise DataError(head, f"version {header.get('version')} is not supported (this protrep reads "
                        f"{FORMAT_VERSION} and {SHARDED_VERSION})")
    return header


def _load_npy(file, mmap):
    if not file.is_file():
        raise DataError(file, "missing")
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(file, f"unreadable or truncated .npy file ({e})") from None


def load_dataset(path, *, mmap=None, float32=True):
    """Read a ``protrep-cells`` folder.

    Parameters
    ----------
    path : str or Path
    mmap : bool, optional
        Memory-map the image file instead of reading it (implies ``float32=False``). By
        default a version 1 folder is read into memory and a sharded (version 2) one is
        read on demand, shard by shard; ``mmap=False`` reads a sharded one into memory too.
    float32 : bool
        Convert images to float32 counts (the in-memory convention); else keep uint16.

    Returns
    -------
    CellDataset
    """
    path = Path(path)
    header = _read_header(path)
    if header["version"] == SHARDED_VERSION:
        return _load_sharded(path, header, mmap=mmap, float32=float32)
    images = _load_npy(path / "images.npy", mmap)
    masks = _load_npy(path / "masks.npy", mmap)
    if list(images.shape[1:]) != header["image_shape"] or len(images) != header["n_cells"]:
        raise DataError(path / "images.npy", f"shape {images.shape} does not match dataset.json "
                        f"({header['n_cells']} cells of {header['image_shape']})")
    try:
        meta = pd.read_csv(path / "cells.csv", dtype={"protein": str, "well": str, "localization": str})
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(path / "cells.csv", f"unreadable ({e})") from None
    missing = [c for c in CELL_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(path / "cells.csv", f"missing columns {missing}")
    meta["localization"] = meta["localization"].fillna("")
    if float32 and not mmap:
        images = images.astype(np.float32)
    ds = CellDataset(images=images, meta=meta, channels=header["channels"], classes=header["classes"],
                     masks=masks, source=str(path), format=FORMAT_NAME, info=header)
    return ds


def _read_cells(file):
    try:
        meta = pd.read_csv(file, dtype={"protein": str, "well": str, "localization": str, "split": str})
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(file, f"unreadable ({e})") from None
    missing = [c for c in CELL_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(file, f"missing columns {missing}")
    meta["localization"] = meta["localization"].fillna("")
    return meta


def _rows(file):
    if not file.is_file():
        raise DataError(file, "missing")
    try:
        return NpyRows(file)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(file, f"unreadable or truncated .npy file ({e})") from None


def _load_sharded(path, header, *, mmap, float32):
    """A version 2 (sharded) folder: the crops as a :class:`ShardedArray` of shards read on demand."""
    images, masks, metas = [], [], []
    for name, n in header["shards"]:
        folder = path / "shards" / name
        part = _rows(folder / "images.npy")
        if len(part) != n or list(part.shape[1:]) != header["image_shape"]:
            raise DataError(folder / "images.npy", f"shape {part.shape} does not match dataset.json "
                            f"({n} cells of {header['image_shape']})")
        images.append(part)
        if header.get("has_masks"):
            masks.append(_rows(folder / "masks.npy"))
        meta = _read_cells(folder / "cells.csv")
        if len(meta) != n:
            raise DataError(folder / "cells.csv", f"{len(meta)} rows for {n} crops")
        metas.append(meta)
    images, masks = ShardedArray(images), ShardedArray(masks) if masks else None
    if float32 and mmap is False:  # asked for in memory, as version 1 reads
        images, masks = images.astype(np.float32), None if masks is None else masks[:]
    return CellDataset(images=images, meta=pd.concat(metas, ignore_index=True), channels=header["channels"],
                       classes=header["classes"], masks=masks, source=str(path), format=FORMAT_NAME, info=header)


_PROTEIN_TEXT = ("protein", "localization", "primary", "secondary", "process", "process2", "pathway", "complex",
                 "split")


def load_proteins(path):
    """Read ``proteins.csv`` of a ``protrep-cells`` folder."""
    file = Path(path) / "proteins.csv"
    try:
        table = pd.read_csv(file, dtype={c: str for c in _PROTEIN_TEXT})
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(file, f"unreadable ({e})") from None
    text = [c for c in _PROTEIN_TEXT if c in table]
    table[text] = table[text].fillna("")  # empty text cells are read back as missing
    return table


def multi_hot(localizations, classes):
    """Multi-hot float32 ``(n, len(classes))`` of ``;``-separated class names (unknown names raise ValueError)."""
    column = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(localizations), len(classes)), np.float32)
    for i, text in enumerate(localizations):
        for name in filter(None, str(text if isinstance(text, str) else "").split(";")):
            if name not in column:
                raise ValueError(f"localization {name!r} of row {i} is not one of the classes {list(classes)}")
            out[i, column[name]] = 1
    return out
