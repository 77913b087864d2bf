"""`Classifier`: photos in, breeds out. The Python face of the edge app.

    from dogtag.edge_app import Classifier
    prediction = Classifier().predict("rex.jpg")   # a photo's path, an HxWx3 uint8 array or a PIL image
    prediction.breed, prediction.confidence, prediction.top_k, prediction.dog_probability

`predict_with_features` also returns each photo's embedding (the model's features output) from the
same model call, which `dogtag learn` caches and fits new heads on.

A prediction's status applies the thresholds the model carries (tuned on validation data), by the
one rule every stage uses (`statuses`): `not_a_dog` when the dog probability is below min_dog, else
`unsure` when the best breed's probability is below min_confidence, else `dog`. Its top_k lists the best breed and the next
ones down to MIN_ALTERNATIVE: an alternative the model gives almost nothing says nothing, and would
be whichever breed comes first in the label list.

Breeds are named as shelters write them ("Cairn Terrier", not Stanford's "cairn"), with Stanford's
synset id beside the name (`breed_id`), and breeds merged on evidence answer as one (see `breeds`);
`names="stanford"` gives the model's own labels instead. When the best two breeds are siblings told
apart mostly by pedigree (Lhasa Apso / Shih Tzu), `siblings` names them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dogtag import models as bundled
from dogtag.edge_app.breeds import DEFAULT_NAMING, LabelMap, are_siblings, model_label_map
from dogtag.edge_app.embeddings import EmbeddingCache, as_stored, join, photo_key
from dogtag.edge_app.images import PhotoError, array_to_image, load_photo, prepare_image
from dogtag.edge_app.learned import LearnedModel, open_model
from dogtag.edge_app.model_file import ModelFileError, ModelInfo
from dogtag.edge_app.runtime import Outputs

STATUSES = ("dog", "unsure", "not_a_dog", "error")
DEFAULT_TOP_K = 3
# Alternatives below 0.1% are left out of top_k (`dogtag predict` prints tenths of a percent).
MIN_ALTERNATIVE = 0.001
# What predict takes: a photo file, or an image already in memory.
ImageLike = np.ndarray | Image.Image | str | os.PathLike


@dataclass(frozen=True)
class Prediction:
    """What the model says about one photo."""

    breed: str  # the most probable breed (a guess even when status is unsure or not_a_dog)
    confidence: float  # its probability
    top_k: tuple[tuple[str, float], ...]  # (breed, probability), best first; alternatives >= MIN_ALTERNATIVE
    dog_probability: float | None
    status: str
    breed_id: str = ""  # Stanford's synset id of the breed (n02110185); "" for a label without one
    siblings: tuple[str, ...] = ()  # the best two breeds, when they are siblings told apart mostly by pedigree


def statuses(
    confidences: np.ndarray | Sequence[float],
    dog_probabilities: np.ndarray | Sequence[float] | None,
    min_confidence: float,
    min_dog: float,
) -> np.ndarray:
    """The status of each photo ('dog', 'unsure' or 'not_a_dog'): the unsure rule, for every stage.

    `not_a_dog` when its dog probability is below `min_dog` (never, for a model without a dog
    output: `dog_probabilities` None), else `unsure` when its best breed's probability is below
    `min_confidence`, else `dog`. Training and benchmarks count with this rule, so their figures
    are what the edge app does.
    """
    confidences = np.asarray(confidences, dtype=float)
    if dog_probabilities is None:
        not_a_dog = np.zeros(confidences.shape, dtype=bool)
    else:
        not_a_dog = np.asarray(dog_probabilities, dtype=float) < min_dog
    return np.where(not_a_dog, "not_a_dog", np.where(confidences < min_confidence, "unsure", "dog"))


def photo_status(confidence: float, dog_probability: float | None, min_confidence: float, min_dog: float) -> str:
    """The status of one photo under the unsure rule (see `statuses`)."""
    dogs = None if dog_probability is None else [dog_probability]
    return str(statuses([confidence], dogs, min_confidence, min_dog)[0])


def default_model_path(name: str | None = None) -> Path:
    """A bundled model's file (TFLite preferred, else ONNX): `name` is accurate or fast (default: accurate).

    A clear error when this install lacks it.
    """
    name = name or bundled.DEFAULT_MODEL
    tflite, onnx = (bundled.DEFAULT_TFLITE, bundled.DEFAULT_ONNX) if name == bundled.DEFAULT_MODEL else \
        bundled.bundled_files(name)
    for path in (tflite, onnx):
        if path.is_file():
            return path
    raise ModelFileError(
        f"no bundled model in {tflite.parent} for {name!r} (looked for {tflite.name} and {onnx.name}); "
        "pass a model with --model FILE (a .tflite or .onnx made by `dogtag export`)"
    )


def resolve_model(model: str | os.PathLike | None) -> Path:
    """The model meant by `model`: None or a bundled name (accurate, fast), else a path (a model file or a
    learned model's folder)."""
    if model is None or str(model) in bundled.BUNDLED_MODELS:
        return default_model_path(None if model is None else str(model))
    return Path(model)


class Classifier:
    """A model file plus the thresholds and top-k that turn its outputs into predictions.

    `model` is a bundled model's name, "accurate" (the default) or "fast", a .tflite / .onnx file,
    or a learned model's folder (written by `dogtag learn`).
    `names` is "display" (names as shelters write them, look-alike labels merged) or "stanford".
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        top_k: int = DEFAULT_TOP_K,
        min_confidence: float | None = None,
        min_dog: float | None = None,
        num_threads: int | None = None,
        names: str = DEFAULT_NAMING,
    ):
        self.model = open_model(resolve_model(model), num_threads=num_threads)
        self.info: ModelInfo = self.model.info
        self.names = names
        self.label_map: LabelMap = model_label_map(self.info, names)
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.min_confidence = self.info.min_confidence if min_confidence is None else min_confidence
        self.min_dog = self.info.min_dog if min_dog is None else min_dog
        self._cache: EmbeddingCache | None = None

    @property
    def caches_embeddings(self) -> bool:
        """Whether tagging reads and fills the embedding cache: learned models do (the cache of their
        base model, which `dogtag learn` fills), so re-tagging need not decode photos it has seen."""
        return isinstance(self.model, LearnedModel)

    def _embedding_cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.model.base_model_version)
        return self._cache

    def cached_outputs(self, path: str | os.PathLike) -> Outputs | None:
        """The base model's cached outputs for a photo file (learned models only), or None."""
        if not self.caches_embeddings:
            return None
        try:
            return self._embedding_cache().get(photo_key(path))
        except OSError:
            return None

    def predict_and_cache(self, pixels: np.ndarray, paths: Sequence[str | os.PathLike]) -> list[Prediction]:
        """Predict prepared pixels of these photo files, caching their embeddings (learned models)."""
        if not self.caches_embeddings:
            return self.predict_pixels(pixels)
        base = as_stored(self.model.base.run_all(np.ascontiguousarray(pixels, dtype=np.uint8)))
        with contextlib.suppress(OSError):  # a cache that cannot be written (full disk) only costs speed
            self._embedding_cache().add([photo_key(path) for path in paths], base)
        return self.predictions(self.model.head.apply(base))

    def predict_cached(self, cached: Sequence[Outputs]) -> list[Prediction]:
        """Predictions from cached base outputs (see cached_outputs), without decoding the photos."""
        return self.predictions(self.model.head.apply(join(list(cached), cached[0].dog is not None))) if cached else []

    @property
    def labels(self) -> tuple[str, ...]:
        """The breeds this classifier answers with, under its naming (merged breeds once)."""
        return self.label_map.labels

    @property
    def breed_ids(self) -> tuple[str, ...]:
        """The synset id of each of `labels` ("" for a label without one)."""
        return self.label_map.breed_ids

    def predict(self, image: ImageLike) -> Prediction:
        """Predict one photo: a path to a photo file, an HxWx3 uint8 array or a PIL image (any mode).

        A file that is not a readable photo raises PhotoError, its message naming the file and why.
        """
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageLike]) -> list[Prediction]:
        """Predict several photos (paths, arrays or PIL images) in one model call."""
        return self.predict_pixels(np.stack([self.prepare(image) for image in images]))

    def prepare(self, image: ImageLike) -> np.ndarray:
        """Read and resize a photo the way this model was trained: uint8 (height, width, 3)."""
        size, resize = self.info.input_size, self.info.resize
        if isinstance(image, (str, os.PathLike)):
            try:
                return load_photo(image, size, resize)
            except PhotoError as error:
                raise PhotoError(f"{os.fsdecode(image)}: {error}") from error
        if not isinstance(image, Image.Image):
            if not isinstance(image, np.ndarray) or not np.issubdtype(image.dtype, np.number):
                raise TypeError(
                    f"expected an image: a photo's path, an HxWx3 uint8 array or a PIL image, got "
                    f"{type(image).__name__}; e.g. Classifier().predict(PIL.Image.open('rex.jpg'))"
                )
            image = array_to_image(image)
        return prepare_image(image, size, resize)

    def predict_pixels(self, pixels: np.ndarray) -> list[Prediction]:
        """Predict a batch of already-prepared pixels, shape (n, height, width, 3) uint8."""
        breeds, dogs = self.model.run(pixels)
        return self.predictions(Outputs(breeds, dogs, None))

    def predict_with_features(self, images: Sequence[ImageLike]) -> tuple[list[Prediction], np.ndarray | None]:
        """Predictions and embeddings (n, d) float32 of several photos, from one model call.

        The embeddings are None for a model file without a features output (made before they existed).
        """
        return self.predict_pixels_with_features(np.stack([self.prepare(image) for image in images]))

    def predict_pixels_with_features(self, pixels: np.ndarray) -> tuple[list[Prediction], np.ndarray | None]:
        """As predict_with_features, for already-prepared pixels (n, height, width, 3) uint8."""
        outputs = self.model.run_all(pixels)
        return self.predictions(outputs), outputs.features

    def predictions(self, outputs: Outputs) -> list[Prediction]:
        """Predictions from a model's outputs (e.g. a learned head applied to cached embeddings)."""
        dogs = outputs.dog
        return [
            self._prediction(probabilities, None if dogs is None else float(dogs[i]))
            for i, probabilities in enumerate(outputs.breeds)
        ]

    def status(self, confidence: float, dog_probability: float | None) -> str:
        """`not_a_dog`, `unsure` or `dog` under this classifier's thresholds (see `statuses`)."""
        return photo_status(confidence, dog_probability, self.min_confidence, self.min_dog)

    def _prediction(self, probabilities: np.ndarray, dog_probability: float | None) -> Prediction:
        probabilities = self.label_map.merge(probabilities[None])[0]  # the model's outputs -> this naming's labels
        order = np.argsort(-probabilities, kind="stable")
        top_k = tuple(
            (self.labels[i], float(probabilities[i]))
            for rank, i in enumerate(order[: self.top_k]) if rank == 0 or probabilities[i] >= MIN_ALTERNATIVE
        )
        breed, confidence = top_k[0]
        first, second = (self.breed_ids[i] or self.labels[i] for i in order[:2])
        siblings = (self.labels[order[0]], self.labels[order[1]]) if are_siblings(first, second) else ()
        return Prediction(breed, confidence, top_k, dog_probability, self.status(confidence, dog_probability),
                          self.breed_ids[order[0]], siblings)
