import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.backgrounds import (
    SETTINGS,
    background_setting,
    background_stats,
    compose,
    draw_donors,
    mask_background,
)
from protrep.data.dataset import CellDataset, load_dataset
from protrep.errors import DataError
from protrep.evaluation.background import run_background
from protrep.evaluation.confounding import (
    class_sensitivity,
    distribution_shift,
    fold_ranks,
    format_table1,
    gap_change,
    kl_divergence,
    localization_shift,
    pairwise_svm,
    read_published,
    select_cells,
    table1,
)
from protrep.evaluation.protocols import published_table
from protrep.training.batches import augment, mask_to_level, randomize_background

CLASSES = ("a", "b", "c")


def _disk(h, cy, cx, r):
    yy, xx = np.mgrid[:h, :h]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _crops(n=36, size=48, seed=0):
    """Crops with a centre cell, a neighbour in a corner and Gaussian background (level 100, noise 5).

    Class k of the centre cell sets its GFP brightness; the neighbour's GFP tells the class too
    (as neighbours of a real screen do), so background swaps can confuse a classifier.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = 100 + 5 * rng.standard_normal((n, 2, size, size))
    centre = _disk(size, size // 2, size // 2, 8)
    neighbour = _disk(size, 8, 8, 7)
    for i, k in enumerate(labels):
        images[i, 0][centre] += 200 * (k + 1)
        images[i, 0][neighbour] += 200 * (k + 1)
        images[i, 1][centre | neighbour] += 300
    meta = pd.DataFrame({"protein": [f"P{k}{i % 2}" for i, k in enumerate(labels)], "label": labels,
                         "localization": [CLASSES[k] for k in labels]})
    return CellDataset(images=images.astype(np.float32), meta=meta, channels=("gfp", "rfp"), classes=CLASSES,
                       masks=np.repeat(centre[None], n, 0), source="toy")


def test_background_stats_find_the_cell_free_level_and_noise():
    ds = _crops()
    level, noise = background_stats(ds.images, ds.masks)
    assert level.shape == noise.shape == (len(ds), 2)
    np.testing.assert_allclose(level, 100, atol=1.0)  # the neighbour's bright pixels are not counted
    np.testing.assert_allclose(noise, 5, rtol=0.15)


def test_settings_keep_the_centre_cell_and_change_only_the_background():
    ds = _crops()
    centre = ds.masks[0]
    base = background_setting(ds, "base")
    np.testing.assert_array_equal(base.images, ds.images)
    for setting in SETTINGS[1:]:
        out = background_setting(ds, setting, seed=1)
        assert out.images.shape == ds.images.shape and out.images.dtype == np.float32
        np.testing.assert_array_equal(out.images[:, :, centre], ds.images[:, :, centre])
        assert not np.array_equal(out.images[:, :, ~centre], ds.images[:, :, ~centre])
        again = background_setting(ds, setting, seed=1)
        np.testing.assert_array_equal(out.images, again.images)  # seeded
    masked = background_setting(ds, "mask")
    level, _ = background_stats(ds.images, ds.masks)
    np.testing.assert_allclose(masked.images[:, :, ~centre], np.broadcast_to(level[:, :, None],
                                                                              masked.images[:, :, ~centre].shape))
    free = background_setting(ds, "cellfree").images[:, 0][:, ~centre]
    assert abs(free.mean() - 100) < 1 and abs(free.std() - 5) < 1  # no neighbour left


def test_swaps_take_donors_of_the_right_class_and_shift_their_level():
    ds = _crops()
    ds.images[1::2] += 50  # every other crop is brighter: the donor must be brought to the recipient's level
    labels = ds.meta["label"].to_numpy()
    corner = _disk(48, 8, 8, 7)
    for setting in ("same", "diff"):
        out = background_setting(ds, setting, seed=2)
        donor = out.meta["donor"].to_numpy()
        assert (donor >= 0).all()
        assert ((labels[donor] == labels) == (setting == "same")).all()
        if setting == "same":
            assert (ds.meta["protein"].to_numpy()[donor] != ds.meta["protein"].to_numpy()).all()
        # the neighbour of a swapped crop is the donor's neighbour, at the recipient's level
        level, _ = background_stats(ds.images, ds.masks)
        expected = ds.images[donor][:, :, corner] + (level - level[donor])[:, :, None]
        np.testing.assert_allclose(out.images[:, :, corner], expected, rtol=1e-5)


def test_donors_fall_back_to_the_same_protein_and_raise_without_other_classes():
    rng = np.random.default_rng(0)
    pick = draw_donors([0, 1], ["x", "y"], [0, 0, 1], ["x", "x", "y"], same=True, rng=rng)
    assert list(pick[:1]) in ([0], [1]) and pick[1] == 2  # class 1 has only protein y
    with pytest.raises(ValueError, match="other class"):
        draw_donors([0], ["x"], [0, 0], ["x", "z"], same=False, rng=rng)
    with pytest.raises(ValueError, match="no donor"):
        draw_donors([2], ["x"], [0, 1], ["x", "y"], same=True, rng=rng)


def test_setting_errors_name_the_problem():
    ds = _crops()
    with pytest.raises(ValueError, match="unknown background setting"):
        background_setting(ds, "blur")
    no_masks = CellDataset(images=ds.images, meta=ds.meta, channels=ds.channels, classes=ds.classes, source="x.h5")
    with pytest.raises(DataError, match="x.h5.*masks"):
        background_setting(no_masks, "mask")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_compose_is_a_masked_choice(n, seed):
    rng = np.random.default_rng(seed)
    x, bg = rng.normal(size=(2, n, 2, 6, 6)).astype(np.float32)
    m = rng.random((n, 6, 6)) < 0.5
    out = compose(x, m, bg)
    for i in range(n):
        np.testing.assert_array_equal(out[i][:, m[i]], x[i][:, m[i]])
        np.testing.assert_array_equal(out[i][:, ~m[i]], bg[i][:, ~m[i]])
    level = rng.normal(size=(n, 2)).astype(np.float32)
    masked = mask_to_level(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(level))
    np.testing.assert_array_equal(masked.numpy(), mask_background(x, m, level))  # the training twin agrees


def test_randomize_background_keeps_the_centre_and_gives_a_masked_target():
    ds = _crops(n=8)
    x = torch.from_numpy(ds.images)
    masks = torch.from_numpy(ds.masks)
    level, noise = (torch.from_numpy(a) for a in background_stats(ds.images, ds.masks))
    batch = {"image": x, "label": torch.zeros(8, dtype=torch.long)}
    kept = randomize_background(batch, masks, level, noise, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(kept["image"], x) and torch.equal(kept["label"], batch["label"])
    target = kept["target"]
    assert torch.equal(target[:, :, masks[0]], x[:, :, masks[0]])
    assert torch.allclose(target[:, :, ~masks[0]], level[:, :, None].expand(-1, -1, int((~masks[0]).sum())))
    new = randomize_background(batch, masks, level, noise, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(new["image"][:, :, masks[0]], x[:, :, masks[0]])
    changed = (new["image"][:, :, ~masks[0]] != x[:, :, ~masks[0]]).float().mean(dim=(1, 2))
    assert (changed > 0.5).all()
    again = randomize_background(batch, masks, level, noise, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(new["image"], again["image"])
    masked = randomize_background(batch, masks, level, noise, torch.Generator().manual_seed(0), p=1.0, modes=(0,))
    assert torch.equal(masked["image"], masked["target"])  # masking at input: the model sees the centre cell alone


def test_augment_gives_the_target_the_image_transform():
    x = torch.rand(6, 2, 16, 16)
    batch = {"image": x, "partner": x.clone(), "target": x.clone()}
    out = augment(batch, torch.Generator().manual_seed(4), crop=12)
    assert out["target"].shape == (6, 2, 12, 12)
    assert torch.equal(out["target"], out["image"])
    assert not torch.equal(out["partner"], out["image"])  # the partner draws its own transform


def _sklearn_pair(x, labels, a, b, ranks, k):
    """One pair's cross-validated accuracy with scikit-learn, on the folds ``ranks % k``."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    idx = np.flatnonzero(np.isin(labels, [a, b]))
    y, fold = (labels[idx] == b).astype(int), ranks[idx] % k
    acc = []
    for f in range(k):
        svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, max_iter=100000, tol=1e-8))
        svm.fit(x[idx[fold != f]], y[fold != f])
        acc.append((svm.predict(x[idx[fold == f]]) == y[fold == f]).mean())
    return np.mean(acc), np.std(acc)


def test_pairwise_svm_matches_scikit_learn_on_the_same_folds():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 5)) + 0.8 * labels[:, None] * np.array([1, 0, 0, 0, 0])
    pairs = pairwise_svm(x, labels, CLASSES, folds=5, seed=3)
    assert list(pairs.columns) == ["Location1", "Location2", "n_per_class", "folds", "Accuracy", "StdDev"]
    assert len(pairs) == 3 and (pairs["n_per_class"] == 40).all() and (pairs["folds"] == 5).all()
    ranks, _ = fold_ranks(labels, seed=3)
    row = pairs[(pairs.Location1 == "a") & (pairs.Location2 == "c")].iloc[0]
    acc, sd = _sklearn_pair(x, labels, 0, 2, ranks, 5)
    assert row.Accuracy == pytest.approx(acc) and row.StdDev == pytest.approx(sd)
    assert row.Accuracy > pairs.Accuracy.min()  # a and c are further apart than a and b
    parallel = pairwise_svm(x, labels, CLASSES, folds=5, seed=3, n_jobs=2, chunk=2)
    pd.testing.assert_frame_equal(parallel, pairs)


def test_grouped_folds_never_split_a_protein_and_cap_the_folds():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 30)
    groups = np.r_[np.repeat(["p0", "p1", "p2"], 10), np.repeat(["q0", "q1"], 15), np.repeat(["r0"], 30)]
    ranks, units = fold_ranks(labels, groups, seed=0)
    assert units == {0: 3, 1: 2, 2: 1}
    for g in np.unique(groups):
        assert len(set(ranks[groups == g])) == 1  # a protein's cells share one fold
    x = rng.normal(size=(90, 3)) + labels[:, None]
    pairs = pairwise_svm(x, labels, CLASSES, groups=groups, folds=5)
    assert len(pairs) == 1 and pairs.folds.iloc[0] == 2  # class c has one protein; a-b: min(5, 3, 2) folds
    acc, _ = _sklearn_pair(x, labels, 0, 1, ranks, 2)
    assert pairs.Accuracy.iloc[0] == pytest.approx(acc)
    with pytest.raises(ValueError, match="one group per cell"):
        pairwise_svm(x, labels, CLASSES, groups=groups[:5])


def test_pairwise_svm_is_at_chance_without_signal_and_skips_small_classes():
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(150, int), np.ones(150, int), np.full(3, 2)]
    pairs = pairwise_svm(rng.normal(size=(303, 4)), labels, CLASSES, folds=5)
    assert len(pairs) == 1  # class c has 3 cells < 5 folds
    assert abs(pairs.Accuracy.iloc[0] - 0.5) < 0.1
    with pytest.raises(ValueError, match="NaN"):
        pairwise_svm(np.full((303, 4), np.nan), labels, CLASSES)


def test_select_cells_caps_every_class():
    labels = np.r_[np.zeros(50, int), np.ones(5, int), -np.ones(7, int)]
    idx = select_cells(labels, max_per_class=10, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 5] and (np.diff(idx) > 0).all()


def test_table1_and_sensitivity_by_hand():
    pairs = pd.DataFrame({"model": ["m"] * 6, "setting": ["same"] * 3 + ["diff"] * 3,
                          "Location1": ["a", "a", "b"] * 2, "Location2": ["b", "c", "c"] * 2,
                          "Accuracy": [0.9, 0.8, 0.7, 0.6, 0.8, 0.4]})
    t = table1(pairs)
    assert t.loc["m", ("same", "mean")] == pytest.approx(0.8)
    assert t.loc["m", ("same", "err")] == pytest.approx(3 * 0.1 / np.sqrt(3))
    shown = format_table1(t)
    assert shown.loc["m"].tolist() == [f"0.800 ± {3 * 0.1 / np.sqrt(3):.3f}",
                                       f"0.600 ± {3 * 0.2 / np.sqrt(3):.3f}", "+0.200"]
    gap = class_sensitivity(pairs, CLASSES)  # gaps: ab 0.3, ac 0.0, bc 0.3
    assert gap.loc["m"].to_dict() == pytest.approx({"a": 0.15, "b": 0.3, "c": 0.15})
    other = pairs.assign(model="n", Accuracy=[0.9, 0.8, 0.7, 0.8, 0.8, 0.6])  # gaps: 0.1, 0.0, 0.1
    mean, err = gap_change(pd.concat([pairs, other]), "n", "m")  # differences -0.2, 0.0, -0.2
    assert mean == pytest.approx(-0.4 / 3)
    assert err == pytest.approx(3 * np.std([-0.2, 0.0, -0.2], ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="fewer than two"):
        gap_change(pairs, "x", "m")


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_kl_divergence_properties(k, seed):
    from scipy.stats import entropy

    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(k), size=2)
    assert kl_divergence(p, p)[0] == pytest.approx(0, abs=1e-12)
    assert kl_divergence(p, q, eps=0)[0] == pytest.approx(entropy(p, q))
    assert kl_divergence(p, q)[0] >= 0


def test_distribution_shift_flags_changed_proteins():
    with_bg = np.array([[0.5, 0.5, 0], [0.5, 0.5, 0], [1, 0, 0], [1, 0, 0]])
    without = np.array([[0.9, 0.1, 0], [0.9, 0.1, 0], [1, 0, 0], [0.98, 0.02, 0]])
    table = distribution_shift(["x", "x", "y", "y"], with_bg, without, CLASSES, threshold=0.1)
    assert table.set_index("protein")["changed"].to_dict() == {"x": True, "y": False}
    assert table["with:a"].tolist() == [0.5, 1.0] and (table["n_cells"] == 2).all()


def test_localization_shift_and_run_background_end_to_end(tmp_path):
    ds = _crops(n=60)
    ds.meta.loc[ds.meta.protein == "P01", "localization"] = "a;b"  # one multi-localized protein

    def gfp_mean(crops):  # a "model" that reads the whole crop, neighbours included
        return crops.images[:, :1].mean(axis=(2, 3))

    def softmax_of_gfp(crops):
        z = gfp_mean(crops) / 100.0 - np.array([[2, 4, 6]])
        e = np.exp(-np.abs(z))
        return e / e.sum(1, keepdims=True)

    tables, changed = localization_shift(ds, ["P01", "P10"], {"m": softmax_of_gfp}, cells_per_protein=5)
    assert set(tables["m"]["protein"]) == {"P01", "P10"}
    assert changed["m"] == pytest.approx((tables["m"]["kl"] > 0.1).mean())  # the share above the threshold

    held = ds.meta["protein"].str.endswith("0").to_numpy()
    ds.meta["split"] = np.where(held, "test", "train")
    ds.meta.loc[held, "protein"] += np.where(np.arange(len(ds))[held] % 4 == 0, "x", "y")  # two held out per class
    result = run_background(ds, {}, handcrafted=True, max_per_class=20, folds=3, n_boot=50, progress=False)
    assert set(result["pairs"]["setting"]) == set(SETTINGS)
    assert set(ds.meta["split"].iloc[result["index"]]) == {"test"}
    summary = result["summary"]
    json.dumps(summary)
    assert set(summary["table1"]["cellprofiler"]) == set(SETTINGS)
    gap = summary["same_minus_diff"]["cellprofiler"]
    assert gap["low"] <= gap["mean"] <= gap["high"]


@pytest.fixture(scope="module")
def quick(quick_screen):
    return quick_screen


@pytest.mark.slow
def test_training_with_background_randomisation(quick, tmp_path):
    from protrep.models import ModelConfig
    from protrep.training.loop import TrainConfig, train
    from protrep.training.runs import load_run

    ds = load_dataset(quick)
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps=4, warmup_steps=2, seed=3, background=0.5)
    for name in ("deeploc", "ae"):
        history = train(ModelConfig(name=name, width=0.125, latent_dim=32), cfg, ds, tmp_path / name, progress=False)
        assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
        assert load_run(tmp_path / name)[1]["train"]["background"] == 0.5
    masked = dataclasses.replace(cfg, background=1.0, background_mode="mask")
    history = train(ModelConfig(name="deeploc", width=0.125), masked, ds, tmp_path / "masked", progress=False)
    assert np.isfinite(history["val_loss"]).all()
    assert load_run(tmp_path / "masked")[1]["train"]["background_mode"] == "mask"
    with pytest.raises(ValueError, match="background"):
        TrainConfig(background=1.5)
    with pytest.raises(ValueError, match="background_mode"):
        TrainConfig(background_mode="swap")


def test_published_table_matches_the_readme(shared_data):
    folder = shared_data / "reference-results" / "gupta2025"
    published = read_published(folder)
    assert set(published["model"]) == {"deeploc", "pci", "pifia"}
    base = published[(published.model == "deeploc") & (published.setting == "base")]
    assert len(base) == 105  # every pair of the 15 classes
    t = published_table(published)
    # the shared README's Table 1, their analyze_swap.ipynb aggregation: equal to the third decimal
    readme = {"pifia": [0.946, 0.883, 0.939, 0.843, 0.902], "pci": [0.916, 0.869, 0.930, 0.772, 0.876],
              "deeploc": [0.713, 0.677, 0.746, 0.612, 0.689]}
    for model, values in readme.items():
        ours = [t.loc[model, (s, "mean")] for s in ("base", "mask", "same", "diff", "cellfree")]
        np.testing.assert_allclose(ours, values, atol=0.0005)
    assert t.loc["deeploc", ("base", "n_classes")] == 14  # grouped by Location1: vacuole drops out


def test_read_published_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_published(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(DataError, match="no results"):
        read_published(tmp_path)
    (tmp_path / "m" / "results_base.csv").write_text("A,B\n1,2\n")
    with pytest.raises(DataError, match="results_base.csv.*lacks columns"):
        read_published(tmp_path)


@pytest.mark.slow
def test_cli_background(quick, tmp_path, capsys):
    from protrep.cli import main
    from protrep.models import ModelConfig
    from protrep.training.loop import TrainConfig, train

    path = quick
    ds = load_dataset(path)
    train(ModelConfig(name="ae", width=0.125, latent_dim=16), TrainConfig(epochs=1, batch_size=16, max_steps=2,
                                                                          warmup_steps=1), ds, tmp_path / "ae",
          progress=False)
    out = tmp_path / "bg.json"
    assert main(["background", str(path), "--run", f"ae={tmp_path / 'ae'}", "--max-per-class", "20", "--folds", "2",
                 "--jobs", "1", "--n-boot", "20", "--out", str(out), "--pairs", str(tmp_path / "pairs.csv"),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "cellprofiler" in text and "cellfree" in text and "strict protocol" in text
    result = json.loads(out.read_text())
    assert set(result["table1"]) == {"ae", "cellprofiler"} and result["protocol"] == "strict"
    assert pd.read_csv(tmp_path / "pairs.csv").shape[0] > 0
    assert main(["background", str(path), "--run", "ae", "--out", str(out), "--quiet"]) == 2
    assert "NAME=RUN_DIR" in capsys.readouterr().err


def test_published_experiment_on_toy_crops():
    from protrep.evaluation.protocols import published_experiment

    ds = _crops(n=90)

    def whole_crop(crops):  # reads the neighbour too: swaps move it
        return np.stack([crops.images[:, 0].mean(axis=(1, 2)), crops.images[:, 0].std(axis=(1, 2))], axis=1)

    result = published_experiment(ds, {"m": whole_crop}, n_per_class=20, progress=False)
    pairs = result["pairs"]
    assert set(pairs["setting"]) == set(SETTINGS) and len(pairs) == 3 * len(SETTINGS)
    diff = pairs[pairs.setting == "diff"].set_index(["Location1", "Location2"])["Background"]
    assert diff.to_dict() == {("a", "b"): "c", ("a", "c"): "b", ("b", "c"): "a"}  # the first other class
    assert (np.bincount(ds.meta["label"].to_numpy()[result["index"]]) == 20).all()
    t = result["table"]
    assert t.loc["m", ("base", "n_classes")] == 2 and t.loc["m", ("same", "n_classes")] == 3
    assert 0.5 <= t.loc["m", ("base", "mean")] <= 1.0


def test_masked_view_keeps_the_centre_and_is_computed_once():
    from protrep.evaluation.background import masked_view

    ds = _crops(n=6)
    view = masked_view(ds)
    centre = ds.masks[0]
    np.testing.assert_array_equal(view.images[:, :, centre], ds.images[:, :, centre])
    assert np.abs(view.images[:, :, ~centre] - 100).max() < 3  # the background level (100 + noise 5, median)
    assert masked_view(ds) is view  # the seeds of a masked model share it
    assert "_masked_view" not in ds.subset([0, 1]).info  # caches do not travel to subsets
