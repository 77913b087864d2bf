"""Which hardware trains: a TPU or several GPUs through tf.distribute; one GPU or the CPU otherwise.

And in which precision: mixed precision where the hardware computes faster in 16 bits (float16 on
GPUs, bfloat16 on TPUs), float32 on the CPU.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import keras
import tensorflow as tf


@functools.cache
def distribution_strategy() -> tf.distribute.Strategy:
    """TPUStrategy on a TPU, MirroredStrategy over several GPUs, else the default strategy.

    The default strategy runs on the one GPU TensorFlow sees, or on the CPU. A TPU is looked for only
    where one is announced (TPU_NAME, COLAB_TPU_ADDR or a TPU VM's /dev/accel0): the resolver would
    otherwise ask a cloud metadata server, which offline machines cannot reach.
    """
    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or Path("/dev/accel0").exists():
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, tf.errors.NotFoundError):
            pass
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy() -> str:
    """The Keras dtype policy training layers are built with on this hardware."""
    if isinstance(distribution_strategy(), tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def training_precision():
    """Build the layers made inside this block with precision_policy(); the previous policy afterwards.

    Layers that output probabilities must say dtype="float32" so that losses and saved predictions
    stay in float32; Keras scales the loss of mixed_float16 models by itself.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision_policy())
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
