"""Simulated proteomes with functional structure at four scales.

A proteome is a table of proteins, each with a localization (one or more of the 15
classes in :data:`CLASSES`), per-protein pattern traits that the renderer turns into fine
morphology, and an expression level; plus four functional standards (compartments,
processes, pathways, complexes) in long format (``term``, ``protein``).

Generative model (``synthetic`` mode)
-------------------------------------
Proteins are partitioned into *processes*; each process into *pathways*; about half of
the proteins of a pathway form *complexes* of 2 to 6 members. A fifth of the proteins take
part in a second process. Localization and traits are drawn top-down:

* a process draws a compartment from the census; a pathway keeps its process's compartment
  with probability 0.5 c, a complex keeps its pathway's with probability 0.85 c, a complex
  member keeps its complex's with probability 0.9 c and a protein outside complexes keeps
  its pathway's with probability 0.5 c; otherwise a fresh census draw. ``c`` is
  ``coupling`` (default 1: the book's screen; at 0 every localization is an independent
  census draw and localization carries no function). Every level mixes census draws, so
  class frequencies follow the census (Huh et al. 2003, with the 22 Huh compartments
  mapped to 15 classes by :data:`HUH_TO_CLASS`);
* about 30% of proteins (the Huh 2003 fraction) have a second compartment, shared within
  a complex (by the members that keep its compartment); a third of those are
  *heterogeneous*: each cell shows one of the two patterns, drawn by the protein's
  weights, instead of a mixture. A further 8% of single-compartment proteins mislocalize
  to the cytoplasm in a fifth of their cells;
* four pattern traits in (0, 1) (puncta number or texture, spot size or rim width,
  polarization, diffuse background) are the logistic of
  ``s (0.5 z_process + 0.8 z_pathway + 1.2 z_complex) + 0.6 z_protein
  + sqrt((1 - s^2) 2.33) z_extra`` with independent standard normal ``z`` per unit (a
  protein outside complexes has a ``z_complex`` of its own), so complex members share
  most, pathways less, processes less again. ``s`` is ``trait_strength`` (default 1: the
  book's screen); the variance of the sum is 2.69 for every ``s``, and at 0 the traits
  carry no function;
* expression is log-normal, ``log a = log 2000 + sqrt(1 - r) e + sqrt(r) f`` with ``e``
  standard normal per protein and ``f`` a standard normal functional score,
  ``(0.5 u_process + 0.8 u_pathway + 1.2 u_complex + 0.6 u_protein) / sqrt(2.69)`` with
  ``u`` drawn like the ``z`` of the traits but independently of them. ``r`` is
  ``function_expression``: the default 0 (the book's screen) makes expression a nuisance
  that carries no function; above 0 function reaches the pixels through brightness too,
  on an axis a localization classifier is not trained on, as in the real Huh 2003
  abundances.

The draws that only a non-default knob needs (``z_extra``, ``u``) come from random streams
of their own, so at the default knobs the proteome is the book's screen to the byte.

Classes with fewer than ``min_per_class`` proteins are topped up by relabelling proteins
outside complexes, so that a split by protein can hold every class (a deviation from the
census for small proteomes, stated in the config).

``huh2003`` mode uses the real ORFs of the Huh et al. 2003 table with their real
localizations and abundances; traits are then random per protein (no functional structure
beyond localization is simulated) and the real yeast standards are used for evaluation.

References
----------
Huh, W.-K. et al. Global analysis of protein localization in budding yeast. Nature 425,
686-691 (2003).
"""

import logging
import numbers

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["CLASSES", "HUH_CENSUS", "HUH_TO_CLASS", "N_TRAITS", "synthetic_proteome", "huh2003_proteome",
           "proteome_standards"]

log = logging.getLogger(__name__)

CLASSES = (
    "actin", "bud neck", "cell periphery", "cytoplasm", "endosome", "ER", "Golgi", "mitochondrion",
    "nucleus", "nuclear periphery", "nucleolus", "spindle pole", "peroxisome", "vacuolar membrane", "vacuole",
)

#: Huh et al. 2003 compartment -> protrep class (None: not simulated). Golgi sub-compartments
#: are merged; lipid particles look like peroxisomes (small puncta) and microtubule proteins
#: like the spindle at this resolution; "bud" and "punctate composite" have no single pattern.
HUH_TO_CLASS = {
    "actin": "actin", "bud neck": "bud neck", "cell periphery": "cell periphery", "cytoplasm": "cytoplasm",
    "endosome": "endosome", "ER": "ER", "Golgi": "Golgi", "early Golgi": "Golgi", "late Golgi": "Golgi",
    "ER to Golgi": "Golgi", "mitochondrion": "mitochondrion", "nucleus": "nucleus",
    "nuclear periphery": "nuclear periphery", "nucleolus": "nucleolus", "spindle pole": "spindle pole",
    "microtubule": "spindle pole", "peroxisome": "peroxisome", "lipid particle": "peroxisome",
    "vacuolar membrane": "vacuolar membrane", "vacuole": "vacuole", "bud": None, "punctate composite": None,
}

#: Number of ORFs per class in Huh et al. 2003 (4,155 ORFs; counted from the published
#: table with :data:`HUH_TO_CLASS`). Used as the class frequencies of synthetic proteomes.
HUH_CENSUS = {
    "cytoplasm": 1818, "nucleus": 1454, "mitochondrion": 527, "ER": 295, "nucleolus": 164, "vacuole": 162,
    "cell periphery": 159, "Golgi": 150, "bud neck": 98, "spindle pole": 86, "nuclear periphery": 61,
    "vacuolar membrane": 60, "endosome": 49, "peroxisome": 44, "actin": 32,
}

N_TRAITS = 4
_MULTI_FRACTION = 1136 / 4155 + 109 / 4155  # Huh 2003: proteins with two or more compartments
_HETEROGENEOUS_FRACTION = 1 / 3
_MISLOCALIZING_FRACTION = 0.08


def _census_p(classes=CLASSES):
    p = np.array([HUH_CENSUS[c] for c in classes], float)
    return p / p.sum()


def _sizes(rng, total, mean, low):
    """Split ``total`` items into groups of about ``mean`` (at least ``low``) items."""
    sizes = []
    while sum(sizes) < total:
        sizes.append(max(low, int(rng.poisson(mean))))
    sizes[-1] -= sum(sizes) - total
    if sizes[-1] < low and len(sizes) > 1:
        last = sizes.pop()
        sizes[-1] += last
    return sizes


def _secondary(rng, primary, p):
    """A second compartment: cytoplasm and nucleus pair up most often (Huh 2003)."""
    q = p.copy()
    cyto, nuc = CLASSES.index("cytoplasm"), CLASSES.index("nucleus")
    if primary == cyto:
        q[nuc] *= 6
    elif primary == nuc:
        q[cyto] *= 6
    q[primary] = 0
    return int(rng.choice(len(q), p=q / q.sum()))


def synthetic_proteome(n_proteins, *, seed=0, min_per_class=4, coupling=1.0, trait_strength=1.0,
                       function_expression=0.0):
    """Draw a synthetic proteome with functional structure at four scales.

    The defaults of the three knobs give the book's screen, to the byte (see the module
    docstring). ``trait_strength`` changes only the traits and ``function_expression`` only
    the abundances: what they add is drawn from streams of their own. ``coupling`` changes
    how many draws the localizations take from the main stream, so with it every column
    changes draw by draw, though only the localizations change in distribution.

    Parameters
    ----------
    n_proteins : int
        Number of proteins; at least ``min_per_class * 15``.
    seed : int
        Seed; the same seed gives the same proteome.
    min_per_class : int
        Minimum number of proteins whose primary class is each class.
    coupling : float, default 1.0
        In [0, 1]: how strongly function shares localization. Multiplies the four
        probabilities with which a unit keeps the compartment of the unit above it; at 0
        every localization is an independent census draw.
    trait_strength : float, default 1.0
        In [0, 1]: the weight ``s`` of the functional part of the pattern traits. The rest
        of their variance comes from per-protein noise, so their spread is the same for
        every ``s``; at 0 the traits carry no function.
    function_expression : float, default 0.0
        In [0, 1]: the share ``r`` of the variance of log-abundance carried by a functional
        score (as in the real Huh 2003 abundances); at 0 expression carries no function.

    Returns
    -------
    proteins : DataFrame
        One row per protein: ``protein``, ``localization`` (``;``-joined, primary first),
        ``primary``, ``secondary`` (``""`` if none), ``weight`` (of the primary pattern),
        ``heterogeneous``, ``mislocalizing``, ``abundance``, ``trait_0`` ...
        ``trait_3``, ``process``, ``process2``, ``pathway``, ``complex``.
    """
    n_classes = len(CLASSES)
    if n_proteins < min_per_class * n_classes:
        raise ValueError(f"n_proteins={n_proteins} is too small: at least {min_per_class * n_classes} are needed "
                         f"for {min_per_class} proteins in each of {n_classes} classes (lower min_per_class)")
    for name, value in [("coupling", coupling), ("trait_strength", trait_strength),
                        ("function_expression", function_expression)]:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1 (inclusive), got {value!r}")
    rng = np.random.default_rng([seed, 1])  # the main stream: the book's screen at the default knobs
    table = pd.DataFrame(_draw_proteins(rng, np.random.default_rng([seed, 2]), n_proteins, coupling=coupling,
                                        trait_strength=trait_strength))
    _top_up_classes(table, rng, min_per_class)
    # moonlighting: a fifth of proteins take part in a second process
    n_proc = table["process"].nunique()
    second_proc = rng.integers(0, n_proc, len(table))
    moon = rng.random(len(table)) < 0.2
    table["process2"] = [f"process_{k:03d}" if m else "" for k, m in zip(second_proc, moon)]
    table.loc[table["process2"] == table["process"], "process2"] = ""
    # expression: log-normal, spread like Huh 2003 abundances; a share r of its variance carries function
    log_abundance = rng.normal(np.log(2000), 1.0, len(table))
    if function_expression > 0:  # at r = 0 the draw is used as is (the book's screen, to the byte)
        e = log_abundance - np.log(2000)
        f = _functional_score(table, np.random.default_rng([seed, 3]))
        log_abundance = np.log(2000) + np.sqrt(1 - function_expression) * e + np.sqrt(function_expression) * f
    table["abundance"] = np.exp(log_abundance).round(0)
    return _finish(table)


#: Variance of the functional part ``0.5 z_process + 0.8 z_pathway + 1.2 z_complex`` of the traits.
_FUNCTION_VAR = 0.5 ** 2 + 0.8 ** 2 + 1.2 ** 2
_PROTEIN_SD = 0.6  # weight of the per-protein part of traits and of the functional score


def _draw_proteins(rng, rng_extra, n_proteins, *, coupling, trait_strength):
    """Draw the functional hierarchy top-down: one row (dict) per protein, before the class top-up.

    ``rng`` is the main stream; at ``coupling = trait_strength = 1`` its draws are those of
    the book's screen. ``rng_extra`` feeds only the function-free part of the traits that
    replaces the functional part when ``trait_strength < 1``.
    """
    p = _census_p()
    draw = lambda: int(rng.choice(len(CLASSES), p=p))  # noqa: E731
    z = lambda: rng.standard_normal(N_TRAITS)  # noqa: E731
    extra_sd = np.sqrt((1 - trait_strength ** 2) * _FUNCTION_VAR)
    rows = []
    pid = 0
    for proc, proc_size in enumerate(_sizes(rng, n_proteins, 40, 8)):
        proc_loc, z_proc = draw(), z()
        for path_size in _sizes(rng, proc_size, 12, 3):
            path = f"pathway_{len({r['pathway'] for r in rows}):04d}"
            path_loc = proc_loc if rng.random() < 0.5 * coupling else draw()
            z_path = z()
            n_in_complexes = int(round(path_size * 0.5))
            groups = _sizes(rng, n_in_complexes, 3.5, 2) if n_in_complexes >= 2 else []
            groups += [1] * (path_size - sum(groups))
            for size in groups:
                in_complex = size >= 2
                cplx = f"complex_{pid:05d}" if in_complex else ""
                c_loc = path_loc if rng.random() < 0.85 * coupling else draw()
                c_second = _secondary(rng, c_loc, p) if rng.random() < _MULTI_FRACTION else -1
                c_hetero = rng.random() < _HETEROGENEOUS_FRACTION
                z_cplx = z()
                for _ in range(size):
                    if in_complex:
                        keep = rng.random() < 0.9 * coupling
                        loc = c_loc if keep else draw()
                        second = c_second if keep else \
                            (_secondary(rng, loc, p) if rng.random() < _MULTI_FRACTION else -1)
                        hetero = c_hetero
                        z_c = z_cplx
                    else:
                        loc = path_loc if rng.random() < 0.5 * coupling else draw()
                        second = _secondary(rng, loc, p) if rng.random() < _MULTI_FRACTION else -1
                        hetero = rng.random() < _HETEROGENEOUS_FRACTION
                        z_c = z()
                    if second == loc:
                        second = -1
                    # at trait_strength = 1 the extra term is exactly 0 and zt is the book's
                    zt = trait_strength * (0.5 * z_proc + 0.8 * z_path + 1.2 * z_c) + _PROTEIN_SD * z() \
                        + extra_sd * rng_extra.standard_normal(N_TRAITS)
                    rows.append({
                        "protein": f"P{pid:05d}", "primary_i": loc, "secondary_i": second,
                        "weight": float(rng.uniform(0.55, 0.85)) if second >= 0 else 1.0,
                        "heterogeneous": bool(hetero and second >= 0),
                        "mislocalizing": bool(second < 0 and rng.random() < _MISLOCALIZING_FRACTION),
                        "traits": 1 / (1 + np.exp(-zt / 1.6)),
                        "process": f"process_{proc:03d}", "pathway": path, "complex": cplx,
                    })
                    pid += 1
    return rows


def _functional_score(table, rng):
    """A standard normal score of function, one value per protein (``function_expression``).

    ``(0.5 u_process + 0.8 u_pathway + 1.2 u_complex + 0.6 u_protein) / sqrt(2.69)`` with
    independent standard normal ``u`` per unit, drawn from ``rng``; a protein outside
    complexes is its own complex.
    """
    def per_unit(keys):
        codes, uniques = pd.factorize(keys)
        return rng.standard_normal(len(uniques))[codes]

    complexes = table["complex"].where(table["complex"] != "", table["protein"])
    score = 0.5 * per_unit(table["process"]) + 0.8 * per_unit(table["pathway"]) + 1.2 * per_unit(complexes) \
        + _PROTEIN_SD * rng.standard_normal(len(table))
    return score / np.sqrt(_FUNCTION_VAR + _PROTEIN_SD ** 2)


def _top_up_classes(table, rng, min_per_class):
    """Relabel proteins of over-represented classes (outside complexes first) as rare classes."""
    counts = np.bincount(table["primary_i"], minlength=len(CLASSES))
    for k in np.flatnonzero(counts < min_per_class):
        for _ in range(min_per_class - counts[k]):
            surplus = np.flatnonzero(counts > min_per_class)
            pool = table.index[table["primary_i"].isin(surplus) & (table["complex"] == "")]
            if len(pool) == 0:
                pool = table.index[table["primary_i"].isin(surplus)]
            i = rng.choice(pool)
            counts[table.at[i, "primary_i"]] -= 1
            counts[k] += 1
            table.at[i, "primary_i"] = k
            if table.at[i, "secondary_i"] == k:
                table.at[i, "secondary_i"] = -1


def _finish(table):
    table = table.copy()
    table["primary"] = [CLASSES[i] for i in table["primary_i"]]
    table["secondary"] = [CLASSES[i] if i >= 0 else "" for i in table["secondary_i"]]
    table.loc[table["secondary"] == "", ["weight", "heterogeneous"]] = [1.0, False]
    table["localization"] = [a if not b else f"{a};{b}" for a, b in zip(table["primary"], table["secondary"])]
    traits = np.stack(table.pop("traits").to_numpy())
    for j in range(N_TRAITS):
        table[f"trait_{j}"] = traits[:, j].round(6)
    cols = ["protein", "localization", "primary", "secondary", "weight", "heterogeneous", "mislocalizing",
            "abundance"] + [f"trait_{j}" for j in range(N_TRAITS)] + ["process", "process2", "pathway", "complex"]
    for c in ("process", "process2", "pathway", "complex"):
        if c not in table:
            table[c] = ""
    return table[cols].reset_index(drop=True)


def huh2003_proteome(path, *, n_proteins=None, seed=0, shuffle_abundance=False):
    """Proteome of the real ORFs in the Huh et al. 2003 table.

    Parameters
    ----------
    path : str or Path
        The Huh 2003 ``yeastgfp`` CSV (``protrep download huh2003``).
    n_proteins : int, optional
        Draw this many ORFs at random (seeded); all ORFs with a simulated class if None.
    seed : int
    shuffle_abundance : bool, default False
        Permute the abundances among the drawn ORFs (a stream of its own, so everything
        else is identical to the unshuffled proteome): brightness then carries no function.

    Returns
    -------
    DataFrame
        As :func:`synthetic_proteome`; ``protein`` is the systematic ORF name, ``abundance``
        the published one (the median where "not visualized"; another ORF's when
        shuffled), traits random per protein.
    """
    try:
        raw = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the Huh 2003 table ({e})") from None
    missing = [c for c in ["yORF", "abundance", *HUH_TO_CLASS] if c not in raw.columns]
    if missing:
        raise DataError(path, f"not the Huh 2003 yeastgfp table: missing columns {missing}")
    rng = np.random.default_rng([seed, 2])
    flags = raw[list(HUH_TO_CLASS)].astype(str).apply(lambda c: c.str.upper().str.startswith("T"))
    order = np.argsort([-HUH_CENSUS.get(HUH_TO_CLASS[c] or "", 0) for c in HUH_TO_CLASS], kind="stable")
    huh_cols = [list(HUH_TO_CLASS)[i] for i in order]
    rows = []
    abundance = pd.to_numeric(raw["abundance"], errors="coerce")
    median = float(abundance.median())
    for i, orf in enumerate(raw["yORF"].astype(str).str.upper()):
        classes = []
        for c in huh_cols:  # rarer compartments first: the specific pattern is the primary one
            k = HUH_TO_CLASS[c]
            if flags.iloc[i][c] and k is not None and k not in classes:
                classes.append(k)
        if not classes:
            continue
        classes = classes[::-1][:2][::-1] if len(classes) > 2 else classes
        rarest = sorted(classes, key=lambda k: HUH_CENSUS[k])
        primary, secondary = rarest[0], (rarest[1] if len(rarest) > 1 else "")
        rows.append({
            "protein": orf, "primary_i": CLASSES.index(primary),
            "secondary_i": CLASSES.index(secondary) if secondary else -1,
            "weight": float(rng.uniform(0.55, 0.85)) if secondary else 1.0,
            "heterogeneous": bool(secondary and rng.random() < _HETEROGENEOUS_FRACTION),
            "mislocalizing": bool(not secondary and rng.random() < _MISLOCALIZING_FRACTION),
            "traits": rng.uniform(0.05, 0.95, N_TRAITS),
            "abundance": float(abundance.iloc[i]) if np.isfinite(abundance.iloc[i]) else median,
        })
    table = pd.DataFrame(rows)
    if n_proteins is not None:
        if n_proteins > len(table):
            raise ValueError(f"n_proteins={n_proteins} but the Huh 2003 table has {len(table)} simulated ORFs")
        table = table.iloc[np.sort(rng.choice(len(table), n_proteins, replace=False))]
    table = table.reset_index(drop=True)
    if shuffle_abundance:
        table["abundance"] = np.random.default_rng([seed, 3]).permutation(table["abundance"].to_numpy())
    return _finish(table)


def proteome_standards(proteins):
    """Functional standards of a proteome, in long format (``term``, ``protein``).

    Returns
    -------
    dict of str to DataFrame
        ``compartments`` (every class of a protein's localization) and, where the
        proteome has them, ``processes`` (including second processes), ``pathways`` and
        ``complexes``.
    """
    out = {}
    comp = proteins[["protein", "localization"]].assign(term=proteins["localization"].str.split(";"))
    out["compartments"] = comp.explode("term")[["term", "protein"]]
    procs = pd.concat([proteins[["process", "protein"]].rename(columns={"process": "term"}),
                       proteins[["process2", "protein"]].rename(columns={"process2": "term"})])
    for name, table in [("processes", procs),
                        ("pathways", proteins[["pathway", "protein"]].rename(columns={"pathway": "term"})),
                        ("complexes", proteins[["complex", "protein"]].rename(columns={"complex": "term"}))]:
        table = table[table["term"].astype(str) != ""]
        if len(table):
            out[name] = table
    return {k: v.drop_duplicates().sort_values(["term", "protein"]).reset_index(drop=True) for k, v in out.items()}
