"""Image preprocessing and augmentation, as TensorFlow ops on float32 RGB pixels in [0, 255].

Preprocessing (deterministic, the same at training and inference time when it is kept):
resize (squash or keep-aspect-and-crop), crop to the annotated box, contrast stretch, histogram
equalization and whitening (per-image standardization). Augmentation (training only): horizontal
flip, random crop, rotation, shift, shear and zoom, as one Keras layer stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from dogtag.edge_app.model_file import RESIZE_MODES  # one list for training and the edge side


@dataclass(frozen=True)
class Preprocessing:
    """Which deterministic preprocessing steps to apply (each one measured in the ablation)."""

    size: int = 224
    resize: str = "squash"
    box_crop: bool = False
    contrast_stretch: bool = False
    equalize: bool = False
    whiten: bool = False

    def describe(self) -> str:
        """A short name for run folders and reports, e.g. '224-squash+box+equalize'."""
        steps = [name for name in ("box_crop", "contrast_stretch", "equalize", "whiten") if getattr(self, name)]
        return "+".join([f"{self.size}-{self.resize}", *steps])


def decode(path: tf.Tensor) -> tf.Tensor:
    """Read and decode a JPEG/PNG/BMP/GIF file into float32 RGB (first frame of a GIF)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.cast(image, tf.float32)


def resize(image: tf.Tensor, size: int, mode: str = "squash") -> tf.Tensor:
    """Squash to size x size, or keep the aspect ratio and crop the centre square."""
    if mode == "squash":
        return tf.image.resize(image, (size, size), antialias=True)
    if mode != "crop":
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    new_shape = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(image, new_shape, antialias=True)
    return tf.image.resize_with_crop_or_pad(image, size, size)


def crop_to_box(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """Crop to a box given as fractions [ymin, xmin, ymax, xmax] of the image size.

    Boxes stored as fractions of the annotation's own width/height work on any resized copy,
    which is the scaling the official XML (original pixels) needs.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    top = tf.cast(tf.floor(box[0] * shape[0]), tf.int32)
    left = tf.cast(tf.floor(box[1] * shape[1]), tf.int32)
    bottom = tf.maximum(tf.cast(tf.math.ceil(box[2] * shape[0]), tf.int32), top + 1)
    right = tf.maximum(tf.cast(tf.math.ceil(box[3] * shape[1]), tf.int32), left + 1)
    return image[top:bottom, left:right]


def contrast_stretch(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel linearly so that its darkest pixel is 0 and its brightest 255."""
    low = tf.reduce_min(image, axis=(0, 1), keepdims=True)
    high = tf.reduce_max(image, axis=(0, 1), keepdims=True)
    return (image - low) * (255.0 / tf.maximum(high - low, 1.0))


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram-equalize each channel (pixels rounded to 256 levels)."""
    levels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.int32)

    def one_channel(channel: tf.Tensor) -> tf.Tensor:
        histogram = tf.math.bincount(tf.reshape(channel, [-1]), minlength=256, maxlength=256)
        cdf = tf.cast(tf.cumsum(histogram), tf.float32)
        cdf_min = tf.reduce_min(tf.boolean_mask(cdf, cdf > 0))
        total = tf.cast(tf.size(channel), tf.float32)
        lookup = tf.clip_by_value((cdf - cdf_min) / tf.maximum(total - cdf_min, 1.0) * 255.0, 0.0, 255.0)
        return tf.gather(lookup, channel)

    return tf.stack([one_channel(levels[..., c]) for c in range(3)], axis=-1)


def whiten(image: tf.Tensor) -> tf.Tensor:
    """Per-image standardization, mapped back to the [0, 255] range the backbones expect.

    Zero mean and unit variance per image, then scaled by 64 and centred on 127.5, so that a
    backbone's own pixel scaling still applies unchanged.
    """
    return tf.clip_by_value(tf.image.per_image_standardization(image) * 64.0 + 127.5, 0.0, 255.0)


def shrink(image: tf.Tensor, shorter_side: int) -> tf.Tensor:
    """The photo as a thumbnail whose shorter side is `shorter_side` px, pixels rounded to 8 bits, as
    shelter databases keep photos (the model then enlarges it again); never enlarged."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(shorter_side / tf.reduce_min(shape), 1.0)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    return tf.clip_by_value(tf.round(tf.image.resize(image, new_shape, antialias=True)), 0.0, 255.0)


def preprocess(image: tf.Tensor, box: tf.Tensor | None, options: Preprocessing) -> tf.Tensor:
    """Apply the chosen deterministic steps in a fixed order; returns size x size x 3 float32."""
    if options.box_crop and box is not None:
        image = crop_to_box(image, box)
    image = resize(image, options.size, options.resize)
    if options.contrast_stretch:
        image = contrast_stretch(image)
    if options.equalize:
        image = equalize(image)
    if options.whiten:
        image = whiten(image)
    return tf.ensure_shape(image, (options.size, options.size, 3))


@dataclass(frozen=True)
class Augmentation:
    """Random training-time transforms; factors follow Keras' preprocessing layers."""

    flip: bool = True
    crop: float = 0.1  # fraction of each side that a random crop may remove
    rotation: float = 0.05  # fraction of a full turn
    shift: float = 0.1
    shear: float = 0.1
    zoom: float = 0.15

    @classmethod
    def off(cls) -> Augmentation:
        """No augmentation at all."""
        return cls(flip=False, crop=0.0, rotation=0.0, shift=0.0, shear=0.0, zoom=0.0)

    @property
    def enabled(self) -> bool:
        return self != Augmentation.off()


def augmentation_layers(options: Augmentation, size: int, seed: int = 0) -> keras.Sequential:
    """One Keras stack applying the enabled random transforms (inactive at inference)."""
    layers: list[keras.layers.Layer] = []
    if options.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if options.crop > 0:
        inner = max(1, int(round(size * (1 - options.crop))))
        layers += [keras.layers.RandomCrop(inner, inner, seed=seed), keras.layers.Resizing(size, size)]
    if options.rotation > 0:
        layers.append(keras.layers.RandomRotation(options.rotation, fill_mode="reflect", seed=seed))
    if options.shift > 0:
        layers.append(keras.layers.RandomTranslation(options.shift, options.shift, fill_mode="reflect", seed=seed))
    if options.shear > 0:
        layers.append(keras.layers.RandomShear(options.shear, options.shear, fill_mode="reflect", seed=seed))
    if options.zoom > 0:
        layers.append(keras.layers.RandomZoom(options.zoom, fill_mode="reflect", seed=seed))
    return keras.Sequential(layers, name="augmentation")
