"""Classification and calibration metrics: arrays in, numbers out, no I/O.

scikit-learn computes the standard metrics; what it lacks (expected calibration error, fitting a
softmax temperature) is written here and tested against hand-worked values.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from llmneo.maths.decide import softmax  # the one softmax lives beside the decisions, free of scipy

__all__ = [
    "agreement",
    "classification_metrics",
    "confusion",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "per_class_metrics",
    "reliability_bins",
    "softmax",
]


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy; precision, recall and F1 averaged over the classes (`_macro`: each class alike) and F1 weighted
    by class support (`f1_weighted`); ROC-AUC; n.

    Named by their average, never a bare "F1": on six unbalanced classes macro and weighted F1 differ by
    points, and for two classes the positive class's F1 is neither. ROC-AUC is P(positive) for two classes,
    one-vs-rest macro for more, and NaN when the labels hold one class only (undefined there; a made-up
    number would mislead).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    classes = list(range(num_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, average="macro", labels=classes,
                                                               zero_division=0)
    _, _, f1_weighted, _ = precision_recall_fscore_support(labels, preds, average="weighted", labels=classes,
                                                           zero_division=0)
    present = np.unique(labels)
    if len(present) < 2:
        roc_auc = float("nan")
    elif num_classes == 2:
        roc_auc = roc_auc_score(labels, probs[:, 1])
    else:
        roc_auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(num_classes)))
    return {"accuracy": float(accuracy_score(labels, preds)), "precision_macro": float(precision),
            "recall_macro": float(recall), "f1_macro": float(f1), "f1_weighted": float(f1_weighted),
            "roc_auc": float(roc_auc), "n": len(labels)}


def per_class_metrics(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every class, by name: the truth a macro average hides (a class
    of 9 dev rows weighs as much as one of 138 in macro F1, and nothing at all in accuracy)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        np.asarray(labels), np.asarray(preds), labels=list(range(len(names))), average=None, zero_division=0)
    return {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])} for i, name in enumerate(names)}


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    return confusion_matrix(labels, preds, labels=list(range(num_classes))).tolist()


def agreement(preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    return float(np.mean(np.asarray(preds_a) == np.asarray(preds_b)))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Bin predictions by confidence: mean confidence, accuracy and count per equal-width bin.

    Confidence is the top-class probability, so this works for any number of classes. Bins are
    right-closed so that a confidence of exactly 1.0 lands in the last bin. The reliability diagram
    draws these bins and the expected calibration error sums their gaps.
    """
    probs = np.asarray(probs, dtype=float)  # (N, C)
    labels = np.asarray(labels)  # (N,)
    confidence = probs.max(axis=1)  # (N,)
    correct = (probs.argmax(axis=1) == labels).astype(float)  # (N,)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)  # (N,)
    counts = np.bincount(index, minlength=n_bins)
    safe = counts.clip(min=1)
    return {
        "edges": edges,
        "confidence": np.bincount(index, weights=confidence, minlength=n_bins) / safe,
        "accuracy": np.bincount(index, weights=correct, minlength=n_bins) / safe,
        "count": counts,
    }


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by size."""
    binned = reliability_bins(probs, labels, bins)
    weights = binned["count"] / max(int(binned["count"].sum()), 1)
    return float(np.sum(weights * np.abs(binned["confidence"] - binned["accuracy"])))


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
