"""One training loop for every model of :mod:`protrep.models`.

Read :func:`train` top to bottom: learning rate, forward/backward, clip, step, log; at the
end of each epoch evaluate, checkpoint and decide whether to stop. The loop runs the same
on a laptop CPU, one GPU (mixed precision, channels-last) or several processes launched by
``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on GPUs). A dataset held in
memory is stretched once and batched from one tensor; a sharded dataset on disk is read
batch by batch (:class:`~protrep.training.batches.StreamedCells`), optionally ahead by
DataLoader workers (``TrainConfig.workers``), each process reading only its share of a
batch; both train the same weights.

A run directory holds everything needed to rebuild the run::

    run.json         model config, train config, dataset fingerprint
    checkpoint.pt    latest state: model, optimizer, epoch, step, RNG-free position, history
    best.pt          model weights with the best validation loss
    history.csv      one row per epoch: losses, accuracy, learning rate, throughput

Exact resumption: every random choice of a step (batch order, partner cells,
augmentation) is drawn from a generator seeded by ``(seed, epoch, step)``, and checkpoints
store the position (epoch and step) and the running sums of the epoch, so a resumed run
computes the same numbers as an uninterrupted one (on CPU, where kernels are deterministic).
"""

import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ..atomic import read_json, write_json
from ..config import Config, check_choice, check_int, check_number, check_share, source_hash
from ..data.arrays import is_lazy
from ..data.dataset import protein_identity
from ..errors import DataError
from ..models import build_model, model_class
from ..progress import progress as progress_bar
from .batches import (
    CellTensors,
    StepBatches,
    StreamedCells,
    augment,
    center_crop,
    mask_to_level,
    randomize_background,
    step_generator,
)
from .runs import (
    EXTENDABLE,
    RUN_FILES,
    check_compatible,
    check_trainable,
    dataset_fingerprint,
    format_differences,
    init_fingerprint,
    load_checkpoint,
    load_weights,
    resolve_device,
    run_differences,
    save_checkpoint,
    weights_path,
)

__all__ = ["TrainConfig", "train", "validate", "total_training_steps", "training_code_version"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation settings; stored in ``run.json`` and in every checkpoint.

    Attributes
    ----------
    epochs : int or None
        Maximum number of passes over the training cells; None for no limit other than
        ``budget_tflop`` or ``max_steps`` (one of which is then required).
    batch_size : int
        Cells per optimisation step (over all processes together).
    lr : float
        Peak learning rate of AdamW; linear warm-up over ``warmup_steps`` (at most a tenth
        of the run, so a short run is not all warm-up), then cosine decay to
        ``lr * min_lr_ratio`` at the last step.
    weight_decay : float
        AdamW's decoupled weight decay.
    warmup_steps : int
        Steps of linear learning-rate warm-up (at most a tenth of the run).
    min_lr_ratio : float
        The learning rate at the last step, as a share of ``lr``.
    grad_clip : float
        Maximal gradient norm (0: no clipping).
    patience : int
        Stop after this many epochs without a lower validation loss (0: never stop early).
    seed : int
        Seed of initialisation, batch order, partner cells and augmentation.
    device : str
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    amp : bool
        Mixed precision (bfloat16 autocast) on CUDA; ignored on CPU.
    channels_last : bool
        Channels-last memory format (faster on GPUs and, measured here, 1.4-1.8x on CPU).
    eval_batch_size : int
    max_steps : int or None
        Stop after this many steps in total (for smoke tests and benchmarks).
    budget_tflop : float or None
        Training compute: stop after this many TFLOP (:func:`protrep.models.training_flops`
        per image, i.e. 3 x one forward pass, times the images seen); the learning-rate
        schedule spans the budget. The book gives every model it compares the same budget,
        which is the same on every machine (a time budget would not be).
    init_from : str or None
        A run directory whose best weights start this run (fine-tuning); None starts from
        the seeded initialisation. The weights' hash is part of the run's identity.
    background : float
        Background randomisation (:func:`protrep.training.batches.randomize_background`): the
        share of training crops whose background is masked, swapped in from another crop
        or replaced by cell-free noise, so that features cannot rely on the neighbouring
        cells (Gupta et al. 2025). 0 turns it off; it needs centre-cell masks. Autoencoders
        trained with it reconstruct the centre cell alone.
    background_mode : {"random", "mask"}
        ``"random"``: each randomised crop gets one of the three replacements at random;
        ``"mask"``: every randomised crop is masked to its background level, so with
        ``background=1`` the model sees the centre cell alone at training and validation
        time (masking at input: embed its test crops masked too,
        :func:`protrep.data.backgrounds.mask_background`).
    workers : int or None
        DataLoader worker processes that read and stretch the next batches while the
        model trains, for a dataset whose crops are read from disk (a sharded
        ``protrep-cells`` folder); 0 reads each batch when it is needed. None: 0 when
        training on the CPU, where workers only take cores from the model (DeepLoc at
        width 0.125 on 2 cores, streamed against in memory: 85% with 0 workers, 80% with
        1, 77% with 2), and otherwise one per core left to each process, at most 4; workers
        matter where a GPU computes and the cores are free. Results do not depend on
        it, nor is it part of a run's identity (a run may resume with another number).
        Unused for a dataset held in memory.
    """

    epochs: int | None = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 256
    max_steps: int | None = None
    budget_tflop: float | None = None
    init_from: str | None = None
    background: float = 0.0
    background_mode: str = "random"
    workers: int | None = None

    def __post_init__(self):
        check_int(self, "epochs", "max_steps", low=1, none=True)
        check_int(self, "workers", none=True)
        check_int(self, "batch_size", "eval_batch_size", low=1)
        check_int(self, "warmup_steps", "patience", "seed")
        check_number(self, "lr", "weight_decay", "grad_clip", low=0.0)
        check_share(self, "min_lr_ratio", "background")
        check_choice(self, "background_mode", ("random", "mask"))
        check_number(self, "budget_tflop", low=0.0, strict_low=True, none=True)
        if self.epochs is None and self.budget_tflop is None and self.max_steps is None:
            raise ValueError("epochs=None needs budget_tflop or max_steps: the run must end somewhere")
        if not isinstance(self.device, str) or not isinstance(self.amp, bool) or not isinstance(self.channels_last, bool):
            raise ValueError("device must be a string ('auto', 'cpu', 'cuda', ...); amp and channels_last booleans")


def training_code_version():
    """Hash of exactly the code a trained model depends on: part of a run's identity.

    The model package, the training loop, batching and augmentation
    (:mod:`protrep.training.batches`), and the data functions they call on every crop (the
    percentile stretch and the background statistics). Evaluation, inference, plotting and
    the run bookkeeping of :mod:`protrep.training.runs` are not part of it: editing them
    retrains nothing.
    """
    from .. import models
    from ..data import backgrounds, normalize
    from . import batches

    return source_hash(models, sys.modules[__name__], batches, normalize, backgrounds)


# ----------------------------------------------------------------------------- helpers
def _lr_at(step, total, cfg, extensions=()):
    """Learning rate of ``step`` in a run of ``total`` steps (see :class:`TrainConfig`).

    A run extended on resume (``extensions`` of its ``run.json``, see :func:`train`) follows
    from each extension's first step the schedule of a run of the new total: warm-up and
    cosine decay re-stretched over the longer run; before that step, the schedule it had.
    """
    for extension in reversed(extensions):
        if step >= extension["step"]:
            break
        total = extension["total_steps"][0]
    warmup = min(cfg.warmup_steps, total // 10)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _distributed():
    """(rank, world size), initialising the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _autocast(device, amp):
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def validate(model, data, *, batch_size=256, device=None, amp=True, channels_last=False, mask_input=False):
    """Mean loss over ``data`` and, for classifiers, accuracy over labelled cells.

    Both on the centre crop of the training-crop size (one crop per cell, cheap enough for
    every epoch); the notebooks report test accuracy with the five-crop average. On
    multi-label data (batches with ``"multilabel"``) there is no argmax: ``val_accuracy``
    is the exact-match accuracy and ``val_macro_f1`` the macro F1 over the classes present,
    both at probability 0.5. ``data`` is a :class:`CellTensors` or, for a dataset on disk,
    a :class:`StreamedCells`, whose batches are read one at a time and moved to ``device``.
    """
    module = getattr(model, "module", model)
    was_training = module.training
    module.eval()
    g = step_generator(0, 0, 0, stream=2)  # fixed partners: the same validation batches every epoch
    loss_sum, n, correct, n_lab = 0.0, 0, 0, 0
    truth, decided = [], []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(data), batch_size):
        batch = data.batch(np.arange(start, min(start + batch_size, len(data))), g)
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        if "mask" in batch:  # trained with background randomisation: the target is the centre cell alone
            batch["target"] = mask_to_level(batch["image"], batch.pop("mask"), batch.pop("level"))
            batch.pop("noise")
            if mask_input:  # a model trained on masked crops is validated on masked crops
                batch["image"] = batch["target"]
        batch = {k: (center_crop(v, module.train_crop).contiguous(memory_format=fmt)
                     if k in ("image", "partner", "target") else v) for k, v in batch.items()}
        with _autocast(device or batch["image"].device, amp):
            out = module(batch)
        if "multilabel" in batch:  # multi-label: decisions at probability 0.5, no argmax
            decided.append((out["logits"] > 0).cpu().numpy())
            truth.append(batch["multilabel"].cpu().numpy() > 0.5)
        elif "logits" in out:
            lab = batch["label"] >= 0
            correct += int((out["logits"].argmax(1)[lab] == batch["label"][lab]).sum())
            n_lab += int(lab.sum())
        loss_sum += float(out["loss"]) * len(batch["label"])
        n += len(batch["label"])
    module.train(was_training)
    metrics = {"val_loss": loss_sum / max(n, 1), "val_accuracy": correct / n_lab if n_lab else float("nan")}
    if truth:  # accuracy is then the exact-match (subset) accuracy, as scikit-learn's for multi-label input
        from sklearn.metrics import accuracy_score, f1_score

        y, d = np.concatenate(truth), np.concatenate(decided)
        present = np.flatnonzero(y.any(0))
        metrics.update(val_accuracy=float(accuracy_score(y, d)),
                       val_macro_f1=float(f1_score(y, d, average="macro", labels=present, zero_division=0))
                       if len(present) else float("nan"))
    return metrics


def _prepare_run_dir(out, info, *, resume, overwrite, model_config, steps_per_epoch):
    """Check ``out`` against the run ``info``, write its ``run.json`` and return what was written.

    A ``run.json`` without any checkpoint or history (a run that failed or was killed before
    its first checkpoint) is replaced. A resumed run whose training config differs only in
    its length (:data:`~protrep.training.runs.EXTENDABLE`) is extended (:func:`_extension`).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: is a file, not a run directory; choose another --out")
    spec, started = out / "run.json", any((out / name).exists() for name in RUN_FILES)
    if not spec.is_file() and started:
        raise DataError(out, f"holds {', '.join(n for n in RUN_FILES if (out / n).exists())} but no run.json: not a "
                        "run protrep can continue or replace; choose another --out or remove them")
    old = read_json(spec, missing="no run.json") if spec.is_file() and started else None
    diffs = run_differences(old, info) if old is not None else []
    lengths = bool(diffs) and {d[0] for d in diffs} <= {f"train.{k}" for k in EXTENDABLE}
    if old is None:
        pass  # a new run, or a run.json that no checkpoint followed
    elif not diffs:
        if not resume and not overwrite:
            raise DataError(out, "already holds this run; pass --resume to continue it or --overwrite to restart")
        if resume and old.get("extensions"):
            info = {**info, "extensions": old["extensions"]}
    elif resume and not overwrite and lengths:
        info = {**info, "extensions": [*old.get("extensions", []),
                                       _extension(out, old, info, diffs, model_config, steps_per_epoch)]}
    elif not overwrite:
        raise DataError(out, f"already holds a different run ({', '.join(d[0] for d in diffs)} differ: "
                        f"{format_differences(diffs)}); choose another --out or pass --overwrite"
                        + ("; --resume extends a run only in " + ", ".join(EXTENDABLE) if resume else
                           "; or pass --resume to extend it" if lengths else ""))
    else:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    write_json(spec, info)
    return info


def _extension(out, old, info, diffs, model_config, steps_per_epoch):
    """The record of a run extended on resume: its step, what changed and the schedule's totals.

    Raises :class:`DataError` when the new limits do not lengthen the run.
    """
    before = total_training_steps(TrainConfig.from_dict(old["train"]), model_config, steps_per_epoch)
    cfg = TrainConfig.from_dict(info["train"])
    after = total_training_steps(cfg, model_config, steps_per_epoch)
    if after <= before:
        raise DataError(out, f"resuming with {format_differences(diffs)} does not lengthen the run: it has "
                        f"{before} steps and would have {after} (the least of epochs, max_steps and budget_tflop); "
                        "a run can only be extended: raise the limit that ends it, or train into another --out")
    step = int(load_checkpoint(out / "checkpoint.pt")["state"]["global_step"])
    record = {"step": step, "changed": {d[0].split(".", 1)[1]: [d[1], d[2]] for d in diffs},
              "total_steps": [before, after]}
    earlier = old.get("extensions", [])
    record["lr"] = [_lr_at(step, before, cfg, earlier), _lr_at(step, after, cfg, [*earlier, record])]
    log.info("extending %s from step %d: %d -> %d steps; learning rate at that step %.3g -> %.3g (cosine "
             "re-stretched over the new total)", out, step, before, after, *record["lr"])
    return record


def total_training_steps(cfg, model_config, steps_per_epoch):
    """Optimisation steps of a run: the least of ``epochs``, ``max_steps`` and ``budget_tflop``."""
    limits = [cfg.max_steps] if cfg.max_steps is not None else []
    if cfg.epochs is not None:
        limits.append(cfg.epochs * steps_per_epoch)
    if cfg.budget_tflop is not None:
        from ..models import training_flops

        per_step = training_flops(model_config) * cfg.batch_size
        limits.append(max(1, round(cfg.budget_tflop * 1e12 / per_step)))
    return min(limits)


# ----------------------------------------------------------------------------- the loop
@dataclass
class _Run:
    """Everything one training run holds while it trains (built by :func:`_setup`)."""

    cfg: TrainConfig
    out: Path
    info: dict
    rank: int
    world: int
    device: torch.device
    data_train: CellTensors | StreamedCells
    data_val: CellTensors | StreamedCells
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    total_steps: int
    state: dict

    def checkpoint(self):
        """``checkpoint.pt`` (model, optimizer, position) and ``history.csv``, on process 0."""
        if self.rank == 0:
            save_checkpoint(self.out / "checkpoint.pt", {"model": self.model.state_dict(),
                                                         "optimizer": self.optimizer.state_dict(),
                                                         "state": self.state, "run": self.info})
            pd.DataFrame(self.state["history"]).to_csv(self.out / "history.csv", index=False)


def _task(model_config, dataset):
    """The dataset as the model learns it (PIFiA: protein identity) and whether it is a classifier, checked.

    Every check on the data a run needs is made here, before the run directory is touched.
    """
    check_trainable(dataset)
    where = dataset.source or "dataset"
    classifier = model_class(model_config.name).is_classifier
    if model_class(model_config.name).target == "protein":  # PIFiA: the training proteins are the classes
        dataset = protein_identity(dataset)
        if model_config.n_classes != len(dataset.classes):
            raise DataError(where, f"has {len(dataset.classes)} training proteins, the classes of "
                            f"{model_config.name}, but its n_classes is {model_config.n_classes}: set "
                            f"n_classes={len(dataset.classes)}")
        classifier = True
    check_compatible(dataset, model_config, classes=dataset.classes if classifier else None)
    if classifier and not dataset.info.get("multilabel"):
        train_cells = (dataset.meta["split"] == "train").to_numpy()
        labels = dataset.meta["label"].to_numpy()[train_cells] if "label" in dataset.meta else np.zeros(0, int)
        present = np.unique(labels[labels >= 0])
        if len(present) == 0:
            raise DataError(where, "has no localization labels in its training cells; "
                            f"{model_config.name} is trained on labelled cells")
        if len(present) < 2:
            shown = dataset.classes[present[0]] if present[0] < len(dataset.classes) else int(present[0])
            raise DataError(where, f"its {len(labels[labels >= 0])} labelled training cells all show one class "
                            f"({shown}): a classifier learns nothing from one class; train on cells of at least two "
                            "classes, or train a model that needs no labels (ae, pci)")
    return dataset, classifier


def _data(model_config, cfg, dataset, device):
    """The training and validation cells: in memory, or read batch by batch for crops on disk."""
    split = dataset.meta["split"].to_numpy()
    if is_lazy(dataset.images):  # crops on disk: read batch by batch, never all at once
        partners = model_class(model_config.name).uses_partner
        return tuple(StreamedCells.from_dataset(dataset, np.flatnonzero(split == s), read_partners=partners,
                                                background=cfg.background > 0) for s in ("train", "val"))
    return tuple(CellTensors.from_dataset(dataset, np.flatnonzero(split == s), device=device,
                                          background=cfg.background > 0) for s in ("train", "val"))


def _setup(model_config, cfg, dataset, out, *, resume, overwrite):
    """Devices, run directory, data, model, optimizer and the position to start from."""
    rank, world = _distributed()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    dataset, classifier = _task(model_config, dataset)
    n_train = int((dataset.meta["split"] == "train").sum())
    steps_per_epoch = max(1, n_train // cfg.batch_size)  # full batches only: stable batch norm
    info = {"model": model_config.to_dict(), "train": cfg.to_dict(), "data": dataset_fingerprint(dataset),
            "code": training_code_version(), "init": init_fingerprint(cfg.init_from), "classes": list(dataset.classes),
            "channels": list(dataset.channels), "n_train_cells": n_train}
    out = Path(out)
    if rank == 0:
        info = _prepare_run_dir(out, info, resume=resume, overwrite=overwrite, model_config=model_config,
                                steps_per_epoch=steps_per_epoch)
    if world > 1:
        dist.barrier()
        info = {**info, "extensions": read_json(out / "run.json", missing="no run.json").get("extensions", [])}
    data_train, data_val = _data(model_config, cfg, dataset, device)
    model = build_model(model_config, seed=cfg.seed)  # no global seeding
    if cfg.init_from is not None:
        load_weights(model, weights_path(cfg.init_from))
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    state = {"epoch": 0, "step": 0, "global_step": 0, "best_val": math.inf, "bad_epochs": 0,
             "history": [], "loss_sum": 0.0, "n_seen": 0}
    if resume and (out / "checkpoint.pt").exists():
        ckpt = load_checkpoint(out / "checkpoint.pt")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        if info.get("extensions") and info["extensions"][-1]["step"] == state["global_step"]:
            state.update(stopped=False, bad_epochs=0)  # extended: early stopping counts again from here
        log.info("resuming %s at epoch %d, step %d", out, state["epoch"], state["step"])
    return _Run(cfg, out, info, rank, world, device, data_train, data_val, model, net, optimizer, steps_per_epoch,
                total_training_steps(cfg, model_config, steps_per_epoch), state)


_MODES = {"random": (0, 1, 2), "mask": (0,)}  # randomize_background's modes: masked, swapped, cell-free


def _steps_left(epoch, step, global_step, steps_per_epoch, total_steps):
    """``(epoch, step)`` of every step from the given position to the end of the run, in order."""
    for _ in range(global_step, total_steps):
        if step >= steps_per_epoch:
            epoch, step = epoch + 1, 0
        yield epoch, step
        step += 1


def _batches(run):
    """The cells of every step left to train, in order: ``((epoch, step), cells, generator state)``.

    Items of :class:`StepBatches`, built when needed or, for cells streamed from disk, read
    ahead by ``cfg.workers`` DataLoader worker processes (which end with the iteration, and
    when the training process dies). Closing the generator stops the workers.
    """
    cfg, state = run.cfg, run.state
    steps = StepBatches(run.data_train, seed=cfg.seed, batch_size=cfg.batch_size, rank=run.rank, world=run.world)
    keys = _steps_left(state["epoch"], state["step"], state["global_step"], run.steps_per_epoch, run.total_steps)
    workers = cfg.workers
    if workers is None:  # none on the CPU, where the model uses every core
        workers = 0 if run.device.type == "cpu" else min(4, max(1, (os.cpu_count() or 1) // run.world - 1))
    if workers == 0 or not isinstance(run.data_train, StreamedCells):
        yield from (steps[key] for key in keys)
    else:
        yield from torch.utils.data.DataLoader(steps, batch_size=None, sampler=keys, num_workers=workers,
                                               pin_memory=run.device.type == "cuda")


def _batch(run, built, epoch, step):
    """The batch of ``step`` from its cells (see :class:`StepBatches`): background randomisation, augmentation."""
    cfg = run.cfg
    at, cells, state = built
    if tuple(at) != (epoch, step):
        raise RuntimeError(f"the batch of epoch {at[0]}, step {at[1]} came for epoch {epoch}, step {step}")
    g = torch.Generator()
    g.set_state(state)  # the step's generator, where the partner draws left it
    batch = {k: v.to(run.device, non_blocking=True) for k, v in cells.items()}
    if cfg.background > 0:
        batch = randomize_background(batch, batch.pop("mask"), batch.pop("level"), batch.pop("noise"), g,
                                     p=cfg.background, modes=_MODES[cfg.background_mode])
    batch = augment(batch, g, crop=run.model.train_crop, drop_channel=getattr(run.model, "train_channel_dropout", None))
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return {k: v.contiguous(memory_format=fmt) if k in ("image", "partner", "target") else v for k, v in batch.items()}


def _end_epoch(run, epoch, lr, seconds, n_images):
    """Evaluate, record the epoch, keep the best weights, checkpoint; return whether to stop."""
    cfg, state = run.cfg, run.state
    metrics = validate(run.net, run.data_val, batch_size=cfg.eval_batch_size, device=run.device, amp=cfg.amp,
                       mask_input=cfg.background_mode == "mask" and cfg.background == 1.0,
                       channels_last=cfg.channels_last) if len(run.data_val) else {"val_loss": float("nan"),
                                                                                   "val_accuracy": float("nan")}
    train_loss = state["loss_sum"] / max(state["n_seen"], 1)
    if run.world > 1:
        t = torch.tensor([train_loss], device=run.device)
        dist.all_reduce(t)
        train_loss = float(t) / run.world
    row = {"epoch": epoch + 1, "global_step": state["global_step"], "train_loss": train_loss, **metrics,
           "lr": lr, "images_per_s": n_images / max(seconds, 1e-9), "seconds": seconds}
    state["history"].append(row)
    if metrics["val_loss"] < state["best_val"]:
        state["best_val"] = metrics["val_loss"]
        state["bad_epochs"] = 0
        if run.rank == 0:
            save_checkpoint(run.out / "best.pt", {"model": run.model.state_dict(), "run": run.info, "epoch": epoch + 1})
    else:
        state["bad_epochs"] += 1
    state.update(epoch=epoch + 1, step=0, loss_sum=0.0, n_seen=0)
    stop_early = bool(cfg.patience and state["bad_epochs"] >= cfg.patience)
    state["stopped"] = stop_early
    run.checkpoint()
    if run.rank == 0:
        log.info("epoch %d: train %.4f, val %.4f, acc %.3f, %.0f img/s", epoch + 1, train_loss,
                 metrics["val_loss"], metrics["val_accuracy"], row["images_per_s"])
    return state["global_step"] >= run.total_steps or stop_early


def train(model_config, train_config, dataset, out, *, resume=False, overwrite=False, progress=True,
          callback=None):
    """Train a model on the ``train`` cells of ``dataset``, validating on its ``val`` cells.

    Parameters
    ----------
    model_config : ModelConfig
    train_config : TrainConfig
    dataset : CellDataset
        With a ``split`` column (``train``/``val``); labels are used by classifiers only.
        Held in memory, or on disk (a sharded dataset, whose lazy ``images`` are then
        read batch by batch: memory does not grow with the number of cells).
    out : str or Path
        Run directory.
    resume : bool
        Continue from ``out/checkpoint.pt``. A run whose training config differs only in
        its length (``epochs``, ``max_steps``, ``budget_tflop``) and is longer is
        *extended* from its last checkpoint, finished or not (without ``overwrite``; any
        other difference is refused, listed). ``run.json`` then records under
        ``extensions`` the step it began, the settings changed (old and new), the total
        steps before and after, and the learning rate at that step under the old and the
        new schedule. From that step on, the learning rate is the one a run of the new
        total has at the same step: the cosine decay re-stretched over the longer run (a
        finished run, whose rate had decayed to ``lr * min_lr_ratio``, restarts higher).
        Its steps before it followed the shorter schedule, so an extended run is not the
        run one would get by training the longer schedule from the start. Early stopping
        (``patience``) counts again from the extension.
    overwrite : bool
        Start again in a directory that holds another run (a run of the same model,
        training and data is kept; with ``resume`` it continues or, if finished, returns).
        A ``run.json`` left without any checkpoint (a run that failed or was killed
        before its first) is replaced without it; files of a run without ``run.json``
        are never replaced.
    progress : bool
        Show a progress bar (process 0 only).
    callback : callable, optional
        ``callback(state)`` after every step (``state`` has ``epoch``, ``step``,
        ``global_step``, ``loss``); used by tests to interrupt a run.

    Returns
    -------
    DataFrame
        The per-epoch history (also in ``out/history.csv``).
    """
    run = _setup(model_config, train_config, dataset, out, resume=resume, overwrite=overwrite)
    cfg, state, model, optimizer = train_config, run.state, run.model, run.optimizer
    done = state["global_step"] >= run.total_steps or state.get("stopped", False)
    bar = progress_bar(total=run.total_steps, initial=state["global_step"], desc=f"training {model_config.name}",
                       unit="step", disable=not progress or run.rank != 0)
    t_epoch, n_epoch_images = time.perf_counter(), 0
    # the rate of the last step taken: what the epoch records when a run resumes right at its end
    extensions = run.info.get("extensions", [])
    lr = _lr_at(max(state["global_step"] - 1, 0), run.total_steps, cfg, extensions)
    run.net.train()
    batches = _batches(run)  # the cells of each step to come, read ahead by DataLoader workers when streaming
    try:
        while not done:
            epoch = state["epoch"]
            for step in range(state["step"], run.steps_per_epoch):
                # learning rate
                lr = _lr_at(state["global_step"], run.total_steps, cfg, extensions)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # forward / backward
                batch = _batch(run, next(batches), epoch, step)
                with _autocast(run.device, cfg.amp):
                    loss = run.net(batch)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # clip, step
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                # log
                value, n = float(loss.detach()), len(batch["index"])
                state["loss_sum"] += value * n
                state["n_seen"] += n
                state["step"], state["global_step"] = step + 1, state["global_step"] + 1
                n_epoch_images += n * run.world
                bar.update()
                if state["global_step"] % 10 == 0:
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False,
                                    img_s=f"{n_epoch_images / max(time.perf_counter() - t_epoch, 1e-9):.0f}")
                if callback is not None:
                    callback({"epoch": epoch, "step": step, "global_step": state["global_step"], "loss": value})
                if state["global_step"] >= run.total_steps:
                    break
            # evaluate, checkpoint, stop
            done = _end_epoch(run, epoch, lr, time.perf_counter() - t_epoch, n_epoch_images)
            t_epoch, n_epoch_images = time.perf_counter(), 0
    except KeyboardInterrupt:
        run.checkpoint()  # the position within the epoch is in `state`: --resume continues from here
        log.warning("interrupted: checkpoint written to %s; continue with --resume", run.out / "checkpoint.pt")
        raise
    finally:
        batches.close()  # stops the workers
        bar.close()
    if run.world > 1:
        dist.barrier()
    return pd.DataFrame(state["history"])


