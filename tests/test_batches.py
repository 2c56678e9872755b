import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.dataset import CellDataset
from protrep.data.normalize import percentile_stretch
from protrep.training.batches import CellTensors, augment, center_crop, step_generator


def _dataset(proteins, size=8, seed=0):
    rng = np.random.default_rng(seed)
    n = len(proteins)
    meta = pd.DataFrame({"protein": proteins, "label": rng.integers(-1, 3, n)})
    return CellDataset(rng.random((n, 2, size, size)).astype(np.float32) * 1000, meta, ("gfp", "rfp"))


def test_percentile_stretch_maps_each_cell_channel_to_unit_range():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, (5, 2, 16, 16)) * np.array([1, 50])[None, :, None, None]
    y = percentile_stretch(x, 0, 100)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.allclose(y.min(axis=(2, 3)), 0) and np.allclose(y.max(axis=(2, 3)), 1)
    z = percentile_stretch(x)  # 0.1 / 99.9: a few pixels clipped
    assert 0 <= z.min() and z.max() <= 1
    assert np.allclose(percentile_stretch(3 * x + 7), z, atol=1e-5)  # scale and offset free
    with pytest.raises(ValueError, match="shape"):
        percentile_stretch(x[0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=60), st.integers(0, 1000))
def test_partners_share_the_protein_and_differ_from_the_cell(proteins, seed):
    t = CellTensors.from_dataset(_dataset([f"P{p}" for p in proteins]))
    idx = np.arange(len(t))
    part = t.partners(idx, step_generator(seed, 0, 0))
    codes = t.protein
    assert (codes[part] == codes[idx]).all()
    alone = np.bincount(codes)[codes] == 1
    assert (part[~alone] != idx[~alone]).all() and (part[alone] == idx[alone]).all()
    assert np.array_equal(part, t.partners(idx, step_generator(seed, 0, 0)))


def test_partners_are_uniform_over_the_other_members():
    t = CellTensors.from_dataset(_dataset(["A"] * 4 + ["B"] * 3))
    g = torch.Generator().manual_seed(0)
    draws = np.concatenate([t.partners(np.zeros(1000, int), g) for _ in range(4)])
    counts = np.bincount(draws, minlength=7)
    assert counts[0] == 0 and counts[4:].sum() == 0
    assert np.allclose(counts[1:4] / counts.sum(), 1 / 3, atol=0.03)


def test_augment_is_a_dihedral_transform_and_crop():
    x = torch.arange(2 * 2 * 6 * 6, dtype=torch.float32).reshape(2, 2, 6, 6)
    batch = {"image": x, "partner": x.clone(), "label": torch.tensor([0, 1])}
    out = augment(batch, step_generator(0, 0, 0))
    for i in range(2):
        variants = [torch.rot90(v, r, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for r in range(4)]
        assert any(torch.equal(out["image"][i], v) for v in variants)
    assert torch.equal(out["label"], batch["label"])
    cropped = augment(batch, step_generator(0, 0, 1), crop=4)["image"]
    assert cropped.shape == (2, 2, 4, 4)
    # every crop is a contiguous window of some dihedral variant
    for i in range(2):
        variants = [torch.rot90(v, r, dims=(-2, -1)) for v in (x[i], x[i].flip(-1)) for r in range(4)]
        assert any(torch.equal(cropped[i], v[:, a:a + 4, b:b + 4]) for v in variants for a in range(3) for b in range(3))
    again = augment(batch, step_generator(0, 0, 1), crop=4)["image"]
    assert torch.equal(cropped, again)


def test_center_crop():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    assert torch.equal(center_crop(x, 4), x[..., 2:6, 2:6])
    assert center_crop(x, None) is x and center_crop(x, 8) is x


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_dihedral_and_crop_match_their_definitions(n, seed):
    from protrep.training.batches import _crop_at, _dihedral

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, 7, 7, generator=g)
    k, flip = torch.randint(0, 4, (n,), generator=g), torch.rand(n, generator=g) < 0.5
    expected = torch.stack([torch.rot90(x[i].flip(-1) if flip[i] else x[i], int(k[i]), dims=(-2, -1))
                            for i in range(n)])
    assert torch.equal(_dihedral(x, k, flip), expected)
    oy, ox = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
    windows = torch.stack([x[i, :, oy[i]:oy[i] + 5, ox[i]:ox[i] + 5] for i in range(n)])
    assert torch.equal(_crop_at(x, 5, oy, ox), windows)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9), low=st.floats(0, 50), span=st.floats(0, 50),
       ties=st.booleans(), seed=st.integers(0, 2**16))
def test_fast_percentiles_equal_numpy(n, h, w, low, span, ties, seed):
    from protrep.data.normalize import _percentiles

    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 5, (n, 2, h * w)) if ties else rng.random((n, 2, h * w)) * 1000).astype(np.float32)
    qs = (low, low + span)
    got = _percentiles(x, qs)
    step = np.spacing(np.float32(np.abs(x).max()))  # one float32 step at the largest value
    for q, values in zip(qs, got):
        assert np.allclose(values, np.percentile(x, q, axis=-1), rtol=0, atol=step)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), side=st.integers(1, 9))
def test_stretch_of_integer_counts_equals_stretch_of_their_float32_values(seed, side):
    # shards hold uint16 counts, which the stretch ranks as integers; the result must not change
    from protrep.data.normalize import percentile_stretch

    counts = np.random.default_rng(seed).integers(0, 65535, (3, 2, side, side)).astype(np.uint16)
    assert np.array_equal(percentile_stretch(counts), percentile_stretch(counts.astype(np.float32)))
