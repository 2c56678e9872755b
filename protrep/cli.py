"""Command line: ``protrep simulate | inspect | train | embed | predict | evaluate | background | download``.

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


def _train(args):
    from .models import ModelConfig
    from .readers import open_dataset
    from .train import TrainConfig, train

    ds = open_dataset(args.data)
    model_config = ModelConfig(name=args.model, in_channels=ds.images.shape[1], n_classes=len(ds.classes) or 15,
                               image_size=ds.images.shape[-1],
                               width=args.width, feature_layer=args.feature_layer)
    train_config = TrainConfig(epochs=args.epochs or None, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                               seed=args.seed, device=args.device, max_steps=args.max_steps,
                               budget_tflop=args.budget_tflop, init_from=args.init_from, background=args.background)
    history = train(model_config, train_config, ds, args.out, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.quiet)
    print(history.to_string(index=False))


def _embed(args):
    from .inference import embed_cells, feature_columns, protein_table_path, write_embeddings
    from .readers import open_dataset
    from .train import check_compatible, load_run, resolve_device

    device = resolve_device(args.device)
    model, info = load_run(args.run, device=device)
    ds = open_dataset(args.data)
    check_compatible(ds, model.config)
    cells, proteins = write_embeddings(ds, embed_cells(model, ds, layer=args.layer, device=device), args.out)
    print(f"{len(cells)} cells x {len(feature_columns(cells))} features -> "
          f"{args.out}; {len(proteins)} proteins -> {protein_table_path(args.out)}")


def _predict(args):
    from pathlib import Path

    from .inference import predict_cells, protein_distributions, write_table
    from .readers import open_dataset
    from .train import check_compatible, load_run, resolve_device

    device = resolve_device(args.device)
    model, info = load_run(args.run, device=device)
    ds = open_dataset(args.data)
    check_compatible(ds, model.config)
    table = protein_distributions(ds, predict_cells(model, ds, device=device), info["classes"])
    out = Path(args.out) if args.out else Path(args.run) / f"predictions-{Path(args.data).name}.csv"
    write_table(table, out)
    shown = table[["protein", "n_cells", "top_class"]].copy()
    top3 = table[info["classes"]].apply(lambda r: ", ".join(f"{k} {v:.2f}" for k, v in r.nlargest(3).items()), axis=1)
    shown["top three"] = top3
    print(shown.to_string(index=False))
    print(f"\nfull distributions: {out}")


def _evaluate(args):
    from pathlib import Path

    from .atomic import write_json
    from .errors import DataError
    from .functional import _overlap_message, evaluate, read_embedding
    from .inference import feature_columns
    from .standards import load_standards

    embedding = read_embedding(args.embeddings)  # a per-cell table is averaged per protein
    standards = load_standards(args.standards)
    named = sorted(set().union(*(set(s["protein"].astype(str)) for s in standards.values())))
    if not embedding["protein"].isin(named).any():
        raise DataError(args.embeddings,
                        _overlap_message(embedding["protein"], named, f"standards of {args.standards}"))
    method = Path(args.embeddings).name
    table = evaluate({method: embedding}, standards, n_boot=args.n_boot, seed=args.seed, standardize=args.standardize,
                     progress=not args.quiet, min_size=args.min_size, max_size=args.max_size,
                     max_fraction=args.max_fraction)
    shown = table[["standard"]].copy()
    shown["AP [95% CI]"] = [f"{r.ap:.3f} [{r.ap_low:.3f}, {r.ap_high:.3f}]" for r in table.itertuples()]
    shown["maxF1"] = table["max_f1"].map("{:.3f}".format)
    shown["n proteins"] = table["n_proteins"]
    shown["prevalence"] = table["prevalence"].map("{:.4f}".format)
    print(f"{method}: {len(embedding)} proteins x {len(feature_columns(embedding))} features, cosine similarity"
          f"{' of z-scored features' if args.standardize else ''}, {args.n_boot} bootstrap replicates")
    print(shown.to_string(index=False))
    if args.out:
        records = [{k: None if v != v else v for k, v in row.items()}  # NaN -> null: strict JSON
                   for row in table.astype(object).to_dict("records")]
        write_json(args.out, {"embeddings": str(args.embeddings), "standards": str(args.standards),
                              "standardize": args.standardize, "n_boot": args.n_boot, "seed": args.seed,
                              "min_size": args.min_size, "max_size": args.max_size,
                              "max_fraction": args.max_fraction, "results": records})
        print(f"\nresults: {args.out}")


def _background(args):
    from .atomic import write_json
    from .background import format_table1, run_background
    from .inference import write_table
    from .readers import open_dataset
    from .train import check_compatible, load_run, resolve_device

    device = resolve_device(args.device)
    ds = open_dataset(args.data)
    models = {}
    for spec in args.run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run takes NAME=RUN_DIR (e.g. deeploc=data/runs/deeploc), got {spec!r}")
        model, info = load_run(path, device=device)
        check_compatible(ds, model.config, classes=info.get("classes") if model.config.name == "deeploc" else None)
        models[name] = model
    result = run_background(ds, models, handcrafted=not args.no_handcrafted, max_per_class=args.max_per_class,
                            folds=args.folds, n_jobs=args.jobs, seed=args.seed, device=device,
                            threshold=args.kl_threshold, progress=not args.quiet)
    print(f"mean pairwise linear-SVM accuracy (± 3 SE over class pairs), {result['summary']['n_cells']} cells")
    print(format_table1(result["table1"]).to_string())
    if result["kl_changed_fraction"]:
        print(f"\nproteins whose localization changes without background (KL > {args.kl_threshold} nats):")
        for name, frac in result["kl_changed_fraction"].items():
            print(f"  {name}: {frac:.1%}")
    write_json(args.out, {"data": str(args.data), "runs": args.run, "seed": args.seed, "folds": args.folds,
                          "max_per_class": args.max_per_class, **result["summary"]})
    if args.pairs:
        write_table(result["pairs"], args.pairs)
    print(f"\nresults: {args.out}" + (f", pairs: {args.pairs}" if args.pairs else ""))


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

    t = sub.add_parser("train", help="train a model (deeploc, pci, ae, seresnet) on a dataset's train split")
    t.add_argument("--model", required=True, choices=["deeploc", "pci", "ae", "seresnet"])
    t.add_argument("--data", required=True, help="dataset with a split column (e.g. from protrep simulate)")
    t.add_argument("--out", required=True, help="run directory (checkpoints, history, run.json)")
    t.add_argument("--epochs", type=int, default=10, help="at most this many passes (0: no limit; then give "
                   "--budget-tflop or --max-steps)")
    t.add_argument("--budget-tflop", type=float, metavar="TFLOP",
                   help="training compute: stop after this many TFLOP (3 x forward FLOPs per image x images); the "
                        "learning-rate schedule spans it")
    t.add_argument("--init-from", metavar="RUN", help="start from the best weights of this run (fine-tuning)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--width", type=float, default=1.0, help="width multiplier (0.25 for CPU runs)")
    t.add_argument("--feature-layer", help="layer used for embeddings (default: the model's)")
    t.add_argument("--patience", type=int, default=3, help="early stopping: epochs without a lower validation loss")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    t.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="start again in a directory that holds another run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--background", type=float, default=0.0, metavar="SHARE",
                   help="background randomisation: share of training crops whose background is masked, swapped or "
                        "replaced by noise (e.g. 0.5; needs centre-cell masks; default 0: off)")
    t.set_defaults(func=_train)

    e = sub.add_parser("embed", help="per-cell and per-protein embeddings of a dataset with a trained run")
    e.add_argument("--run", required=True)
    e.add_argument("--data", required=True, help="any dataset protrep reads (gfp + rfp crops)")
    e.add_argument("--out", required=True, help="cell table .csv/.csv.gz/.parquet; proteins go to <stem>.proteins.*")
    e.add_argument("--layer", help="feature layer (default: the run's)")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=_embed)

    r = sub.add_parser("predict", help="per-protein predicted localization distribution (deeploc runs)")
    r.add_argument("--run", required=True)
    r.add_argument("--data", required=True, help="any dataset protrep reads, e.g. a folder of real crops")
    r.add_argument("--out", help="CSV of the distributions (default: RUN/predictions-<data name>.csv)")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=_predict)

    b = sub.add_parser("background", help="background confounding (Gupta et al. 2025): linear-SVM accuracy of "
                                          "features under five background settings")
    b.add_argument("data", help="dataset with centre-cell masks (protrep-cells folder)")
    b.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="a trained run and the name it gets in the tables; repeat for several models")
    b.add_argument("--no-handcrafted", action="store_true", help="leave out the CellProfiler-like features")
    b.add_argument("--max-per-class", type=int, default=1000, help="cells per class at most (default 1000)")
    b.add_argument("--folds", type=int, default=5, help="stratified cross-validation folds (default 5)")
    b.add_argument("--jobs", type=int, default=-1, help="parallel processes for the SVM grid (default: all cores)")
    b.add_argument("--kl-threshold", type=float, default=0.1,
                   help="KL divergence (nats) above which a protein's distribution counts as changed")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--out", required=True, help="results JSON (table1, kl_changed_fraction, sensitivity)")
    b.add_argument("--pairs", help="also write every pair's accuracy (.csv/.csv.gz/.parquet)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_background)

    d = sub.add_parser("download", help="download public originals (URLs and checksums are built in)")
    d.add_argument("names", nargs="*", help="what to download; none lists what is available")
    d.add_argument("--dest", default="data/downloads", help="destination folder (default data/downloads)")
    d.add_argument("--force", action="store_true", help="download again even if present")
    d.add_argument("--list", action="store_true", help="list what can be downloaded")
    d.set_defaults(func=_download)

    v = sub.add_parser("evaluate", help="functional AP of a protein embedding on annotation standards (protein pairs)")
    v.add_argument("--embeddings", required=True,
                   help="embedding table (.csv/.csv.gz/.parquet: protein + f0000...; per-cell tables are averaged "
                        "per protein)")
    v.add_argument("--standards", required=True,
                   help="standards folder: a simulated dataset (or its standards/), or the yeast standards folder")
    v.add_argument("--standardize", action="store_true", help="z-score every feature across proteins first")
    v.add_argument("--n-boot", type=int, default=100, help="bootstrap replicates over proteins (0: no interval)")
    v.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    v.add_argument("--min-size", type=int, default=2, help="drop terms with fewer of the embedding's proteins")
    v.add_argument("--max-size", type=int, help="drop terms with more of the embedding's proteins")
    v.add_argument("--max-fraction", type=float,
                   help="drop terms covering more than this fraction of the annotated proteins (e.g. 0.2 for GO slim "
                        "cytoplasm)")
    v.add_argument("--out", help="write the results (and these options) as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_evaluate)
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
