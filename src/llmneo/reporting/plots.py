"""The pictures people look at: pure functions from arrays and dicts to matplotlib Figures.

Nothing here reads or writes files: callers (``tracking`` logs them to MLflow, ``report`` embeds them
in HTML) decide where a figure goes. Every function builds its own ``Figure`` object rather than using
``pyplot``'s global current figure, so figures made in threads or tests never leak into each other and
need no ``plt.close``. The Agg canvas renders without a display.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from llmneo.maths.metrics import reliability_bins

__all__ = [
    "STEP_METRICS",
    "ablation_figure",
    "comparison_figure",
    "confusion_matrix_figure",
    "png_bytes",
    "reliability_bins",
    "reliability_figure",
    "roc_figure",
    "step_curve_figure",
    "step_figures",
]

# The per-step plots of the reference project: history key -> (file stem, axis label).
STEP_METRICS: dict[str, tuple[str, str]] = {
    "epoch": ("epoch_vs_step", "epoch"),
    "eval_accuracy": ("eval_accuracy_vs_step", "accuracy"),
    "eval_f1_macro": ("eval_f1_macro_vs_step", "F1 (macro)"),
    "eval_f1_weighted": ("eval_f1_weighted_vs_step", "F1 (weighted)"),
    "eval_precision_macro": ("eval_precision_macro_vs_step", "precision (macro)"),
    "eval_recall_macro": ("eval_recall_macro_vs_step", "recall (macro)"),
    "eval_loss": ("eval_loss_vs_step", "loss"),
    "eval_roc_auc": ("eval_roc_auc_vs_step", "ROC-AUC"),
}

_FIGSIZE = (6.0, 4.5)
_DPI = 100


def _new_figure(figsize: tuple[float, float] = _FIGSIZE) -> Figure:
    figure = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """Render a figure to PNG bytes in memory (the caller writes them, logs them or embeds them)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def confusion_matrix_figure(
    matrix: np.ndarray, labels: Sequence[str], title: str = "Confusion matrix"
) -> Figure:
    """Counts per (true, predicted) cell, with the row share in each cell to read recall at a glance."""
    matrix = np.asarray(matrix)  # (C, C): rows = true class, columns = predicted class
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(labels):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not match {len(labels)} labels")
    classes = len(labels)
    side = max(4.8, 1.1 * classes + 2.0)  # six classes with long names still read: the cells grow with them
    figure = _new_figure((side, side * 0.875))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    row_totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > threshold else "black"
        share = count / row_totals[row, 0]
        axes.text(col, row, f"{count}\n{share:.1%}", ha="center", va="center", color=colour,
                  fontsize=9 if classes <= 4 else 8)
    ticks = np.arange(classes)
    rotate = classes > 2 and max(len(label) for label in labels) > 5
    axes.set_xticks(ticks, labels=list(labels), rotation=35 if rotate else 0, ha="right" if rotate else "center")
    axes.set_yticks(ticks, labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return figure


def roc_figure(
    y_true: np.ndarray, positive_scores: Mapping[str, np.ndarray], title: str = "ROC curve"
) -> Figure:
    """One ROC curve per model (e.g. teacher and student) for the positive (last) class."""
    y_true = np.asarray(y_true)  # (N,) 0/1
    figure = _new_figure()
    axes = figure.add_subplot()
    for name, scores in positive_scores.items():
        false_pos, true_pos, _ = roc_curve(y_true, np.asarray(scores))
        axes.plot(false_pos, true_pos, label=f"{name} (AUC {auc(false_pos, true_pos):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(title)
    axes.legend(loc="lower right")
    return figure


def reliability_figure(
    y_true: np.ndarray, probs_by_model: Mapping[str, np.ndarray], n_bins: int = 10, title: str = "Reliability"
) -> Figure:
    """Accuracy vs confidence per bin: bars under the diagonal are over-confident predictions."""
    figure = _new_figure()
    axes = figure.add_subplot()
    width = 1.0 / n_bins / max(len(probs_by_model), 1)
    for offset, (name, probs) in enumerate(probs_by_model.items()):
        bins = reliability_bins(probs, y_true, n_bins)
        filled = bins["count"] > 0
        left = bins["edges"][:-1] + offset * width
        axes.bar(left[filled], bins["accuracy"][filled], width=width, align="edge", alpha=0.7, label=name)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-class probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left")
    return figure


def step_curve_figure(steps: Sequence[float], values: Sequence[float], ylabel: str, title: str) -> Figure:
    """One metric against the optimizer step, with markers since evaluations are sparse."""
    if len(steps) != len(values):
        raise ValueError(f"{title}: {len(steps)} steps but {len(values)} values")
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(steps, values, marker="o")
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure


def step_figures(history: Sequence[Mapping[str, float]]) -> dict[str, Figure]:
    """The reference project's per-step plots from ``metrics.json`` history, keyed by file stem.

    A metric is plotted from the history rows that carry it; metrics no row carries are left out
    (a run without ROC-AUC simply has no ROC-AUC plot).
    """
    figures: dict[str, Figure] = {}
    for key, (stem, ylabel) in STEP_METRICS.items():
        rows = [row for row in history if row.get(key) is not None and row.get("step") is not None]
        if rows:
            steps = [row["step"] for row in rows]
            values = [row[key] for row in rows]
            figures[stem] = step_curve_figure(steps, values, ylabel, f"{key.replace('_', ' ')} vs step")
    return figures


def comparison_figure(models: Mapping[str, Mapping[str, float | None]]) -> Figure:
    """Teacher vs student side by side: accuracy, parameters (millions) and latency (ms/example).

    ``models`` maps a model name to a dict with ``accuracy``, ``parameters`` and ``ms_per_example``;
    a missing value leaves its bar out rather than drawing a misleading zero.
    """
    panels = [
        ("accuracy", "dev accuracy", 1.0),
        ("parameters", "parameters (M)", 1e-6),
        ("ms_per_example", "ms / example", 1.0),
    ]
    figure = _new_figure((10.0, 3.8))
    names = list(models)
    colours = [f"C{index}" for index in range(len(names))]
    for index, (key, label, scale) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for position, (name, colour) in enumerate(zip(names, colours)):
            value = models[name].get(key)
            if value is None:
                continue
            bar = axes.bar(position, float(value) * scale, color=colour)
            axes.bar_label(bar, fmt="%.3g")
        axes.margins(y=0.15)  # room for the bar labels under the title
        axes.set_xticks(range(len(names)), labels=names)
        axes.set_title(label)
    figure.suptitle("teacher vs student")
    return figure


def ablation_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    title: str = "Ablation: dev accuracy under one training budget") -> Figure:
    """Dev accuracy against training minutes, one line per arm: `curves[arm] = (minutes, accuracies)`."""
    figure = _new_figure()
    axis = figure.add_subplot()
    for arm, (minutes, accuracy) in curves.items():
        best = max(accuracy) if len(accuracy) else float("nan")
        axis.plot(minutes, accuracy, marker="o", markersize=3, label=f"{arm} (best {best:.4f})")
    axis.set_xlabel("training minutes")
    axis.set_ylabel("dev accuracy")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    return figure
