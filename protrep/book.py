"""Chapter-level steps that span the layers (simulate, embed with trained runs, evaluate).

The notebooks narrate; what one of them would otherwise do in a long cell lives here.
"""

from .data.dataset import load_dataset, load_proteins
from .data.simulate import SimConfig, dataset_path, ensure_dataset, find_huh_table
from .evaluation.cellprofiler import cellprofiler_tables
from .evaluation.mean_ap import map_results_dict, seed_mean_map
from .evaluation.paired import compare_seeds, paired_results_dict
from .evaluation.retrieval import localization_reference, random_embedding
from .inference.embed import embed_runs, stretched
from .profiles import YEAST_MODELS
from .training.runs import run_path

__all__ = ["huh_evaluation"]


def huh_evaluation(data_dir, profile, standards, *, seeds, abundance="shuffled", n_proteins=None,
                   cells_per_protein=12, cellprofiler_cells=3, comparisons=(), n_boot=100, seed=0,
                   standardize=False, device="cpu", **term_filter):
    """Embed a simulation of the Huh et al. 2003 proteome with the book's trained runs and score it.

    Every ORF is held out (the models were trained on the synthetic screen), so the
    paper's protocol and the held-out one coincide here.

    Parameters
    ----------
    data_dir : str or Path
        The book's data folder (runs under ``runs/``, datasets beside them).
    profile : str
        Profile name of the trained runs.
    standards : dict of str to DataFrame
        The real yeast standards (:func:`protrep.data.standards.load_yeast_standards`).
    seeds : sequence of int
        Training seeds whose runs embed the ORFs.
    abundance : {"shuffled", "real"}
        :attr:`protrep.data.simulate.SimConfig.huh_abundance`.
    n_proteins, cells_per_protein : int
        ORFs (None: all) and cells per ORF of the simulation.
    cellprofiler_cells : int or None
        Cells per ORF measured with CellProfiler's modules; None leaves CellProfiler out.
    comparisons, n_boot, seed, standardize, **term_filter
        As for :func:`protrep.evaluation.paired.compare_seeds`.
    device : str or torch.device

    Returns
    -------
    dict
        ``table`` and ``paired`` (:func:`compare_seeds`), ``map`` (mean over seeds of
        :func:`mean_average_precision`), ``n_orfs`` and ``results`` (the JSON of the section).
    """
    config = SimConfig(n_proteins=n_proteins, cells_per_protein=cells_per_protein, seed=seed, proteome="huh2003",
                       huh_table=str(find_huh_table()), huh_abundance=abundance)
    where = dataset_path(data_dir, profile, "huh2003" if abundance == "shuffled" else f"huh2003-{abundance}-abundance")
    ensure_dataset(where, config)
    ds, proteins = load_dataset(where), load_proteins(where)
    images = stretched(ds)  # one percentile stretch for every model and seed
    groups = {name: embed_runs([run_path(data_dir, name, profile, seed=s) for s in seeds], images, device=device)
              for name in YEAST_MODELS}
    if cellprofiler_cells is not None:
        cp, cp_pca = cellprofiler_tables(ds, cells_per_protein=cellprofiler_cells, seed=seed, progress=False)
        groups["cellprofiler"], groups["cellprofiler_pca"] = [cp], [cp_pca]
    groups["random"] = [random_embedding(proteins["protein"], seed=seed)]
    groups["localization_reference"] = [localization_reference(proteins)]
    groups["localization_abundance_reference"] = [localization_reference(proteins, abundance=True)]
    comparisons = [c for c in comparisons if all(m in groups for m in c.split("-", 1))]
    table, paired = compare_seeds(groups, standards, comparisons=comparisons, n_boot=n_boot, seed=seed,
                                  standardize=standardize, progress=False, **term_filter)
    mean_ap = seed_mean_map(groups, standards, seed=seed, standardize=standardize, progress=False, **term_filter)
    r = paired_results_dict(table, paired)
    n_orfs = int(ds.meta["protein"].nunique())
    results = {"n_orfs": n_orfs, "abundance_rendered": abundance, "seeds": [int(s) for s in seeds],
               "cellprofiler_cells": cellprofiler_cells,
               "heldout": {k: r[k] for k in ("ap", "ap_ci", "ap_seed_sd")},
               "paper_protocol": {k: r[k] for k in ("ap", "ap_ci", "ap_seed_sd")},
               "paired": r["paired"], **map_results_dict(mean_ap)}
    return {"table": table, "paired": paired, "map": mean_ap, "n_orfs": n_orfs, "results": results}
