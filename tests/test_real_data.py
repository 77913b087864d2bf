"""Checks on the real Stanford Dogs copy in ../shared: skipped, saying so, where it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from train.dataset import read_official

pytestmark = pytest.mark.real_data


def test_the_official_split_has_12000_training_and_8580_test_photos_of_120_breeds(stanford_dogs):
    train = read_official(stanford_dogs, "train")
    test = read_official(stanford_dogs, "test")
    assert (len(train), len(test), len(train.breeds)) == (12000, 8580, 120)
    assert train.breeds[0] == "Chihuahua" and "Eskimo dog" in train.breeds
    assert not {s.path for s in train.samples} & {s.path for s in test.samples}
    assert all(s.box is not None for s in train.samples[:200])


def test_boxes_in_original_pixels_land_inside_the_224_pixel_copies(stanford_dogs):
    from PIL import Image

    sample = read_official(stanford_dogs, "train").samples[0]
    with Image.open(sample.path) as image:
        width, height = image.size
    left, top, right, bottom = sample.box.scaled_to(width, height)
    assert (width, height) == (224, 224)
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert (sample.box.width, sample.box.height) != (224, 224)  # the XML keeps the original size


def test_the_bundled_model_names_the_breed_of_real_test_photos(stanford_dogs):
    from dogtag.models import DEFAULT_TFLITE

    from edge_app import Classifier
    from edge_app.images import load_photo

    if not DEFAULT_TFLITE.exists():
        pytest.skip(f"no bundled model at {DEFAULT_TFLITE}")
    classifier = Classifier(DEFAULT_TFLITE)
    test = read_official(stanford_dogs, "test")
    every_40th = test.samples[::40]  # 215 photos across all breeds
    pixels = np.stack([load_photo(s.path, classifier.info.input_size, classifier.info.resize) for s in every_40th])
    predictions = classifier.predict_pixels(pixels)
    right = np.mean([p.breed == test.breeds[s.label] for p, s in zip(predictions, every_40th, strict=True)])
    dogs = np.mean([p.dog_probability >= 0.5 for p in predictions])
    assert right >= 0.80, f"top-1 {right:.1%} on {len(every_40th)} real test photos"
    assert dogs >= 0.9, f"only {dogs:.1%} of real dog photos were seen as dogs"
