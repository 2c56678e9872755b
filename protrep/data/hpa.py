"""Human Protein Atlas images: the 28 Kaggle classes and the readers.

The HPA Kaggle challenge (Human Protein Atlas Image Classification, 2018) gives one
512 x 512 field per image in four channels, ``<Id>_{red,green,blue,yellow}.png``
(microtubules, the protein, the nucleus, the endoplasmic reticulum), and ``train.csv``
with columns ``Id`` and ``Target``: the space-separated ids (0-27) of the protein's
locations in that image (:data:`HPA_CLASSES`). Chen (2020) classified these images with
an SE-ResNet (:class:`protrep.models.SEResNet`).

Here:

- :data:`HPA_CLASSES`, :data:`HPA_CHANNELS` and :data:`LOCATION_TO_CLASS` (HPA cell-atlas
  location names, as in ``subcellular_location.tsv``, to class ids);
- :func:`read_hpa_kaggle`, the Kaggle layout, and :func:`read_hpa_crop_locations`, the
  single-cell crops of :func:`protrep.data.readers.read_hpa_crops` with their annotated
  locations and a fourth, empty, ER channel;
- the simulated HPA-like screen is :mod:`protrep.data.simulate_hpa`.

All readers return a :class:`~protrep.data.dataset.CellDataset` whose ``localization`` column
holds each image's classes (``;``-separated names of :data:`HPA_CLASSES`) and whose
``classes`` are the 28 HPA classes; :func:`~protrep.data.dataset.multi_hot` turns that into
multi-hot targets. Bad input raises :class:`~protrep.errors.DataError` naming the file.

References
----------
Chen, H. (2020). Extracting cellular location of human proteins using deep learning.
arXiv:2006.03800.

Thul, P. J. et al. (2017). A subcellular map of the human proteome. Science 356, eaal3321.
"""

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..progress import progress as progress_bar
from .dataset import CellDataset
from .readers import read_field_image, read_hpa_crops

__all__ = ["HPA_CLASSES", "HPA_CHANNELS", "LOCATION_TO_CLASS", "locations_to_classes", "read_hpa_kaggle",
           "read_hpa_crop_locations", "add_empty_channel"]

log = logging.getLogger(__name__)

#: The 28 classes of the HPA Kaggle challenge, in the order of their ids (0-27).
HPA_CLASSES = ("Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles",
               "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus", "Peroxisomes", "Endosomes",
               "Lysosomes", "Intermediate filaments", "Actin filaments", "Focal adhesion sites", "Microtubules",
               "Microtubule ends", "Cytokinetic bridge", "Mitotic spindle", "Microtubule organizing center",
               "Centrosome", "Lipid droplets", "Plasma membrane", "Cell junctions", "Mitochondria", "Aggresome",
               "Cytosol", "Cytoplasmic bodies", "Rods & rings")

#: Channel order of four-channel HPA images: microtubules, protein, nucleus, ER.
HPA_CHANNELS = ("red", "green", "blue", "yellow")

#: HPA cell-atlas location names (``subcellular_location.tsv``) to Kaggle class ids. The
#: atlas spells some classes differently (``Cell Junctions``, ``Rods & Rings``) and has
#: locations with no Kaggle class (``Nucleus``, ``Vesicles``, ``Midbody``, ``Midbody
#: ring``, ...), which are left out: :func:`locations_to_classes` drops them.
LOCATION_TO_CLASS = {**{name: i for i, name in enumerate(HPA_CLASSES)}, "Cell Junctions": 22, "Rods & Rings": 27}

_CHANNEL_RE = re.compile(r"^(?P<id>.+)_(?P<channel>red|green|blue|yellow)\.png$")


def locations_to_classes(locations):
    """Kaggle class names of ``;``-separated HPA locations, in class order; unmapped ones dropped.

    >>> locations_to_classes("Cytosol;Vesicles;Nucleoli fibrillar center")
    'Nucleoli fibrillar center;Cytosol'
    """
    ids = sorted({LOCATION_TO_CLASS[x.strip()] for x in str(locations).split(";") if x.strip() in LOCATION_TO_CLASS})
    return ";".join(HPA_CLASSES[i] for i in ids)


# --------------------------------------------------------------------------- readers
def _parse_target(value, file, row):
    text = "" if pd.isna(value) else str(value).strip()
    try:
        ids = sorted({int(t) for t in text.split()})
    except ValueError:
        raise DataError(file, f"row {row}: Target {text!r} is not space-separated class ids 0-27") from None
    if any(i < 0 or i >= len(HPA_CLASSES) for i in ids):
        raise DataError(file, f"row {row}: Target {text!r} has ids outside 0-27")
    return ";".join(HPA_CLASSES[i] for i in ids)


def read_hpa_kaggle(path, *, ids=None, size=None):
    """Read images in the HPA Kaggle layout: ``<path>/train.csv`` and ``<path>/train/<Id>_<channel>.png``.

    Parameters
    ----------
    path : str or Path
        Folder holding ``train.csv`` (columns ``Id``, ``Target``) and the PNGs, either in
        a ``train/`` subfolder or beside the CSV.
    ids : sequence of str, optional, keyword-only
        Read these images only (default: every row of ``train.csv``).
    size : int, optional, keyword-only
        Downsample every channel to ``size`` x ``size`` by block averaging (512 -> 128 is
        a 4 x 4 mean); the side must divide the images' side.

    Returns
    -------
    CellDataset
        ``images`` float32 ``(n, 4, h, w)`` in channel order :data:`HPA_CHANNELS`;
        ``meta`` columns ``protein`` (the image ``Id``: the Kaggle set names no protein),
        ``Id``, ``label`` (-1), ``localization`` (the image's classes, ``;``-separated
        names) and ``split`` (``""``); ``classes`` :data:`HPA_CLASSES`;
        ``info["multilabel"]`` True. Format ``"hpa-kaggle"``.

    Raises
    ------
    DataError
        Naming the file: no or unreadable ``train.csv``, missing columns, a malformed
        ``Target``, a missing channel PNG, images of other shapes or not 2-D.
    """
    root = Path(path)
    table_file = root / "train.csv"
    if not table_file.is_file():
        raise DataError(root, "no train.csv; expected the HPA Kaggle layout (train.csv with Id,Target and PNGs)")
    try:
        table = pd.read_csv(table_file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(table_file, f"unreadable CSV ({e})") from None
    missing = [c for c in ("Id", "Target") if c not in table.columns]
    if missing:
        raise DataError(table_file, f"missing columns {missing}; expected Id,Target")
    if ids is not None:
        wanted = set(map(str, ids))
        table = table[table["Id"].isin(wanted)]
        absent = sorted(wanted - set(table["Id"]))
        if absent:
            raise DataError(table_file, f"has no rows for Id {absent[:5]}")
    if len(table) == 0:
        raise DataError(table_file, "lists no image")
    localization = [_parse_target(v, table_file, i + 2) for i, v in enumerate(table["Target"])]
    folder = root / "train" if (root / "train").is_dir() else root
    images = None
    for i, image_id in enumerate(progress_bar(table["Id"], desc="reading HPA images", unit="image",
                                              disable=len(table) < 200)):
        for j, channel in enumerate(HPA_CHANNELS):
            file = folder / f"{image_id}_{channel}.png"
            if not file.is_file():
                raise DataError(file, f"missing: image {image_id} needs all of _red, _green, _blue, _yellow .png")
            im = read_field_image(file)
            if size is not None:
                if im.shape[0] % size or im.shape[1] % size:
                    raise DataError(file, f"shape {im.shape} cannot be block-averaged to {size} x {size}")
                f0, f1 = im.shape[0] // size, im.shape[1] // size
                im = im.astype(np.float32).reshape(size, f0, size, f1).mean(axis=(1, 3))
            if images is None:
                first = file
                images = np.empty((len(table), 4, *im.shape), np.float32)
            elif im.shape != images.shape[2:]:
                raise DataError(file, f"shape {im.shape} differs from {images.shape[2:]} of {first}")
            images[i, j] = im
    meta = pd.DataFrame({"protein": table["Id"].to_numpy(), "Id": table["Id"].to_numpy(),
                         "label": np.full(len(table), -1, np.int64), "localization": localization, "split": ""})
    return CellDataset(images=images, meta=meta, channels=HPA_CHANNELS, classes=HPA_CLASSES, source=str(root),
                       format="hpa-kaggle", info={"multilabel": True})


def add_empty_channel(ds, name="yellow"):
    """``ds`` with a channel of zeros appended (a three-channel HPA crop set made four-channel).

    SE-ResNet is trained with the ER channel zeroed in 30% of the images
    (:data:`protrep.models.seresnet.ER_DROPOUT`), so it has seen this input.
    """
    images = np.concatenate([ds.images, np.zeros_like(ds.images[:, :1])], axis=1)
    return dataclasses.replace(ds, images=images, channels=(*ds.channels, name))


def read_hpa_crop_locations(path, locations=None):
    """HPA single-cell crops (:func:`protrep.data.readers.read_hpa_crops`) with their annotated locations.

    Parameters
    ----------
    path : str or Path
        Crop folder (``<GENE>_<plate>_<well>/<name>_{red,green,blue}.tif``).
    locations : str or Path, optional
        HPA ``subcellular_location.tsv``; the locations of every reliability level except
        ``Uncertain`` (:func:`protrep.data.standards.read_hpa_locations`) fill the
        ``localization`` column, mapped to :data:`HPA_CLASSES` (locations with no Kaggle
        class dropped; the full atlas names are kept in ``hpa_locations``).

    Returns
    -------
    CellDataset
        Four channels :data:`HPA_CHANNELS`, the fourth (yellow, ER) all zeros: the crops
        have no ER channel. ``classes`` :data:`HPA_CLASSES`; ``info["multilabel"]`` True.
    """
    from .standards import read_hpa_locations

    ds = add_empty_channel(read_hpa_crops(path))
    meta = ds.meta.copy()
    meta["hpa_locations"] = ""
    if locations is not None:
        standard = read_hpa_locations(locations)
        atlas = standard.groupby("protein")["term"].agg(lambda t: ";".join(sorted(t)))
        meta["hpa_locations"] = meta["protein"].map(atlas).fillna("")
        meta["localization"] = meta["hpa_locations"].map(locations_to_classes)
    return dataclasses.replace(ds, meta=meta, classes=HPA_CLASSES, info={**ds.info, "multilabel": True})
