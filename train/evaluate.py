"""Scores of a classifier on a labelled split, the plots that show them, and run records on disk.

A run folder holds everything a report needs: config.json, history.json, metrics.json (with
timings), confusion.png, learning_curves.png and most_confused.md.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

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


def plot_confusion(counts: np.ndarray, names: list[str], path: Path) -> None:
    """Save the row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, dtype="float64")
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6, len(names) * 0.12)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    if len(names) <= 40:
        axis.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        axis.set_yticks(range(len(names)), names, fontsize=6)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("Confusion (rows normalised)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Save loss and accuracy per epoch (train and validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, values in history.items():
            if key.endswith(metric) and values:
                axis.plot(range(1, len(values) + 1), values, label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def git_commit() -> str:
    """The current commit of the checkout (with '+dirty' when there are uncommitted changes)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_run(run_dir: Path, config: dict, metrics: dict, history: dict | None = None) -> None:
    """Write a run's record and plots: config, metrics (without the raw matrix), plots, confusions."""
    import tensorflow as tf

    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**config, "commit": git_commit(), "tensorflow": tf.__version__,
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
    summary = {k: v for k, v in metrics.items() if k != "confusion"}
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if "confusion" in metrics:
        names = [row["breed"] for row in metrics["per_breed"]]
        plot_confusion(np.array(metrics["confusion"]), names, run_dir / "confusion.png")
        np.save(run_dir / "confusion.npy", np.array(metrics["confusion"]))
        lines = ["| true | predicted as | count |", "|---|---|---|"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} / {p['of']} |" for p in metrics["most_confused"]]
        (run_dir / "most_confused.md").write_text("\n".join(lines) + "\n")
    if history:
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        plot_history(history, run_dir / "learning_curves.png")
