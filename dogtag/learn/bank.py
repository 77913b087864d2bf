"""The bank: a few training photos per breed, as embeddings, shipped with a bundled model.

Ten corrections say nothing about what the other 120 breeds look like. The bank does: its photos are
the negatives (and anchors) that keep a learned head from calling a beagle "Dachshund" because
the ten Dachshunds were the only photos it saw. Each bank is the base model's outputs (features,
breed and dog probabilities) for PER_BREED photos of every breed from Stanford Dogs' TRAIN split
(never the test split, never dogs-in-the-wild), chosen at random with a fixed seed, computed through
the bundled int8 model itself, stored compressed as float16 in dogtag/models/bank_<name>.npz.

How the bundled banks were made (needs scipy to read the split's .mat list; nothing else here does):

    python -m dogtag.learn.bank accurate ../shared/datasets/stanford-dogs [EMBEDDING-CACHE-FOLDER]
    python -m dogtag.learn.bank fast ../shared/datasets/stanford-dogs

Every training photo is embedded (about 8 minutes for accurate on two cores; an embedding cache
folder, e.g. the learning benchmark's cache/learning, is reused where it has them): the bank keeps
PER_BREED of them, and the breeds' ClassStats (means, shared covariance) come from all of them.

A bank belongs to the network it came from: it is used with a base model file that was exported
from the same Keras model (model info export.keras_model_version, so TFLite and ONNX share a bank).
Any model file may have one beside it, `NAME.bank.npz` next to `NAME.tflite` (`write_bank`); a
learned model folder keeps its base's bank beside its base file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogtag import models as bundled
from dogtag.edge_app.embeddings import EmbeddingCache, embed_photos
from dogtag.edge_app.model_file import ModelInfo
from dogtag.edge_app.runtime import Model, Outputs
from dogtag.learn.fit import ClassStats, FitOptions, Projection, class_stats, projection

PER_BREED = 10
SEED = 0


@dataclass(frozen=True)
class Bank:
    """Embeddings of labelled training photos of the base model's breeds."""

    features: np.ndarray  # (n, d) float32
    breeds: np.ndarray  # (n, len(base labels)) the base model's probabilities
    dog: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) int: index into the base model's labels
    source: str  # what it was made from, for the model card
    space: Projection  # standardisation and PCA basis of its features (fit.projection), computed once
    stats: ClassStats  # the breeds in a whitened space, from every training photo (fit.class_stats)


def network_version(info: ModelInfo) -> str:
    """The Keras model a file was exported from (its files in every format share it)."""
    export = info.extra.get("export") or {}
    return str(export.get("keras_model_version") or info.model_version)


def bank_path(name: str) -> Path:
    """Where a bundled model's bank lives."""
    return bundled.MODEL_DIR / f"bank_{name}.npz"


def bank_beside(model_path: str | os.PathLike) -> Path:
    """Where a model file's own bank lives: NAME.bank.npz beside NAME.tflite / NAME.onnx."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.bank.npz")


def find_bank(info: ModelInfo, model_path: str | os.PathLike | None = None,
              folder: str | os.PathLike = bundled.MODEL_DIR) -> tuple[Bank, Path] | None:
    """The bank made from the same network as the model `info` describes, and its file, or None:
    the one beside the model file first, else a bundled one."""
    candidates = [bank_beside(model_path)] if model_path is not None else []
    candidates += sorted(Path(folder).glob("bank_*.npz"))
    for path in candidates:
        if not path.is_file():
            continue
        with np.load(path) as data:
            if str(data["network"]) == network_version(info) and tuple(data["label_names"]) == info.labels:
                features, labels = data["features"].astype(np.float32), data["labels"].astype(np.int64)
                if "stats_means" in data:
                    stats = ClassStats(*(data[f"stats_{name}"].astype(np.float32)
                                         for name in ("mean", "scale", "transform", "means")))
                else:  # a bank written before stats: its own photos' (fewer than all training photos)
                    stats = class_stats(features, labels, len(info.labels))
                bank = Bank(features, data["breeds"].astype(np.float32), data["dog"].astype(np.float32), labels,
                            str(data["source"]), Projection(data["mean"].astype(np.float32),
                                                            data["scale"].astype(np.float32),
                                                            data["basis"].astype(np.float32)), stats)
                return bank, path
    return None


def write_bank(out: str | os.PathLike, outputs: Outputs, labels: np.ndarray, info: ModelInfo, source: str,
               stats: ClassStats | None = None) -> Path:
    """Save a bank: the base model's outputs for labelled photos (labels index info.labels), the
    projection that heads are fitted in (fit.projection of its features), and the breeds' ClassStats
    (None: from these photos)."""
    space = projection(outputs.features, FitOptions().rank)
    stats = stats or class_stats(outputs.features, labels, len(info.labels))
    np.savez_compressed(
        out, features=outputs.features.astype(np.float16), breeds=outputs.breeds.astype(np.float16),
        dog=(outputs.dog if outputs.dog is not None else np.ones(len(labels))).astype(np.float16),
        labels=np.asarray(labels).astype(np.int16), label_names=np.array(info.labels),
        network=np.array(network_version(info)), source=np.array(source),
        mean=space.mean, scale=space.scale, basis=space.basis.astype(np.float16),
        stats_mean=stats.mean, stats_scale=stats.scale, stats_transform=stats.transform.astype(np.float16),
        stats_means=stats.means.astype(np.float16),
    )
    return Path(out)


def build_bank(model_path: str | os.PathLike, stanford: str | os.PathLike, out: str | os.PathLike,
               per_breed: int = PER_BREED, cache: EmbeddingCache | None = None) -> Path:
    """Embed every TRAIN photo through the model file (`cache`: an embedding cache to reuse); write
    the bank: `per_breed` random photos of each breed, and the breeds' ClassStats from all of them."""
    from scipy.io import loadmat

    model = Model(model_path)
    stanford = Path(stanford)
    lists = loadmat(str(stanford / "train_list.mat"))
    files = [str(x.item()) for x in lists["file_list"].ravel()]
    classes = np.array([int(x) - 1 for x in lists["labels"].ravel()])
    folders = sorted(p.name for p in (stanford / "Images").iterdir() if p.is_dir())
    if len(folders) != len(model.info.labels):
        raise ValueError(f"{stanford}: {len(folders)} breeds, but the model has {len(model.info.labels)}")
    rng = np.random.default_rng(SEED)
    chosen = []
    for label in range(len(folders)):
        members = np.flatnonzero(classes == label)
        chosen.extend(int(i) for i in rng.choice(members, min(per_breed, len(members)), replace=False))
    embedded = embed_photos(model, [stanford / "Images" / name for name in files], cache=cache,
                            progress=lambda done, total: print(f"\r{done}/{total}", end="", file=sys.stderr))
    if embedded.failed:
        raise ValueError(f"unreadable training photos: {embedded.failed}")
    every = embedded.outputs
    stats = class_stats(every.features, classes, len(model.info.labels))
    rows = np.array(chosen)
    bank = Outputs(every.breeds[rows], None if every.dog is None else every.dog[rows], every.features[rows])
    return write_bank(out, bank, classes[rows], model.info,
                      f"{per_breed} photos per breed from Stanford Dogs' train split (seed {SEED}), "
                      f"through {Path(model_path).name}; breed statistics from all {len(files)} of its photos", stats)


if __name__ == "__main__":  # python -m dogtag.learn.bank NAME STANFORD [EMBEDDING-CACHE-FOLDER]
    name, root = sys.argv[1], sys.argv[2]
    tflite, _ = bundled.bundled_files(name)
    reused = EmbeddingCache(Model(tflite).info.model_version, Path(sys.argv[3])) if len(sys.argv) > 3 else None
    print(build_bank(tflite, root, bank_path(name), cache=reused))
