import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.proteome import CLASSES, synthetic_proteome
from protrep.data.render import FieldParams, PlateParams, TextureBank, _geometry, _pattern, _place_cells, simulate_field

PLATE = PlateParams(gain=1.0, background_gfp=10, background_rfp=12, vignetting=0.2, defocus=0.3)
SMALL = FieldParams(size=256)


@pytest.fixture(scope="module")
def proteome():
    return synthetic_proteome(60, seed=0)


@pytest.fixture(scope="module")
def bank():
    return TextureBank(0, n=8)


def _protein(proteome, cls):
    row = proteome[proteome["primary"] == cls].iloc[0].to_dict()
    return {**row, "secondary": "", "weight": 1.0, "heterogeneous": False, "mislocalizing": False}


def test_field_shapes_and_types(proteome, bank):
    f = simulate_field(np.random.default_rng(0), proteome.iloc[0].to_dict(), PLATE, SMALL, bank)
    assert f["image"].shape == (2, 256, 256) and f["image"].dtype == np.uint16
    assert f["labels"].shape == (256, 256) and f["labels"].max() <= f["n_cells"]
    assert len(f["label"]) == len(f["state"]) == f["n_cells"] > 5
    assert set(np.unique(f["label"])) <= set(range(-1, len(CLASSES)))
    # camera offset: background pixels sit above the offset, cells well above it
    bg = f["image"][1][f["labels"] == 0]
    cells = f["image"][1][f["labels"] > 0]
    assert np.median(bg) > SMALL.offset and np.median(cells) > np.median(bg) + 30


def test_field_is_deterministic(proteome, bank):
    a = simulate_field(np.random.default_rng(3), proteome.iloc[1].to_dict(), PLATE, SMALL, bank)
    b = simulate_field(np.random.default_rng(3), proteome.iloc[1].to_dict(), PLATE, SMALL, bank)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["labels"], b["labels"])


def test_cells_do_not_overlap():
    p = FieldParams(size=256)
    cells = _place_cells(np.random.default_rng(1), p)
    xy, a = cells["xy"], cells["a"]
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert (d >= 0.96 * (a[:, None] + a[None])).all()
    assert (a > 10).all() and (a < 30).all()


def test_cell_size_is_yeast_like(proteome, bank):
    f = simulate_field(np.random.default_rng(0), proteome.iloc[0].to_dict(), PLATE, FieldParams(size=256), bank)
    areas = np.bincount(f["labels"].ravel())[1:]
    diameter = 2 * np.sqrt(areas[areas > 300] / np.pi)  # whole cells (not cut by the border)
    assert 32 < np.median(diameter) < 50


@pytest.fixture(scope="module")
def geometry():
    rng = np.random.default_rng(2)
    cells = _place_cells(rng, FieldParams(size=256))
    return _geometry(rng, cells)


def _mass_fraction(pattern, region):
    return float((pattern * region).sum() / pattern.sum())


@pytest.mark.parametrize("cls", CLASSES)
def test_patterns_are_finite_and_inside_cells(cls, geometry, bank):
    idx = np.arange(len(geometry["a"]))
    t = np.full((len(idx), 4), 0.5, np.float32)
    pat = _pattern(cls, np.random.default_rng(0), geometry, idx, t, bank)
    assert pat.shape == geometry["occ"].shape and np.isfinite(pat).all() and (pat >= 0).all()
    assert pat.sum() > 0
    outside = geometry["depth"] < -3  # beyond the blur of the wall
    assert _mass_fraction(pat, outside) < 0.02


def test_patterns_sit_in_their_compartments(geometry, bank):
    idx = np.arange(len(geometry["a"]))
    t = np.full((len(idx), 4), 0.5, np.float32)
    pat = {c: _pattern(c, np.random.default_rng(0), geometry, idx, t, bank) for c in CLASSES}
    nuc, vac = geometry["nuc"] > 0.5, geometry["vac"] > 0.5
    rim = (geometry["depth"] < 3) & (geometry["depth"] > -1)
    assert _mass_fraction(pat["nucleus"], nuc) > 0.9
    assert _mass_fraction(pat["nucleolus"], nuc) > 0.9
    assert _mass_fraction(pat["vacuole"], vac) > 0.9
    assert _mass_fraction(pat["cytoplasm"], nuc | vac) < 0.1
    assert _mass_fraction(pat["cell periphery"], rim) > 0.7
    assert _mass_fraction(pat["cell periphery"], rim) > 2 * _mass_fraction(pat["cytoplasm"], rim)
    # rims of organelles: more signal at the edge than in the middle
    centre_nuc = geometry["d_nuc"] < 0.5 * geometry["rn"][:, None, None]
    assert _mass_fraction(pat["nuclear periphery"], centre_nuc) < _mass_fraction(pat["nucleus"], centre_nuc) / 3
    # punctate classes are concentrated: few of the cell's pixels hold half of its signal
    inside = geometry["occ"] > 0.5

    def half_mass_area(p):
        flat = np.sort(p[inside])[::-1]
        return np.searchsorted(np.cumsum(flat), flat.sum() / 2) / len(flat)
    for c in ["peroxisome", "spindle pole", "Golgi", "actin", "endosome", "nucleolus"]:
        assert half_mass_area(pat[c]) < half_mass_area(pat["cytoplasm"]) / 4, c


def test_heterogeneous_protein_cells_show_one_class_each(proteome, bank):
    row = proteome.iloc[0].to_dict()
    row.update(primary="nucleus", secondary="mitochondrion", weight=0.6, heterogeneous=True, mislocalizing=False)
    f = simulate_field(np.random.default_rng(0), row, PLATE, FieldParams(size=384), bank)
    alive = f["label"][f["state"] == "alive"]
    frac = np.mean(alive == CLASSES.index("nucleus"))
    assert set(alive) <= {CLASSES.index("nucleus"), CLASSES.index("mitochondrion")}
    assert 0.3 < frac < 0.9


@settings(max_examples=15, deadline=None)
@given(level=st.floats(1, 400), read=st.floats(0.5, 8))
def test_poisson_gaussian_matches_poisson_moments(level, read):
    """The fast camera model has the mean and variance of Poisson photons plus read noise."""
    p = dataclasses.replace(FieldParams(size=64, density=0.0, read_noise=read, offset=100), photons_rfp=0.0)
    plate = dataclasses.replace(PLATE, background_rfp=level, vignetting=0.0, gain=1.0)
    img = simulate_field(np.random.default_rng(0), {"primary": "cytoplasm", "secondary": "", "weight": 1,
                                                    "heterogeneous": False, "mislocalizing": False, "abundance": 2000,
                                                    **{f"trait_{j}": 0.5 for j in range(4)}},
                         plate, p, TextureBank(0, n=2))["image"][1].astype(float) - 100
    assert abs(img.mean() - level) < 0.5 + 4 * np.sqrt((level + read ** 2) / img.size)
    assert abs(img.var() / (level + read ** 2 + 1 / 12) - 1) < 0.1
