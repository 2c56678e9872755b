"""Metrics on arrays, with scikit-learn names and conventions."""

import numpy as np
import pandas as pd

__all__ = ["localization_accuracy", "linear_probe", "fit_linear_probe", "single_localized_test_cells", "per_class_f1", "macro_f1",
           "exact_match_accuracy", "tune_thresholds", "apply_thresholds", "supervised_vs_probes", "annotation_agreement", "versus_anchor", "CHEN_IMAGES_PER_MIN"]


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


def linear_probe(train_x, train_y, test_x, *, n_classes=None, seed=0, max_iter=2000):
    """Fit a multinomial logistic regression on standardised features; predict test probabilities.

    The usual way to ask how much class information an unsupervised embedding holds
    linearly.

    Parameters
    ----------
    train_x : array (n_train, d)
    train_y : array of int (n_train,)
        Class indices (>= 0).
    test_x : array (n_test, d)
    n_classes : int, optional, keyword-only
        Columns of the result (default: the largest training label + 1). Classes absent
        from ``train_y`` get probability 0, so column ``k`` is always class ``k``.

    Returns
    -------
    ndarray of float64, shape (n_test, n_classes)
        Rows sum to 1.
    """
    train_y = np.asarray(train_y)
    if train_y.size == 0 or train_y.min() < 0:
        raise ValueError("train_y must hold class indices >= 0 (drop unlabelled cells first)")
    n_classes = int(train_y.max()) + 1 if n_classes is None else int(n_classes)
    if train_y.max() >= n_classes:
        raise ValueError(f"train_y has class {int(train_y.max())} but n_classes is {n_classes}")
    model = fit_linear_probe(train_x, train_y, seed=seed, max_iter=max_iter)
    proba = np.zeros((len(test_x), n_classes))
    proba[:, model.classes_] = model.predict_proba(np.asarray(test_x))
    return proba


def fit_linear_probe(train_x, train_y, *, seed=0, max_iter=2000):
    """The fitted pipeline of :func:`linear_probe` (standardisation, multinomial logistic regression).

    For predicting later or on several sets: ``.predict_proba(x)`` with columns in the order
    of ``.classes_``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    return model.fit(np.asarray(train_x), np.asarray(train_y))


# --------------------------------------------------------------------------- multi-label
def _multilabel(y, name, shape=None):
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_samples, n_classes) indicator array, got shape {y.shape}")
    if shape is not None and y.shape != shape:
        raise ValueError(f"{name} has shape {y.shape} but y_true has {shape}; pass one row per sample, one column "
                         "per class")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 (or bool) indicators; threshold scores first (apply_thresholds)")
    return y.astype(bool)


def per_class_f1(y_true, y_pred, *, zero_division=0.0):
    """F1 score of every class of a multi-label problem.

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1} or bool, shape (n_samples, n_classes)
        True and predicted label indicators.
    zero_division : float, keyword-only
        Score of a class with no true and no predicted positive (scikit-learn's
        ``zero_division``; 0 by default, as scikit-learn's after its warning).

    Returns
    -------
    ndarray of float64, shape (n_classes,)
        ``2 tp / (2 tp + fp + fn)`` per class, in [0, 1]; higher is better. Equals
        ``sklearn.metrics.f1_score(y_true, y_pred, average=None)`` for two or more classes.
        Kept rather than calling scikit-learn: with one class, an ``(n, 1)`` indicator array,
        scikit-learn reads a binary column target and scores both label values, and it
        gives an all-negative class F1 = 1 whatever ``zero_division``; here one class is
        one column, always.
    """
    t = _multilabel(y_true, "y_true")
    p = _multilabel(y_pred, "y_pred", t.shape)
    tp = (t & p).sum(0)
    denom = t.sum(0) + p.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), float(zero_division))
    return f1.astype(np.float64)


def macro_f1(y_true, y_pred, *, labels=None, zero_division=0.0):
    """Macro-averaged F1: the unweighted mean of the per-class F1 scores.

    The metric of the Kaggle Human Protein Atlas Image Classification challenge (2018),
    over its 28 classes: every class counts the same, however rare.

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1} or bool, shape (n_samples, n_classes)
    labels : array-like of int, optional, keyword-only
        Column indices to average over (scikit-learn's ``labels``), e.g. the classes
        present in a test set; all columns by default.
    zero_division : float, keyword-only
        See :func:`per_class_f1`.

    Returns
    -------
    float
        In [0, 1], higher is better; NaN if ``labels`` is empty. Equals
        ``sklearn.metrics.f1_score(y_true, y_pred, average="macro", labels=labels)``.
    """
    f1 = per_class_f1(y_true, y_pred, zero_division=zero_division)
    if labels is not None:
        labels = np.asarray(labels, dtype=int).ravel()
        if len(labels) and (labels.min() < 0 or labels.max() >= len(f1)):
            raise ValueError(f"labels must be column indices 0..{len(f1) - 1}, got {labels.tolist()}")
        f1 = f1[labels]
    return float(f1.mean()) if len(f1) else float("nan")


def exact_match_accuracy(y_true, y_pred):
    """Exact-match (subset) accuracy: the share of samples whose whole label set is right.

    Parameters
    ----------
    y_true, y_pred : array-like of {0, 1} or bool, shape (n_samples, n_classes)

    Returns
    -------
    float
        In [0, 1], higher is better (NaN for no sample). Equals
        ``sklearn.metrics.accuracy_score(y_true, y_pred)`` on indicator arrays.
    """
    t = _multilabel(y_true, "y_true")
    p = _multilabel(y_pred, "y_pred", t.shape)
    return float((t == p).all(1).mean()) if len(t) else float("nan")


def apply_thresholds(y_score, thresholds):
    """Decisions ``y_score >= thresholds`` (bool, same shape); ``thresholds`` a scalar or one per class."""
    y_score = np.asarray(y_score, dtype=float)
    if y_score.ndim != 2:
        raise ValueError(f"y_score must have shape (n_samples, n_classes), got {y_score.shape}")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=float), (y_score.shape[1],)) \
        if np.ndim(thresholds) == 0 or len(np.ravel(thresholds)) == y_score.shape[1] else None
    if thresholds is None:
        raise ValueError(f"thresholds must be a scalar or one value per class ({y_score.shape[1]})")
    return y_score >= thresholds[None, :]


def tune_thresholds(y_true, y_score, *, grid=None, default=0.5):
    """Per-class decision thresholds that maximise each class's F1 on (validation) data.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n_samples, n_classes)
    y_score : array-like of float, shape (n_samples, n_classes)
        Scores, e.g. sigmoid probabilities.
    grid : array-like of float, optional, keyword-only
        Candidate thresholds (default 0.05, 0.10, ..., 0.95).
    default : float, keyword-only
        Threshold of a class without positives in ``y_true`` (its F1 cannot be tuned).

    Returns
    -------
    ndarray of float64, shape (n_classes,)
        For each class the candidate with the highest F1 (the smallest among ties).
        Tuned on validation data, the thresholds are then applied to test data with
        :func:`apply_thresholds`; tuning on the test data would overstate the score.
    """
    t = _multilabel(y_true, "y_true")
    s = np.asarray(y_score, dtype=float)
    if s.shape != t.shape:
        raise ValueError(f"y_score has shape {s.shape} but y_true has {t.shape}")
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else np.sort(np.asarray(grid, float).ravel())
    if len(grid) == 0:
        raise ValueError("grid must hold at least one threshold")
    decided = s[None, :, :] >= grid[:, None, None]  # (g, n, k)
    tp = (decided & t[None]).sum(1)
    f1 = 2 * tp / np.maximum(decided.sum(1) + t.sum(0)[None], 1)
    best = grid[np.argmax(f1, axis=0)]
    return np.where(t.any(0), best, float(default))


def supervised_vs_probes(supervised_accuracy, probe_accuracies):
    """Is the supervised classifier above the best linear probe on self-supervised features?

    Parameters
    ----------
    supervised_accuracy : float or None
        Test accuracy of the classifier trained on the labels (None: not available).
    probe_accuracies : dict of str to float
        Test accuracy of a linear probe on each model's features.

    Returns
    -------
    dict
        ``best_probe``, ``best_probe_accuracy``, ``supervised_accuracy`` and ``above``
        (None when the supervised accuracy is not available).
    """
    if not probe_accuracies:
        raise ValueError("probe_accuracies is empty: give at least one model's probe accuracy")
    best = max(probe_accuracies, key=probe_accuracies.get)
    above = None if supervised_accuracy is None else bool(supervised_accuracy > probe_accuracies[best])
    return {"best_probe": best, "best_probe_accuracy": float(probe_accuracies[best]),
            "supervised_accuracy": supervised_accuracy, "above": above}


#: Chen (2020)'s inference throughput on HPA images, images per minute.
CHEN_IMAGES_PER_MIN = 4500


def versus_anchor(images_per_min, anchor=CHEN_IMAGES_PER_MIN):
    """A measured throughput against a paper's anchor: ``{"images_per_min", "anchor", "at_or_above"}``."""
    return {"images_per_min": float(images_per_min), "anchor": anchor, "at_or_above": bool(images_per_min >= anchor)}


def annotation_agreement(predictions, annotated):
    """How many proteins' top predicted class is one of their annotated classes.

    Parameters
    ----------
    predictions : dict of str to dict of str to float
        Per protein, the predicted probability of each class.
    annotated : dict of str to str
        Per protein, its annotated classes, ``;``-separated.

    Returns
    -------
    (int, int)
        Proteins that agree, and proteins with both a prediction and an annotation.
    """
    both = [p for p in predictions if p in annotated]
    hits = sum(max(predictions[p], key=predictions[p].get) in annotated[p].split(";") for p in both)
    return int(hits), len(both)
