"""HPA track: classes and location mapping, Kaggle reader, crop reader, simulator, metrics, training.

Readers are checked on tiny Kaggle folders written here (and on the real crops when
``PROTREP_SHARED_DATA`` is set); metrics against scikit-learn, with hypothesis drawing
the label matrices.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from protrep.data import hpa, simulate_hpa
from protrep.data.dataset import load_dataset
from protrep.data.render import plate_params
from protrep.data.render_human import PATTERNS, HumanFieldParams, simulate_human_field
from protrep.errors import DataError
from protrep.evaluation.metrics import apply_thresholds, exact_match_accuracy, macro_f1, per_class_f1, tune_thresholds
from protrep.models import ModelConfig, build_model
from protrep.models.seresnet import focal_loss
from protrep.profiles import book_profile
from protrep.training.batches import CellTensors, augment, step_generator
from protrep.training.loop import TrainConfig, train
from protrep.training.runs import check_compatible, load_run

# ----------------------------------------------------------------------------- classes


def test_classes_and_location_mapping():
    assert len(hpa.HPA_CLASSES) == 28 and hpa.HPA_CLASSES[0] == "Nucleoplasm" and hpa.HPA_CLASSES[27] == "Rods & rings"
    assert hpa.HPA_CLASSES[25] == "Cytosol" and hpa.HPA_CLASSES[19] == "Centrosome"
    assert hpa.LOCATION_TO_CLASS["Nucleoli fibrillar center"] == 3
    assert hpa.LOCATION_TO_CLASS["Cell Junctions"] == 22 and hpa.LOCATION_TO_CLASS["Rods & Rings"] == 27
    assert "Vesicles" not in hpa.LOCATION_TO_CLASS and "Nucleus" not in hpa.LOCATION_TO_CLASS
    assert hpa.locations_to_classes("Cytosol;Vesicles;Nucleoli fibrillar center") == "Nucleoli fibrillar center;Cytosol"
    assert hpa.locations_to_classes("Vesicles") == ""
    assert set(simulate_hpa.SIMULATED_CLASSES) == set(PATTERNS) and len(PATTERNS) == 14


# ----------------------------------------------------------------------------- Kaggle reader


def _kaggle(root, rows, *, size=16, skip=None, odd=None):
    (root / "train").mkdir(parents=True)
    pd.DataFrame(rows, columns=["Id", "Target"]).to_csv(root / "train.csv", index=False)
    rng = np.random.default_rng(0)
    for image_id, _ in rows:
        for channel in hpa.HPA_CHANNELS:
            if (image_id, channel) == skip:
                continue
            side = size // 2 if (image_id, channel) == odd else size
            Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(
                root / "train" / f"{image_id}_{channel}.png")
    return root


def test_read_kaggle_layout(tmp_path):
    root = _kaggle(tmp_path / "k", [("a1", "0 25"), ("b2", "3"), ("c3", "27 0 7")])
    ds = hpa.read_hpa_kaggle(root)
    assert ds.images.shape == (3, 4, 16, 16) and ds.images.dtype == np.float32
    assert ds.channels == hpa.HPA_CHANNELS and ds.classes == hpa.HPA_CLASSES and ds.info["multilabel"]
    assert list(ds.meta["localization"]) == ["Nucleoplasm;Cytosol", "Nucleoli fibrillar center",
                                             "Nucleoplasm;Golgi apparatus;Rods & rings"]
    green = np.asarray(Image.open(root / "train" / "b2_green.png"))
    assert np.array_equal(ds.images[1, 1], green)
    small = hpa.read_hpa_kaggle(root, ids=["c3"], size=4)
    assert small.images.shape == (1, 4, 4, 4)
    assert np.allclose(small.images[0, 2, 0, 0], ds.images[2, 2, :4, :4].mean())
    tensors = CellTensors.from_dataset(ds)
    assert tensors.multilabel.shape == (3, 28) and tensors.multilabel[0, [0, 25]].tolist() == [1, 1]
    assert tensors.multilabel.sum().item() == 6


def test_kaggle_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no train.csv"):
        hpa.read_hpa_kaggle(tmp_path)
    root = _kaggle(tmp_path / "missing", [("a1", "0"), ("b2", "1")], skip=("b2", "yellow"))
    with pytest.raises(DataError, match="b2_yellow.png: missing"):
        hpa.read_hpa_kaggle(root)
    root = _kaggle(tmp_path / "bad", [("a1", "0 x")])
    with pytest.raises(DataError, match=r"train.csv: row 2: Target '0 x'"):
        hpa.read_hpa_kaggle(root)
    root = _kaggle(tmp_path / "range", [("a1", "28")])
    with pytest.raises(DataError, match="outside 0-27"):
        hpa.read_hpa_kaggle(root)
    root = _kaggle(tmp_path / "shape", [("a1", "0"), ("b2", "1")], odd=("b2", "red"))
    with pytest.raises(DataError, match="b2_red.png: shape"):
        hpa.read_hpa_kaggle(root)
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "train.csv").write_text("Image,Label\na,0\n")
    with pytest.raises(DataError, match=r"cols/train.csv: missing columns \['Id', 'Target'\]"):
        hpa.read_hpa_kaggle(tmp_path / "cols")
    root = _kaggle(tmp_path / "broken", [("a1", "0")])
    (root / "train" / "a1_blue.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a1_blue.png"):
        hpa.read_hpa_kaggle(root)


def test_real_hpa_crops_with_locations(shared_data):
    ds = hpa.read_hpa_crop_locations(shared_data / "hpa-crops", shared_data / "standards/hpa/subcellular_location.tsv")
    assert ds.channels == hpa.HPA_CHANNELS and ds.images.shape[1:] == (4, 128, 128)
    assert (ds.images[:, 3] == 0).all() and ds.images[:, 1].max() > 0
    annotated = ds.meta.groupby("protein")["localization"].first().to_dict()
    assert annotated == {"A1CF": "Nucleoplasm", "A4GALT": "Mitochondria",
                         "AAAS": "Nuclear membrane;Centrosome;Cytosol"}
    assert CellTensors.from_dataset(ds).multilabel.sum(1).tolist()[:1] == [1.0]


# ----------------------------------------------------------------------------- simulation


def test_simulated_field_shapes_and_determinism():
    plate = plate_params(np.random.default_rng(1))
    a = simulate_human_field(np.random.default_rng(3), ["Nucleoli", "Cytosol"], plate, HumanFieldParams(size=64))
    b = simulate_human_field(np.random.default_rng(3), ["Nucleoli", "Cytosol"], plate, HumanFieldParams(size=64))
    assert a["image"].shape == (4, 64, 64) and a["image"].dtype == np.uint16 and a["mask"].shape == (64, 64)
    assert np.array_equal(a["image"], b["image"]) and a["n_cells"] >= 2
    for name in PATTERNS:  # every pattern renders, and puts protein inside cells
        out = simulate_human_field(np.random.default_rng(0), [name], plate, HumanFieldParams(size=64))
        green = out["image"][1].astype(float)
        assert green[out["mask"]].mean() > green[~out["mask"]].mean() if (~out["mask"]).any() else True, name
    with pytest.raises(ValueError, match="no simulated pattern"):
        simulate_human_field(np.random.default_rng(0), ["Rods & rings"], plate, HumanFieldParams(size=64))


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    path = tmp_path_factory.mktemp("hpa") / "sim"
    header = simulate_hpa.ensure_hpa_dataset(path, book_profile("quick", seed=2).hpa_screen, workers=1, progress=False)
    assert not header["reused"]
    return path


def test_simulated_screen_is_deterministic_and_cached(screen, tmp_path):
    config = book_profile("quick", seed=2).hpa_screen
    assert simulate_hpa.ensure_hpa_dataset(screen, config, progress=False)["reused"]
    again = tmp_path / "again"
    simulate_hpa.simulate_hpa_dataset(again, config, workers=2, progress=False)
    a, b = load_dataset(screen), load_dataset(again)
    assert np.array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.meta, b.meta)
    assert a.info["multilabel"] and a.channels == hpa.HPA_CHANNELS and a.classes == hpa.HPA_CLASSES
    assert a.images.shape == (96, 4, 64, 64)
    for _, proteins in a.meta.groupby("split")["protein"]:  # splits by protein
        assert proteins.nunique() * 2 == len(proteins)
    by_split = a.meta.groupby("split")["protein"].agg(set)
    assert not by_split["train"] & by_split["test"] and not by_split["train"] & by_split["val"]
    used = set(a.meta["localization"].str.split(";").explode())
    assert used <= set(simulate_hpa.SIMULATED_CLASSES)
    assert simulate_hpa.HPASimConfig.from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------- model and training


def test_focal_loss_reduces_to_bce_and_downweights_easy_examples():
    logits = torch.tensor([[3.0, -2.0, 0.5], [-4.0, 1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    assert torch.allclose(focal_loss(logits, target, gamma=0.0), bce)
    assert focal_loss(logits, target) < bce
    weight = torch.tensor([1.0, 0.0])
    assert torch.allclose(focal_loss(logits, target, weight=weight), focal_loss(logits[:1], target[:1]))


def test_seresnet_multilabel_forward_and_channel_dropout():
    model = build_model(ModelConfig("seresnet", in_channels=4, n_classes=28, image_size=64, width=0.125), seed=0)
    x = torch.rand(4, 4, 64, 64)
    target = torch.zeros(4, 28)
    target[:, [0, 25]] = 1
    out = model({"image": x, "label": torch.full((4,), -1), "multilabel": target})
    assert out["logits"].shape == (4, 28) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.train_channel_dropout == (3, 0.3)
    assert torch.allclose(torch.sigmoid(model.classifier.bias), torch.full((28,), 0.05))
    g = step_generator(0, 0, 0)
    batch = augment({"image": torch.ones(200, 4, 8, 8), "partner": torch.ones(200, 4, 8, 8)}, g, drop_channel=(3, 0.3))
    dropped = (batch["image"][:, 3] == 0).all(-1).all(-1)
    assert 30 < int(dropped.sum()) < 90 and (batch["image"][:, :3] == 1).all()
    model.eval()
    with torch.no_grad():  # fully convolutional: any side >= 32
        assert model.predict_proba(torch.rand(2, 4, 96, 96)).shape == (2, 28)


@pytest.mark.slow
def test_seresnet_trains_through_the_one_loop(screen, tmp_path):
    ds = load_dataset(screen)
    config = ModelConfig("seresnet", in_channels=4, n_classes=28, image_size=64, width=0.125)
    check_compatible(ds, config, classes=hpa.HPA_CLASSES)
    fast = TrainConfig(epochs=2, batch_size=16, max_steps=4, warmup_steps=2, seed=1, eval_batch_size=64, device="cpu")
    history = train(config, fast, ds, tmp_path / "run", progress=False)
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(history["val_loss"]).all()
    assert {"val_macro_f1", "val_accuracy"} <= set(history.columns)
    assert int(history["global_step"].iloc[-1]) == fast.max_steps
    model, info = load_run(tmp_path / "run")
    assert info["channels"] == list(hpa.HPA_CHANNELS) and not model.training
    with pytest.raises(DataError, match="channels are"):
        check_compatible(ds, ModelConfig("deeploc", in_channels=4, n_classes=28, image_size=64))


# ----------------------------------------------------------------------------- metrics


def _label_pairs():
    shape = st.tuples(st.integers(1, 12), st.integers(2, 6))  # scikit-learn reads one column as binary
    return shape.flatmap(lambda s: st.tuples(arrays(np.bool_, s), arrays(np.bool_, s)))


@settings(max_examples=60, deadline=None)
@given(_label_pairs())
def test_multilabel_metrics_match_scikit_learn(pair):
    y_true, y_pred = pair
    assert np.allclose(per_class_f1(y_true, y_pred), f1_score(y_true, y_pred, average=None, zero_division=0))
    assert np.isclose(macro_f1(y_true, y_pred), f1_score(y_true, y_pred, average="macro", zero_division=0))
    labels = list(range(0, y_true.shape[1], 2))
    assert np.isclose(macro_f1(y_true, y_pred, labels=labels),
                      f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    assert np.isclose(exact_match_accuracy(y_true, y_pred), accuracy_score(y_true, y_pred))
    assert np.allclose(per_class_f1(y_true, y_pred, zero_division=1.0),
                       f1_score(y_true, y_pred, average=None, zero_division=1.0))


def test_metrics_validate_inputs():
    with pytest.raises(ValueError, match="2-D"):
        macro_f1(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        exact_match_accuracy(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="threshold scores first"):
        per_class_f1(np.zeros((2, 2)), np.full((2, 2), 0.7))
    with pytest.raises(ValueError, match="column indices"):
        macro_f1(np.zeros((2, 2)), np.zeros((2, 2)), labels=[5])
    with pytest.raises(ValueError, match="one value per class"):
        apply_thresholds(np.zeros((2, 3)), [0.5, 0.5])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(1, 4)), elements=st.floats(0, 1)),
       st.integers(0, 2 ** 31 - 1))
def test_tuned_thresholds_maximise_each_class_f1_on_the_grid(scores, seed):
    y = np.random.default_rng(seed).random(scores.shape) < 0.4
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    t = tune_thresholds(y, scores)
    assert t.shape == (scores.shape[1],)
    tuned = per_class_f1(y, apply_thresholds(scores, t))
    for k in range(scores.shape[1]):
        if not y[:, k].any():
            assert t[k] == 0.5
            continue
        best = max(f1_score(y[:, k], scores[:, k] >= g, zero_division=0) for g in grid)
        assert np.isclose(tuned[k], best)


def test_tuned_thresholds_by_hand():
    y = np.array([[1], [1], [0], [0]])
    s = np.array([[0.3], [0.35], [0.2], [0.1]])
    assert tune_thresholds(y, s)[0] == pytest.approx(0.25)  # between the negatives and the positives
    assert apply_thresholds(s, 0.5).sum() == 0
