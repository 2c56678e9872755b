"""Readers for published single-cell crop datasets; every reader returns a :class:`CellDataset`.

Supported formats (names as returned by :func:`detect_format`):

=================  ==================================================================
``protrep-cells``  our own folder format (``dataset.json``), see :mod:`protrep.data.dataset`
``deeploc-hdf5``   DeepLoc / Chong et al. 2015 HDF5 file: ``data1`` (n, c·64·64)
                   flattened channel-first crops, ``Index1`` (n, k) one-hot labels
``crop-folder``    WT2 / Paired Cell Inpainting crops ``<root>/<PROTEIN>/<name>_gfp.tif``
                   plus ``<name>_rfp.tif``
``hpa-crops``      Human Protein Atlas single-cell crops
                   ``<root>/<GENE>_<plate>_<well...>/<name>_{red,green,blue}.tif``
=================  ==================================================================

Images are returned as float32 ``(n, c, h, w)`` with the values stored in the files (no
normalisation) and an explicit channel order in ``CellDataset.channels``. Every problem
with the input raises :class:`~protrep.errors.DataError` naming the file and the problem.

References
----------
.. [1] Kraus, O. Z. et al. (2017). Automated analysis of high-content microscopy data with
   deep learning. Molecular Systems Biology 13, 924.
.. [2] Chong, Y. T. et al. (2015). Yeast proteome dynamics from single cell imaging and
   automated analysis. Cell 161, 1413-1424.
.. [3] Lu, A. X. et al. (2019). Learning unsupervised feature representations for single
   cell microscopy images with paired cell inpainting. PLoS Comput Biol 15, e1007348.
"""

import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import tifffile

from ..errors import DataError
from .dataset import FORMAT_NAME as PROTREP_FORMAT
from .dataset import CellDataset, load_dataset

__all__ = [
    "FORMATS",
    "DEEPLOC_CHANNELS",
    "CROP_CHANNELS",
    "HPA_CROP_CHANNELS",
    "read_deeploc_hdf5",
    "read_field_image",
    "read_crop_folder",
    "WT2_TOY_LOCALIZATIONS",
    "read_hpa_crops",
    "detect_format",
    "open_dataset",
]

logger = logging.getLogger(__name__)

FORMATS = (PROTREP_FORMAT, "deeploc-hdf5", "crop-folder", "hpa-crops")

#: Channel names of the Chong et al. 2015 DeepLoc sets, used when a file's ``data1_columns``
#: attribute does not name its channels.
DEEPLOC_CHANNELS = ("gfp", "rfp")
#: Channels of a WT2 / Paired Cell Inpainting crop folder: tagged protein, cytosolic marker.
CROP_CHANNELS = ("gfp", "rfp")
#: Channels of an HPA crop folder in RGB order: microtubules, protein, nucleus.
HPA_CROP_CHANNELS = ("red", "green", "blue")

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_CROP_RE = re.compile(r"^(?P<name>.+)_(?P<channel>gfp|rfp)\.tiff?$")
_HPA_RE = re.compile(r"^(?P<name>.+)_(?P<channel>red|green|blue)\.tiff?$")
_PROTEIN_DATASETS = ("protein", "proteins", "orf", "ORF", "gene", "genes", "Protein", "Gene")


def _natural_key(text):
    """Sort key that orders ``cell_2`` before ``cell_10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


# --------------------------------------------------------------------------- DeepLoc HDF5

def _decode(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _deeploc_channel_names(attr):
    """Channel names from a ``data1_columns`` attribute, e.g. 'RFP channel 64x64, DIC ...'."""
    if attr is None:
        return ()
    values = [attr] if isinstance(attr, (str, bytes)) else list(np.ravel(attr))
    text = " ".join(_decode(v) for v in values)
    return tuple(name.lower() for name in re.findall(r"([A-Za-z0-9]+)\s+channel", text))


def read_deeploc_hdf5(path, *, channels=None, chunk_rows=4096):
    """Read a DeepLoc / Chong et al. 2015 HDF5 file.

    The file holds ``data1``, shape ``(n, c * s * s)``: each row is one cell, its ``c``
    channels of ``s × s`` pixels flattened channel-first in C order (channel 0's rows, then
    channel 1's), as DeepLoc's ``flatBatch2Tensor`` unpacks them. ``Index1``, shape
    ``(n, k)``, is the one-hot localization label; its class names are in the file
    attribute ``Index1_columns`` and the channel names in ``data1_columns``.

    Parameters
    ----------
    path : str or Path
        The ``.hdf5`` file.
    channels : sequence of str, optional
        Channel names to use. By default they are parsed from the ``data1_columns``
        attribute (``"RFP channel 64x64, DIC channel 64x64 flattened"`` gives
        ``("rfp", "dic")``), falling back to :data:`DEEPLOC_CHANNELS` for 2 channels.
    chunk_rows : int
        Rows converted to float32 at a time (bounds memory on the full 90k-cell sets).

    Returns
    -------
    CellDataset
        ``images`` float32 ``(n, c, s, s)`` with the raw stored values; ``meta`` columns
        ``protein`` (from a per-cell id dataset when the file has one, else ``"unknown"``),
        ``label`` (argmax of ``Index1``, -1 for an all-zero row or without ``Index1``) and
        ``localization`` (the label's class name, ``""`` when unknown); ``classes`` from
        ``Index1_columns``. Format ``"deeploc-hdf5"``.

    Raises
    ------
    DataError
        Not an HDF5 file, truncated or corrupt file, no ``data1``, rows whose length is
        not ``c × s × s``, non-finite pixels, or ``Index1`` / class names that do not
        match the number of cells or classes.

    Notes
    -----
    The public ``Schuldiner_test_set.hdf5`` (SWAT library, Kraus et al. 2017) has
    ``data1_columns = "RFP channel 64x64, DIC channel 64x64 flattened"``: channel 0 is the
    RFP-tagged protein and channel 1 brightfield (DIC), not GFP/RFP as in the Chong sets.
    """
    path = Path(path)
    _check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            return _read_deeploc_open(f, path, channels, chunk_rows)
    except OSError as e:
        raise DataError(path, f"truncated or corrupt HDF5 file ({e})") from None


def _check_hdf5(path):
    """Raise a DataError unless ``path`` is an HDF5 file (checked before h5py opens it)."""
    if not path.is_file():
        raise DataError(path, "no such file")
    if not h5py.is_hdf5(path):
        raise DataError(path, "not an HDF5 file (no HDF5 signature); expected a DeepLoc .hdf5 file")


def _read_deeploc_open(f, path, channels, chunk_rows):
    if "data1" not in f or not isinstance(f["data1"], h5py.Dataset):
        raise DataError(path, f"no 'data1' dataset (found {sorted(f.keys())}); not a DeepLoc file")
    data = f["data1"]
    if data.ndim != 2:
        raise DataError(path, f"'data1' must be 2-D (cells, pixels), got shape {data.shape}")
    n, row = data.shape
    if channels is None:
        channels = _deeploc_channel_names(f.attrs.get("data1_columns")) or DEEPLOC_CHANNELS
    channels = tuple(channels)
    c = len(channels)
    side = int(round(np.sqrt(row / c))) if row % c == 0 else 0
    if side == 0 or c * side * side != row:
        raise DataError(path, f"'data1' rows have length {row}, which is not {c} channels of s×s pixels "
                              f"(DeepLoc crops are {c}×64×64 = {c * 64 * 64})")
    images = np.empty((n, c, side, side), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        block = np.asarray(data[start:start + chunk_rows], dtype=np.float32)
        bad = ~np.isfinite(block)
        if bad.any():
            rows = start + np.flatnonzero(bad.any(axis=1))
            raise DataError(path, f"'data1' has {int(bad.sum())} NaN or infinite pixels "
                                  f"(first in cell {int(rows[0])}, {len(rows)} cells affected)")
        images[start:start + len(block)] = block.reshape(-1, c, side, side)

    classes = ()
    if "Index1_columns" in f.attrs:
        classes = tuple(_decode(v).strip() for v in np.atleast_1d(f.attrs["Index1_columns"]))
    labels = np.full(n, -1, dtype=np.int64)
    if "Index1" in f:
        onehot = np.asarray(f["Index1"][()])
        if onehot.ndim != 2 or onehot.shape[0] != n:
            raise DataError(path, f"'Index1' has shape {onehot.shape}, expected ({n}, n_classes): "
                                  f"one label row per cell of 'data1'")
        if classes and onehot.shape[1] != len(classes):
            raise DataError(path, f"'Index1' has {onehot.shape[1]} label columns but 'Index1_columns' "
                                  f"names {len(classes)} classes")
        if not classes:
            classes = tuple(f"class_{i}" for i in range(onehot.shape[1]))
        if not np.isfinite(onehot.astype(np.float64)).all():
            raise DataError(path, "'Index1' contains NaN labels")
        has = onehot.astype(np.float64).sum(axis=1) > 0
        labels[has] = np.argmax(onehot[has], axis=1)
        multi = int(((onehot > 0).sum(axis=1) > 1).sum())
        if multi:
            logger.warning("%s: %d cells have more than one label; using the first", path, multi)
    localization = np.array([classes[i] if i >= 0 else "" for i in labels], dtype=object)

    protein = _deeploc_proteins(f, n, path)
    meta = pd.DataFrame({"protein": protein, "label": labels, "localization": localization})
    info = {"attrs": {k: _attr_value(v) for k, v in f.attrs.items()}, "datasets": sorted(f.keys())}
    return CellDataset(images=images, meta=meta, channels=channels, classes=classes,
                       source=str(path), format="deeploc-hdf5", info=info)


def _attr_value(value):
    if isinstance(value, bytes):
        return _decode(value)
    if isinstance(value, np.ndarray):
        return [_decode(v) if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v for v in value]
    return value.item() if hasattr(value, "item") else value


def _deeploc_proteins(f, n, path):
    for name in _PROTEIN_DATASETS:
        if name in f and isinstance(f[name], h5py.Dataset) and f[name].shape[:1] == (n,):
            values = f[name][()]
            return np.array([_decode(v).strip() for v in np.ravel(values)[:n]], dtype=object)
    return np.full(n, "unknown", dtype=object)


# --------------------------------------------------------------------------- TIFF crops

def read_field_image(path):
    """Read one 2-D field of view (TIFF, PNG, ...) as an array in its own dtype.

    TIFFs are read with tifffile; compressions it cannot decode without extra codecs
    (LZW, as in the BooneAndrewsLab field of view) are read with Pillow instead.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        return _read_tiff(path)
    except DataError:
        pass
    try:
        from PIL import Image

        with Image.open(path) as im:
            image = np.array(im)
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, ValueError, ...
        raise DataError(path, f"unreadable image ({type(e).__name__}: {e})") from None
    if image.ndim != 2:
        raise DataError(path, f"expected a single 2-D image, got shape {image.shape}")
    return image


def _read_tiff(file):
    try:
        image = tifffile.imread(file)
    except Exception as e:  # tifffile raises many types (TiffFileError, ValueError, struct.error, ...)
        raise DataError(file, f"unreadable TIFF ({type(e).__name__}: {e})") from None
    image = np.asarray(image)
    if image.size == 0:
        raise DataError(file, "unreadable TIFF (no image data; truncated or corrupt)")
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise DataError(file, f"expected a single 2-D image, got shape {image.shape}")
    return image


def _read_cells(cells, channels):
    """Read ``cells`` (dicts with a ``files`` entry channel -> path) into (n, c, h, w) float32."""
    images = None
    first = None
    for i, cell in enumerate(cells):
        for j, channel in enumerate(channels):
            file = cell["files"][channel]
            image = _read_tiff(file)
            if images is None:
                first = file
                images = np.empty((len(cells), len(channels), *image.shape), dtype=np.float32)
            elif image.shape != images.shape[2:]:
                raise DataError(file, f"crop shape {image.shape} differs from {images.shape[2:]} of {first}; "
                                      "all crops must have the same size")
            images[i, j] = image
            if not np.isfinite(images[i, j]).all():
                raise DataError(file, f"{int((~np.isfinite(images[i, j])).sum())} NaN or infinite pixels")
    return images


def _group_files(folder, pattern, channels):
    """Group the TIFFs of one folder into cells; every cell must have every channel."""
    groups = {}
    for file in folder.iterdir():
        m = pattern.match(file.name)
        if m and file.is_file():
            groups.setdefault(m["name"], {})[m["channel"]] = file
    cells = []
    for name in sorted(groups, key=_natural_key):
        files = groups[name]
        missing = [c for c in channels if c not in files]
        if missing:
            have = ", ".join(files[c].name for c in channels if c in files)
            want = ", ".join(f"{name}_{c}.tif" for c in missing)
            raise DataError(folder, f"{have} has no partner {want}; every cell needs all of "
                                    f"{', '.join('_' + c for c in channels)}")
        cells.append({"name": name, "files": files})
    return cells


def _has_matching(folder, pattern):
    return any(pattern.match(p.name) for p in folder.iterdir() if p.is_file())


def _subfolders(root):
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


def _crop_folders(path, pattern, what):
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such folder")
    if not path.is_dir():
        raise DataError(path, f"not a folder; expected a {what} folder")
    if _has_matching(path, pattern):
        return [path]
    return [p for p in _subfolders(path) if _has_matching(p, pattern)]


#: Annotated localization of the three proteins of the WT2 toy crops (Paired Cell Inpainting
#: repository): AAC1 and AAH1 as in Huh et al. 2003, AAP1 (not in Huh 2003) from SGD GO-slim.
WT2_TOY_LOCALIZATIONS = {"AAC1": "mitochondrion", "AAH1": "cytoplasm;nucleus", "AAP1": "cytoplasm;nucleus"}


def read_crop_folder(path):
    """Read WT2 / Paired Cell Inpainting crops: ``<root>/<PROTEIN>/<name>_{gfp,rfp}.tif``.

    Parameters
    ----------
    path : str or Path
        Either a root holding one subfolder per protein, or a single protein folder
        (the protein is then the folder name).

    Returns
    -------
    CellDataset
        ``images`` float32 ``(n, 2, h, w)``, channels ``("gfp", "rfp")`` (tagged protein,
        cytosolic RFP marker); ``meta`` columns ``protein`` (the folder name), ``name``
        (the crop's file name without ``_gfp.tif``), ``label`` (-1) and ``localization``
        (``""``). Cells are in natural order of protein, then name. Format ``"crop-folder"``.

    Raises
    ------
    DataError
        No crops, a ``_gfp`` without its ``_rfp`` partner (or the reverse), crops of
        different shapes, NaN pixels, or an unreadable TIFF.
    """
    folders = _crop_folders(path, _CROP_RE, "crop")
    cells = []
    for folder in folders:
        for cell in _group_files(folder, _CROP_RE, CROP_CHANNELS):
            cells.append({"protein": folder.name, **cell})
    if not cells:
        raise DataError(path, "no crops found: expected <PROTEIN>/<name>_gfp.tif and <name>_rfp.tif pairs")
    images = _read_cells(cells, CROP_CHANNELS)
    meta = pd.DataFrame({
        "protein": [c["protein"] for c in cells],
        "name": [c["name"] for c in cells],
        "label": np.full(len(cells), -1, dtype=np.int64),
        "localization": [""] * len(cells),
    })
    return CellDataset(images=images, meta=meta, channels=CROP_CHANNELS, source=str(path), format="crop-folder")


def read_hpa_crops(path):
    """Read Human Protein Atlas single-cell crops: ``<root>/<GENE>_<plate>_<well...>/``.

    Each cell is a triplet ``<name>_red.tif`` (microtubules), ``<name>_green.tif`` (the
    antibody-stained protein) and ``<name>_blue.tif`` (nucleus), as in the Paired Cell
    Inpainting human toy set.

    Parameters
    ----------
    path : str or Path
        A root holding one folder per sample, or a single sample folder.

    Returns
    -------
    CellDataset
        ``images`` float32 ``(n, 3, h, w)`` in channel order ``("red", "green", "blue")``,
        i.e. (microtubules, protein, nucleus), the RGB order of HPA images; ``meta``
        columns ``protein`` (gene name: the folder name before its first ``_``),
        ``sample`` (folder name), ``plate`` and ``well`` (the next two ``_`` fields, ``""``
        if absent), ``name``, ``label`` (-1) and ``localization`` (``""``).
        Format ``"hpa-crops"``.

    Raises
    ------
    DataError
        No crops, a cell missing one of its three channels, crops of different shapes,
        NaN pixels, or an unreadable TIFF.
    """
    folders = _crop_folders(path, _HPA_RE, "HPA crop")
    cells = []
    for folder in folders:
        parts = folder.name.split("_")
        for cell in _group_files(folder, _HPA_RE, HPA_CROP_CHANNELS):
            cells.append({"protein": parts[0], "sample": folder.name,
                          "plate": parts[1] if len(parts) > 1 else "",
                          "well": parts[2] if len(parts) > 2 else "", **cell})
    if not cells:
        raise DataError(path, "no crops found: expected <GENE>_<plate>_<well>/<name>_{red,green,blue}.tif")
    images = _read_cells(cells, HPA_CROP_CHANNELS)
    meta = pd.DataFrame({k: [c[k] for c in cells] for k in ("protein", "sample", "plate", "well", "name")})
    meta["label"] = np.full(len(cells), -1, dtype=np.int64)
    meta["localization"] = ""
    return CellDataset(images=images, meta=meta, channels=HPA_CROP_CHANNELS, source=str(path), format="hpa-crops")


# --------------------------------------------------------------------------- dispatch

def detect_format(path):
    """Name the format of a dataset file or folder.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        One of :data:`FORMATS`: ``"protrep-cells"`` (folder with ``dataset.json``),
        ``"deeploc-hdf5"`` (an HDF5 file, or a file named ``.h5``/``.hdf5``),
        ``"crop-folder"`` (``*_gfp.tif`` in the folder or its subfolders) or
        ``"hpa-crops"`` (``*_green.tif`` likewise).

    Raises
    ------
    DataError
        The path does not exist or matches none of the formats.
    """
    path = Path(path)
    supported = ", ".join(FORMATS)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if path.is_file():
        if h5py.is_hdf5(path) or path.suffix.lower() in _HDF5_SUFFIXES:
            return "deeploc-hdf5"
        raise DataError(path, f"unknown dataset format; supported formats are {supported}")
    if (path / "dataset.json").is_file():
        return PROTREP_FORMAT
    for name, pattern in (("crop-folder", _CROP_RE), ("hpa-crops", _HPA_RE)):
        if _has_matching(path, pattern) or any(_has_matching(p, pattern) for p in _subfolders(path)):
            return name
    raise DataError(path, f"unknown dataset format; supported formats are {supported}")


_READERS = {
    PROTREP_FORMAT: load_dataset,
    "deeploc-hdf5": read_deeploc_hdf5,
    "crop-folder": read_crop_folder,
    "hpa-crops": read_hpa_crops,
}


def open_dataset(path, *, format=None):
    """Read any supported dataset into a :class:`CellDataset`.

    Parameters
    ----------
    path : str or Path
    format : str, optional
        One of :data:`FORMATS`; detected with :func:`detect_format` when omitted.

    Returns
    -------
    CellDataset
    """
    if format is None:
        format = detect_format(path)
    if format not in _READERS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    return _READERS[format](path)
