"""Metrics against scikit-learn and hand-worked calibration values."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from llmneo.maths.metrics import (
    agreement,
    classification_metrics,
    confusion,
    expected_calibration_error,
    fit_temperature,
    softmax,
)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = softmax(rng.normal(size=(200, 2)) + np.eye(2)[labels])
    metrics = classification_metrics(labels, probs)
    preds = probs.argmax(1)
    assert metrics["accuracy"] == pytest.approx((preds == labels).mean())
    assert metrics["precision_macro"] == pytest.approx(precision_score(labels, preds, average="macro"))
    assert metrics["recall_macro"] == pytest.approx(recall_score(labels, preds, average="macro"))
    assert metrics["f1_macro"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert metrics["f1_weighted"] == pytest.approx(f1_score(labels, preds, average="weighted"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert metrics["n"] == 200


def test_three_classes_use_macro_and_one_vs_rest_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    probs = softmax(rng.normal(size=(150, 3)) + 2 * np.eye(3)[labels])
    metrics = classification_metrics(labels, probs)
    assert metrics["f1_macro"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_confusion_agreement_and_single_class_auc():
    assert confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2) == [[1, 0], [1, 1]]
    assert agreement(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75
    assert np.isnan(classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))["roc_auc"])


def test_ece_by_hand():
    # Two examples at confidence 0.9 (one right, one wrong) and two at 0.6 (both right).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(labels, probs) == pytest.approx(0.5 * abs(0.9 - 0.5) + 0.5 * abs(0.6 - 1.0))


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(size=(4000, 2)) * 2
    labels = np.array([rng.choice(2, p=p) for p in softmax(true_logits)])
    temperature = fit_temperature(labels, true_logits * 3)  # a model 3x overconfident
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert expected_calibration_error(labels, softmax(true_logits * 3, temperature)) < \
        expected_calibration_error(labels, softmax(true_logits * 3))


def test_per_class_figures_and_both_averages_worked_by_hand():
    """labels 0 0 0 1 1 2, predictions 0 0 1 1 2 2. Class 0: 2 of 3 found, none wrongly (P 1, R 2/3, F1 0.8);
    class 1: 1 right of 2 predicted and of 2 true (0.5, 0.5, 0.5); class 2: 1 right of 2 predicted, its one row
    found (P 0.5, R 1, F1 2/3). Macro F1 averages the three alike, weighted F1 by support 3, 2, 1."""
    from llmneo.maths.metrics import per_class_metrics

    labels, preds = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2])
    classes = per_class_metrics(labels, preds, ["DESC", "ENTY", "ABBR"])
    assert classes["DESC"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert classes["ENTY"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert classes["ABBR"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    metrics = classification_metrics(labels, np.eye(3)[preds] * 0.85 + 0.05)  # rows sum to 1
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["f1_weighted"] == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)
    assert metrics["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
