"""Metrics: hand-counted examples, NaN rules, the sklearn cross-check and the predictions helper."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import multilabel_confusion_matrix

from smoothdistill_lib.metrics import (
    classification_metrics,
    per_class_from_confusion,
    per_class_table,
    prediction_metrics,
    ring_neighbour_chance,
    ring_neighbour_share,
)

# 3 classes, 8 samples. Rows true, columns predicted:
#   true 0: 0,0,1      -> [2, 1, 0]
#   true 1: 1,1,2      -> [0, 2, 1]
#   true 2: 2,0        -> [1, 0, 1]
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 0]


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, n_classes=3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(100 * 5 / 8)
    # per class: precision 2/3, 2/3, 1/2; recall 2/3, 2/3, 1/2 -> F1 = 2/3, 2/3, 1/2
    f1 = np.array([2 / 3, 2 / 3, 1 / 2])
    assert m["macro_f1"] == pytest.approx(100 * f1.mean())
    assert m["weighted_f1"] == pytest.approx(100 * (f1 * [3, 3, 2]).sum() / 8)
    assert m["balanced_accuracy"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1 / 2) / 3)
    json.dumps(m)  # plain Python types only


def test_confusion_has_every_label_and_f1_skips_absent_classes():
    m = classification_metrics([0, 0, 1], [0, 0, 1], n_classes=4)
    assert m["confusion"] == [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    # classes 2 and 3 occur nowhere: no defined F1, left out rather than counted as 0
    assert m["macro_f1"] == pytest.approx(100.0)
    # a class predicted but never true has F1 = 0 and counts in the macro mean
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], n_classes=3)
    assert m["macro_f1"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)
    assert m["balanced_accuracy"] == pytest.approx(100 * (0.5 + 1) / 2)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="n_classes=2"):
        classification_metrics([0, 2], [0, 1], n_classes=2)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [])
    with pytest.raises(ValueError, match=">= 0"):
        classification_metrics([0, -1], [0, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        classification_metrics([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        classification_metrics([[0, 1]], [[0, 1]])


def test_per_class_table_by_hand():
    t = per_class_table(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert list(t.index) == ["a", "b", "c"] and t.index.name == "class"
    assert list(t.columns) == ["accuracy", "sensitivity", "ppv", "npv", "support"]
    # class a: TP 2, FN 1, FP 1, TN 4
    a = t.loc["a"]
    assert a["accuracy"] == pytest.approx(100 * 6 / 8)
    assert a["sensitivity"] == pytest.approx(100 * 2 / 3)
    assert a["ppv"] == pytest.approx(100 * 2 / 3)
    assert a["npv"] == pytest.approx(100 * 4 / 5)
    assert t["support"].tolist() == [3, 3, 2]
    # class c: TP 1, FN 1, FP 1, TN 5
    assert t.loc["c", "npv"] == pytest.approx(100 * 5 / 6)


def test_per_class_agrees_with_sklearn_multilabel_confusion():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    t = per_class_table(y_true, y_pred, list("vwxyz"))
    mcm = multilabel_confusion_matrix(y_true, y_pred, labels=range(5))  # [[TN, FP], [FN, TP]]
    tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
    np.testing.assert_allclose(t["sensitivity"], 100 * tp / (tp + fn))
    np.testing.assert_allclose(t["ppv"], 100 * tp / (tp + fp))
    np.testing.assert_allclose(t["npv"], 100 * tn / (tn + fn))
    np.testing.assert_allclose(t["accuracy"], 100 * (tp + tn) / 300)


def test_per_class_nan_rules():
    # class 2 never predicted -> PPV NaN; class 3 never occurs -> sensitivity NaN (support 0)
    t = per_class_table([0, 1, 2, 0], [0, 1, 0, 3], ["a", "b", "c", "d"])
    assert np.isnan(t.loc["c", "ppv"]) and t.loc["c", "sensitivity"] == 0.0
    assert np.isnan(t.loc["d", "sensitivity"]) and t.loc["d", "support"] == 0
    assert t.loc["d", "ppv"] == 0.0
    # every sample predicted as class 0 -> its NPV is undefined
    t = per_class_from_confusion([[2, 0], [1, 0]])
    assert np.isnan(t.loc["0", "npv"]) and t.loc["1", "npv"] == pytest.approx(100 * 2 / 3)


def test_per_class_from_confusion_errors():
    with pytest.raises(ValueError, match="square"):
        per_class_from_confusion([[1, 2, 3]])
    with pytest.raises(ValueError, match="class_names has 3"):
        per_class_from_confusion([[1, 0], [0, 1]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="n_classes=2"):
        per_class_table([0, 2], [0, 1], ["a", "b"])


def test_prediction_metrics_flat_keys():
    preds = {
        ("test", "student"): {
            "y1_true": np.array(Y_TRUE), "y1_pred": np.array(Y_PRED),
            "y2_true": np.array([0, 1, 1, 0]), "y2_pred": np.array([0, 1, 0, 0]),
        },
        "val/teacher": {"y1_true": np.array([0, 1]), "y1_pred": np.array([0, 1]), "y2_true": None},
    }
    m = prediction_metrics(preds, n_classes=(3, 2))
    assert m["test/student/task1/accuracy"] == pytest.approx(62.5)
    assert m["test/student/task2/accuracy"] == pytest.approx(75.0)
    assert m["val/teacher/task1/confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert not any(k.startswith("val/teacher/task2") for k in m)
    json.dumps(m)
    assert "test/student/task1/confusion" not in prediction_metrics(preds, confusion=False)
    with pytest.raises(ValueError, match=r"task 1: class id 2 found but n_classes=2"):
        prediction_metrics(preds, n_classes=(2, 2))
    with pytest.raises(ValueError, match="split/who"):
        prediction_metrics({"test": preds[("test", "student")]})


def test_ring_neighbour_share_by_hand():
    cm = np.diag([5, 5, 5, 5, 5, 5])
    cm[0, 1] = 2  # neighbours
    cm[0, 5] = 1  # neighbours across the wrap (class 5 sits next to class 0)
    cm[2, 4] = 3  # two steps apart
    cm[3, 0] = 4  # three steps apart
    assert ring_neighbour_share(cm) == pytest.approx(100 * 3 / 10)
    assert np.isnan(ring_neighbour_share(np.eye(4, dtype=int)))  # no error at all
    assert ring_neighbour_share([[1, 1, 1], [1, 1, 1], [1, 1, 1]]) == pytest.approx(100.0)  # 3 classes: all adjacent
    # the chance level: errors spread evenly over the wrong classes
    even = np.ones((12, 12), int)
    assert ring_neighbour_share(even) == pytest.approx(ring_neighbour_chance(12)) == pytest.approx(100 * 2 / 11)
    with pytest.raises(ValueError, match="at least 3"):
        ring_neighbour_share([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="square"):
        ring_neighbour_share([[1, 0, 0]])
    with pytest.raises(ValueError, match="at least 3"):
        ring_neighbour_chance(2)
