"""Each preprocessing and augmentation step on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from dogtag.train.preprocess import (  # noqa: E402
    Augmentation,
    Preprocessing,
    augmentation_layers,
    contrast_stretch,
    crop_to_box,
    equalize,
    preprocess,
    resize,
    whiten,
)


def test_squash_resize_stretches_and_crop_resize_keeps_the_centre():
    image = np.zeros((20, 40, 3), dtype="float32")
    image[:, 10:30] = 255.0  # a white centre square between black side bands
    squashed = resize(tf.constant(image), 10, "squash").numpy()
    cropped = resize(tf.constant(image), 10, "crop").numpy()
    assert squashed.shape == cropped.shape == (10, 10, 3)
    assert squashed[:, 0].mean() < 10 and squashed[:, 5].mean() > 245  # bands squashed in
    assert cropped[:, 1:-1].min() > 245 and cropped.min() > 200  # only the white centre remains (edges antialiased)
    with pytest.raises(ValueError, match="resize mode"):
        resize(tf.constant(image), 10, "pad")


def test_box_crop_uses_fractions_of_the_image_so_any_resized_copy_crops_the_same_region():
    image = np.zeros((100, 200, 3), dtype="float32")
    image[25:75, 50:150] = 200.0
    crop = crop_to_box(tf.constant(image), tf.constant([0.25, 0.25, 0.75, 0.75])).numpy()
    assert crop.shape == (50, 100, 3) and np.all(crop == 200.0)


def test_contrast_stretch_maps_each_channel_to_the_full_range():
    image = np.stack([np.linspace(50, 100, 16).reshape(4, 4)] * 3, axis=-1).astype("float32")
    stretched = contrast_stretch(tf.constant(image)).numpy()
    assert stretched.min() == pytest.approx(0.0) and stretched.max() == pytest.approx(255.0)
    assert np.all(np.diff(stretched[..., 0].ravel()) > 0)  # order kept


def test_equalization_flattens_the_histogram():
    rng = np.random.default_rng(0)
    image = rng.normal(120, 8, (64, 64, 3)).clip(0, 255).astype("float32")  # low contrast
    equalized = equalize(tf.constant(image)).numpy()
    assert equalized.min() == pytest.approx(0.0) and equalized.max() == pytest.approx(255.0)
    histogram, _ = np.histogram(equalized[..., 0], bins=4, range=(0, 256))
    assert histogram.min() > 0.15 * histogram.sum()  # roughly uniform quarters


def test_whitening_centres_and_scales_each_image():
    rng = np.random.default_rng(1)
    dark = rng.uniform(0, 60, (32, 32, 3)).astype("float32")
    whitened = whiten(tf.constant(dark)).numpy()
    assert whitened.mean() == pytest.approx(127.5, abs=1.0)
    assert whitened.std() == pytest.approx(64.0, rel=0.05)


def test_preprocess_applies_the_chosen_steps_and_always_returns_the_input_size():
    image = tf.constant(np.random.default_rng(2).uniform(0, 255, (30, 50, 3)).astype("float32"))
    box = tf.constant([0.0, 0.0, 0.5, 0.5])
    options = Preprocessing(size=16, box_crop=True, equalize=True)
    assert preprocess(image, box, options).shape == (16, 16, 3)
    assert options.describe() == "16-squash+box_crop+equalize"


def test_augmentation_changes_training_images_but_not_inference_and_can_be_switched_off():
    images = tf.constant(np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32"))
    layers = augmentation_layers(Augmentation(), 32, seed=1)
    augmented = layers(images, training=True).numpy()
    assert augmented.shape == (4, 32, 32, 3)
    assert not np.allclose(augmented, images.numpy())
    np.testing.assert_allclose(layers(images, training=False).numpy(), images.numpy(), atol=1e-4)
    assert not Augmentation.off().enabled and Augmentation().enabled


def test_flip_alone_mirrors_the_image():
    image = np.zeros((1, 8, 8, 3), dtype="float32")
    image[:, :, :4] = 255.0
    layers = augmentation_layers(Augmentation(flip=True, crop=0, rotation=0, shift=0, shear=0, zoom=0), 8, seed=0)
    outputs = {tuple(layers(tf.constant(image), training=True).numpy()[0, 0, :, 0]) for _ in range(12)}
    assert outputs == {tuple(image[0, 0, :, 0]), tuple(image[0, 0, ::-1, 0])}


def test_the_thumbnail_view_shrinks_photos_as_shelter_databases_do_and_never_enlarges_them():
    from dogtag.train.features import view_pipeline_options
    from dogtag.train.preprocess import shrink

    photo = tf.random.uniform((160, 224, 3), 0, 255, seed=1)
    thumb = shrink(photo, 96)
    assert tuple(thumb.shape) == (96, 134, 3)  # shorter side 96, aspect kept
    assert np.array_equal(thumb.numpy(), np.round(thumb.numpy())) and float(tf.reduce_max(thumb)) <= 255
    assert tuple(shrink(photo, 400).shape) == (160, 224, 3)
    assert view_pipeline_options("thumb96", 0) == {"thumbnail": 96}
    with pytest.raises(ValueError, match="thumbN"):
        view_pipeline_options("thumb", 0)
