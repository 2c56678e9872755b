"""Background-invariant models fine-tuned from the base runs, against trained from scratch.

Chapter 5 fine-tunes its background-invariant DeepLoc and autoencoder from the base runs of
chapters 2 and 3 for the profile's ``fine_tune_share`` of their compute budget, instead of training them
from scratch with the whole budget. This script measures whether that gives the same
models: for each of the two, it trains the base model, the invariant model from scratch and
the invariant model fine-tuned, on the book's simulated screen with the profile's settings,
and scores all three as chapter 5 does (test accuracy, Table 1's pairwise linear-SVM
accuracies under the five background settings, the same-minus-different gap and its paired
change, held-out functional AP). The table goes to a JSON file that chapter 5 shows.

    CORE=0 benchmarks/slow_machine.sh .venv/bin/python benchmarks/finetune_vs_scratch.py
"""

import argparse
import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from protrep.atomic import write_json
from protrep.data.backgrounds import partial_stats
from protrep.data.dataset import load_dataset
from protrep.data.simulate import dataset_path, ensure_dataset
from protrep.data.standards import load_standards
from protrep.evaluation.confounding import background_experiment, cells_for, gap_change
from protrep.evaluation.quality import model_quality
from protrep.inference.embed import embed_cells
from protrep.profiles import book_profile, yeast_training
from protrep.timing import matmul_gflops
from protrep.training.loop import train
from protrep.training.runs import load_run

ROOT = Path(__file__).resolve().parents[1]


def _train_variants(name, ds, runs, *, profile, seed, background, share):
    """Base, from-scratch invariant and fine-tuned invariant runs of one model: {start: (run dir, config)}."""
    model_config, base = yeast_training(name, profile, seed=seed)
    scratch = dataclasses.replace(base, background=background)
    tuned = dataclasses.replace(scratch, init_from=str(runs / name), budget_tflop=base.budget_tflop * share)
    out = {}
    for start, config in (("base", base), ("scratch", scratch), ("fine-tune", tuned)):
        run = runs / (name if start == "base" else f"{name}-{start}")
        history = train(model_config, config, ds, run, resume=True, overwrite=True, progress=False)
        out[start] = (run, config, float(history["seconds"].sum()))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--background", type=float, default=0.5, help="TrainConfig.background of the invariant models")
    p.add_argument("--share", type=float, help="fine-tuning budget / base budget (default: the profile's)")
    p.add_argument("--max-per-class", type=int, default=100, help="cells per class in the SVM grid (chapter 5's)")
    p.add_argument("--data-dir", type=Path, default=ROOT / "data")
    p.add_argument("--runs", type=Path, default=ROOT / "data" / "finetune-bench")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_vs_scratch.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    gflops = matmul_gflops()
    ds_dir = dataset_path(args.data_dir, args.profile)
    ensure_dataset(ds_dir, book_profile(args.profile).screen)
    ds, standards = load_dataset(ds_dir), load_standards(ds_dir)
    share = book_profile(args.profile).fine_tune_share if args.share is None else args.share
    variants = {name: _train_variants(name, ds, args.runs, profile=args.profile, seed=args.seed,
                                      background=args.background, share=share) for name in ("deeploc", "ae")}
    models = {f"{name}/{start}": load_run(run)[0] for name, v in variants.items() for start, (run, _, _) in v.items()}
    extractors = {key: (lambda crops, m=m: embed_cells(m, crops, crops="centre")) for key, m in models.items()}
    index = cells_for(ds, max_per_class=args.max_per_class, seed=args.seed)
    result = background_experiment(ds, extractors, max_per_class=args.max_per_class, seed=args.seed,
                                   stats=partial_stats(ds, index), progress=True)
    pairs, t1 = result["pairs"], result["table1"]
    rows = []
    for name, v in variants.items():
        for start, (run, config, seconds) in v.items():
            key = f"{name}/{start}"
            quality = model_quality(models[key], ds, standards, seed=args.seed)
            row = {"model": name, "start": start, "budget_tflop": config.budget_tflop, "train_seconds": seconds,
                   "test_accuracy": quality["test_accuracy"], "ap_compartments": quality["ap_compartments"],
                   "ap_processes": quality["ap_processes"], "table1_base": float(t1.loc[key, ("base", "mean")]),
                   "gap_same_minus_diff": float(t1.loc[key, ("same", "mean")] - t1.loc[key, ("diff", "mean")])}
            if start != "base":
                row["gap_change_vs_base"], row["gap_change_err"] = gap_change(pairs, key, f"{name}/base")
            if start == "fine-tune":
                row["gap_minus_scratch"], row["gap_minus_scratch_err"] = gap_change(pairs, key, f"{name}/scratch")
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    header = (f"commit {commit}; profile {args.profile}, seed {args.seed}, background {args.background}, fine-tuning share "
              f"{share}; {len(index)} SVM cells; measured at fp32 matmul {gflops:.0f} GFLOP/s "
              f"({torch.get_num_threads()} threads); train_seconds on that machine")
    write_json(args.out, {"header": header, "rows": [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                                                      for k, v in r.items()} for r in rows]})
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
