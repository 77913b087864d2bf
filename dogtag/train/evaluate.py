"""Scores of a classifier on a labelled split: top-1, top-5, per-breed scores, the confusions.

train/run_record.py writes them, with their plots, into the run's folder.
"""

from __future__ import annotations

import numpy as np


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the k highest scores."""
    k = min(k, probabilities.shape[1])
    top = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype="int64")
    np.add.at(counts, (labels, predictions), 1)
    return counts


def per_class_scores(counts: np.ndarray, names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    true_positive = np.diag(counts).astype("float64")
    predicted = counts.sum(axis=0)
    actual = counts.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return [
        {"breed": name, "precision": round(float(p), 4), "recall": round(float(r), 4),
         "f1": round(float(f), 4), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, actual, strict=True)
    ]


def most_confused(counts: np.ndarray, names: list[str], top: int = 20) -> list[dict]:
    """The `top` (true, predicted) pairs of different classes with the most mistakes."""
    off_diagonal = counts.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None)[:top]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, counts.shape)
        if off_diagonal[true, predicted] == 0:
            break
        pairs.append({"true": names[true], "predicted": names[predicted],
                      "count": int(off_diagonal[true, predicted]), "of": int(counts[true].sum())})
    return pairs


def evaluate(probabilities: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """top-1, top-5, per-breed scores, the confusion matrix and the most confused pairs."""
    labels = np.asarray(labels, dtype="int64")
    predictions = np.argmax(probabilities, axis=1)
    counts = confusion_matrix(labels, predictions, len(names))
    return {
        "images": int(len(labels)),
        "top1": round(float(np.mean(predictions == labels)), 4),
        "top5": round(top_k_accuracy(probabilities, labels, 5), 4),
        "per_breed": per_class_scores(counts, names),
        "most_confused": most_confused(counts, names),
        "confusion": counts.tolist(),
    }
