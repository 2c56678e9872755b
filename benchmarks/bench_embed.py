"""``protrep embed`` in one process and in two (``torchrun --nproc_per_node 2``): crops/s and identical output.

Both runs embed the same dataset with the same run (centre crop, ``--cells npy``): one
process with torch's default threads (all cores), and two processes under ``torchrun``
(gloo, one thread each, as torchrun sets ``OMP_NUM_THREADS=1``), each embedding every
other batch, rank 0 merging. Times are the wall time of the whole command, start-up
included (importing torch, loading the run and the dataset's tables, torchrun's
rendezvous: some 5 to 10 s on two busy cores), so small datasets understate the speed-up.
Outputs are compared byte for byte (cell features ``.npy``, cell metadata, protein table).

    .venv/bin/python benchmarks/bench_embed.py [--run data/runs/deeploc-quick] [--data DIR]
        [--copies 10] [--tmp /tmp/protrep-bench-embed] [--crops centre]

Without ``--data`` the dataset is ``data/yeast-sim-quick`` repeated ``--copies`` times
(each copy on other plates), written as a sharded ``protrep-cells`` folder in ``--tmp``.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FILES = ("e.cells.npy", "e.cells.csv.gz", "e.proteins.csv.gz")


def repeated_dataset(src, dest, copies):
    """Write ``copies`` copies of the dataset ``src`` (on plates ``plate + 100 * copy``) as a sharded folder."""
    from protrep.data.dataset import CellDataset, load_dataset
    from protrep.data.shards import write_sharded

    ds = load_dataset(src, float32=False)
    meta = pd.concat([ds.meta.assign(plate=ds.meta["plate"] + 100 * k) for k in range(copies)], ignore_index=True)
    big = CellDataset(images=np.concatenate([ds.images] * copies), meta=meta, channels=ds.channels,
                      classes=ds.classes, masks=None if ds.masks is None else np.concatenate([ds.masks] * copies))
    write_sharded(dest, big, shard_size=1024, overwrite=True, progress=False)
    return Path(dest)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd, env):
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}")
    return seconds


def measure_distributed_embedding(run_dir, data_dir, tmp, *, crops="centre", batch_size=256):
    """Time ``protrep embed`` on ``data_dir`` in 1 and 2 processes; crops/s, speed-up and whether outputs agree.

    Parameters
    ----------
    run_dir, data_dir : str or Path
        A trained run and a dataset protrep reads.
    tmp : str or Path
        Scratch folder (replaced).
    crops : {"centre", "five"}
    batch_size : int

    Returns
    -------
    dict
        ``crops``, ``one_process_s``, ``two_processes_s`` (wall seconds, start-up included),
        ``one_process_crops_per_s``, ``two_processes_crops_per_s``, ``speedup`` (one / two
        processes' time) and ``identical`` (every output file byte for byte).
    """
    from protrep.data.readers import open_dataset

    tmp = Path(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    n = len(open_dataset(data_dir))
    args = ["embed", "--run-dir", str(run_dir), "--data", str(data_dir), "--crops", crops, "--batch-size",
            str(batch_size), "--cells", "npy", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # one process: all cores
    one = _timed([sys.executable, "-m", "protrep", *args, "--out", str(tmp / "one" / "e.csv.gz")], env)
    two = _timed([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                  str(_free_port()), "-m", "protrep", *args, "--out", str(tmp / "two" / "e.csv.gz")],
                 {**env, "OMP_NUM_THREADS": "1"})
    identical = all((tmp / "one" / f).read_bytes() == (tmp / "two" / f).read_bytes() for f in FILES)
    leftovers = sorted(p.name for p in (tmp / "two").iterdir() if p.name not in FILES)
    return {"crops": n, "one_process_s": one, "two_processes_s": two, "one_process_crops_per_s": n / one,
            "two_processes_crops_per_s": n / two, "speedup": one / two, "identical": identical,
            "leftover_files": ", ".join(leftovers) or "none"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "data" / "runs" / "deeploc-quick"))
    parser.add_argument("--data", help="dataset (default: data/yeast-sim-quick repeated --copies times)")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--tmp", default="/tmp/protrep-bench-embed")
    parser.add_argument("--crops", choices=("centre", "five"), default="centre")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    tmp = Path(args.tmp)
    data = args.data or repeated_dataset(ROOT / "data" / "yeast-sim-quick", tmp / "data", args.copies)
    result = measure_distributed_embedding(args.run, data, tmp / "out", crops=args.crops, batch_size=args.batch_size)
    print(f"{os.cpu_count()} cores; run {args.run}; data {data}; crops {args.crops}")
    for key, value in result.items():
        print(f"{key:>26}: {value:,.2f}" if isinstance(value, float) else f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
