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
    assert metrics["precision"] == pytest.approx(precision_score(labels, preds))
    assert metrics["recall"] == pytest.approx(recall_score(labels, preds))
    assert metrics["f1"] == pytest.approx(f1_score(labels, preds))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert metrics["n"] == 200


def test_three_classes_use_macro_and_one_vs_rest_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    probs = softmax(rng.normal(size=(150, 3)) + 2 * np.eye(3)[labels])
    metrics = classification_metrics(labels, probs)
    assert metrics["f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
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
