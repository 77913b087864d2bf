"""The one non-standard Keras layer a shipped model may hold; importing this module registers it,
so `keras.models.load_model` reads those models (export and benchmarks import it for that)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="dogtag")
class MirrorImage(keras.layers.Layer):
    """Mirrors images left to right (NHWC), always: the second look of flip test-time augmentation."""

    def call(self, images):
        return keras.ops.flip(images, axis=2)
