"""Speed of ``protrep convert`` on a WT2-like crop tree of small float32 TIFF pairs.

Writes a synthetic tree of ``n_crops`` 64 x 64 float32 crop pairs (the 877 real WT2 crops
repeated under new names when ``$PROTREP_SHARED_DATA`` is set, else random pixels), 200
crops per protein folder, converts it with :func:`protrep.data.convert.convert` and prints
the crops converted per second, counting everything: the scan of the tree, reading the
TIFFs, writing the shards and ``dataset.json``.

    python benchmarks/bench_convert.py [--n-crops 20000] [--workers 2]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from protrep.data.convert import convert
from protrep.data.download import shared_data_dir

__all__ = ["measure_convert_rate", "write_crop_tree"]


def _real_pairs():
    """Bytes of the real WT2 crop pairs, or None without the reference data."""
    shared = shared_data_dir()
    if shared is None or not (shared / "yeast-crops").is_dir():
        return None
    pairs = []
    for gfp in sorted((shared / "yeast-crops").glob("*/*_gfp.tif")):
        rfp = gfp.with_name(gfp.name.replace("_gfp.tif", "_rfp.tif"))
        if rfp.is_file():
            pairs.append((gfp.read_bytes(), rfp.read_bytes()))
    return pairs or None


def write_crop_tree(root, n_crops, *, per_protein=200, seed=0):
    """Write ``n_crops`` 64 x 64 float32 TIFF pairs as ``<root>/P<k>/cell_<i>_{gfp,rfp}.tif``; return ``root``."""
    root = Path(root)
    pairs, rng = _real_pairs(), np.random.default_rng(seed)
    for i in range(n_crops):
        folder = root / f"P{i // per_protein:05d}"
        if i % per_protein == 0:
            folder.mkdir(parents=True, exist_ok=True)
        for j, channel in enumerate(("gfp", "rfp")):
            file = folder / f"cell_{i}_{channel}.tif"
            if pairs is not None:
                file.write_bytes(pairs[i % len(pairs)][j])
            else:
                tifffile.imwrite(file, (0.2 * rng.random((64, 64))).astype(np.float32))
    return root


def measure_convert_rate(tmp_dir, n_crops=20000, workers=2, *, shard_size=1024):
    """Crops per second of a whole conversion of a synthetic crop tree of ``n_crops`` pairs.

    Parameters
    ----------
    tmp_dir : str or Path
        Scratch folder: the tree and the output are written under it.
    n_crops : int
    workers : int
        Worker processes of the conversion.
    shard_size : int, keyword-only
        Crops per shard (smaller than the default so that small runs keep every worker busy).

    Returns
    -------
    float
        ``n_crops`` divided by the wall time of :func:`~protrep.data.convert.convert`.
    """
    tmp_dir = Path(tmp_dir)
    src = write_crop_tree(tmp_dir / "crops", n_crops)
    start = time.perf_counter()
    summary = convert(src, tmp_dir / "converted", shard_size=shard_size, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    assert summary["finalized"] and summary["n_cells"] == n_crops
    return n_crops / seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-crops", type=int, default=20000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = measure_convert_rate(tmp, args.n_crops, args.workers)
    source = "real WT2 crops repeated" if _real_pairs() is not None else "random pixels"
    print(f"protrep convert: {args.n_crops:,} 64 x 64 float32 crop pairs ({source}), {args.workers} workers "
          f"on {os.cpu_count()} cores: {rate:,.0f} crops/s")


if __name__ == "__main__":
    main()
