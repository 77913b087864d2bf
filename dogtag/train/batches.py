"""In-memory uint8 images as batches: shuffled and augmented for training, in order for evaluation."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dogtag.train.mixing import mix_batch
from dogtag.train.preprocess import Augmentation, augmentation_layers


def training_batches(images: np.ndarray, labels: np.ndarray, classes: int, batch_size: int,
                     augmentation: Augmentation, seed: int = 0, mixup: float = 0.0,
                     cutmix: float = 0.0) -> tf.data.Dataset:
    """Shuffled batches of (float32 pixels [0, 255], one-hot labels), augmented inside the graph,
    then blended by mixup or cutmix when their alphas are above 0 (the labels become mixed)."""
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    # Full batches only (the few left over are reshuffled into the next epoch): one traced step, not two.
    data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=len(images) >= batch_size)
    layers = augmentation_layers(augmentation, images.shape[1], seed=seed) if augmentation.enabled else None

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if layers is not None:
            x = tf.clip_by_value(layers(x, training=True), 0.0, 255.0)
        return mix_batch(x, tf.one_hot(y, classes), mixup, cutmix)  # unchanged when both alphas are 0

    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training steps in one epoch of `images` (full batches only, see training_batches)."""
    return max(1, images // batch_size)


def evaluation_batches(images: np.ndarray, labels: np.ndarray, classes: int, batch_size: int) -> tf.data.Dataset:
    """Batches of (float32 pixels, one-hot labels) in order, unaugmented."""
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32"))).batch(batch_size)
    return data.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, classes))).prefetch(tf.data.AUTOTUNE)


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Breed probabilities of uint8 images, computed batch by batch."""
    return np.concatenate([
        np.asarray(model(images[i : i + batch_size].astype("float32"), training=False))
        for i in range(0, len(images), batch_size)
    ]) if len(images) else np.zeros((0, model.output_shape[-1]), dtype="float32")
