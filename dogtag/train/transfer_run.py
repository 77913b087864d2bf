"""One transfer-learning run from cached features to a saved, evaluated Keras model.

Everything the run is made of comes in one TransferConfig (train/transfer_config.py). The run
folder receives model.keras and model_info.json (what `dogtag export` reads), the record written
by train.run_record.write_run (and its MLflow run, where MLflow is installed), the no-training
baseline measured on the same cache, and the predictions that ensembles and distillation read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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
from dogtag.train.transfer_config import TRAIN_VIEWS, TransferConfig
from dogtag.train.wild import DEFAULT_WILD, WILD_SPLITS, read_wild, wild_metrics

# What a model says of some rows of one cached look (a view of the photos): (look, rows) -> scores.
Scorer = Callable[..., np.ndarray]


@dataclass(frozen=True)
class CachedFeatures:
    """A run's cached features, checked against its splits and restricted to its breeds.

    A look is what the model sees of each photo: the photo (plain), or also its mirror (flip TTA).
    """

    train_split: Dataset
    test_split: Dataset
    train_views: list[dict]  # every training photo, once per training view
    tests: list[dict]  # the test photos, once per look
    fit_rows: np.ndarray
    val_rows: np.ndarray
    val_looks: list[dict]  # the training views the validation photos are read from, once per look
    teacher: np.ndarray | None  # with distillation: the teacher's probabilities of every training photo

    @property
    def plain(self) -> dict:
        return self.val_looks[0]

    @property
    def val_labels(self) -> np.ndarray:
        return self.plain["labels"][self.val_rows]

    def stacked(self, part: str) -> np.ndarray:
        """`part` of the fitting rows of every training view, one after the other."""
        return np.concatenate([view[part][self.fit_rows] for view in self.train_views])

    def targets(self, rows: np.ndarray, config: TransferConfig) -> np.ndarray:
        """Training targets of `rows` in every view: one-hot labels, or mixed with the teacher's."""
        classes = len(self.train_split.breeds)
        return np.concatenate([transfer.training_targets(view["labels"][rows], classes, config,
                                                         None if self.teacher is None else self.teacher[rows])
                               for view in self.train_views])


def _view_dir(config: TransferConfig, split: str, view: str) -> Path:
    box_crop, cached_view = TRAIN_VIEWS[view]
    preprocessing = Preprocessing(size=config.size, box_crop=box_crop, equalize=config.equalize)
    return cache_dir(config.cache, config.backbone, preprocessing, split, cached_view, config.split_layer)


def _load_looks(config: TransferConfig, split: str) -> list[dict]:
    """The cached looks of an evaluation split: plain, and flip with flip TTA."""
    parts = ("split", "pooled", "labels") if config.fine_tune_epochs > 0 else ("pooled", "labels")
    return [load_features(_view_dir(config, split, look), parts)
            for look in (("plain", "flip") if config.flip_tta else ("plain",))]


def load_cached(config: TransferConfig) -> CachedFeatures:
    """Read the run's cached features (refusing a cache made from other photos) and split off validation."""
    train_split, test_split = load_split(config.data, "train"), load_split(config.data, "test")
    teacher = read_teacher(config.distill_from, train_split) if config.distill_from else None  # before any work
    parts = ("split", "pooled", "labels") if config.fine_tune_epochs > 0 else ("pooled", "labels")
    train_views = [load_features(_view_dir(config, "train", view), parts) for view in config.views]
    tests = _load_looks(config, "test")
    for view, cached in zip(config.views, train_views, strict=True):
        if len(cached["labels"]) != len(train_split) or not np.array_equal(
                cached["labels"], [s.label for s in train_split.samples]):
            raise ValueError(f"cached view {view} does not match the train split; re-run `dogtag train cache`")
    if config.breeds:
        train_split, train_views = restrict_to_breeds(train_split, train_views, list(config.breeds))
        test_split, tests = restrict_to_breeds(test_split, tests, list(config.breeds))
    fit_rows, val_rows = stratified_indices([s.label for s in train_split.samples], config.validation_fraction,
                                            config.seed)
    plain = train_views[config.views.index("plain")] if "plain" in config.views else train_views[0]
    val_looks = [plain] + ([train_views[config.views.index("flip")]] if config.flip_tta else [])
    return CachedFeatures(train_split, test_split, train_views, tests, np.asarray(fit_rows), np.asarray(val_rows),
                          val_looks, teacher)


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


def per_look(score: Scorer, looks: list[dict], rows=slice(None)) -> np.ndarray:
    """What `score` says of `rows` in each look, stacked (looks first)."""
    return np.stack([score(look, rows) for look in looks])


def run_transfer(run_dir: Path, config: TransferConfig, log=print) -> dict:
    """Train phase 1 (and phase 2 when config.fine_tune_epochs > 0), evaluate on the test split, save.

    The model's breed probabilities are blended with the ImageNet classifier's (weight chosen on
    validation), and its thresholds tuned on validation. With config.refit (head-only runs) the
    head is trained again on all training images for the epochs chosen on validation. With
    config.flip_tta, validation and test photos are seen as they are and mirrored. When
    dogs-in-the-wild features are cached (splits wild and wild96), the model is measured on them
    too (metrics "wild", "wild96"). Returns the metrics written to metrics.json.
    """
    run_dir, began = Path(run_dir), time.perf_counter()
    cached = load_cached(config)
    breeds, classes = cached.train_split.breeds, len(cached.train_split.breeds)
    kernel, bias = transfer.imagenet_classifier(config.backbone, config.size, config.weights)

    def imagenet(look: dict, rows=slice(None)) -> np.ndarray:
        return transfer.imagenet_breed_logits(look["pooled"][rows], kernel, bias, cached.train_split.wnids)

    def dog(look: dict, rows=slice(None)) -> np.ndarray:
        return transfer.dog_probability(look["pooled"][rows], kernel, bias)

    test_imagenet = per_look(imagenet, cached.tests)
    val_imagenet = per_look(imagenet, cached.val_looks, cached.val_rows)
    baseline = evaluate(transfer.softmax(test_imagenet[0]), cached.tests[0]["labels"], breeds)
    log(f"no-training baseline (ImageNet classifier restricted to the breeds): top-1 {baseline['top1']:.4f}")
    head, model, history, timings = train_phases(cached, config, run_dir, began, log)
    val_probabilities = per_look(predictor(head, model), cached.val_looks, cached.val_rows)
    weight = transfer.choose_blend_weight(val_probabilities, val_imagenet, cached.val_labels)
    refitted = config.refit and model is None
    if refitted:
        every_row = np.arange(len(cached.train_split))
        head = transfer.refit_head(np.concatenate([view["pooled"] for view in cached.train_views]),
                                   cached.targets(every_row, config), classes,
                                   int(np.argmax(history["head_val_accuracy"])) + 1, config, log)
    score = predictor(head, model)
    test_probabilities = per_look(score, cached.tests)
    blended_test = transfer.blend(test_probabilities, test_imagenet, weight)
    blended_val = transfer.blend(val_probabilities, val_imagenet, weight)
    thresholds = tune_thresholds(blended_val, cached.val_labels,
                                 per_look(dog, cached.val_looks, cached.val_rows).mean(axis=0))
    metrics = evaluate(blended_test, cached.tests[0]["labels"], breeds)
    # What the model says of each evaluation photo, kept so that runs can be ensembled (train/ensemble.py).
    predictions = {"test": blended_test, "test_labels": cached.tests[0]["labels"]}
    if not config.breeds:
        measured, wild_predictions = measure_wild_splits(config, cached, score, imagenet, dog, weight, thresholds,
                                                         log)
        metrics |= measured
        predictions |= wild_predictions
    if config.save_model:
        save_predictions(run_dir, cached, score, imagenet, weight, predictions)
    unblended = evaluate(test_probabilities.mean(axis=0), cached.tests[0]["labels"], breeds)
    metrics.update(
        approach=f"transfer {config.backbone}"
        + (f" fine-tuned above {split_layer_of(config.backbone, config.split_layer)}" if model is not None
           else " head only")
        + (" + flip TTA" if config.flip_tta else ""),
        distilled_from=str(config.distill_from) if config.distill_from else None,
        views=list(config.views), equalize=config.equalize, flip_tta=config.flip_tta, blend_weight=weight,
        refit_on_all_training_images=refitted, top1_without_blend=unblended["top1"],
        validation_top1=round(float(np.mean(blended_val.argmax(1) == cached.val_labels)), 4),
        baseline_top1=baseline["top1"], baseline_top5=baseline["top5"], thresholds=thresholds,
        train_images=len(cached.train_split) if refitted else len(cached.fit_rows),
        validation_images=len(cached.val_rows), test_images=len(cached.test_split),
        timings={**timings, "total_seconds": round(time.perf_counter() - began, 1)},
    )
    log(f"test top-1 {metrics['top1']:.4f} (head alone {unblended['top1']:.4f}, blend weight {weight})")
    if config.save_model:
        fine_tuned_top = model.get_layer("fine_tuned_top") if model is not None else None
        metrics["timings"]["inference_ms_per_image"] = save_shipped_model(
            model or head, fine_tuned_top, cached.train_split, weight, thresholds, config, run_dir, log)
    write_run(run_dir, config.record(), metrics, history, log=log)
    return metrics


def train_phases(cached: CachedFeatures, config: TransferConfig, run_dir: Path, began: float, log=print):
    """Phase 1 (the head), then phase 2 (fine-tuning) when asked: (head, fine-tuned model or None,
    history, timings)."""
    classes = len(cached.train_split.breeds)
    targets = cached.targets(cached.fit_rows, config)
    head, history = transfer.train_head(cached.stacked("pooled"), targets, cached.plain["pooled"][cached.val_rows],
                                        cached.val_labels, classes, config, log)
    timings = {"head_seconds": round(time.perf_counter() - began, 1)}
    model = None
    if config.fine_tune_epochs > 0:
        started = time.perf_counter()
        model, fine_history = transfer.fine_tune(
            cached.stacked("split"), targets, cached.plain["split"][cached.val_rows], cached.val_labels,
            head, classes, config, run_dir / "checkpoints", log)
        history.update(fine_history)
        timings["fine_tune_seconds"] = round(time.perf_counter() - started, 1)
    return head, model, history, timings


def predictor(head, model) -> Scorer:
    """Breed probabilities of cached rows: the fine-tuned model reads the split layer's activations,
    the head alone the pooled features."""
    if model is not None:
        return lambda look, rows=slice(None): model.predict(look["split"][rows], batch_size=128, verbose=0)
    return lambda look, rows=slice(None): head.predict(look["pooled"][rows].astype("float32"), verbose=0)


def measure_wild_splits(config: TransferConfig, cached: CachedFeatures, score: Scorer, imagenet: Scorer,
                        dog: Scorer, weight: float, thresholds: dict, log=print) -> tuple[dict, dict]:
    """The model on every dogs-in-the-wild split whose features are cached: (metrics, predictions) by split."""
    metrics, predictions = {}, {}
    for split in WILD_SPLITS:
        try:
            looks = _load_looks(config, split)
        except FileNotFoundError:
            log(f"no cached {split} features: not measured on dogs-in-the-wild "
                f"(run `dogtag train cache --split {split}` with the same backbone and views)")
            continue
        sources = read_wild(config.wild or DEFAULT_WILD, cached.train_split.breeds, cached.train_split.wnids).sources
        metrics[split], predictions[split], predictions[f"{split}_dog"] = measure_wild(
            looks, score, imagenet, dog, weight, thresholds, sources)
        predictions[f"{split}_labels"] = looks[0]["labels"]
        log(f"{split}: top-1 {metrics[split]['top1']:.4f} (no-training baseline {metrics[split]['baseline_top1']:.4f}), "
            f"not-dogs called dog {metrics[split]['not_dogs_called_dog']}, dogs rejected {metrics[split]['dogs_rejected']}")
    return metrics, predictions


def save_predictions(run_dir: Path, cached: CachedFeatures, score: Scorer, imagenet: Scorer, weight: float,
                     predictions: dict) -> None:
    """What the model says of every training photo (train_predictions.npz, for distillation into another
    model) and of the evaluation photos (predictions.npz, for ensembles)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    every = np.arange(len(cached.train_split))
    looks = cached.val_looks  # the photo, and its mirror with flip TTA
    np.savez_compressed(run_dir / "train_predictions.npz", labels=cached.plain["labels"], probabilities=transfer.blend(
        per_look(score, looks, every), per_look(imagenet, looks, every), weight).astype("float16"))
    np.savez_compressed(run_dir / "predictions.npz", **{k: np.asarray(v) for k, v in predictions.items()})


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


def save_shipped_model(head, fine_tuned_top, dataset: Dataset, weight: float, thresholds: dict,
                       config: TransferConfig, run_dir: Path, log=print) -> float:
    """Assemble the one-pass model, save it with its model info; returns its ms per image on this CPU."""
    shipped = transfer.assemble(head, dataset.wnids, weight, config, fine_tuned_top)
    info = model_info(dataset, config.size, thresholds, f"{config.backbone}-{config.size}-{run_dir.name}",
                      dog_output="dog", backbone=config.backbone, flip_tta=config.flip_tta)
    return save_model(shipped, info, run_dir, log)
