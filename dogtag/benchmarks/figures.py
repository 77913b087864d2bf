"""How each speed and accuracy figure is computed, the same way for every model and runtime.

A model is given here as a function from a uint8 pixel batch (n, height, width, 3) to breed
probabilities (n, breeds), so the edge formats and the Keras baseline are measured by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

BreedRunner = Callable[[np.ndarray], np.ndarray]
CHUNK = 256  # photos read from the memory-mapped pixel file at a time


def latency_ms(run: BreedRunner, photos: np.ndarray, warmup: int, runs: int) -> tuple[float, float]:
    """p50 and p90 milliseconds of one photo through `run`, after `warmup` calls; photos are cycled."""
    one = [np.ascontiguousarray(photos[i % len(photos)][None]) for i in range(warmup + runs)]
    for pixels in one[:warmup]:
        run(pixels)
    times = []
    for pixels in one[warmup:]:
        started = time.perf_counter()
        run(pixels)
        times.append(time.perf_counter() - started)
    p50, p90 = np.percentile(times, [50, 90]) * 1000
    return round(float(p50), 3), round(float(p90), 3)


def batch_images_per_s(run: BreedRunner, photos: np.ndarray, batch_size: int, count: int) -> float:
    """Photos per second through `run` in batches of `batch_size`, over `count` photos (cycled), after one warm-up batch."""
    indices = np.arange(max(count, batch_size)) % len(photos)
    batches = [np.ascontiguousarray(photos[indices[i : i + batch_size]]) for i in range(0, len(indices), batch_size)]
    run(batches[0])
    started = time.perf_counter()
    for batch in batches:
        run(batch)
    return round(len(indices) / (time.perf_counter() - started), 2)


def predicted_breeds(run: BreedRunner, pixels: np.ndarray, labels: Sequence[str], batch_size: int) -> list[str]:
    """The most probable breed name of every photo in `pixels` (read chunk by chunk: it may be memory-mapped)."""
    names = []
    for start in range(0, len(pixels), CHUNK):
        chunk = np.ascontiguousarray(pixels[start : start + CHUNK])
        for offset in range(0, len(chunk), batch_size):
            probabilities = run(chunk[offset : offset + batch_size])
            names += [labels[i] for i in np.argmax(probabilities, axis=1)]
    return names


def top1(predicted: Sequence[str], truth: Sequence[str], labels: Sequence[str]) -> tuple[float | None, int]:
    """Top-1 accuracy over the photos whose true breed is among the model's labels, and how many those are."""
    known = set(labels)
    pairs = [(p, t) for p, t in zip(predicted, truth, strict=True) if t in known]
    if not pairs:
        return None, 0
    return round(sum(p == t for p, t in pairs) / len(pairs), 4), len(pairs)


def images_per_s(count: int, seconds: float) -> float | None:
    """A throughput, rounded for the table (None when nothing was timed)."""
    return round(count / seconds, 2) if count and seconds > 0 else None
