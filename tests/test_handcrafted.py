"""Tests of protrep.evaluation.handcrafted on synthetic cells with known patterns and on real crops."""


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from skimage.draw import disk, ellipse
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops

from protrep.evaluation.handcrafted import (
    PERCENTILES,
    feature_names,
    feature_table,
    handcrafted_features,
    handcrafted_pca,
)

SIZE = 64
CENTRE = (32, 32)


# ---------------------------------------------------------------------------------------
# synthetic fixtures


def disk_mask(radius=19, centre=CENTRE, shape=(SIZE, SIZE)):
    m = np.zeros(shape, dtype=bool)
    m[disk(centre, radius, shape=shape)] = True
    return m


def camera(signal, rng, *, offset=100.0, background=20.0):
    """Integer camera counts of a noise-free signal: Poisson noise plus background and offset."""
    return (rng.poisson(np.asarray(signal, dtype=np.float64) + background) + offset).astype(np.float32)


def crop(gfp_signal, rfp_signal, rng):
    return np.stack([camera(gfp_signal, rng), camera(rfp_signal, rng)])


def features(images, masks, **kwargs):
    return handcrafted_features(np.asarray(images), np.asarray(masks), **kwargs)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def random_cells():
    """Six cells of varied shape, position (one cut by the crop border) and pattern."""
    rng = np.random.default_rng(1)
    images, masks = [], []
    for k in range(6):
        m = np.zeros((SIZE, SIZE), dtype=bool)
        centre = (54, 20) if k == 5 else (32 + rng.integers(-4, 5), 32 + rng.integers(-4, 5))
        rr, cc = ellipse(*centre, rng.uniform(14, 22), rng.uniform(10, 16), shape=m.shape,
                         rotation=rng.uniform(0, np.pi))
        m[rr, cc] = True
        g = m * rng.uniform(50, 300)
        spots = rng.integers(0, SIZE, size=(rng.integers(0, 12), 2))
        g[spots[:, 0], spots[:, 1]] += rng.uniform(500, 3000)
        r = m * 300.0 * (1 - 0.8 * disk_mask(6, centre))  # a dark vacuole
        images.append(crop(g, r, rng))
        masks.append(m)
    return np.stack(images), np.stack(masks)


# ---------------------------------------------------------------------------------------
# known patterns


def test_columns_and_no_nan(random_cells):
    images, masks = random_cells
    f = features(images, masks)
    assert list(f.columns) == feature_names()
    assert f.shape == (6, 49)
    assert np.isfinite(f.to_numpy()).all()
    assert f.attrs["n_mask_fallback"] == 0
    zones = f[[f"gfp_radial_frac_{k}" for k in range(1, 5)]].sum(axis=1)
    np.testing.assert_allclose(zones, 1.0, rtol=1e-12)


def test_bright_spot_versus_uniform(rng):
    m = disk_mask()
    uniform = m * 200.0
    spot = uniform.copy()
    spot[disk(CENTRE, 2.5)] += 3000.0
    images = np.stack([crop(uniform, m * 300.0, rng), crop(spot, m * 300.0, rng)])
    f = features(images, np.stack([m, m]))
    u, s = f.iloc[0], f.iloc[1]
    for name in ("gfp_p99", "gfp_max", "gfp_cv", "gfp_skew", "gfp_kurtosis", "gfp_frac_above_2x",
                 "gfp_frac_above_4x", "gfp_gradient", "gfp_local_cv_3"):
        assert s[name] > u[name], name
    # the spot (5 px across, corners cut) holds a 3 x 3 square but no 5 x 5 one: it
    # survives the opening of radius 1 and goes at radius 2
    assert s["gfp_granularity_2"] > u["gfp_granularity_2"] + 0.1
    assert s[[f"gfp_granularity_{r}" for r in (1, 2, 4)]].sum() > u[[f"gfp_granularity_{r}" for r in (1, 2, 4)]].sum()
    # relative to a mean raised by the spot, the bulk of the cell looks dimmer
    assert s["gfp_p50"] < u["gfp_p50"]
    assert u["gfp_frac_above_2x"] == 0


def test_rim_versus_filled(rng):
    m = disk_mask(20)
    filled = m * 300.0
    rim = m * 30.0
    rim[m & ~disk_mask(17)] = 600.0
    images = np.stack([crop(filled, filled, rng), crop(rim, filled, rng)])
    f = features(images, np.stack([m, m]))
    full, ring = f.iloc[0], f.iloc[1]
    assert ring["gfp_radial_frac_1"] > full["gfp_radial_frac_1"] + 0.2
    assert ring["gfp_radial_frac_4"] < full["gfp_radial_frac_4"]
    assert ring["gfp_radial_meanfrac_1"] > 1.5
    for k in range(1, 5):  # a uniform cell has the same share of signal as of area in every zone
        assert full[f"gfp_radial_meanfrac_{k}"] == pytest.approx(1.0, abs=0.1)
    assert full["gfp_com_offset"] < 0.05


def test_polarised_signal_moves_centre_of_mass(rng):
    m = disk_mask(18)
    half = m * 20.0
    half[:, 32:] *= 20
    f = features(np.stack([crop(m * 200.0, m * 300.0, rng), crop(half, m * 300.0, rng)]), np.stack([m, m]))
    assert f.loc[1, "gfp_com_offset"] > 0.3 > f.loc[0, "gfp_com_offset"]


def test_scale_changes_only_log_total(random_cells):
    images, masks = random_cells
    f = features(images, masks)
    f7 = features(images * 7, masks)
    np.testing.assert_allclose(f7["gfp_log_total"] - f["gfp_log_total"], np.log(7), rtol=1e-9)
    rest = [c for c in f.columns if c != "gfp_log_total"]
    np.testing.assert_allclose(f7[rest], f[rest], rtol=1e-9, atol=1e-12)


def test_gfp_equal_rfp_gives_pearson_one(random_cells):
    images, masks = random_cells
    same = images.copy()
    same[:, 1] = same[:, 0]
    f = features(same, masks)
    np.testing.assert_allclose(f["gfp_rfp_pearson"], 1.0, rtol=1e-12)
    # and a bright cell on a dark vacuole-free background anti-correlated with RFP gives < 0
    inverse = images.copy()
    inverse[:, 1] = images[:, 0].max() - images[:, 0]
    assert (features(inverse, masks)["gfp_rfp_pearson"] < 0).all()


def test_vacuole_signal_in_rfp_dark_region(rng):
    m = disk_mask(19)
    vacuole = disk_mask(7, (30, 34))
    rfp = m * 300.0 * (1 - 0.9 * vacuole)
    cytoplasm, vacuolar = m * 200.0 * ~vacuole, m * 20.0 + vacuole * 800.0
    f = features(np.stack([crop(cytoplasm, rfp, rng), crop(vacuolar, rfp, rng)]), np.stack([m, m]))
    assert f.loc[0, "rfp_dark_frac"] == pytest.approx(vacuole.sum() / m.sum(), rel=0.15)
    assert f.loc[1, "gfp_rfp_dark_logratio"] > 2 > -2 > f.loc[0, "gfp_rfp_dark_logratio"]
    assert f.loc[0, "gfp_rfp_pearson"] > 0.5 > -0.5 > f.loc[1, "gfp_rfp_pearson"]
    assert f.loc[0, "gfp_rfp_manders"] > f.loc[1, "gfp_rfp_manders"]


def test_shape_of_ellipse_matches_analytic_axes():
    m = np.zeros((SIZE, SIZE), dtype=bool)
    a, b = 22, 12
    m[ellipse(32, 32, a, b, rotation=0.6, shape=m.shape)] = True
    images = np.stack([m * 100.0, m * 100.0])[None].astype(np.float32)
    f = features(images, m[None]).iloc[0]
    assert f["shape_area"] == m.sum()
    assert f["shape_area"] == pytest.approx(np.pi * a * b, rel=0.02)
    assert f["shape_major_axis"] == pytest.approx(2 * a, rel=0.03)
    assert f["shape_minor_axis"] == pytest.approx(2 * b, rel=0.03)
    assert f["shape_eccentricity"] == pytest.approx(np.sqrt(1 - (b / a) ** 2), abs=0.02)
    props = regionprops(m.astype(np.uint8))[0]
    assert f["shape_major_axis"] == pytest.approx(props.axis_major_length, rel=1e-9)
    assert f["shape_minor_axis"] == pytest.approx(props.axis_minor_length, rel=1e-9)
    assert f["shape_eccentricity"] == pytest.approx(props.eccentricity, rel=1e-9)
    # the 4-connected boundary pixels: those the erosion with a cross removes
    assert f["shape_perimeter"] == pytest.approx(2 * np.pi * np.sqrt((a * a + b * b) / 2), rel=0.25)


def test_empty_mask_falls_back_to_centred_disk(random_cells, caplog):
    images, masks = random_cells
    masks = masks.copy()
    masks[2] = False
    with caplog.at_level("WARNING", logger="protrep.evaluation.handcrafted"):
        f = features(images, masks)
    assert np.isfinite(f.to_numpy()).all()
    assert f.attrs["n_mask_fallback"] == 1 and f.attrs["mask_fallback"] == [2]
    assert "1 of 6 masks" in caplog.text
    assert 1000 < f.loc[2, "shape_area"] < 1300  # radius 0.3 x 64 = 19.2 px
    assert f.loc[2, "shape_eccentricity"] < 0.05


def test_degenerate_cells_give_finite_features():
    images = np.zeros((3, 2, SIZE, SIZE), np.float32)
    images[1] = 5.0  # constant
    masks = np.stack([disk_mask()] * 3)
    masks[2] = False
    f = features(images, masks)
    assert np.isfinite(f.to_numpy()).all()
    assert (f["gfp_cv"] == 0).all() and (f["gfp_haralick_correlation"] == 1).all()


def test_vectorised_equals_per_cell_loop(random_cells):
    images, masks = random_cells
    together = features(images, masks, chunk_size=4)  # two blocks, one not full
    alone = pd.concat([features(images[i:i + 1], masks[i:i + 1]) for i in range(len(images))], ignore_index=True)
    np.testing.assert_allclose(together.to_numpy(), alone.to_numpy(), rtol=1e-10, atol=1e-12)


def test_statistics_match_numpy_and_scipy(random_cells):
    images, masks = random_cells
    f = features(images, masks)
    for i in range(len(images)):
        m = masks[i]
        g = np.maximum(images[i, 0] - np.percentile(images[i, 0], 10, method="nearest"), 0)[m].astype(float)
        r = np.maximum(images[i, 1] - np.percentile(images[i, 1], 10, method="nearest"), 0)[m].astype(float)
        for q in PERCENTILES:
            assert f.loc[i, f"gfp_p{q}"] == pytest.approx(np.percentile(g, q) / g.mean(), rel=1e-12)
        assert f.loc[i, "gfp_cv"] == pytest.approx(g.std() / g.mean(), rel=1e-9)
        assert f.loc[i, "gfp_skew"] == pytest.approx(stats.skew(g), rel=1e-9)
        assert f.loc[i, "gfp_kurtosis"] == pytest.approx(stats.kurtosis(g), rel=1e-9)
        assert f.loc[i, "gfp_log_total"] == pytest.approx(np.log(g.sum()), rel=1e-12)
        assert f.loc[i, "gfp_frac_above_2x"] == pytest.approx((g > 2 * g.mean()).mean(), abs=1e-12)
        assert f.loc[i, "gfp_rfp_pearson"] == pytest.approx(np.corrcoef(g, r)[0, 1], rel=1e-9)
        assert f.loc[i, "gfp_rfp_manders"] == pytest.approx(g[r > np.median(r)].sum() / g.sum(), rel=1e-12)


def test_haralick_matches_skimage(rng):
    g = camera(rng.gamma(2.0, 100.0, size=(SIZE, SIZE)), rng)
    m = np.ones((SIZE, SIZE), dtype=bool)
    f = features(np.stack([g, g])[None], m[None]).iloc[0]
    x = np.maximum(g - np.percentile(g, 10, method="nearest"), 0).astype(float)
    lo, hi = np.percentile(x, [1, 99], method="nearest")
    levels = np.clip(np.floor(8 * (x - lo) / (hi - lo)), 0, 7).astype(np.uint8)
    glcm = graycomatrix(levels, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=8, symmetric=True)
    pooled = glcm.sum(axis=3, keepdims=True).astype(float)
    pooled /= pooled.sum()
    for name, prop in (("contrast", "contrast"), ("homogeneity", "homogeneity"),
                       ("correlation", "correlation"), ("asm", "ASM")):
        assert f[f"gfp_haralick_{name}"] == pytest.approx(graycoprops(pooled, prop)[0, 0], rel=1e-9), name
    p = pooled[pooled > 0]
    assert f["gfp_haralick_entropy"] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-9)


def test_without_rfp_channel(random_cells):
    images, masks = random_cells
    f = features(images[:, :1], masks, channels=("gfp",))
    assert list(f.columns) == feature_names(rfp=False) and f.shape[1] == 39
    full = features(images, masks)
    np.testing.assert_allclose(f, full[f.columns], rtol=1e-12)
    # channel order is taken from the names
    swapped = features(images[:, ::-1], masks, channels=("rfp", "gfp"))
    np.testing.assert_allclose(swapped, full, rtol=1e-12)


def test_segments_when_masks_are_missing(rng):
    m = disk_mask(18)
    images = crop(m * 200.0, m * 400.0, rng)[None]
    f = handcrafted_features(images, None)
    assert np.isfinite(f.to_numpy()).all() and f.attrs["n_mask_fallback"] == 0
    assert f.loc[0, "shape_area"] == pytest.approx(m.sum(), rel=0.2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=np.zeros((2, 64, 64))), "shape"),
    (dict(channels=("gfp",)), "channels"),
    (dict(channels=("protein", "rfp")), "gfp"),
    (dict(masks=np.ones((2, 32, 32), bool)), "masks"),
    (dict(background=101), "background"),
    (dict(min_area=0), "min_area"),
    (dict(chunk_size=0), "chunk_size"),
])
def test_invalid_input_raises(kwargs, match):
    args = dict(images=np.zeros((2, 2, 64, 64)), masks=np.ones((2, 64, 64), bool))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        handcrafted_features(args.pop("images"), args.pop("masks"), **args)
    nan = np.zeros((1, 2, 8, 8))
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        handcrafted_features(nan, np.ones((1, 8, 8), bool))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), radius=st.floats(4, 30), factor=st.sampled_from([2, 3, 7, 0.5, 0.25]))
def test_scale_invariance_property(seed, radius, factor):
    # integer-valued crops (camera counts), so that scaled crops are exact in float32 and
    # the 8-level quantisation cannot flip at a rounding boundary
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 4000, size=(2, 2, 24, 24)).astype(np.float32)
    masks = np.stack([disk_mask(radius, (12, 12), (24, 24)), rng.random((24, 24)) < 0.5])
    f = handcrafted_features(images, masks)
    g = handcrafted_features(images * np.float32(factor), masks)
    assert np.isfinite(f.to_numpy()).all()
    np.testing.assert_allclose(g["gfp_log_total"] - f["gfp_log_total"], np.log(factor), rtol=1e-9, atol=1e-9)
    rest = [c for c in f.columns if c != "gfp_log_total"]
    np.testing.assert_allclose(g[rest], f[rest], rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------------------
# PCA


def test_handcrafted_pca(random_cells):
    images, masks = random_cells
    f = features(np.concatenate([images] * 3), np.concatenate([masks] * 3))
    x, pipe = handcrafted_pca(f, n_components=0.95)
    assert x.shape[0] == len(f) and 1 <= x.shape[1] <= 6
    assert pipe[-1].explained_variance_ratio_.sum() >= 0.95
    np.testing.assert_allclose(pipe.transform(f.to_numpy()), x, atol=1e-8)
    x3, _ = handcrafted_pca(f, n_components=3)
    assert x3.shape == (len(f), 3)
    np.testing.assert_allclose(np.abs(x3), np.abs(x[:, :3]), atol=1e-6)


@pytest.mark.parametrize("n_components", [0, 1.0, 1.5, 100, True, "all"])
def test_handcrafted_pca_rejects_bad_components(n_components):
    with pytest.raises(ValueError, match="n_components"):
        handcrafted_pca(np.random.default_rng(0).normal(size=(10, 5)), n_components=n_components)


def test_handcrafted_pca_rejects_nan():
    x = np.ones((5, 3))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        handcrafted_pca(x)


# ---------------------------------------------------------------------------------------
# real crops


@pytest.fixture(scope="module")
def real_features(request):
    root = request.getfixturevalue("shared_data") / "yeast-crops"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    from protrep.data.readers import read_crop_folder

    ds = read_crop_folder(root)
    return ds, feature_table(ds)


def test_real_crops(real_features):
    ds, f = real_features
    assert len(f) == len(ds) and np.isfinite(f.to_numpy()).all()
    assert f.attrs["n_mask_fallback"] < 0.05 * len(ds)
    by = f.groupby(ds.meta["protein"].to_numpy()).median()
    # AAC1 (mitochondrial network: tubules and puncta) is granular and textured; AAH1
    # (cytoplasm and nucleus) is smooth and follows the cytosolic RFP marker
    assert by.loc["AAC1", "gfp_granularity_2"] > 2 * by.loc["AAH1", "gfp_granularity_2"]
    assert by.loc["AAC1", "gfp_local_cv_3"] > 1.5 * by.loc["AAH1", "gfp_local_cv_3"]
    assert by.loc["AAC1", "gfp_rfp_pearson"] < by.loc["AAH1", "gfp_rfp_pearson"] - 0.2
    x, _ = handcrafted_pca(f)
    assert np.isfinite(x).all()
