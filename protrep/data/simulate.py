"""Simulate a whole ORF-GFP screen: proteome, plates, fields, segmentation, crops, dataset.

The chain is the one of a real screen: every protein is imaged in one well (one protein
per well, 96 wells per plate); each well's fields of view are segmented on the RFP
channel with :func:`protrep.data.segment.segment_cells` (the simulator's true cell outlines are
*not* used); a 64 x 64 crop is cut around every detected cell and the centre cell's
detected mask is kept with it. Detected cells are matched to the true cells (IoU >= 0.5)
only to record each crop's true class and to measure segmentation recall.

Every well draws from its own seed (``[seed, 4, well index]``), so the output is
byte-identical whatever the number of worker processes.
"""

import dataclasses
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import check_destination, remove_stale_temporaries
from ..config import Config, check_choice, check_int, check_share, check_split, from_dict, source_hash
from ..errors import DataError
from ..workers import check_workers
from .dataset import split_by_protein, write_dataset
from .proteome import CLASSES, huh2003_proteome, proteome_standards, synthetic_proteome
from .render import FieldParams, TextureBank, simulate_field
from .screen import ensure_simulated, map_wells, plan_wells
from .segment import extract_crops, match_labels, segment_cells

__all__ = ["SimConfig", "check_size", "dataset_path", "ensure_dataset", "simulation_code_version",
           "simulate_dataset", "simulate_well", "find_huh_table"]

log = logging.getLogger(__name__)

_ROWS = "ABCDEFGH"


@dataclass(frozen=True)
class SimConfig(Config):
    """Configuration of a simulated screen; stored in ``dataset.json`` of every dataset.

    Attributes
    ----------
    n_proteins : int or None
        Number of proteins (in ``huh2003`` mode None means every simulated ORF).
    cells_per_protein : int
        Crops kept per protein (fields are added until there are enough).
    seed : int
        Seed of everything; the same config gives byte-identical output.
    proteome : {"synthetic", "huh2003"}
        Synthetic functional hierarchy, or the real ORFs of Huh et al. 2003.
    huh_table : str or None
        Path of the Huh 2003 table (``huh2003`` mode); found automatically if None.
    huh_abundance : {"shuffled", "real"}
        ``huh2003`` mode: render each ORF with the abundance of another ORF drawn at random
        (``shuffled``, the default: brightness then carries no function, so only
        localization reaches the pixels) or with its own published abundance (``real``:
        the ablation; abundance carries function in the real standards, and contrast to
        noise survives the per-cell stretch).
    crop_size : int
        Side of the crops.
    field_size : int or None
        Side of every field; None sizes a well's first field (in steps of 32 px) to give
        about 1.1 x ``cells_per_protein`` crops and any further field to make up the
        shortfall, so that few rendered cells go unused.
    max_fields_per_well : int
        Stop adding fields to a well after this many.
    wells_per_plate : int
    min_per_class : int
        Minimum number of proteins per class (synthetic mode).
    coupling : float
        Synthetic mode only: in [0, 1], how strongly function shares localization (the
        factor of the probabilities with which a pathway, complex or protein keeps the
        compartment of its parent unit; at 0 every localization is an independent census
        draw). Default 1.0: the book's screen.
    trait_strength : float
        Synthetic mode only: in [0, 1], how much of function the pattern traits (fine
        morphology) carry; their spread is the same for every value, and at 0 they carry
        no function. Default 1.0: the book's screen.
    function_expression : float
        Synthetic mode only: in [0, 1], the share of the variance of log-abundance carried
        by function (expression correlated with function, as in the real Huh 2003
        abundances; brightness then carries function). Default 0.0: the book's screen,
        where expression is a nuisance. See :func:`protrep.data.proteome.synthetic_proteome`.
    split_fractions : tuple of float
        Train, validation and test fractions of proteins (stratified by primary class).
    seg_min_distance : int
        ``min_distance`` of :func:`protrep.data.segment.segment_cells` (px between two cell
        centres); 12 suits cells of radius ~19 px with a dark vacuole, which smaller
        values over-split.
    imaging : FieldParams
        Cells, optics and camera.
    """

    n_proteins: int | None = 400
    cells_per_protein: int = 30
    seed: int = 0
    proteome: str = "synthetic"
    huh_table: str | None = None
    huh_abundance: str = "shuffled"
    crop_size: int = 64
    field_size: int | None = None
    max_fields_per_well: int = 8
    wells_per_plate: int = 96
    min_per_class: int = 4
    coupling: float = 1.0
    trait_strength: float = 1.0
    function_expression: float = 0.0
    split_fractions: tuple = (0.7, 0.15, 0.15)
    seg_min_distance: int = 12
    imaging: FieldParams = field(default_factory=FieldParams)

    def __post_init__(self):
        check_choice(self, "proteome", ("synthetic", "huh2003"))
        check_choice(self, "huh_abundance", ("shuffled", "real"))
        check_int(self, "cells_per_protein", "crop_size", "max_fields_per_well", "wells_per_plate", "seg_min_distance",
                  low=1)
        check_int(self, "seed", "min_per_class")
        check_int(self, "field_size", low=self.crop_size, none=True)
        check_int(self, "n_proteins", low=1, none=self.proteome == "huh2003")
        check_split(self)
        knobs = ("coupling", "trait_strength", "function_expression")  # of the synthetic proteome
        check_share(self, *knobs)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [f"{k}={getattr(self, k)!r}" for k in knobs if getattr(self, k) != defaults[k]]
        if changed and self.proteome == "huh2003":
            raise ValueError(f"{', '.join(changed)}: these knobs only apply to proteome='synthetic'; with "
                             f"proteome='huh2003' leave them at their defaults "
                             f"({', '.join(f'{k}={defaults[k]}' for k in knobs)})")
        object.__setattr__(self, "imaging", from_dict(FieldParams, self.imaging, path="imaging"))
        size = self.field_size or 1024
        per_field = self.expected_crops(size)
        if self.cells_per_protein > self.max_fields_per_well * per_field:
            raise ValueError(f"cells_per_protein={self.cells_per_protein} cannot be reached: a field of {size} x {size} "
                             f"px gives about {per_field:.0f} crops and a well has at most max_fields_per_well="
                             f"{self.max_fields_per_well} fields, about {self.max_fields_per_well * per_field:.0f} "
                             f"crops; ask for at most that many, or raise max_fields_per_well to "
                             f"{math.ceil(self.cells_per_protein / per_field)}")

    def resolved_field_size(self):
        """Side of a well's first field: ``field_size`` or the automatic choice."""
        if self.field_size is not None:
            return self.field_size
        return self.field_size_for(1.1 * self.cells_per_protein)

    def expected_crops(self, size):
        """Crops a field of side ``size`` px is expected to give."""
        p = self.imaging
        n_cells = p.density * size * size / (np.pi * p.cell_radius ** 2 * 0.91)
        usable = ((size - self.crop_size) / size) ** 2
        # crops per field measured at 1.15 x this model (buds segmented apart add some)
        return 1.15 * n_cells * usable

    def field_size_for(self, n_crops):
        """Smallest field side (a multiple of 32 px, 160 to 1024) expected to give ``n_crops`` crops."""
        for size in range(160, 1025, 32):
            if self.expected_crops(size) >= n_crops:
                return size
        return 1024


def dataset_path(data_dir, profile, proteome="synthetic"):
    """Where the book keeps the simulated dataset of a profile: ``<data_dir>/yeast-sim-<profile>``."""
    suffix = "" if proteome == "synthetic" else f"-{proteome}"
    return Path(data_dir) / f"yeast-sim-{profile}{suffix}"


def simulation_code_version():
    """Hash of the source of the modules that generate a dataset (proteome, render, segment, simulate).

    Stored in ``dataset.json``: a cached dataset is reused only if both its config and the
    code that made it are unchanged.
    """
    import sys

    from . import dataset, proteome, render, screen, segment

    return source_hash(proteome, render, segment, dataset, screen, sys.modules[__name__])


def ensure_dataset(path, config, *, workers=None, progress=True):
    """Simulate ``config`` into ``path`` unless a dataset made from the same config and code is there.

    Returns
    -------
    dict
        The dataset's ``dataset.json`` header (config, counts, segmentation recall) and
        ``reused`` (True if nothing had to be simulated).
    """
    return ensure_simulated(path, config, simulation_code_version(), simulate_dataset, workers=workers,
                            progress=progress)


def find_huh_table(path=None):
    """Locate the Huh 2003 table: ``path``, ``data/downloads``, then ``$PROTREP_SHARED_DATA``."""
    candidates = [Path(path)] if path else []
    candidates.append(Path("data/downloads/huh2003_yeastgfp.csv"))
    if os.environ.get("PROTREP_SHARED_DATA"):
        candidates.append(Path(os.environ["PROTREP_SHARED_DATA"]) / "standards/yeast/huh2003_yeastgfp.csv")
    for c in candidates:
        if c.is_file():
            return c
    raise DataError(candidates[0], "Huh 2003 table not found; run `protrep download huh2003` "
                    "or pass its path (--huh-table)")


def _well_name(i, per_plate):
    k = i % per_plate
    cols = per_plate // len(_ROWS)
    return f"{_ROWS[k // cols]}{k % cols + 1:02d}"


_BANKS = {}


def _bank(seed):
    if seed not in _BANKS:
        _BANKS[seed] = TextureBank(seed)
    return _BANKS[seed]


def simulate_well(config, protein, well_index, plate):
    """Simulate, segment and crop one well.

    Returns
    -------
    dict
        ``crops`` uint16 (k, 2, s, s), ``masks`` bool (k, s, s), ``table`` DataFrame
        (field, cell, x, y, label, state) and ``counts``: per true-cell state (alive,
        dead, ghost) the number of true cells and of those the segmentation found
        (IoU >= 0.5).
    """
    rng = np.random.default_rng([config.seed, 4, well_index])
    bank = _bank(config.seed)
    crops, masks, tables = [], [], []
    counts = {"alive": [0, 0], "dead": [0, 0], "ghost": [0, 0]}  # true cells, found
    n_kept = 0
    for f in range(config.max_fields_per_well):
        size = config.resolved_field_size() if f == 0 or config.field_size else \
            config.field_size_for(1.5 * (config.cells_per_protein - n_kept))
        sim = simulate_field(rng, protein, plate, dataclasses.replace(config.imaging, size=size), bank)
        pred = segment_cells(sim["image"][1], min_distance=config.seg_min_distance)
        truth = sim["labels"]
        pairs = match_labels(truth, pred)["pairs"]  # (true id, detected id), IoU >= 0.5
        found = pairs[:, 0]
        for state in counts:
            ids = np.flatnonzero(sim["state"] == state) + 1
            counts[state][0] += len(ids)
            counts[state][1] += int(np.isin(ids, found).sum())
        c, mk, tab = extract_crops(sim["image"], pred, size=config.crop_size)
        if len(tab) == 0:
            continue
        true_of = np.zeros(int(pred.max()) + 1, int)
        true_of[pairs[:, 1]] = pairs[:, 0]
        true_id = true_of[tab["cell"].to_numpy()]
        has = true_id > 0
        label = np.full(len(tab), -1)
        state = np.full(len(tab), "unmatched", dtype=object)
        label[has] = sim["label"][true_id[has] - 1]
        state[has] = sim["state"][true_id[has] - 1]
        tab = tab.assign(field=f, label=label, state=state)
        crops.append(c)
        masks.append(mk)
        tables.append(tab)
        n_kept += len(tab)
        if n_kept >= config.cells_per_protein:
            break
    if not tables:
        return {"crops": np.zeros((0, 2, config.crop_size, config.crop_size), np.uint16),
                "masks": np.zeros((0, config.crop_size, config.crop_size), bool), "table": pd.DataFrame(),
                "counts": counts}
    crops, masks = np.concatenate(crops), np.concatenate(masks)
    table = pd.concat(tables, ignore_index=True)
    if len(table) > config.cells_per_protein:
        keep = np.sort(rng.choice(len(table), config.cells_per_protein, replace=False))
        crops, masks, table = crops[keep], masks[keep], table.iloc[keep].reset_index(drop=True)
    return {"crops": crops, "masks": masks, "table": table, "counts": counts}


def _proteome(config):
    if config.proteome == "synthetic":
        return synthetic_proteome(config.n_proteins, seed=config.seed, min_per_class=config.min_per_class,
                                  coupling=config.coupling, trait_strength=config.trait_strength,
                                  function_expression=config.function_expression)
    return huh2003_proteome(find_huh_table(config.huh_table), n_proteins=config.n_proteins, seed=config.seed,
                            shuffle_abundance=config.huh_abundance == "shuffled")


def _available_memory():
    """Bytes of memory available to a new allocation (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n):
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.0f} TB"


def check_size(out, config, n_proteins):
    """Raise :class:`DataError` naming ``out`` if the crops of a screen would not fit this machine.

    The crops are held in memory until written (two uint16 channels and a mask per crop,
    twice while they are joined) and then written to disk, so both must fit: the memory
    available now and the free space of the file system of ``out``.
    """
    n = int(n_proteins) * config.cells_per_protein
    per_crop = 5 * config.crop_size ** 2
    folder = Path(out).resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free, memory = shutil.disk_usage(folder).free, _available_memory()
    problems = [f"{_gb(n * per_crop)} on disk, with {_gb(free)} free at {folder}"] if n * per_crop > free else []
    if memory is not None and 2 * n * per_crop > memory:
        problems.append(f"about {_gb(2 * n * per_crop)} of memory while simulating, with {_gb(memory)} available")
    if problems:
        raise DataError(out, f"n_proteins={n_proteins:,} x cells_per_protein={config.cells_per_protein:,} = {n:,} "
                             f"crops of {config.crop_size} x {config.crop_size} px need " + " and ".join(problems)
                        + "; simulate fewer proteins or fewer cells per protein")


def _job(args):
    config, protein, well_index, plate = args
    return simulate_well(config, protein, well_index, plate)


def simulate_dataset(out, config=SimConfig(), *, workers=None, overwrite=False, progress=True):
    """Simulate a screen and write it as a ``protrep-cells`` dataset.

    Parameters
    ----------
    out : str or Path
        Destination folder (written atomically).
    config : SimConfig
    workers : int, optional
        Worker processes (default: all cores). The output does not depend on it.
    overwrite : bool
        Replace an existing dataset (a folder holding ``dataset.json``, or an empty one;
        never a folder of other files).
    progress : bool
        Show a progress bar over wells.

    Returns
    -------
    dict
        Summary: ``n_proteins``, ``n_cells``, ``seg_recall`` (fraction of true living
        cells found with IoU >= 0.5; dead and ghost cells, dim in the RFP marker, are
        counted separately in ``dataset.json``), ``path``.

    Raises
    ------
    FileExistsError, DataError
        Before anything is simulated: ``out`` exists (without ``overwrite``), is a file,
        holds other files than a dataset, or cannot be made; or the crops would not fit in
        the memory or the free disk space of this machine (:func:`check_size`).

    Notes
    -----
    A well that falls short of ``cells_per_protein`` crops (its fields ran out) is counted
    in ``dataset.json`` as ``short_wells``, with a logged warning. Temporaries of a killed
    run at ``out`` are removed.
    """
    out = Path(out)
    check_workers(workers)
    check_destination(out, overwrite=overwrite, marker="dataset.json")  # before any work
    for p in remove_stale_temporaries(out):
        log.info("removed %s, left by a killed run", p)
    if config.n_proteins is not None:
        check_size(out, config, config.n_proteins)
    proteins = _proteome(config)
    if config.n_proteins is None:
        check_size(out, config, len(proteins))
    proteins["split"] = split_by_protein(proteins["protein"], proteins["primary"], fractions=config.split_fractions,
                                         seed=config.seed).to_numpy()
    jobs = plan_wells(config, proteins)
    results = map_wells(_job, jobs, workers=workers, progress=progress)

    short = sum(len(r["table"]) < config.cells_per_protein for r in results)
    if short:
        log.warning("%d of %d wells gave fewer than cells_per_protein=%d crops (at most %d fields each); dataset.json "
                    "records their number as short_wells", short, len(results), config.cells_per_protein,
                    config.max_fields_per_well)
    tables = []
    for (cfg, prot, i, _), r in zip(jobs, results):
        t = r["table"]
        if len(t) == 0:
            log.warning("well %s (%s): no cell was segmented", _well_name(i, config.wells_per_plate), prot["protein"])
            continue
        tables.append(t.assign(protein=prot["protein"], plate=i // config.wells_per_plate + 1,
                               well=_well_name(i, config.wells_per_plate), localization=prot["localization"],
                               split=prot["split"]))
    if not tables:
        raise DataError(out, f"no cell was segmented in any of the {len(results)} wells: nothing to write; give "
                             "larger fields (field_size) or more of them (max_fields_per_well)")
    cells = pd.concat(tables, ignore_index=True)
    cells["label"] = cells["label"].astype(int)
    images = np.concatenate([r["crops"] for r in results if len(r["table"])])
    masks = np.concatenate([r["masks"] for r in results if len(r["table"])])
    seg = {}
    for state in ("alive", "dead", "ghost"):
        n = sum(r["counts"][state][0] for r in results)
        k = sum(r["counts"][state][1] for r in results)
        seg[state] = {"n_true": int(n), "n_found": int(k), "recall": float(k / max(n, 1))}
    seg["recall"] = seg["alive"]["recall"]
    write_dataset(out, images, masks, cells, proteins, channels=("gfp", "rfp"), classes=CLASSES,
                  standards=proteome_standards(proteins), config=config.to_dict(),
                  extra={"segmentation": seg, "short_wells": int(short), "code_version": simulation_code_version()},
                  overwrite=overwrite)
    return {"path": str(out), "n_proteins": int(cells["protein"].nunique()), "n_cells": int(len(cells)),
            "seg_recall": seg["recall"]}
