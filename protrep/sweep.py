"""What decides the winner: the simulator's assumptions as knobs, swept (chapter 7).

On the simulated screen function reaches the pixels only through what the generative model
ties to it (:mod:`protrep.data.proteome`). Three knobs of :class:`~protrep.data.simulate.SimConfig`
make those ties explicit (defaults: the book's screen):

=======================  =========================================================  =======
knob                     what it sets                                               default
=======================  =========================================================  =======
``coupling``             how strongly processes, pathways and complexes share a      1.0
                         compartment (0: every localization an independent draw)
``trait_strength``       how much of function the four class-separating pattern     1.0
                         traits carry (0: none; only localization carries function)
``function_expression``  share of the variance of log-expression carried by          0.0
                         function: an axis no localization label names
=======================  =========================================================  =======

A **sweep point** draws a fresh screen at the given knob values and scores, by the held-out
functional AP of chapter 4 with paired bootstrap intervals over proteins and seeds, the
embeddings of DeepLoc, PIFiA, Paired Cell Inpainting, the autoencoder and CellProfiler
(:func:`sweep_point`). Two modes:

``reuse`` (the ``default`` and ``quick`` profiles)
    The models trained in chapters 2 and 3 (on the book's screen, every seed) embed the
    point's screen; every protein of it is held out (none was seen in training). This is
    exact in one respect and an approximation in another: no training objective uses
    function (DeepLoc's labels are localization, PIFiA's identity, PCI's and the
    autoencoder's the pixels), and the knobs leave the distribution of a single protein's
    images unchanged (class frequencies, trait and expression spreads are the same at every
    knob value), so the knobs move only what is scored, not what is learned; but the
    training proteins of the book's screen are clustered in trait space the way the default
    knobs cluster them, which could shape what the self-supervised objectives learn.
``retrain`` (the ``full`` profile)
    Every model is trained again, for each seed, on the point's own screen (its training
    proteins), and scored on its test proteins: the experiment without that approximation.

The **calibrated point** (:func:`calibrate`) is where the simulated ratios of the
localization reference's AP to a random ranking's, at the four scales, best match those of
the real Huh et al. 2003 proteome with the real yeast standards (``coupling``, least squares
on the log ratios), and where the AP gained by adding log abundance to localization matches
the real abundance's (``function_expression``). ``trait_strength`` cannot be calibrated from
annotations (it needs images of real patterns), so the calibrated point is a line across it.
"""

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .data.dataset import load_dataset, load_proteins
from .data.proteome import huh2003_proteome, proteome_standards, synthetic_proteome
from .data.simulate import SimConfig, ensure_dataset, find_huh_table
from .data.standards import load_standards
from .data.tables import feature_columns
from .evaluation.cellprofiler import cellprofiler_tables
from .evaluation.handcrafted import protein_tables
from .evaluation.paired import compare_seeds
from .evaluation.retrieval import functional_ap, localization_reference
from .inference.embed import embed_runs, stretched
from .profiles import YEAST_MODELS, BookProfile, book_profile, seed_runs
from .progress import progress as progress_bar
from .training.runs import run_path

__all__ = ["KNOBS", "SWEEP_METHODS", "STANDARDS", "point_label", "sweep_grid", "sweep_point", "reference_ratios",
           "calibrate", "sweep_verdict", "grid_table", "knob_effects", "winners_line"]

log = logging.getLogger(__name__)

KNOBS = ("coupling", "trait_strength", "function_expression")
#: The methods that compete at each point, in the order of the tables.
SWEEP_METHODS = (*YEAST_MODELS, "cellprofiler")
STANDARDS = ("compartments", "processes", "pathways", "complexes")
TERM_FILTER = {"min_size": 2, "max_fraction": 0.3}  # chapter 4's


def _knobs(knobs):
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise ValueError(f"unknown knob(s) {sorted(unknown)}; the knobs are {list(KNOBS)}")
    fields = SimConfig.__dataclass_fields__  # the book's screen: SimConfig's defaults
    out = {k: float(fields[k].default) for k in KNOBS}
    out.update({k: float(v) for k, v in knobs.items()})
    for k, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{k} must be in [0, 1], got {v}")
    return out


def point_label(knobs):
    """Folder name of a point: ``c1.00-t0.50-f0.00`` (coupling, trait strength, function expression)."""
    k = _knobs(knobs)
    return f"c{k['coupling']:.2f}-t{k['trait_strength']:.2f}-f{k['function_expression']:.2f}"


def sweep_grid(levels, *, expression_levels=()):
    """The points of a sweep: ``coupling`` x ``trait_strength`` over ``levels`` (no function
    in expression), then ``function_expression`` over ``expression_levels`` at the book's
    coupling and trait strength (1, 1).

    Returns
    -------
    list of dict
        Knob values of each point.
    """
    points = [_knobs({"coupling": c, "trait_strength": t}) for c in levels for t in levels]
    points += [_knobs({"function_expression": f}) for f in expression_levels if f > 0]
    return points


def _embeddings(book, ds, data_dir, where, *, seeds, retrain, device, progress):
    """Protein tables per learned model and seed: chapter 2/3 runs (reuse) or runs trained on ``ds``."""
    if retrain:
        return {m: [r["protein_table"] for r in seed_runs(m, book, ds, where, seeds=seeds, device=str(device),
                                                          budget_tflop=book.sweep_budget_tflop,
                                                          progress=progress).values()]
                for m in YEAST_MODELS}
    runs = {m: [run_path(data_dir, m, book.name, seed=s) for s in seeds] for m in YEAST_MODELS}
    missing = [str(r) for rs in runs.values() for r in rs if not (r / "run.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no trained run at {missing[0]} (and {len(missing) - 1} more): run chapters 2 and 3 "
                                "first, or sweep with retrain=True")
    images = stretched(ds)  # one percentile stretch for every model and seed
    return {m: embed_runs(rs, images, device=device) for m, rs in runs.items()}


def sweep_point(data_dir, profile, knobs, *, seeds=None, retrain=None, n_boot=None, seed=0, device="cpu",
                progress=False):
    """Simulate a screen at ``knobs``, embed or train every model on it, and score it.

    Parameters
    ----------
    data_dir : str or Path
        The book's data folder: chapter 2/3 runs under ``runs/``; the point's screen (and its
        runs when retraining) go to ``sweep/<profile>/<point_label>/``, reused when their
        configuration is unchanged.
    profile : str or BookProfile
        Gives the point's screen (``sweep_screen`` with the knobs set), CellProfiler cells,
        the retraining budget and the default mode.
    knobs : dict
        Any of :data:`KNOBS`; the others keep the book's values.
    seeds : sequence of int, optional
        Training seeds (default: the profile's).
    retrain : bool, optional
        Train every model on the point's screen (``retrain``) instead of embedding it with
        the chapter 2/3 runs (``reuse``); default: the profile's ``sweep_retrain``.
    n_boot : int, optional
        Bootstrap replicates (default: the profile's).
    seed : int
        Seed of the point's screen offset (the screen is seeded ``sweep_screen.seed``), the
        CellProfiler cells and the bootstrap.
    device : str
    progress : bool

    Returns
    -------
    dict
        ``knobs``, ``mode``, ``n_proteins`` (scored), ``seeds``, ``ap[method][standard]`` (mean
        over seeds), ``ap_low``/``ap_high``, ``prevalence[standard]``,
        ``localization_reference[standard]``, ``winner[standard]``, ``runner_up[standard]``
        and ``interval[standard]`` (``comparison`` winner-runner-up, ``diff``, ``low``,
        ``high``, ``verdict``: *ahead* when the paired 95% interval excludes 0, else *not
        separable*).
    """
    book = profile if isinstance(profile, BookProfile) else book_profile(profile)
    knobs = _knobs(knobs)
    seeds = [int(s) for s in (book.seeds if seeds is None else seeds)]
    retrain = book.sweep_retrain if retrain is None else bool(retrain)
    where = Path(data_dir) / "sweep" / book.name / point_label(knobs)
    screen = book.sweep_screen.replace(seed=book.sweep_screen.seed + seed, **knobs)
    ensure_dataset(where / "dataset", screen, progress=progress)
    ds, proteins = load_dataset(where / "dataset"), load_proteins(where / "dataset")
    groups = _embeddings(book, ds, data_dir, where, seeds=seeds, retrain=retrain, device=device, progress=progress)
    train = proteins.loc[proteins["split"] == "train", "protein"].tolist()
    scored = proteins.loc[proteins["split"] == "test", "protein"].tolist() if retrain else proteins["protein"].tolist()
    if book.sweep_cellprofiler == "cp-measure":
        cp, _ = cellprofiler_tables(ds, cells_per_protein=book.sweep_cellprofiler_cells, seed=seed,
                                    fit_proteins=train if retrain else None, cache_dir=where / "cellprofiler",
                                    progress=progress)
    else:  # the vectorised CellProfiler-like features of chapter 4, z-scored across proteins as cp-measure's are
        cp = protein_tables(ds, seed=seed)[0]
        cols = feature_columns(cp)
        sd = cp[cols].std().replace(0, 1).fillna(1)
        cp[cols] = ((cp[cols] - cp[cols].mean()) / sd).fillna(0.0)
    groups["cellprofiler"] = [cp]
    groups["localization_reference"] = [localization_reference(proteins)]
    comparisons = [f"{a}-{b}" for a, b in itertools.combinations(SWEEP_METHODS, 2)]
    table, paired = compare_seeds(groups, load_standards(where / "dataset"), comparisons=comparisons, proteins=scored,
                                  n_boot=n_boot or book.n_boot, seed=seed, progress=False, **TERM_FILTER)
    return {"knobs": knobs, "mode": "retrain" if retrain else "reuse", "n_proteins": len(scored), "seeds": seeds,
            "cellprofiler": book.sweep_cellprofiler, **_point_summary(table, paired)}


def _point_summary(table, paired):
    """AP per method and standard, the winner and its paired interval against the runner-up."""
    ap = table.pivot(index="method", columns="standard", values="ap")
    out = {key: {m: {s: float(ap_col.loc[m, s]) for s in ap.columns} for m in SWEEP_METHODS}
           for key, ap_col in (("ap", ap), ("ap_low", table.pivot(index="method", columns="standard", values="ap_low")),
                               ("ap_high", table.pivot(index="method", columns="standard", values="ap_high")))}
    out["prevalence"] = {s: float(v) for s, v in table.groupby("standard")["prevalence"].first().items()}
    out["localization_reference"] = {s: float(ap.loc["localization_reference", s]) for s in ap.columns}
    out["winner"], out["runner_up"], out["interval"] = {}, {}, {}
    by_pair = paired.set_index(["comparison", "standard"])
    for s in ap.columns:
        ranked = ap.loc[list(SWEEP_METHODS), s].dropna().sort_values(ascending=False, kind="stable")
        if len(ranked) < 2:  # a standard without positive pairs among the scored proteins
            out["winner"][s] = out["runner_up"][s] = None
            out["interval"][s] = {"comparison": None, "diff": float("nan"), "low": float("nan"),
                                  "high": float("nan"), "verdict": "undefined"}
            continue
        w, r = ranked.index[0], ranked.index[1]
        if (f"{w}-{r}", s) in by_pair.index:
            row = by_pair.loc[(f"{w}-{r}", s)]
            diff, low, high = float(row["diff"]), float(row["low"]), float(row["high"])
        else:
            row = by_pair.loc[(f"{r}-{w}", s)]
            diff, low, high = -float(row["diff"]), -float(row["high"]), -float(row["low"])
        verdict = "ahead" if low > 0 else "not separable"  # the winner leads, so its interval never lies below 0
        out["winner"][s], out["runner_up"][s] = w, r
        out["interval"][s] = {"comparison": f"{w}-{r}", "diff": diff, "low": low, "high": high, "verdict": verdict}
    return out


def grid_table(grid):
    """One row per (point, standard): the knobs, each method's AP, the winner and its interval."""
    rows = []
    for point in grid:
        for s in point["winner"]:
            iv = point["interval"][s]
            rows.append({**point["knobs"], "standard": s, **{m: point["ap"][m][s] for m in SWEEP_METHODS},
                         "localization_reference": point["localization_reference"][s],
                         "prevalence": point["prevalence"][s], "winner": point["winner"][s],
                         "runner_up": point["runner_up"][s], "diff": iv["diff"], "low": iv["low"],
                         "high": iv["high"], "verdict": iv["verdict"]})
    return pd.DataFrame(rows)


def knob_effects(levels, *, n_proteins=2000, seed=0):
    """What each knob does to a simulated proteome, one knob at a time (the others at the book's values).

    Returns
    -------
    DataFrame
        One row per (knob, level): ``same_compartment`` (share of complex-member pairs with
        the same primary class), ``trait_r`` and ``abundance_r`` (correlation of trait 0 and
        of log abundance between complex members), and the marginals that must not move:
        ``class_tv`` (total variation distance of the primary-class frequencies from the
        book's proteome), ``trait_sd`` and ``log_abundance_sd``.
    """
    base = synthetic_proteome(n_proteins, seed=seed)
    base_freq = base["primary"].value_counts(normalize=True)
    rows = []
    for knob in KNOBS:
        for level in levels:
            t = synthetic_proteome(n_proteins, seed=seed, **{knob: float(level)})
            members = t[t["complex"] != ""]
            a, b = (np.concatenate(x) for x in zip(*[(g.index[:-1], g.index[1:])
                                                     for _, g in members.groupby("complex")]))
            freq = t["primary"].value_counts(normalize=True).reindex(base_freq.index, fill_value=0)
            log_ab = np.log(t["abundance"].to_numpy())
            primary = t["primary"].to_numpy()
            rows.append({"knob": knob, "level": float(level), "same_compartment": float((primary[a] == primary[b]).mean()),
                         "trait_r": float(np.corrcoef(t.loc[a, "trait_0"], t.loc[b, "trait_0"])[0, 1]),
                         "abundance_r": float(np.corrcoef(log_ab[a], log_ab[b])[0, 1]),
                         "class_tv": float(0.5 * (freq - base_freq).abs().sum()),
                         "trait_sd": float(t["trait_0"].std()), "log_abundance_sd": float(log_ab.std())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Calibration to the real proteome


def reference_ratios(proteins, standards):
    """What localization alone, and localization with abundance, retrieve in a proteome.

    Parameters
    ----------
    proteins : DataFrame
        ``protein``, ``localization`` and ``abundance`` columns (a simulated proteome or the
        Huh 2003 table as :func:`protrep.data.proteome.huh2003_proteome` returns it).
    standards : dict of str to DataFrame

    Returns
    -------
    DataFrame
        One row per standard: ``localization_ap``, ``abundance_ap`` (localization + log
        abundance, :func:`~protrep.evaluation.retrieval.localization_reference`),
        ``prevalence``, ``ratio`` (localization AP / prevalence: how many times a random
        ranking) and ``abundance_gain`` (abundance AP / localization AP).
    """
    rows = {}
    for name, standard in standards.items():
        loc = functional_ap(localization_reference(proteins), standard, **TERM_FILTER)
        both = functional_ap(localization_reference(proteins, abundance=True), standard, **TERM_FILTER)
        rows[name] = {"localization_ap": loc["ap"], "abundance_ap": both["ap"], "prevalence": loc["prevalence"],
                      "ratio": loc["ap"] / loc["prevalence"], "abundance_gain": both["ap"] / loc["ap"]}
    return pd.DataFrame(rows).T.rename_axis("standard")


def _simulated_ratios(n_proteins, seed, min_per_class, **knobs):
    table = synthetic_proteome(n_proteins, seed=seed, min_per_class=min_per_class, **knobs)
    return reference_ratios(table, proteome_standards(table))


def calibrate(real_standards, *, huh_table=None, n_proteins=1000, levels=np.linspace(0, 1, 11),
              expression_levels=np.linspace(0, 1, 5), min_per_class=4, seed=0, progress=True):
    """Knob values at which the simulated proteome retrieves function like the real one.

    ``coupling``: the level whose localization-reference AP / prevalence ratios at the four
    scales are closest to the real ratios (least squares on their logarithms).
    ``function_expression``: then, at that coupling, the level whose gain from adding log
    abundance to localization (:func:`reference_ratios`' ``abundance_gain``) is closest to
    the real abundance's, over the three functional scales (compartments are localization).

    Parameters
    ----------
    real_standards : dict of str to DataFrame
        The real yeast standards (:func:`protrep.data.standards.load_yeast_standards`).
    huh_table : str or Path, optional
        The Huh 2003 table (found as the simulator finds it when None).
    n_proteins : int
        ORFs of the real proteome drawn (None: all) and proteins of each simulated one.
    levels, expression_levels : sequence of float
        Candidate values of ``coupling`` and ``function_expression``.
    min_per_class, seed : int
        Of the simulated proteomes (and the ORF draw).
    progress : bool

    Returns
    -------
    dict
        ``coupling``, ``function_expression``, ``trait_strength`` (None: not identifiable
        from annotations), ``target`` and ``achieved`` (``{"ratio": {standard: ...},
        "abundance_gain": {...}}``), ``method`` (a sentence) and ``curves`` (DataFrame: the
        ratios at every candidate, for the plot).
    """
    real_table = huh2003_proteome(find_huh_table(huh_table), n_proteins=n_proteins, seed=seed)
    target = reference_ratios(real_table, real_standards)
    functional = [s for s in STANDARDS[1:] if s in target.index]
    bar = progress_bar(total=len(levels) + len(expression_levels), desc="calibrating", disable=not progress)
    curves = []
    for c in levels:
        r = _simulated_ratios(n_proteins or 1000, seed, min_per_class, coupling=float(c))
        curves.append(r.assign(knob="coupling", level=float(c)).reset_index())
        bar.update()
    coupling_curve = pd.concat(curves)
    common = [s for s in STANDARDS if s in target.index]
    loss = coupling_curve.groupby("level").apply(
        lambda g: float(((np.log(g.set_index("standard").loc[common, "ratio"])
                          - np.log(target.loc[common, "ratio"])) ** 2).sum()), include_groups=False)
    coupling = float(loss.idxmin())
    for f in expression_levels:
        r = _simulated_ratios(n_proteins or 1000, seed, min_per_class, coupling=coupling, function_expression=float(f))
        curves.append(r.assign(knob="function_expression", level=float(f)).reset_index())
        bar.update()
    bar.close()
    curves = pd.concat(curves, ignore_index=True)
    expr = curves[curves["knob"] == "function_expression"]
    loss_f = expr.groupby("level").apply(
        lambda g: float(((g.set_index("standard").loc[functional, "abundance_gain"]
                          - target.loc[functional, "abundance_gain"]) ** 2).sum()), include_groups=False)
    expression = float(loss_f.idxmin())
    achieved = expr[expr["level"] == expression].set_index("standard")
    return {"coupling": coupling, "function_expression": expression, "trait_strength": None,
            "target": {k: target[k].astype(float).to_dict() for k in ("ratio", "abundance_gain")},
            "achieved": {k: achieved[k].astype(float).to_dict() for k in ("ratio", "abundance_gain")},
            "n_orfs": int(len(real_table)),
            "method": (f"coupling: the level of {[round(float(c), 2) for c in levels]} whose localization-reference "
                       "AP / prevalence ratios at the four scales are closest (least squares on log ratios) to the "
                       f"real Huh 2003 proteome's ({len(real_table)} ORFs, real standards); function_expression: the "
                       f"level of {[round(float(f), 2) for f in expression_levels]} whose AP gain from adding log "
                       "abundance to localization is closest at processes, pathways and complexes; trait_strength is "
                       "not identifiable from annotations"),
            "curves": curves}


# ---------------------------------------------------------------------------------------
# Verdicts


def winners_line(point):
    """A point's winners as text: ``standard winner (+diff over runner-up, verdict)``, per standard."""
    parts = []
    for s in STANDARDS:
        iv = point["interval"][s]
        parts.append(f"{s} no positive pairs" if point["winner"][s] is None else
                     f"{s} {point['winner'][s]} ({iv['diff']:+.3f} over {point['runner_up'][s]}, {iv['verdict']})")
    return ", ".join(parts)


def _where(points):
    return "; ".join(point_label(p) for p in points) or "none"


def sweep_verdict(grid, *, calibrated=None, supervised="deeploc"):
    """One sentence per standard: where the supervised model wins separably, where another method does.

    Parameters
    ----------
    grid : list of dict
        :func:`sweep_point` results.
    calibrated : dict, optional
        The :func:`sweep_point` result at the calibrated knobs.
    supervised : str
        The model whose win is the paper's conclusion.

    Returns
    -------
    dict of str to str
    """
    out = {}
    for s in STANDARDS:
        holds = [p["knobs"] for p in grid if p["winner"][s] == supervised and p["interval"][s]["verdict"] == "ahead"]
        flips = [(p["knobs"], p["winner"][s]) for p in grid
                 if p["winner"][s] != supervised and p["interval"][s]["verdict"] == "ahead"]
        tied = [p["knobs"] for p in grid if p["interval"][s]["verdict"] == "not separable"]
        undefined = [p["knobs"] for p in grid if p["interval"][s]["verdict"] == "undefined"]
        text = (f"{s}: {supervised} wins separably at {len(holds)} of {len(grid)} points ({_where(holds)}); "
                f"another method wins separably at {len(flips)} ("
                + ("; ".join(f"{w} at {point_label(k)}" for k, w in flips) or "none")
                + f"); no separable winner at {len(tied)} ({_where(tied)})"
                + (f"; no positive pairs at {_where(undefined)}" if undefined else "") + ".")
        if calibrated is not None:
            iv = calibrated["interval"][s]
            text += (f" At the calibrated point ({point_label(calibrated['knobs'])}) {calibrated['winner'][s]} leads "
                     f"{calibrated['runner_up'][s]} by {iv['diff']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}] "
                     f"({iv['verdict']}).")
        out[s] = text
    return out
