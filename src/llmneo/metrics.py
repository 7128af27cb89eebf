"""Classification and calibration metrics: arrays in, numbers out, no I/O.

scikit-learn computes the standard metrics; what it lacks (expected calibration error, fitting a
softmax temperature) is written here and tested against hand-worked values.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

__all__ = [
    "agreement",
    "classification_metrics",
    "confusion",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "softmax",
]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, f1 (positive class for 2 labels, macro otherwise), ROC-AUC, n.

    ROC-AUC is one-vs-rest macro for more than two classes, and NaN when dev holds one class only
    (it is undefined there, and a made-up number would mislead).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    average = "binary" if num_classes == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, average=average, labels=list(range(num_classes)) if average == "macro" else None,
        zero_division=0,
    )
    present = np.unique(labels)
    if len(present) < 2:
        roc_auc = float("nan")
    elif num_classes == 2:
        roc_auc = roc_auc_score(labels, probs[:, 1])
    else:
        roc_auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(num_classes)))
    return {"accuracy": float(accuracy_score(labels, preds)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1), "roc_auc": float(roc_auc), "n": len(labels)}


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    return confusion_matrix(labels, preds, labels=list(range(num_classes))).tolist()


def agreement(preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    return float(np.mean(np.asarray(preds_a) == np.asarray(preds_b)))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by size."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


def negative_log_likelihood(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    probs = softmax(logits, temperature)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T > 0 minimising dev NLL of softmax(logits / T) (Guo et al., 2017).

    Searched over log T so the bounded 1-D optimiser treats 0.5x and 2x alike.
    """
    labels = np.asarray(labels)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(labels, logits, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
