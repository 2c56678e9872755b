"""Command line: ``protrep simulate | inspect | train | embed | predict | evaluate | background | download``.

Every command turns bad input (:class:`protrep.errors.DataError`, ``ValueError``, an
``OSError`` such as a file in the way) into one line on stderr naming the file and the problem,
in the command's words (``--batch-size``, not ``batch_size``), and exit code 2.
"""

import argparse
import dataclasses
import json
import logging
import math
import re
import sys
import typing

__all__ = ["main"]


def _simulate(args):
    from .data.simulate import SimConfig, simulate_dataset

    config = _config_from(args, SimConfig)
    summary = simulate_dataset(args.out, config, workers=args.workers, overwrite=args.overwrite,
                               progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def _inspect(args):
    from .data.readers import open_dataset

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
        elif key == "bytes_on_disk":
            value = f"{value:,} ({value / 1e9:.2f} GB)"
        print(f"{key:<{width}}  {value}")


def _download(args):
    from .data.download import download, list_downloads

    if args.list or not args.names:
        table = list_downloads()
        print(table.to_string(index=False))
        return
    for name in args.names:
        path = download(name, args.dest, force=args.force)
        print(path)


def _convert(args):
    from .data.convert import convert

    summary = convert(args.src, args.out, format=args.format, labels=args.labels, label_key=args.label_key,
                      shard_size=args.shard_size, shard=args.shard, workers=args.workers, split=args.split,
                      seed=args.seed, overwrite=args.overwrite, progress=not args.quiet)
    print(summary["message"])


def _train(args):
    from .data.readers import open_dataset
    from .models import ModelConfig
    from .profiles import identity_classes
    from .training.loop import TrainConfig, train
    from .training.runs import check_trainable

    train_config = _config_from(args, TrainConfig)  # settings first: a bad value is named before data are read
    ds = open_dataset(args.data)
    check_trainable(ds)
    n_classes = identity_classes(args.model, ds) or len(ds.classes) or 15  # PIFiA: one class per training protein
    model_config = _config_from(args, ModelConfig, name=args.model, in_channels=ds.images.shape[1],
                                n_classes=n_classes, image_size=ds.images.shape[-1])
    history = train(model_config, train_config, ds, args.out, resume=args.resume,
                    overwrite=args.overwrite, progress=not args.quiet)
    print(history.to_string(index=False))


def _embed(args):
    import torch.distributed as dist

    from .data.readers import open_dataset
    from .data.tables import cell_feature_paths, feature_columns, protein_table_path
    from .inference.embed import init_distributed, write_streamed_embeddings
    from .training.runs import check_compatible, load_run

    rank, world, device = init_distributed(args.device)  # under torchrun: this rank's share of the batches
    try:
        model, info = load_run(args.run, device=device)
        ds = open_dataset(args.data)
        check_compatible(ds, model.config)
        proteins = write_streamed_embeddings(
            model, ds, args.out, cells=args.cells, layer=args.layer, crops=args.crops, batch_size=args.batch_size,
            device=device, workers=args.workers, progress=not args.quiet)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        cells = {"table": str(args.out), "npy": " + ".join(map(str, cell_feature_paths(args.out))),
                 "none": "(cells not written)"}[args.cells]
        print(f"{len(ds)} cells x {len(feature_columns(proteins))} features -> {cells}; {len(proteins)} proteins -> "
              f"{protein_table_path(args.out)}" + (f" ({world} processes)" if world > 1 else ""))


def _predict(args):
    from pathlib import Path

    from .data.readers import open_dataset
    from .data.tables import protein_distributions, write_table
    from .inference.embed import predict_cells
    from .training.runs import check_compatible, load_run, resolve_device

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
    from .data.standards import load_standards
    from .data.tables import feature_columns
    from .errors import DataError
    from .evaluation.retrieval import _overlap_message, read_embedding

    features = [c.strip() for c in args.features.split(",") if c.strip()] if args.features is not None else None
    embedding = read_embedding(args.embeddings, features=features, feature_prefix=args.feature_prefix,
                               average_cells=args.average_cells)  # a protrep per-cell table is averaged per protein
    standards = load_standards(args.standards)
    named = sorted(set().union(*(set(s["protein"].astype(str)) for s in standards.values())))
    if not embedding["protein"].isin(named).any():
        raise DataError(args.embeddings,
                        _overlap_message(embedding["protein"], named, f"standards of {args.standards}"))
    method = Path(args.embeddings).name
    run = _evaluate_map if args.metric == "map" else _evaluate_ap
    table, shown, header, options = run(args, method, embedding, standards)
    n_features = len(feature_columns(embedding))
    print(f"{method}: {len(embedding)} proteins x {n_features} features, cosine similarity"
          f"{' of z-scored features' if args.standardize else ''}, {header}")
    print(shown.to_string(index=False))
    if args.out:
        records = [{k: _json_value(v) for k, v in row.items()} for row in table.astype(object).to_dict("records")]
        write_json(args.out, {"metric": args.metric, "embeddings": str(args.embeddings),
                              "standards": str(args.standards), "features": embedding.attrs.get("feature_names"),
                              "standardize": args.standardize, "seed": args.seed, "min_size": args.min_size,
                              "max_size": args.max_size, "max_fraction": args.max_fraction, **options,
                              "results": records})
        print(f"\nresults: {args.out}")


def _json_value(value):
    """NaN -> None (null), so the JSON is strict."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _evaluate_ap(args, method, embedding, standards):
    """Global pairwise AP with bootstrap intervals (Razdaibiedina & Brechalov 2022)."""
    from .evaluation.retrieval import evaluate

    table = evaluate({method: embedding}, standards, n_boot=args.n_boot, seed=args.seed, standardize=args.standardize,
                     progress=not args.quiet, min_size=args.min_size, max_size=args.max_size,
                     max_fraction=args.max_fraction)
    shown = table[["standard"]].copy()
    shown["AP [95% CI]"] = [f"{r.ap:.3f} [{r.ap_low:.3f}, {r.ap_high:.3f}]" for r in table.itertuples()]
    shown["maxF1"] = table["max_f1"].map("{:.3f}".format)
    shown["n proteins"] = table["n_proteins"]
    shown["prevalence"] = table["prevalence"].map("{:.4f}".format)
    return table, shown, f"{args.n_boot} bootstrap replicates", {"n_boot": args.n_boot}


def _evaluate_map(args, method, embedding, standards):
    """Per-protein mAP and fraction retrieved (Kalinin et al. 2025)."""
    from .evaluation.mean_ap import map_results_dict, mean_average_precision

    table = mean_average_precision({method: embedding}, standards, null_size=args.null_size, seed=args.seed,
                                   standardize=args.standardize, progress=not args.quiet, min_size=args.min_size,
                                   max_size=args.max_size, max_fraction=args.max_fraction)
    shown = table[["standard"]].copy()
    shown["mAP"] = table["map"].map("{:.3f}".format)
    shown["fraction retrieved (q < 0.05)"] = table["fraction_retrieved"].map("{:.3f}".format)
    shown["n proteins"] = table["n_proteins"]
    summary = {k: {s: _json_value(v) for s, v in d[method].items()} for k, d in map_results_dict(table).items()}
    return table, shown, f"{args.null_size} random rankings per null", {"null_size": args.null_size, **summary}


def _background(args):
    import pandas as pd

    from .atomic import write_json
    from .data.readers import open_dataset
    from .data.tables import write_table
    from .evaluation.background import run_background
    from .training.runs import check_compatible, load_run, resolve_device

    if not args.run:
        raise ValueError("give at least one --run NAME=RUN_DIR (e.g. --run deeploc=data/runs/deeploc): the "
                         "background settings compare trained models' features")
    device = resolve_device(args.device)
    ds = open_dataset(args.data)
    models = {}
    for spec in args.run:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run takes NAME=RUN_DIR (e.g. deeploc=data/runs/deeploc), got {spec!r}")
        model, info = load_run(path, device=device)
        check_compatible(ds, model.config, classes=info.get("classes") if model.is_classifier else None)
        models.setdefault(name, []).append(model)  # a name given again: another training seed
    masked = set(args.masked or [])
    unknown = masked - set(models)
    if unknown:
        raise ValueError(f"--masked names {sorted(unknown)}, which no --run gives")
    result = run_background(ds, models, protocol=args.protocol, masked=masked, handcrafted=not args.no_handcrafted,
                            max_per_class=args.max_per_class, folds=args.folds, n_jobs=args.jobs, seed=args.seed,
                            device=device, threshold=args.threshold, n_boot=args.n_boot, progress=not args.quiet)
    summary = result["summary"]
    table = result["table"]
    settings = [c for c in table.columns.get_level_values(0).unique()]
    if args.protocol == "published":
        print(f"published protocol: mean pairwise accuracy (± 3 SE over classes), {summary['n_cells']} cells")
        shown = {c: [f"{table.loc[m, (c, 'mean')]:.3f} ± {table.loc[m, (c, 'err')]:.3f}" for m in table.index]
                 for c in settings}
    else:
        print(f"strict protocol: mean pairwise accuracy [95% interval over classes and seeds], {summary['n_cells']} "
              f"cells of {summary['n_proteins']} held-out proteins")
        shown = {c: [f"{table.loc[m, (c, 'mean')]:.3f} [{table.loc[m, (c, 'low')]:.3f}, {table.loc[m, (c, 'high')]:.3f}]"
                     for m in table.index] for c in settings}
    print(pd.DataFrame(shown, index=table.index).to_string())
    for name, frac in summary.get("kl_changed_fraction", {}).items():
        print(f"  held-out multi-localized proteins changed without background (KL > {args.threshold} nats), "
              f"{name}: {frac:.1%}")
    write_json(args.out, {"data": str(args.data), "runs": args.run, "seed": args.seed, "folds": args.folds,
                          "max_per_class": args.max_per_class, **summary})
    if args.pairs:
        write_table(result["pairs"], args.pairs)
    print(f"\nresults: {args.out}" + (f", pairs: {args.pairs}" if args.pairs else ""))


def _sweep(args):
    from .atomic import write_json
    from .sweep import grid_table, sweep_point
    from .training.runs import resolve_device

    knobs = {"coupling": args.coupling, "trait_strength": args.trait_strength,
             "function_expression": args.function_expression}
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    result = sweep_point(args.data_dir, args.profile, knobs, seeds=seeds, retrain=args.retrain, n_boot=args.n_boot,
                         seed=args.seed, device=resolve_device(args.device), progress=not args.quiet)
    table = grid_table([result]).set_index("standard")
    print(f"{result['mode']}: {result['n_proteins']} proteins scored, seeds {result['seeds']}")
    print(table.drop(columns=list(knobs)).round(4).to_string())
    write_json(args.out, result)
    print(f"\nresults: {args.out}")


# --------------------------------------------------------------------------- options from configs
def _field_docs(cls):
    """``{field: first sentence of its description}`` from a config's numpydoc Attributes/Parameters."""
    docs, names, lines = {}, [], (cls.__doc__ or "").splitlines()
    for line in lines:
        head = re.match(r"^    ([a-z_][a-z_0-9, ]*) : ", line)
        if head:
            names = [n.strip() for n in head.group(1).split(",")]
            for n in names:
                docs.setdefault(n, "")
        elif names and line.startswith("        ") and line.strip():
            for n in names:
                docs[n] = (docs[n] + " " + line.strip()).strip()
        elif not line.strip():
            names = []
    plain = {k: re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", v).replace("``", "") for k, v in docs.items()}
    return {k: re.split(r"\.\s+(?=[A-Z])", v)[0].rstrip(".") for k, v in plain.items()}


def _optional(kind):
    def parse(text):
        return None if text.lower() in ("none", "null") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _add_config_options(parser, cls, *, skip=(), defaults=None):
    """One ``--option`` per field of the frozen dataclass ``cls`` (types, defaults and help from the class)."""
    hints, docs = typing.get_type_hints(cls), _field_docs(cls)
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if f.name in skip or f.default is dataclasses.MISSING and f.name not in defaults:
            continue
        base = [t for t in typing.get_args(kind) if t is not type(None)] or [kind]
        if not all(t in (int, float, str, bool) for t in base):
            continue  # nested configs and tuples: not on the command line
        default = defaults.get(f.name, f.default)
        option = "--" + f.name.replace("_", "-")
        text = docs.get(f.name, "") + f" (default: {default})"
        if base == [bool]:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            parse = _optional(base[0]) if type(None) in typing.get_args(kind) else base[0]
            parser.add_argument(option, type=parse, default=default, help=text)


def _config_from(args, cls, **fixed):
    """The config ``cls`` built from the parsed options its fields name, plus ``fixed``."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **fixed})


def _simulate_parser(sub):
    from .data.simulate import SimConfig

    s = sub.add_parser("simulate", help="simulate an ORF-GFP yeast screen and write a protrep-cells dataset")
    s.add_argument("--out", required=True, help="destination folder (written atomically)")
    _add_config_options(s, SimConfig)
    s.add_argument("--proteins", dest="n_proteins", type=_optional(int), help=argparse.SUPPRESS)  # the old name
    s.add_argument("--workers", type=int, help="worker processes (default: all cores; output does not depend on it)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset (a folder with "
                   "dataset.json; never a folder of other files)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_simulate)


def _train_parser(sub):
    from .models import REGISTRY, ModelConfig
    from .training.loop import TrainConfig

    t = sub.add_parser("train", help="train a registered model on a dataset's train split")
    t.add_argument("--model", required=True, choices=sorted(REGISTRY))
    t.add_argument("--data", required=True, help="dataset with a split column (e.g. from protrep simulate)")
    t.add_argument("--out", required=True, help="run directory (checkpoints, history, run.json)")
    _add_config_options(t, ModelConfig, skip=("name", "in_channels", "n_classes", "image_size"))
    _add_config_options(t, TrainConfig)
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped; with "
                   "a larger --epochs, --max-steps or --budget-tflop, extend it (finished or not) from its last "
                   "checkpoint, the cosine schedule re-stretched to the new length (recorded in run.json)")
    t.add_argument("--overwrite", action="store_true", help="start again in a directory that holds another run")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)


def _apply_parsers(sub):
    e = sub.add_parser("embed", help="per-cell and per-protein embeddings of a dataset with a trained run")
    e.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="trained run directory (spell it --run-dir under torchrun, where --run is ambiguous)")
    e.add_argument("--data", required=True, help="any dataset protrep reads (gfp + rfp crops)")
    e.add_argument("--out", required=True, help="cell table .csv/.csv.gz/.parquet; proteins go to <stem>.proteins.*")
    e.add_argument("--layer", help="feature layer (default: the run's)")
    e.add_argument("--cells", choices=("table", "npy", "none"), default="table",
                   help="the cell features: table = the cell table at --out (built in memory: up to ~100,000 cells); "
                        "npy = <stem>.cells.npy (float32, n x d) + <stem>.cells<suffix> (metadata rows), streamed, "
                        "for any number of cells; none = the protein table only")
    e.add_argument("--crops", choices=("five", "centre"), default="five",
                   help="DeepLoc: average the centre and four corner crops (five) or the centre crop only (5x faster)")
    e.add_argument("--batch-size", type=int, default=256,
                   help="crops per batch (a cell's features depend on its batch: keep it to compare runs)")
    e.add_argument("--workers", type=int,
                   help="processes reading and stretching crops while the model runs (0: none; default: none on "
                        "two CPU cores or fewer, 1 on more, every spare core up to 8 for a GPU)")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_embed)
    r = sub.add_parser("predict", help="per-protein predicted localization distribution (classifier runs)")
    r.add_argument("--run", required=True)
    r.add_argument("--data", required=True, help="any dataset protrep reads, e.g. a folder of real crops")
    r.add_argument("--out", help="CSV of the distributions (default: RUN/predictions-<data name>.csv)")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=_predict)


def _background_parser(sub):
    b = sub.add_parser("background", help="background confounding (Gupta et al. 2025): linear-SVM accuracy of "
                                          "features under five background settings")
    b.add_argument("data", help="dataset with centre-cell masks (protrep-cells folder)")
    b.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR",
                   help="a trained run and the name it gets in the tables; repeat for several models, and repeat a "
                        "name for its other training seeds")
    b.add_argument("--protocol", choices=("strict", "published"), default="strict",
                   help="strict: held-out proteins, protein-grouped folds, matched donors, every seed (default); "
                        "published: Gupta et al.'s layers, classifier, folds and table")
    b.add_argument("--masked", action="append", metavar="NAME",
                   help="a model trained on masked crops (background_mode='mask'): its crops are masked too")
    b.add_argument("--no-handcrafted", action="store_true", help="leave out the CellProfiler-like features")
    b.add_argument("--max-per-class", type=int, default=1000,
                   help="published: the first cells per class; strict: held-out cells per class (default 1000)")
    b.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    b.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the strict intervals")
    b.add_argument("--jobs", type=int, default=-1, help="parallel processes for the SVM grid (default: all cores)")
    b.add_argument("--threshold", "--kl-threshold", type=float, default=0.1,
                   help="KL divergence (nats) above which a protein's distribution counts as changed")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--out", required=True, help="results JSON (table1, kl_changed_fraction, sensitivity)")
    b.add_argument("--pairs", help="also write every pair's accuracy (.csv/.csv.gz/.parquet)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_background)


def _evaluate_parser(sub):
    v = sub.add_parser("evaluate", help="functional retrieval of a protein embedding on annotation standards: global "
                                        "pairwise AP or per-protein mAP")
    v.add_argument("--embeddings", required=True,
                   help="embedding table (.csv/.csv.gz/.parquet): protein + f0000... from protrep embed (per-cell "
                        "tables are averaged per protein), or protein + any numeric feature columns")
    v.add_argument("--standards", required=True,
                   help="standards folder: a simulated dataset (or its standards/), or the yeast standards folder")
    v.add_argument("--metric", choices=["ap", "map"], default="ap",
                   help="ap: average precision of all protein pairs ranked together (Razdaibiedina & Brechalov "
                        "2022); map: mean per-protein AP and the fraction of proteins retrieved at q < 0.05 "
                        "(Kalinin et al. 2025) (default: ap)")
    features = v.add_mutually_exclusive_group()
    features.add_argument("--features", metavar="A,B,C",
                          help="feature columns, comma-separated (default: f0000... if present, else every numeric "
                               "column but protein and cell metadata; other columns are ignored with a warning)")
    features.add_argument("--feature-prefix", metavar="PREFIX", help="feature columns: those starting with PREFIX")
    v.add_argument("--average-cells", action="store_true", default=None,
                   help="average repeated proteins (rows are cells) in a table not written by protrep embed; "
                        "otherwise a repeated protein is an error")
    v.add_argument("--standardize", action="store_true", help="z-score every feature across proteins first")
    v.add_argument("--n-boot", type=int, default=100, help="ap: bootstrap replicates over proteins (0: no interval)")
    v.add_argument("--null-size", type=int, default=2000,
                   help="map: random rankings per null distribution of a protein's AP (default 2000)")
    v.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (ap) or of the random rankings (map)")
    v.add_argument("--min-size", type=int, default=2, help="drop terms with fewer of the embedding's proteins")
    v.add_argument("--max-size", type=int, help="drop terms with more of the embedding's proteins")
    v.add_argument("--max-fraction", type=float,
                   help="drop terms covering more than this fraction of the annotated proteins (e.g. 0.2 for GO slim "
                        "cytoplasm)")
    v.add_argument("--out", help="write the results (and these options) as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_evaluate)


def _sweep_parser(sub):
    w = sub.add_parser("sweep", help="one point of chapter 7's sweep: a screen simulated at the given knob values, "
                                     "every model's held-out functional AP and the winner with its paired interval")
    w.add_argument("--coupling", type=float, default=1.0, help="how strongly function shares localization, 0-1 "
                   "(default 1: the book's screen)")
    w.add_argument("--trait-strength", type=float, default=1.0, help="how much of function the pattern traits "
                   "carry, 0-1 (default 1)")
    w.add_argument("--function-expression", type=float, default=0.0, help="share of log-expression variance "
                   "carried by function, 0-1 (default 0)")
    w.add_argument("--profile", default="default", help="book profile: point size, seeds, CellProfiler cells "
                   "(default: default)")
    w.add_argument("--data-dir", default="data", help="the book's data folder, with the chapter 2/3 runs "
                   "(default: data)")
    w.add_argument("--retrain", action="store_true", default=None, help="train every model on the point's screen "
                   "instead of embedding it with the chapter 2/3 runs")
    w.add_argument("--seeds", default=None, help="training seeds, comma-separated (default: the profile's)")
    w.add_argument("--n-boot", type=int, default=None, help="bootstrap replicates (default: the profile's)")
    w.add_argument("--seed", type=int, default=0, help="seed of the screen offset, cells and bootstrap")
    w.add_argument("--device", default="auto", help="auto, cpu or cuda")
    w.add_argument("--out", required=True, help="results JSON (written atomically)")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.set_defaults(func=_sweep)


def _data_parsers(sub):
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


def _convert_parser(sub):
    from .data.convert import CONVERT_FORMATS
    from .data.shards import DEFAULT_SHARD_SIZE

    def job(text):
        i, _, n = text.partition("/")
        if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
            raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n (e.g. 0/8), got {text!r}")
        return int(i), int(n)

    def fractions(text):
        try:
            return tuple(float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected fractions such as 0.7,0.15,0.15, got {text!r}") from None

    c = sub.add_parser("convert", help="convert crops (WT2 crop tree, DeepLoc HDF5, HPA crops or Kaggle, "
                                       "protrep-cells) to a sharded protrep-cells dataset, resumably")
    c.add_argument("src", help="source file or folder")
    c.add_argument("--out", required=True, help="output folder (a re-run with the same options resumes it)")
    c.add_argument("--format", choices=CONVERT_FORMATS, help="source format (default: detected)")
    c.add_argument("--labels", help="localization table joined by protein: Huh 2003 yeastgfp CSV, or a CSV/TSV "
                                    "with columns protein, localization")
    c.add_argument("--label-key", choices=("auto", "orf", "gene", "protein"), default="auto",
                   help="table column matched to the protein names, case-insensitively (default: the best match)")
    c.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help=f"crops per shard "
                                                                              f"(default {DEFAULT_SHARD_SIZE})")
    c.add_argument("--shard", type=job, default=(0, 1), metavar="I/N",
                   help="convert only shards k with k %% N == I (job I of a cluster array of N)")
    c.add_argument("--workers", type=int, help="worker processes (default: all cores; output does not depend on it)")
    c.add_argument("--split", type=fractions, default=(0.7, 0.15, 0.15),
                   help="train,val,test fractions of proteins (default 0.7,0.15,0.15)")
    c.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    c.add_argument("--overwrite", action="store_true", help="replace a finished dataset or another conversion "
                                                            "at --out (never a folder of other files)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)


def _parser():
    p = argparse.ArgumentParser(prog="protrep", description="Protein representations from single-cell microscopy.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", required=True)
    for build in (_simulate_parser, _data_parsers, _train_parser, _apply_parsers, _background_parser,
                  _evaluate_parser, _sweep_parser, _convert_parser):
        build(sub)
    return p


def _flags(parser, command):
    """``{keyword: "--flag"}`` of a command: the library keyword (or config field) each option sets."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = {}
    for action in sub._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.help != argparse.SUPPRESS:
            flags.setdefault(action.dest, longs[0])
    return flags


def _in_flags(message, flags):
    """A library message in the command's words: ``batch_size must be ...`` -> ``--batch-size must be ...``.

    Keywords are replaced where they are keywords: ``name=True`` (a switch), ``name=value``,
    ``name must``, and a keyword with an underscore anywhere it stands alone (not inside a
    path or a dotted name such as ``train.max_steps``).
    """
    for dest, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        name, at = re.escape(dest), r"(?<![\w./-])"
        message = re.sub(rf"{at}{name}=\S+ \({re.escape(flag)}\)|{at}{name} / {re.escape(flag)}", flag, message)
        message = re.sub(rf"{at}{name}=True\b", flag, message)
        message = re.sub(rf"{at}{name}=(?=[^\s,;)])", flag + " ", message)
        message = re.sub(rf"{at}{name}=", flag, message)
        message = re.sub(rf"{at}{name}(?![\w/-])" if "_" in dest else rf"{at}{name}(?= must\b)", flag, message)
    return message


def main(argv=None):
    """Entry point of the ``protrep`` command.

    Bad input (:class:`~protrep.errors.DataError`, ``ValueError``, ``OSError`` such as a
    file in the way) ends with one line on stderr, in the command's words (the flags, not
    the library's keywords), and exit code 2.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if getattr(args, "n_proteins", None) == 0:
        args.n_proteins = None  # huh2003: every ORF
    try:
        args.func(args)
    except (ValueError, OSError) as e:  # DataError is a ValueError
        print(f"protrep {args.command}: error: {_in_flags(str(e), _flags(parser, args.command))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
