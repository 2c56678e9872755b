"""The book on a user's own screen: which data a chapter runs on, and what it can do there.

Every chapter of the book has the parameters ``dataset`` (None: the simulated screen, as
always), ``standards`` (a folder of functional standards for the user's proteins) and
``labels`` (a localization table joined when a source is converted). :func:`book_data`
turns them, with the chapter's ``profile`` and ``data_dir``, into a :class:`BookData`
that

- makes the data ready (:meth:`BookData.ensure`): simulates the screen, or converts the
  user's source once into ``<data_dir>/user-<name>`` (:func:`user_dataset`; a
  ``protrep-cells`` folder, version 1 or 2, is read where it is);
- loads it (:meth:`BookData.load`), with a protein table (:meth:`BookData.proteins`) and
  the standards, protein names matched to the dataset's (:meth:`BookData.load_standards`,
  :func:`align_standards`);
- names the trained runs so that runs on a user's data never replace the simulated
  book's (:attr:`BookData.tag`, :meth:`BookData.run_profile`);
- says why a part does not run (:meth:`BookData.blocked`): because only the simulator can
  provide it (:data:`SIMULATOR_ONLY`), or because the data are too small for it
  (:func:`user_limits`), and keeps the reasons for the chapter's results JSON
  (:meth:`BookData.results`).

On the simulated screen nothing changes: :meth:`BookData.blocked` is always None, and the
paths, run names and numbers are the book's.
"""

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import read_json
from .data.arrays import is_lazy
from .data.dataset import load_dataset, load_proteins
from .data.proteome import CLASSES
from .data.simulate import dataset_path, ensure_dataset
from .errors import DataError

__all__ = ["BookData", "book_data", "user_dataset", "align_standards", "user_limits", "with_masks",
           "SIMULATOR_ONLY", "BOOK_SPLIT", "MIN_HELDOUT", "IN_MEMORY_BYTES"]

log = logging.getLogger(__name__)

#: Train, validation and test fractions of proteins for a converted source (chapter 4 scores the test share).
BOOK_SPLIT = (0.6, 0.1, 0.3)
#: Held-out (test) proteins below which the book states no verdict on a user's data.
MIN_HELDOUT = 20
#: A sharded dataset whose float32 crops fit in this many bytes is read into memory.
IN_MEMORY_BYTES = 2 * 2 ** 30

#: Why each part that only the simulator can provide is skipped on a user's data.
SIMULATOR_ONLY = {
    "real_beside_simulated": "the montage of real WT2 cells beside simulated ones shows how the simulator compares "
                             "with real data; your screen has no simulated counterpart.",
    "segmentation": "segmentation recall is measured against the simulator's true cell outlines, which a recorded "
                    "screen does not have; your crops come already segmented.",
    "segmentation_field": "the check of the segmentation on the reference field of view (100 hand-placed centres) "
                          "tests the simulated book's pipeline, not your crops, which come already segmented.",
    "realism": "the realism statistics compare simulated crops with real ones; on your screen every crop is real.",
    "quality_curves": "the quality-against-compute curves were measured on the simulated screen: they explain the "
                      "profile's width and budget, not how much training your screen needs.",
    "real_wt2": "the transfer check on the reference WT2 crops is about models trained on the simulated screen; "
                "these models were trained on your screen.",
    "references": "the localization-only and generative references are built from the simulator's ground truth "
                  "(each protein's true classes and pattern traits), which a recorded screen does not have.",
    "huh2003": "the Huh 2003 section renders the real ORFs with the simulator and scores them with the models "
               "trained on the simulated screen; it says nothing about your screen.",
    "native": "the native test renders mixed wells with the simulator (neighbours expressing another protein); the "
              "fields of a recorded screen cannot be rendered again that way.",
    "sweep": "chapter 7 turns the simulator's generative knobs (coupling, trait strength, function in expression) "
             "and draws a new screen at every value; a recorded screen has no knobs to turn, so nothing in this "
             "chapter runs on it.",
    "hpa": "chapter 6 reproduces Chen's SE-ResNet on Human Protein Atlas images; your screen is a yeast ORF-GFP "
           "screen (channels gfp, rfp), so the chapter does not apply. Give an HPA dataset (channels red, green, "
           "blue) and the chapter applies the model to its cells.",
}


def _slug(text):
    """A folder-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.") or "dataset"


def _is_protrep(path):
    return (Path(path) / "dataset.json").is_file()


def _converted_name(source):
    return f"user-{_slug(Path(source).name)}"


def _wanted_params(src, labels, label_key, split, seed):
    """The fields of ``convert.json`` that say whether a cached conversion is this one."""
    import hashlib

    from .data.convert import detect_source_format

    labels = None if labels is None else Path(labels).expanduser().resolve()
    if labels is not None and not labels.is_file():
        raise DataError(labels, "no such label table")
    return {"source": str(src), "format": detect_source_format(src),
            "labels": None if labels is None else str(labels),
            "labels_sha1": None if labels is None else hashlib.sha1(labels.read_bytes()).hexdigest(),
            "label_key": label_key if labels is not None else None, "split": [float(f) for f in split],
            "seed": int(seed)}


def user_dataset(dataset, data_dir, *, labels=None, label_key="auto", split=BOOK_SPLIT, seed=0, workers=None,
                 progress=False):
    """The ``protrep-cells`` folder of a user's dataset, converted once and cached.

    Parameters
    ----------
    dataset : str or Path
        A ``protrep-cells`` folder (version 1 or 2), read where it is unless ``labels`` is
        given, or any source :func:`protrep.data.convert.convert` reads (a WT2 crop tree,
        DeepLoc HDF5, HPA crops, the HPA Kaggle layout).
    data_dir : str or Path
        The book's data folder; a conversion goes to ``<data_dir>/user-<name of the source>``.
    labels : str or Path, optional
        Localization table joined by protein (the Huh 2003 table or a ``protein,localization``
        CSV; :func:`protrep.data.convert.read_labels`).
    label_key : {"auto", "orf", "gene", "protein"}
        Column of ``labels`` matched to the protein names.
    split : tuple of 3 float
        Train, validation and test fractions of proteins of a conversion (a
        ``protrep-cells`` source with a complete split keeps it).
    seed : int
        Seed of the split.
    workers : int, optional
        Conversion processes (default: all cores).
    progress : bool

    Returns
    -------
    Path
        The folder to read with :func:`protrep.data.dataset.load_dataset`. A finished
        conversion of the same source, labels, split and seed is reused; after a change of
        any of them the source is converted again. (Files changed inside the source are not
        noticed: remove the folder to convert again.)

    Raises
    ------
    DataError
        The source does not exist or is in no format protrep reads; the label table is missing.
    """
    from .data.convert import PARAMS_FILE, convert

    src = Path(dataset).expanduser().resolve()
    if not src.exists():
        raise DataError(src, "no such file or folder (the book's `dataset` parameter)")
    if labels is None and _is_protrep(src):
        return src
    out = Path(data_dir) / _converted_name(src)
    wanted = _wanted_params(src, labels, label_key, split, seed)
    if _is_protrep(out):
        old = read_json(out / PARAMS_FILE, missing="") if (out / PARAMS_FILE).is_file() else {}
        if all(old.get(k) == v for k, v in wanted.items()):
            return out
        log.info("%s: converted from another source, labels, split or seed; converting again", out)
    summary = convert(src, out, labels=labels, label_key=label_key, split=split, seed=seed, workers=workers,
                      overwrite=out.exists(), progress=progress)
    log.info("%s", summary["message"])
    return out


def with_masks(ds):
    """``ds`` with centre-cell masks: its own, or segmented from the ``rfp`` channel where it has none.

    Parameters
    ----------
    ds : CellDataset

    Returns
    -------
    CellDataset
        The same crops and metadata; ``masks`` (n, h, w) bool from
        :func:`protrep.data.segment.segment_crop` when the dataset came without them.

    Raises
    ------
    DataError
        No masks and no ``rfp`` channel to segment.
    """
    import dataclasses

    from .data.segment import segment_crops

    if ds.masks is not None:
        return ds
    if "rfp" not in ds.channels:
        raise DataError(ds.source or "dataset", f"has no centre-cell masks and no 'rfp' channel to segment them "
                        f"from (channels {list(ds.channels)})")
    return dataclasses.replace(ds, masks=segment_crops(ds.images, channel=ds.channels.index("rfp")))


def example_cells(meta, n, *, split="val", seed=0):
    """Positions of ``n`` labelled cells of ``split`` to show, drawn at random; any cells where the split has fewer.

    Parameters
    ----------
    meta : DataFrame
        Cell metadata with ``split`` and ``label``.
    n : int
    split : str
    seed : int

    Returns
    -------
    ndarray of int
        ``n`` positions (fewer when the dataset has fewer cells). On a screen with ``n``
        labelled cells in ``split`` (the simulated one) they are those chapter 3 always drew.
    """
    index = np.flatnonzero((meta["split"] == split).to_numpy() & (meta["label"] >= 0).to_numpy())
    if len(index) < n:
        index = np.arange(len(meta))
    return np.random.default_rng(seed).choice(index, min(n, len(index)), replace=False)


def _protein_table(path, ds):
    """``proteins.csv`` of the dataset (or one row per protein of its cells), with a ``primary`` class."""
    table = load_proteins(path) if (Path(path) / "proteins.csv").is_file() else \
        ds.meta[["protein", "localization", "split"]].drop_duplicates("protein").reset_index(drop=True)
    table = table.assign(protein=table["protein"].astype(str))
    if "primary" not in table or (table["primary"] == "").all():
        labelled = ds.meta[ds.meta["label"] >= 0]
        top = labelled.groupby(labelled["protein"].astype(str))["label"].agg(lambda s: s.value_counts().index[0])
        first = table["localization"].fillna("").astype(str).str.split(";").str[0]
        table["primary"] = table["protein"].map(top).map(lambda k: ds.classes[int(k)] if k == k else "").fillna("")
        table.loc[table["primary"] == "", "primary"] = first[table["primary"] == ""]
    return table


def align_standards(standards, proteins, *, aliases=None):
    """Standards with their protein names written as the dataset writes them.

    Parameters
    ----------
    standards : dict of str to DataFrame
        Long-format standards (``term``, ``protein``), e.g. from
        :func:`protrep.data.standards.load_standards`.
    proteins : sequence of str
        The dataset's protein names (for a WT2 crop tree, gene names such as ``AAC1``).
    aliases : dict of str to str, optional
        Upper-case name to the standards' name (for yeast: gene names and aliases to ORFs,
        :func:`protrep.data.standards.read_sgd_features`).

    Returns
    -------
    dict of str to DataFrame
        The same terms; a protein that names one of ``proteins`` (case-insensitively,
        directly or through ``aliases``) is renamed to it, the others are kept as they are.
    """
    aliases = aliases or {}
    to_dataset = {}
    for p in proteins:
        key = str(p).strip().upper()
        for name in (key, aliases.get(key)):
            if name:
                to_dataset.setdefault(name, str(p))
    out = {}
    for name, table in standards.items():
        upper = table["protein"].astype(str).str.upper()
        out[name] = table.assign(protein=upper.map(to_dataset).fillna(table["protein"].astype(str)).to_numpy())
    return out


def _annotated(standard, proteins):
    """How many of ``proteins`` the standard annotates."""
    return len(set(standard["protein"].astype(str)) & set(map(str, proteins)))


def _most_annotated(standards, proteins):
    return max((_annotated(t, proteins) for t in (standards or {}).values()), default=0)


def _n_classes_with(table, at_least):
    counts = table.groupby("primary")["protein"].nunique()
    return int((counts >= at_least).sum())


def user_limits(ds, proteins, standards=None, *, min_heldout=MIN_HELDOUT):
    """What a user's dataset is too small for: a sentence per step, None where the step can run.

    Parameters
    ----------
    ds : CellDataset
        With ``label``, ``localization`` and ``split`` columns.
    proteins : DataFrame
        One row per protein with ``protein``, ``localization``, ``primary`` and ``split``.
    standards : dict of str to DataFrame, optional
        The functional standards, protein names as the dataset's (:func:`align_standards`).
    min_heldout : int
        Held-out proteins below which the results are called not interpretable.

    Returns
    -------
    dict of str to (str or None)
        Steps, with what each needs: ``backgrounds`` (single-localized labelled cells of
        two classes), ``test_accuracy`` (cells of single-localized test proteins),
        ``probe`` (also labelled training cells of two classes), ``heldout_ap`` and
        ``all_ap`` (a standard that annotates three of the held-out, or of all, proteins),
        ``tsne`` (12 proteins), ``published`` (labelled cells of three classes: a ``diff``
        pair sits on a third class), ``strict`` (two classes with two single-localized
        test proteins each: folds grouped by protein), ``interpretable`` (``min_heldout``
        test proteins).
    """
    meta = ds.meta
    split, label = meta["split"].astype(str).to_numpy(), meta["label"].to_numpy()
    single = ~meta["localization"].astype(str).str.contains(";").to_numpy()
    test_cells = int(((split == "test") & single & (label >= 0)).sum())
    train_classes = int(np.unique(label[(split == "train") & (label >= 0)]).size)
    test = proteins[proteins["split"] == "test"]
    single_test = test[~test["localization"].astype(str).str.contains(";") & (test["primary"] != "")]
    n_test, n_all = len(test), len(proteins)
    held_annotated = _most_annotated(standards, test["protein"])
    all_annotated = _most_annotated(standards, proteins["protein"])
    no_standards = "no functional standards were given (the `standards` parameter) and the dataset holds none."
    single_classes = int(np.unique(label[single & (label >= 0)]).size)
    limits = {
        "backgrounds": None if single_classes >= 2 else "a background swapped in from a different class needs "
                       f"single-localized labelled cells of two classes; the dataset has {single_classes}.",
        "test_accuracy": None if test_cells else "no labelled cell of a single-localized test protein "
                         f"({n_test} test protein(s), {len(single_test)} single-localized).",
        "probe": None if test_cells and train_classes >= 2 else "a linear probe needs labelled training cells of two "
                 f"classes and cells of single-localized test proteins; here {train_classes} class(es) and "
                 f"{test_cells} cell(s).",
        "heldout_ap": no_standards if standards is None else None if held_annotated >= 3 else
        f"retrieval AP needs a standard that annotates three held-out proteins; the best annotates {held_annotated} "
        f"of {n_test}.",
        "all_ap": no_standards if standards is None else None if all_annotated >= 3 else
        f"retrieval AP needs a standard that annotates three proteins; the best annotates {all_annotated} of {n_all}.",
        "tsne": None if n_all >= 12 else f"a t-SNE map needs at least 12 proteins; the dataset has {n_all}.",
        "published": None if np.unique(label[label >= 0]).size >= 3 else "the published protocol pairs classes and "
                     "puts a diff pair on a third class's background: it needs labelled cells of three classes, the "
                     f"dataset has {np.unique(label[label >= 0]).size}.",
        "strict": None if _n_classes_with(single_test, 2) >= 2 else "the strict protocol folds by protein: it needs "
                  "two classes with at least two single-localized held-out proteins each; the test split has "
                  f"{_n_classes_with(single_test, 2)} such class(es) ({len(single_test)} single-localized test "
                  "protein(s)).",
        "interpretable": None if n_test >= min_heldout else f"Only {n_all} protein(s), {n_test} of them held out "
                         f"(fewer than {min_heldout}): the chapter runs its code on your screen, but numbers over so "
                         "few proteins are not interpretable, and it states no verdict.",
    }
    return limits


def _requirements(ds):
    """Why the yeast chapters cannot train on ``ds``: a sentence, or None."""
    problems = []
    if tuple(ds.channels[:2]) != ("gfp", "rfp"):
        problems.append(f"its channels are {list(ds.channels)}, the yeast models take (gfp, rfp)")
    if tuple(ds.images.shape[-2:]) != (64, 64):
        problems.append(f"its crops are {tuple(ds.images.shape[-2:])} px, the yeast models take 64 x 64")
    if tuple(ds.classes) != tuple(CLASSES):
        problems.append(f"its classes are {list(ds.classes)[:6]}..., DeepLoc predicts the 15 yeast classes "
                        "(give a label table whose localizations are among protrep.data.proteome.CLASSES)")
    train = ds.meta["split"].astype(str) == "train"
    if not (train & (ds.meta["label"] >= 0)).any():
        problems.append("it has no labelled training cell (convert it with a label table: the `labels` parameter)")
    if ds.meta.loc[train, "protein"].nunique() < 2:
        problems.append("its training split has fewer than two proteins (PIFiA learns their identity)")
    return "; ".join(problems) or None


@dataclass
class BookData:
    """The data a chapter runs on, and what it can do there (see the module docstring).

    Attributes
    ----------
    profile : str
        The book's profile.
    data_dir : Path
        The book's data folder.
    dataset : str or None
        The ``dataset`` parameter (None: the simulated screen).
    standards : str or None
        The ``standards`` parameter (a folder; ignored on the simulated screen).
    labels : str or None
        The ``labels`` parameter (a localization table joined when converting).
    proteome : str
        The simulated proteome (chapter 1's ``proteome``).
    seed : int
        Seed of the simulated screen and of a conversion's split.
    skipped : dict of str to str
        The steps skipped so far, with why.
    """

    profile: str
    data_dir: Path
    dataset: str | None = None
    standards: str | None = None
    labels: str | None = None
    proteome: str = "synthetic"
    seed: int = 0
    skipped: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)

    @property
    def simulated(self):
        """True on the book's simulated screen (``dataset`` is None)."""
        return self.dataset is None

    @property
    def path(self):
        """The ``protrep-cells`` folder (for a source still to convert: where it will be)."""
        if self.simulated:
            return dataset_path(self.data_dir, self.profile, self.proteome)
        src = Path(self.dataset).expanduser().resolve()
        return src if self.labels is None and _is_protrep(src) else Path(self.data_dir) / _converted_name(src)

    @property
    def name(self):
        """What the results JSON calls the data (``dataset``): the dataset folder's name."""
        return self.path.name

    @property
    def tag(self):
        """The profile name of the trained runs (:func:`protrep.training.runs.run_path`): the profile on the
        simulated screen, ``<profile>-user-<name>`` on a user's data, so that neither replaces the other's runs."""
        if self.simulated:
            return self.profile
        return f"{self.profile}-{self.name}" if self.name.startswith("user-") else f"{self.profile}-user-{self.name}"

    def run_profile(self, book):
        """``book`` (a :class:`~protrep.profiles.BookProfile`) renamed :attr:`tag`, for
        :func:`~protrep.profiles.seed_runs`, which names the runs after the profile."""
        return book if self.simulated else book.replace(name=self.tag)

    def ensure(self, config=None, *, workers=None):
        """Make the data ready: simulate the screen (``config``, a SimConfig), or convert the user's source once.

        Returns
        -------
        dict
            On the simulated screen the header of :func:`~protrep.data.simulate.ensure_dataset`;
            on a user's data ``reused`` (the conversion was cached or not needed) and ``path``.
        """
        if self.simulated:
            return ensure_dataset(self.path, config, workers=workers)
        reused = _is_protrep(self.path)
        path = user_dataset(self.dataset, self.data_dir, labels=self.labels, seed=self.seed, workers=workers)
        return {"reused": reused and path == self.path, "path": str(path)}

    def load(self, *, yeast=True, masks=False):
        """Read the dataset: as :func:`~protrep.data.dataset.load_dataset` on the simulated screen.

        A user's sharded dataset is read into memory when its crops fit in
        :data:`IN_MEMORY_BYTES`. With ``yeast``, a user's dataset the yeast chapters cannot
        train on raises :class:`DataError` saying why; with ``masks``, crops without
        centre-cell masks get them segmented (:func:`with_masks`).
        """
        ds = load_dataset(self.path)
        if self.simulated:
            return ds
        if is_lazy(ds.images) and int(np.prod(ds.images.shape)) * 4 <= IN_MEMORY_BYTES:
            ds = load_dataset(self.path, mmap=False)
        if yeast and (why := _requirements(ds)):
            raise DataError(self.path, f"the yeast chapters cannot run on this dataset: {why}")
        return with_masks(ds) if masks else ds

    def proteins(self, ds):
        """The protein table: ``proteins.csv`` on the simulated screen; on a user's, with a ``primary`` class."""
        return load_proteins(self.path) if self.simulated else _protein_table(self.path, ds)

    def load_standards(self, proteins=None):
        """The functional standards, or None where there are none.

        The simulated screen's own (:func:`~protrep.data.standards.load_standards` of the
        dataset); on a user's data the ``standards`` folder (else the dataset's
        ``standards/``), names matched to ``proteins`` (:func:`align_standards`; through
        ``SGD_features`` for a yeast folder).
        """
        from .data.standards import YEAST_FILES, load_standards, read_sgd_features

        if self.simulated:
            return load_standards(self.path)
        folder = Path(self.standards).expanduser() if self.standards is not None else self.path / "standards"
        if self.standards is None and not folder.is_dir():
            return None
        tables = load_standards(folder)
        features = next((folder / n for n in YEAST_FILES["features"] if (folder / n).is_file()), None)
        names = [] if proteins is None else proteins["protein"].astype(str)
        return align_standards(tables, names, aliases=read_sgd_features(features) if features else None)

    def check(self, ds, proteins, standards=None):
        """Work out what the data are too small for (:func:`user_limits`); nothing on the simulated screen.

        Returns
        -------
        str or None
            The caveat to print when the numbers are not interpretable.
        """
        if not self.simulated:
            self.limits = user_limits(ds, proteins, standards)
        return self.caveat

    def scorable(self, standards, proteins, *, min_proteins=3):
        """The standards a retrieval AP over ``proteins`` can use, and a sentence on those left out.

        Returns
        -------
        standards : dict of str to DataFrame
            All of them on the simulated screen. On a user's data those that annotate at
            least ``min_proteins`` of ``proteins`` (with fewer the AP is undefined, or rests
            on a pair or two); each one left out is recorded in :attr:`skipped` as
            ``standard:<name>``.
        note : str or None
            The sentence to print about the standards left out, or None.
        """
        if self.simulated:
            return standards, None
        kept, notes = {}, []
        for name, table in standards.items():
            n = _annotated(table, proteins)
            if n >= min_proteins:
                kept[name] = table
                continue
            self.skipped[f"standard:{name}"] = (f"the {name} standard annotates {n} of the {len(proteins)} "
                                                f"proteins scored (fewer than {min_proteins}): left out of the AP.")
            notes.append(f"Skipped on {self.name}: {self.skipped[f'standard:{name}']}")
        return kept, "\n".join(notes) or None

    @property
    def caveat(self):
        """A sentence when a user's data are too few to read the numbers; None otherwise."""
        return self.limits.get("interpretable")

    @property
    def interpretable(self):
        """False when :attr:`caveat` applies: summaries then state no verdict."""
        return self.caveat is None

    def blocked(self, step):
        """Why ``step`` does not run here (a sentence, also recorded in :attr:`skipped`), or None.

        Always None on the simulated screen. On a user's data: the :data:`SIMULATOR_ONLY`
        reason of the step, or the :func:`user_limits` reason (after :meth:`check`).
        """
        if self.simulated:
            return None
        why = SIMULATOR_ONLY.get(step) or self.limits.get(step)
        if why is None:
            return None
        self.skipped[step] = why
        return f"Skipped on {self.name}: {why}"

    def chapter_skip(self, chapter):
        """Why a whole chapter does not run on this data (a sentence, recorded in :attr:`skipped`), or None.

        Chapter 6 (``"06_hpa"``) runs on the simulated screen and on an HPA dataset (the
        model trained on the simulated HPA screen then reads your cells); chapter 7
        (``"07_what_decides"``) only on the simulated screen. Other chapters: None.
        """
        if self.simulated:
            return None
        if chapter == "06_hpa":
            self.ensure()
            return None if self.kind == "hpa" else self.blocked("hpa")
        return self.blocked("sweep") if chapter == "07_what_decides" else None

    def hpa_cells(self):
        """A user's HPA dataset as chapter 6's model reads it: channels red, green, blue, yellow (zeros where
        missing), classes :data:`~protrep.data.hpa.HPA_CLASSES`, localizations restricted to them."""
        import dataclasses

        from .data.hpa import HPA_CHANNELS, HPA_CLASSES

        ds = self.load(yeast=False)
        missing = [c for c in HPA_CHANNELS[:3] if c not in ds.channels]
        if missing:
            raise DataError(self.path, f"has channels {list(ds.channels)}; an HPA dataset has {list(HPA_CHANNELS[:3])}")
        images = np.asarray(ds.images, np.float32)
        order = [images[:, ds.channels.index(c)] if c in ds.channels else np.zeros_like(images[:, 0])
                 for c in HPA_CHANNELS]
        keep = [";".join(n for n in str(v).split(";") if n in HPA_CLASSES) for v in ds.meta["localization"]]
        return dataclasses.replace(ds, images=np.stack(order, axis=1), channels=HPA_CHANNELS, classes=HPA_CLASSES,
                                   masks=None, meta=ds.meta.assign(localization=keep),
                                   info={**ds.info, "multilabel": True})

    @property
    def kind(self):
        """``"simulated"``, ``"hpa"`` (channels red, green, blue), ``"yeast"`` or ``"other"``, from the header."""
        if self.simulated:
            return "simulated"
        channels = tuple(read_json(self.path / "dataset.json", missing="run ensure() first")["channels"])
        if {"red", "green", "blue"} <= set(channels):
            return "hpa"
        return "yeast" if channels[:2] == ("gfp", "rfp") else "other"

    @property
    def labels_summary(self):
        """The conversion's one-line report of the label table (which proteins matched), or None."""
        from .data.convert import REPORT_FILE

        report = None if self.simulated else self.path / REPORT_FILE
        return read_json(report, missing="")["summary"] if report is not None and report.is_file() else None

    def results(self):
        """``dataset`` (:attr:`name`) and, on a user's data, ``skipped`` (step: why): for the results JSON."""
        return {"dataset": self.name, **({} if self.simulated else {"skipped": dict(self.skipped)})}


def book_data(profile, data_dir, *, dataset=None, standards=None, labels=None, proteome="synthetic", seed=0):
    """The :class:`BookData` of a chapter from its parameters.

    Parameters
    ----------
    profile : str
    data_dir : str or Path
    dataset : str or Path, optional
        None: the simulated screen. Otherwise any dataset protrep reads (see :func:`user_dataset`).
    standards : str or Path, optional
        Folder of functional standards (a yeast folder such as ``standards/yeast`` or
        ``<scale>.tsv`` files); ignored on the simulated screen, which has its own.
    labels : str or Path, optional
        Localization table for a conversion (:func:`user_dataset`).
    proteome : str
        The simulated proteome (chapter 1).
    seed : int

    Returns
    -------
    BookData
    """
    return BookData(profile=profile, data_dir=Path(data_dir), dataset=None if dataset is None else str(dataset),
                    standards=None if standards is None else str(standards),
                    labels=None if labels is None else str(labels), proteome=proteome, seed=int(seed))
