"""Test data for the edge app: folders of photos whose breeds the tiny test models know.

The tiny models (tests/model_fixtures.py) see each breed as a colour tint over noise and untinted
grey noise as "not a dog", so a photo's expected answer is known from how it was made.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.model_fixtures import TINY_LABELS, tinted_photo

# name -> (breed index or None for "not a dog", save options); one photo per common format.
BREED_PHOTOS = {
    "rex.jpg": (0, {"quality": 95}),
    "bella.png": (1, {}),
    "kennel_2/max.webp": (2, {"quality": 95}),
    "kennel_2/luna.bmp": (0, {}),
    "kennel_2/old/daisy.tiff": (1, {}),
    "kennel_2/old/coco.gif": (2, {}),
    "cat.jpg": (None, {"quality": 95}),
}


def make_breed_photo(path: Path, breed: int | None, seed: int = 0, size: int = 64, **save_options) -> Path:
    """Save a photo the tiny models classify as TINY_LABELS[breed] (None: grey noise, not a dog)."""
    pixels = tinted_photo(breed, seed=seed, size=size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_options)
    return path


def make_breed_folder(folder: Path) -> dict[str, str | None]:
    """A folder tree with one photo per format; returns relative path -> expected breed (None: not a dog)."""
    expected = {}
    for seed, (name, (breed, options)) in enumerate(BREED_PHOTOS.items()):
        make_breed_photo(folder / name, breed, seed=seed, **options)
        expected[name] = None if breed is None else TINY_LABELS[breed]
    return expected


def fingerprints(folder: Path) -> dict[str, tuple[str, int]]:
    """(sha256, mtime_ns) of every file under `folder`, by relative path: to prove nothing changed."""
    result = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not os.access(path, os.R_OK):
                continue
            result[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                     path.stat().st_mtime_ns)
    return result


def mean_colour(pixels: np.ndarray) -> np.ndarray:
    """The average RGB of an (H, W, 3) array."""
    return pixels.reshape(-1, 3).mean(axis=0)
