"""Mixed wells: fields where a share of the cells express another protein.

A real ORF-GFP screen images one protein per well, so the cells around a crop's centre
cell show the same protein; models trained on such crops may lean on that context. In a
*mixed well* (as in pooled or co-culture screens) each cell independently expresses a
*neighbour* protein with probability ``neighbour_share``, else the well's own protein
(:func:`protrep.data.render.simulate_field` with ``neighbour=``). The well is rendered,
segmented and cropped exactly like a well of the simulated screen
(:func:`protrep.data.simulate.simulate_well`), and only crops whose centre cell expresses
the well's protein are kept: crops of the same cells as ever, with foreign background
cells, a perturbation that training never made.

The centre cell of a crop is the true cell its detected cell matches (IoU >= 0.5, as in
the screen); for an unmatched detection, the true cell covering most of its mask (label
-1 and state ``unmatched``, as in the screen). ``foreign_share`` measures how foreign a
crop's background is: the share of the pixels of the other cells in the crop (from the
true label image) that belong to cells expressing the neighbour.

Plates: well ``i`` (the row of ``pairs``) is imaged on plate ``i // wells_per_plate``
with that plate's illumination and background drawn exactly as the screen draws them
(:func:`protrep.data.screen.plan_wells`, seed ``[config.seed, 3, plate]``), so mixed
wells see the screen's plates; rows within one plate share it, which pairs conditions of
the same protein on the same plate when they are written next to each other.
"""

import dataclasses
import logging
import numbers

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import CellDataset
from .proteome import CLASSES
from .render import plate_params, simulate_field
from .screen import map_wells
from .segment import extract_crops, match_labels, segment_cells
from .simulate import SimConfig, _bank

__all__ = ["PAIR_COLUMNS", "PROTEIN_COLUMNS", "MIXED_COLUMNS", "mixed_well", "mixed_wells"]

log = logging.getLogger(__name__)

#: Columns of the ``pairs`` table of :func:`mixed_wells`.
PAIR_COLUMNS = ("protein", "neighbour", "condition")
#: Columns of the proteome table that :func:`protrep.data.render.simulate_field` and the metadata need.
PROTEIN_COLUMNS = ("protein", "localization", "primary", "secondary", "weight", "heterogeneous", "mislocalizing",
                   "abundance", "trait_0", "trait_1", "trait_2", "trait_3")
#: Metadata columns of the crops :func:`mixed_wells` returns.
MIXED_COLUMNS = ["protein", "neighbour", "condition", "well", "plate", "field", "cell", "x", "y", "label", "state",
                 "localization", "foreign_share", "area"]


def _centre_cells(truth_crops, masks, cells, matched, n_pred):
    """True id of every crop's centre cell (0 if none) and whether it was matched (IoU >= 0.5)."""
    true_of = np.zeros(n_pred + 1, int)
    true_of[matched[:, 1]] = matched[:, 0]
    matched_id = true_of[cells]
    centre = matched_id.copy()
    for i in np.flatnonzero(matched_id == 0):  # unmatched: the true cell covering most of the detected mask
        ids = truth_crops[i][masks[i]]
        ids = ids[ids > 0]
        if ids.size:
            centre[i] = np.bincount(ids).argmax()
    return centre, matched_id > 0


def _field_crops(config, sim, field):
    """Segment and crop one field; crops whose centre cell expresses the well's protein, or None."""
    pred = segment_cells(sim["image"][1], min_distance=config.seg_min_distance)
    truth = sim["labels"]
    matched = match_labels(truth, pred)["pairs"]  # (true id, detected id), IoU >= 0.5
    crops, masks, tab = extract_crops(sim["image"], pred, size=config.crop_size)
    if len(tab) == 0:
        return None
    truth_crops = extract_crops(truth[None], pred, size=config.crop_size)[0][:, 0]
    centre, has = _centre_cells(truth_crops, masks, tab["cell"].to_numpy(), matched, int(pred.max()))
    expresses = np.r_[0, sim["expresses"]]  # by true id; 0 is the background
    other = (truth_crops > 0) & (truth_crops != centre[:, None, None])
    foreign = (other & (expresses[truth_crops] == 1)).sum(axis=(1, 2)) / np.maximum(other.sum(axis=(1, 2)), 1)
    label = np.where(has, np.r_[-1, sim["label"]][centre], -1)
    state = np.where(has, np.r_[["unmatched"], sim["state"]].astype(object)[centre], "unmatched").astype(object)
    keep = np.flatnonzero(expresses[centre] == 0)
    tab = tab.assign(field=field, label=label, state=state, foreign_share=foreign).iloc[keep]
    return crops[keep], masks[keep], tab.reset_index(drop=True)


def mixed_well(config, protein, neighbour, well, plate, *, neighbour_share=0.75, seed=0):
    """Simulate, segment and crop one well, mixed with ``neighbour`` unless it is None.

    Fields are added, as in :func:`protrep.data.simulate.simulate_well`, until
    ``config.cells_per_protein`` crops of cells expressing ``protein`` are found or
    ``config.max_fields_per_well`` fields are used; a field is sized (unless
    ``config.field_size`` is set) for the crops still missing divided by the expected
    share ``1 - neighbour_share`` of cells expressing ``protein``.

    Parameters
    ----------
    config : SimConfig
    protein, neighbour : mapping or None
        Rows of the proteome table; ``neighbour=None`` is an ordinary one-protein well.
    well : int
        Index of the well (seeds its random stream ``[config.seed, seed, 9, well]``).
    plate : PlateParams
    neighbour_share : float, keyword-only
        Probability that a cell expresses ``neighbour``.
    seed : int, keyword-only

    Returns
    -------
    dict
        ``crops`` uint16 (k, 2, s, s), ``masks`` bool (k, s, s) and ``table`` DataFrame
        (cell, x, y, area, field, label, state, foreign_share), k <= ``cells_per_protein``.
    """
    rng = np.random.default_rng([config.seed, seed, 9, well])
    bank = _bank(config.seed)
    expected = 1.0 if neighbour is None else 1.0 - neighbour_share
    target, parts, n_kept = config.cells_per_protein, [], 0
    for f in range(config.max_fields_per_well):
        size = config.field_size or config.field_size_for((1.1 if f == 0 else 1.5) * (target - n_kept) / expected)
        sim = simulate_field(rng, protein, plate, dataclasses.replace(config.imaging, size=size), bank,
                             neighbour=neighbour, neighbour_share=neighbour_share)
        part = _field_crops(config, sim, f)
        if part is None or len(part[2]) == 0:
            continue
        parts.append(part)
        n_kept += len(part[2])
        if n_kept >= target:
            break
    s = config.crop_size
    if not parts:
        return {"crops": np.zeros((0, 2, s, s), np.uint16), "masks": np.zeros((0, s, s), bool),
                "table": pd.DataFrame()}
    crops, masks = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    table = pd.concat([p[2] for p in parts], ignore_index=True)
    if len(table) > target:
        keep = np.sort(rng.choice(len(table), target, replace=False))
        crops, masks, table = crops[keep], masks[keep], table.iloc[keep].reset_index(drop=True)
    return {"crops": crops, "masks": masks, "table": table}


def _job(args):
    config, protein, neighbour, well, plate, share, seed = args
    return mixed_well(config, protein, neighbour, well, plate, neighbour_share=share, seed=seed)


def _protein_rows(proteome):
    """Proteome rows by name; DataError if a column that rendering needs is missing."""
    missing = [c for c in PROTEIN_COLUMNS if c not in proteome.columns]
    if missing:
        raise DataError("proteome table", f"lacks the columns {missing} that simulate_field needs; pass the "
                        "proteins table of a simulated dataset (protrep.data.dataset.load_proteins)")
    names = proteome["protein"].astype(str)
    if not names.is_unique:
        raise DataError("proteome table", f"lists proteins more than once: {sorted(names[names.duplicated()])[:10]}")
    return dict(zip(names, proteome.to_dict("records")))


def _check(config, pairs, rows, neighbour_share, seed):
    if not isinstance(config, SimConfig):
        raise TypeError(f"config must be a SimConfig, got {type(config).__name__}")
    if isinstance(neighbour_share, bool) or not isinstance(neighbour_share, numbers.Real) \
            or not 0 < neighbour_share < 1:
        raise ValueError(f"neighbour_share must be a number in (0, 1), got {neighbour_share!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(pairs, pd.DataFrame):
        raise TypeError(f"pairs must be a DataFrame with columns {list(PAIR_COLUMNS)}, got {type(pairs).__name__}")
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lacks the columns {missing}; it needs {list(PAIR_COLUMNS)}")
    if len(pairs) == 0:
        raise ValueError("pairs is empty; give at least one row (protein, neighbour, condition)")
    names = pd.unique(pd.concat([pairs["protein"], pairs["neighbour"]]).astype(str))
    unknown = [p for p in names if p not in rows]
    if unknown:
        raise ValueError(f"{len(unknown)} protein(s) of pairs are not in the proteome table: {unknown[:20]}")


def mixed_wells(config, proteome, pairs, *, neighbour_share=0.75, seed=0, workers=None, progress=True):
    """Simulate one well per row of ``pairs``, mixed with another protein where the row says so.

    Parameters
    ----------
    config : SimConfig
        The screen's configuration: imaging, crop size, segmentation, ``cells_per_protein``
        (target crops per well), ``max_fields_per_well``, ``wells_per_plate``, ``seed``.
    proteome : DataFrame
        One row per protein with the columns :data:`PROTEIN_COLUMNS` (the ``proteins.csv``
        of a simulated dataset, :func:`protrep.data.dataset.load_proteins`).
    pairs : DataFrame
        Columns ``protein``, ``neighbour`` and ``condition`` (free text, e.g. ``"base"``,
        ``"same"``, ``"diff"``); row ``i`` is well ``i``. ``neighbour == protein`` is an
        ordinary one-protein well.
    neighbour_share : float in (0, 1), keyword-only
        Probability that a cell of a mixed well expresses the neighbour.
    seed : int, keyword-only
        Well ``i`` draws from ``[config.seed, seed, 9, i]``; the output does not depend on
        ``workers``.
    workers : int, optional, keyword-only
        Worker processes (default: all cores, as :func:`protrep.data.simulate.simulate_dataset`).
    progress : bool, keyword-only
        Show a progress bar over wells.

    Returns
    -------
    CellDataset
        Images float32 (n, 2, s, s) raw counts (as :func:`protrep.data.dataset.load_dataset`
        gives them), masks bool (n, s, s), channels ``("gfp", "rfp")``, classes
        :data:`protrep.data.proteome.CLASSES`, and ``meta`` with the columns
        :data:`MIXED_COLUMNS`: ``protein``, ``neighbour``, ``condition``, ``well`` (row of
        ``pairs``), ``plate``, ``field``, ``cell``, ``x``, ``y``, ``label`` (class the
        centre cell shows, -1 if dead, ghost or unmatched), ``state``, ``localization``
        (the protein's annotated classes), ``foreign_share`` (share of the other cells'
        pixels in the crop that belong to neighbour cells; 0 in ordinary wells) and
        ``area``. Only crops whose centre cell expresses ``protein`` are kept.
    """
    rows = _protein_rows(proteome)
    _check(config, pairs, rows, neighbour_share, seed)
    pairs = pairs.reset_index(drop=True)
    n_plates = -(-len(pairs) // config.wells_per_plate)
    plates = [plate_params(np.random.default_rng([config.seed, 3, k])) for k in range(n_plates)]  # the screen's
    jobs = []
    for i, (p, q) in enumerate(zip(pairs["protein"].astype(str), pairs["neighbour"].astype(str))):
        jobs.append((config, rows[p], None if q == p else rows[q], i, plates[i // config.wells_per_plate],
                     float(neighbour_share), int(seed)))
    results = map_wells(_job, jobs, workers=workers, desc="simulating mixed wells", progress=progress)
    tables = []
    for i, r in enumerate(results):
        p = pairs.iloc[i]
        if len(r["table"]) == 0:
            log.warning("mixed well %d (%s with %s): no cell of %s was segmented", i, p["protein"], p["neighbour"],
                        p["protein"])
            continue
        tables.append(r["table"].assign(protein=str(p["protein"]), neighbour=str(p["neighbour"]),
                                        condition=p["condition"], well=i, plate=i // config.wells_per_plate + 1,
                                        localization=rows[str(p["protein"])]["localization"]))
    s = config.crop_size
    kept = [r for r in results if len(r["table"])]
    meta = pd.concat(tables, ignore_index=True)[MIXED_COLUMNS] if tables else pd.DataFrame(columns=MIXED_COLUMNS)
    images = np.concatenate([r["crops"] for r in kept]) if kept else np.zeros((0, 2, s, s), np.uint16)
    masks = np.concatenate([r["masks"] for r in kept]) if kept else np.zeros((0, s, s), bool)
    meta["label"] = meta["label"].astype(int)
    return CellDataset(images=images.astype(np.float32), meta=meta, channels=("gfp", "rfp"), classes=CLASSES,
                       masks=masks, info={"kind": "mixed wells", "config": config.to_dict(),
                                          "neighbour_share": float(neighbour_share), "seed": int(seed)})
