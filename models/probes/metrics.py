"""Probe metrics: accuracy (Q3, Q8, Q10, Q2), confusion matrices, per-class precision/recall/MCC, and 95%
confidence intervals.

Per-residue accuracies (Q3/Q8) count residues over a whole test set; their interval is a bootstrap over
proteins, since a protein's residues are not independent. Per-protein accuracies (Q10/Q2) use ±1.96 standard
errors, as the paper reports.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Z_95 = 1.96


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape} labels but {y_pred.shape} predictions")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def per_class(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and one-vs-rest Matthews correlation of each class."""
    total = matrix.sum()
    result = {}
    for index, label in enumerate(labels):
        tp = matrix[index, index]
        fp = matrix[:, index].sum() - tp
        fn = matrix[index, :].sum() - tp
        tn = total - tp - fp - fn
        denominator = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        result[label] = {
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
            "mcc": float((tp * tn - fp * fn) / denominator) if denominator else 0.0,
            "support": int(tp + fn),
        }
    return result


def multiclass_mcc(matrix: np.ndarray) -> float:
    """Gorodkin's K-category Matthews correlation coefficient."""
    matrix = matrix.astype(np.float64)
    total, correct = matrix.sum(), np.trace(matrix)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    numerator = correct * total - true_counts @ predicted_counts
    denominator = np.sqrt((total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def normal_interval(p: float, n: int) -> tuple[float, float]:
    """``p ± 1.96·SE`` with ``SE = sqrt(p(1-p)/n)``, clipped to [0, 1]."""
    if n == 0:
        return (float("nan"), float("nan"))
    half = Z_95 * np.sqrt(p * (1.0 - p) / n)
    return (max(0.0, p - half), min(1.0, p + half))


def bootstrap_interval(correct: np.ndarray, groups: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy, resampling whole groups (proteins) with replacement."""
    correct, groups = np.asarray(correct, float), np.asarray(groups)
    _, group_index = np.unique(groups, return_inverse=True)
    hits = np.bincount(group_index, weights=correct)
    sizes = np.bincount(group_index).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sizes), size=(samples, len(sizes)))
    accuracies = hits[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    low, high = np.percentile(accuracies, [2.5, 97.5])
    return (float(low), float(high))


def report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], groups: np.ndarray | None = None) -> dict:
    """Accuracy with its 95% interval, confusion matrix, multi-class MCC and per-class metrics.

    `groups` (the protein of each residue) selects the bootstrap interval; without it the normal one.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    value = accuracy(matrix)
    interval = (bootstrap_interval(y_true == y_pred, groups) if groups is not None
                else normal_interval(value, int(matrix.sum())))
    return {
        "accuracy": value,
        "ci95": list(interval),
        "n": int(matrix.sum()),
        "mcc": multiclass_mcc(matrix),
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class(matrix, labels),
    }
