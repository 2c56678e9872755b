"""protrep: protein representations from single-cell microscopy.

The package follows the flow of the book, one subpackage a step, each importing only from
the steps before it:

==================  ========================================================================
``protrep.data``    simulated and real screens, the dataset format, readers, standards
``protrep.models``  the registered models (DeepLoc, Paired Cell Inpainting, autoencoder,
                    SE-ResNet) and their config
``protrep.training``  batches, augmentation, the one training loop, trained runs
``protrep.inference``  embeddings and predictions of trained models
``protrep.evaluation``  localization metrics, functional retrieval (pairwise AP, per-protein mAP,
                    paired intervals over seeds), CellProfiler features, background
                    confounding (imports without torch)
==================  ========================================================================

``protrep.profiles`` gives every chapter's settings by profile name; ``protrep.timing``
the book's time budget; ``protrep.plotting`` the figures; ``protrep.protein_map`` the
interactive map of protein embeddings (bokeh); ``protrep.cli`` the ``protrep`` command. The
names below are the entry points a notebook needs, imported on first use (so ``import
protrep`` stays cheap and loads no torch).
"""

import importlib

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "open_dataset": "protrep.data.readers",
    "load_dataset": "protrep.data.dataset",
    "CellDataset": "protrep.data.dataset",
    "SimConfig": "protrep.data.simulate",
    "ensure_dataset": "protrep.data.simulate",
    "simulate_dataset": "protrep.data.simulate",
    "load_standards": "protrep.data.standards",
    "ModelConfig": "protrep.models",
    "build_model": "protrep.models",
    "TrainConfig": "protrep.training.loop",
    "train": "protrep.training.loop",
    "load_run": "protrep.training.runs",
    "embed_cells": "protrep.inference.embed",
    "predict_cells": "protrep.inference.embed",
    "evaluate": "protrep.evaluation.retrieval",
    "compare_seeds": "protrep.evaluation.paired",
    "mean_average_precision": "protrep.evaluation.mean_ap",
    "cellprofiler_tables": "protrep.evaluation.cellprofiler",
    "run_background": "protrep.evaluation.confounding",
    "book_profile": "protrep.profiles",
}

__all__ = [
    "CellDataset",
    "ModelConfig",
    "SimConfig",
    "TrainConfig",
    "book_profile",
    "cellprofiler_tables",
    "compare_seeds",
    "build_model",
    "embed_cells",
    "ensure_dataset",
    "evaluate",
    "load_dataset",
    "load_run",
    "load_standards",
    "mean_average_precision",
    "open_dataset",
    "predict_cells",
    "run_background",
    "simulate_dataset",
    "train",
]
assert set(__all__) == set(_ENTRY_POINTS)


def __getattr__(name):
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'protrep' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
