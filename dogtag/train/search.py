"""A hyperparameter search for the scratch CNN with KerasTuner, then the best configuration trained fully.

Random search over the SearchSpace below on a reduced budget (the chosen breeds, a few epochs per
trial, each trial with its own cosine schedule so that short trials are ranked fairly). Every
trial is appended to trials.jsonl as it finishes; trials.json and trials.md (a table, best first)
are written at the end. The tuner's own state lives in tuner/, so an interrupted search resumes
with the trials it has not run yet. The best configuration goes to best_params.json and, unless
asked not to, is trained fully into best/ by train.scratch.run_scratch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from dogtag.train.batches import evaluation_batches, steps_per_epoch, training_batches
from dogtag.train.dataset import stratified_indices
from dogtag.train.image_cache import DEFAULT_CACHE, cached_images
from dogtag.train.scratch import load_breeds, run_scratch
from dogtag.train.scratch_network import build_model, compile_model
from dogtag.train.scratch_params import BLOCK_TYPES, OPTIMIZERS, ScratchParams


@dataclass(frozen=True)
class SearchSpace:
    """The choices each trial draws from. filters of stage i = min(base_filters * 2**i, 512)."""

    sizes: tuple[int, ...] = (96, 128)
    blocks: tuple[str, ...] = BLOCK_TYPES
    base_filters: tuple[int, ...] = (24, 32, 48)
    stages: tuple[int, ...] = (3, 4)
    depths: tuple[int, ...] = (1, 2)
    dense_units: tuple[int, ...] = (0, 128, 256)
    dropout: tuple[float, float] = (0.0, 0.5)  # min, max in steps of 0.1
    optimizers: tuple[str, ...] = OPTIMIZERS
    adaptive_learning_rate: tuple[float, float] = (3e-4, 3e-3)  # Adam and AdamW, log-uniform
    sgd_learning_rate: tuple[float, float] = (1e-2, 1e-1)  # SGD with Nesterov momentum, log-uniform

    def describe(self) -> dict:
        return asdict(self)


def params_from(hp: keras_tuner.HyperParameters, space: SearchSpace, base: ScratchParams) -> ScratchParams:
    """Draw (or read back) one configuration; hyperparameters not searched keep `base`'s values."""
    optimizer = hp.Choice("optimizer", list(space.optimizers))
    # Both rates are registered on every draw (the inactive one reads None), so each is sampled at random.
    with hp.conditional_scope("optimizer", [o for o in space.optimizers if o != "sgd"]):
        adaptive = hp.Float("adaptive_learning_rate", *space.adaptive_learning_rate, sampling="log")
    with hp.conditional_scope("optimizer", ["sgd"]):
        sgd = hp.Float("sgd_learning_rate", *space.sgd_learning_rate, sampling="log")
    base_filters = hp.Choice("base_filters", list(space.base_filters))
    stages = hp.Choice("stages", list(space.stages))
    return replace(
        base,
        size=hp.Choice("size", list(space.sizes)),
        block=hp.Choice("block", list(space.blocks)),
        filters=tuple(min(base_filters * 2**i, 512) for i in range(stages)),
        depth=hp.Choice("depth", list(space.depths)),
        dense_units=hp.Choice("dense_units", list(space.dense_units)),
        dropout=hp.Float("dropout", *space.dropout, step=0.1),
        optimizer=optimizer,
        learning_rate=sgd if optimizer == "sgd" else adaptive,
    )


class ScratchHyperModel(keras_tuner.HyperModel):
    """Builds and fits one trial's model on the cached images of the trial's input size."""

    def __init__(self, space: SearchSpace, base: ScratchParams, classes: int, data_of_size):
        super().__init__(name="scratch_cnn")
        self.space, self.base, self.classes, self.data_of_size = space, base, classes, data_of_size

    def build(self, hp):
        params = params_from(hp, self.space, self.base)
        keras.utils.set_random_seed(params.seed)
        images = self.data_of_size(params.size)[0]
        model = build_model(params, self.classes)
        compile_model(model, params, steps_per_epoch(len(images), params.batch_size))
        return model

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        params = params_from(hp, self.space, self.base)
        images, labels, val_images, val_labels = self.data_of_size(params.size)
        return model.fit(
            training_batches(images, labels, self.classes, params.batch_size, params.augmentation, params.seed,
                             mixup=params.mixup, cutmix=params.cutmix),
            validation_data=evaluation_batches(val_images, val_labels, self.classes, 128),
            epochs=params.epochs, callbacks=callbacks, shuffle=False, verbose=0,
        )


class LoggedRandomSearch(keras_tuner.RandomSearch):
    """RandomSearch that appends each finished trial (values, score, epochs, seconds) to a JSONL file."""

    def __init__(self, *args, trial_log: Path, log=print, **kwargs):
        super().__init__(*args, **kwargs)
        self.trial_log, self.log = Path(trial_log), log

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        # KerasTuner imports tensorboard here even when no TensorBoard callback is given, and
        # tensorflow-cpu does not install it; this search never passes one, so nothing is to be done.
        return None

    def run_trial(self, trial, *args, **kwargs):
        began = time.perf_counter()
        histories = super().run_trial(trial, *args, **kwargs)
        history = histories[0].history if isinstance(histories, list) else histories.history
        accuracy = history.get("val_accuracy", [0.0])
        best = int(np.argmax(accuracy))
        params = params_from(trial.hyperparameters, self.hypermodel.space, self.hypermodel.base)
        record = {
            "trial": trial.trial_id, "val_top1": round(float(accuracy[best]), 4), "best_epoch": best + 1,
            "epochs": len(accuracy), "train_top1": round(float(history.get("accuracy", [0.0])[best]), 4),
            "seconds": round(time.perf_counter() - began, 1),
            "parameters": int(build_model(params, self.hypermodel.classes).count_params()),
            "architecture": params.describe(), "values": dict(trial.hyperparameters.values),
        }
        with self.trial_log.open("a") as file:
            file.write(json.dumps(record) + "\n")
        self.log(f"trial {record['trial']}: val top-1 {record['val_top1']:.4f} ({record['architecture']}, "
                 f"{params.optimizer} lr {params.learning_rate:.2g}, dropout {params.dropout:.1f}, "
                 f"{record['seconds']:.0f}s)")
        return histories


def read_trials(trial_log: Path) -> list[dict]:
    """The logged trials, best first (the last record of a trial wins if it was run twice)."""
    if not Path(trial_log).exists():
        return []
    records = {}
    for line in Path(trial_log).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["trial"]] = record
    # Ties keep trial order, as KerasTuner's choice of the best trial does.
    return sorted(records.values(), key=lambda r: (-r["val_top1"], r["trial"]))


def trials_table(trials: list[dict], chosen: str | None = None) -> str:
    """The trials as a markdown table, best first; the `chosen` trial is marked."""
    lines = ["| trial | val top-1 | best epoch / epochs | architecture | optimizer | learning rate | dropout "
             "| parameters | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for t in trials:
        values = t["values"]
        rate = values.get("adaptive_learning_rate", values.get("sgd_learning_rate", 0.0))
        mark = " (chosen)" if t["trial"] == chosen else ""
        lines.append(f"| {t['trial']}{mark} | {100 * t['val_top1']:.1f}% | {t['best_epoch']} / {t['epochs']} "
                     f"| {t['architecture']} | {values['optimizer']} | {rate:.2g} | {values['dropout']:.1f} "
                     f"| {t['parameters']:,} | {t['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def run_search(
    data: Path, run_dir: Path, breeds: list[str] | None = None, breed_count: int | None = None,
    trials: int = 10, search_epochs: int = 12, final_epochs: int | None = 60, space: SearchSpace | None = None,
    base: ScratchParams | None = None, cache_root: Path = DEFAULT_CACHE, log=print,
) -> dict:
    """Search, log every trial, write best_params.json and (final_epochs > 0) train the best into best/.

    Returns {"best_params": ..., "trials": [...], "best_run": metrics of best/ or None}.
    """
    space = space or SearchSpace()
    base = replace(base or ScratchParams(), epochs=search_epochs)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_split, _ = load_breeds(data, breeds, breed_count)
    labels = np.array([s.label for s in train_split.samples], dtype="int32")
    fit_rows, val_rows = stratified_indices(labels.tolist(), base.validation_fraction, base.seed)
    by_size: dict[int, tuple] = {}

    def data_of_size(size: int) -> tuple:
        if size not in by_size:
            images = cached_images(train_split, size, cache_root, "train", log)
            by_size[size] = (images[fit_rows], labels[fit_rows], images[val_rows], labels[val_rows])
        return by_size[size]

    classes = len(train_split.breeds)
    (run_dir / "search.json").write_text(json.dumps({
        "data": str(data), "breeds": train_split.breeds, "trials": trials, "search_epochs": search_epochs,
        "train_images": len(fit_rows), "validation_images": len(val_rows), "space": space.describe(),
        "base": base.to_dict(),
    }, indent=2))
    log(f"searching {trials} trials of {search_epochs} epochs on {classes} breeds "
        f"({len(fit_rows)} training, {len(val_rows)} validation images)")
    tuner = LoggedRandomSearch(
        ScratchHyperModel(space, base, classes, data_of_size), objective="val_accuracy", max_trials=trials,
        seed=base.seed, directory=str(run_dir), project_name="tuner", overwrite=False,
        trial_log=run_dir / "trials.jsonl", log=log,
    )
    began = time.perf_counter()
    tuner.search()
    logged = read_trials(run_dir / "trials.jsonl")
    best_trial = tuner.oracle.get_best_trials(1)[0]
    (run_dir / "trials.json").write_text(json.dumps(logged, indent=2))
    (run_dir / "trials.md").write_text(trials_table(logged, best_trial.trial_id))
    best_hp = best_trial.hyperparameters
    best = replace(params_from(best_hp, space, base), epochs=final_epochs or base.epochs,
                   patience=max(base.patience, (final_epochs or 0) // 4))
    (run_dir / "best_params.json").write_text(json.dumps(best.to_dict(), indent=2))
    log(f"search done in {time.perf_counter() - began:.0f}s; best {best.describe()} "
        f"({best.optimizer} lr {best.learning_rate:.2g}, dropout {best.dropout:.1f}): {run_dir / 'best_params.json'}")
    result = {"best_params": best.to_dict(), "trials": logged, "best_run": None}
    if final_epochs:
        result["best_run"] = run_scratch(
            data, run_dir / "best", best, breeds, breed_count, cache_root,
            extra_config={"search": str(run_dir), "search_trials": len(logged)}, log=log)
    return result
