"""A screen at its real size: a million crops on disk, trained on and embedded with bounded memory.

Prints, stage by stage (``--stages``, default all):

``storage``      random access (batches of 64 random crops, the pattern of shuffled training)
                 from 100,000 crops stored as ``.npy`` shards (read with ``pread``, as
                 protrep reads them), as one ``np.memmap``, and as zarr arrays (one crop per
                 chunk uncompressed; 64 crops per chunk with zstd) when zarr is
                 importable; crops/s and size on disk. The basis of the format's choice.
``write``        the million-crop sharded dataset (``--n-crops``) written by 2 processes from
                 a simulated screen (``--base``, by default the book's default screen, 9,000
                 crops of 600 proteins): every copy of the base screen is a new set of
                 proteins (``<protein>_c<copy>``) seen under another of the 8 dihedral
                 transforms; crops/s, MB/s, size on disk.
``train``        DeepLoc (the default profile's width) for ``--steps`` steps streamed from the
                 million crops, and the same on the base screen held in memory; images/s of
                 both, their ratio and peak resident memory.
``embed``        a full ``embed`` pass over the million crops (centre crop, protein table
                 and the cell features as ``.npy``); crops/s and peak resident memory.
``convert``      the crop-tree converter on a synthetic WT2 tree (``benchmarks/bench_convert.py``).
``distributed``  ``protrep embed`` in 1 and 2 processes (``benchmarks/bench_embed.py``).

Every measuring stage runs in a fresh child process, whose peak resident set (its own and
its workers', ``getrusage``) is what is printed. Pages of the operating system's file cache
are not the process's memory and are not counted.

    .venv/bin/python benchmarks/bench_scale.py [--n-crops 1000000] [--work /tmp/protrep-scale]
        [--stages storage,write,train,embed,convert,distributed] [--steps 100] [--run data/runs/deeploc]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("storage", "write", "train", "embed", "convert", "distributed")


def peak_rss_gb():
    """Peak resident memory of this process and of its waited-for children, GB (Linux: ru_maxrss in kB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1e6, children / 1e6


def _dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- storage
def _random_batches(read, n, batches=300, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    read(np.sort(rng.choice(n, batch, replace=False)))  # warm-up
    t = time.perf_counter()
    for _ in range(batches):
        read(np.sort(rng.choice(n, batch, replace=False)))
    return batches * batch / (time.perf_counter() - t)


def storage(work, base, n=100_000, shard_size=4096):
    """Random-access crops/s and bytes on disk of each storage for ``n`` 2 x 64 x 64 uint16 crops.

    The crops repeat the first ``shard_size`` crops of the simulated screen ``base`` (camera
    counts, so that compression sees realistic data).
    """
    from protrep.data.arrays import NpyRows, ShardedArray
    from protrep.data.dataset import load_dataset

    block = np.asarray(load_dataset(base, mmap=True).images[:shard_size])
    out, root = {}, Path(work) / "storage"
    shutil.rmtree(root, ignore_errors=True)
    (root / "npy").mkdir(parents=True)
    parts = []
    for k, s in enumerate(range(0, n, shard_size)):
        np.save(root / "npy" / f"{k:05d}.npy", block[:min(shard_size, n - s)])
        parts.append(NpyRows(root / "npy" / f"{k:05d}.npy"))
    sharded = ShardedArray(parts)
    out["npy shards (pread)"] = (_random_batches(lambda i: sharded[i], n), _dir_bytes(root / "npy"))
    mm = np.lib.format.open_memmap(root / "one.npy", mode="w+", dtype=np.uint16, shape=(n, 2, 64, 64))
    for s in range(0, n, shard_size):
        mm[s:s + shard_size] = block[:min(shard_size, n - s)]
    mm.flush()
    mm = np.load(root / "one.npy", mmap_mode="r")
    out["one npy (memmap)"] = (_random_batches(lambda i: np.asarray(mm[i]), n), (root / "one.npy").stat().st_size)
    try:
        import zarr
    except ImportError:
        print("zarr is not installed: its rows are skipped (pip install zarr to measure them)")
        return out
    for name, chunks, compressors in (("zarr, 1 crop per chunk, raw", 1, None),
                                      ("zarr, 64 crops per chunk, zstd", 64, "auto")):
        z = zarr.create_array(root / name.replace(" ", "_").replace(",", ""), shape=(n, 2, 64, 64),
                              chunks=(chunks, 2, 64, 64), dtype="uint16", compressors=compressors)
        for s in range(0, n, shard_size):
            z[s:s + shard_size] = block[:min(shard_size, n - s)]
        out[name] = (_random_batches(lambda i: z.get_orthogonal_selection((i,)), n, batches=60),
                     _dir_bytes(root / name.replace(" ", "_").replace(",", "")))
    return out


# ----------------------------------------------------------------------------- write
def _write_shard(job):
    """Shard ``k`` of the big dataset: base crops ``rows`` under dihedral transform ``copy % 8``."""
    from protrep.data.dataset import load_dataset
    from protrep.data.shards import complete_cells, write_shard

    base_path, root, k, rows, copies = job
    base = load_dataset(base_path, mmap=True)
    images = np.asarray(base.images[np.asarray(rows) % len(base)])
    masks = np.asarray(base.masks[np.asarray(rows) % len(base)])
    copy = np.asarray(copies)
    for t in np.unique(copy % 8):  # each copy seen under its own rotation / flip
        sel = copy % 8 == t
        images[sel] = np.rot90(images[sel], t % 4, axes=(2, 3))
        masks[sel] = np.rot90(masks[sel], t % 4, axes=(1, 2))
        if t >= 4:
            images[sel], masks[sel] = images[sel][..., ::-1], masks[sel][..., ::-1]
    cells = complete_cells(base.meta.iloc[np.asarray(rows) % len(base)])
    cells["protein"] = [f"{p}_c{c}" for p, c in zip(cells["protein"], copy)]
    write_shard(root, k, images, cells, masks)
    return len(rows)


def write_big(base, out, n, *, shard_size=4096, workers=2):
    """Write the ``n``-crop dataset (see the module docstring); return crops/s, MB/s and bytes on disk."""
    from protrep.data.dataset import load_dataset
    from protrep.data.shards import finalize_shards, shard_ranges

    ds = load_dataset(base, mmap=True)
    shutil.rmtree(out, ignore_errors=True)
    jobs = [(str(base), str(out), k, list(range(a, b)), [r // len(ds) for r in range(a, b)])
            for k, (a, b) in enumerate(shard_ranges(n, shard_size))]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write_shard, jobs))
    header = finalize_shards(out, channels=ds.channels, classes=ds.classes, n_shards=len(jobs))
    seconds = time.perf_counter() - t
    size = _dir_bytes(out)
    return {"crops": written, "seconds": seconds, "crops_per_s": written / seconds, "MB_per_s": size / 1e6 / seconds,
            "bytes_on_disk": size, "shards": len(header["shards"]), "proteins": header["n_proteins"]}


# ----------------------------------------------------------------------------- children
def child_train(data, steps, workers):
    """Train DeepLoc for ``steps`` steps on ``data``; images/s of the training steps and peak memory."""
    import tempfile

    import torch

    from protrep.data.dataset import load_dataset
    from protrep.profiles import book_profile, yeast_training
    from protrep.training.loop import train

    torch.manual_seed(0)
    t0 = time.perf_counter()
    ds = load_dataset(data)
    model_config, train_config = yeast_training("deeploc", book_profile("default"), budget_tflop=None, epochs=None,
                                                max_steps=steps, device="cpu", patience=0)
    if "workers" in type(train_config).__dataclass_fields__:
        train_config = train_config.override(workers=workers)
    val = ds.meta["split"].to_numpy() == "val"
    keep = np.flatnonzero(~val | (np.cumsum(val) <= 2000))  # validation on 2,000 cells: the steps are timed
    ds = ds.subset(keep)
    with tempfile.TemporaryDirectory() as out:
        history = train(model_config, train_config, ds, out, progress=False)
    own, kids = peak_rss_gb()
    return {"cells": len(ds), "images_per_s": float(history["images_per_s"].iloc[-1]), "steps": steps,
            "seconds_total": time.perf_counter() - t0, "peak_rss_gb": own, "workers_peak_rss_gb": kids}


def child_embed(run, data, out, workers):
    """Embed every crop of ``data`` with ``run`` (centre crop) to ``out``; crops/s and peak memory."""
    from protrep.data.dataset import load_dataset
    from protrep.inference import embed as embed_module
    from protrep.training.runs import load_run

    ds = load_dataset(data)
    model, _ = load_run(run)
    t = time.perf_counter()
    proteins = embed_module.embed_dataset(model, ds, crops="centre", workers=workers, cells_out=out, progress=False)
    seconds = time.perf_counter() - t
    own, kids = peak_rss_gb()
    return {"crops": len(ds), "proteins": len(proteins), "seconds": seconds, "crops_per_s": len(ds) / seconds,
            "peak_rss_gb": own, "workers_peak_rss_gb": kids}


def _in_child(*args):
    """Run ``bench_scale.py _child ARGS`` in a fresh process and return the JSON it prints last."""
    done = subprocess.run([sys.executable, __file__, "_child", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def _print(title, rows):
    print(f"\n## {title}")
    for key, value in rows.items():
        print(f"{key:>34}: {value:,.2f}" if isinstance(value, float) else f"{key:>34}: {value}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-crops", type=int, default=1_000_000)
    parser.add_argument("--work", default="/tmp/protrep-scale", help="scratch folder (about 21 GB for 1M crops)")
    parser.add_argument("--base", default=str(ROOT / "data" / "yeast-sim-default"))
    parser.add_argument("--run", default=str(ROOT / "data" / "runs" / "deeploc"), help="a trained DeepLoc run")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternated streamed / in-memory training pairs")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers of the streamed runs")
    args = parser.parse_args(argv)
    from protrep.timing import matmul_gflops

    stages, work = args.stages.split(","), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    big = work / f"cells-{args.n_crops}"
    print(f"fp32 matmul {matmul_gflops():.0f} GFLOP/s, {os.cpu_count()} cores")
    if "storage" in stages:
        for name, (rate, size) in storage(work, args.base).items():
            print(f"{name:>40}: {rate:>10,.0f} random crops/s   {size / 1e9:6.2f} GB on disk (100,000 crops)")
    if "write" in stages:
        _print(f"write {args.n_crops:,} crops", write_big(args.base, big, args.n_crops))
    if "train" in stages:  # alternated, so that a change in the machine's load hits both alike
        ratios = []
        for _ in range(args.rounds):
            streamed = _in_child("train", big, args.steps, args.workers)
            memory = _in_child("train", args.base, args.steps, 0)
            ratios.append(streamed["images_per_s"] / memory["images_per_s"])
            _print("train DeepLoc, streamed from the shards", streamed)
            _print("train DeepLoc, base screen in memory", memory)
        print(f"{'streamed / in memory':>34}: " + ", ".join(f"{r:.1%}" for r in ratios)
              + f" (median {np.median(ratios):.1%})")
    if "embed" in stages:
        _print(f"embed {args.n_crops:,} crops", _in_child("embed", args.run, big, work / "embed-cells.npy", args.workers))
    if "convert" in stages:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_convert import measure_convert_rate

        print(f"\n## convert: {measure_convert_rate(work / 'convert', n_crops=20000, workers=2):,.0f} crops/s "
              "(WT2 crop tree of 20,000 TIFF pairs, 2 processes)")
    if "distributed" in stages:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_embed import measure_distributed_embedding

        _print("distributed embedding, 1 and 2 processes",
               measure_distributed_embedding(args.run, args.base, work / "distributed"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "train":
            result = child_train(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = child_embed(rest[0], rest[1], rest[2], int(rest[3]))
        print(json.dumps(result))
    else:
        main()
