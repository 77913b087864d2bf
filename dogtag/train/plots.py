"""The figures of a run folder: its confusion matrix and its learning curves, as PNGs (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
