"""One transfer-learning run from cached features to a saved, evaluated Keras model.

The run folder receives model.keras and model_info.json (what `dogtag export` reads), the record
written by train.run_record.write_run (and its MLflow run, where MLflow is installed), and the
no-training baseline measured on the same cache.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dogtag.edge_app.thresholds import tune_thresholds
from dogtag.train import transfer
from dogtag.train.backbones import split_layer_of
from dogtag.train.dataset import Dataset, load_split, select_breeds, stratified_indices
from dogtag.train.evaluate import evaluate
from dogtag.train.features import cache_dir, load_features
from dogtag.train.preprocess import Preprocessing
from dogtag.train.run_record import write_run
from dogtag.train.saving import model_info, save_model
from dogtag.train.wild import DEFAULT_WILD, WILD_SPLITS, read_wild, wild_metrics

# Training views: name -> (uses the box-cropped cache, cached view name).
TRAIN_VIEWS = {
    "plain": (False, "plain"),
    "flip": (False, "flip"),
    "box": (True, "plain"),
    "box-flip": (True, "flip"),
    "aug1": (False, "aug1"),
    "aug2": (False, "aug2"),
    "thumb96": (False, "thumb96"),
}


def _view_dir(cache: Path, config: transfer.TransferConfig, equalize: bool, split: str, view: str) -> Path:
    box_crop, cached_view = TRAIN_VIEWS[view]
    preprocessing = Preprocessing(size=config.size, box_crop=box_crop, equalize=equalize)
    return cache_dir(cache, config.backbone, preprocessing, split, cached_view, config.split_layer)


def restrict_to_breeds(split: Dataset, cached: list[dict], names: list[str]) -> tuple[Dataset, list[dict]]:
    """The samples and cached rows of some breeds only, relabelled 0..n-1 in the split's order."""
    chosen = select_breeds(split, breeds=names)
    old_labels = [split.breeds.index(name) for name in chosen.breeds]
    rows = [i for i, sample in enumerate(split.samples) if sample.label in old_labels]
    new_label = np.zeros(len(split.breeds), dtype="int32")
    new_label[old_labels] = np.arange(len(old_labels))
    views = [{name: values[rows] for name, values in view.items()} | {"labels": new_label[view["labels"][rows]]}
             for view in cached]
    return chosen, views


def run_transfer(
    data: Path, cache: Path, run_dir: Path, config: transfer.TransferConfig,
    views: tuple[str, ...] = ("plain", "flip"), equalize: bool = False, save_model: bool = True,
    refit: bool = False, breeds: list[str] | None = None, wild_root: Path | None = None,
    distill_from: Path | None = None, log=print,
) -> dict:
    """Train phase 1 (and phase 2 when config.fine_tune_epochs > 0), evaluate on the test split.

    With `refit` (head-only runs), the head is trained again on all training images, validation
    included, for the epoch count and with the blend weight and thresholds chosen on validation.
    `breeds` (names) restricts the whole run to those breeds, read from the same cache.
    With config.flip_tta, validation and test photos are seen twice, as they are and mirrored
    (cached "flip" views), as the shipped model then does.
    When dogs-in-the-wild features are cached (splits wild and wild96), the model is measured on
    them too (metrics "wild", "wild96"), beside the no-training baseline. With `distill_from` (a
    finished run folder), the head learns from that teacher's probabilities on the training photos
    (train_predictions.npz) mixed with the true labels (config.distill_weight).
    """
    if distill_from and breeds:
        raise ValueError("distillation needs the teacher's breeds: train on all breeds (no --breeds) to distil")
    if config.flip_tta and "flip" not in views:
        raise ValueError("flip test-time augmentation needs the flip view among the training views (--view flip)")
    began = time.perf_counter()
    train_split = load_split(data, "train")
    test_split = load_split(data, "test")
    teacher = read_teacher(distill_from, train_split) if distill_from else None  # refused before any work
    parts = ("split", "pooled", "labels") if config.fine_tune_epochs > 0 else ("pooled", "labels")
    train_views = [load_features(_view_dir(cache, config, equalize, "train", v), parts) for v in views]
    test_looks = ("plain", "flip") if config.flip_tta else ("plain",)
    tests = [load_features(_view_dir(cache, config, equalize, "test", look), parts) for look in test_looks]
    for view, cached in zip(views, train_views, strict=True):
        if len(cached["labels"]) != len(train_split) or not np.array_equal(
                cached["labels"], [s.label for s in train_split.samples]):
            raise ValueError(f"cached view {view} does not match the train split; re-run `dogtag train cache`")
    if breeds:
        train_split, train_views = restrict_to_breeds(train_split, train_views, breeds)
        test_split, tests = restrict_to_breeds(test_split, tests, breeds)
    test = tests[0]
    classes, wnids = len(train_split.breeds), train_split.wnids
    fit_rows, val_rows = stratified_indices([s.label for s in train_split.samples], config.validation_fraction,
                                            config.seed)
    plain = train_views[views.index("plain")] if "plain" in views else train_views[0]
    # What the model sees of each validation and test photo: one look, or the photo and its mirror.
    val_looks = [plain] + ([train_views[views.index("flip")]] if config.flip_tta else [])

    def stacked(name: str) -> np.ndarray:
        return np.concatenate([v[name][fit_rows] for v in train_views])

    def per_look(predict, looks, rows=slice(None)) -> np.ndarray:
        return np.stack([predict(look, rows) for look in looks])

    kernel, bias = transfer.imagenet_classifier(config.backbone, config.size, config.weights)

    def imagenet_logits(look, rows):
        return transfer.imagenet_breed_logits(look["pooled"][rows], kernel, bias, wnids)

    test_imagenet = per_look(imagenet_logits, tests)
    val_imagenet = per_look(imagenet_logits, val_looks, val_rows)
    baseline = evaluate(transfer.softmax(test_imagenet[0]), test["labels"], train_split.breeds)
    log(f"no-training baseline (ImageNet classifier restricted to the breeds): top-1 {baseline['top1']:.4f}")

    def targets(rows) -> np.ndarray:
        """Training targets of `rows` in every view: one-hot labels, or mixed with the teacher's."""
        return np.concatenate([transfer.training_targets(v["labels"][rows], classes, config,
                                                         None if teacher is None else teacher[rows])
                               for v in train_views])

    head, history = transfer.train_head(stacked("pooled"), targets(fit_rows), plain["pooled"][val_rows],
                                        plain["labels"][val_rows], classes, config, log)
    timings = {"head_seconds": round(time.perf_counter() - began, 1)}
    model = None
    if config.fine_tune_epochs > 0:
        started = time.perf_counter()
        model, fine_history = transfer.fine_tune(
            stacked("split"), targets(fit_rows), plain["split"][val_rows], plain["labels"][val_rows],
            head, classes, config, run_dir / "checkpoints", log)
        history.update(fine_history)
        timings["fine_tune_seconds"] = round(time.perf_counter() - started, 1)

        def probabilities(look, rows):
            return model.predict(look["split"][rows], batch_size=128, verbose=0)
    else:
        def probabilities(look, rows):
            return head.predict(look["pooled"][rows].astype("float32"), verbose=0)

    val_probabilities = per_look(probabilities, val_looks, val_rows)
    test_probabilities = per_look(probabilities, tests)
    weight = transfer.choose_blend_weight(val_probabilities, val_imagenet, plain["labels"][val_rows])
    refitted = refit and model is None
    if refitted:
        epochs = int(np.argmax(history["head_val_accuracy"])) + 1
        every_row = np.arange(len(train_split))
        head = transfer.refit_head(np.concatenate([v["pooled"][every_row] for v in train_views]),
                                   targets(every_row), classes, epochs, config, log)
        test_probabilities = per_look(probabilities, tests)
    blended_test = transfer.blend(test_probabilities, test_imagenet, weight)
    blended_val = transfer.blend(val_probabilities, val_imagenet, weight)
    val_dog = per_look(lambda look, rows: transfer.dog_probability(look["pooled"][rows], kernel, bias),
                       val_looks, val_rows).mean(axis=0)
    thresholds = tune_thresholds(blended_val, plain["labels"][val_rows], val_dog)
    metrics = evaluate(blended_test, test["labels"], train_split.breeds)
    # What the model says of each evaluation photo, kept so that runs can be ensembled (train/ensemble.py).
    predictions = {"test": blended_test, "test_labels": test["labels"]}
    if not breeds:
        for split in WILD_SPLITS:
            try:
                looks = [load_features(_view_dir(cache, config, equalize, split, look), parts) for look in test_looks]
            except FileNotFoundError:
                log(f"no cached {split} features: not measured on dogs-in-the-wild "
                    f"(run `dogtag train cache --split {split}` with the same backbone and views)")
                continue
            metrics[split], predictions[split], predictions[f"{split}_dog"] = measure_wild(
                looks, probabilities, imagenet_logits, lambda look: transfer.dog_probability(look["pooled"], kernel, bias),
                weight, thresholds, read_wild(wild_root or DEFAULT_WILD, train_split.breeds, wnids).sources)
            predictions[f"{split}_labels"] = looks[0]["labels"]
            log(f"{split}: top-1 {metrics[split]['top1']:.4f} (no-training baseline {metrics[split]['baseline_top1']:.4f}), "
                f"not-dogs called dog {metrics[split]['not_dogs_called_dog']}, dogs rejected {metrics[split]['dogs_rejected']}")
    if save_model:  # the teacher's view of the training photos, for distillation into another model
        run_dir.mkdir(parents=True, exist_ok=True)
        every = np.arange(len(train_split))
        train_looks = val_looks  # the photo, and its mirror with flip TTA
        np.savez_compressed(run_dir / "train_predictions.npz", labels=plain["labels"], probabilities=transfer.blend(
            per_look(probabilities, train_looks, every), per_look(imagenet_logits, train_looks, every), weight
        ).astype("float16"))
        np.savez_compressed(run_dir / "predictions.npz", **{k: np.asarray(v) for k, v in predictions.items()})
    unblended = evaluate(test_probabilities.mean(axis=0), test["labels"], train_split.breeds)
    metrics.update(
        approach=f"transfer {config.backbone}"
        + (f" fine-tuned above {split_layer_of(config.backbone, config.split_layer)}" if model is not None
           else " head only")
        + (" + flip TTA" if config.flip_tta else ""),
        distilled_from=str(distill_from) if distill_from else None,
        views=list(views), equalize=equalize, flip_tta=config.flip_tta, blend_weight=weight, refit_on_all_training_images=refitted,
        top1_without_blend=unblended["top1"], validation_top1=round(float(
            np.mean(blended_val.argmax(1) == plain["labels"][val_rows])), 4),
        baseline_top1=baseline["top1"], baseline_top5=baseline["top5"], thresholds=thresholds,
        train_images=len(train_split) if refitted else len(fit_rows), validation_images=len(val_rows),
        test_images=len(test_split),
        timings={**timings, "total_seconds": round(time.perf_counter() - began, 1)},
    )
    log(f"test top-1 {metrics['top1']:.4f} (head alone {unblended['top1']:.4f}, blend weight {weight})")
    if save_model:
        fine_tuned_top = model.get_layer("fine_tuned_top") if model is not None else None
        metrics["timings"]["inference_ms_per_image"] = save_shipped_model(
            model or head, fine_tuned_top, train_split, weight, thresholds, config, run_dir, log)
    write_run(run_dir, {**asdict(config), "views": list(views), "equalize": equalize, "data": str(data),
                        "breeds": breeds or "all"},
              metrics, history, log=log)
    return metrics


def read_teacher(run_dir: Path, split: Dataset) -> np.ndarray:
    """A finished run's probabilities of every training photo, checked against this split's labels."""
    path = Path(run_dir) / "train_predictions.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no teacher predictions; train the teacher run (with --save-model) first")
    saved = np.load(path)
    if not np.array_equal(saved["labels"], [s.label for s in split.samples]):
        raise ValueError(f"{path}: the teacher was trained on other photos or another breed order")
    return saved["probabilities"].astype("float32")


def measure_wild(looks: list[dict], probabilities, imagenet_logits, dog_probability, weight: float,
                 thresholds: dict, sources: list[str]) -> tuple[dict, np.ndarray, np.ndarray]:
    """dogs-in-the-wild metrics of the blended model and of the no-training baseline, from cached looks;
    with the breed and dog probabilities they come from."""
    labels = looks[0]["labels"]
    if len(labels) != len(sources):
        raise ValueError("cached dogs-in-the-wild features do not match labels.csv; re-run `dogtag train cache`")
    every = np.arange(len(labels))
    logits = np.stack([imagenet_logits(look, every) for look in looks])
    breed_probabilities = transfer.blend(np.stack([probabilities(look, every) for look in looks]), logits, weight)
    dog = np.mean([dog_probability(look) for look in looks], axis=0)
    scores = wild_metrics(breed_probabilities, dog, labels, sources, thresholds["min_confidence"], thresholds["min_dog"])
    baseline = wild_metrics(transfer.softmax(logits[0]), dog, labels, sources, 0.0, thresholds["min_dog"])
    return scores | {"baseline_top1": baseline["top1"], "baseline_top5": baseline["top5"]}, breed_probabilities, dog


def save_shipped_model(head, fine_tuned_top, dataset, weight: float, thresholds: dict, config, run_dir: Path,
                       log) -> float:
    """Assemble the one-pass model, save it with its model info; returns its ms per image on this CPU."""
    shipped = transfer.assemble(head, dataset.wnids, weight, config, fine_tuned_top)
    info = model_info(dataset, config.size, thresholds, f"{config.backbone}-{config.size}-{run_dir.name}",
                      dog_output="dog", backbone=config.backbone, flip_tta=config.flip_tta)
    return save_model(shipped, info, run_dir, log)
