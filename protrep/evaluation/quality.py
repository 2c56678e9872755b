"""Quality against training compute: the measured curves the book's profiles are chosen from.

Each point of a sweep is one model, width and compute budget (``TrainConfig.budget_tflop``)
trained on a dataset's training proteins and scored on proteins it never saw:

- ``test_accuracy``: localization accuracy (five-crop average) on the cells of
  single-localized test proteins, for classifiers (DeepLoc);
- ``probe_accuracy``: a linear probe (:func:`protrep.evaluation.metrics.linear_probe`) fitted on
  training cells' features, scored on the same test cells, for every model;
- ``ap_<standard>``: functional AP (:func:`protrep.evaluation.retrieval.functional_ap`, cosine
  similarity of protein means) over the held-out proteins (validation and test) only.

Beside the quality, a point records the compute (TFLOP) and the wall seconds of training
together with the machine's matmul rate (:func:`protrep.timing.matmul_gflops`), so that a
curve measured on one machine reads in minutes at the reference rate on any other.
``benchmarks/quality_vs_compute.py`` runs a sweep; chapters 2 and 3 plot it.
"""

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_file
from ..errors import DataError

__all__ = ["SWEEP_COLUMNS", "model_quality", "sweep_point", "read_sweep", "minutes_at_reference"]

log = logging.getLogger(__name__)

STANDARDS = ("compartments", "processes", "pathways", "complexes")
#: Columns of a sweep table, in order.
SWEEP_COLUMNS = ["model", "width", "budget_tflop", "seed", "steps", "epochs", "train_seconds", "matmul_gflops",
                 "threads", "test_accuracy", "probe_accuracy", *[f"ap_{s}" for s in STANDARDS], "n_heldout_proteins"]


def model_quality(model, ds, standards, *, probe_cells=6000, seed=0, device="cpu", term_filter=None):
    """Held-out quality of a trained model (see the module docstring for the measures).

    Parameters
    ----------
    model : nn.Module
        A registered model in eval mode.
    ds : CellDataset
        With ``split`` (per protein), ``label`` and ``localization`` columns.
    standards : dict of str to DataFrame
        Functional standards (columns ``term``, ``protein``).
    probe_cells : int
        Labelled training cells the probe is fitted on (drawn with ``seed``).
    term_filter : dict, optional
        ``min_size`` / ``max_fraction`` of the standards (default 2 and 0.3, as chapter 4).

    Returns
    -------
    dict
        ``test_accuracy`` (NaN for models that do not classify), ``probe_accuracy``,
        ``ap_<standard>`` and ``n_heldout_proteins``.
    """
    from ..data.tables import embedding_tables
    from ..evaluation.retrieval import functional_ap
    from ..inference.embed import embed_cells, predict_cells
    from .metrics import linear_probe, localization_accuracy, single_localized_test_cells

    term_filter = {"min_size": 2, "max_fraction": 0.3, **(term_filter or {})}
    meta = ds.meta
    split = meta["split"].to_numpy()
    test = np.flatnonzero(single_localized_test_cells(meta))
    if len(test) == 0:
        raise DataError(ds.source or "dataset", "has no labelled cells of single-localized test proteins")
    labelled_train = np.flatnonzero((split == "train") & (meta["label"] >= 0).to_numpy())
    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(labelled_train, min(probe_cells, len(labelled_train)), replace=False))
    heldout = np.flatnonzero(np.isin(split, ("val", "test")))
    out = {"test_accuracy": float("nan")}
    y_test = meta["label"].to_numpy()[test]
    if model.is_classifier:
        proba = predict_cells(model, ds.subset(test), device=device)
        out["test_accuracy"] = localization_accuracy(y_test, proba, ds.classes)["accuracy"]
    index = np.union1d(np.union1d(fit, test), heldout)
    features = embed_cells(model, ds.subset(index), crops="centre", device=device)
    where = {cell: row for row, cell in enumerate(index)}
    rows = lambda cells: np.array([where[c] for c in cells], int)  # noqa: E731
    proba = linear_probe(features[rows(fit)], meta["label"].to_numpy()[fit], features[rows(test)],
                         n_classes=len(ds.classes), seed=seed)
    out["probe_accuracy"] = localization_accuracy(y_test, proba, ds.classes)["accuracy"]
    proteins = embedding_tables(ds.subset(heldout), features[rows(heldout)])[1]
    for name in STANDARDS:
        out[f"ap_{name}"] = (functional_ap(proteins, standards[name], **term_filter)["ap"]
                             if name in standards else float("nan"))
    out["n_heldout_proteins"] = int(len(proteins))
    return out


def sweep_point(model_config, train_config, ds, standards, run_dir, *, gflops, device="cpu", progress=False):
    """Train one point of a sweep (or reuse the finished run in ``run_dir``) and score it.

    Returns
    -------
    dict
        One row of :data:`SWEEP_COLUMNS`. ``train_seconds`` sums the epochs' training time
        from the run's history (validation excluded), so a reused run keeps its time.
    """
    import torch

    from ..training.loop import train
    from ..training.runs import load_run

    start = time.perf_counter()
    history = train(model_config, train_config, ds, run_dir, resume=True, overwrite=True, progress=progress)
    model, _ = load_run(run_dir, device=device)
    quality = model_quality(model, ds, standards, seed=train_config.seed, device=device)
    n_train = int((ds.meta["split"] == "train").sum())
    steps = int(history["global_step"].iloc[-1])
    log.info("%s width %s, %s TFLOP: %.0f s (%.0f s with scoring)", model_config.name, model_config.width,
             train_config.budget_tflop, history["seconds"].sum(), time.perf_counter() - start)
    return {"model": model_config.name, "width": model_config.width, "budget_tflop": train_config.budget_tflop,
            "seed": train_config.seed, "steps": steps, "epochs": steps * train_config.batch_size / n_train,
            "train_seconds": float(history["seconds"].sum()), "matmul_gflops": gflops,
            "threads": torch.get_num_threads(), **quality}


def read_sweep(path):
    """Read a sweep table written by ``benchmarks/quality_vs_compute.py``; checks its columns."""
    path = Path(path)
    try:
        table = pd.read_csv(path, comment="#")
    except FileNotFoundError:
        raise DataError(path, "no sweep table here; run benchmarks/quality_vs_compute.py") from None
    missing = [c for c in SWEEP_COLUMNS if c not in table]
    if missing:
        raise DataError(path, f"is not a sweep table: columns {missing} are missing")
    return table


def write_sweep(table, path, header=()):
    """Write a sweep table atomically, with ``#`` comment lines (machine, command) first."""
    with atomic_file(path, "w") as f:
        for line in header:
            f.write(f"# {line}\n")
        table[SWEEP_COLUMNS].to_csv(f, index=False, float_format="%.6g")


def minutes_at_reference(table):
    """Training minutes of each point converted to the reference matmul rate (see :mod:`protrep.timing`)."""
    from ..timing import REFERENCE_GFLOPS

    return table["train_seconds"] * table["matmul_gflops"] / REFERENCE_GFLOPS / 60
