import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix

from protrep.evaluation.metrics import (
    fit_linear_probe,
    linear_probe,
    localization_accuracy,
    single_localized_test_cells,
)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 6), st.integers(1, 80))
def test_localization_accuracy_matches_sklearn(seed, k, n):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    proba = rng.random((n, k))
    got = localization_accuracy(y, proba, [f"c{i}" for i in range(k)])
    pred = proba.argmax(1)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert np.array_equal(got["confusion"].to_numpy(), confusion_matrix(y, pred, labels=range(k)))
    for i in range(k):
        sel = y == i
        expected = (pred[sel] == i).mean() if sel.any() else np.nan
        assert got["per_class"].iloc[i] == pytest.approx(expected, nan_ok=True)


def test_localization_accuracy_validates_input():
    with pytest.raises(ValueError, match="shape"):
        localization_accuracy([0], np.ones((1, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="unlabelled"):
        localization_accuracy([-1], np.ones((1, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="2 labels but 1"):
        localization_accuracy([0, 1], np.ones((1, 2)), ["a", "b"])


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 8))
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.normal(0, 0.5, (300, 8))
    proba = linear_probe(x[:200], y[:200], x[200:])
    assert proba.shape == (100, 3) and np.allclose(proba.sum(1), 1)
    assert (proba.argmax(1) == y[200:]).mean() > 0.95
    fitted = fit_linear_probe(x[:200], y[:200])  # the same model, kept for later predictions
    np.testing.assert_array_equal(fitted.predict_proba(x[200:]), proba)
    # a class absent from training keeps its column, with probability 0
    seen = y[:200] != 1
    padded = linear_probe(x[:200][seen], y[:200][seen], x[200:], n_classes=4)
    assert padded.shape == (100, 4) and (padded[:, [1, 3]] == 0).all() and np.allclose(padded.sum(1), 1)
    with pytest.raises(ValueError, match="n_classes"):
        linear_probe(x[:200], y[:200], x[200:], n_classes=2)


def test_single_localized_test_cells():
    meta = pd.DataFrame({"split": ["test", "test", "train", "test"], "label": [0, 1, 0, -1],
                         "localization": ["nucleus", "nucleus;cytoplasm", "ER", "ER"]})
    assert single_localized_test_cells(meta).tolist() == [True, False, False, False]
