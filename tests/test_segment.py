"""Tests of protrep.data.segment on synthetic fields and on the real reference field of view."""


import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse

from protrep.data.segment import (
    centre_offset,
    centres_in_cells,
    extract_crops,
    match_labels,
    segment_cells,
    segment_crop,
)

# The hand-placed centres of yeast-fov/singlecelldata_with_label.csv lie 20 px right of
# and below the cells of r05c05f01p01-ch2sk1fk1fl1.tiff (found by test_fov_centre_offset).
FOV_CENTRE_OFFSET = 20
FOV_PARAMS = dict(sigma=1.0, min_distance=6, min_area=80, max_area=2000, refine=0.3)


# ---------------------------------------------------------------------------------------
# synthetic fixtures


def draw_cells(shape, n, rng, *, radius=(16.0, 22.0), elong=(0.75, 1.0), overlap=0.0):
    """Label image of up to ``n`` random ellipses (cells); ``overlap``: allowed fraction."""
    labels = np.zeros(shape, dtype=np.int32)
    k = 0
    for _ in range(50 * n):
        if k == n:
            break
        r = rng.uniform(*radius)
        rr, cc = ellipse(
            rng.uniform(0, shape[0]),
            rng.uniform(0, shape[1]),
            r,
            r * rng.uniform(*elong),
            shape=shape,
            rotation=rng.uniform(0, np.pi),
        )
        if rr.size < 50 or (labels[rr, cc] > 0).mean() > overlap:
            continue
        free = labels[rr, cc] == 0
        k += 1
        labels[rr[free], cc[free]] = k
    return labels


def render(labels, rng, *, brightness=(0.4, 1.0), gain=800.0, offset=100.0, vignette=0.3,
           blur=1.5, read_noise=3.0):
    """Camera image (uint16) of labelled cells: blur, vignetting, offset, shot + read noise."""
    H, W = labels.shape
    b = rng.uniform(*brightness, size=labels.max() + 1)
    b[0] = 0.0
    img = ndi.gaussian_filter(b[labels].astype(np.float64), blur) * gain + 30.0
    yy, xx = np.mgrid[:H, :W]
    img *= 1 - vignette * ((yy - H / 2) ** 2 + (xx - W / 2) ** 2) / (H * H / 2)
    img = rng.poisson(img) + offset + rng.normal(0, read_noise, img.shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def synthetic_field(seed, shape=(512, 512), n=60, **kw):
    rng = np.random.default_rng(seed)
    draw_kw = {k: kw.pop(k) for k in ("radius", "elong", "overlap") if k in kw}
    labels = draw_cells(shape, n, rng, **draw_kw)
    return render(labels, rng, **kw), labels


# ---------------------------------------------------------------------------------------
# segment_cells


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_cells_finds_synthetic_cells(seed):
    img, truth = synthetic_field(seed)
    labels = segment_cells(img)
    score = match_labels(truth, labels)
    assert score["recall"] >= 0.95
    assert score["precision"] >= 0.95
    assert score["mean_iou"] >= 0.85


def test_segment_cells_splits_crowded_touching_cells():
    img, truth = synthetic_field(3, n=90, overlap=0.08)
    score = match_labels(truth, segment_cells(img))
    assert score["n_true"] >= 80
    assert score["recall"] >= 0.9
    assert score["precision"] >= 0.9


def test_segment_cells_keeps_dim_cells_beside_bright_ones():
    # brightness over a 30-fold range: a linear Otsu threshold would lose the dim ones
    img, truth = synthetic_field(4, n=40, brightness=(0.03, 1.0))
    score = match_labels(truth, segment_cells(img))
    assert score["recall"] >= 0.9


def test_segment_cells_splits_two_touching_disks():
    img = np.full((128, 160), 100.0)
    rr, cc = disk((64, 60), 20)
    img[rr, cc] = 1000.0
    rr, cc = disk((64, 97), 20)  # centres 37 px apart: the disks touch
    img[rr, cc] = 1000.0
    labels = segment_cells(img)
    assert labels.max() == 2
    assert labels[64, 60] != labels[64, 97]
    assert labels[64, 60] > 0 and labels[64, 97] > 0


def test_segment_cells_output_contract():
    img, _ = synthetic_field(5, shape=(300, 256), n=30)
    labels = segment_cells(img, min_area=400, max_area=2000)
    assert labels.dtype == np.int32
    assert labels.shape == img.shape
    ids = np.unique(labels)
    assert list(ids) == list(range(labels.max() + 1))  # consecutive 0..n
    area = np.bincount(labels.ravel())[1:]
    assert area.min() >= 400 and area.max() <= 2000
    # float input of the same data gives the same labels
    np.testing.assert_array_equal(segment_cells(img.astype(np.float32), min_area=400, max_area=2000), labels)


def test_segment_cells_without_cells():
    assert segment_cells(np.full((64, 64), 7, np.uint16)).max() == 0
    rng = np.random.default_rng(0)
    noise = rng.normal(100, 1, (128, 128))
    assert segment_cells(noise).max() <= 1  # pure noise: nothing cell-sized (at most a blob)


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.zeros((2, 8, 8)), {}, "2-D"),
        (np.array([[np.nan, 1.0], [1.0, 1.0]]), {}, "NaN"),
        (np.zeros((8, 8)), {"min_area": 10, "max_area": 5}, "max_area"),
        (np.zeros((8, 8)), {"sigma": -1}, "sigma"),
        (np.zeros((8, 8)), {"min_distance": 2.5}, "min_distance"),
        (np.zeros((8, 8), dtype=bool).astype(object), {}, "dtype"),
    ],
)
def test_segment_cells_rejects_bad_input(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment_cells(image, **kwargs)


def test_segment_crop_takes_the_centre_cell():
    rng = np.random.default_rng(0)
    crop = rng.normal(10, 1, (64, 64))
    centre = np.zeros((64, 64), bool)
    centre[disk((33, 31), 17, shape=crop.shape)] = True
    crop[centre] += 40
    crop[disk((0, 60), 15, shape=crop.shape)] += 40  # a neighbour cut by the border
    crop = ndi.gaussian_filter(crop, 1.0)
    mask, labels = segment_crop(crop, return_labels=True)
    assert mask.dtype == bool and mask.shape == (64, 64)
    assert match_labels(centre, mask)["mean_iou"] > 0.85
    assert labels.max() == 2
    assert not segment_crop(rng.normal(10, 1, (64, 64)) * 0).any()


# ---------------------------------------------------------------------------------------
# match_labels


def test_match_labels_hand_worked():
    true = np.zeros((12, 12), int)
    pred = np.zeros((12, 12), int)
    true[0:4, 0:4] = 1  # 16 px
    pred[0:4, 1:5] = 5  # 16 px, overlap 12, union 20: IoU 0.6 -> found
    true[6:8, 6:8] = 2  # 4 px
    pred[6:10, 6:10] = 9  # 16 px, overlap 4, union 16: IoU 0.25 -> missed
    pred[10:12, 0:2] = 3  # a false positive
    got = match_labels(true, pred)
    assert got.pop("pairs").tolist() == [[1, 5]]
    assert got == {
        "recall": 0.5,
        "precision": pytest.approx(1 / 3),
        "n_true": 2,
        "n_pred": 3,
        "n_matched": 1,
        "mean_iou": pytest.approx(0.6),
    }
    assert match_labels(true, pred, iou=0.7)["n_matched"] == 0


def test_match_labels_counts_a_half_split_cell_once():
    true = np.zeros((4, 4), int)
    true[:2, :] = 1  # 8 px
    pred = np.zeros((4, 4), int)
    pred[:2, :2] = 1  # each half: IoU exactly 0.5
    pred[:2, 2:] = 2
    got = match_labels(true, pred)
    assert got["n_matched"] == 1 and got["recall"] == 1.0 and got["precision"] == 0.5


def test_match_labels_empty_and_bad_input():
    empty = np.zeros((5, 5), int)
    got = match_labels(empty, empty)
    assert got["n_true"] == got["n_pred"] == got["n_matched"] == 0
    assert np.isnan(got["recall"]) and np.isnan(got["precision"])
    with pytest.raises(ValueError, match="same shape"):
        match_labels(empty, np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="iou"):
        match_labels(empty, empty, iou=0.3)
    with pytest.raises(ValueError, match="integer"):
        match_labels(empty.astype(float), empty)


def _match_brute_force(true, pred, iou):
    """Reference: loop over all pairs of objects."""
    found = 0
    for t in np.unique(true[true > 0]):
        best = 0.0
        for p in np.unique(pred[pred > 0]):
            inter = np.sum((true == t) & (pred == p))
            union = np.sum((true == t) | (pred == p))
            best = max(best, inter / union)
        found += best >= iou and best > 0.5  # > 0.5: unique without tie handling
    return found


label_images = st.integers(0, 2**31 - 1).map(
    lambda s: np.random.default_rng(s).integers(0, 5, (12, 12))
)


@settings(max_examples=40, deadline=None)
@given(label_images, st.integers(0, 2**31 - 1))
def test_match_labels_properties(labels, seed):
    rng = np.random.default_rng(seed)
    self_match = match_labels(labels, labels)
    n = len(np.unique(labels[labels > 0]))
    assert self_match["n_matched"] == n == self_match["n_true"]
    if n:
        assert self_match["recall"] == 1.0 and self_match["mean_iou"] == 1.0
    # renaming ids (to large, sparse values) changes nothing
    perm = np.r_[0, rng.permutation(np.arange(1, 5)) * 1000 + 7]
    other = rng.integers(0, 5, labels.shape)
    a = match_labels(labels, other, iou=0.51)
    b = match_labels(perm[labels], other, iou=0.51)
    pa, pb = a.pop("pairs"), b.pop("pairs")
    assert a == b or (a["n_matched"] == b["n_matched"] == 0)
    assert sorted(map(tuple, pb)) == sorted((perm[t], p) for t, p in pa)
    assert (self_match["pairs"][:, 0] == self_match["pairs"][:, 1]).all()
    assert a["n_matched"] == _match_brute_force(labels, other, 0.51)


# ---------------------------------------------------------------------------------------
# centres_in_cells


def test_centres_in_cells():
    labels = np.zeros((10, 20), int)
    labels[2:5, 10:15] = 4
    pts = [(12, 3), (12.4, 3.4), (3, 12), (-5, 3), (12, 30)]  # (x, y)
    recall, hits = centres_in_cells(labels, pts)
    assert recall == pytest.approx(2 / 5)
    np.testing.assert_array_equal(hits, [4, 4, 0, 0, 0])
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        centres_in_cells(labels, [1, 2, 3])


# ---------------------------------------------------------------------------------------
# extract_crops


def _coordinate_field(H, W):
    """Two channels: row index and column index, so every crop says where it came from."""
    rows, cols = np.mgrid[:H, :W]
    return np.stack([rows, cols]).astype(np.int32)


def test_extract_crops_geometry():
    H, W = 100, 120
    labels = np.zeros((H, W), np.int32)
    labels[disk((40, 50), 12)] = 3
    labels[disk((90, 60), 8, shape=(H, W))] = 8  # too close to the bottom border for 32
    field = _coordinate_field(H, W)
    crops, masks, table = extract_crops(field, labels, size=32)
    assert crops.shape == (1, 2, 32, 32) and crops.dtype == np.int32
    assert masks.shape == (1, 32, 32) and masks.dtype == bool
    assert list(table.columns) == ["cell", "x", "y", "area"]
    assert table.loc[0, "cell"] == 3
    assert table.loc[0, "area"] == np.sum(labels == 3)
    assert (table.loc[0, "x"], table.loc[0, "y"]) == pytest.approx((50, 40))
    # the centroid lands on crop pixel (16, 16); the crop is the field window around it
    assert crops[0, 0, 16, 16] == 40 and crops[0, 1, 16, 16] == 50
    np.testing.assert_array_equal(crops[0, 0, :, 0], np.arange(24, 56))
    np.testing.assert_array_equal(masks[0], labels[24:56, 34:66] == 3)

    crops, masks, table = extract_crops(field, labels, size=32, exclude_border=False)
    assert list(table["cell"]) == [3, 8]
    # cell 8 (centroid row 87 or so) runs off the bottom: zero-padded, mask False there
    top = int(np.rint(table.loc[1, "y"])) - 16
    inside = H - top
    assert (crops[1, :, inside:] == 0).all() and not masks[1, inside:].any()
    np.testing.assert_array_equal(crops[1, 0, :inside, 0], np.arange(top, H))
    assert masks[1].sum() == np.sum(labels == 8)


def test_extract_crops_empty_and_bad_input():
    field = np.zeros((2, 20, 20), np.uint16)
    crops, masks, table = extract_crops(field, np.zeros((20, 20), int), size=8)
    assert crops.shape == (0, 2, 8, 8) and masks.shape == (0, 8, 8) and len(table) == 0
    labels = np.zeros((20, 20), int)
    labels[5:10, 5:10] = 1
    assert len(extract_crops(field, labels, size=64)[2]) == 0  # crop larger than field
    with pytest.raises(ValueError, match="field"):
        extract_crops(field[0], labels)
    with pytest.raises(ValueError, match="shape"):
        extract_crops(field, labels[:10])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([16, 21, 32]), st.booleans())
def test_extract_crops_properties(seed, size, exclude_border):
    rng = np.random.default_rng(seed)
    labels = draw_cells((96, 80), 6, rng, radius=(3.0, 9.0), elong=(0.5, 1.0))
    field = _coordinate_field(96, 80)
    crops, masks, table = extract_crops(field, labels, size=size, exclude_border=exclude_border)
    n_cells = len(np.unique(labels[labels > 0]))
    assert len(table) == len(crops) == len(masks) <= n_cells
    if not exclude_border:
        assert len(table) == n_cells
    c = size // 2
    for i, row in table.iterrows():
        # the centre pixel of every crop belongs to its cell (ellipses are convex)
        assert masks[i, c, c]
        assert crops[i, 0, c, c] == np.rint(row["y"]) and crops[i, 1, c, c] == np.rint(row["x"])
        assert masks[i].sum() <= row["area"]
        if exclude_border:
            top, left = int(np.rint(row["y"])) - c, int(np.rint(row["x"])) - c
            np.testing.assert_array_equal(
                masks[i], labels[top : top + size, left : left + size] == row["cell"]
            )


# ---------------------------------------------------------------------------------------
# real data


def _read_fov(shared_data):
    from PIL import Image

    folder = shared_data / "yeast-fov"
    image = np.array(Image.open(folder / "r05c05f01p01-ch2sk1fk1fl1.tiff"))
    centres = pd.read_csv(folder / "singlecelldata_with_label.csv")
    return image, centres[["Center X", "Center Y"]].to_numpy(float)


def test_fov_centres_fall_in_segmented_cells(shared_data):
    image, centres = _read_fov(shared_data)
    assert image.shape == (1080, 1080) and image.dtype == np.uint16
    labels = segment_cells(image, **FOV_PARAMS)
    recall, hits = centres_in_cells(labels, centres - FOV_CENTRE_OFFSET)
    assert recall >= 0.9  # 1.0 when written
    assert len(np.unique(hits[hits > 0])) >= 90  # nearly one cell per centre, not merged
    area = np.bincount(labels.ravel())[hits[hits > 0]]
    assert 14 < np.median(2 * np.sqrt(area / np.pi)) < 30  # cells ~20 px across here


def test_fov_centre_offset(shared_data):
    """The CSV centres sit (+20, +20) px from the cells: the shift that puts most in cells."""
    image, centres = _read_fov(shared_data)
    cells = segment_cells(image, **FOV_PARAMS)
    assert centres_in_cells(cells, centres)[0] < 0.5  # as given, most centres miss
    dx, dy, recall = centre_offset(cells, centres, max_shift=30)
    assert abs(dx + FOV_CENTRE_OFFSET) <= 4 and abs(dy + FOV_CENTRE_OFFSET) <= 4
    assert recall.max() >= 0.9 and recall[30, 30] < 0.5  # a sharp peak, far from no shift


def test_centre_offset_recovers_a_known_shift():
    labels = np.zeros((120, 120), int)
    rng = np.random.default_rng(0)
    pts = []
    for i, (y, x) in enumerate(rng.integers(15, 105, (12, 2))):
        labels[y - 3:y + 4, x - 3:x + 4] = i + 1
        pts.append((x, y))
    dx, dy, recall = centre_offset(labels, np.array(pts) + (7, -5), max_shift=10)
    assert (dx, dy) == (-7, 5) and recall.max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        centre_offset(labels, np.zeros(3))


def test_segment_crop_on_real_crops(shared_data):
    import tifffile

    files = sorted((shared_data / "yeast-crops").glob("*/*_rfp.tif"))[::20]
    diam = []
    for f in files:
        mask = segment_crop(tifffile.imread(f))
        assert mask[28:36, 28:36].any()  # the crop's own cell, at its centre
        diam.append(2 * np.sqrt(mask.sum() / np.pi))
    assert 30 < np.median(diam) < 45


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([3, 50, 70000, 2**40]), st.booleans())
def test_compact_equals_unique(seed, high, negative):
    from protrep.data.segment import _compact

    rng = np.random.default_rng(seed)
    flat = rng.integers(-5 if negative else 0, high, 500)
    ids, inv = _compact(flat)
    ref_ids, ref_inv = np.unique(flat, return_inverse=True)
    assert np.array_equal(ids, ref_ids) and np.array_equal(inv, ref_inv)
