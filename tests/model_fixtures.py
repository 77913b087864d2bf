"""Tiny real model files for tests: a 32 x 32 contract model, trained for a moment, exported by `export`.

    from tests.model_fixtures import committed_tiny_models
    files = committed_tiny_models(tmp_path)       # the committed files: no TensorFlow needed
    files = make_tiny_models(tmp_path)            # made now, by the export stage (needs TensorFlow)
    # both: {"tflite_int8": .../dogtag_tflite_int8.tflite, ...}

The Keras model follows the training stage's contract (raw [0, 255] pixels in, Rescaling inside,
softmax output "breeds" and sigmoid output "dog") and learns an easy task: each breed is a colour
tint over noise, and untinted grey noise is "not a dog". So the files give confident, different
answers for differently tinted photos (see `tinted_photo`). Models are built once per test session
and copied into each requested folder, so a test may damage its copy freely.
`tiny_models` copies files committed in tests/data/tiny_models (made by tests/data/make_tiny_models.py
from the functions here), so the edge app's tests run on the base install; everything else here needs
the train extra (TensorFlow, tf2onnx, onnxruntime).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dogtag.edge_app.model_file import ModelInfo
from dogtag.export.formats import FORMATS

TINY_SIZE = 32
TINY_LABELS = ("Chihuahua", "Japanese spaniel", "Maltese dog")  # Stanford's names, as the model files carry them
TINY_NAMES = ("Chihuahua", "Japanese Chin", "Maltese")  # the same breeds as `dogtag tag` names them
TINY_FORMATS = tuple(FORMATS)  # every export format
TINY_MODELS = Path(__file__).resolve().parent / "data" / "tiny_models"  # committed: see make_tiny_models.py there
_BUILT: dict[tuple, Path] = {}


def breed_colour(label_index: int) -> np.ndarray:
    """The RGB tint that stands for breed `label_index` in the tiny models' world."""
    fixed = [(200, 40, 40), (40, 180, 60), (50, 70, 210), (220, 200, 40), (160, 60, 190)]
    if label_index < len(fixed):
        return np.array(fixed[label_index], dtype="float32")
    return np.random.default_rng(label_index).integers(0, 256, 3).astype("float32")


def tinted_photo(label_index: int | None, seed: int = 0, size: int = TINY_SIZE) -> np.ndarray:
    """A uint8 (size, size, 3) photo of breed `label_index`, or grey noise ("not a dog") for None."""
    noise = np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype("float32")
    if label_index is None:
        pixels = 0.35 * noise + 0.65 * 128.0
    else:
        pixels = 0.35 * noise + 0.65 * breed_colour(label_index)
    return pixels.clip(0, 255).astype("uint8")


def training_photos(count: int, labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 photos, breed labels, dog flags): one in five photos is grey noise, not a dog."""
    rng = np.random.default_rng(seed)
    breeds = rng.integers(0, labels, count)
    dogs = (rng.random(count) > 0.2).astype("float32")
    photos = np.stack([
        tinted_photo(int(b) if d else None, seed=seed * 100_000 + i) for i, (b, d) in enumerate(zip(breeds, dogs, strict=True))
    ])
    return photos, breeds, dogs


def build_tiny_keras_model(labels: int, with_dog: bool = True, seed: int = 0):
    """A trained tiny Keras model of the contract: pixels [0, 255] -> breeds (and dog) probabilities."""
    import keras

    keras.utils.set_random_seed(seed)
    pixels = keras.Input((TINY_SIZE, TINY_SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)  # as in MobileNetV2, which int8 treats apart
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = [keras.layers.Dense(labels, activation="softmax", name="breeds")(x)]
    losses = ["sparse_categorical_crossentropy"]
    if with_dog:
        outputs.append(keras.layers.Dense(1, activation="sigmoid", name="dog")(x))
        losses.append("binary_crossentropy")
    model = keras.Model(pixels, outputs)
    model.compile(keras.optimizers.Adam(0.05), losses)
    photos, breeds, dogs = training_photos(256, labels, seed)
    targets = [breeds, dogs[:, None]] if with_dog else [breeds]
    model.fit(photos.astype("float32"), targets, epochs=8, batch_size=32, verbose=0)
    return model


def make_tiny_run(directory: Path, labels: list[str] | tuple[str, ...] = TINY_LABELS, with_dog: bool = True) -> Path:
    """A training-run folder as the train stage leaves it: model.keras and model_info.json."""
    key = ("run", tuple(labels), with_dog)
    if key not in _BUILT:
        source = _cache_dir() / f"run-{len(_BUILT)}"
        source.mkdir()
        model = build_tiny_keras_model(len(labels), with_dog)
        model.save(source / "model.keras")
        info = ModelInfo(
            labels=tuple(labels), input_size=(TINY_SIZE, TINY_SIZE), model_version="tiny-1",
            breeds_output="breeds", dog_output="dog" if with_dog else None,
        )
        (source / "model_info.json").write_text(info.to_json(), encoding="utf-8")
        _BUILT[key] = source
    target = Path(directory) / "tiny-run"
    shutil.copytree(_BUILT[key], target, dirs_exist_ok=True)
    return target


def make_tiny_models(
    directory: Path,
    labels: list[str] | tuple[str, ...] = TINY_LABELS,
    with_dog: bool = True,
    formats: tuple[str, ...] = TINY_FORMATS,
    features: bool = True,
) -> dict[str, Path]:
    """Tiny model files with embedded Dogtag model info, copied into `directory`; format -> path.

    Keys are export format names (tflite_float32, tflite_float16, tflite_dynamic, tflite_int8,
    onnx_float32, onnx_int8); files are named dogtag_<format>.tflite / .onnx. With `features`
    (the default, as `dogtag export` writes them) the files have the "features" output (the 8
    pooled channels the breed layer reads) that `dogtag learn` needs; without, as older exports.
    """
    from dogtag.export.convert import export_files, load_run

    key = ("models", tuple(labels), with_dog, tuple(formats), features)
    if key not in _BUILT:
        source = _cache_dir() / f"models-{len(_BUILT)}"
        model, info = load_run(make_tiny_run(source, labels, with_dog))
        calibration, _, _ = training_photos(64, len(labels), seed=1)
        export_files(model, info, source, formats, calibration, features=features, log=lambda _: None)
        _BUILT[key] = source
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in formats:
        (found,) = _BUILT[key].glob(f"dogtag_{name}.*")
        files[name] = Path(shutil.copy2(found, directory / found.name))
    return files


def tiny_model_with_bank(directory: Path) -> Path:
    """The tiny int8 model with a bank beside it (embeddings of its own training photos), as a bundled model has."""
    from dogtag.edge_app.model_file import read_model_info
    from dogtag.edge_app.runtime import Model
    from dogtag.learn.bank import bank_beside, write_bank

    path = make_tiny_models(directory, formats=("tflite_int8",))["tflite_int8"]
    photos, breeds, dogs = training_photos(90, len(TINY_LABELS), seed=7)
    outputs = Model(path).run_all(photos[dogs > 0])
    write_bank(bank_beside(path), outputs, breeds[dogs > 0], read_model_info(path), "tiny training photos")
    return path


def committed_tiny_models(directory: Path, variant: str = "standard") -> dict[str, Path]:
    """The committed tiny model files of `variant` (see tests/data/make_tiny_models.py), copied into
    `directory` so that a test may damage its copy; format name -> path. No TensorFlow needed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for found in sorted((TINY_MODELS / variant).glob("dogtag_*.*")):
        files[found.stem.removeprefix("dogtag_")] = Path(shutil.copy2(found, directory / found.name))
    if not files:
        raise FileNotFoundError(f"{TINY_MODELS / variant}: no tiny models (python tests/data/make_tiny_models.py)")
    return files


@functools.cache
def _cache_dir() -> Path:
    """One temporary folder per test session, removed when Python exits."""
    path = Path(tempfile.mkdtemp(prefix="dogtag-tiny-models-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
