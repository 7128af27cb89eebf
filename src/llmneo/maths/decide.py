"""From logits to answers: temperature, softmax and the decision threshold (pure, no I/O).

Every caller that turns logits into predictions comes here: `Predictor.predict` and the server's
micro-batcher, which runs one forward pass for requests that may ask for different `calibrate` and
`threshold` values and so turns each request's own rows into answers. Probabilities are
softmax(logits / T); a threshold applies to P(last class) of a two-class model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction", "decide", "softmax"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T) in float64; here, not in `metrics`, so serving needs no scipy."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class Prediction:
    pred: int
    label: str
    probs: list[float]


def decide(
    logits: np.ndarray, labels: list[str], temperature: float = 1.0, threshold: float | None = None
) -> list[Prediction]:
    """One Prediction per row of (N, C) logits: argmax, or P(last class) >= threshold for two classes."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"logits of shape {logits.shape} do not match {len(labels)} labels")
    if threshold is not None and len(labels) != 2:
        raise ValueError(f"a threshold needs a two-class model; this one has {len(labels)} classes")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    probs = softmax(logits, temperature)  # (N, C) float64
    if threshold is None:
        preds = probs.argmax(axis=1)
    else:
        preds = (probs[:, 1] >= threshold).astype(np.int64)
    return [
        Prediction(pred=int(pred), label=labels[int(pred)], probs=[float(p) for p in row])
        for pred, row in zip(preds, probs)
    ]
