"""The two background protocols, the batched linear SVM and the class-and-seed bootstrap."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.backgrounds import background_brightness, matched_donors
from protrep.data.dataset import CellDataset
from protrep.evaluation.linear_svm import decision_function, fit_linear_svms
from protrep.evaluation.protocols import (class_bootstrap, first_cells, gap_values, heldout_cells, native_design,
                                          published_table)


# ----------------------------------------------------------------------------- linear SVM
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(8, 80), st.floats(0.05, 10.0), st.integers(0, 2**31 - 1))
def test_batched_svm_reaches_liblinears_optimum(d, n, C, seed):
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, n, d))
    y = (rng.random((3, n)) < 0.5).astype(int)
    y[:, :2] = [0, 1]  # both classes present
    x[y == 1] += 0.3
    w = fit_linear_svms(x, y, C=C)

    def objective(weights, b):  # LinearSVC's: squared hinge, the intercept a regularised feature
        margin = np.where(y[b] > 0, 1, -1) * (x[b] @ weights[:-1] + weights[-1])
        return 0.5 * weights @ weights + C * (np.maximum(0, 1 - margin) ** 2).sum()

    for b in range(3):
        ref = LinearSVC(C=C, max_iter=200000, tol=1e-10).fit(x[b], y[b])
        theirs = np.r_[ref.coef_[0], ref.intercept_]
        # a strictly convex objective: reaching liblinear's minimum is reaching its solution
        assert objective(w[b], b) <= objective(theirs, b) * (1 + 1e-6) + 1e-9
        scores = ref.decision_function(x[b])
        assert np.allclose(decision_function(w[b:b + 1], x[b:b + 1])[0], scores,
                           atol=1e-2 * max(1.0, np.abs(scores).max()))


def test_batched_svm_ignores_padding_and_checks_shapes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 30, 4))
    y = (np.arange(30) % 2)[None]
    valid = np.ones((1, 30), bool)
    padded = np.concatenate([x, 100 * rng.normal(size=(1, 10, 4))], axis=1)
    w = fit_linear_svms(x, y, valid)
    w_pad = fit_linear_svms(padded, np.c_[y, np.ones((1, 10))], np.c_[valid, np.zeros((1, 10), bool)])
    np.testing.assert_allclose(w, w_pad, atol=1e-8)
    with pytest.raises(ValueError, match="problems, rows, features"):
        fit_linear_svms(x[0], y)
    with pytest.raises(ValueError, match="C must be positive"):
        fit_linear_svms(x, y, C=0)


# ----------------------------------------------------------------------------- published aggregation
def _pairs(values):
    """Rows of one model: (setting, L1, L2, background, accuracy)."""
    return pd.DataFrame([{"model": "m", "setting": s, "Location1": a, "Location2": b, "Background": g, "Accuracy": v}
                         for s, a, b, g, v in values])


def test_published_table_aggregates_as_their_notebook_by_hand():
    rows = [("base", "a", "b", np.nan, 0.9), ("base", "a", "c", np.nan, 0.7), ("base", "b", "c", np.nan, 0.6),
            ("same", "a", "b", np.nan, 0.8), ("same", "a", "c", np.nan, 0.6), ("same", "b", "c", np.nan, 0.4),
            # diff: per pair only the first row whose background is neither class counts
            ("diff", "a", "b", "a", 0.1), ("diff", "a", "b", "c", 0.8), ("diff", "a", "b", "d", 0.0),
            ("diff", "a", "c", "b", 0.6), ("diff", "b", "c", "a", 0.5), ("diff", "b", "c", "d", 0.0)]
    t = published_table(_pairs(rows))
    # base: groupby Location1 -> a 0.8, b 0.6 (c is never first: it drops out)
    assert t.loc["m", ("base", "mean")] == pytest.approx(0.7)
    assert t.loc["m", ("base", "n_classes")] == 2
    assert t.loc["m", ("base", "err")] == pytest.approx(3 * np.std([0.8, 0.6], ddof=1) / np.sqrt(2))
    # same: per class over both positions -> a 0.7, b 0.6, c 0.5
    assert t.loc["m", ("same", "mean")] == pytest.approx(0.6)
    # diff: ab 0.8 (background c), ac 0.6, bc 0.5 -> a 0.7, b 0.65, c 0.55
    assert t.loc["m", ("diff", "mean")] == pytest.approx(np.mean([0.7, 0.65, 0.55]))
    assert published_table(_pairs(rows), classes=["a", "b"]).loc["m", ("same", "n_classes")] == 2


def test_first_cells_take_the_first_of_each_class_in_order():
    meta = pd.DataFrame({"label": [0, 1, 0, 0, 1, -1, 0], "localization": ["a", "b", "a", "a;b", "b", "a", "a"],
                         "protein": list("pqrstuv")})
    ds = CellDataset(images=np.zeros((7, 1, 4, 4), np.float32), meta=meta, channels=("gfp",), classes=("a", "b"))
    assert first_cells(ds, n=2).tolist() == [0, 1, 2, 4]  # the multi-localized cell 3 is skipped


# ----------------------------------------------------------------------------- strict protocol
def test_heldout_cells_keep_classes_with_two_heldout_proteins():
    meta = pd.DataFrame({"protein": ["p", "p", "q", "r", "s", "t", "u"],
                         "split": ["test", "test", "test", "test", "train", "test", "test"],
                         "label": [0, 0, 0, 1, 1, 2, 2], "localization": ["a", "a", "a", "b", "b", "c;a", "c"]})
    ds = CellDataset(images=np.zeros((7, 1, 4, 4), np.float32), meta=meta, channels=("gfp",), classes=("a", "b", "c"))
    assert heldout_cells(ds).tolist() == [0, 1, 2]  # b has one held-out protein, c one single-localized
    assert heldout_cells(ds, min_proteins=1).tolist() == [0, 1, 2, 3, 6]


def test_matched_donors_follow_class_protein_and_brightness():
    labels = np.array([0, 0, 0, 1, 1, 1])
    proteins = np.array(["p", "q", "q", "r", "s", "s"])
    bright = np.array([10.0, 11.0, 1000.0, 9.0, 5000.0, 12.0])
    rng = np.random.default_rng(0)
    same = matched_donors(labels, proteins, bright, [0], np.arange(6), same=True, k=1, rng=rng)
    assert same.tolist() == [1]  # class 0, another protein, nearest in brightness
    diff = matched_donors(labels, proteins, bright, [0, 1], np.arange(6), same=False, k=2, rng=rng)
    assert set(diff) <= {3, 5}  # the two class-1 cells nearest in brightness, never the bright one
    with pytest.raises(ValueError, match="no same-class donor"):
        matched_donors(labels, proteins, bright, [3], np.arange(3), same=True, rng=rng)


def test_background_brightness_reads_the_surroundings():
    images = np.full((2, 1, 8, 8), 100.0)
    images[1, 0, 0, 0] = 500.0  # a bright neighbour pixel outside the centre
    images[:, 0, 3:5, 3:5] = 2000.0  # the centre cell, excluded
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 3:5, 3:5] = True
    b = background_brightness(images, masks, np.full((2, 1), 100.0), q=100)
    assert b.tolist() == [1.0, 400.0]


# ----------------------------------------------------------------------------- bootstrap
def _values(v, seeds=(0,)):
    classes = [f"c{i}" for i in range(v.shape[0])]
    return pd.DataFrame([{"seed": s, "Location1": classes[a], "Location2": classes[b], "value": v[a, b] + s}
                         for s in seeds for a in range(len(classes)) for b in range(a + 1, len(classes))])


def test_class_bootstrap_mean_and_interval():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(8, 8))
    table = _values(v, seeds=(0, 1, 2))
    b = class_bootstrap(table, n_boot=300, seed=1)
    assert b["mean"] == pytest.approx(table["value"].mean())  # every seed has every pair
    assert b["low"] < b["mean"] < b["high"] and b["n_classes"] == 8 and b["n_seeds"] == 3
    const = class_bootstrap(_values(np.full((5, 5), 0.25)), n_boot=50)
    assert const["low"] == pytest.approx(0.25) and const["high"] == pytest.approx(0.25)


def test_gap_values_pair_by_seed_and_class_pair():
    rows = []
    for m, gap in (("base", 0.1), ("inv", 0.03)):
        for s in (0, 1):
            for setting, acc in (("same", 0.8 + gap), ("diff", 0.8)):
                rows.append({"model": m, "seed": s, "setting": setting, "Location1": "a", "Location2": "b",
                             "Accuracy": acc})
    pairs = pd.DataFrame(rows)
    assert gap_values(pairs, "base")["value"].tolist() == pytest.approx([0.1, 0.1])
    assert gap_values(pairs, "inv", reference="base")["value"].tolist() == pytest.approx([-0.07, -0.07])


def test_native_design_pairs_every_protein_three_ways():
    proteins = pd.DataFrame({
        "protein": [f"P{i}" for i in range(8)], "split": ["test"] * 7 + ["train"],
        "localization": ["a", "a", "a", "b", "b", "c", "a;b", "a"], "primary": ["a", "a", "a", "b", "b", "c", "a", "a"],
        "abundance": [100, 110, 5000, 90, 8000, 100, 100, 100]})
    d = native_design(proteins, k=1, seed=0)
    assert set(d["protein"]) == {"P0", "P1", "P2", "P3", "P4"}  # c has one held-out protein; P6 is multi-localized
    assert (d.groupby("protein")["condition"].apply(sorted) == pd.Series([["base", "diff", "same"]] * 5,
                                                                          index=["P0", "P1", "P2", "P3", "P4"])).all()
    cls = proteins.set_index("protein")["primary"]
    same, diff = d[d.condition == "same"], d[d.condition == "diff"]
    assert (cls[same["protein"]].to_numpy() == cls[same["neighbour"]].to_numpy()).all()
    assert (same["protein"] != same["neighbour"]).all()
    assert (cls[diff["protein"]].to_numpy() != cls[diff["neighbour"]].to_numpy()).all()
    assert d.set_index(["protein", "condition"]).loc[("P0", "same"), "neighbour"] == "P1"  # nearest abundance
    assert "P7" not in set(d["neighbour"])  # neighbours are held out too
    assert len(native_design(proteins, per_class=1, seed=0)) == 6
    with pytest.raises(ValueError, match="no class"):
        native_design(proteins, min_proteins=4)
