"""tf.data input pipelines: parallel decode, deterministic preprocessing, optional augmentation."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dogtag.train.dataset import Dataset
from dogtag.train.preprocess import (
    Augmentation,
    Preprocessing,
    augmentation_layers,
    decode,
    preprocess,
    shrink,
)

FULL_IMAGE_BOX = (0.0, 0.0, 1.0, 1.0)


def box_fractions(dataset: Dataset) -> np.ndarray:
    """Each sample's box as fractions [ymin, xmin, ymax, xmax] of its annotated image size."""
    rows = []
    for sample in dataset.samples:
        box = sample.box
        if box is None:
            rows.append(FULL_IMAGE_BOX)
        else:
            rows.append((box.ymin / box.height, box.xmin / box.width, box.ymax / box.height, box.xmax / box.width))
    return np.clip(np.array(rows, dtype="float32").reshape(-1, 4), 0.0, 1.0)


def image_dataset(
    dataset: Dataset,
    preprocessing: Preprocessing,
    batch_size: int = 32,
    shuffle: bool = False,
    augmentation: Augmentation | None = None,
    flip_all: bool = False,
    seed: int = 0,
    thumbnail: int | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 pixels in [0, 255], int label) for `dataset`, in order unless shuffled.

    `flip_all` mirrors every image and `thumbnail` first shrinks it so that its shorter side is that
    many pixels (deterministic views used when caching features).
    """
    paths = [str(s.path) for s in dataset.samples]
    labels = np.array([s.label for s in dataset.samples], dtype="int32")
    data = tf.data.Dataset.from_tensor_slices((paths, box_fractions(dataset), labels))
    if shuffle:
        data = data.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def load(path, box, label):
        image = decode(path)
        if thumbnail:
            image = shrink(image, thumbnail)
        image = preprocess(image, box, preprocessing)
        if flip_all:
            image = tf.image.flip_left_right(image)
        return image, label

    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    if augmentation is not None and augmentation.enabled:
        layers = augmentation_layers(augmentation, preprocessing.size, seed=seed)
        data = data.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)
