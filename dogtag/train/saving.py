"""A trained model saved as `dogtag export` reads it: model.keras beside its model_info.json.

Every approach (transfer, scratch, the search's best run) saves through here, so a saved model
always carries its labels (in the split's breed order), input size, resize rule, thresholds and
output names, and its measured speed in Keras on this CPU goes into the run's timings.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from dogtag.edge_app.model_file import ModelInfo
from dogtag.train.dataset import Dataset


def model_info(dataset: Dataset, size: int, thresholds: dict, model_version: str, dog_output: str | None,
               **extra) -> ModelInfo:
    """The model info of a model trained on `dataset`: its breeds (and their WordNet ids), raw pixels
    squashed to size x size, the tuned thresholds, outputs "breeds" (and `dog_output`), `extra` facts."""
    tuned = {key: thresholds[key] for key in ("min_confidence", "min_dog") if key in thresholds}
    # A model without a dog output has no min_dog tuned: ModelInfo's default stands, never read by the edge app.
    return ModelInfo(labels=tuple(dataset.breeds), input_size=(size, size), resize="squash", **tuned,
                     model_version=model_version, breeds_output="breeds", dog_output=dog_output,
                     extra={"wnids": list(dataset.wnids), **extra})


def save_model(model: keras.Model, info: ModelInfo, run_dir: Path, log=print) -> float:
    """Write run_dir/model.keras and model_info.json; returns the model's measured ms per image."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    (run_dir / "model_info.json").write_text(info.to_json())
    milliseconds = inference_ms_per_image(model, info.input_size[0])
    log(f"saved {run_dir / 'model.keras'} ({milliseconds:.1f} ms per image in Keras on this CPU)")
    return milliseconds


def inference_ms_per_image(model: keras.Model, size: int, batch: int = 32) -> float:
    """Milliseconds per image of a batched Keras forward pass on this CPU (after one warm-up call)."""
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    model.predict(images[:4], verbose=0)
    began = time.perf_counter()
    model.predict(images, batch_size=batch, verbose=0)
    return round((time.perf_counter() - began) / batch * 1000, 2)
