"""Classification metrics of the paper's Tables 5 and 6, computed with scikit-learn.

Convention: every rate is a **percentage** (0-100), like the paper's tables; counts are integers.
Labels are integer class ids ``0..C-1``.

- :func:`classification_metrics` -- accuracy, macro-F1, weighted-F1, balanced accuracy and the
  confusion matrix of one task.
- :func:`per_class_table` / :func:`per_class_from_confusion` -- one-vs-rest Accuracy, Sensitivity,
  PPV and NPV per class (Table 6). Run records store confusion matrices, so Table 6 can be rebuilt
  from a record without the predictions.
- :func:`prediction_metrics` -- all of the above for an engine ``predictions`` dict, flattened to
  ``"<split>/<who>/task<k>/<metric>"`` keys for a JSON run record.
- :func:`ring_neighbour_share` / :func:`ring_neighbour_chance` -- for classes on a circle (the sleep
  postures, 30 degrees apart): the share of errors made between neighbours, and its chance level.

>>> m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], n_classes=3)
>>> m["accuracy"], m["confusion"]
(75.0, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

SCALAR_METRICS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")
PER_CLASS_COLUMNS = ("accuracy", "sensitivity", "ppv", "npv", "support")


def _labels(values, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array (lists, numpy or CPU tensors), or a clear error."""
    if hasattr(values, "detach"):  # a torch tensor: avoid importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _pair(y_true, y_pred, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("y_true is empty: no predictions to score")
    lowest = min(t.min(), p.min())
    if lowest < 0:
        raise ValueError(f"class ids must be >= 0, got {lowest}")
    highest = int(max(t.max(), p.max()))
    if n_classes is None:
        n_classes = highest + 1
    elif highest >= n_classes:
        raise ValueError(f"class id {highest} found but n_classes={n_classes} (ids must be 0..{n_classes - 1})")
    return t, p, int(n_classes)


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Scores of one task: ``y_true``, ``y_pred`` are (N,) class ids.

    Returns ``{"accuracy", "macro_f1", "weighted_f1", "balanced_accuracy"}`` in percent, ``"n"``
    (number of samples) and ``"confusion"``: a C x C list of lists, rows = true class, columns =
    predicted class, with all labels ``0..n_classes-1`` present (``n_classes`` defaults to the
    largest id seen + 1).

    F1 averages over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's default): a
    class absent from both has no defined F1 and is left out rather than counted as 0. Balanced
    accuracy is the mean recall over the classes present in ``y_true``.
    """
    t, p, c = _pair(y_true, y_pred, n_classes)
    with warnings.catch_warnings():
        # sklearn warns when a predicted class never occurs in y_true; its recall is undefined and
        # balanced_accuracy_score leaves it out, which is the definition documented above.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(t, p)
    return {
        # plain floats: the dict goes into JSON run records
        "accuracy": float(100.0 * accuracy_score(t, p)),
        "macro_f1": float(100.0 * f1_score(t, p, average="macro", zero_division=0)),
        "weighted_f1": float(100.0 * f1_score(t, p, average="weighted", zero_division=0)),
        "balanced_accuracy": float(100.0 * balanced),
        "n": int(t.size),
        "confusion": confusion_matrix(t, p, labels=np.arange(c)).tolist(),
    }


def per_class_from_confusion(confusion, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One-vs-rest rates per class from a C x C confusion matrix (rows true, columns predicted).

    For class k with TP, FP, FN, TN counted one-vs-rest over all N samples (percent):

    - ``accuracy``    = (TP + TN) / N
    - ``sensitivity`` = TP / (TP + FN)   (recall; NaN when the class never occurs)
    - ``ppv``         = TP / (TP + FP)   (precision; NaN when the class is never predicted)
    - ``npv``         = TN / (TN + FN)   (NaN when every sample is predicted as the class)
    - ``support``     = TP + FN          (samples of the class)

    An undefined rate is NaN, never 0, so averages over seeds can skip it (``nanmean``).
    Index: the class names (``"0".."C-1"`` by default), named ``class``.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion must be a square C x C matrix, got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("confusion holds negative counts")
    c = cm.shape[0]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"class_names has {len(names)} names but the confusion matrix has {c} classes")
    # The one-vs-rest counts are plain sums of the matrix; sklearn's multilabel_confusion_matrix
    # needs the predictions, which run records do not keep (the test checks the two agree).
    n = cm.sum()
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = n - tp - fn - fp

    def rate(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, 100.0 * num / np.where(den > 0, den, 1), np.nan)

    table = pd.DataFrame(
        {
            "accuracy": rate(tp + tn, np.full(c, float(n))),
            "sensitivity": rate(tp, tp + fn),
            "ppv": rate(tp, tp + fp),
            "npv": rate(tn, tn + fn),
            "support": (tp + fn).astype(np.int64),
        },
        index=pd.Index(names, name="class"),
    )
    return table


def per_class_table(y_true, y_pred, class_names: Sequence[str]) -> pd.DataFrame:
    """Table 6: one-vs-rest Accuracy, Sensitivity, PPV, NPV (percent) and support per class.

    ``y_true``, ``y_pred``: (N,) ids in ``0..len(class_names)-1``. Definitions and NaN rules:
    :func:`per_class_from_confusion`.
    """
    t, p, c = _pair(y_true, y_pred, len(class_names))
    return per_class_from_confusion(confusion_matrix(t, p, labels=np.arange(c)), class_names)


def _split_key(key) -> tuple[str, str]:
    if isinstance(key, tuple) and len(key) == 2:
        return str(key[0]), str(key[1])
    if isinstance(key, str) and key.count("/") == 1:
        split, who = key.split("/")
        return split, who
    raise ValueError(f"predictions key {key!r} must be a (split, who) tuple or a 'split/who' string")


def prediction_metrics(
    predictions: Mapping, n_classes: Sequence[int] | None = None, confusion: bool = True
) -> dict:
    """Flat metrics of an engine ``predictions`` dict.

    ``predictions[(split, who)] = {"y1_true", "y1_pred", "y2_true", "y2_pred"}`` (numpy arrays);
    a task whose arrays are missing or ``None`` is skipped. ``n_classes``: ``(c1, c2)`` so that
    confusion matrices have every class even when a small split lacks some.

    Returns ``{"<split>/<who>/task<k>/<metric>": value}`` for the metrics of
    :func:`classification_metrics` (``.../confusion`` is a list of lists; ``confusion=False`` drops it).
    """
    out: dict = {}
    for key, arrays in predictions.items():
        split, who = _split_key(key)
        for k in (1, 2):
            y_true, y_pred = arrays.get(f"y{k}_true"), arrays.get(f"y{k}_pred")
            if y_true is None or y_pred is None:
                continue
            c = None if n_classes is None or len(n_classes) < k else int(n_classes[k - 1])
            try:
                scores = classification_metrics(y_true, y_pred, c)
            except ValueError as err:
                raise ValueError(f"predictions[{key!r}] task {k}: {err}") from err
            if not confusion:
                scores.pop("confusion")
            for name, value in scores.items():
                out[f"{split}/{who}/task{k}/{name}"] = value
    return out


def ring_neighbour_share(confusion) -> float:
    """Share (percent) of the errors of a C x C confusion matrix made between ring neighbours.

    The classes ``0..C-1`` lie on a circle in label order (the paper's twelve sleep postures, 30
    degrees apart, with class C-1 next to class 0): an error is "between neighbours" when the true and
    predicted classes are one step apart either way. NaN when the matrix holds no error.

    Chance level: errors spread uniformly over the C-1 wrong classes land on one of the 2 neighbours
    with probability 2 / (C-1) (18 % for 12 postures), see :func:`ring_neighbour_chance`.
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square C x C matrix, got shape {cm.shape}")
    c = cm.shape[0]
    if c < 3:
        raise ValueError(f"a ring of classes needs at least 3 classes, got {c}")
    if (cm < 0).any():
        raise ValueError("confusion holds negative counts")
    i, j = np.indices(cm.shape)
    step = (i - j) % c  # ring distance, one direction; c - 1 is one step the other way
    errors = cm[i != j].sum()
    if errors == 0:
        return float("nan")
    return float(100.0 * cm[(step == 1) | (step == c - 1)].sum() / errors)


def ring_neighbour_chance(n_classes: int) -> float:
    """The :func:`ring_neighbour_share` (percent) of errors spread uniformly over the wrong classes:
    2 neighbours out of ``n_classes - 1`` wrong classes (100 % for 3 classes)."""
    if n_classes < 3:
        raise ValueError(f"a ring of classes needs at least 3 classes, got {n_classes}")
    return 100.0 * 2 / (n_classes - 1)
