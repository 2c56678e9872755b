"""Cost of the real CellProfiler baseline per cell: cp-measure on 64 x 64 GFP/RFP crops.

Simulates the ``quick`` book profile's screen (the crops of every profile: 64 px, cells of
radius about 19 px) and measures its cells with
:func:`protrep.evaluation.cellprofiler.measure_cells`, in one process and with
``--jobs`` worker processes, printing milliseconds per cell for every cp-measure module
(process time summed over the workers) and the wall time per cell (fastest of
``--repeats`` runs, after starting the workers). For comparison it
also times the plain way, every module called on every full crop on its own, the
speed-up of measuring a chunk's cells side by side in one mosaic, and checks that the
mosaic changes no feature beyond round-off.

    python benchmarks/bench_cellprofiler.py [--cells 256] [--jobs 2] [--repeats 3]
"""

import argparse
import os
import platform
import tempfile
import time
import warnings
from importlib.metadata import version

import numpy as np
from threadpoolctl import threadpool_limits

from protrep.data.dataset import load_dataset
from protrep.data.normalize import percentile_stretch
from protrep.data.simulate import simulate_dataset
from protrep.evaluation import cellprofiler as cp
from protrep.profiles import book_profile


def _crops(n_cells):
    with tempfile.TemporaryDirectory() as tmp:
        screen = book_profile("quick", seed=5).screen
        screen = screen.replace(cells_per_protein=max(screen.cells_per_protein, -(-n_cells // screen.n_proteins)))
        simulate_dataset(f"{tmp}/ds", screen, workers=1, progress=False)
        ds = load_dataset(f"{tmp}/ds")
        return np.array(ds.images[:n_cells]), np.array(ds.masks[:n_cells]), ds.channels


def _per_crop(images, masks, channels):
    """Every module on every full crop alone (the plain way): table of the same columns, seconds."""
    names = cp.feature_names(channels)
    index = {name: j for j, name in enumerate(names)}
    pixels = percentile_stretch(images).astype(np.float64)
    out = np.full((len(images), len(names)), np.nan)
    seconds = {}
    fns = cp._functions()
    with threadpool_limits(1), warnings.catch_warnings():  # as measure_cells: one BLAS thread
        warnings.simplefilter("ignore")
        for i in range(len(images)):
            label = masks[i].astype(np.int32)
            calls = [(m, (), (label, None)) for m in cp.SHAPE_MODULES]
            calls += [(m, (c,), (label, pixels[i, k])) for k, c in enumerate(channels) for m in cp.CHANNEL_MODULES]
            calls += [(m, tuple(channels), (pixels[i, 0], pixels[i, 1], label)) for m in cp.PAIR_MODULES]
            for module, chans, args in calls:
                start = time.perf_counter()
                result = fns[module](*args)
                seconds[module] = seconds.get(module, 0.0) + time.perf_counter() - start
                for key, value in result.items():
                    j = index.get(cp._column(module, key, chans))
                    if j is not None:
                        out[i, j] = np.asarray(value, float)[0]
    return out, seconds


def _row(label, seconds, n, wall):
    modules = list(cp.SHAPE_MODULES + cp.CHANNEL_MODULES + cp.PAIR_MODULES)
    cells = [f"{1e3 * seconds.get(m, 0.0) / n:7.2f}" for m in modules]
    print(f"{label:<22}" + "".join(f"{c:>9}" for c in cells) + f"{1e3 * sum(seconds.values()) / n:9.2f}"
          + (f"{1e3 * wall / n:9.2f}" if wall else f"{'':>9}"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=256)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="runs of measure_cells; the fastest is shown")
    args = p.parse_args()
    images, masks, channels = _crops(args.cells)
    n = len(images)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, cp-measure {version('cp-measure')}")
    print(f"{n} cells, crops {images.shape[1]} x {images.shape[2]} x {images.shape[3]} ({', '.join(channels)}), "
          f"mask area median {np.median(masks.sum((1, 2))):.0f} px; {len(cp.feature_names(channels))} features")
    print("ms per cell; per-channel modules summed over both channels; process time summed over workers; "
          "fastest of --repeats runs after a warm-up")
    modules = list(cp.SHAPE_MODULES + cp.CHANNEL_MODULES + cp.PAIR_MODULES)
    print(f"{'':<22}" + "".join(f"{m[:8]:>9}" for m in modules) + f"{'sum':>9}{'wall':>9}")
    start = time.perf_counter()
    plain, plain_seconds = _per_crop(images, masks, channels)
    _row("per crop, 1 process", plain_seconds, n, time.perf_counter() - start)
    tables = {}
    for jobs in (1, args.jobs):
        # warm up: start the workers and import what cp-measure imports on its first call (about 1 s)
        cp.measure_cells(images[:2 * jobs], masks[:2 * jobs], channels=channels, n_jobs=jobs, chunk_size=2,
                         progress=False)
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            table = cp.measure_cells(images, masks, channels=channels, n_jobs=jobs, progress=False)
            runs.append((time.perf_counter() - start, table))
        wall, tables[jobs] = min(runs, key=lambda run: run[0])
        _row(f"mosaic, {jobs} process{'es' if jobs > 1 else ''}", tables[jobs].attrs["seconds"], n, wall)
    mosaic = tables[1].to_numpy()
    same = np.array_equal(mosaic, tables[args.jobs].to_numpy(), equal_nan=True)
    print(f"\n1 and {args.jobs} processes give the same table: {same}")
    spread = np.nanstd(plain, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = np.nanmax(np.abs(mosaic - plain), axis=0) / np.where(spread > 0, spread, 1.0)
    print(f"mosaic against every module on each full crop alone: largest difference {np.nanmax(moved):.2g} of the "
          f"feature's standard deviation over cells; the same cells undefined (NaN): "
          f"{np.array_equal(np.isnan(mosaic), np.isnan(plain))}")

if __name__ == "__main__":
    main()
