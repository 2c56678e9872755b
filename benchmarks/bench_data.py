"""Speed of the data steps that unit tests used to time: segmentation, handcrafted features, reading crops.

Prints medians over repeats, on this machine (give the fp32 matmul rate beside them):

- ``segment_cells`` on a simulated 512 x 512 field (about 15-20 ms on one idle core);
- ``handcrafted_features`` of 1,000 cells (about 1-2 s);
- ``open_dataset`` of the 877 real WT2 crops, when ``$PROTREP_SHARED_DATA`` is set.

    python benchmarks/bench_data.py [--repeats 5]
"""

import argparse
import statistics
import time

import numpy as np

from protrep.data.download import shared_data_dir
from protrep.data.proteome import synthetic_proteome
from protrep.data.readers import open_dataset
from protrep.data.render import FieldParams, TextureBank, plate_params, simulate_field
from protrep.data.segment import segment_cells
from protrep.evaluation.handcrafted import handcrafted_features
from protrep.timing import matmul_gflops


def _median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"fp32 matmul {matmul_gflops():.0f} GFLOP/s")
    rng = np.random.default_rng(0)
    protein = synthetic_proteome(60, seed=0).iloc[0].to_dict()
    rfp = simulate_field(rng, protein, plate_params(rng), FieldParams(size=512), TextureBank(0))["image"][1]
    print(f"segment_cells, 512 x 512 field: {1000 * _median_seconds(lambda: segment_cells(rfp), args.repeats):.1f} ms")
    yy, xx = np.mgrid[:64, :64]
    masks = np.broadcast_to((yy - 32) ** 2 + (xx - 32) ** 2 <= 19 ** 2, (1000, 64, 64))
    images = rng.poisson(120.0, size=(1000, 2, 64, 64)).astype(np.float32)
    seconds = _median_seconds(lambda: handcrafted_features(images, masks), max(1, args.repeats // 2))
    print(f"handcrafted_features, 1,000 cells: {seconds:.2f} s")
    shared = shared_data_dir()
    if shared is not None:
        seconds = _median_seconds(lambda: open_dataset(shared / "yeast-crops"), args.repeats)
        print(f"open_dataset, 877 real WT2 crops: {seconds:.2f} s")


if __name__ == "__main__":
    main()
