"""The CNN designed from scratch: its layers, its optimizer, flip TTA around it, a warm start into it.

The network follows known designs: a stride-2 stem (optionally with ResNet's max-pool), then
stages that halve the resolution and widen the filters, each made of VGG-style conv + batch-norm
stacks, ResNet basic blocks or Xception-style depthwise-separable residual blocks, then global
average pooling, an optional dense layer and a softmax named "breeds". All sizes come from
ScratchParams (train/scratch_params.py). With flip_tta the shipped model wraps the trained
network: it looks at each photo and its mirror and averages.

The model takes float32 raw RGB pixels in [0, 255] (rescaling is its first layer; standard Keras
layers only, plus MirrorImage with flip_tta).
"""

from __future__ import annotations

from pathlib import Path

import keras

from dogtag.train.checkpoints import RunMismatch
from dogtag.train.layers import MirrorImage
from dogtag.train.scratch_params import ScratchParams

# Decoupled weight decay per optimizer, in Keras' convention (each step subtracts lr * decay * weight).
WEIGHT_DECAY = {"adam": 0.0, "adamw": 0.05, "sgd": 5e-4}


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
    decay_kernels_only(optimizer)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                  metrics=["accuracy"])


def decay_kernels_only(optimizer: keras.optimizers.Optimizer) -> None:
    # Decay shrinks kernels only: batch-norm scales/offsets and biases keep their freedom. A saved
    # optimizer forgets this, so it is applied again after loading a checkpoint.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])


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
