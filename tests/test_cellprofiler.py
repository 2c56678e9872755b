"""Tests of protrep.evaluation.cellprofiler (cp-measure) on a handful of synthetic cells."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse

from protrep.data.dataset import CellDataset
from protrep.evaluation import cellprofiler as cp
from protrep.evaluation.cellprofiler import (
    cellprofiler_tables,
    feature_names,
    measure_cells,
    select_cells,
)

SIZE = 48


def _cell(rng, centre, radii, rotation=0.0):
    """Camera counts of one cell (bright spots in GFP, a dark vacuole in RFP) and its mask."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[ellipse(*centre, *radii, shape=mask.shape, rotation=rotation)] = True
    gfp = 100 + 200 * mask + rng.poisson(20, mask.shape)
    spots = rng.integers(0, SIZE, size=(6, 2))
    gfp[spots[:, 0], spots[:, 1]] += 1500
    vacuole = np.zeros_like(mask)
    vacuole[disk(centre, 4, shape=mask.shape)] = True
    rfp = 100 + 300 * mask * (1 - 0.8 * vacuole) + rng.poisson(20, mask.shape)
    return np.stack([gfp, rfp]).astype(np.float32), mask


@pytest.fixture(scope="module")
def cells():
    """Six cells of varied shape and pattern; cell 5 is cut by the crop's border."""
    rng = np.random.default_rng(0)
    shapes = [((24, 24), (12, 12), 0.0), ((22, 25), (14, 9), 0.5), ((25, 23), (10, 13), 1.0),
              ((24, 24), (15, 11), 2.0), ((23, 24), (11, 11), 0.0), ((40, 20), (13, 10), 0.3)]
    crops = [_cell(rng, *s) for s in shapes]
    return np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops])


@pytest.fixture(scope="module")
def measured(cells):
    return measure_cells(*cells, n_jobs=1, progress=False)


def _dataset(cells, n_proteins=4, per_protein=3, seed=1):
    """A tiny dataset: ``n_proteins`` proteins of ``per_protein`` cells, drawn from the six cells, shuffled."""
    images, masks = cells
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(images), n_proteins * per_protein)
    scale = rng.uniform(0.5, 2.0, (len(pick), 2, 1, 1)).astype(np.float32)  # every cell a little different
    proteins = np.repeat([f"P{k}" for k in range(n_proteins)], per_protein)
    order = rng.permutation(len(pick))
    return CellDataset(images=(images[pick] * scale)[order], meta=pd.DataFrame({"protein": proteins[order]}),
                       channels=("gfp", "rfp"), masks=masks[pick][order])


# ---------------------------------------------------------------------------------------
# names and shape


def test_feature_names_and_shape(measured, cells):
    names = feature_names(("gfp", "rfp"))
    assert list(measured.columns) == names and measured.shape == (len(cells[0]), 417)
    assert len(set(names)) == len(names)
    assert all(n.split("_")[0] in ("AreaShape", "Intensity", "Granularity", "Texture", "RadialDistribution",
                                   "Correlation") for n in names)
    assert {"Intensity_MeanIntensity_GFP", "Texture_Contrast_3_00_256_RFP", "Granularity_1_GFP",
            "RadialDistribution_FracAtD_1of4_RFP", "Correlation_Pearson_GFP_RFP", "Correlation_Manders_GFP_RFP",
            "Correlation_Manders_RFP_GFP", "Correlation_Costes_GFP_RFP"} <= set(names)
    assert not any(n.startswith(("Location_", "AreaShape_Center", "AreaShape_BoundingBoxM")) for n in names)
    assert np.isfinite(measured.drop(columns=[c for c in names if "Costes" in c])).all().all()


def test_shape_features_once_per_cell():
    two, three = feature_names(("gfp", "rfp")), feature_names(("a", "b", "c"))
    shape = [n for n in two if n.startswith("AreaShape_")]
    assert two.count("AreaShape_Area") == 1 and len(shape) == 99
    assert not any(n.endswith(("_GFP", "_RFP")) for n in shape)
    per_channel = [n for n in two if n.endswith("_GFP") and not n.startswith("Correlation_")]
    assert len(per_channel) == 155
    assert len(three) == 99 + 3 * 155 + 3 * 8  # shape once, every channel, every pair


# ---------------------------------------------------------------------------------------
# values


def test_values_checked_by_hand():
    masks = np.zeros((2, SIZE, SIZE), bool)
    masks[0][disk((24, 24), 10, shape=(SIZE, SIZE))] = True
    masks[1, 10:30, 8:24] = True
    images = np.empty((2, 2, SIZE, SIZE))
    images[:, 0], images[:, 1] = 0.25, 0.5
    f = measure_cells(images, masks, rescale="none", n_jobs=1, progress=False)
    area = masks.sum((1, 2)).astype(float)
    np.testing.assert_array_equal(f["AreaShape_Area"], area)
    assert area[1] == 320
    np.testing.assert_allclose(f["AreaShape_EquivalentDiameter"], 2 * np.sqrt(area / np.pi))
    np.testing.assert_allclose(f["Intensity_MeanIntensity_GFP"], 0.25)
    np.testing.assert_allclose(f["Intensity_MeanIntensity_RFP"], 0.5)
    np.testing.assert_allclose(f["Intensity_IntegratedIntensity_RFP"], 0.5 * area)
    np.testing.assert_allclose(f["Intensity_StdIntensity_GFP"], 0, atol=1e-12)
    np.testing.assert_allclose(f["AreaShape_Eccentricity"][0], 0, atol=0.05)  # a disc
    np.testing.assert_allclose(f["AreaShape_MajorAxisLength"][1], 4 * np.sqrt((20 ** 2 - 1) / 12), rtol=1e-6)


def test_identical_channels_colocalize_fully(cells):
    images = cells[0][:3].copy()
    images[:, 1] = images[:, 0]
    f = measure_cells(images, cells[1][:3], n_jobs=1, progress=False)
    for name in ("Pearson_GFP_RFP", "Slope_GFP_RFP", "Manders_GFP_RFP", "Manders_RFP_GFP", "RWC_GFP_RFP",
                 "RWC_RFP_GFP"):
        np.testing.assert_allclose(f[f"Correlation_{name}"], 1, atol=1e-9, err_msg=name)
    gfp = [c for c in f.columns if c.endswith("_GFP") and not c.startswith("Correlation_")]
    np.testing.assert_array_equal(f[gfp].to_numpy(), f[[c[:-3] + "RFP" for c in gfp]].to_numpy())


def test_mosaic_equals_cp_measure_on_each_crop(cells, measured):
    """Measuring cells side by side changes nothing: every feature as cp-measure gives it on the crop alone."""
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements

    from protrep.data.normalize import percentile_stretch

    core, corr = get_core_measurements(), get_correlation_measurements()
    pixels = percentile_stretch(cells[0]).astype(np.float64)
    expected = pd.DataFrame(np.nan, index=measured.index, columns=measured.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, mask in enumerate(cells[1].astype(np.int32)):
            results = [(m, (), core[m](mask, pixels[i, 0])) for m in cp.SHAPE_MODULES]
            results += [(m, (c,), core[m](mask, pixels[i, k], **(cp.GRANULARITY if m == "granularity" else {})))
                        for k, c in enumerate(("gfp", "rfp")) for m in cp.CHANNEL_MODULES]
            results += [(m, ("gfp", "rfp"), corr[m](pixels[i, 0], pixels[i, 1], mask,
                                                    **({"scale_max": cp.COSTES_SCALE_MAX} if m == "costes" else {})))
                        for m in cp.PAIR_MODULES]
            for module, chans, result in results:
                for key, value in result.items():
                    name = cp._column(module, key, chans)
                    if name in expected:
                        expected.loc[i, name] = np.asarray(value, float)[0]
    pd.testing.assert_frame_equal(measured, expected, rtol=1e-9, atol=1e-12)


def test_a_cell_measures_the_same_in_any_company(cells, measured):
    alone = measure_cells(cells[0][[4]], cells[1][[4]], n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(alone, measured.iloc[[4]].reset_index(drop=True), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# robustness and parallelism


def test_empty_mask_gives_nan_and_a_warning(cells, measured, caplog):
    images, masks = cells[0][:4].copy(), cells[1][:4].copy()
    masks[2] = False
    with caplog.at_level(logging.WARNING, logger="protrep.evaluation.cellprofiler"):
        f = measure_cells(images, masks, n_jobs=1, progress=False)
    assert f.iloc[2].isna().all() and f.attrs["empty"] == [2]
    assert "1 of 4 cells have an empty mask" in caplog.text
    pd.testing.assert_frame_equal(f.loc[[0, 1, 3]], measured.loc[[0, 1, 3]], rtol=1e-9, atol=1e-12)


def test_a_failing_module_is_named_and_costs_only_its_cell(cells, monkeypatch, caplog):
    feret = cp._functions()["feret"]
    bad_area = int(cells[1][3].sum())

    def fragile(labels, pixels):
        if (np.bincount(labels.ravel())[1:] == bad_area).any():
            raise ValueError("degenerate hull")
        return feret(labels, pixels)

    monkeypatch.setitem(cp._functions(), "feret", fragile)
    with caplog.at_level(logging.WARNING, logger="protrep.evaluation.cellprofiler"):
        f = measure_cells(*cells, n_jobs=1, progress=False)
    assert f.attrs["failed"] == [3] and f.attrs["failures"] == [[3, "feret", "ValueError: degenerate hull"]]
    assert "cell 3 feret: ValueError: degenerate hull" in caplog.text
    ferets = ["AreaShape_MinFeretDiameter", "AreaShape_MaxFeretDiameter"]
    assert f.loc[3, ferets].isna().all() and f.drop(index=3)[ferets].notna().all().all()
    assert f.drop(columns=ferets + [c for c in f.columns if "Costes" in c]).notna().all().all()


def test_n_jobs_does_not_change_the_result(cells):
    one = measure_cells(*cells, n_jobs=1, chunk_size=2, progress=False)
    two = measure_cells(*cells, n_jobs=2, chunk_size=2, progress=False)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert set(two.attrs["seconds"]) == set(cp.SHAPE_MODULES + cp.CHANNEL_MODULES + cp.PAIR_MODULES)


@pytest.mark.parametrize(("change", "message"), [
    ({"rescale": "none"}, "rescale='none' measures images in"),
    ({"rescale": "global"}, "rescale must be"),
    ({"channels": ("gfp",)}, "channels names 1"),
    ({"n_jobs": 0}, "n_jobs must be"),
])
def test_invalid_input_raises(cells, change, message):
    with pytest.raises(ValueError, match=message):
        measure_cells(*cells, **{"n_jobs": 1, "progress": False, **change})


def test_mismatched_masks_raise(cells):
    with pytest.raises(ValueError, match="masks must have shape"):
        measure_cells(cells[0], cells[1][:, :-1], n_jobs=1, progress=False)


# ---------------------------------------------------------------------------------------
# protein tables


def test_select_cells_subsamples_with_a_seed():
    proteins = np.array(["B"] * 5 + ["A"] * 2 + ["C"] * 4)
    picked = select_cells(proteins, 3, seed=0)
    assert list(picked) == sorted(picked)
    counts = pd.Series(proteins[picked]).value_counts().to_dict()
    assert counts == {"A": 2, "B": 3, "C": 3}
    np.testing.assert_array_equal(picked, select_cells(proteins, 3, seed=0))
    assert any(not np.array_equal(picked, select_cells(proteins, 3, seed=s)) for s in range(1, 6))
    np.testing.assert_array_equal(select_cells(proteins, None), np.arange(len(proteins)))
    with pytest.raises(ValueError, match="cells_per_protein"):
        select_cells(proteins, 0)


def test_tables_format_subsampling_and_determinism(cells):
    ds = _dataset(cells)
    raw, pca = cellprofiler_tables(ds, cells_per_protein=2, seed=3, n_jobs=1, progress=False)
    for table in (raw, pca):
        assert list(table["protein"]) == ["P0", "P1", "P2", "P3"] and (table["n_cells"] == 2).all()
        assert list(table.columns[2:]) == [f"f{j:04d}" for j in range(table.shape[1] - 2)]
    assert raw.shape[1] - 2 == len(raw.attrs["feature_names"]) > 300
    assert 1 <= pca.shape[1] - 2 <= 8  # at most the number of cells
    again = cellprofiler_tables(ds, cells_per_protein=2, seed=3, n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(raw, again[0])
    pd.testing.assert_frame_equal(pca, again[1])
    other = cellprofiler_tables(ds, cells_per_protein=2, seed=4, n_jobs=1, progress=False)[0]
    assert other.shape != raw.shape or not np.allclose(raw.iloc[:, 2:], other.iloc[:, 2:])


def test_pca_is_fitted_on_fit_proteins_only(cells):
    ds = _dataset(cells)
    fit = ["P0", "P1", "P2"]
    raw, pca = cellprofiler_tables(ds, fit_proteins=fit, n_jobs=1, progress=False)
    held_out = (ds.meta["protein"] == "P3").to_numpy()
    changed = CellDataset(images=ds.images.copy(), meta=ds.meta, channels=ds.channels, masks=ds.masks)
    changed.images[held_out, 0] = changed.images[held_out, 0][:, ::-1, :] * 3  # other pixels, same masks
    raw2, pca2 = cellprofiler_tables(changed, fit_proteins=fit, n_jobs=1, progress=False)
    for a, b in ((raw, raw2), (pca, pca2)):
        pd.testing.assert_frame_equal(a.iloc[:3], b.iloc[:3])
        assert not np.allclose(a.iloc[3, 2:].to_numpy(float), b.iloc[3, 2:].to_numpy(float))
    everything = cellprofiler_tables(ds, n_jobs=1, progress=False)[1]
    assert not np.allclose(everything.iloc[:3, 2:5].to_numpy(float), pca.iloc[:3, 2:5].to_numpy(float))
    with pytest.raises(ValueError, match="fit_proteins match 0"):
        cellprofiler_tables(ds, fit_proteins=["nope"], n_jobs=1, progress=False)


def test_cache_is_read_back(cells, tmp_path, monkeypatch):
    ds = _dataset(cells, n_proteins=2, per_protein=2)
    first = cellprofiler_tables(ds, cache_dir=tmp_path, n_jobs=1, progress=False)
    assert len(list(tmp_path.glob("cellprofiler-*.npz"))) == 1

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again instead of reading the cache")

    monkeypatch.setattr(cp, "measure_cells", no_measuring)
    second = cellprofiler_tables(ds, cache_dir=tmp_path, n_jobs=1, progress=False)
    for a, b in zip(first, second):
        pd.testing.assert_frame_equal(a, b)


def test_measuring_leaves_torch_unloaded():
    code = ("import sys, numpy as np; from protrep.evaluation.cellprofiler import measure_cells; "
            "m = np.zeros((1, 24, 24), bool); m[0, 6:18, 6:18] = True; "
            "measure_cells(np.random.default_rng(0).random((1, 2, 24, 24)), m, n_jobs=1, progress=False); "
            "assert 'torch' not in sys.modules, sorted(k for k in sys.modules if k.startswith('torch'))[:5]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
