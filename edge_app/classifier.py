"""`Classifier`: photos in, breeds out. The Python face of the edge app.

    from edge_app import Classifier
    prediction = Classifier().predict(image)   # HxWx3 uint8 array or PIL image
    prediction.breed, prediction.confidence, prediction.top_k, prediction.dog_probability

A prediction's status applies the thresholds the model carries (tuned on validation data):
`not_a_dog` when the dog probability is below min_dog, else `unsure` when the best breed's
probability is below min_confidence, else `dog`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_app.images import array_to_image, prepare_image
from edge_app.model_file import ModelFileError, ModelInfo
from edge_app.runtime import Model

STATUSES = ("dog", "unsure", "not_a_dog", "error")


@dataclass(frozen=True)
class Prediction:
    """What the model says about one photo."""

    breed: str
    confidence: float
    top_k: tuple[tuple[str, float], ...]
    dog_probability: float | None
    status: str


def default_model_path() -> Path:
    """The bundled model (TFLite preferred, else ONNX); a clear error when this install has none."""
    try:
        from dogtag.models import DEFAULT_ONNX, DEFAULT_TFLITE
    except ModuleNotFoundError:  # a plain checkout, not installed
        from models import DEFAULT_ONNX, DEFAULT_TFLITE
    for path in (DEFAULT_TFLITE, DEFAULT_ONNX):
        if path.is_file():
            return path
    raise ModelFileError(
        f"no bundled model in {DEFAULT_TFLITE.parent} (looked for {DEFAULT_TFLITE.name} and "
        f"{DEFAULT_ONNX.name}); pass a model with --model FILE (a .tflite or .onnx made by `dogtag export`)"
    )


class Classifier:
    """A model file plus the thresholds and top-k that turn its outputs into predictions."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        top_k: int = 3,
        min_confidence: float | None = None,
        min_dog: float | None = None,
        num_threads: int | None = None,
    ):
        self.model = Model(default_model_path() if model is None else model, num_threads=num_threads)
        self.info: ModelInfo = self.model.info
        self.top_k = max(1, min(top_k, len(self.info.labels)))
        self.min_confidence = self.info.min_confidence if min_confidence is None else min_confidence
        self.min_dog = self.info.min_dog if min_dog is None else min_dog

    def predict(self, image: np.ndarray | Image.Image) -> Prediction:
        """Predict one photo given as an HxWx3 uint8 array or a PIL image (any mode)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray | Image.Image]) -> list[Prediction]:
        """Predict several photos in one model call."""
        return self.predict_pixels(np.stack([self.prepare(image) for image in images]))

    def prepare(self, image: np.ndarray | Image.Image) -> np.ndarray:
        """Resize an in-memory image the way this model was trained: uint8 (height, width, 3)."""
        if not isinstance(image, Image.Image):
            image = array_to_image(image)
        return prepare_image(image, self.info.input_size, self.info.resize)

    def predict_pixels(self, pixels: np.ndarray) -> list[Prediction]:
        """Predict a batch of already-prepared pixels, shape (n, height, width, 3) uint8."""
        breeds, dogs = self.model.run(pixels)
        return [
            self._prediction(probabilities, None if dogs is None else float(dogs[i]))
            for i, probabilities in enumerate(breeds)
        ]

    def status(self, confidence: float, dog_probability: float | None) -> str:
        """`not_a_dog`, `unsure` or `dog` under this classifier's thresholds."""
        if dog_probability is not None and dog_probability < self.min_dog:
            return "not_a_dog"
        return "unsure" if confidence < self.min_confidence else "dog"

    def _prediction(self, probabilities: np.ndarray, dog_probability: float | None) -> Prediction:
        best = np.argsort(-probabilities, kind="stable")[: self.top_k]
        top_k = tuple((self.info.labels[i], float(probabilities[i])) for i in best)
        breed, confidence = top_k[0]
        return Prediction(breed, confidence, top_k, dog_probability, self.status(confidence, dog_probability))
