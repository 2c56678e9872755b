"""Embedding and prediction tables: one row per cell or per protein, and their files.

Embedding tables (``protrep embed``), one row per cell or per protein:

=================  ==========================================================
``protein``        protein id
cell metadata      ``plate, well, field, cell, split, label`` where the dataset has them
                   (cell table only); ``n_cells`` (protein table only)
``f0000`` ...      the features, float32, in the order of the model's layer
=================  ==========================================================

The protein embedding is the mean of its cells' embeddings (Razdaibiedina & Brechalov
2022). Files are CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, if pyarrow is
installed); ``protrep embed --out FILE`` writes the cell table to FILE and the protein
table beside it as ``<stem>.proteins<suffix>``. Plain pandas: evaluation reads these
without torch.

A cell table of a million cells is too big for CSV: ``protrep embed --cells npy`` writes the
cell features as a float32 ``(n, d)`` array ``<stem>.cells.npy`` and the cell metadata
(``protein, plate, well, ...``, row ``i`` describing array row ``i``) as the table
``<stem>.cells<suffix>`` (:func:`cell_feature_paths`; :func:`read_cell_features` reads
both back, the array memory-mapped); the protein table is the same in every form.

Embeddings made elsewhere need not follow this layout: :func:`embedding_features` finds
the features of any table with a ``protein`` column (every numeric column but the
metadata, or the columns named), and :func:`protein_embedding` turns it into a checked
protein table in the layout above.
"""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_file
from ..errors import DataError

__all__ = ["METADATA_COLUMNS", "embedding_features", "embedding_tables", "feature_columns", "protein_distributions",
           "protein_embedding", "protein_table_path", "read_table", "write_table", "cell_metadata", "protein_table",
           "cell_feature_paths", "read_cell_features"]

logger = logging.getLogger(__name__)

_CELL_META = ["protein", "plate", "well", "field", "cell", "split", "label"]
#: Columns of an embedding table that are never features, even when numeric.
METADATA_COLUMNS = [*_CELL_META, "n_cells"]


def embedding_tables(ds, features):
    """Cell and protein embedding tables (see the module docstring) from (n, d) features."""
    features = np.asarray(features, np.float32)
    if len(features) != len(ds):
        raise ValueError(f"{len(features)} feature rows for {len(ds)} cells")
    names = [f"f{j:04d}" for j in range(features.shape[1])]
    meta = ds.meta[[c for c in _CELL_META if c in ds.meta]].reset_index(drop=True)
    cells = pd.concat([meta, pd.DataFrame(features, columns=names)], axis=1)
    grouped = cells.groupby("protein", sort=True)
    proteins = grouped[names].mean().astype(np.float32)
    proteins.insert(0, "n_cells", grouped.size())
    return cells, proteins.reset_index()


def feature_columns(table):
    """Names of the feature columns (``f0000``, ``f0001``, ...) of an embedding table."""
    return [c for c in table.columns if re.fullmatch(r"f\d{4,}", str(c))]


def _numeric(series):
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _named_features(table, features, prefix):
    if features is not None and prefix is not None:
        raise ValueError("give either features or feature_prefix, not both")
    if features is not None:
        names = [features] if isinstance(features, str) else list(features)
        missing = [c for c in names if c not in table.columns]
        if not names or missing:
            raise ValueError(f"feature columns {missing or names} are not in the table (columns: "
                             f"{list(table.columns)[:8]})")
    else:
        names = [c for c in table.columns if str(c).startswith(prefix) and c not in METADATA_COLUMNS]
        if not names:
            raise ValueError(f"no feature columns start with {prefix!r} (columns: {list(table.columns)[:8]})")
    text = [c for c in names if not _numeric(table[c])]
    if text:
        raise ValueError(f"feature columns {text[:5]} are not numeric")
    if len(set(names)) != len(names):
        raise ValueError("feature columns repeat")
    return names


def embedding_features(table, *, features=None, prefix=None):
    """Names of the feature columns of an embedding table, protrep's or any other.

    Parameters
    ----------
    table : DataFrame
    features : sequence of str, optional
        Exactly these columns (all must be numeric).
    prefix : str, optional
        The columns whose name starts with ``prefix`` (all must be numeric).

    Returns
    -------
    list of str
        With neither option: protrep's own feature columns ``f0000, f0001, ...`` when the
        table has them (:func:`feature_columns`; other numeric columns are then ignored,
        with a logged warning), and otherwise every numeric column except the metadata
        :data:`METADATA_COLUMNS` (``protein``, ``plate``, ``well``, ``field``, ``cell``,
        ``split``, ``label``, ``n_cells``). Non-numeric (and boolean) columns are never
        features: they are ignored with a logged warning. Column order is kept.

    Raises
    ------
    ValueError
        If both options are given, a named column is missing or not numeric, or no column
        qualifies (the message says ``no feature columns``).
    """
    if features is not None or prefix is not None:
        return _named_features(table, features, prefix)
    others = [c for c in table.columns if c not in METADATA_COLUMNS]
    own = feature_columns(table)
    names = own or [c for c in others if _numeric(table[c])]
    ignored = [c for c in others if c not in names]
    if ignored:
        logger.warning("ignoring %d columns that are not features: %s%s (choose the features with features= or "
                       "prefix=, --features or --feature-prefix)", len(ignored), ignored[:5],
                       " ..." if len(ignored) > 5 else "")
    if not names:
        raise ValueError(f"no feature columns: no numeric column besides the metadata (columns: "
                         f"{list(table.columns)[:8]})")
    return names


def _proteins_have(n):
    return "1 protein has" if n == 1 else f"{n} proteins have"


def _check_vectors(proteins, X, source, *, finite_only=False):
    """DataError naming ``source`` and the proteins whose vectors cannot be compared by cosine."""
    problems = [(~np.isfinite(X).all(axis=1), "NaN or infinite values")]
    if not finite_only:
        problems.append((np.isfinite(X).all(axis=1) & ~X.any(axis=1), "an all-zero vector (cosine undefined)"))
    if X.shape[1] > 1 and not finite_only:
        constant = np.isfinite(X).all(axis=1) & X.any(axis=1) & (X.max(axis=1) == X.min(axis=1))
        problems.append((constant, ("a constant vector (every feature equal: a placeholder, not an embedding; "
                                    "its cosine is 1 to every other constant vector)")))
    for bad, what in problems:
        if bad.any():
            shown = pd.unique(np.asarray(proteins)[bad])
            raise DataError(source, f"{_proteins_have(len(shown))} {what}: {shown[:5].tolist()}"
                                    f"{' ...' if len(shown) > 5 else ''}; fix or drop them")
    if not finite_only and len(X) > 1:
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        if np.ptp(unit, axis=0).max() <= 1e-9:
            raise DataError(source, f"all {len(X)} proteins have the same vector (up to scale): cosine similarity "
                                    "ties every pair, so any AP would be the share of positive pairs (the "
                                    "prevalence); check which columns are the features (features=, feature_prefix=)")


def protein_embedding(table, *, features=None, feature_prefix=None, average_cells=None, source="table"):
    """One checked row per protein from an embedding table, in protrep's layout.

    Parameters
    ----------
    table : DataFrame
        A ``protein`` column and feature columns (see :func:`embedding_features`).
    features, feature_prefix : optional
        Which columns are features, as ``features`` and ``prefix`` of
        :func:`embedding_features`.
    average_cells : bool, optional
        Average the rows of each protein (a per-cell table): ``n_cells`` then counts them.
        By default (None) only a per-cell table in protrep's own layout (features
        ``f0000`` ... found without options and cell metadata, ``plate``, ``well``,
        ``field``, ``cell``, ``split`` or ``label``, but no ``n_cells``: as ``protrep
        embed`` writes per cell) is averaged; in any other table, a protein table among them, a repeated protein
        raises (False: always raises).
    source : str or Path
        Named in errors (the file the table came from).

    Returns
    -------
    DataFrame
        A table in protrep's layout is returned with ``protein`` as str and otherwise as
        it is (averaged if need be). Any other becomes ``protein``, ``n_cells`` (when
        averaged) and the features renamed ``f0000``, ``f0001``, ... in the order chosen;
        their names are kept in ``attrs["feature_names"]``.

    Raises
    ------
    DataError
        Naming ``source``: no ``protein`` column or no feature column, a repeated protein
        (unless averaged), a protein whose vector has NaN or infinite values, is all
        zero or constant (listing the first such proteins), or proteins that all have the
        same vector up to scale (every cosine 1: AP would be the prevalence).
    """
    if "protein" not in table.columns:
        raise DataError(source, f"no 'protein' column (columns: {list(table.columns)[:8]}); expected an embedding "
                                "table (protrep embed, or protein + numeric feature columns)")
    try:
        names = embedding_features(table, features=features, prefix=feature_prefix)
    except ValueError as e:
        raise DataError(source, str(e)) from None
    own = features is None and feature_prefix is None and names == feature_columns(table)
    if table["protein"].isna().any():
        raise DataError(source, f"{int(table['protein'].isna().sum())} rows have no protein id")
    table = table.assign(protein=table["protein"].astype(str))
    _check_vectors(table["protein"].to_numpy(), table[names].to_numpy(dtype=np.float64), source, finite_only=True)
    if not own:
        renamed = table[["protein", *[c for c in ("n_cells",) if c in table.columns]]].copy()
        renamed[[f"f{j:04d}" for j in range(len(names))]] = table[names].to_numpy()
        renamed.attrs["feature_names"] = [str(c) for c in names]
        table, names = renamed, [f"f{j:04d}" for j in range(len(names))]
    repeated = table["protein"][table["protein"].duplicated()].unique()
    per_cell = own and "n_cells" not in table.columns and bool(set(table.columns) & set(_CELL_META[1:]))
    if len(repeated) and not (average_cells or (average_cells is None and per_cell)):
        raise DataError(source, f"{_proteins_have(len(repeated))} several rows: {repeated[:5].tolist()}; a protein "
                                "embedding has one row per protein (average the cells of each protein with "
                                "average_cells / --average-cells if these rows are cells)")
    if len(repeated):
        grouped = table.groupby("protein", sort=True)
        means = grouped[names].mean()
        means.insert(0, "n_cells", grouped.size())
        logger.info("%s: averaged %d rows into %d proteins", source, len(table), len(means))
        attrs, table = table.attrs, means.reset_index()
        table.attrs = attrs
    _check_vectors(table["protein"].to_numpy(), table[names].to_numpy(dtype=np.float64), source)  # the proteins
    return table


def protein_distributions(ds, probs, classes):
    """Mean predicted class distribution per protein, with its top class and cell count."""
    table = pd.DataFrame(np.asarray(probs), columns=list(classes))
    table.insert(0, "protein", ds.meta["protein"].to_numpy())
    grouped = table.groupby("protein", sort=True)
    dist = grouped[list(classes)].mean()
    dist.insert(0, "top_class", dist.idxmax(axis=1))
    dist.insert(0, "n_cells", grouped.size())
    return dist.reset_index()


def protein_table_path(path):
    """``emb.parquet`` -> ``emb.proteins.parquet`` (``emb.csv.gz`` -> ``emb.proteins.csv.gz``)."""
    path = Path(path)
    name = path.name
    for suffix in (".csv.gz", ".parquet", ".csv"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".proteins" + suffix)
    raise ValueError(f"{path}: use a .csv, .csv.gz or .parquet file name")


def write_table(table, path):
    """Write a table atomically as CSV or Parquet, chosen by the file name."""
    path = Path(path)
    protein_table_path(path)  # validates the suffix
    if path.name.endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"{path}: writing Parquet needs pyarrow; use .csv or install pyarrow") from None
        with atomic_file(path, "wb") as f:
            table.to_parquet(f, index=False)
    else:
        # gzip level 1: 4x faster than the default 9 on feature tables, 12% larger; mtime 0 keeps
        # the bytes the same from run to run
        gzip = {"method": "gzip", "compresslevel": 1, "mtime": 0}
        with atomic_file(path, "wb") as f:
            table.to_csv(f, index=False, float_format="%.6g", compression=gzip if path.name.endswith(".gz") else None)
    return path


def read_table(path):
    """Read an embedding or prediction table written by :func:`write_table`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        if path.name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"protein": str})
    except Exception as e:  # pandas/pyarrow raise many types for damaged files
        raise DataError(path, f"unreadable table ({type(e).__name__}: {e})") from None


def cell_metadata(meta):
    """The metadata columns of a cell embedding table (``protein, plate, well, field, cell, split, label``
    where ``meta`` has them), in that order, indexed from 0."""
    return meta[[c for c in _CELL_META if c in meta]].reset_index(drop=True)


def protein_table(proteins, sums, counts):
    """A protein embedding table (the layout of :func:`embedding_tables`) from per-protein sums.

    Parameters
    ----------
    proteins : sequence of str, length p
        Protein ids, in the order of the rows of ``sums`` (sorted, as ``embedding_tables`` sorts).
    sums : ndarray, shape (p, d)
        Sum of the features of each protein's cells (float64, so the sum of a million float32
        rows loses nothing that the float32 mean would keep).
    counts : ndarray of int, shape (p,)
        Number of cells of each protein; every count must be positive.

    Returns
    -------
    DataFrame
        ``protein``, ``n_cells`` and the float32 means ``f0000`` ... (``sums / counts``).
    """
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.int64)
    if sums.ndim != 2 or counts.shape != (len(sums),) or len(proteins) != len(sums):
        raise ValueError(f"{len(proteins)} proteins, sums of shape {sums.shape} and counts of shape {counts.shape} "
                         "must agree: (p,), (p, d) and (p,)")
    if len(counts) and counts.min() < 1:
        raise ValueError("every protein needs at least one cell (a count of 0 has no mean)")
    names = [f"f{j:04d}" for j in range(sums.shape[1])]
    table = pd.DataFrame((sums / counts[:, None]).astype(np.float32), columns=names)
    table.insert(0, "n_cells", counts)
    table.insert(0, "protein", proteins)
    return table


def cell_feature_paths(path):
    """Where ``--cells npy`` puts the cells of the embedding ``path``: ``(features .npy, metadata table)``.

    ``emb.csv.gz`` -> ``emb.cells.npy`` and ``emb.cells.csv.gz`` (the table has the suffix of ``path``).
    """
    path = Path(path)
    protein_table_path(path)  # validates the suffix
    suffix = next(s for s in (".csv.gz", ".parquet", ".csv") if path.name.endswith(s))
    stem = path.name[: -len(suffix)]
    return path.with_name(f"{stem}.cells.npy"), path.with_name(f"{stem}.cells{suffix}")


def read_cell_features(path):
    """The cell embedding written with ``--cells npy`` for the embedding ``path``.

    Returns
    -------
    meta : DataFrame
        One row per cell (``protein, plate, well, ...``).
    features : ndarray, float32, shape (n, d)
        Memory-mapped (read only): a million cells are not read into memory until used.

    Raises
    ------
    DataError
        A missing or damaged file, or a table whose rows do not match the array's.
    """
    features_path, meta_path = cell_feature_paths(path)
    if not features_path.is_file():
        raise DataError(features_path, "no such file (written by protrep embed --cells npy)")
    try:
        features = np.load(features_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(features_path, f"unreadable or truncated .npy file ({e})") from None
    meta = read_table(meta_path)
    if len(meta) != len(features):
        raise DataError(meta_path, f"{len(meta)} rows for the {len(features)} rows of {features_path.name}")
    return meta, features
