"""How long the book takes, in terms that travel between machines.

The same notebooks take 26 minutes on one 2-core machine and 44 on another; what differs is
mostly the speed of float32 arithmetic. So every time in this project is given together
with the machine's **fp32 matmul rate** (:func:`matmul_gflops`, GFLOP/s of ``torch.mm`` on
4096 x 4096 matrices), and every budget is stated at a reference rate of
``REFERENCE_GFLOPS`` = 100 GFLOP/s, the slowest 2-core machine CI has been seen on. A
budget of ``s`` seconds becomes ``s * REFERENCE_GFLOPS / rate`` on a machine measured at
``rate`` (:func:`scaled_budget`); that scaling is a model (training, most of the book, is
compute-bound; simulation, the SVMs and the HTML build are not exactly), which the README's
runtime table checks against real runs.

``CHAPTER_BUDGETS`` holds each chapter's time share in one place: ``scripts/run_book.py``
prints every chapter's wall time against its share and warns when one goes over;
:func:`notebook_cells` reads the longest cells out of an executed notebook (papermill
records every cell's duration).
"""

import json
import time
from pathlib import Path

__all__ = ["REFERENCE_GFLOPS", "BOOK_BUDGET_S", "CHAPTER_BUDGETS", "matmul_gflops", "cpu_capability", "scaled_budget",
           "notebook_cells", "chapter_timing", "format_timing"]

#: fp32 matmul rate (GFLOP/s) at which every budget below is stated.
REFERENCE_GFLOPS = 100.0

#: The default profile's notebooks, all together, at REFERENCE_GFLOPS (seconds).
BOOK_BUDGET_S = 30 * 60

#: Each chapter's share of BOOK_BUDGET_S, in seconds at REFERENCE_GFLOPS, default profile.
#: ``"reserve"`` is kept free for the chapters and seeds the open issues add.
CHAPTER_BUDGETS = {
    "01_data": 50,
    "02_cnn": 240,
    "03_autoencoder": 520,
    "04_evaluation": 240,
    "05_background": 500,  # both protocols, 9 invariant runs (3 kinds x 3 seeds), mixed wells
    "06_hpa": 100,
    "07_what_decides": 150,
    "reserve": 0,
}
assert sum(CHAPTER_BUDGETS.values()) == BOOK_BUDGET_S


def matmul_gflops(n=4096, repeats=3, *, threads=None):
    """The machine's fp32 matmul rate: GFLOP/s of ``torch.mm`` on ``n x n`` matrices.

    One warm-up product, then the best of ``repeats`` timed ones (a few seconds at 100
    GFLOP/s for the default ``n``). ``threads`` sets torch's intra-op threads for the
    measurement only (None: torch's default, as the notebooks run).

    Returns
    -------
    float
        GFLOP/s (``2 n^3`` floating-point operations per product).
    """
    import torch

    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be positive, got n={n}, repeats={repeats}")
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


def cpu_capability():
    """The vector instructions torch's CPU kernels use (``"AVX2"``, ``"AVX512"``, ...).

    The reference machine runs AVX2 kernels. On an AVX-512 machine the matmul rate grows
    more than the book's small convolutions and its numpy code do (measured on one 2-core
    machine against its own AVX2-only single core: matmul 3.1 x, training steps of the
    book's models 1.1-2.6 x, benchmarks/bench_steps.py), so times converted to the
    reference rate come out too long there and the shares warn early.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability()


def scaled_budget(seconds, gflops):
    """A budget of ``seconds`` at REFERENCE_GFLOPS, on a machine of ``gflops``: ``seconds * 100 / gflops``."""
    if not gflops > 0:
        raise ValueError(f"gflops must be a positive rate, got {gflops!r}")
    return seconds * REFERENCE_GFLOPS / gflops


def notebook_cells(path, top=3):
    """The ``top`` longest code cells of an executed notebook.

    Parameters
    ----------
    path : str or Path
        A notebook executed by papermill (each cell's ``metadata.papermill.duration``).

    Returns
    -------
    list of dict
        ``{"cell": index, "seconds": duration, "source": first line of the cell}``, longest
        first; cells papermill did not time are left out.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.get("cell_type") != "code" or duration is None:
            continue
        source = "".join(cell.get("source", ""))
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        cells.append({"cell": i, "seconds": float(duration), "source": first[:70]})
    return sorted(cells, key=lambda c: -c["seconds"])[:top]


def chapter_timing(name, seconds, gflops, *, executed=None, budgets=CHAPTER_BUDGETS):
    """One chapter's row of the timing table: wall time, its scaled share and longest cells.

    Parameters
    ----------
    name : str
        Notebook stem (``"02_cnn"``).
    seconds : float
        Wall time of the notebook on this machine.
    gflops : float
        This machine's matmul rate.
    executed : Path, optional
        The executed notebook, for its longest cells.

    Returns
    -------
    dict
        ``chapter, seconds, reference_seconds`` (the time converted to REFERENCE_GFLOPS),
        ``budget_seconds`` (the share at REFERENCE_GFLOPS, None if the chapter has none),
        ``over`` (bool) and ``longest_cells``.
    """
    budget = budgets.get(name)
    reference = seconds * gflops / REFERENCE_GFLOPS
    return {"chapter": name, "seconds": round(float(seconds), 1), "reference_seconds": round(reference, 1),
            "budget_seconds": budget, "over": budget is not None and reference > budget,
            "longest_cells": notebook_cells(executed) if executed is not None and Path(executed).is_file() else []}


def format_timing(rows, gflops):
    """The timing table as text: one line per chapter, its longest cells indented below."""
    lines = [f"fp32 matmul {gflops:.0f} GFLOP/s; times here and at the reference {REFERENCE_GFLOPS:.0f} GFLOP/s",
             f"{'chapter':<18} {'here s':>8} {'@ref s':>8} {'share s':>8}"]
    for row in rows:
        share = "-" if row["budget_seconds"] is None else f"{row['budget_seconds']:.0f}"
        flag = "  OVER" if row["over"] else ""
        lines.append(f"{row['chapter']:<18} {row['seconds']:>8.1f} {row['reference_seconds']:>8.1f} {share:>8}{flag}")
        for cell in row["longest_cells"]:
            lines.append(f"    cell {cell['cell']:>3} {cell['seconds']:>7.1f} s  {cell['source']}")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"{'total':<18} {total:>8.1f} {total * gflops / REFERENCE_GFLOPS:>8.1f} {BOOK_BUDGET_S:>8.0f}")
    return "\n".join(lines)
