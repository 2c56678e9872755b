"""Speed of the per-protein mAP (Kalinin et al. 2025) at proteome scale.

Builds 4,000 proteins with 128-d Gaussian embeddings and the four synthetic standards of
``bench_functional.py`` (yeast-like term sizes: compartments, processes, pathways,
complexes), then times :func:`protrep.evaluation.mean_ap.mean_average_precision` on all
four: per-protein AP of every annotated protein, the null distributions of random
rankings (shared by standards with the same number of candidates) and q-values. Prints
the seconds, the numbers of proteins and standards, and per standard the number of
queries, the largest number of positives and the mAP.

    python benchmarks/bench_map.py [--proteins 4000] [--dim 128] [--null-size 2000] [--repeat 1]
"""

import argparse
import time

import numpy as np
from bench_functional import synthetic_standards

from protrep.evaluation.mean_ap import _scores, mean_average_precision
from protrep.evaluation.retrieval import random_embedding


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proteins", type=int, default=4000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--null-size", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=1, help="time this many runs and report the fastest")
    args = p.parse_args()
    proteins = np.array([f"P{k:05d}" for k in range(args.proteins)])
    standards = synthetic_standards(proteins, seed=0)
    embedding = random_embedding(proteins, dim=args.dim, seed=0)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        table = mean_average_precision({"random": embedding}, standards, null_size=args.null_size, progress=False)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    largest = {}
    for name, standard in standards.items():
        scores = _scores(embedding, standard, proteins=None, standardize=False, min_size=2, max_size=None,
                         max_fraction=None)
        largest[name] = int(scores["n_positives"].max())
    ap_only = time.perf_counter() - start
    print(f"mean_average_precision: {min(times):.2f} s for {args.proteins} proteins x {len(standards)} standards "
          f"({args.dim}-d embedding, null_size {args.null_size}); per-protein AP alone {ap_only:.2f} s")
    for row in table.itertuples():
        print(f"  {row.standard:<13} {row.n_proteins:>5} queries, at most {largest[row.standard]:>5} positives, "
              f"mAP {row.map:.4f}, fraction retrieved {row.fraction_retrieved:.3f}")


if __name__ == "__main__":
    main()
