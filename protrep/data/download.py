"""Download the public originals of the reference data (``protrep download``).

:data:`DOWNLOADS` names every file the book and tests can use, with its public URL, its
licence and, where the bytes at the URL are fixed (a commit-pinned GitHub file), its
SHA-256. Files at "current release" URLs (SGD, GO, HPA) change with every release, so
their checksum is left ``None``: :func:`download` then logs the checksum it computed so
that a user can pin the exact version they used.

Downloads go through pooch (``pooch.retrieve``): they stream to a temporary file beside
the destination, are verified against the registry's SHA-256, and are then renamed into
place, so an interrupted download never leaves a partial file under the final name.
"""

import hashlib
import logging
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd

from ..atomic import atomic_dir
from ..errors import DataError

__all__ = ["DOWNLOADS", "list_downloads", "download", "sha256sum", "extract_zip", "shared_data_dir"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20

_DEEPLOC_COMMIT = "338f9ab8673ee66827bc6a315e92adf3785af010"  # okraus/DeepLoc, still has datasets_small/
_CHNOSZ_COMMIT = "f40560931f8f6ac2520bc3c65d74ad7ce7089ec3"  # cran/CHNOSZ mirror, data/yeastgfp.csv
_PROCOPE_COMMIT = "5237b59332844762a54bf52e2d848dc9ae4c5de4"  # friedel-lab/ProCope, data/complexes/
_PCI_COMMIT = "bd60b51df489c81a69ccbda478c27cd626b05739"  # alexxijielu/paired_cell_inpainting toy sets

#: name -> {url, sha256, filename, description, licence}.
#: The pinned checksums were computed from copies whose size and content match the
#: commit-pinned originals; ``None`` where the URL serves a moving "current" release or a
#: GitHub-generated archive (not guaranteed byte-stable), or where no original was at hand.
DOWNLOADS = {
    "deeploc-schuldiner-test": {
        "url": f"https://raw.githubusercontent.com/okraus/DeepLoc/{_DEEPLOC_COMMIT}/datasets_small/"
               "Schuldiner_test_set.hdf5",
        "sha256": "d7019998072645eb420dabf3aaf5a8980ae66122d239d2de9fb38cb2d713d0c9",
        "filename": "Schuldiner_test_set.hdf5",
        "description": "DeepLoc HDF5: 36 yeast cells (SWAT RFP-tagged proteins + DIC), 11 classes",
        "licence": "BSD-3-Clause",
    },
    "deeploc-full": {
        # Link given in the okraus/DeepLoc README and download_datasets.sh; large zip of all
        # Chong et al. 2015, wt2017 and SWAT_RFP train/valid/test HDF5 files.
        "url": "http://spidey.ccbr.utoronto.ca/~okraus/DeepLoc_full_datasets.zip",
        "sha256": None,
        "filename": "DeepLoc_full_datasets.zip",
        "description": "all DeepLoc HDF5 datasets (Chong 2015, wt2017, SWAT_RFP); several GB, zip",
        "licence": "BSD-3-Clause",
    },
    "sgd-go-slim": {
        "url": "https://downloads.yeastgenome.org/curation/literature/go_slim_mapping.tab",
        "sha256": None,  # current SGD release
        "filename": "go_slim_mapping.tab",
        "description": "SGD GO-slim mapping of yeast ORFs (aspects C, F, P)",
        "licence": "CC BY 4.0",
    },
    "sgd-features": {
        "url": "https://downloads.yeastgenome.org/curation/chromosomal_feature/SGD_features.tab",
        "sha256": None,  # current SGD release
        "filename": "SGD_features.tab",
        "description": "SGD chromosomal features: ORF, gene name, aliases",
        "licence": "CC BY 4.0",
    },
    "goslim-yeast-obo": {
        "url": "https://current.geneontology.org/ontology/subsets/goslim_yeast.obo",
        "sha256": None,  # current GO release
        "filename": "goslim_yeast.obo",
        "description": "GO slim yeast ontology (OBO)",
        "licence": "CC BY 4.0",
    },
    "huh2003-yeastgfp": {
        "url": f"https://raw.githubusercontent.com/cran/CHNOSZ/{_CHNOSZ_COMMIT}/data/yeastgfp.csv",
        "sha256": "fb7a1181c5bdf8b355fd1bd1b7358819aeaf2c8fe0a349a5512e7f58de2e8884",
        "filename": "huh2003_yeastgfp.csv",
        "description": "Huh et al. 2003 localization of 4,155 ORFs (22 compartments, abundance)",
        "licence": "GPL-3 (CHNOSZ package data; data from yeastgfp)",
    },
    "mips-complexes": {
        "url": f"https://raw.githubusercontent.com/friedel-lab/ProCope/{_PROCOPE_COMMIT}/data/complexes/"
               "mips_complexes.txt",
        "sha256": "516e6d0f8e111c5bb85ca927dbdd26c5c0b5739ddc927f7b46f50d14d654fee2",
        "filename": "mips_complexes.txt",
        "description": "MIPS yeast protein complexes (214), one per line",
        "licence": "GPL-3 / LGPL (ProCope)",
    },
    "bt409-complexes": {
        "url": f"https://raw.githubusercontent.com/friedel-lab/ProCope/{_PROCOPE_COMMIT}/data/complexes/"
               "BT_409.txt",
        "sha256": "1fca799ae0f78a30bb00d0956fdf93e638850597f7cc34ff53131be85d7eab02",
        "filename": "bt409_complexes.txt",
        "description": "BT-409 yeast protein complexes (Friedel et al. 2009), one per line",
        "licence": "GPL-3 / LGPL (ProCope)",
    },
    "sgd-pathways": {
        "url": "https://downloads.yeastgenome.org/curation/literature/biochemical_pathways.tab",
        "sha256": None,  # current SGD release
        "filename": "sgd_biochemical_pathways.tab",
        "description": "SGD YeastPathways: pathway, enzyme, EC, gene, reference",
        "licence": "CC BY 4.0",
    },
    "hpa-subcellular-location": {
        # Release 18, the column layout (Validated/Supported/Approved/Uncertain) of our
        # reference copy; read_hpa_locations reads the zip directly.
        "url": "https://v18.proteinatlas.org/download/subcellular_location.tsv.zip",
        "sha256": None,
        "filename": "subcellular_location.tsv.zip",
        "description": "Human Protein Atlas subcellular locations (release 18), zipped TSV",
        "licence": "CC BY-SA 3.0",
    },
    "pci-toy-crops": {
        # GitHub archive of the Paired Cell Inpainting repository; the toy crops are in
        # yeast_model/toy_dataset/images/ and human_model/toy_dataset/ after extraction.
        "url": f"https://github.com/alexxijielu/paired_cell_inpainting/archive/{_PCI_COMMIT}.zip",
        "sha256": None,
        "filename": "paired_cell_inpainting.zip",
        "description": "Paired Cell Inpainting repository with yeast (877 cells) and HPA (62 cells) toy crops",
        "licence": "GPL-2.0; HPA images CC BY-SA 3.0",
    },
}


def list_downloads():
    """Return the registry as a table.

    Returns
    -------
    DataFrame
        Indexed by name; columns ``filename``, ``description``, ``licence``, ``url``,
        ``sha256`` and ``pinned`` (whether the checksum is known).
    """
    rows = {name: {"filename": e["filename"], "description": e["description"], "licence": e["licence"],
                   "url": e["url"], "sha256": e["sha256"], "pinned": e["sha256"] is not None}
            for name, e in sorted(DOWNLOADS.items())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "name"
    return table


def sha256sum(path):
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(name):
    if name not in DOWNLOADS:
        raise ValueError(f"unknown download {name!r}; choose one of {', '.join(sorted(DOWNLOADS))}")
    entry = DOWNLOADS[name]
    missing = [k for k in ("url", "sha256", "filename") if k not in entry]
    if missing:
        raise ValueError(f"registry entry {name!r} lacks {missing}")
    return entry


def download(name, dest_dir, *, force=False, extract=False, progress=True, timeout=60):
    """Download one registered file into ``dest_dir``.

    Parameters
    ----------
    name : str
        A key of :data:`DOWNLOADS` (see :func:`list_downloads`).
    dest_dir : str or Path
        Folder to write ``<dest_dir>/<filename>`` into; created if missing.
    force : bool
        Download again even when the file is present.
    extract : bool
        For a ``.zip``, also unpack it into ``<dest_dir>/<filename without .zip>/``.
    progress : bool
        Show a progress bar.
    timeout : float
        Seconds to wait for the server to answer.

    Returns
    -------
    Path
        The downloaded file (or the folder it was extracted to, with ``extract=True``).

    Raises
    ------
    DataError
        The download failed, or its SHA-256 differs from the registry's (the partial file
        is removed and nothing is left under the final name).

    Notes
    -----
    A present file is kept when its checksum matches the registry, or when the registry
    has none; a present file with the wrong checksum is downloaded again. When the
    registry has no checksum, the computed one is logged so it can be pinned.
    """
    entry = _entry(name)
    url, expected = entry["url"], entry["sha256"]
    dest = Path(dest_dir) / entry["filename"]
    if dest.is_file() and not force:
        got = sha256sum(dest)
        if expected is None or got == expected:
            logger.info("%s: already present (sha256 %s%s); skipping", dest, got,
                        "" if expected is None else ", verified")
            return _maybe_extract(dest, extract, force)
        logger.warning("%s: present but sha256 %s differs from the expected %s; downloading again",
                       dest, got, expected)
    got = _fetch(url, dest, expected, progress=progress, timeout=timeout)
    if expected is None:
        logger.warning("%s: downloaded from %s without a pinned checksum; its sha256 is %s "
                       "(pin it in protrep.data.download.DOWNLOADS to verify future downloads)", dest, url, got)
    else:
        logger.info("%s: downloaded and verified (sha256 %s)", dest, got)
    return _maybe_extract(dest, extract, force)


def _fetch(url, dest, expected, *, progress, timeout):
    """Download ``url`` to ``dest`` with pooch (checked, then renamed into place); return its sha256.

    pooch streams into a temporary file beside ``dest``, verifies ``expected`` and only then
    moves the file to its name, so a failed or mismatching download leaves nothing behind.
    """
    import pooch
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)  # pooch keeps a present file; the caller decided to fetch it anew
    try:
        pooch.retrieve(url, known_hash=None if expected is None else f"sha256:{expected}", fname=dest.name,
                       path=dest.parent, progressbar=progress, downloader=pooch.HTTPDownloader(timeout=timeout))
    except ValueError as e:
        if "hash" in str(e).lower():
            got = re.search(r"got ([0-9a-f]{64})", str(e))
            raise DataError(url, f"checksum mismatch for {dest.name}: expected sha256 {expected}, got "
                                 f"{got.group(1) if got else 'another'}; the download was discarded") from None
        raise DataError(url, f"download failed ({e})") from None
    except (requests.RequestException, OSError) as e:
        raise DataError(url, f"download failed ({e})") from None
    return sha256sum(dest)


def _maybe_extract(path, extract, force):
    if not extract:
        return path
    if path.suffix.lower() != ".zip":
        raise ValueError(f"{path.name} is not a .zip archive; extract=True only applies to zips")
    return extract_zip(path, path.with_suffix(""), overwrite=force)


def extract_zip(path, dest, *, overwrite=False):
    """Unpack a zip archive into the folder ``dest``, atomically.

    Members that would land outside ``dest`` (absolute paths, ``..``) are refused. An
    existing ``dest`` is kept unless ``overwrite``.

    Returns
    -------
    Path
        ``dest``.
    """
    path, dest = Path(path), Path(dest)
    if dest.is_dir() and not overwrite:
        logger.info("%s: already extracted; skipping", dest)
        return dest
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(path, f"not a readable zip archive ({e})") from None
    with archive, atomic_dir(dest, overwrite=True) as tmp:
        root = tmp.resolve()
        for member in archive.infolist():
            target = (tmp / member.filename).resolve()
            if root not in target.parents and target != root:
                raise DataError(path, f"member {member.filename!r} would be written outside {dest}")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataError(path, f"corrupt member {member.filename!r} ({e})") from None
    return dest


def shared_data_dir(path=None):
    """The folder of real reference data: ``path``, else ``$PROTREP_SHARED_DATA``; None when neither is a folder.

    Notebooks and tests read the real crops, standards and published results from it and
    skip what needs them when it is None.
    """
    import os

    value = path or os.environ.get("PROTREP_SHARED_DATA")
    return Path(value) if value and Path(value).is_dir() else None

