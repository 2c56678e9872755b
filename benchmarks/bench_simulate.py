"""End-to-end throughput of the simulated screen: simulate, segment, crop, write.

Prints crops per second for the whole chain (``simulate_dataset`` into a temporary
folder) and the time split between rendering and segmentation on one core.

    python benchmarks/bench_simulate.py [--proteins 200] [--cells-per-protein 30] [--workers N]
"""

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from protrep.data.proteome import synthetic_proteome
from protrep.data.render import TextureBank, plate_params, simulate_field
from protrep.data.segment import extract_crops, segment_cells
from protrep.data.simulate import SimConfig, simulate_dataset


def stages(config, n_fields=20):
    """Seconds per field for each stage, on one core."""
    params = dataclasses.replace(config.imaging, size=config.resolved_field_size())
    proteins = synthetic_proteome(max(config.n_proteins, 60), seed=0)
    bank, rng = TextureBank(0), np.random.default_rng(0)
    plate = plate_params(rng)
    t = {"render": 0.0, "segment": 0.0, "crop": 0.0}
    n_crops = 0
    for i in range(n_fields):
        t0 = time.perf_counter()
        sim = simulate_field(rng, proteins.iloc[i].to_dict(), plate, params, bank)
        t1 = time.perf_counter()
        labels = segment_cells(sim["image"][1], min_distance=config.seg_min_distance)
        t2 = time.perf_counter()
        crops, _, _ = extract_crops(sim["image"], labels, size=config.crop_size)
        t3 = time.perf_counter()
        t["render"] += t1 - t0
        t["segment"] += t2 - t1
        t["crop"] += t3 - t2
        n_crops += len(crops)
    return {k: v / n_fields for k, v in t.items()}, n_crops / n_fields


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--proteins", type=int, default=200)
    p.add_argument("--cells-per-protein", type=int, default=30)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    config = SimConfig(n_proteins=args.proteins, cells_per_protein=args.cells_per_protein, seed=0)
    per_field, crops_per_field = stages(config)
    print(f"field {config.resolved_field_size()} px, {crops_per_field:.1f} crops per field; seconds per field on one core:")
    for k, v in per_field.items():
        print(f"  {k:<8} {v * 1e3:7.1f} ms")
    total = sum(per_field.values())
    print(f"  one core, no writing: {crops_per_field / total:,.0f} crops/s")
    rates = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            s = simulate_dataset(Path(tmp) / "ds", config, workers=args.workers, progress=False)
            dt = time.perf_counter() - t0
        rates.append(s["n_cells"] / dt)
        print(f"run {r + 1}: {s['n_cells']:,} crops of {s['n_proteins']} proteins in {dt:.2f} s "
              f"-> {rates[-1]:,.0f} crops/s end to end ({args.workers} workers)")
    print(f"best end-to-end throughput: {max(rates):,.0f} crops/s (target >= 1,000 on 2 cores)")


if __name__ == "__main__":
    main()
