"""Shared pytest fixtures.

Real reference files are found through the environment variable ``PROTREP_SHARED_DATA``
(``.ci/run`` and the Makefile point it at ``../shared/data``); tests that need them skip
cleanly when it is unset or the folder is missing.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# scripts/run_book.py (the book runner) is imported by the tests as ``run_book``
sys.path.insert(0, str(ROOT / "scripts"))


def _shared_root():
    value = os.environ.get("PROTREP_SHARED_DATA")
    if not value:
        return None
    root = Path(value)
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data():
    """Path of the real reference data folder; skips the test when it is absent."""
    root = _shared_root()
    if root is None:
        pytest.skip("real reference data not available (set PROTREP_SHARED_DATA to ../shared/data)")
    return root


@pytest.fixture(scope="session")
def quick_screen(tmp_path_factory):
    """The ``quick`` profile's simulated yeast screen (seed 5), simulated once for the whole session.

    Tests that need a realistic tiny dataset (training, background settings, quality
    sweeps) read it with :func:`protrep.data.dataset.load_dataset`; none may write into it.
    """
    from protrep.data.simulate import simulate_dataset
    from protrep.profiles import book_profile

    path = tmp_path_factory.mktemp("quick-screen") / "ds"
    simulate_dataset(path, book_profile("quick", seed=5).screen, workers=1, progress=False)
    return path


@pytest.fixture(scope="session")
def disc_crops():
    """``make(rng, n, size)``: n two-channel crops of Poisson(100) noise with a bright centred disc, and the disc.

    Every crop and channel gets its own brightness (200-2000 counts over the noise); the
    disc (radius size / 4) is returned as a boolean mask for use as centre-cell masks.
    """
    import numpy as np

    def make(rng, n, size, dtype=np.float32):
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
        images = rng.poisson(100, (n, 2, size, size)).astype(dtype)
        images += disc * rng.integers(200, 2000, (n, 2, 1, 1))
        return images, disc

    return make


@pytest.fixture
def standards_folder(tmp_path):
    """Write standards (name -> long table) as ``<name>.tsv`` into a new folder; return its path."""
    def write(standards, name="standards"):
        path = tmp_path / name
        path.mkdir()
        for key, table in standards.items():
            table.to_csv(path / f"{key}.tsv", sep="\t", index=False)
        return path
    return write
