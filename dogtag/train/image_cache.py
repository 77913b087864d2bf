"""Photos decoded and squashed once into a uint8 array on disk (cache/scratch/<size>/), then read from there.

Training the scratch CNN reads these arrays and augments them inside the tf.data graph
(train/batches.py), so each epoch costs only the network itself.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from dogtag.train.dataset import Dataset
from dogtag.train.pipeline import image_dataset
from dogtag.train.preprocess import Preprocessing

DEFAULT_CACHE = Path("cache/scratch")


def cached_images(dataset: Dataset, size: int, cache_root: Path, name: str, log=print) -> np.ndarray:
    """uint8 (n, size, size, 3) pixels of `dataset`, squashed to size; decoded once, then read from disk.

    The file name carries a digest of the sample list, so a different selection never reuses it.
    """
    digest = hashlib.sha1("\n".join(f"{s.path}|{s.label}" for s in dataset.samples).encode()).hexdigest()[:12]
    path = Path(cache_root) / str(size) / f"{name}-{len(dataset)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    began = time.perf_counter()
    images = np.empty((len(dataset), size, size, 3), dtype="uint8")
    row = 0
    for batch, _ in image_dataset(dataset, Preprocessing(size=size, resize="squash"), batch_size=64):
        images[row : row + len(batch)] = np.clip(np.round(batch.numpy()), 0, 255).astype("uint8")
        row += len(batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, images)
    temporary.rename(path)  # a cache file is either complete or absent
    log(f"cached {len(dataset)} {name} images at {size} px in {time.perf_counter() - began:.0f}s: {path}")
    return images
