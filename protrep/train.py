"""One training loop for every model of :mod:`protrep.models`.

Read :func:`train` top to bottom: learning rate, forward/backward, clip, step, log; at the
end of each epoch evaluate, checkpoint and decide whether to stop. The loop runs the same
on a laptop CPU, one GPU (mixed precision, channels-last) or several processes launched by
``torchrun`` (DistributedDataParallel; gloo on CPU, NCCL on GPUs).

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
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from .atomic import atomic_file, read_json, write_json
from .config import from_dict, source_hash
from .background import mask_background, randomize_background
from .batches import CellTensors, augment, center_crop, step_generator
from .errors import DataError
from .models import REGISTRY, ModelConfig, build_model
from .progress import progress as progress_bar

__all__ = ["TrainConfig", "train", "load_run", "run_path", "code_version", "resolve_device", "dataset_fingerprint",
           "check_compatible", "total_training_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
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
    weight_decay, warmup_steps, min_lr_ratio, grad_clip : float, int, float, float
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
        Background randomisation (:func:`protrep.background.randomize_background`): the
        share of training crops whose background is masked, swapped in from another crop
        or replaced by cell-free noise, so that features cannot rely on the neighbouring
        cells (Gupta et al. 2025). 0 turns it off; it needs centre-cell masks. Autoencoders
        trained with it reconstruct the centre cell alone.
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

    def __post_init__(self):
        for name in ("epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        for name in ("batch_size", "eval_batch_size", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup_steps" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"lr must be a finite learning rate >= 0, got {self.lr!r}")
        if self.budget_tflop is not None and not (math.isfinite(self.budget_tflop) and self.budget_tflop > 0):
            raise ValueError(f"budget_tflop must be a positive number of TFLOP or None, got {self.budget_tflop!r}")
        if self.epochs is None and self.budget_tflop is None and self.max_steps is None:
            raise ValueError("epochs=None needs budget_tflop or max_steps: the run must end somewhere")
        if not 0.0 <= self.background <= 1.0:
            raise ValueError(f"background must be a share between 0 and 1, got {self.background!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return from_dict(cls, d)


def code_version():
    """Hash of the code a run depends on (models, training loop, batching): part of a run's identity."""
    import sys

    from . import background, batches, models

    return source_hash(models, batches, background, sys.modules[__name__])


def run_path(data_dir, model, profile="default"):
    """Where the book keeps a trained run: ``<data_dir>/runs/<model>`` (``<model>-<profile>`` off default)."""
    return Path(data_dir) / "runs" / (model if profile == "default" else f"{model}-{profile}")


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


# ----------------------------------------------------------------------------- helpers
def _lr_at(step, total, cfg):
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
def evaluate(model, data, *, batch_size=256, device=None, amp=True, channels_last=False):
    """Mean loss over ``data`` and, for classifiers, accuracy over labelled cells.

    Both on the centre crop of the training-crop size (one crop per cell, cheap enough for
    every epoch); the notebooks report test accuracy with the five-crop average. On
    multi-label data (batches with ``"multilabel"``) there is no argmax: ``val_accuracy``
    is the exact-match accuracy and ``val_macro_f1`` the macro F1 over the classes present,
    both at probability 0.5.
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
        if "mask" in batch:  # trained with background randomisation: the target is the centre cell alone
            batch["target"] = mask_background(batch["image"], batch.pop("mask"), batch.pop("level"))
            batch.pop("noise")
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
        from .metrics import exact_match_accuracy, macro_f1

        y, d = np.concatenate(truth), np.concatenate(decided)
        metrics.update(val_accuracy=exact_match_accuracy(y, d),
                       val_macro_f1=macro_f1(y, d, labels=np.flatnonzero(y.any(0))))
    return metrics


def _save(path, state):
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def _load_checkpoint(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise DataError(path, "no checkpoint here") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise DataError(path, f"corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


def _prepare_run_dir(out, run_info, *, resume, overwrite):
    out = Path(out)
    spec = out / "run.json"
    if spec.exists():
        old = read_json(spec, missing="no run.json")
        keys = ("model", "train", "data", "code", "init")
        same = {k: old.get(k) for k in keys} == {k: run_info[k] for k in keys}
        if not same and not overwrite:
            raise DataError(out, "already holds a different run (model, training, data or code differ); "
                            "choose another --out or pass --overwrite")
        if same and not resume and not overwrite and (out / "checkpoint.pt").exists():
            raise DataError(out, "already holds this run; pass --resume to continue it or --overwrite to restart")
        if overwrite and not same:
            for name in ("checkpoint.pt", "best.pt", "history.csv"):
                (out / name).unlink(missing_ok=True)
    write_json(spec, run_info)
    return out


def total_training_steps(cfg, model_config, steps_per_epoch):
    """Optimisation steps of a run: the least of ``epochs``, ``max_steps`` and ``budget_tflop``."""
    limits = [cfg.max_steps] if cfg.max_steps is not None else []
    if cfg.epochs is not None:
        limits.append(cfg.epochs * steps_per_epoch)
    if cfg.budget_tflop is not None:
        from .models import training_flops

        per_step = training_flops(model_config) * cfg.batch_size
        limits.append(max(1, round(cfg.budget_tflop * 1e12 / per_step)))
    return min(limits)


def _weights_path(run):
    """The weights a run hands on: ``best.pt``, else ``checkpoint.pt``."""
    run = Path(run)
    return run / "best.pt" if (run / "best.pt").exists() else run / "checkpoint.pt"


def _init_fingerprint(run):
    """Identity of the starting weights of a fine-tuning run (None from scratch)."""
    if run is None:
        return None
    import hashlib

    path = _weights_path(run)
    if not path.is_file():
        raise DataError(run, "init_from names no trained run (no best.pt or checkpoint.pt)")
    return {"run": str(run), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}


def _load_weights(model, path):
    try:
        model.load_state_dict(_load_checkpoint(path)["model"])
    except (KeyError, RuntimeError) as e:
        raise DataError(path, f"does not hold weights of this run's model ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- the loop
def train(model_config, train_config, dataset, out, *, resume=False, overwrite=False, progress=True,
          callback=None):
    """Train a model on the ``train`` cells of ``dataset``, validating on its ``val`` cells.

    Parameters
    ----------
    model_config : ModelConfig
    train_config : TrainConfig
    dataset : CellDataset
        With a ``split`` column (``train``/``val``); labels are used by classifiers only.
    out : str or Path
        Run directory.
    resume : bool
        Continue from ``out/checkpoint.pt``.
    overwrite : bool
        Start again in a directory that holds another run (a run of the same model,
        training and data is kept; with ``resume`` it continues or, if finished, returns).
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
    cfg = train_config
    rank, world = _distributed()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    classifier = model_config.name in ("deeploc", "seresnet")
    check_compatible(dataset, model_config, classes=dataset.classes if classifier else None)
    run_info = {"model": model_config.to_dict(), "train": cfg.to_dict(), "data": dataset_fingerprint(dataset),
                "code": code_version(), "init": _init_fingerprint(cfg.init_from), "classes": list(dataset.classes),
                "channels": list(dataset.channels)}
    out = Path(out)
    if rank == 0:
        _prepare_run_dir(out, run_info, resume=resume, overwrite=overwrite)
    if world > 1:
        dist.barrier()

    split = dataset.meta["split"].to_numpy()
    randomize = cfg.background > 0
    data_train = CellTensors.from_dataset(dataset, np.flatnonzero(split == "train"), device=device,
                                          background=randomize)
    data_val = CellTensors.from_dataset(dataset, np.flatnonzero(split == "val"), device=device, background=randomize)
    if len(data_train) == 0:
        raise DataError(dataset.source or "dataset", "has no cells with split == 'train'")
    if classifier and data_train.multilabel is None and not bool((data_train.labels >= 0).any()):
        raise DataError(dataset.source or "dataset", "has no localization labels in its training cells; "
                        f"{model_config.name} is trained on labelled cells")

    model = build_model(model_config, seed=cfg.seed)  # no global seeding
    if cfg.init_from is not None:
        _load_weights(model, _weights_path(cfg.init_from))
    model = model.to(device)
    channels_last = cfg.channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    steps_per_epoch = max(1, len(data_train) // cfg.batch_size)  # full batches only: stable batch norm
    total_steps = total_training_steps(cfg, model_config, steps_per_epoch)
    state = {"epoch": 0, "step": 0, "global_step": 0, "best_val": math.inf, "bad_epochs": 0,
             "history": [], "loss_sum": 0.0, "n_seen": 0}
    if resume and (out / "checkpoint.pt").exists():
        ckpt = _load_checkpoint(out / "checkpoint.pt")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        log.info("resuming %s at epoch %d, step %d", out, state["epoch"], state["step"])

    def checkpoint():
        if rank == 0:
            _save(out / "checkpoint.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "state": state, "run": run_info})
            pd.DataFrame(state["history"]).to_csv(out / "history.csv", index=False)

    done = state["global_step"] >= total_steps or state.get("stopped", False)
    bar = progress_bar(total=total_steps, initial=state["global_step"], desc=f"training {model_config.name}",
                       unit="step", disable=not progress or rank != 0)
    shard = slice(rank, None, world)  # each process takes every world-th cell of a batch
    t_epoch, n_epoch_images = time.perf_counter(), 0
    lr = _lr_at(state["global_step"], total_steps, cfg)
    net.train()
    try:
        while not done:
            epoch = state["epoch"]
            order = torch.randperm(len(data_train), generator=step_generator(cfg.seed, epoch, 0, stream=1)).numpy()
            for step in range(state["step"], steps_per_epoch):
                # learning rate
                lr = _lr_at(state["global_step"], total_steps, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                # forward / backward
                g = step_generator(cfg.seed, epoch, step)
                index = order[step * cfg.batch_size:(step + 1) * cfg.batch_size][shard]
                batch = data_train.batch(index, g)
                if randomize:
                    batch = randomize_background(batch, batch.pop("mask"), batch.pop("level"), batch.pop("noise"), g,
                                                 p=cfg.background)
                batch = augment(batch, g, crop=model.train_crop,
                                drop_channel=getattr(model, "train_channel_dropout", None))
                for key in ("image", "partner", "target"):
                    if key in batch:
                        batch[key] = batch[key].contiguous(memory_format=fmt)
                with _autocast(device, cfg.amp):
                    loss = net(batch)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # clip, step
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                # log
                value = float(loss.detach())
                state["loss_sum"] += value * len(index)
                state["n_seen"] += len(index)
                state["step"] = step + 1
                state["global_step"] += 1
                n_epoch_images += len(index) * world
                bar.update()
                if state["global_step"] % 10 == 0:
                    rate = n_epoch_images / max(time.perf_counter() - t_epoch, 1e-9)
                    bar.set_postfix(loss=f"{value:.4f}", img_s=f"{rate:.0f}", refresh=False)
                if callback is not None:
                    callback({"epoch": epoch, "step": step, "global_step": state["global_step"], "loss": value})
                if state["global_step"] >= total_steps:
                    break
            # evaluate, checkpoint, stop
            seconds = time.perf_counter() - t_epoch
            metrics = evaluate(net, data_val, batch_size=cfg.eval_batch_size, device=device, amp=cfg.amp,
                               channels_last=channels_last) if len(data_val) else {"val_loss": float("nan"),
                                                                                    "val_accuracy": float("nan")}
            train_loss = state["loss_sum"] / max(state["n_seen"], 1)
            if world > 1:
                t = torch.tensor([train_loss], device=device)
                dist.all_reduce(t)
                train_loss = float(t) / world
            row = {"epoch": epoch + 1, "global_step": state["global_step"], "train_loss": train_loss, **metrics,
                   "lr": lr, "images_per_s": n_epoch_images / max(seconds, 1e-9), "seconds": seconds}
            state["history"].append(row)
            improved = metrics["val_loss"] < state["best_val"]
            if improved:
                state["best_val"] = metrics["val_loss"]
                state["bad_epochs"] = 0
                if rank == 0:
                    _save(out / "best.pt", {"model": model.state_dict(), "run": run_info, "epoch": epoch + 1})
            else:
                state["bad_epochs"] += 1
            state.update(epoch=epoch + 1, step=0, loss_sum=0.0, n_seen=0)
            stop_early = cfg.patience and state["bad_epochs"] >= cfg.patience
            done = state["global_step"] >= total_steps or bool(stop_early)
            state["stopped"] = bool(stop_early)
            checkpoint()
            if rank == 0:
                log.info("epoch %d: train %.4f, val %.4f, acc %.3f, %.0f img/s", epoch + 1, train_loss,
                         metrics["val_loss"], metrics["val_accuracy"], row["images_per_s"])
            t_epoch, n_epoch_images = time.perf_counter(), 0
    except KeyboardInterrupt:
        checkpoint()  # the position within the epoch is in `state`: --resume continues from here
        log.warning("interrupted: checkpoint written to %s; continue with --resume", out / "checkpoint.pt")
        raise
    finally:
        bar.close()
    if world > 1:
        dist.barrier()
    return pd.DataFrame(state["history"])


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
    path = _weights_path(run) if which == "best" else run / "checkpoint.pt"
    model = build_model(ModelConfig.from_dict(info["model"]))
    _load_weights(model, path)
    return model.to(device).eval(), info
