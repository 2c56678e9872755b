"""Where a training step's time goes, for every model: compute against everything else.

Runs the training loop's own pieces (``CellTensors.batch``, ``augment``, the memory-format
copy, forward, backward, gradient clipping, the AdamW step) on synthetic crops held in
memory as the loop holds them, and prints steps/s and images/s with the share of each
piece. Whatever is not forward or backward is overhead the loop should not have.

    benchmarks/slow_machine.sh .venv/bin/python benchmarks/bench_steps.py [--models deeploc,pci,ae]
        [--width 0.25] [--batch-size 64] [--steps 30]
"""

import argparse
import time

import numpy as np
import torch

from protrep.models import REGISTRY, ModelConfig, build_model
from protrep.timing import matmul_gflops
from protrep.training.batches import CellTensors, augment, step_generator

PIECES = ["batch", "augment", "format", "forward", "backward", "clip", "step"]


def profile_steps(name, *, width, batch_size, steps, warmup=3, n_cells=4000):
    """Seconds spent in each piece over ``steps`` training steps of model ``name`` (after ``warmup``)."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((n_cells, 2, 64, 64), dtype=np.float32))
    data = CellTensors(images, torch.from_numpy(rng.integers(0, 15, n_cells)), np.repeat(np.arange(n_cells // 40), 40))
    model = build_model(ModelConfig(name=name, width=width), seed=0).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seconds = dict.fromkeys(PIECES, 0.0)
    for s in range(warmup + steps):
        marks = [time.perf_counter()]
        g = step_generator(0, 0, s)
        batch = data.batch(rng.choice(n_cells, batch_size, replace=False), g)
        marks.append(time.perf_counter())
        batch = augment(batch, g, crop=model.train_crop)
        marks.append(time.perf_counter())
        for key in ("image", "partner"):
            batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        marks.append(time.perf_counter())
        loss = model(batch)["loss"]
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if s >= warmup:
            for piece, a, b in zip(PIECES, marks, marks[1:]):
                seconds[piece] += b - a
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="deeploc,pci,ae")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(REGISTRY) - {"seresnet"})
    if unknown:
        p.error(f"unknown models {unknown}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul {matmul_gflops():.0f} GFLOP/s; "
          f"width {args.width}, batch {args.batch_size}")
    print(f"{'model':<8} {'steps/s':>8} {'img/s':>7} {'overhead':>9}  " + " ".join(f"{p:>8}" for p in PIECES))
    for name in names:
        seconds = profile_steps(name, width=args.width, batch_size=args.batch_size, steps=args.steps)
        total = sum(seconds.values())
        overhead = 1 - (seconds["forward"] + seconds["backward"]) / total
        print(f"{name:<8} {args.steps / total:>8.2f} {args.steps * args.batch_size / total:>7.0f} {overhead:>9.1%}  "
              + " ".join(f"{seconds[p] / total:>8.1%}" for p in PIECES), flush=True)


if __name__ == "__main__":
    main()
