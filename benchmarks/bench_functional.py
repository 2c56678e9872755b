"""Speed of the functional evaluation (protein-pair AP) at proteome scale.

Builds 4,000 proteins with 128-d Gaussian embeddings and four synthetic standards whose
term sizes resemble the yeast ones (compartments: 15 terms of census-like sizes, a third
of proteins in two; processes: ~100 terms of ~40-160 proteins, a fifth in two; pathways:
terms of ~3-12 proteins over a third of the proteome; complexes: terms of 2-6 proteins
over a quarter of it), then times :func:`protrep.evaluation.retrieval.functional_ap` on each (one
cosine matrix, co-annotation, sort of all pairs, AP) and one bootstrap replicate (a
weighted AP over the already sorted pairs).

    python benchmarks/bench_functional.py [--proteins 4000] [--dim 128] [--n-boot 10]
"""

import argparse
import time

import numpy as np
import pandas as pd

from protrep.data.proteome import HUH_CENSUS
from protrep.evaluation.retrieval import _bootstrap, _rank_pairs, functional_ap, random_embedding


def _partition(rng, ids, mean, low, high):
    """Split ``ids`` into consecutive groups of random size in [low, high] around ``mean``."""
    groups, start = [], 0
    while start < len(ids):
        size = int(np.clip(rng.poisson(mean), low, high))
        groups.append(ids[start:start + size])
        start += size
    return groups


def synthetic_standards(proteins, seed=0):
    """Four long-format standards with yeast-like term sizes."""
    rng = np.random.default_rng(seed)
    n = len(proteins)
    out = {}
    p = np.array(list(HUH_CENSUS.values()), float)
    first = rng.choice(len(p), n, p=p / p.sum())
    second = rng.choice(len(p), n, p=p / p.sum())
    two = rng.random(n) < 0.3
    terms = [f"compartment_{k}" for k in first] + [f"compartment_{k}" for k in second[two]]
    out["compartments"] = pd.DataFrame({"term": terms, "protein": np.r_[proteins, proteins[two]]})
    rows = []
    for copy in range(2):
        members = rng.permutation(proteins) if copy == 0 else rng.choice(proteins, n // 5, replace=False)
        for k, group in enumerate(_partition(rng, members, 60, 20, 160)):
            rows += [(f"process_{copy}_{k}", q) for q in group]
    out["processes"] = pd.DataFrame(rows, columns=["term", "protein"])
    for name, fraction, mean, low, high in [("pathways", 1 / 3, 6, 3, 12), ("complexes", 1 / 4, 3.5, 2, 6)]:
        members = rng.choice(proteins, int(n * fraction), replace=False)
        rows = [(f"{name}_{k}", q) for k, group in enumerate(_partition(rng, members, mean, low, high)) for q in group]
        out[name] = pd.DataFrame(rows, columns=["term", "protein"])
    return {k: v.drop_duplicates().reset_index(drop=True) for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proteins", type=int, default=4000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n-boot", type=int, default=10, help="replicates timed per standard (reported per replicate)")
    args = p.parse_args()

    proteins = np.array([f"P{k:05d}" for k in range(args.proteins)])
    standards = synthetic_standards(proteins)
    embedding = random_embedding(proteins, dim=args.dim, seed=1)
    print(f"{args.proteins} proteins x {args.dim} features")
    print(f"{'standard':<14}{'terms':>7}{'proteins':>10}{'pairs':>12}{'positive':>11}{'AP (s)':>9}"
          f"{'boot/rep (s)':>14}")
    total = 0.0
    for name, standard in standards.items():
        t0 = time.perf_counter()
        result = functional_ap(embedding, standard)
        t_ap = time.perf_counter() - t0
        total += t_ap
        ranked = _rank_pairs(embedding, standard, standardize=False, min_size=2, max_size=None, max_fraction=None,
                             pairs=True)
        t0 = time.perf_counter()
        _bootstrap(ranked, args.n_boot, 0)
        t_boot = (time.perf_counter() - t0) / max(args.n_boot, 1)
        print(f"{name:<14}{standard['term'].nunique():>7}{result['n_proteins']:>10}{result['n_pairs']:>12}"
              f"{result['n_positive']:>11}{t_ap:>9.2f}{t_boot:>14.3f}")
    print(f"functional_ap, all {len(standards)} standards: {total:.2f} s")


if __name__ == "__main__":
    main()
