"""`from dogtag import Classifier`: any exported model file names the breed of a photo, with its
confidence, top-k and dog probability, and a model that cannot be trusted is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dogtag.edge_app import Classifier, ModelFileError, Prediction
from dogtag.edge_app.classifier import MIN_ALTERNATIVE, resolve_model
from tests.model_fixtures import (
    TINY_FORMATS,
    TINY_NAMES,
    committed_tiny_models,
    tinted_photo,
)


def needs_runtime(path: Path) -> None:
    """ONNX models need the onnx extra; the base install has LiteRT only."""
    if path.suffix == ".onnx":
        pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra: pip install -e '.[onnx]'")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return committed_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("name", TINY_FORMATS)
def test_every_model_format_names_the_breed_of_a_photo_and_spots_a_non_dog(tiny_models, name):
    needs_runtime(tiny_models[name])
    classifier = Classifier(tiny_models[name])

    for index, breed in enumerate(TINY_NAMES):
        prediction = classifier.predict(tinted_photo(index, seed=900 + index))
        assert (prediction.breed, prediction.status) == (breed, "dog"), prediction
    grey = classifier.predict(tinted_photo(None, seed=950))
    assert grey.status == "not_a_dog" and grey.dog_probability < classifier.min_dog


def test_predict_takes_an_array_or_a_pil_image_and_returns_breed_confidence_top_k_and_dog(tiny_models):
    classifier = Classifier(tiny_models["tflite_int8"], top_k=2)
    pixels = tinted_photo(1, seed=7, size=80)

    from_array = classifier.predict(pixels)
    from_pil = classifier.predict(Image.fromarray(pixels))

    assert isinstance(from_array, Prediction) and from_array == from_pil
    assert (from_array.breed, from_array.breed_id) == ("Japanese Chin", "n02085782")
    assert from_array.top_k[0] == (from_array.breed, from_array.confidence)
    assert 1 <= len(from_array.top_k) <= 2 and all(p >= MIN_ALTERNATIVE for _, p in from_array.top_k)
    assert 0.5 < from_array.dog_probability <= 1.0
    guesses = classifier.predict(tinted_photo(None, seed=7)).top_k  # grey: no breed stands out
    assert len(guesses) == 2 and guesses[0][1] >= guesses[1][1], "the two most probable, best first"


def test_predict_accepts_grayscale_and_rgba_arrays_but_explains_float_ones(tiny_models):
    classifier = Classifier(tiny_models["tflite_int8"])

    assert classifier.predict(np.full((40, 40), 128, np.uint8)).breed in TINY_NAMES
    assert classifier.predict(np.dstack([tinted_photo(2), np.full((32, 32), 255, np.uint8)])).breed == "Maltese"
    with pytest.raises(TypeError, match=r"expected uint8 pixels.*\(pixels \* 255\)"):
        classifier.predict(np.zeros((32, 32, 3), np.float32))


def test_a_batch_gives_the_same_answers_as_one_photo_at_a_time(tiny_models):
    needs_runtime(tiny_models["onnx_float32"])
    classifier = Classifier(tiny_models["onnx_float32"])
    photos = [tinted_photo(i % 3, seed=i) for i in range(5)]

    batch = classifier.predict_batch(photos)

    for photo, prediction in zip(photos, batch, strict=True):
        single = classifier.predict(photo)
        assert single.breed == prediction.breed
        assert single.confidence == pytest.approx(prediction.confidence, abs=1e-5)


def test_thresholds_come_from_the_model_and_can_be_overridden(tiny_models):
    default = Classifier(tiny_models["tflite_float32"])
    strict = Classifier(tiny_models["tflite_float32"], min_confidence=1.01)
    trusting = Classifier(tiny_models["tflite_float32"], min_dog=0.0)

    assert (default.min_confidence, default.min_dog) == (default.info.min_confidence, default.info.min_dog)
    assert strict.predict(tinted_photo(0)).status == "unsure"
    assert trusting.predict(tinted_photo(None)).status in ("dog", "unsure")


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_float32"])
def test_a_model_whose_labels_do_not_fit_its_breed_output_is_refused(tmp_path, name):
    path = committed_tiny_models(tmp_path, "wrong_labels")[name]  # 4 labels embedded, 3 probabilities out
    needs_runtime(path)

    with pytest.raises(ModelFileError, match=rf"{path.name}: the breed output 'breeds' gives 3 probabilities but "
                                             r"the model carries 4 labels.*re-export"):
        Classifier(path)


def test_a_model_with_quantized_uint8_outputs_answers_like_the_float_one(tmp_path, tiny_models):
    path = committed_tiny_models(tmp_path, "uint8_outputs")["tflite_int8"]
    quantized, reference = Classifier(path), Classifier(tiny_models["tflite_float32"])

    for index in range(3):
        got, expected = quantized.predict(tinted_photo(index)), reference.predict(tinted_photo(index))
        assert got.breed == expected.breed
        assert got.confidence == pytest.approx(expected.confidence, abs=0.05), "dequantized to a probability"
        assert got.dog_probability == pytest.approx(expected.dog_probability, abs=0.05)


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_float32"])
def test_a_model_without_a_dog_output_still_names_breeds(tmp_path, name):
    path = committed_tiny_models(tmp_path, "no_dog")[name]
    needs_runtime(path)

    prediction = Classifier(path).predict(tinted_photo(2))

    assert (prediction.breed, prediction.dog_probability, prediction.status) == ("Maltese", None, "dog")


def test_without_a_bundled_model_the_error_says_how_to_pass_one(tmp_path, monkeypatch):
    import dogtag.models

    monkeypatch.setattr(dogtag.models, "DEFAULT_TFLITE", tmp_path / "dogtag.tflite")
    monkeypatch.setattr(dogtag.models, "DEFAULT_ONNX", tmp_path / "dogtag.onnx")

    with pytest.raises(ModelFileError, match=r"no bundled model in .*pass a model with --model FILE"):
        Classifier()


def test_the_two_bundled_models_are_chosen_by_name_and_accurate_is_the_default(tiny_models, tmp_path, monkeypatch):
    import shutil

    import dogtag.models

    for name in ("accurate", "fast"):
        shutil.copy(tiny_models["tflite_int8"], tmp_path / f"{name}_tflite_int8.tflite")
    shutil.copy(tiny_models["onnx_int8"], tmp_path / "fast_onnx_int8.onnx")
    monkeypatch.setattr(dogtag.models, "MODEL_DIR", tmp_path)
    monkeypatch.setattr(dogtag.models, "DEFAULT_TFLITE", tmp_path / "accurate_tflite_int8.tflite")

    assert Classifier().model.path == tmp_path / "accurate_tflite_int8.tflite"
    assert Classifier("fast").model.path == tmp_path / "fast_tflite_int8.tflite"  # TFLite before ONNX
    (tmp_path / "fast_tflite_int8.tflite").unlink()
    assert resolve_model("fast") == tmp_path / "fast_onnx_int8.onnx"  # opening it needs the onnx extra
    (tmp_path / "fast_onnx_int8.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"no bundled model in .* for 'fast'"):
        Classifier("fast")
    with pytest.raises(ModelFileError, match=r"fastest: no such model file"):
        Classifier("fastest")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "photo.tflite").write_bytes(b"\xff\xd8\xff\xe0 a JPEG renamed")

    with pytest.raises(ModelFileError, match=r"photo\.tflite: not a TFLite model"):
        Classifier(tmp_path / "photo.tflite")
