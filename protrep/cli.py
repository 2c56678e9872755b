"""Command line: ``protrep simulate | inspect | download``.

Every command turns bad input (:class:`protrep.errors.DataError`, ``FileExistsError``,
``ValueError``) into one line on stderr naming the file and the problem, and exit code 2.
"""

import argparse
import json
import logging
import sys

__all__ = ["main"]


def _simulate(args):
    from .simulate import SimConfig, simulate_dataset

    config = SimConfig(
        n_proteins=args.proteins,
        cells_per_protein=args.cells_per_protein,
        seed=args.seed,
        proteome=args.proteome,
        huh_table=args.huh_table,
        min_per_class=args.min_per_class,
    )
    summary = simulate_dataset(args.out, config, workers=args.workers, overwrite=args.overwrite,
                               progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def _inspect(args):
    from .readers import open_dataset

    summary = open_dataset(args.path).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value)) if value else "-"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")


def _download(args):
    from .download import download, list_downloads

    if args.list or not args.names:
        table = list_downloads()
        print(table.to_string(index=False))
        return
    for name in args.names:
        path = download(name, args.dest, force=args.force)
        print(path)


def _parser():
    p = argparse.ArgumentParser(prog="protrep", description="Protein representations from single-cell microscopy.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate an ORF-GFP yeast screen and write a protrep-cells dataset")
    s.add_argument("--out", required=True, help="destination folder (written atomically)")
    s.add_argument("--proteins", type=int, default=400,
                   help="number of proteins (huh2003: a random subset of the ORFs; 0 = all)")
    s.add_argument("--cells-per-protein", type=int, default=30, help="crops kept per protein")
    s.add_argument("--seed", type=int, default=0, help="seed; the same seed gives byte-identical output")
    s.add_argument("--proteome", choices=["synthetic", "huh2003"], default="synthetic",
                   help="synthetic functional hierarchy, or the real ORFs of Huh et al. 2003")
    s.add_argument("--huh-table", help="path of the Huh 2003 table (huh2003 mode; found automatically if omitted)")
    s.add_argument("--min-per-class", type=int, default=4,
                   help="minimum proteins per localization class (synthetic mode; needs 15x as many proteins)")
    s.add_argument("--workers", type=int, help="worker processes (default: all cores; output does not depend on it)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_simulate)

    i = sub.add_parser("inspect", help="describe any dataset protrep reads")
    i.add_argument("path", help="protrep-cells folder, DeepLoc HDF5, crop folder or HPA crop folder")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_inspect)

    d = sub.add_parser("download", help="download public originals (URLs and checksums are built in)")
    d.add_argument("names", nargs="*", help="what to download; none lists what is available")
    d.add_argument("--dest", default="data/downloads", help="destination folder (default data/downloads)")
    d.add_argument("--force", action="store_true", help="download again even if present")
    d.add_argument("--list", action="store_true", help="list what can be downloaded")
    d.set_defaults(func=_download)
    return p


def main(argv=None):
    """Entry point of the ``protrep`` command."""
    from .errors import DataError

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "proteins", None) == 0:
        args.proteins = None
    try:
        args.func(args)
    except (DataError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"protrep {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
