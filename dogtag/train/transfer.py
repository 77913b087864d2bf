"""Transfer learning on an ImageNet backbone, fed from cached features.

Phase 1 trains a new softmax head on the frozen backbone's pooled features. Phase 2 fine-tunes the
top of the backbone (the layers after its split layer) with a low learning rate, batch-norm layers
kept in inference mode, starting from the phase-1 head. Both phases read cached activations
(train/features.py), so the frozen part is computed once, not every epoch.

The shipped model keeps the untouched ImageNet classifier beside the fine-tuned branch: its
logits of the breeds are blended into the breed prediction (weight chosen on validation data) and
its dog classes give the probability that a photo shows a dog at all.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from dogtag.train.backbones import (
    IMAGENET_DOG_CLASSES,
    backbone_spec,
    build_backbone,
    imagenet_indices_of,
    pixel_scaling_layer,
    split_layer_of,
    top_above,
)
from dogtag.train.devices import distribution_strategy, training_precision
from dogtag.train.layers import MirrorImage
from dogtag.train.transfer_config import TransferConfig


def training_targets(labels: np.ndarray, classes: int, config: TransferConfig,
                     teacher: np.ndarray | None = None) -> np.ndarray:
    """One-hot targets, or (knowledge distillation) mixed with a teacher's probabilities."""
    one_hot = keras.utils.to_categorical(labels, classes).astype("float32")
    if teacher is None:
        return one_hot
    return (1 - config.distill_weight) * one_hot + config.distill_weight * teacher


def imagenet_classifier(backbone: str, size: int, weights: str | None = "imagenet") -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of the backbone's ImageNet 1000-class classifier."""
    model = build_backbone(backbone, size, weights=weights, include_top=True)
    kernel, bias = model.layers[-1].get_weights()
    return kernel, bias


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def imagenet_breed_logits(pooled: np.ndarray, kernel: np.ndarray, bias: np.ndarray, wnids: list[str]) -> np.ndarray:
    """ImageNet classifier logits of the breeds only (the no-training baseline's scores)."""
    indices = imagenet_indices_of(wnids)
    return pooled.astype("float32") @ kernel[:, indices] + bias[indices]


def dog_probability(pooled: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probability mass the ImageNet classifier puts on its dog classes (151..268)."""
    probabilities = softmax(pooled.astype("float32") @ kernel + bias)
    return probabilities[:, list(IMAGENET_DOG_CLASSES)].sum(axis=1)


def _head_model(features: int, classes: int, config: TransferConfig) -> keras.Model:
    """The compiled phase-1 head: dropout and a softmax layer on pooled features."""
    keras.utils.set_random_seed(config.seed)
    with distribution_strategy().scope(), training_precision():
        inputs = keras.Input((features,), name="pooled")
        x = keras.layers.Dropout(config.head_dropout)(inputs)
        outputs = keras.layers.Dense(classes, activation="softmax", dtype="float32", name="breed_head")(x)
        head = keras.Model(inputs, outputs, name="head")
        head.compile(
            optimizer=keras.optimizers.Adam(config.head_learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
    return head


def train_head(
    features: np.ndarray, targets: np.ndarray, val_features: np.ndarray, val_labels: np.ndarray,
    classes: int, config: TransferConfig, log=print,
) -> tuple[keras.Model, dict]:
    """Phase 1: a dropout + softmax head on pooled features, early-stopped on validation accuracy.

    `targets` are one row of class probabilities per sample (training_targets).
    """
    head = _head_model(features.shape[1], classes, config)
    history = head.fit(
        features.astype("float32"), targets,
        validation_data=(val_features.astype("float32"), keras.utils.to_categorical(val_labels, classes)),
        epochs=config.head_epochs, batch_size=config.batch_size, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=5, restore_best_weights=True),
                   _EpochLog("head", log)],
    )
    return head, {f"head_{k}": [float(v) for v in vs] for k, vs in history.history.items()}


def refit_head(features: np.ndarray, targets: np.ndarray, classes: int, epochs: int, config: TransferConfig,
               log=print) -> keras.Model:
    """The same head trained on every training image for the epoch count validation chose."""
    head = _head_model(features.shape[1], classes, config)
    head.fit(features.astype("float32"), targets, epochs=epochs,
             batch_size=config.batch_size, verbose=0, callbacks=[_EpochLog("refit", log)])
    return head


def top_of_backbone(
    backbone: str, size: int, weights: str | None = "imagenet", trainable_from: str | None = None,
    split_layer: str | None = None,
) -> keras.Model:
    """The layers above the split layer, ImageNet weights, as a model: split activations -> pooled.

    Layers before `trainable_from` (when given) are frozen too.
    """
    split = split_layer_of(backbone, split_layer)
    base = build_backbone(backbone, size, weights=weights, include_top=True)
    top = top_above(base, split)
    clone = keras.models.clone_model(top)
    clone.set_weights(top.get_weights())
    names = [layer.name for layer in clone.layers]
    if trainable_from is not None and trainable_from not in names:
        raise ValueError(f"{trainable_from!r} is not a layer above {split}; choose from {names[1:]}")
    first_trainable = names.index(trainable_from) if trainable_from else 0
    for position, layer in enumerate(clone.layers):
        # Batch norm stays in inference mode: its statistics must not drift on small batches.
        if position < first_trainable or isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return keras.Model(clone.inputs[0], clone.outputs[0], name="fine_tuned_top")


def fine_tune(
    activations: np.ndarray, targets: np.ndarray, val_activations: np.ndarray, val_labels: np.ndarray,
    head: keras.Model, classes: int, config: TransferConfig, checkpoint_dir: Path, log=print,
) -> tuple[keras.Model, dict]:
    """Phase 2: fine-tune the top of the backbone and the head; resumes from `checkpoint_dir`."""
    keras.utils.set_random_seed(config.seed)
    with distribution_strategy().scope(), training_precision():
        top = top_of_backbone(config.backbone, config.size, config.weights, config.fine_tune_from,
                              config.split_layer)
        inputs = keras.Input(activations.shape[1:], name="split_activations")
        x = inputs
        if config.feature_shift > 0:
            x = keras.layers.RandomTranslation(config.feature_shift, config.feature_shift, fill_mode="nearest",
                                               seed=config.seed, name="shift_activations")(x)
        x = top(x)
        x = keras.layers.Dropout(config.fine_tune_dropout)(x)
        dense = keras.layers.Dense(classes, activation="softmax", dtype="float32", name="breed_head")
        outputs = dense(x)
        model = keras.Model(inputs, outputs, name="fine_tune")
        dense.set_weights(head.get_layer("breed_head").get_weights())
        steps = config.fine_tune_epochs * int(np.ceil(len(targets) / config.batch_size))
        model.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
                config.fine_tune_learning_rate, steps)),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    history = model.fit(
        activations, targets,
        validation_data=(val_activations, keras.utils.to_categorical(val_labels, classes)),
        epochs=config.fine_tune_epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(checkpoint_dir / "backup")),
            keras.callbacks.ModelCheckpoint(str(checkpoint_dir / "best.weights.h5"), save_weights_only=True,
                                            save_best_only=True, monitor="val_accuracy"),
            _EpochLog("fine_tune", log),
        ],
    )
    model.load_weights(checkpoint_dir / "best.weights.h5")
    return model, {f"fine_tune_{k}": [float(v) for v in vs] for k, vs in history.history.items()}


def choose_blend_weight(head_probabilities: np.ndarray, imagenet_logits: np.ndarray, labels: np.ndarray) -> float:
    """The weight of the ImageNet breed logits that maximises validation accuracy (0 = none).

    Ties, common on small validation sets, go to the weight with the lower validation log-loss.
    """
    candidates = np.round(np.arange(0.0, 1.51, 0.1), 2)
    scores = []
    for weight in candidates:
        probabilities = blend(head_probabilities, imagenet_logits, weight)
        accuracy = np.mean(np.argmax(probabilities, axis=1) == labels)
        log_loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)))
        scores.append((accuracy, -log_loss))
    return float(candidates[max(range(len(candidates)), key=scores.__getitem__)])


def blend(head_probabilities: np.ndarray, imagenet_logits: np.ndarray, weight: float) -> np.ndarray:
    """Breed probabilities from the head's log-probabilities plus weighted ImageNet breed logits.

    Several looks at the same photos (flip test-time augmentation) come stacked on a leading axis
    and their blended logits are averaged, as the shipped model does.
    """
    logits = np.log(np.clip(head_probabilities, 1e-7, 1.0)) + weight * imagenet_logits
    return softmax(logits.mean(axis=0) if logits.ndim == 3 else logits)


def assemble(
    head: keras.Model, wnids: list[str], blend_weight: float, config: TransferConfig,
    fine_tuned_top: keras.Model | None = None,
) -> keras.Model:
    """The shipped Keras model: raw RGB pixels [0, 255] -> [breed probabilities, dog probability].

    Without fine-tuning, the head sits on the ImageNet backbone's pooled features beside its
    ImageNet classifier. With a fine-tuned top, the frozen bottom of the backbone feeds both the
    fine-tuned top (new head) and the original top (ImageNet classifier). The ImageNet classifier
    gives the blended breed logits and the dog probability. With config.flip_tta the same layers
    also run on the mirrored photo and both looks are averaged (logits, ImageNet probabilities).
    Standard layers plus MirrorImage, so the exported files need no custom code.
    """
    spec = backbone_spec(config.backbone)
    base = build_backbone(config.backbone, config.size, weights=config.weights, include_top=True)
    kernel, bias = base.layers[-1].get_weights()
    if fine_tuned_top is not None:  # rebuilt in float32, whatever precision it was trained in
        float_top = top_of_backbone(config.backbone, config.size, config.weights, config.fine_tune_from,
                                    config.split_layer)
        float_top.set_weights(fine_tuned_top.get_weights())
        fine_tuned_top = float_top
    split = base.get_layer(split_layer_of(config.backbone, config.split_layer)).output
    both = keras.Model(base.input, [split, base.layers[-2].output],
                       name="imagenet_backbone")
    trained = head.get_layer("breed_head")
    classes = trained.units
    new_head = keras.layers.Dense(classes, name="head_logits")
    indices = imagenet_indices_of(wnids)
    imagenet_breeds = keras.layers.Dense(classes, name="imagenet_breed_logits", trainable=False)
    imagenet = keras.layers.Dense(1000, activation="softmax", name="imagenet_classifier", trainable=False)

    def look(scaled):
        activations, imagenet_pooled = both(scaled)
        head_logits = new_head(fine_tuned_top(activations) if fine_tuned_top is not None else imagenet_pooled)
        logits = keras.layers.Add()([head_logits, imagenet_breeds(imagenet_pooled)])
        return logits, imagenet(imagenet_pooled)

    pixels = keras.Input((config.size, config.size, 3), name="pixels")
    scaled = pixel_scaling_layer(spec)(pixels)
    logits, imagenet_probabilities = look(scaled)
    if config.flip_tta:
        mirrored_logits, mirrored_probabilities = look(MirrorImage(name="mirror")(scaled))
        logits = keras.layers.Average(name="flip_tta_logits")([logits, mirrored_logits])
        imagenet_probabilities = keras.layers.Average(name="flip_tta_imagenet")(
            [imagenet_probabilities, mirrored_probabilities])
    new_head.set_weights(trained.get_weights())
    imagenet_breeds.set_weights([kernel[:, indices] * blend_weight, bias[indices] * blend_weight])
    imagenet.set_weights([kernel, bias])
    breeds = keras.layers.Softmax(name="breeds")(logits)
    dog_sum = keras.layers.Dense(1, use_bias=False, name="dog", trainable=False)
    dog = dog_sum(imagenet_probabilities)
    indicator = np.zeros((1000, 1), dtype="float32")
    indicator[list(IMAGENET_DOG_CLASSES)] = 1.0
    dog_sum.set_weights([indicator])
    return keras.Model(pixels, [breeds, dog], name=f"dogtag_{config.backbone}")


class _EpochLog(keras.callbacks.Callback):
    """One log line per epoch, so background runs show their progress."""

    def __init__(self, phase: str, log):
        super().__init__()
        self.phase, self.log, self.started = phase, log, time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        scores = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        self.log(f"{self.phase} epoch {epoch + 1}: {scores} ({time.perf_counter() - self.started:.0f}s)")
