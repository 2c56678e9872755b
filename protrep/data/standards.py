"""Functional annotation standards: which proteins share a compartment, process, pathway or complex.

A *standard* is a pandas DataFrame in long format with the columns ``term`` and
``protein``, one row per (term, protein), deduplicated and sorted by term then protein.
Proteins are upper-case systematic ORF names for yeast (``YAL001C``) and gene names for
the Human Protein Atlas (``A1CF``). Two proteins are a positive pair of a standard when
they share at least one term; protein-pair retrieval benchmarks score representations by
how well their similarities recover these pairs [1]_.

Readers here turn the public originals into this form: Huh et al. 2003 localizations [2]_,
SGD's GO-slim mapping, MIPS / BT-409 complexes [3]_, SGD biochemical pathways and HPA
subcellular locations [4]_, plus our simulator's ``standards/<scale>.tsv`` files. Every
problem with an input file raises :class:`~protrep.errors.DataError` naming the file.

References
----------
.. [1] Razdaibiedina, A. & Brechalov, A. (2022). Learning multi-scale functional
   representations of proteins from single-cell microscopy data. MLDD workshop, ICLR.
.. [2] Huh, W.-K. et al. (2003). Global analysis of protein localization in budding yeast.
   Nature 425, 686-691.
.. [3] Friedel, C. C., Krumsiek, J. & Zimmer, R. (2009). Bootstrapping the interactome:
   unsupervised identification of protein complexes in yeast. J Comput Biol 16, 971-987.
.. [4] Thul, P. J. et al. (2017). A subcellular map of the human proteome. Science 356.
"""

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = [
    "STANDARD_COLUMNS",
    "ROOT_TERMS",
    "HUH2003_COMPARTMENTS",
    "YEAST_FILES",
    "read_huh2003",
    "huh2003_standard",
    "read_go_slim",
    "read_complexes",
    "read_sgd_features",
    "read_sgd_pathways",
    "read_hpa_locations",
    "read_standard",
    "filter_terms",
    "validate_orfs",
    "load_yeast_standards",
    "load_standards",
    "standard_sizes",
]

logger = logging.getLogger(__name__)

STANDARD_COLUMNS = ["term", "protein"]

#: Terms that annotate nothing specific: the three GO roots (as spelled in the ontology and
#: in SGD's GO-slim mapping) and SGD's catch-all slim term ``other``. Compared case-blind.
ROOT_TERMS = frozenset({
    "biological_process", "biological process", "cellular_component", "cellular component",
    "molecular_function", "molecular function", "other", "not_yet_annotated",
})

#: The 22 subcellular compartments of Huh et al. 2003, in the column order of yeastgfp.
HUH2003_COMPARTMENTS = (
    "mitochondrion", "vacuole", "spindle pole", "cell periphery", "punctate composite",
    "vacuolar membrane", "ER", "nuclear periphery", "endosome", "bud neck", "microtubule",
    "Golgi", "late Golgi", "peroxisome", "actin", "nucleolus", "cytoplasm", "ER to Golgi",
    "early Golgi", "lipid particle", "nucleus", "bud",
)

#: File names of the yeast standards folder (first name is the one ``protrep download``
#: writes; later ones are accepted too).
YEAST_FILES = {
    "go_slim": ("go_slim_mapping.tab",),
    "features": ("SGD_features.tsv", "SGD_features.tab"),
    "pathways": ("sgd_biochemical_pathways.tab", "biochemical_pathways.tab"),
    "complexes": ("mips_complexes.txt",),
}

_SGD_FEATURE_COLUMNS = 16


# --------------------------------------------------------------------------- helpers

def _make_standard(term, protein):
    """Build a clean long-format standard from two sequences."""
    table = pd.DataFrame({"term": pd.Series(term, dtype=object).astype(str).str.strip(),
                          "protein": pd.Series(protein, dtype=object).astype(str).str.strip()})
    table = table[(table["term"] != "") & (table["protein"] != "")]
    table = table.drop_duplicates().sort_values(STANDARD_COLUMNS, kind="stable").reset_index(drop=True)
    return table


def _read_text(path):
    """Read a text file with any line endings (SGD_features has CR-only endings)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file")
    if not path.is_file():
        raise DataError(path, "not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"unreadable ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not any(line.strip() for line in lines):
        raise DataError(path, "empty file")
    return lines


def _read_tab(path, n_columns, what, *, min_columns=None):
    """Split a headerless tab file into rows of exactly ``n_columns`` fields (trailing empty
    fields beyond ``n_columns`` are allowed); returns (line number, fields) pairs."""
    rows = []
    for number, line in enumerate(_read_text(path), start=1):
        if not line.strip() or line.startswith("!") or line.startswith("#"):
            continue
        fields = line.split("\t")
        while len(fields) > n_columns and fields[-1] == "":
            fields.pop()
        if len(fields) < n_columns and min_columns is not None and len(fields) >= min_columns:
            fields += [""] * (n_columns - len(fields))
        if len(fields) != n_columns:
            raise DataError(path, f"line {number} has {len(fields)} tab-separated columns, expected "
                                  f"{n_columns} ({what})")
        rows.append((number, fields))
    if not rows:
        raise DataError(path, "empty file (no data lines)")
    return rows


def _first_existing(folder, names):
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


# --------------------------------------------------------------------------- Huh et al. 2003

def read_huh2003(path):
    """Read the Huh et al. 2003 yeastgfp localization table (CHNOSZ ``yeastgfp.csv``).

    Parameters
    ----------
    path : str or Path
        CSV with columns ``yORF``, ``gene name``, ``GFP tagged?``, ``GFP visualized?``,
        ``abundance``, ``ambiguous`` and the 22 compartments of
        :data:`HUH2003_COMPARTMENTS` as ``T``/``F``.

    Returns
    -------
    DataFrame
        Indexed by upper-case ORF (index name ``orf``); columns ``gene`` (str, ``""`` when
        unnamed), ``abundance`` (float molecules per cell; NaN where the file says
        ``"not visualized"``, ``"low signal"`` or ``"technical problem"``), ``ambiguous``
        (bool) and one bool column per compartment.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a readable CSV ({e})") from None
    needed = ["yORF", "gene name", "abundance", "ambiguous", *HUH2003_COMPARTMENTS]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; expected the yeastgfp table of Huh et al. 2003")
    if raw.empty:
        raise DataError(path, "empty file (header only)")
    flags = raw[["ambiguous", *HUH2003_COMPARTMENTS]]
    bad = ~flags.isin(["T", "F"])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(path, f"column {flags.columns[col]!r} row {row + 2} is {flags.iat[row, col]!r}, "
                              "expected T or F")
    table = pd.DataFrame(index=pd.Index(raw["yORF"].str.strip().str.upper(), name="orf"))
    if table.index.duplicated().any():
        raise DataError(path, f"duplicate ORFs {sorted(table.index[table.index.duplicated()])[:5]}")
    table["gene"] = raw["gene name"].str.strip().to_numpy()
    table["abundance"] = pd.to_numeric(raw["abundance"], errors="coerce").to_numpy()
    for column in flags.columns:
        table[column] = (flags[column] == "T").to_numpy()
    return table


def huh2003_standard(table):
    """Long-format compartment standard from :func:`read_huh2003` (term = compartment).

    ``ambiguous`` is a flag of the screen, not a place, and is not made a term.
    """
    columns = [c for c in HUH2003_COMPARTMENTS if c in table.columns]
    if not columns:
        raise ValueError("table has no Huh 2003 compartment columns; pass the output of read_huh2003")
    long = table[columns].rename_axis("protein").reset_index().melt(
        id_vars="protein", var_name="term", value_name="present")
    long = long[long["present"].astype(bool)]
    return _make_standard(long["term"], long["protein"])


# --------------------------------------------------------------------------- SGD

def read_go_slim(path, aspect="C", *, feature_types=("ORF",)):
    """Read SGD's ``go_slim_mapping.tab`` as a standard of one GO aspect.

    Parameters
    ----------
    path : str or Path
        Headerless tab file with 7 columns: ORF, gene, SGDID, aspect (``C``, ``F`` or
        ``P``), GO-slim term, GOID, feature type.
    aspect : {"C", "P", "F"}
        Cellular component, biological process or molecular function.
    feature_types : tuple of str
        Feature types kept, matched on the part before ``|`` (``"ORF|Verified"`` is
        ``"ORF"``). The default keeps protein-coding ORFs (verified, uncharacterized and
        dubious) and drops the ``protein complex`` (``CPX-…``) rows SGD added to the file,
        RNA genes, pseudogenes and transposable-element genes.

    Returns
    -------
    DataFrame
        Standard with ``term`` = GO-slim term name and ``protein`` = upper-case ORF.
        GO root terms are kept here; :func:`filter_terms` removes them.
    """
    if aspect not in ("C", "P", "F"):
        raise ValueError(f"aspect must be 'C', 'P' or 'F', got {aspect!r}")
    rows = _read_tab(path, 7, "ORF, gene, SGDID, aspect, term, GOID, feature type")
    keep = set(feature_types)
    orfs, terms = [], []
    for _, f in rows:
        if f[3] == aspect and f[6].split("|")[0] in keep:
            orfs.append(f[0].upper())
            terms.append(f[4])
    if not orfs:
        raise DataError(path, f"no rows of aspect {aspect!r} with feature type in {sorted(keep)}")
    return _make_standard(terms, orfs)


def read_complexes(path):
    """Read a complex list with one complex per line (MIPS, BT-409 from ProCope).

    Parameters
    ----------
    path : str or Path
        Tab-separated ORF names, lower-case in the ProCope files; empty fields (trailing
        tabs) are ignored.

    Returns
    -------
    DataFrame
        Standard with ``term`` = ``"complex_<line number>"`` (1-based) and ``protein`` =
        upper-case ORF.
    """
    terms, proteins = [], []
    for number, line in enumerate(_read_text(path), start=1):
        for name in line.split("\t"):
            name = name.strip()
            if name:
                if " " in name:
                    raise DataError(path, f"line {number} has a name with spaces ({name!r}); expected "
                                          "tab-separated ORF names")
                terms.append(f"complex_{number}")
                proteins.append(name.upper())
    if not proteins:
        raise DataError(path, "empty file (no complexes)")
    table = _make_standard(terms, proteins)
    order = table["term"].str.slice(len("complex_")).astype(int)
    return table.iloc[np.lexsort((table["protein"].to_numpy(), order.to_numpy()))].reset_index(drop=True)


def read_sgd_features(path):
    """Map yeast gene names, aliases and ORF names to systematic ORF names.

    Parameters
    ----------
    path : str or Path
        SGD ``SGD_features.tab`` (16 tab-separated columns: SGDID, type, qualifier,
        systematic name, gene name, aliases (``|``-separated), …). An optional header line
        starting with ``SGDID`` is skipped; CR, LF or CRLF line endings are all accepted;
        CSV-style quotes around names with commas (``"ADE5,7"``) are removed.

    Returns
    -------
    dict of str to str
        Upper-case name to ORF, for features of type ``ORF``: every ORF maps to itself,
        every standard gene name to its ORF, and every alias that is a single word, names
        one ORF only, and is not itself an ORF or standard gene name, to its ORF.
    """
    rows = _read_tab(path, _SGD_FEATURE_COLUMNS, "SGD_features.tab layout", min_columns=6)
    if rows and rows[0][1][0] == "SGDID":
        rows = rows[1:]
    # Fields with commas are quoted as in CSV ("ADE5,7"); strip the quotes.
    orfs = [tuple(f[i].strip().strip('"').strip() for i in (3, 4, 5)) for _, f in rows if f[1] == "ORF"]
    orfs = [(orf.upper(), gene.upper(), aliases) for orf, gene, aliases in orfs]
    if not orfs:
        raise DataError(path, "no features of type ORF; expected SGD_features.tab")
    mapping = {orf: orf for orf, _, _ in orfs if orf}
    for orf, gene, _ in orfs:
        if gene and gene not in mapping:
            mapping[gene] = orf
    alias_targets = {}
    for orf, _, aliases in orfs:
        for alias in aliases.split("|"):
            alias = alias.strip().upper()
            if alias and " " not in alias and alias not in mapping:
                alias_targets.setdefault(alias, set()).add(orf)
    for alias, targets in alias_targets.items():
        if len(targets) == 1:
            mapping[alias] = next(iter(targets))
    return mapping


def read_sgd_pathways(path, features):
    """Read SGD's biochemical pathways as a standard, genes mapped to ORFs.

    Parameters
    ----------
    path : str or Path
        Headerless tab file with 5 columns: pathway, enzyme, EC number, gene name,
        reference. Rows without a gene name (reactions with no known yeast gene) are
        skipped.
    features : str, Path or dict
        ``SGD_features.tab`` or the name → ORF mapping of :func:`read_sgd_features`.

    Returns
    -------
    DataFrame
        Standard with ``term`` = pathway name and ``protein`` = ORF. Gene names missing
        from the mapping are dropped with a logged warning; their number and names are in
        ``result.attrs["n_unmapped"]`` and ``result.attrs["unmapped"]``.
    """
    mapping = features if isinstance(features, dict) else read_sgd_features(features)
    rows = _read_tab(path, 5, "pathway, enzyme, EC, gene name, reference")
    terms, proteins, unmapped = [], [], set()
    for _, f in rows:
        for gene in f[3].split("|"):
            gene = gene.strip()
            if not gene:
                continue
            orf = mapping.get(gene.upper())
            if orf is None:
                unmapped.add(gene)
            else:
                terms.append(f[0])
                proteins.append(orf)
    if not proteins:
        raise DataError(path, "no pathway gene could be mapped to an ORF; is this biochemical_pathways.tab?")
    if unmapped:
        logger.warning("%s: dropped %d gene names not in SGD_features: %s", path, len(unmapped),
                       ", ".join(sorted(unmapped)[:10]))
    table = _make_standard(terms, proteins)
    table.attrs["n_unmapped"] = len(unmapped)
    table.attrs["unmapped"] = sorted(unmapped)
    return table


# --------------------------------------------------------------------------- HPA

_HPA_RELIABILITY = ("Enhanced", "Validated", "Supported", "Approved")


def read_hpa_locations(path, *, reliability=_HPA_RELIABILITY):
    """Read Human Protein Atlas subcellular locations as a standard.

    Parameters
    ----------
    path : str or Path
        ``subcellular_location.tsv`` (or the ``.tsv.zip`` HPA distributes), with columns
        ``Gene name`` and one ``;``-separated location column per reliability level.
    reliability : tuple of str
        Reliability columns whose locations are kept. Releases 17-18 have ``Validated``,
        ``Supported``, ``Approved``, ``Uncertain``; later ones ``Enhanced`` instead of
        ``Validated``. The default keeps every level except ``Uncertain``, the usual
        choice for a standard. Files with none of these columns fall back to
        ``Main location`` plus ``Additional location``.

    Returns
    -------
    DataFrame
        Standard with ``term`` = location (e.g. ``"Nucleoplasm"``) and ``protein`` = gene
        name.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(path, f"not a readable TSV ({e})") from None
    if "Gene name" not in raw.columns:
        raise DataError(path, f"no 'Gene name' column (columns: {list(raw.columns)[:12]}); "
                              "expected HPA subcellular_location.tsv")
    columns = [c for c in reliability if c in raw.columns]
    if not columns:
        columns = [c for c in ("Main location", "Additional location") if c in raw.columns]
    if not columns:
        raise DataError(path, f"none of the location columns {list(reliability)} or 'Main location'")
    terms, proteins = [], []
    for column in columns:
        for gene, value in zip(raw["Gene name"], raw[column]):
            for location in value.split(";"):
                terms.append(location)
                proteins.append(gene)
    table = _make_standard(terms, proteins)
    if table.empty:
        raise DataError(path, f"no locations in columns {columns}")
    return table


# --------------------------------------------------------------------------- our format

def read_standard(path):
    """Read a simulator standard: a tab-separated file with header ``term``, ``protein``.

    Extra columns are allowed and ignored; every line must have as many fields as the
    header.
    """
    lines = [line for line in _read_text(path)]
    header = lines[0].split("\t")
    missing = [c for c in STANDARD_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing columns {missing} (header is {header}); expected a tab-separated "
                              "header 'term<TAB>protein'")
    it, ip = header.index("term"), header.index("protein")
    terms, proteins = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(path, f"line {number} has {len(fields)} tab-separated columns, expected "
                                  f"{len(header)} like the header")
        terms.append(fields[it])
        proteins.append(fields[ip])
    if not terms:
        raise DataError(path, "empty file (header only)")
    return _make_standard(terms, proteins)


# --------------------------------------------------------------------------- filtering, checks

def filter_terms(standard, *, min_size=2, max_size=None, max_fraction=None):
    """Drop terms too small, too broad or without meaning for co-annotation benchmarks.

    As in published protein-pair benchmarks on GO slim, complexes and pathways, root
    terms (:data:`ROOT_TERMS`: ``biological_process``, ``cellular component``, ``other``,
    …) are always dropped; so are terms with fewer than ``min_size`` proteins (a single
    protein makes no pair), more than ``max_size`` proteins, or covering more than
    ``max_fraction`` of all proteins annotated in ``standard`` (e.g. GO slim
    ``organelle``, which would make most pairs positive).

    Parameters
    ----------
    standard : DataFrame
        Long format with columns ``term`` and ``protein``.
    min_size : int, default 2
    max_size : int, optional
    max_fraction : float in (0, 1], optional

    Returns
    -------
    DataFrame
        The rows of the kept terms, in the input's order, index reset.
    """
    missing = [c for c in STANDARD_COLUMNS if c not in getattr(standard, "columns", [])]
    if missing:
        raise ValueError(f"standard must be a DataFrame with columns {STANDARD_COLUMNS}; missing {missing}")
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size}")
    if max_size is not None and max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be at least min_size ({min_size})")
    if max_fraction is not None and not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    sizes = standard.groupby("term", sort=False)["protein"].nunique()
    keep = sizes >= min_size
    if max_size is not None:
        keep &= sizes <= max_size
    if max_fraction is not None:
        n_proteins = standard["protein"].nunique()
        keep &= sizes <= max_fraction * n_proteins
    keep &= ~sizes.index.to_series().astype(str).str.strip().str.lower().isin(ROOT_TERMS).to_numpy()
    kept = set(sizes.index[keep])
    out = standard[standard["term"].isin(kept)].reset_index(drop=True)
    out.attrs = dict(standard.attrs)
    return out


def validate_orfs(standard, known_orfs, path, *, max_shown=5):
    """Raise a DataError when ``standard`` names proteins not in ``known_orfs``.

    Parameters
    ----------
    standard : DataFrame
        Long format with a ``protein`` column.
    known_orfs : iterable of str
        Known names (e.g. the keys or values of :func:`read_sgd_features`).
    path : str or Path
        The file the standard came from, named in the error.
    max_shown : int
        How many unknown names the message lists.
    """
    known = set(known_orfs)
    unknown = sorted(set(standard["protein"]) - known)
    if unknown:
        shown = ", ".join(unknown[:max_shown]) + (", ..." if len(unknown) > max_shown else "")
        raise DataError(path, f"{len(unknown)} unknown protein names ({shown}); expected systematic ORF "
                              "names such as YAL001C")


# --------------------------------------------------------------------------- folders

def load_yeast_standards(folder, *, min_size=2, max_size=None, max_fraction=None):
    """Read the four yeast standards of a folder laid out like ``standards/yeast``.

    Parameters
    ----------
    folder : str or Path
        Holds :data:`YEAST_FILES`: ``go_slim_mapping.tab``, ``SGD_features.tsv`` (or
        ``.tab``), ``sgd_biochemical_pathways.tab`` and ``mips_complexes.txt``.
    min_size, max_size, max_fraction
        Passed to :func:`filter_terms`, which also drops GO root terms.

    Returns
    -------
    dict of str to DataFrame
        ``"compartments"`` (GO slim C), ``"processes"`` (GO slim P), ``"pathways"`` (SGD
        pathways mapped to ORFs) and ``"complexes"`` (MIPS), each a standard.
    """
    folder = Path(folder)
    files = {}
    for key, names in YEAST_FILES.items():
        file = _first_existing(folder, names)
        if file is None:
            raise DataError(folder, f"missing {' or '.join(names)}; a yeast standards folder needs "
                                    f"{', '.join(n[0] for n in YEAST_FILES.values())}")
        files[key] = file
    mapping = read_sgd_features(files["features"])
    raw = {
        "compartments": read_go_slim(files["go_slim"], "C"),
        "processes": read_go_slim(files["go_slim"], "P"),
        "pathways": read_sgd_pathways(files["pathways"], mapping),
        "complexes": read_complexes(files["complexes"]),
    }
    return {name: filter_terms(table, min_size=min_size, max_size=max_size, max_fraction=max_fraction)
            for name, table in raw.items()}


def load_standards(folder, **filter_options):
    """Read every standard of a folder.

    Parameters
    ----------
    folder : str or Path
        A yeast standards folder (with ``go_slim_mapping.tab``; see
        :func:`load_yeast_standards`), a simulator ``standards/`` folder of
        ``<scale>.tsv`` files, or a ``protrep-cells`` dataset folder holding ``standards/``.
    **filter_options
        ``min_size``, ``max_size``, ``max_fraction`` for :func:`filter_terms`.

    Returns
    -------
    dict of str to DataFrame
        Standard name (the scale, or the yeast keys) to long-format standard.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(folder, f"is a file, not a standards folder: give the folder of <scale>.tsv files (for a "
                                f".tsv, its folder {folder.parent}), a protrep-cells dataset folder, or a yeast "
                                "standards folder with go_slim_mapping.tab")
    if not folder.is_dir():
        raise DataError(folder, "no such folder")
    if _first_existing(folder, YEAST_FILES["go_slim"]) is not None:
        return load_yeast_standards(folder, **filter_options)
    tsvs = sorted(folder.glob("*.tsv"))
    if not tsvs and (folder / "standards").is_dir():
        return load_standards(folder / "standards", **filter_options)
    if not tsvs:
        raise DataError(folder, "no standards found: expected <scale>.tsv files (term, protein) or "
                                "a yeast folder with go_slim_mapping.tab")
    options = {"min_size": 2, **filter_options}
    return {f.stem: filter_terms(read_standard(f), **options) for f in tsvs}


def _positive_pairs(standard, block=1024):
    """Number of unordered protein pairs that share at least one term."""
    if standard.empty:
        return 0
    proteins, p_idx = np.unique(standard["protein"].to_numpy().astype(str), return_inverse=True)
    terms, t_idx = np.unique(standard["term"].to_numpy().astype(str), return_inverse=True)
    member = np.zeros((len(proteins), len(terms)), dtype=np.float32)
    member[p_idx, t_idx] = 1.0
    total = 0
    for start in range(0, len(proteins), block):
        shared = member[start:start + block] @ member.T > 0
        rows = np.arange(start, start + len(shared))[:, None]
        total += int(np.count_nonzero(shared & (np.arange(len(proteins))[None, :] > rows)))
    return total


def standard_sizes(standards):
    """Summarise standards: terms, proteins and positive protein pairs of each.

    Parameters
    ----------
    standards : dict of str to DataFrame
        Name to long-format standard.

    Returns
    -------
    DataFrame
        Indexed by standard name, columns ``n_terms``, ``n_proteins`` and
        ``n_positive_pairs`` (unordered pairs of distinct proteins sharing a term).
    """
    rows = {}
    for name, table in standards.items():
        rows[name] = {"n_terms": int(table["term"].nunique()),
                      "n_proteins": int(table["protein"].nunique()),
                      "n_positive_pairs": _positive_pairs(table)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["n_terms", "n_proteins", "n_positive_pairs"])
