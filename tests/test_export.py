"""The export stage: a trained Keras model becomes TFLite and ONNX files that answer like it does,
carry their labels, and are refused when the labels do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.model_file import (
    MODEL_INFO_KEY,
    ModelFileError,
    ModelInfo,
    check_outputs,
    read_model_info,
    read_tflite_metadata,
)
from tests.model_fixtures import TINY_FORMATS, TINY_LABELS, make_tiny_models, make_tiny_run, tinted_photo

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

# How far each format's breed probabilities may stray from Keras on the tiny model.
TOLERANCE = {
    "tflite_float32": 1e-5, "onnx_float32": 1e-5, "tflite_float16": 1e-2, "tflite_dynamic": 2e-2,
    "tflite_int8": 0.1, "onnx_int8": 0.1,
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Two photos of each tiny breed and two of grey noise (not dogs), uint8."""
    breeds = [0, 1, 2, 0, 1, 2, None, None]
    return np.stack([tinted_photo(b, seed=500 + i) for i, b in enumerate(breeds)])


def keras_answers(run: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    from dogtag.export.convert import load_run, predict_keras

    model, info = load_run(run)
    return predict_keras(model, info, pixels)


@pytest.mark.parametrize("name", TINY_FORMATS)
def test_every_exported_format_answers_like_the_keras_model(name, tiny_run, tiny_files, photos):
    from dogtag.export.verify import open_model_file

    expected = keras_answers(tiny_run, photos)
    got = open_model_file(tiny_files[name])(photos)

    assert got["breeds"].shape == (len(photos), len(TINY_LABELS))
    assert np.array_equal(got["breeds"].argmax(1), expected["breeds"].argmax(1))
    assert np.abs(got["breeds"] - expected["breeds"]).max() <= TOLERANCE[name]
    assert np.abs(got["dog"] - expected["dog"]).max() <= TOLERANCE[name]
    # The tiny model really learnt its task, so agreement above means something.
    assert list(expected["breeds"].argmax(1)[:6]) == [0, 1, 2, 0, 1, 2]
    assert list(expected["dog"].ravel() > 0.5) == [True] * 6 + [False] * 2


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_int8", "tflite_float32"])
def test_exported_models_take_raw_uint8_pixels_and_name_their_outputs(name, tiny_files):
    path = tiny_files[name]
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (pixels,) = interpreter.get_input_details()
        input_type, input_shape = np.dtype(pixels["dtype"]), list(pixels["shape_signature"])
        outputs = {o["name"]: np.dtype(o["dtype"]) for o in interpreter.get_output_details()}
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (pixels,) = session.get_inputs()
        input_type, input_shape = pixels.type, pixels.shape
        outputs = {o.name: o.type for o in session.get_outputs()}

    assert input_type in (np.uint8, "tensor(uint8)")
    assert list(input_shape[1:]) == [32, 32, 3]
    assert set(outputs) == {"breeds", "dog", "features"}
    assert all(t in (np.float32, "tensor(float)") for t in outputs.values()), "probabilities come out as float"


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_int8", "tflite_float32"])
def test_exported_models_give_the_embedding_the_breed_layer_reads(name, tiny_run, tiny_files, photos):
    """The features output is the breed layer's input: that layer applied to it gives the breeds."""
    import keras

    from dogtag.edge_app.runtime import Model

    outputs = Model(tiny_files[name]).run_all(photos)
    dense = keras.models.load_model(tiny_run / "model.keras", compile=False).get_layer("breeds")
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    logits = outputs.features @ kernel + bias
    again = np.exp(logits - logits.max(1, keepdims=True))
    again /= again.sum(1, keepdims=True)

    assert outputs.features.shape == (len(photos), kernel.shape[0])
    assert np.array_equal(again.argmax(1), outputs.breeds.argmax(1))
    assert np.abs(again - outputs.breeds).max() <= TOLERANCE[name] + 0.05


@pytest.mark.parametrize("name", TINY_FORMATS)
def test_every_file_carries_its_labels_and_what_the_edge_side_needs(name, tiny_files):
    info = read_model_info(tiny_files[name])

    assert info.labels == TINY_LABELS
    assert info.input_size == (32, 32)
    assert info.resize == "squash"
    assert (info.breeds_output, info.dog_output, info.features_output) == ("breeds", "dog", "features")
    assert info.model_version == f"tiny-1+{name}", "each format answers differently, so has its own version"
    assert info.extra["export"]["format"] == name


def test_int8_onnx_gives_the_first_depthwise_kernel_16_bits(tiny_files):
    model = onnx.load(tiny_files["onnx_int8"])
    kernel_types = {init.data_type for init in model.graph.initializer if init.dims and len(init.dims) == 4}
    assert onnx.TensorProto.INT16 in kernel_types and onnx.TensorProto.INT8 in kernel_types


def test_a_model_without_a_dog_output_exports_breeds_only(tmp_path, photos):
    from dogtag.export.verify import open_model_file

    files = make_tiny_models(tmp_path, with_dog=False, formats=("tflite_int8", "onnx_float32"))

    for path in files.values():
        assert read_model_info(path).dog_output is None
        answers = open_model_file(path)(photos)
        assert set(answers) == {"breeds", "features"}
        assert answers["breeds"].shape == (len(photos), 3)


def test_embedding_again_replaces_the_model_info_and_keeps_other_metadata(tiny_files):
    from dogtag.export.metadata import embed_tflite_info

    original = tiny_files["tflite_int8"].read_bytes()
    relabelled = ModelInfo(labels=("Beagle", "Boxer", "Pug"), input_size=(32, 32), model_version="v2")
    data = embed_tflite_info(original, relabelled)
    entries = read_tflite_metadata(data)

    assert json.loads(entries[MODEL_INFO_KEY])["labels"] == ["Beagle", "Boxer", "Pug"]
    assert set(read_tflite_metadata(original)) == set(entries), "no duplicate entry, nothing else lost"


def test_a_model_file_without_labels_is_refused_with_a_clear_message(tmp_path, tiny_run):
    from dogtag.export.convert import load_run, to_onnx, to_tflite

    model, info = load_run(tiny_run)
    bare_tflite = tmp_path / "bare.tflite"
    bare_tflite.write_bytes(to_tflite(model, info))
    bare_onnx = tmp_path / "bare.onnx"
    onnx.save(to_onnx(model, info), bare_onnx)

    for path in (bare_tflite, bare_onnx):
        with pytest.raises(ModelFileError, match=r"bare\.\w+: this model carries no Dogtag labels.*dogtag export"):
            read_model_info(path)


def test_labels_that_do_not_fit_the_breed_output_are_refused(tmp_path, tiny_files):
    from dogtag.export.metadata import embed_onnx_info, embed_tflite_info
    from dogtag.export.verify import open_model_file

    four_labels = ModelInfo(labels=(*TINY_LABELS, "Pug"), input_size=(32, 32), breeds_output="breeds")
    wrong_tflite = tmp_path / "wrong.tflite"
    wrong_tflite.write_bytes(embed_tflite_info(tiny_files["tflite_int8"].read_bytes(), four_labels))
    wrong_onnx = tmp_path / "wrong.onnx"
    onnx.save(embed_onnx_info(onnx.load(tiny_files["onnx_float32"]), four_labels), wrong_onnx)

    for path in (wrong_tflite, wrong_onnx):
        with pytest.raises(ModelFileError, match=r"wrong\.\w+: the breed output 'breeds' gives 3 probabilities "
                                                 r"but the model carries 4 labels"):
            open_model_file(path)


def test_outputs_are_found_by_their_names_or_else_by_their_size():
    info = ModelInfo(labels=TINY_LABELS, input_size=(32, 32), breeds_output="breeds", dog_output="dog")
    unnamed = ModelInfo(labels=TINY_LABELS, input_size=(32, 32))

    with_features = ModelInfo(labels=TINY_LABELS, input_size=(32, 32), features_output="features")

    assert check_outputs(info, {"dog": (1, 1), "breeds": (1, 3)}) == {"breeds": "breeds", "dog": "dog", "features": None}
    assert check_outputs(unnamed, {"Identity:0": (-1, 3), "Identity_1:0": (-1, 1)}) == {
        "breeds": "Identity:0", "dog": "Identity_1:0", "features": None}
    assert check_outputs(unnamed, {"probs": ("batch", 3)}) == {"breeds": "probs", "dog": None, "features": None}
    # A features output is known by its name only, even when its length is that of the labels.
    assert check_outputs(with_features, {"b": (1, 3), "features": (1, 3), "d": (1, 1)}) == {
        "breeds": "b", "dog": "d", "features": "features"}
    with pytest.raises(ModelFileError, match="names a features output 'features' but the model has no such"):
        check_outputs(with_features, {"breeds": (1, 3)})
    with pytest.raises(ModelFileError, match="model.onnx: the model carries 3 breed labels but no output gives 3"):
        check_outputs(unnamed, {"probs": (1, 120)}, source="model.onnx")
    with pytest.raises(ModelFileError, match="names a dog output 'dog' but the model has no output"):
        check_outputs(info, {"breeds": (1, 3)})


def test_export_refuses_a_run_whose_labels_do_not_fit_its_model(tmp_path):
    run = make_tiny_run(tmp_path)
    document = json.loads((run / "model_info.json").read_text())
    document["labels"] = ["Beagle", "Boxer"]
    (run / "model_info.json").write_text(json.dumps(document))

    result = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "out"), "--no-verify"])

    assert result.exit_code != 0
    assert "gives 3 probabilities but the model carries 2 labels" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_int8_calibration_reads_training_photos_only(mini_stanford, tiny_run, monkeypatch):
    import dogtag.export.images
    from dogtag.export.convert import load_run

    _, info = load_run(tiny_run)
    read = []
    original = dogtag.export.images.load_photo
    monkeypatch.setattr(dogtag.export.images, "load_photo", lambda path, *a: read.append(Path(path)) or original(path, *a))

    photos = dogtag.export.images.calibration_photos(mini_stanford, info, count=100)

    test_photos = {s.path for s in dogtag.export.images.split_for_export(mini_stanford, "test").samples}
    assert photos.shape == (18, 32, 32, 3) and photos.dtype == np.uint8, "all 3 x 6 training photos"
    assert len(read) == 18 and not set(read) & test_photos


def test_a_damaged_photo_in_the_dataset_stops_the_export_naming_the_file(mini_stanford, tiny_run):
    from dogtag.export.convert import load_run
    from dogtag.export.images import calibration_photos, split_for_export

    _, info = load_run(tiny_run)
    damaged = split_for_export(mini_stanford, "train").samples[0].path
    damaged.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")

    with pytest.raises(ValueError, match=f"{damaged.name}: .*remove or replace it"):
        calibration_photos(mini_stanford, info, count=100)


def test_the_export_command_writes_verified_models_and_a_model_card(tmp_path, mini_stanford):
    run = make_tiny_run(tmp_path)
    (run / "metrics.json").write_text(json.dumps({
        "top1": 0.9, "top5": 1.0, "baseline_top1": 0.5, "approach": "transfer tiny",
        "most_confused": [{"true": "Chihuahua", "predicted": "Maltese dog", "count": 1, "of": 4}],
        "thresholds": {"min_confidence": 0.5, "min_dog": 0.5},
    }))
    out = tmp_path / "exported"

    result = CliRunner().invoke(main, [
        "export", str(run), "--out", str(out), "--data", str(mini_stanford),
        "--formats", "tflite_float32,tflite_int8,onnx_int8", "--onnx-calibration", "minmax,entropy",
        "--calibration-images", "12", "--model-card",
    ])

    assert result.exit_code == 0, result.output
    names = {"tflite_float32", "tflite_int8", "onnx_int8_minmax", "onnx_int8_entropy"}
    assert {p.name for p in out.iterdir()} == {
        "dogtag_tflite_float32.tflite", "dogtag_tflite_int8.tflite", "dogtag_onnx_int8_minmax.onnx",
        "dogtag_onnx_int8_entropy.onnx", "verification.json", "verification.md", "MODEL_CARD.md"}
    report = json.loads((out / "verification.json").read_text())
    assert report["images"] == 12, "the whole test split: 3 breeds x 4 photos"
    assert set(report["formats"]) == names
    assert report["keras_top1"] == 1.0, "tinted test photos are easy for the tiny model"
    assert report["formats"]["tflite_float32"]["agreement"] == 1.0
    assert all(entry["meets_target"] for entry in report["formats"].values())
    assert report["formats"]["tflite_int8"]["dog_decision_agreement"] == 1.0
    assert "| tflite_int8 |" in result.output and "agrees with Keras %" in result.output
    card = (out / "MODEL_CARD.md").read_text()
    assert "Chihuahua | Maltese dog | 1 of 4" in card
    assert "--formats tflite_float32,tflite_int8,onnx_int8" in card
    assert "| onnx_int8_entropy |" in card


@pytest.mark.real_data
def test_export_verifies_on_real_stanford_dogs_photos(tmp_path, stanford_dogs):
    # A tiny model of the first three real breeds: what matters is that real photos flow through
    # calibration and verification, and that every file answers like Keras on them.
    from dogtag.train.dataset import load_split

    labels = load_split(stanford_dogs, "test").breeds[:3]
    run = make_tiny_run(tmp_path, labels=labels)
    out = tmp_path / "exported"

    result = CliRunner().invoke(main, [
        "export", str(run), "--out", str(out), "--data", str(stanford_dogs),
        "--formats", "onnx_float32,tflite_int8", "--calibration-images", "16", "--verify-images", "40",
    ])

    assert result.exit_code == 0, result.output
    report = json.loads((out / "verification.json").read_text())
    assert report["images"] == 40
    assert report["formats"]["onnx_float32"]["agreement"] == 1.0
    assert report["formats"]["onnx_float32"]["max_abs_diff"] < 1e-4
    assert report["formats"]["tflite_int8"]["max_abs_diff"] < 0.2
