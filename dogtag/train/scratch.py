"""One run of the CNN designed from scratch: photos -> trained, evaluated, saved model.

The pieces, each in its own file: the hyperparameters (scratch_params.py), the network
(scratch_network.py), the uint8 image cache (image_cache.py), batches with augmentation and
mixup/cutmix (batches.py, mixing.py), resumable checkpoints (checkpoints.py), model saving
(saving.py) and the run record (run_record.py). Training is resumable: a run started again with
the same folder continues from its last epoch. The run folder receives model.keras and
model_info.json for `dogtag export`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np

from dogtag.edge_app.thresholds import tune_thresholds
from dogtag.train import run_record
from dogtag.train.batches import evaluation_batches, predict, steps_per_epoch, training_batches
from dogtag.train.checkpoints import Progress, best_epoch, check_run_folder, only_trainer
from dogtag.train.dataset import Dataset, load_split, select_breeds, stratified_indices
from dogtag.train.devices import distribution_strategy, training_precision
from dogtag.train.evaluate import evaluate
from dogtag.train.image_cache import DEFAULT_CACHE, cached_images
from dogtag.train.saving import model_info, save_model
from dogtag.train.scratch_network import (
    build_model,
    compile_model,
    decay_kernels_only,
    warm_start,
    with_flip_tta,
)
from dogtag.train.scratch_params import ScratchParams


def train_model(
    params: ScratchParams, images: np.ndarray, labels: np.ndarray, val_images: np.ndarray,
    val_labels: np.ndarray, classes: int, checkpoint_dir: Path, time_limit_s: float | None = None, log=print,
    init_from: Path | None = None,
) -> tuple[keras.Model, dict]:
    """Train (or resume training) and return the model with its best validation weights and the state.

    `init_from` starts a new training from another scratch model's weights (all but its head);
    with params.head_only those weights stay frozen. One process at a time trains a folder
    (run_scratch checks beforehand that the folder's run can go on with these params). The
    state holds the per-epoch history, the epochs done, why training stopped and its seconds.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with only_trainer(checkpoint_dir.parent, checkpoint_dir / "lock"):
        keras.utils.set_random_seed(params.seed)
        progress = Progress(checkpoint_dir, params.patience, time_limit_s, log)
        steps = steps_per_epoch(len(images), params.batch_size)
        with distribution_strategy().scope(), training_precision():
            if (checkpoint_dir / "last.keras").exists():
                model = keras.models.load_model(checkpoint_dir / "last.keras")
                decay_kernels_only(model.optimizer)
                log(f"resuming from {checkpoint_dir / 'last.keras'} after epoch {progress.state['epoch']}")
            else:
                model = build_model(params, classes)
                if init_from is not None:
                    warm_start(model, init_from, log)
                    progress.state["init_from"] = str(init_from)
                if params.head_only:
                    for layer in model.layers:
                        layer.trainable = layer.name == "breeds"
                compile_model(model, params, steps)
        if not progress.finished and progress.state["epoch"] < params.epochs:
            model.fit(
                training_batches(images, labels, classes, params.batch_size, params.augmentation,
                                 seed=params.seed + progress.state["epoch"], mixup=params.mixup,
                                 cutmix=params.cutmix),
                validation_data=evaluation_batches(val_images, val_labels, classes, 128),
                epochs=params.epochs, initial_epoch=progress.state["epoch"], shuffle=False, verbose=0,
                callbacks=[progress],
            )
        if (checkpoint_dir / "best.weights.h5").exists():
            model.load_weights(checkpoint_dir / "best.weights.h5")
        return model, progress.state


def load_breeds(data: Path, breeds: list[str] | None, count: int | None) -> tuple[Dataset, Dataset]:
    """The official train and test splits restricted to the chosen breeds (all when none chosen)."""
    return (select_breeds(load_split(data, "train"), breeds, count),
            select_breeds(load_split(data, "test"), breeds, count))


def run_scratch(
    data: Path, run_dir: Path, params: ScratchParams, breeds: list[str] | None = None, breed_count: int | None = None,
    cache_root: Path = DEFAULT_CACHE, time_limit_s: float | None = None, extra_config: dict | None = None,
    init_from: Path | None = None, log=print,
) -> dict:
    """Train the scratch CNN on the chosen breeds, evaluate it on their official test images, save it.

    The run folder receives model.keras, model_info.json, checkpoints/ and the run record of
    train.run_record.write_run. A run stopped by `time_limit_s` is recorded as it stands (best weights
    so far) and resumes when started again with the same folder. `init_from` (a model.keras of the
    same architecture, e.g. trained on more breeds) warm-starts every layer but the head.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir / "checkpoints", params, init_from)
    train_split, test_split = load_breeds(data, breeds, breed_count)
    classes = len(train_split.breeds)
    labels = np.array([s.label for s in train_split.samples], dtype="int32")
    test_labels = np.array([s.label for s in test_split.samples], dtype="int32")
    fit_rows, val_rows = stratified_indices(labels.tolist(), params.validation_fraction, params.seed)
    started = time.perf_counter()
    images = cached_images(train_split, params.size, cache_root, "train", log)
    test_images = cached_images(test_split, params.size, cache_root, "test", log)
    cache_seconds = time.perf_counter() - started
    log(f"{classes} breeds: {len(fit_rows)} training, {len(val_rows)} validation, {len(test_split)} test images; "
        f"{params.describe()}")

    network, state = train_model(params, images[fit_rows], labels[fit_rows], images[val_rows], labels[val_rows],
                                 classes, run_dir / "checkpoints", time_limit_s, log, init_from)
    trained = time.perf_counter()
    model = with_flip_tta(network) if params.flip_tta else network
    init_from = init_from or state.get("init_from")  # a resumed or re-evaluated run keeps its record
    val_probabilities = predict(model, images[val_rows])
    thresholds = tune_thresholds(val_probabilities, labels[val_rows])  # no dog output: no min_dog
    metrics = evaluate(predict(model, test_images), test_labels, train_split.breeds)
    stopped = state["stopped"] or ("planned epochs done" if state["epoch"] >= params.epochs else "interrupted")
    metrics.update(
        approach=f"scratch CNN ({params.block})" + (" warm-started" if init_from else "")
        + (", head only" if params.head_only else "")
        + (" + flip TTA" if params.flip_tta else ""),
        flip_tta=params.flip_tta,
        validation_top1=round(float(np.mean(val_probabilities.argmax(1) == labels[val_rows])), 4),
        epochs_done=state["epoch"], epochs_planned=params.epochs, stopped=stopped,
        best_epoch=best_epoch(state["history"]),
        parameters=int(network.count_params()), thresholds=thresholds,
        train_images=len(fit_rows), validation_images=len(val_rows), test_images=len(test_split),
    )
    info = model_info(train_split, params.size, thresholds, f"scratch-{params.describe()}-{run_dir.name}",
                      dog_output=None, architecture=params.describe(), flip_tta=params.flip_tta)
    milliseconds = save_model(model, info, run_dir, log)
    metrics["timings"] = {
        "training_seconds": state["seconds"],
        "image_cache_seconds": round(cache_seconds, 1),
        # A resumed run trained in several sittings: all of their training, this sitting's caching and evaluation.
        "total_seconds": round(state["seconds"] + cache_seconds + time.perf_counter() - trained, 1),
        "inference_ms_per_image": milliseconds,
    }
    augmentation = params.augmentation
    config = {
        "approach": "scratch", "data": str(data), "breeds": train_split.breeds,
        "augmentation": "+".join(k for k, v in asdict(augmentation).items() if v) if augmentation.enabled else "off",
        "params": params.to_dict(), "init_from": str(init_from) if init_from else None, **(extra_config or {}),
    }
    run_record.write_run(run_dir, config, metrics, state["history"], log=log)
    log(f"test top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} after {state['epoch']} epochs "
        f"({stopped}); {metrics['timings']['inference_ms_per_image']} ms per image")
    return metrics
