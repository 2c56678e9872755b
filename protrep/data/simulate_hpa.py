"""A simulated Human Protein Atlas screen: four-channel fields of human cells, multi-label targets.

Proteins of 1-3 locations among :data:`SIMULATED_CLASSES`, each imaged in one well;
fields are rendered by :mod:`protrep.data.render_human` and written as a ``protrep-cells``
dataset of whole fields with ``info["multilabel"] = True`` and the 28 classes of
:data:`protrep.data.hpa.HPA_CLASSES`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import check_destination
from ..config import Config, check_int, check_split, from_dict, source_hash
from .dataset import split_by_protein, write_dataset
from .hpa import HPA_CHANNELS, HPA_CLASSES
from .render_human import PATTERNS, HumanFieldParams, simulate_human_field
from .screen import ensure_simulated, map_wells, plan_wells

__all__ = ["SIMULATED_CLASSES", "LOCATION_FREQUENCY", "HPASimConfig", "dataset_path",
           "hpa_simulation_code_version", "simulate_hpa_dataset", "ensure_hpa_dataset"]

log = logging.getLogger(__name__)

#: The classes the simulated screen draws: the 14 of :data:`protrep.data.render_human.PATTERNS`.
SIMULATED_CLASSES = tuple(c for c in HPA_CLASSES if c in PATTERNS)

#: Relative frequency of each simulated location among a protein's locations; the order of
#: the Kaggle counts (Nucleoplasm and Cytosol commonest, Actin filaments rarest of these),
#: flattened so that a small simulated screen still has a few proteins of every class.
LOCATION_FREQUENCY = {"Nucleoplasm": 0.24, "Cytosol": 0.16, "Plasma membrane": 0.07, "Nucleoli": 0.07,
                      "Mitochondria": 0.06, "Golgi apparatus": 0.06, "Nuclear bodies": 0.05,
                      "Nuclear speckles": 0.05, "Nucleoli fibrillar center": 0.04, "Centrosome": 0.04,
                      "Nuclear membrane": 0.04, "Microtubules": 0.04, "Endoplasmic reticulum": 0.04,
                      "Actin filaments": 0.04}


@dataclass(frozen=True)
class HPASimConfig(Config):
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
        check_int(self, "n_proteins", "images_per_protein", "wells_per_plate", low=1)
        check_int(self, "seed")
        check_split(self)
        object.__setattr__(self, "imaging", from_dict(HumanFieldParams, self.imaging, path="imaging"))


def dataset_path(data_dir, profile):
    """Where the book keeps the simulated HPA screen of a profile: ``<data_dir>/hpa-sim-<profile>``."""
    return Path(data_dir) / f"hpa-sim-{profile}"


def hpa_simulation_code_version():
    """Hash of the code that renders a simulated HPA screen (this module, render_human, render, simulate, dataset)."""
    import sys

    from . import dataset, render, render_human, screen

    return source_hash(render, render_human, screen, dataset, sys.modules[__name__])


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
    check_destination(out, overwrite=overwrite, marker="dataset.json")  # before any work
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
                         "code_version": hpa_simulation_code_version()}, overwrite=overwrite)
    return {"path": str(out), "n_proteins": int(len(proteins)), "n_images": int(len(cells))}


def ensure_hpa_dataset(path, config, *, workers=None, progress=True):
    """Simulate ``config`` into ``path`` unless a dataset of the same config and code is there.

    Returns
    -------
    dict
        The dataset's ``dataset.json`` header and ``reused`` (True if nothing was simulated).
    """
    return ensure_simulated(path, config, hpa_simulation_code_version(), simulate_hpa_dataset, workers=workers, progress=progress)
