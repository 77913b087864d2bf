"""The real photos export needs: training photos to calibrate int8 models, test photos to verify.

Photos are read by the edge app's own loader (edge_app.images.load_photo: EXIF orientation, RGB,
JPEG draft decoding, then "squash" or "crop" with PIL's antialiased BILINEAR filter), so that
calibration and verification see exactly the pixels `dogtag tag` will feed the model.
Calibration photos come from the official train split only, never from the test split that
verification scores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dogtag.edge_app.images import PhotoError, load_photo
from dogtag.edge_app.model_file import ModelInfo
from dogtag.train.dataset import Dataset, is_official_layout, load_split, stratified_split

# With a plain folder-per-breed tree (no official split), this fraction of each breed is set
# aside for verification and the rest may be used for calibration.
FOLDER_TEST_FRACTION = 0.3


def load_photos(paths: list[Path], info: ModelInfo) -> np.ndarray:
    """Photos as one uint8 array (count, height, width, 3) at the model's input size."""
    if not paths:
        return np.zeros((0, *info.input_size, 3), dtype=np.uint8)
    photos = []
    for path in paths:
        try:
            photos.append(load_photo(path, info.input_size, info.resize))
        except PhotoError as error:
            raise ValueError(f"{path}: {error}; remove or replace it") from error
    return np.stack(photos)


def split_for_export(data: str | Path, split: str) -> Dataset:
    """The official "train" or "test" split; for a plain folder tree, a fixed per-breed split of it."""
    if is_official_layout(data):
        return load_split(data, split)
    rest, held_out = stratified_split(load_split(data, split), FOLDER_TEST_FRACTION, seed=0)
    return rest if split == "train" else held_out


def labelled_paths(dataset: Dataset, labels: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(path, index in the model's labels) of every photo whose breed the model knows.

    Breeds are matched by name, so a model trained on some breeds is verified on those breeds.
    """
    index = {name: i for i, name in enumerate(labels)}
    known = [(sample.path, index[dataset.breeds[sample.label]]) for sample in dataset.samples
             if dataset.breeds[sample.label] in index]
    if not known:
        raise ValueError(f"none of the dataset's breeds ({', '.join(dataset.breeds[:3])}, ...) is among "
                         f"the model's labels ({', '.join(labels[:3])}, ...): wrong --data for this model?")
    return known


def sample_paths(rows: list[tuple[Path, int]], count: int | None, seed: int = 0) -> list[tuple[Path, int]]:
    """`count` rows drawn at random (reproducibly, in their original order); all rows for None or 0."""
    if not count or count >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), count))
    return [rows[i] for i in keep]


def calibration_photos(data: str | Path, info: ModelInfo, count: int, seed: int = 0) -> np.ndarray:
    """`count` training photos (never test photos) at the model's input, for int8 calibration."""
    rows = sample_paths(labelled_paths(split_for_export(data, "train"), info.labels), count, seed)
    return load_photos([path for path, _ in rows], info)


def photo_batches(
    rows: list[tuple[Path, int]], info: ModelInfo, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 photos, label indices) in batches, decoded as they are needed."""
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        yield load_photos([path for path, _ in part], info), np.array([label for _, label in part])
