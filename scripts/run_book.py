"""Execute the book's notebooks with papermill and build the HTML from the executed copies.

The committed notebooks in ``book/`` hold no outputs. This script runs every notebook
listed in ``_toc.yml``, in order, into a separate folder, and builds the Jupyter Book
from those executed copies::

    python scripts/run_book.py run  [--profile default] [-p NAME VALUE]... [--out _build/notebooks]
    python scripts/run_book.py html [--executed _build/notebooks] [--path-output .]

The book on your own screen: ``-p dataset DIR`` (a ``protrep-cells`` folder or any source
``protrep convert`` reads), with ``-p labels TABLE`` (joined when the source is converted)
and ``-p standards FOLDER`` (functional standards); ``make book DATASET=... LABELS=...
STANDARDS=...`` passes them. These three are made absolute before the notebooks run in
``book/`` (:data:`PATH_PARAMETERS`); :mod:`protrep.userdata` says what each chapter does
with them.

``run`` executes each notebook with the kernel ``python3`` (the interpreter running this
script, so the one of ``.venv`` under ``make``) and the working directory ``book/``, so
notebooks refer to ``../data/...`` and write their headline numbers to
``<out_dir>/<notebook stem>.json`` (the ``out_dir`` parameter defaults to
``../_build/results`` in every notebook). It prints the wall time of each notebook and
the total, and stops with a non-zero exit status at the first failing cell; the
partly executed notebook is kept for inspection.

Before the first notebook ``run`` measures the machine's fp32 matmul rate
(:func:`protrep.timing.matmul_gflops`); after each notebook it prints the wall time against
the chapter's time share (:data:`protrep.timing.CHAPTER_BUDGETS`, scaled by that rate) and
warns when a chapter goes over; at the end it prints the timing table (each chapter's time,
its three longest cells, the rate) and writes it to ``<results>/timing.json``
(``_build/results/timing.json`` by default).

``html`` assembles a staging source folder (``_build/src``: ``_config.yml``, ``_toc.yml``,
everything in ``book/`` but the notebooks, the executed notebooks in their place, and the
book's Sphinx extension ``scripts/protrep_sphinx_fixes.py`` in ``_ext/``) and runs
``jupyter-book build`` on it with warnings as errors. The HTML lands in
``<path-output>/_build/html``.

The functions are importable (``tests/test_book.py`` uses them on a temporary folder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = "book"
# The book's own Sphinx extension (a workaround for a Sphinx 7 bug that writes inline
# scripts twice), staged into EXT_DIR, where _config.yml's sphinx.local_extensions finds it.
SPHINX_EXTENSION = Path(__file__).resolve().with_name("protrep_sphinx_fixes.py")
EXT_DIR = "_ext"
KERNEL = "python3"
# The flags of `jupyter-book build`: -W turns Sphinx warnings into errors, -n reports
# every broken cross-reference, --keep-going lists all warnings before failing,
# --all rebuilds every page.
JB_FLAGS = ["-W", "-n", "--keep-going", "--all"]
# Matplotlib's inline backend for the kernels: a MPLBACKEND=Agg inherited from the
# calling environment (a test runner, a CI image) would make every figure vanish.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: Parameters that name files: relative paths are taken from the caller's working directory, not ``book/``.
PATH_PARAMETERS = ("dataset", "standards", "labels")

__all__ = [
    "toc_files",
    "toc_notebooks",
    "parse_value",
    "absolute_paths",
    "run_notebooks",
    "stage_book",
    "build_html",
    "report_timing",
    "main",
]


def _toc_entries(node):
    """Yield the ``file`` entries of a parsed ``_toc.yml`` (jb-book format), in order."""
    if isinstance(node, dict):
        if "root" in node:
            yield node["root"]
        if "file" in node:
            yield node["file"]
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                yield from _toc_entries(child)
    elif isinstance(node, list):
        for child in node:
            yield from _toc_entries(child)


def toc_files(root: Path = ROOT) -> list[Path]:
    """Return the files of ``<root>/_toc.yml`` in reading order.

    Each entry (written without suffix, as Jupyter Book wants) is resolved to the
    ``.ipynb``, ``.md`` or ``.rst`` file it names.

    Raises
    ------
    FileNotFoundError
        If an entry names no file on disk.
    """
    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = []
    for entry in _toc_entries(toc):
        base = root / entry
        candidates = [base] if base.suffix else [base.with_suffix(s) for s in (".ipynb", ".md", ".rst")]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(
                f"_toc.yml lists {entry!r} but none of {', '.join(c.name for c in candidates)} "
                f"exists in {base.parent}"
            )
        files.append(found[0])
    return files


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """Return the notebooks of ``<root>/_toc.yml`` in reading order."""
    return [f for f in toc_files(root) if f.suffix == ".ipynb"]


def absolute_paths(parameters: dict, cwd: Path | None = None) -> dict:
    """``parameters`` with the values of :data:`PATH_PARAMETERS` made absolute (from ``cwd``, default the current one).

    The notebooks run with the working directory ``book/``, so a path given relative to
    where the command was typed would otherwise point elsewhere. None stays None.
    """
    cwd = Path.cwd() if cwd is None else Path(cwd)
    return {k: (str((cwd / Path(v).expanduser()).resolve()) if k in PATH_PARAMETERS and isinstance(v, str) else v)
            for k, v in parameters.items()}


def parse_value(text: str):
    """Read a command-line parameter value as papermill's ``-p`` does.

    ``"3"`` gives an int, ``"0.5"`` a float, ``"true"``/``"false"`` a bool,
    ``"none"`` None (case-insensitive); anything else stays a string.
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@contextlib.contextmanager
def _kernel_environment():
    """Give the kernels matplotlib's inline backend, whatever the caller set."""
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


def executed_path(notebook: Path, out: Path, root: Path = ROOT) -> Path:
    """Where the executed copy of ``notebook`` (a file under ``<root>/book``) goes in ``out``."""
    return Path(out) / Path(notebook).resolve().relative_to((Path(root) / BOOK_DIR).resolve())


def run_notebooks(
    notebooks,
    out: Path,
    *,
    parameters: dict | None = None,
    root: Path = ROOT,
    kernel: str = KERNEL,
    log_output: bool = False,
    echo=print,
    gflops: float | None = None,
) -> list[tuple[Path, float]]:
    """Execute ``notebooks`` in order with papermill, writing the executed copies to ``out``.

    Parameters
    ----------
    notebooks : list of Path
        Notebooks under ``<root>/book``, usually :func:`toc_notebooks`.
    out : Path
        Folder for the executed notebooks (``out/<name>.ipynb``); created if missing.
    parameters : dict, optional
        Injected into each notebook's ``parameters`` cell (e.g. ``profile``, ``out_dir``).
    root : Path
        Repository root; notebooks run with the working directory ``<root>/book``.
    kernel : str
        Jupyter kernel name.
    log_output : bool
        Stream cell outputs to the log while running.
    echo : callable
        Where progress lines go.
    gflops : float, optional
        The machine's matmul rate: each notebook's time is then printed against its time
        share (:data:`protrep.timing.CHAPTER_BUDGETS`), with a warning when over.

    Returns
    -------
    list of (Path, float)
        Each executed notebook and its wall time in seconds.

    Raises
    ------
    papermill.PapermillExecutionError
        At the first failing cell; the partly executed notebook is left in ``out``.
    """
    import papermill as pm

    out = Path(out)
    cwd = Path(root) / BOOK_DIR
    parameters = dict(parameters or {})
    timings = []
    with _kernel_environment():
        for notebook in notebooks:
            target = executed_path(notebook, out, root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
            echo(f"[run_book] {notebook.name} ({shown}) -> {target}", flush=True)
            start = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(target),
                    parameters=parameters,
                    kernel_name=kernel,
                    cwd=str(cwd),
                    progress_bar=False,
                    log_output=log_output,
                )
            finally:
                seconds = time.perf_counter() - start
                echo(f"[run_book] {notebook.name}: {seconds:.1f} s" + _against_share(notebook.stem, seconds, gflops),
                     flush=True)
            timings.append((target, seconds))
    return timings


def _against_share(stem, seconds, gflops):
    """`` (share 210 s at 100 GFLOP/s = 60 s here)``, with a warning when over; empty without a rate or share."""
    from protrep.timing import CHAPTER_BUDGETS, REFERENCE_GFLOPS, scaled_budget

    if gflops is None or stem not in CHAPTER_BUDGETS:
        return ""
    share = scaled_budget(CHAPTER_BUDGETS[stem], gflops)
    text = f" (share {CHAPTER_BUDGETS[stem]} s at {REFERENCE_GFLOPS:.0f} GFLOP/s = {share:.0f} s here)"
    if seconds > share:
        text += f"\n[run_book] WARNING: {stem} took {seconds / share:.2f} x its time share"
    return text


def report_timing(timings, gflops, path, *, profile, echo=print):
    """Print the timing table of a run and write it to ``path`` (JSON); warn for chapters over their share.

    Returns
    -------
    dict
        What was written: ``matmul_gflops``, ``reference_gflops``, ``profile``, ``chapters``
        (one row per notebook, :func:`protrep.timing.chapter_timing`), ``total_seconds``,
        ``total_reference_seconds`` and ``budget_seconds``.
    """
    from protrep.atomic import write_json
    from protrep.timing import (BOOK_BUDGET_S, CHAPTER_BUDGETS, REFERENCE_GFLOPS, chapter_timing, cpu_capability,
                                format_timing)

    budgets = CHAPTER_BUDGETS if profile == "default" else {}  # the shares are the default profile's
    rows = [chapter_timing(Path(target).stem, seconds, gflops, executed=target, budgets=budgets)
            for target, seconds in timings]
    echo("[run_book] timing:\n" + format_timing(rows, gflops), flush=True)
    total = sum(seconds for _, seconds in timings)
    report = {"profile": profile, "matmul_gflops": round(gflops, 1), "cpu_capability": cpu_capability(),
              "reference_gflops": REFERENCE_GFLOPS,
              "chapters": rows, "total_seconds": round(total, 1),
              "total_reference_seconds": round(total * gflops / REFERENCE_GFLOPS, 1), "budget_seconds": BOOK_BUDGET_S}
    for row in rows:
        if row["over"]:
            echo(f"[run_book] WARNING: {row['chapter']} took {row['reference_seconds']:.0f} s at the reference rate, "
                 f"over its share of {row['budget_seconds']} s (protrep.timing.CHAPTER_BUDGETS)"
                 + ("; this machine's AVX-512 matmul overstates its speed for the book (protrep.timing.cpu_capability)"
                    if report["cpu_capability"].startswith("AVX512") else ""), flush=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    return report


def stage_book(executed: Path, staging: Path, *, root: Path = ROOT) -> Path:
    """Assemble a Jupyter Book source folder from the executed notebooks.

    ``staging`` is emptied, then receives ``_config.yml``, ``_toc.yml``, every file of
    ``<root>/book`` except notebooks (pages, ``references.bib``, images), the
    executed copy of each notebook of the table of contents in its place, and
    :data:`SPHINX_EXTENSION` in ``_ext/`` (loaded by ``_config.yml``).

    Raises
    ------
    FileNotFoundError
        If a notebook of the table of contents has no executed copy in ``executed``.
    """
    root, executed, staging = Path(root), Path(executed), Path(staging)
    notebooks = toc_notebooks(root)
    missing = [executed_path(nb, executed, root) for nb in notebooks]
    missing = [p for p in missing if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            "no executed copy of " + ", ".join(map(str, missing)) + " (run `scripts/run_book.py run` first)"
        )
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, staging / name)
    shutil.copytree(
        root / BOOK_DIR,
        staging / BOOK_DIR,
        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"),
    )
    for nb in notebooks:
        shutil.copy2(executed_path(nb, executed, root), staging / nb.relative_to(root))
    (staging / EXT_DIR).mkdir()
    shutil.copy2(SPHINX_EXTENSION, staging / EXT_DIR / SPHINX_EXTENSION.name)
    return staging


def _jupyter_book_command() -> list[str]:
    beside = Path(sys.executable).with_name("jupyter-book")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("jupyter-book")
    if found is None:
        raise FileNotFoundError("jupyter-book is not installed (pip install -r requirements.txt)")
    return [found]


def build_html(staging: Path, path_output: Path, *, echo=print) -> Path:
    """Build the book in ``staging`` with warnings as errors; return the HTML folder.

    The HTML goes to ``<path_output>/_build/html`` (Jupyter Book adds ``_build``).

    Raises
    ------
    subprocess.CalledProcessError
        If the build fails or warns.
    """
    cmd = _jupyter_book_command() + ["build", str(staging), "--path-output", str(path_output), *JB_FLAGS]
    echo("[run_book] " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    echo(f"[run_book] jupyter-book build: {time.perf_counter() - start:.1f} s", flush=True)
    return Path(path_output) / "_build" / "html"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the notebooks of _toc.yml with papermill")
    run.add_argument("--profile", default="default", help="value of the `profile` parameter (default: default)")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="another parameter for every notebook, as papermill's -p (repeatable)",
    )
    run.add_argument("--out", type=Path, default=ROOT / "_build" / "notebooks", help="folder for executed notebooks")
    run.add_argument("--only", action="append", default=[], metavar="STEM",
                     help="run only this notebook (e.g. 01_data; repeatable)")
    run.add_argument("--log-output", action="store_true", help="stream cell outputs while running")
    run.add_argument("--results", type=Path, default=ROOT / "_build" / "results",
                     help="where timing.json goes (the notebooks' out_dir is their own parameter)")

    html = sub.add_parser("html", help="stage the executed notebooks and build the HTML")
    html.add_argument("--executed", type=Path, default=ROOT / "_build" / "notebooks")
    html.add_argument("--staging", type=Path, default=ROOT / "_build" / "src")
    html.add_argument("--path-output", type=Path, default=ROOT, help="the HTML goes to PATH_OUTPUT/_build/html")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        import papermill as pm

        parameters = {"profile": args.profile}
        parameters.update({name: parse_value(value) for name, value in args.parameter})
        parameters = absolute_paths(parameters)
        notebooks = toc_notebooks()
        if args.only:
            unknown = set(args.only) - {nb.stem for nb in notebooks}
            if unknown:
                print(f"[run_book] not in _toc.yml: {', '.join(sorted(unknown))}", file=sys.stderr)
                return 2
            notebooks = [nb for nb in notebooks if nb.stem in args.only]
        if not notebooks:
            print("[run_book] _toc.yml lists no notebook", file=sys.stderr)
            return 2
        from protrep.timing import cpu_capability, matmul_gflops

        gflops = matmul_gflops()
        print(f"[run_book] this machine: fp32 matmul {gflops:.0f} GFLOP/s (torch.mm 4096 x 4096), "
              f"{cpu_capability()} kernels", flush=True)
        try:
            # the time shares are the default profile's on the simulated screen, not on a user's dataset
            shares = args.profile == "default" and parameters.get("dataset") is None
            timings = run_notebooks(notebooks, args.out, parameters=parameters, log_output=args.log_output,
                                    gflops=gflops if shares else None)
        except pm.PapermillExecutionError as err:
            print(f"[run_book] FAILED: {err.ename}: {err.evalue} (cell {err.exec_count}); "
                  f"see the executed notebook in {args.out}", file=sys.stderr)
            return 1
        report_timing(timings, gflops, args.results / "timing.json",
                      profile=args.profile if parameters.get("dataset") is None else f"{args.profile} (your dataset)")
        return 0
    staging = stage_book(args.executed, args.staging)
    try:
        build_html(staging, args.path_output)
    except subprocess.CalledProcessError as err:
        print(f"[run_book] jupyter-book build failed (exit {err.returncode})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
