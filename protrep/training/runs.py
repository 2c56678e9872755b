"""Trained runs: where they live, what identifies them, and loading them back.

A run directory holds everything needed to rebuild the run (see :mod:`protrep.training.loop`).
Its identity (``run.json``) is the model and training configs, the dataset's fingerprint,
:func:`protrep.training.loop.training_code_version` (the code the weights depend on) and the starting weights of a
fine-tuning run; the loop reuses a finished run only when all of them match.
"""

import hashlib
from pathlib import Path

import pandas as pd
import torch

from ..atomic import atomic_file, read_json
from ..errors import DataError
from ..models import REGISTRY, ModelConfig, build_model

__all__ = ["run_path", "run_budget", "resolve_device", "dataset_fingerprint", "check_compatible", "check_trainable",
           "load_run", "weights_path", "init_fingerprint", "load_weights", "save_checkpoint", "load_checkpoint",
           "run_identity", "run_differences", "format_differences", "RUN_FILES", "EXTENDABLE"]

#: The files training writes into a run directory besides ``run.json``.
RUN_FILES = ("checkpoint.pt", "best.pt", "history.csv")
#: The training settings a resumed run may change: its length (the run is then extended).
EXTENDABLE = ("epochs", "max_steps", "budget_tflop")


def run_path(data_dir, model, profile="default", seed=0):
    """Where the book keeps a trained run: ``<data_dir>/runs/<model>`` (``<model>-<profile>`` off default),
    with ``-s<seed>`` appended for every training seed but 0."""
    name = model if profile == "default" else f"{model}-{profile}"
    return Path(data_dir) / "runs" / (name if seed == 0 else f"{name}-s{seed}")


def run_budget(run):
    """What a finished run cost, from its ``history.csv`` and ``run.json``.

    Returns
    -------
    dict
        ``epochs`` (passes over the training cells, fractional), ``images_seen``,
        ``steps``, ``budget_tflop``, ``seconds`` (training wall time on this machine),
        ``val_loss`` (at the end), ``best_val_loss`` and ``val_loss_change`` (last epoch's
        relative change: near 0 when the validation loss has levelled off).
    """
    run = Path(run)
    try:
        history = pd.read_csv(run / "history.csv")
    except (OSError, pd.errors.ParserError) as e:
        raise DataError(run / "history.csv", f"cannot read the run's history ({e}); train the run first") from None
    info = read_json(run / "run.json", missing="no run.json; train the run first")
    batch = int(info["train"]["batch_size"])
    n_train = int(info.get("n_train_cells") or 0)
    steps = int(history["global_step"].iloc[-1])
    val = history["val_loss"].to_numpy(dtype=float)
    return {"epochs": steps * batch / n_train if n_train else float("nan"), "images_seen": steps * batch,
            "steps": steps, "budget_tflop": float(info["train"].get("budget_tflop") or float("nan")),
            "seconds": float(history["seconds"].sum()), "val_loss": float(val[-1]), "best_val_loss": float(val.min()),
            "val_loss_change": float((val[-1] - val[-2]) / abs(val[-2])) if len(val) > 1 else float("nan")}


def resolve_device(device="auto"):
    """``"auto"`` -> CUDA if available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def dataset_fingerprint(ds):
    """What a model depends on in a dataset: channels, image size, classes (and where it came from)."""
    return {"source": ds.source, "format": ds.format, "channels": list(ds.channels),
            "image_size": list(ds.images.shape[-2:]), "classes": list(ds.classes), "n_cells": int(len(ds)),
            "code_version": ds.info.get("code_version")}


def check_compatible(ds, model_config, classes=None):
    """Raise :class:`DataError` if ``ds`` cannot be fed to a model of ``model_config``."""
    where = ds.source or "dataset"
    if ds.images.shape[1] != model_config.in_channels:
        raise DataError(where, f"has {ds.images.shape[1]} channels {list(ds.channels)}, the model takes "
                        f"{model_config.in_channels} (gfp, rfp)")
    orders = getattr(REGISTRY.get(model_config.name), "channel_orders", (("gfp", "rfp"),))
    if not any(tuple(ds.channels[:len(order)]) == tuple(order) for order in orders):
        raise DataError(where, f"channels are {list(ds.channels)}; the models take (gfp, rfp): protein first, "
                        "cytosolic marker second" + "".join(f"; {model_config.name} also takes ({', '.join(o)})"
                                                            for o in orders if tuple(o) != ("gfp", "rfp")))
    if tuple(ds.images.shape[-2:]) != (model_config.image_size,) * 2:
        raise DataError(where, f"images are {tuple(ds.images.shape[-2:])} px, the model takes "
                        f"{model_config.image_size} x {model_config.image_size} crops")
    if classes is not None and ds.classes and tuple(ds.classes) != tuple(classes):
        raise DataError(where, f"classes {list(ds.classes)} differ from the model's {list(classes)}")


def check_trainable(ds):
    """Raise :class:`DataError` if ``ds`` has no ``split`` column or no cell with split ``train``."""
    where = ds.source or "dataset"
    if "split" not in ds.meta.columns:
        raise DataError(where, "has no 'split' column: training needs its cells marked train, val (and test); write "
                        f"a copy with a split by protein with `protrep convert {where} --out <folder>` (--split "
                        "0.7,0.15,0.15 by default)")
    if not (ds.meta["split"] == "train").any():
        raise DataError(where, f"has no cells with split == 'train' (splits: {sorted(map(str, ds.meta['split'].unique()))[:5]})")


def run_identity(info):
    """What makes two runs the same run: model, training, data, code, initial weights (not ``workers``)."""
    out = {k: info.get(k) for k in ("model", "train", "data", "code", "init")}
    out["train"] = {k: v for k, v in (out["train"] or {}).items() if k != "workers"}
    return out


def run_differences(old, new):
    """``[(field, old value, new value), ...]`` where the identities of two runs' ``run.json`` differ.

    Fields of the model, training and data parts are named ``model.width``, ``train.epochs``,
    ``data.n_cells``, ...; ``code`` and ``init`` as they are.
    """
    a, b = run_identity(old), run_identity(new)
    diffs = []
    for part in a:
        if isinstance(a[part], dict) and isinstance(b[part], dict) and part != "init":
            diffs += [(f"{part}.{k}", a[part].get(k), b[part].get(k)) for k in sorted(set(a[part]) | set(b[part]))
                      if a[part].get(k) != b[part].get(k)]
        elif a[part] != b[part]:
            diffs.append((part, a[part], b[part]))
    return diffs


def format_differences(diffs, limit=5):
    """``"train.epochs 2 -> 4; code 1a2b -> 3c4d"``: :func:`run_differences` in words."""
    def short(value):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    shown = "; ".join(f"{name} {short(a)} -> {short(b)}" for name, a, b in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def save_checkpoint(path, state):
    """Write a checkpoint atomically (a killed run leaves the previous one)."""
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path):
    """Read a checkpoint on the CPU; a missing or damaged file raises :class:`DataError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise DataError(path, "no checkpoint here") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise DataError(path, f"corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


def weights_path(run):
    """The weights a run hands on: ``best.pt``, else ``checkpoint.pt``."""
    run = Path(run)
    return run / "best.pt" if (run / "best.pt").exists() else run / "checkpoint.pt"


def init_fingerprint(run):
    """Identity of the starting weights of a fine-tuning run (None from scratch)."""
    if run is None:
        return None
    path = weights_path(run)
    if not path.is_file():
        raise DataError(run, "init_from names no trained run (no best.pt or checkpoint.pt)")
    return {"run": str(run), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def load_weights(model, path):
    """Load a checkpoint's weights into ``model``; weights of another model raise :class:`DataError`."""
    try:
        model.load_state_dict(load_checkpoint(path)["model"])
    except (KeyError, RuntimeError) as e:
        raise DataError(path, f"does not hold weights of this run's model ({type(e).__name__}: {e})") from None


def load_run(run, *, which="best", device="cpu"):
    """Load a trained model from its run directory.

    Parameters
    ----------
    run : str or Path
    which : {"best", "last"}
        ``best.pt`` (lowest validation loss; falls back to the last checkpoint) or
        ``checkpoint.pt``.

    Returns
    -------
    model : nn.Module (eval mode)
    info : dict
        The run's ``run.json``.
    """
    run = Path(run)
    info = read_json(run / "run.json", missing="not a training run (no run.json); train one with `protrep train`")
    path = weights_path(run) if which == "best" else run / "checkpoint.pt"
    model = build_model(ModelConfig.from_dict(info["model"]))
    load_weights(model, path)
    return model.to(device).eval(), info
