import hashlib

import numpy as np
import pandas as pd
import pytest

from protrep.data.dataset import load_proteins
from protrep.data.mixed import MIXED_COLUMNS, mixed_wells
from protrep.data.proteome import CLASSES, synthetic_proteome
from protrep.data.render import FieldParams, PlateParams, TextureBank, simulate_field
from protrep.data.simulate import SimConfig, _proteome
from protrep.errors import DataError

PLATE = PlateParams(gain=1.0, background_gfp=20, background_rfp=60, vignetting=0.2, defocus=0.3)
TINY = SimConfig(n_proteins=30, cells_per_protein=6, seed=7, min_per_class=2)

# simulate_field(default_rng([11, row]), row of synthetic_proteome(30, seed=0, min_per_class=2), PLATE,
# FieldParams(size=192), TextureBank(0, n=4)), digested by _digest, as computed by the renderer before mixed
# wells existed (rows: a single-class protein, a heterogeneous one, a mislocalizing one)
PINNED = {0: ("a0147d44328b355a", 636323874128399031), 9: ("d5ee25b89c193d7c", 1249146373226811562),
          15: ("7983e47e64f93ab5", 1491257349988821207)}


def _digest(field, rng):
    """First 16 hex digits of the SHA-256 of the field's arrays, and the next draw of ``rng`` (its state)."""
    h = hashlib.sha256()
    for k in ("image", "labels", "label"):
        h.update(np.ascontiguousarray(field[k]).tobytes())
    h.update(",".join(field["state"]).encode())
    return h.hexdigest()[:16], int(rng.integers(2 ** 62))


def _single(proteome, cls, abundance=2000.0):
    row = proteome[proteome["primary"] == cls].iloc[0].to_dict()
    return {**row, "secondary": "", "weight": 1.0, "heterogeneous": False, "mislocalizing": False,
            "abundance": abundance}


@pytest.fixture(scope="module")
def proteome(tmp_path_factory):
    """The proteins table of TINY's screen, read back as a dataset's ``proteins.csv``."""
    folder = tmp_path_factory.mktemp("proteins")
    _proteome(TINY).to_csv(folder / "proteins.csv", index=False)
    return load_proteins(folder)


@pytest.fixture(scope="module")
def pairs(proteome):
    """Two single-class proteins of different classes, each alone (base) and mixed with the other (diff)."""
    single = proteome[(proteome["secondary"] == "") & ~proteome["mislocalizing"]].drop_duplicates("primary")
    a, b, c = single["protein"].iloc[:3]
    return pd.DataFrame({"protein": [a, b, a, b, c], "neighbour": [a, b, b, a, a],
                         "condition": ["base", "base", "diff", "diff", "diff"]})


@pytest.fixture(scope="module")
def mixed(proteome, pairs):
    return mixed_wells(TINY, proteome, pairs, neighbour_share=0.6, seed=3, workers=1, progress=False)


def test_default_path_is_byte_identical_to_the_one_protein_renderer():
    table = synthetic_proteome(30, seed=0, min_per_class=2)
    for row, pinned in PINNED.items():
        rng = np.random.default_rng([11, row])
        field = simulate_field(rng, table.iloc[row].to_dict(), PLATE, FieldParams(size=192), TextureBank(0, n=4))
        assert _digest(field, rng) == pinned, row
        assert (field["expresses"] == 0).all() and len(field["expresses"]) == field["n_cells"]
        rng = np.random.default_rng([11, row])
        again = simulate_field(rng, table.iloc[row].to_dict(), PLATE, FieldParams(size=192), TextureBank(0, n=4),
                               neighbour=None, neighbour_share=0.9)
        assert _digest(again, rng) == pinned


def test_cells_express_the_neighbour_at_its_share_and_take_everything_from_it():
    table = synthetic_proteome(60, seed=0)
    protein, neighbour = _single(table, "nucleus"), _single(table, "mitochondrion", abundance=2000.0 * 16)
    bank = TextureBank(0, n=4)
    expresses, label, brightness = [], [], []
    for k in range(6):
        f = simulate_field(np.random.default_rng(k), protein, PLATE, FieldParams(size=384), bank, neighbour=neighbour,
                           neighbour_share=0.3)
        alive = f["state"] == "alive"
        gfp = np.bincount(f["labels"].ravel(), weights=f["image"][0].ravel(), minlength=f["n_cells"] + 1)
        area = np.bincount(f["labels"].ravel(), minlength=f["n_cells"] + 1)
        ok = alive & (area[1:] > 300)
        expresses.append(f["expresses"][ok]), label.append(f["label"][ok])
        brightness.append(gfp[1:][ok] / area[1:][ok] - FieldParams().offset)
    expresses, label, brightness = map(np.concatenate, (expresses, label, brightness))
    assert len(expresses) > 150
    assert abs(expresses.mean() - 0.3) < 0.1
    assert (label[expresses == 0] == CLASSES.index("nucleus")).all()
    assert (label[expresses == 1] == CLASSES.index("mitochondrion")).all()
    # expression from the protein a cell expresses: 16 x the abundance, 4 x the signal (3.2 x above the offset
    # here, with the background)
    assert np.median(brightness[expresses == 1]) > 2 * np.median(brightness[expresses == 0])
    with pytest.raises(ValueError, match="neighbour_share"):
        simulate_field(np.random.default_rng(0), protein, PLATE, FieldParams(size=64), bank, neighbour=neighbour,
                       neighbour_share=1.5)


def test_mixed_wells_layout(mixed, pairs):
    assert list(mixed.meta.columns) == MIXED_COLUMNS
    assert mixed.images.dtype == np.float32 and mixed.images.shape[1:] == (2, 64, 64)
    assert mixed.masks.dtype == bool and mixed.masks.shape == (len(mixed), 64, 64)
    assert mixed.channels == ("gfp", "rfp") and mixed.classes == CLASSES
    assert mixed.masks[:, 32, 32].mean() > 0.95
    counts = mixed.meta.groupby("well").size()
    assert counts.index.tolist() == list(range(len(pairs))) and (counts == TINY.cells_per_protein).all()
    assert (mixed.meta["protein"].to_numpy() == pairs["protein"].to_numpy()[mixed.meta["well"]]).all()
    assert (mixed.meta["neighbour"].to_numpy() == pairs["neighbour"].to_numpy()[mixed.meta["well"]]).all()
    assert (mixed.meta["condition"].to_numpy() == pairs["condition"].to_numpy()[mixed.meta["well"]]).all()


def test_kept_crops_show_the_wells_own_protein(mixed, proteome):
    primary = proteome.set_index("protein")["primary"]
    known = mixed.meta[mixed.meta["label"] >= 0]
    assert len(known) > 0.8 * len(mixed)
    shown = np.array(CLASSES)[known["label"].to_numpy()]
    assert (shown == primary[known["protein"]].to_numpy()).all()
    assert (mixed.meta["localization"] == primary[mixed.meta["protein"]].to_numpy()).all()


def test_foreign_share_is_zero_alone_and_positive_mixed(mixed):
    share = mixed.meta.groupby("condition")["foreign_share"]
    assert share.max()["base"] == 0
    assert share.mean()["diff"] > 0.2
    assert mixed.meta["foreign_share"].between(0, 1).all()


def test_same_seed_same_wells_whatever_the_workers(mixed, proteome, pairs):
    again = mixed_wells(TINY, proteome, pairs, neighbour_share=0.6, seed=3, workers=2, progress=False)
    assert np.array_equal(again.images, mixed.images) and np.array_equal(again.masks, mixed.masks)
    pd.testing.assert_frame_equal(again.meta, mixed.meta)
    other = mixed_wells(TINY, proteome, pairs.iloc[:1], neighbour_share=0.6, seed=4, workers=1, progress=False)
    assert not np.array_equal(other.images, mixed.images[: len(other)])


def test_errors_say_what_is_wrong(proteome, pairs):
    bad = pairs.assign(neighbour=["P_nope", *pairs["neighbour"][1:]])
    with pytest.raises(ValueError, match="P_nope"):
        mixed_wells(TINY, proteome, bad, workers=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        mixed_wells(TINY, proteome, pairs.iloc[:0], workers=1, progress=False)
    for share in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"neighbour_share must be a number in \(0, 1\)"):
            mixed_wells(TINY, proteome, pairs, neighbour_share=share, workers=1, progress=False)
    with pytest.raises(ValueError, match="condition"):
        mixed_wells(TINY, proteome, pairs.drop(columns="condition"), workers=1, progress=False)
    with pytest.raises(DataError, match="trait_0"):
        mixed_wells(TINY, proteome.drop(columns="trait_0"), pairs, workers=1, progress=False)
