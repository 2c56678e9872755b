"""Quality of each model against its training compute: the curves the default profile is chosen from.

Trains every (model, width, budget) of the grid on the book's simulated screen
(``TrainConfig.budget_tflop``; the learning-rate schedule spans the budget) and scores it
on proteins it never saw (:func:`protrep.evaluation.quality.model_quality`: DeepLoc test accuracy, a
linear probe, functional AP over held-out proteins at four scales). Rows go to a CSV, one
per point, rewritten after each point, so an interrupted sweep keeps what it finished;
runs are kept in ``--runs`` and reused when the sweep is run again.

Run it as the slow CI machine would (the wall times are then the ones the book budgets)::

    CORE=0 benchmarks/slow_machine.sh .venv/bin/python benchmarks/quality_vs_compute.py \\
        --grid deeploc:0.125,0.25,0.5 --out benchmarks/results/sweep-a.csv
    CORE=1 benchmarks/slow_machine.sh .venv/bin/python benchmarks/quality_vs_compute.py \\
        --grid pci:0.125,0.25 --grid ae:0.25,0.5,1.0 --out benchmarks/results/sweep-b.csv

Chapters 2 and 3 plot ``benchmarks/results/quality_vs_compute.csv`` (the two files above
concatenated with ``--merge``).
"""

import argparse
import logging
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from protrep.data.dataset import load_dataset
from protrep.data.simulate import dataset_path, ensure_dataset
from protrep.data.standards import load_standards
from protrep.profiles import book_profile
from protrep.evaluation.quality import SWEEP_COLUMNS, read_sweep, sweep_point, write_sweep
from protrep.models import ModelConfig
from protrep.timing import matmul_gflops
from protrep.training.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _grid(text):
    name, _, widths = text.partition(":")
    if not widths:
        raise argparse.ArgumentTypeError(f"--grid takes MODEL:WIDTH[,WIDTH...], got {text!r}")
    return name, [float(w) for w in widths.split(",")]


def _header(gflops):
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout
    return [f"protrep quality against training compute; commit {commit.strip() or 'unknown'}",
            f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, fp32 matmul {gflops:.0f} GFLOP/s",
            "command: " + " ".join(sys.argv)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=_grid, action="append", default=[], metavar="MODEL:WIDTHS",
                   help="a model and its widths, e.g. deeploc:0.125,0.25 (repeatable)")
    p.add_argument("--budgets", default="2,4,8,16", help="training budgets in TFLOP (comma-separated)")
    p.add_argument("--seeds", default="0", help="seeds (comma-separated)")
    p.add_argument("--profile", default="default", help="book profile of the simulated screen")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data")
    p.add_argument("--runs", type=Path, default=ROOT / "data" / "sweep", help="where the runs are kept")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality_vs_compute.csv")
    p.add_argument("--merge", type=Path, nargs="+", help="only concatenate these sweep tables into --out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge:
        tables = [read_sweep(f) for f in args.merge]
        headers = [line[2:].rstrip() for f in args.merge for line in f.read_text().splitlines() if line.startswith("# ")]
        table = pd.concat(tables).sort_values(["model", "width", "budget_tflop", "seed"])
        write_sweep(table, args.out, headers)
        print(f"{len(table)} points -> {args.out}")
        return 0
    if not args.grid:
        p.error("give at least one --grid MODEL:WIDTHS")
    gflops = matmul_gflops()
    print(f"fp32 matmul {gflops:.0f} GFLOP/s, {torch.get_num_threads()} threads", flush=True)
    ds_dir = dataset_path(args.data_dir, args.profile)
    ensure_dataset(ds_dir, book_profile(args.profile).screen)
    ds, standards = load_dataset(ds_dir), load_standards(ds_dir)
    rows = read_sweep(args.out).to_dict("records") if args.out.is_file() else []
    done = {(r["model"], r["width"], r["budget_tflop"], r["seed"]) for r in rows}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for budget in [float(b) for b in args.budgets.split(",")]:
            for name, widths in args.grid:
                for width in widths:
                    if (name, width, budget, seed) in done:
                        continue
                    model_config = ModelConfig(name=name, width=width)
                    train_config = TrainConfig(epochs=None, budget_tflop=budget, seed=seed, patience=0)
                    run = args.runs / f"{name}-w{width:g}-b{budget:g}-s{seed}"
                    row = sweep_point(model_config, train_config, ds, standards, run, gflops=gflops)
                    rows.append(row)
                    write_sweep(pd.DataFrame(rows), args.out, _header(gflops))
                    print(" ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                                   for k in SWEEP_COLUMNS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
