"""Human Protein Atlas track: the 28 Kaggle classes, readers, and a simulated HPA screen.

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
  single-cell crops of :func:`protrep.readers.read_hpa_crops` with their annotated
  locations and a fourth, empty, ER channel;
- a simulated screen (:class:`HPASimConfig`, :func:`simulate_hpa_dataset`,
  :func:`ensure_hpa_dataset`) rendered by :mod:`protrep.render_human`, written as a
  ``protrep-cells`` dataset of whole fields with ``info["multilabel"] = True``.

All readers return a :class:`~protrep.dataset.CellDataset` whose ``localization`` column
holds each image's classes (``;``-separated names of :data:`HPA_CLASSES`) and whose
``classes`` are the 28 HPA classes; :class:`~protrep.batches.CellTensors` turns that into
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import from_dict, source_hash
from .dataset import CellDataset, split_by_protein, write_dataset
from .errors import DataError
from .progress import progress as progress_bar
from .readers import read_field_image, read_hpa_crops
from .render_human import PATTERNS, HumanFieldParams, simulate_human_field
from .simulate import ensure_simulated, map_wells, plan_wells

__all__ = ["HPA_CLASSES", "HPA_CHANNELS", "LOCATION_TO_CLASS", "SIMULATED_CLASSES", "locations_to_classes",
           "read_hpa_kaggle", "read_hpa_crop_locations", "add_empty_channel", "HPASimConfig", "PROFILES",
           "profile_config", "dataset_path", "code_version", "simulate_hpa_dataset", "ensure_hpa_dataset",
           "inference_throughput"]

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

#: The classes the simulated screen draws: the 14 of :data:`protrep.render_human.PATTERNS`.
SIMULATED_CLASSES = tuple(c for c in HPA_CLASSES if c in PATTERNS)

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
    """HPA single-cell crops (:func:`protrep.readers.read_hpa_crops`) with their annotated locations.

    Parameters
    ----------
    path : str or Path
        Crop folder (``<GENE>_<plate>_<well>/<name>_{red,green,blue}.tif``).
    locations : str or Path, optional
        HPA ``subcellular_location.tsv``; the locations of every reliability level except
        ``Uncertain`` (:func:`protrep.standards.read_hpa_locations`) fill the
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


# --------------------------------------------------------------------------- simulation
#: Relative frequency of each simulated location among a protein's locations; the order of
#: the Kaggle counts (Nucleoplasm and Cytosol commonest, Actin filaments rarest of these),
#: flattened so that a small simulated screen still has a few proteins of every class.
LOCATION_FREQUENCY = {"Nucleoplasm": 0.24, "Cytosol": 0.16, "Plasma membrane": 0.07, "Nucleoli": 0.07,
                      "Mitochondria": 0.06, "Golgi apparatus": 0.06, "Nuclear bodies": 0.05,
                      "Nuclear speckles": 0.05, "Nucleoli fibrillar center": 0.04, "Centrosome": 0.04,
                      "Nuclear membrane": 0.04, "Microtubules": 0.04, "Endoplasmic reticulum": 0.04,
                      "Actin filaments": 0.04}


@dataclass(frozen=True)
class HPASimConfig:
    """Configuration of a simulated HPA screen; stored in ``dataset.json``.

    Attributes
    ----------
    n_proteins : int
        Proteins (one per well); each has 1-3 locations of :data:`SIMULATED_CLASSES`
        (1: 55%, 2: 35%, 3: 10%), drawn with :data:`LOCATION_FREQUENCY`.
    images_per_protein : int
        Fields per protein; all are labelled with the protein's locations.
    seed : int
    split_fractions : tuple of float
        Train, validation and test fractions of proteins (stratified by first location).
    wells_per_plate : int
    imaging : HumanFieldParams
    """

    n_proteins: int = 200
    images_per_protein: int = 4
    seed: int = 0
    split_fractions: tuple = (0.6, 0.2, 0.2)
    wells_per_plate: int = 96
    imaging: HumanFieldParams = field(default_factory=HumanFieldParams)

    def __post_init__(self):
        for name in ("n_proteins", "images_per_protein", "wells_per_plate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "split_fractions", tuple(self.split_fractions))
        if isinstance(self.imaging, dict):
            object.__setattr__(self, "imaging", from_dict(HumanFieldParams, self.imaging))

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["split_fractions"] = list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return from_dict(cls, dict(d))


#: Screen size per book profile: ``quick`` for the tests (seconds), ``default`` for the
#: book on a 2-core CPU (128 x 128 fields), ``full`` for a GPU (512 x 512, as Kaggle).
PROFILES = {
    "quick": {"n_proteins": 48, "images_per_protein": 2, "imaging": {"size": 64}},
    "default": {"n_proteins": 300, "images_per_protein": 3, "imaging": {"size": 128}},
    "full": {"n_proteins": 2000, "images_per_protein": 6, "imaging": {"size": 512}},
}


def profile_config(profile, *, seed=0, **overrides):
    """The :class:`HPASimConfig` of a book profile; ``None`` overrides are ignored."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    values = {**PROFILES[profile], "seed": seed}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return HPASimConfig(**values)


def dataset_path(data_dir, profile):
    """Where the book keeps the simulated HPA screen of a profile: ``<data_dir>/hpa-sim-<profile>``."""
    return Path(data_dir) / f"hpa-sim-{profile}"


def code_version():
    """Hash of the code that renders a simulated HPA screen (this module, render_human, render, simulate, dataset)."""
    import sys

    from . import dataset, render, render_human, simulate

    return source_hash(render, render_human, simulate, dataset, sys.modules[__name__])


def _proteins(config):
    rng = np.random.default_rng([config.seed, 8])
    names = list(LOCATION_FREQUENCY)
    freq = np.array(list(LOCATION_FREQUENCY.values()))
    freq = freq / freq.sum()
    rows = []
    for i in range(config.n_proteins):
        k = int(rng.choice([1, 2, 3], p=[0.55, 0.35, 0.10]))
        picked = rng.choice(len(names), size=k, replace=False, p=freq)
        locations = [names[j] for j in sorted(picked, key=lambda j: HPA_CLASSES.index(names[j]))]
        rows.append({"protein": f"HSIM{i:05d}", "localization": ";".join(locations),
                     "primary": names[picked[0]], "weights": ";".join(f"{w:.3f}" for w in rng.uniform(0.5, 1, k)),
                     "abundance": float(np.exp(rng.normal(0, 0.4)))})
    table = pd.DataFrame(rows)
    table["split"] = split_by_protein(table["protein"], table["primary"], fractions=config.split_fractions,
                                      seed=config.seed).to_numpy()
    return table


def _well(args):
    config, protein, well_index, plate = args
    rng = np.random.default_rng([config.seed, 6, well_index])
    locations = protein["localization"].split(";")
    weights = [float(w) for w in protein["weights"].split(";")]
    fields = [simulate_human_field(rng, locations, plate, config.imaging, weights=weights,
                                   expression=protein["abundance"]) for _ in range(config.images_per_protein)]
    return fields


def simulate_hpa_dataset(out, config=HPASimConfig(), *, workers=None, overwrite=False, progress=True):
    """Simulate an HPA-like screen and write it as a ``protrep-cells`` dataset of whole fields.

    Every protein is imaged in one well (``images_per_protein`` fields); wells draw from
    their own seeds ``[seed, 6, well]``, so the output is byte-identical whatever the
    number of workers.

    Returns
    -------
    dict
        ``path``, ``n_proteins``, ``n_images``.

    Notes
    -----
    On disk: ``images.npy`` uint16 ``(n, 4, size, size)`` (channels :data:`HPA_CHANNELS`),
    ``masks.npy`` the pixels inside cells (not a centre-cell mask: the images are whole
    fields), ``cells.csv`` one row per image (``cell`` 0, ``x``/``y`` the field centre,
    ``label`` -1, ``localization`` the image's classes, ``n_cells``), ``proteins.csv``
    and ``standards/location.tsv``; ``dataset.json`` has ``multilabel: true``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass overwrite=True to replace it")
    proteins = _proteins(config)
    jobs = plan_wells(config, proteins)
    results = map_wells(_well, jobs, workers=workers, chunksize=8, desc="simulating HPA wells", progress=progress)
    rows = []
    size = config.imaging.size
    for (_, prot, i, _), fields in zip(jobs, results):
        for f, field_ in enumerate(fields):
            rows.append({"protein": prot["protein"], "plate": i // config.wells_per_plate + 1,
                         "well": f"{'ABCDEFGH'[(i % config.wells_per_plate) // 12]}{i % 12 + 1:02d}", "field": f,
                         "cell": 0, "x": size / 2, "y": size / 2, "label": -1, "localization": prot["localization"],
                         "split": prot["split"], "n_cells": field_["n_cells"]})
    cells = pd.DataFrame(rows)
    images = np.stack([f["image"] for fields in results for f in fields])
    masks = np.stack([f["mask"] for fields in results for f in fields])
    standard = pd.DataFrame([(loc, p) for p, locs in zip(proteins["protein"], proteins["localization"])
                             for loc in locs.split(";")], columns=["term", "protein"])
    write_dataset(out, images, masks, cells, proteins, channels=HPA_CHANNELS, classes=HPA_CLASSES,
                  standards={"location": standard}, config=config.to_dict(),
                  extra={"multilabel": True, "simulated_classes": list(SIMULATED_CLASSES),
                         "code_version": code_version()}, overwrite=overwrite)
    return {"path": str(out), "n_proteins": int(len(proteins)), "n_images": int(len(cells))}


def ensure_hpa_dataset(path, config, *, workers=None, progress=True):
    """Simulate ``config`` into ``path`` unless a dataset of the same config and code is there.

    Returns
    -------
    dict
        The dataset's ``dataset.json`` header and ``reused`` (True if nothing was simulated).
    """
    return ensure_simulated(path, config, code_version(), simulate_hpa_dataset, workers=workers, progress=progress)


# --------------------------------------------------------------------------- throughput
def inference_throughput(model, *, size=512, n_images=16, batch_size=8, device="cpu", seed=0):
    """Images per minute of ``model.predict_proba`` on random ``size`` x ``size`` images.

    The model runs in eval mode, channels-last, without gradients (as
    :func:`protrep.inference.predict_cells`), after one untimed warm-up batch; on CUDA
    under bf16 autocast. Normalisation and file reading are not timed.

    Returns
    -------
    dict
        ``images_per_min``, ``seconds``, ``n_images``, ``size``, ``batch_size``, ``device``.
    """
    import time

    import torch

    device = torch.device(device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, model.config.in_channels, size, size, generator=g).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad(), amp:
        model.predict_proba(x)
        sync()
        n_batches = max(1, -(-n_images // batch_size))
        start = time.perf_counter()
        for _ in range(n_batches):
            model.predict_proba(x)
        sync()
        seconds = time.perf_counter() - start
    n = n_batches * batch_size
    return {"images_per_min": 60 * n / seconds, "seconds": seconds, "n_images": n, "size": size,
            "batch_size": batch_size, "device": str(device)}
