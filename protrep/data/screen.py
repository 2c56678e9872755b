"""What every simulated screen shares: one well per protein, wells in parallel, a cache by config.

Used by the yeast ORF-GFP screen (:mod:`protrep.data.simulate`) and the HPA-like screen
(:mod:`protrep.data.simulate_hpa`).
"""

import logging
import os
from pathlib import Path

import numpy as np

from ..atomic import read_json
from ..errors import DataError
from ..progress import progress as progress_bar
from ..workers import check_workers, process_pool
from .render import plate_params

__all__ = ["ensure_simulated", "plan_wells", "map_wells"]

log = logging.getLogger(__name__)


def ensure_simulated(path, config, code, simulate, *, workers=None, progress=True):
    """Run ``simulate(path, config, ...)`` unless ``path`` holds a dataset of the same config and ``code``.

    Shared by the yeast screen (:func:`ensure_dataset`) and the HPA-like screen
    (:func:`protrep.data.simulate_hpa.ensure_hpa_dataset`); ``config`` is a frozen dataclass with
    ``from_dict``, ``code`` the simulator's :func:`protrep.config.source_hash`.
    """
    path = Path(path)
    head = path / "dataset.json"
    if head.is_file():
        try:
            header = read_json(head, missing="no dataset.json")
            if header.get("code_version") == code and type(config).from_dict(header.get("config", {})) == config:
                return {**header, "reused": True}
        except (DataError, TypeError, ValueError):
            pass
        log.info("%s holds a dataset of another config or code version; simulating it again", path)
    simulate(path, config, workers=workers, overwrite=True, progress=progress)
    return {**read_json(head, missing="no dataset.json"), "reused": False}


def plan_wells(config, proteins):
    """One job per protein: ``(config, protein row, well index, plate params)``, wells in random order.

    The layout (a seeded permutation of the proteins over ``config.wells_per_plate`` wells
    per plate) and every plate's illumination come from ``config.seed`` alone.
    """
    order = np.random.default_rng([config.seed, 5]).permutation(len(proteins))  # well layout: random
    n_plates = -(-len(proteins) // config.wells_per_plate)
    plates = [plate_params(np.random.default_rng([config.seed, 3, k])) for k in range(n_plates)]
    return [(config, proteins.iloc[p].to_dict(), i, plates[i // config.wells_per_plate]) for i, p in enumerate(order)]


def map_wells(job, jobs, *, workers=None, chunksize=4, desc="simulating wells", progress=True):
    """``[job(j) for j in jobs]``, in worker processes (fork) when ``workers`` > 1, with a progress bar.

    The workers end when this process dies (:func:`protrep.workers.process_pool`).
    """
    workers = check_workers(workers) or os.cpu_count() or 1
    bar = progress_bar(total=len(jobs), desc=desc, unit="well", disable=not progress)
    results = []
    if workers == 1:
        for j in jobs:
            results.append(job(j))
            bar.update()
    else:
        with process_pool(workers) as pool:
            for r in pool.map(job, jobs, chunksize=chunksize):
                results.append(r)
                bar.update()
    bar.close()
    return results
