"""Metrics on arrays, with scikit-learn names and conventions."""

import numpy as np
import pandas as pd

__all__ = ["localization_accuracy", "linear_probe", "single_localized_test_cells"]


def single_localized_test_cells(meta, *, split="test"):
    """Boolean mask of labelled cells of ``split`` proteins annotated with one class only.

    Accuracy is reported on these cells: for a multi-localized protein the "right" class of
    a cell is ambiguous (Kraus et al. 2017 likewise evaluate single-localized proteins).
    """
    return ((meta["split"] == split) & (meta["label"] >= 0) & ~meta["localization"].str.contains(";")).to_numpy()


def localization_accuracy(y_true, proba, classes):
    """Overall accuracy, accuracy per class and the confusion matrix of predicted classes.

    Parameters
    ----------
    y_true : array of int, shape (n,)
        True class indices (all >= 0).
    proba : array of float, shape (n, k)
        Predicted class probabilities (or scores); the prediction is the argmax.
    classes : sequence of str, length k

    Returns
    -------
    dict
        ``accuracy`` (float, higher is better), ``per_class`` (Series: accuracy of the cells
        of each class, NaN where a class has none), ``confusion`` (DataFrame, rows = true
        class, columns = predicted class, counts).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"proba must have shape (n, {len(classes)}), got {proba.shape}")
    if len(y_true) != len(proba):
        raise ValueError(f"{len(y_true)} labels but {len(proba)} predictions")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= len(classes)):
        raise ValueError("y_true must hold class indices 0..k-1; drop unlabelled cells (-1) first")
    pred = proba.argmax(1)
    k = len(classes)
    confusion = np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / confusion.sum(1)
    return {
        "accuracy": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "per_class": pd.Series(per_class, index=list(classes)),
        "confusion": pd.DataFrame(confusion, index=list(classes), columns=list(classes)),
    }


def linear_probe(train_x, train_y, test_x, *, seed=0, max_iter=2000):
    """Fit a multinomial logistic regression on standardised features; predict test probabilities.

    The usual way to ask how much class information an unsupervised embedding holds
    linearly. Classes absent from ``train_y`` get probability 0.

    Returns
    -------
    proba : ndarray (n_test, n_classes_seen)
    classes : ndarray of the class labels in the column order of ``proba``
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    model.fit(np.asarray(train_x), np.asarray(train_y))
    return model.predict_proba(np.asarray(test_x)), model.classes_
