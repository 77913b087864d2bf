"""Which hardware trains: a TPU or several GPUs through tf.distribute; one GPU or the CPU otherwise."""

from __future__ import annotations

import functools
import os
from pathlib import Path

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
