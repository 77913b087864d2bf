"""A CNN designed from scratch, trained on a compact uint8 image cache, saved to the export contract.

The network follows known designs: a stride-2 stem (optionally with ResNet's max-pool), then
stages that halve the resolution and widen the filters, each made of VGG-style conv + batch-norm
stacks, ResNet basic blocks or Xception-style depthwise-separable residual blocks, then global
average pooling, an optional dense layer and a softmax named "breeds". All sizes live in one
dataclass, ScratchParams, which the hyperparameter search (train/search.py) fills. With flip_tta the
shipped model wraps the trained network: it looks at each photo and its mirror and averages.

Photos are decoded and squashed once into uint8 arrays (cache/scratch/<size>/); training reads
those and augments them inside the tf.data graph, so each epoch costs only the network itself.
Training is resumable: after every epoch the full model (with its optimizer state) and the
progress are checkpointed, and a run started again with the same folder continues from there.

The saved model takes float32 raw RGB pixels in [0, 255] (rescaling is its first layer; standard
Keras layers only, plus MirrorImage with flip_tta) and ships with model_info.json for `dogtag export`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from dogtag.edge_app.thresholds import tune_thresholds
from dogtag.train import run_record
from dogtag.train.dataset import Dataset, load_split, select_breeds, stratified_indices
from dogtag.train.devices import distribution_strategy, training_precision
from dogtag.train.evaluate import evaluate
from dogtag.train.layers import MirrorImage
from dogtag.train.pipeline import image_dataset
from dogtag.train.preprocess import Augmentation, Preprocessing, augmentation_layers
from dogtag.train.run_record import RunMismatch
from dogtag.train.saving import model_info, save_model

BLOCK_TYPES = ("vgg", "residual", "separable")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Decoupled weight decay per optimizer, in Keras' convention (each step subtracts lr * decay * weight).
WEIGHT_DECAY = {"adam": 0.0, "adamw": 0.05, "sgd": 5e-4}
DEFAULT_CACHE = Path("cache/scratch")


@dataclass(frozen=True)
class ScratchParams:
    """Every hyperparameter of the scratch CNN and its training, with the defaults we ship.

    filters has one entry per stage (its length is the number of stages); depth is the number of
    units per stage (a unit is one conv for "vgg", one two-conv residual block otherwise);
    stem_pool adds ResNet's max-pool to the stride-2 stem, so that the first stage works at a quarter
    of the input size (about 4x cheaper on CPU); dense_units 0 puts the softmax straight on the
    pooled features. head_only, for a warm start, keeps every copied layer frozen (batch norm in
    inference mode) and trains only the new "breeds" layer: a linear classifier on the donor's
    features, which suits a few breeds with few photos. flip_tta does not change training: the
    shipped model also looks at each photo mirrored and averages both answers (twice the
    inference compute). mixup and cutmix (Beta alphas, 0 = off) blend each augmented training
    batch with itself in reverse order: mixup averages whole photos, cutmix pastes a box of the
    partner photo; the labels are blended in the same proportions. With both on, each batch picks
    one of the two at random (as timm does). They fight overfitting and need longer training.
    """

    size: int = 112
    block: str = "residual"
    filters: tuple[int, ...] = (32, 64, 128, 256)
    depth: int = 2
    stem_pool: bool = True
    dense_units: int = 256
    dropout: float = 0.3
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    label_smoothing: float = 0.1
    batch_size: int = 32
    epochs: int = 60
    warmup_epochs: int = 2
    patience: int = 15
    validation_fraction: float = 0.1
    seed: int = 0
    augmentation: Augmentation = field(default_factory=Augmentation)
    mixup: float = 0.0
    cutmix: float = 0.0
    head_only: bool = False
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {self.block!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.filters or min(self.filters) < 1:
            raise ValueError(f"filters needs one positive count per stage, got {self.filters!r}")
        if self.size < 2 ** (len(self.filters) + 1 + self.stem_pool):
            raise ValueError(f"input size {self.size} is too small for {len(self.filters)} stages")
        if not (self.mixup >= 0 and self.cutmix >= 0):  # NaN refused too
            raise ValueError(f"mixup and cutmix are Beta alphas (0 = off), got {self.mixup!r} and {self.cutmix!r}")

    def to_dict(self) -> dict:
        """Plain JSON-able values (what best_params.json and config.json hold)."""
        values = asdict(self)
        values["filters"] = list(self.filters)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ScratchParams:
        """The inverse of to_dict; unknown keys are refused so that a typo cannot pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scratch hyperparameters {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "filters" in values:
            values["filters"] = tuple(int(f) for f in values["filters"])
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = Augmentation(**values["augmentation"])
        return cls(**values)

    def describe(self) -> str:
        """A short name, e.g. 'residual-32-64-128-256x2-d256-112px'."""
        dense = f"-d{self.dense_units}" if self.dense_units else ""
        return f"{self.block}-{'-'.join(map(str, self.filters))}x{self.depth}{dense}-{self.size}px"


# --- the network -----------------------------------------------------------------------------------

def _conv_bn(x, filters: int, strides: int = 1, kernel: int = 3, relu: bool = True, name: str = ""):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _sep_bn(x, filters: int, strides: int = 1, relu: bool = True, name: str = ""):
    x = keras.layers.SeparableConv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                                     depthwise_initializer="he_normal", pointwise_initializer="he_normal",
                                     name=f"{name}_sepconv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_unit(x, filters: int, strides: int, separable: bool, name: str):
    """Two 3x3 convolutions (plain or depthwise-separable) added to a projected shortcut when shapes differ."""
    conv = _sep_bn if separable else _conv_bn
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, strides=strides, kernel=1, relu=False, name=f"{name}_shortcut")
    y = conv(x, filters, strides=strides, name=f"{name}_a")
    y = conv(y, filters, relu=False, name=f"{name}_b")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _stage(x, params: ScratchParams, filters: int, downsample: bool, name: str):
    if params.block == "vgg":
        if downsample:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        for unit in range(params.depth):
            x = _conv_bn(x, filters, name=f"{name}_{unit + 1}")
        return x
    for unit in range(params.depth):
        strides = 2 if downsample and unit == 0 else 1
        x = _residual_unit(x, filters, strides, params.block == "separable", f"{name}_{unit + 1}")
    return x


def build_model(params: ScratchParams, classes: int) -> keras.Model:
    """Raw RGB pixels [0, 255], float32 (batch, size, size, 3) -> breed probabilities named "breeds"."""
    pixels = keras.Input((params.size, params.size, 3), dtype="float32", name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_pixels")(pixels)
    x = _conv_bn(x, params.filters[0], strides=2, name="stem")
    if params.stem_pool:
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for index, filters in enumerate(params.filters):
        x = _stage(x, params, filters, downsample=index > 0, name=f"stage{index + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(params.dropout, name="dropout")(x)
    if params.dense_units:
        x = keras.layers.Dense(params.dense_units, use_bias=False, name="dense")(x)
        x = keras.layers.BatchNormalization(name="dense_bn")(x)
        x = keras.layers.ReLU(name="dense_relu")(x)
        x = keras.layers.Dropout(params.dropout, name="dense_dropout")(x)
    breeds = keras.layers.Dense(classes, activation="softmax", dtype="float32", name="breeds")(x)
    return keras.Model(pixels, breeds, name=f"dogtag_scratch_{params.block}")


def with_flip_tta(network: keras.Model) -> keras.Model:
    """`network` looking at each photo and at its mirror, the two breed probabilities averaged.

    Same input and output contract as the network (raw pixels in, a softmax named "breeds" out),
    so export and the edge app treat it like any other model; it costs two forward passes.
    """
    pixels = keras.Input(network.input_shape[1:], dtype="float32", name="pixels")
    looks = [network(pixels), network(MirrorImage(name="mirror")(pixels))]
    return keras.Model(pixels, keras.layers.Average(name="breeds")(looks), name=f"{network.name}_flip_tta")


def trained_network(model: keras.Model) -> keras.Model:
    """The network inside a shipped model: itself, or the one that with_flip_tta wrapped."""
    if not model.name.endswith("_flip_tta"):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def compile_model(model: keras.Model, params: ScratchParams, steps_per_epoch: int) -> None:
    """Optimizer with linear warm-up then cosine decay over the planned epochs; smoothed cross-entropy."""
    total = max(1, params.epochs * steps_per_epoch)
    warmup = min(params.warmup_epochs * steps_per_epoch, total // 4)
    schedule = keras.optimizers.schedules.CosineDecay(
        params.learning_rate / 10, decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=params.learning_rate if warmup else None, warmup_steps=warmup,
    )
    decay = WEIGHT_DECAY[params.optimizer]
    if params.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    elif params.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=decay)
    else:
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=decay)
    _decay_kernels_only(optimizer)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                  metrics=["accuracy"])


def _decay_kernels_only(optimizer: keras.optimizers.Optimizer) -> None:
    # Decay shrinks kernels only: batch-norm scales/offsets and biases keep their freedom. A saved
    # optimizer forgets this, so it is applied again after loading a checkpoint.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])


# --- data ------------------------------------------------------------------------------------------

def cached_images(dataset: Dataset, size: int, cache_root: Path, name: str, log=print) -> np.ndarray:
    """uint8 (n, size, size, 3) pixels of `dataset`, squashed to size; decoded once, then read from disk.

    The file name carries a digest of the sample list, so a different selection never reuses it.
    """
    digest = hashlib.sha1("\n".join(f"{s.path}|{s.label}" for s in dataset.samples).encode()).hexdigest()[:12]
    path = Path(cache_root) / str(size) / f"{name}-{len(dataset)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    began = time.perf_counter()
    images = np.empty((len(dataset), size, size, 3), dtype="uint8")
    row = 0
    for batch, _ in image_dataset(dataset, Preprocessing(size=size, resize="squash"), batch_size=64):
        images[row : row + len(batch)] = np.clip(np.round(batch.numpy()), 0, 255).astype("uint8")
        row += len(batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, images)
    temporary.rename(path)  # a cache file is either complete or absent
    log(f"cached {len(dataset)} {name} images at {size} px in {time.perf_counter() - began:.0f}s: {path}")
    return images


def training_batches(images: np.ndarray, labels: np.ndarray, classes: int, batch_size: int,
                     augmentation: Augmentation, seed: int = 0, mixup: float = 0.0,
                     cutmix: float = 0.0) -> tf.data.Dataset:
    """Shuffled batches of (float32 pixels [0, 255], one-hot labels), augmented inside the graph,
    then blended by mixup or cutmix when their alphas are above 0 (the labels become mixed)."""
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    # Full batches only (the few left over are reshuffled into the next epoch): one traced step, not two.
    data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=len(images) >= batch_size)
    layers = augmentation_layers(augmentation, images.shape[1], seed=seed) if augmentation.enabled else None

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if layers is not None:
            x = tf.clip_by_value(layers(x, training=True), 0.0, 255.0)
        return mix_batch(x, tf.one_hot(y, classes), mixup, cutmix)  # unchanged when both alphas are 0

    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _beta(alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha), from two Gamma draws."""
    a, b = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
    return tf.where(a + b > 0, a / (a + b), 0.5)  # both underflow to 0 only for tiny alphas


def mix_batch(x: tf.Tensor, y: tf.Tensor, mixup: float, cutmix: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend a batch with itself in reverse order, by mixup or cutmix (Beta alphas; 0 = that one off).

    mixup: every photo becomes lam * itself + (1 - lam) * its partner. cutmix: a box covering about
    1 - lam of the photo is pasted from its partner, and lam is then the share of pixels actually
    kept (the box is clipped at the border). Either way each label becomes lam * its own + (1 - lam)
    * the partner's. One lam per batch; with both alphas on, a fair coin picks the method. The
    draws are not seeded (nor are the augmentation layers'). With mixing on, training accuracy is
    measured against each photo's larger label share, so it no longer compares with validation's.
    """
    if mixup <= 0 and cutmix <= 0:
        return x, y
    partner_x, partner_y = tf.reverse(x, [0]), tf.reverse(y, [0])

    def by_mixup():
        lam = _beta(mixup)
        share = tf.cast(lam, x.dtype)  # lam stays float32 for the labels
        return share * x + (1 - share) * partner_x, lam

    def by_cutmix():
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        share = tf.sqrt(1.0 - _beta(cutmix))  # the box's side, as a share of the photo's side
        box_h = tf.cast(tf.round(share * tf.cast(height, tf.float32)), tf.int32)
        box_w = tf.cast(tf.round(share * tf.cast(width, tf.float32)), tf.int32)
        centre_y = tf.random.uniform([], 0, height, dtype=tf.int32)
        centre_x = tf.random.uniform([], 0, width, dtype=tf.int32)
        top, bottom = tf.maximum(centre_y - box_h // 2, 0), tf.minimum(centre_y + box_h - box_h // 2, height)
        left, right = tf.maximum(centre_x - box_w // 2, 0), tf.minimum(centre_x + box_w - box_w // 2, width)
        rows, columns = tf.range(height)[:, None], tf.range(width)[None, :]
        inside = (rows >= top) & (rows < bottom) & (columns >= left) & (columns < right)
        mask = tf.cast(inside, x.dtype)[None, :, :, None]
        lam = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
        return x * (1 - mask) + partner_x * mask, lam

    if mixup > 0 and cutmix > 0:
        mixed, lam = tf.cond(tf.random.uniform([]) < 0.5, by_cutmix, by_mixup)
    else:
        mixed, lam = by_mixup() if mixup > 0 else by_cutmix()
    return mixed, lam * y + (1 - lam) * partner_y


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Training steps in one epoch of `images` (full batches only, see training_batches)."""
    return max(1, images // batch_size)


def evaluation_batches(images: np.ndarray, labels: np.ndarray, classes: int, batch_size: int) -> tf.data.Dataset:
    """Batches of (float32 pixels, one-hot labels) in order, unaugmented."""
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32"))).batch(batch_size)
    return data.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, classes))).prefetch(tf.data.AUTOTUNE)


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Breed probabilities of uint8 images, computed batch by batch."""
    return np.concatenate([
        np.asarray(model(images[i : i + batch_size].astype("float32"), training=False))
        for i in range(0, len(images), batch_size)
    ]) if len(images) else np.zeros((0, model.output_shape[-1]), dtype="float32")


# --- training ----------------------------------------------------------------------------------------

class Progress(keras.callbacks.Callback):
    """Checkpoints every epoch, keeps the best weights, stops early or at a time limit, logs a line.

    Keeps its own state (epoch, history, best score, epochs without improvement, the model it was
    warm-started from) in state.json beside last.keras, so a run started again resumes exactly where
    it stopped.
    """

    def __init__(self, directory: Path, patience: int, time_limit_s: float | None, log=print):
        super().__init__()
        self.directory, self.patience, self.time_limit_s, self.log = Path(directory), patience, time_limit_s, log
        self.state = {"epoch": 0, "history": {}, "best": None, "wait": 0, "stopped": None, "seconds": 0.0,
                      "init_from": None}
        if (self.directory / "state.json").exists():
            self.state.update(json.loads((self.directory / "state.json").read_text()))
        self.began = time.perf_counter()
        self.seconds_before = self.state["seconds"]

    @property
    def finished(self) -> bool:
        """True when early stopping (not a time limit) ended training, so there is nothing to resume."""
        return self.state["stopped"] == "early stopping"

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for key, value in logs.items():
            self.state["history"].setdefault(key, []).append(value)
        score = (logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0))
        improved = self.state["best"] is None or tuple(score) > tuple(self.state["best"])
        if improved:
            self.state["best"], self.state["wait"] = list(score), 0
            self.model.save_weights(self.directory / "best.tmp.weights.h5")
            (self.directory / "best.tmp.weights.h5").replace(self.directory / "best.weights.h5")
        else:
            self.state["wait"] += 1
        self.state["epoch"] = epoch + 1
        self.state["seconds"] = round(self.seconds_before + time.perf_counter() - self.began, 1)
        if self.state["wait"] >= self.patience:
            self.state["stopped"], self.model.stop_training = "early stopping", True
        elif self.time_limit_s is not None and time.perf_counter() - self.began >= self.time_limit_s:
            self.state["stopped"], self.model.stop_training = "time limit", True
        else:
            self.state["stopped"] = None
        self.model.save(self.directory / "last.tmp.keras")
        (self.directory / "last.tmp.keras").replace(self.directory / "last.keras")
        (self.directory / "state.tmp.json").write_text(json.dumps(self.state))
        (self.directory / "state.tmp.json").replace(self.directory / "state.json")
        scores = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        self.log(f"epoch {epoch + 1}: {scores} ({self.state['seconds']:.0f}s{', best' if improved else ''})")


def warm_start(model: keras.Model, source: Path, log=print) -> int:
    """Copy into `model` the weights of every layer of the saved model `source` but the "breeds" head.

    Both must have the same architecture (the same ScratchParams but the number of breeds); a
    mismatch is refused rather than half-copied. Returns how many layers were copied.
    """
    donor = {layer.name: layer for layer in trained_network(keras.models.load_model(source)).layers}
    layers = [layer for layer in model.layers if layer.weights and layer.name != "breeds"]
    mismatched = [layer.name for layer in layers if layer.name not in donor
                  or [tuple(w.shape) for w in donor[layer.name].weights] != [tuple(w.shape) for w in layer.weights]]
    if mismatched:
        raise RunMismatch(f"{source}: not the same architecture ({len(mismatched)} layers differ, e.g. "
                         f"{', '.join(mismatched[:3])}); warm-start from a model trained with the same params")
    for layer in layers:
        layer.set_weights(donor[layer.name].get_weights())
    log(f"warm start: {len(layers)} layers (all but the head) from {source}")
    return len(layers)


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
    with run_record.only_trainer(checkpoint_dir.parent, checkpoint_dir / "lock"):
        keras.utils.set_random_seed(params.seed)
        progress = Progress(checkpoint_dir, params.patience, time_limit_s, log)
        steps = steps_per_epoch(len(images), params.batch_size)
        with distribution_strategy().scope(), training_precision():
            if (checkpoint_dir / "last.keras").exists():
                model = keras.models.load_model(checkpoint_dir / "last.keras")
                _decay_kernels_only(model.optimizer)
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


def check_run_folder(checkpoint_dir: Path, params: ScratchParams, init_from: Path | None) -> None:
    """Refuse, before any work, a training that cannot go on in this folder; then record its params.

    A run resumes (or is re-evaluated) only with the hyperparameters it was started with: its
    checkpoint holds a network and an optimizer schedule built from them, so other values would be
    recorded beside a model they did not make. flip_tta is free: it only changes the shipped model.
    The record is checkpoints/params.json, or for older runs the params in the run's config.json;
    a hyperparameter it lacks (added since) means that hyperparameter's default.
    """
    checkpoint_dir = Path(checkpoint_dir)
    resuming = (checkpoint_dir / "last.keras").exists()
    if params.head_only and init_from is None and not resuming:
        raise RunMismatch("head_only trains the breeds layer alone on top of a warm-started network: "
                          "give the model to start from (init_from / --init-from)")
    recorded = run_record.recorded_params(checkpoint_dir)
    if resuming and recorded is not None:
        path, values = recorded
        try:
            before = ScratchParams.from_dict(values)
        except (TypeError, ValueError) as error:
            raise RunMismatch(f"{path} holds hyperparameters this version cannot read ({error})") from None
        run_dir = checkpoint_dir.parent
        run_record.refuse_other_params(
            run_dir, path, before.to_dict(), params.to_dict(), free=("flip_tta",),
            advice=f", or train on from its model in a new run folder (--init-from {run_dir / 'model.keras'})")
    run_record.record_params(checkpoint_dir, params.to_dict())


def best_epoch(history: dict) -> int:
    """The epoch (from 1) whose weights were kept: highest validation accuracy, then lowest loss."""
    scores = list(zip(history.get("val_accuracy", []), [-v for v in history.get("val_loss", [])], strict=False))
    return max(range(len(scores)), key=lambda i: scores[i]) + 1 if scores else 0


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
