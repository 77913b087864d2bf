"""Compute what a frozen backbone gives once, and keep it on disk.

For each image view (plain or mirrored) the cache holds, per sample: the activations at the
backbone's split layer (float16, the input of the fine-tuned top), the pooled features (float16,
the input of a linear head) and the label. Chunks are written one by one, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from dogtag.train.backbones import (
    backbone_spec,
    build_backbone,
    pixel_scaling_layer,
    split_layer_of,
    top_above,
)
from dogtag.train.dataset import Dataset
from dogtag.train.pipeline import image_dataset
from dogtag.train.preprocess import Augmentation, Preprocessing

CHUNK = 1024


def feature_extractor(
    backbone: str, size: int, weights: str | None = "imagenet", split_layer: str | None = None
) -> keras.Model:
    """Pixels [0, 255] -> (split-layer activations, pooled features) of the ImageNet backbone."""
    spec = backbone_spec(backbone)
    base = build_backbone(backbone, size, weights=weights, include_top=True)
    layer = split_layer_of(backbone, split_layer)
    top_above(base, layer)  # refuse, before hours of caching, a split that fine-tuning could not use
    inner = keras.Model(base.input, [base.get_layer(layer).output, base.layers[-1].input])
    pixels = keras.Input((size, size, 3), name="pixels")
    return keras.Model(pixels, inner(pixel_scaling_layer(spec)(pixels)), name=f"{backbone}_features")


def cache_dir(
    root: Path, backbone: str, preprocessing: Preprocessing, split: str, view: str, split_layer: str | None = None
) -> Path:
    """Where the cached features of one split and view live (a split layer other than the default gets its own)."""
    layer = split_layer_of(backbone, split_layer)
    folder = preprocessing.describe() + ("" if layer == backbone_spec(backbone).split_layer else f"@{layer}")
    return Path(root) / backbone / folder / f"{split}-{view}"


def view_pipeline_options(view: str, chunk: int) -> dict:
    """image_dataset options of a view: 'plain', 'flip' (mirrored), 'augN' (random augmentation N) or
    'thumbN' (shrunk to an N px thumbnail first, as shelter databases store photos)."""
    if view == "plain":
        return {}
    if view == "flip":
        return {"flip_all": True}
    if view.startswith("thumb") and view[5:].isdigit() and int(view[5:]) > 0:
        return {"thumbnail": int(view[5:])}
    if view.startswith("aug") and view[3:].isdigit():
        return {"augmentation": Augmentation(), "seed": int(view[3:]) * 100_003 + chunk}
    raise ValueError(f"unknown view {view!r}: use plain, flip, augN (N = 1, 2, ...) or thumbN (e.g. thumb96)")


def cache_features(
    dataset: Dataset,
    directory: Path,
    extractor: keras.Model,
    preprocessing: Preprocessing,
    view: str = "plain",
    batch_size: int = 32,
    log=print,
) -> None:
    """Write the features of every sample of `dataset` to `directory`, skipping finished chunks."""
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(dataset), CHUNK):
        path = directory / f"chunk_{start // CHUNK:05d}.npz"
        if path.exists():
            continue
        part = Dataset(dataset.samples[start : start + CHUNK], dataset.breeds, dataset.wnids)
        began = time.perf_counter()
        split_outputs, pooled, labels = [], [], []
        for images, batch_labels in image_dataset(
            part, preprocessing, batch_size, **view_pipeline_options(view, start // CHUNK)
        ):
            a, b = extractor(images, training=False)
            split_outputs.append(np.asarray(a, dtype="float16"))
            pooled.append(np.asarray(b, dtype="float16"))
            labels.append(batch_labels.numpy())
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, split=np.concatenate(split_outputs), pooled=np.concatenate(pooled),
                 labels=np.concatenate(labels))
        temporary.rename(path)  # a chunk is either complete or absent
        seconds = time.perf_counter() - began
        log(f"{directory.name}: chunk {start // CHUNK} ({len(part)} images, {len(part) / seconds:.0f} img/s)")


def load_features(directory: Path, parts: tuple[str, ...] = ("split", "pooled", "labels")) -> dict:
    """Concatenate the cached chunks of one split and view."""
    chunks = sorted(Path(directory).glob("chunk_*[0-9].npz"))
    if not chunks:
        raise FileNotFoundError(f"{directory}: no cached features; run `dogtag train cache` first")
    loaded = [np.load(c) for c in chunks]
    return {name: np.concatenate([c[name] for c in loaded]) for name in parts}
