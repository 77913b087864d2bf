"""Learned models: a bundled (or exported) model file plus a head that `dogtag learn` fitted in numpy.

A learned model is one folder a shelter copies to its Pi as it is:

    learned.json    what it is: format, labels, thresholds, model_version, the base model and the card's facts
    head.npz        the head's arrays (see Head)
    base.tflite     the base model file it runs (or base.onnx), copied so the folder stands alone
    base.bank.npz   the base's bank of training-photo embeddings, when it has one (dogtag.learn.bank)
    MODEL_CARD.md   for people: what it learned from, and the held-out figures old vs new

The base model gives, in one call, its breed probabilities, its dog probability and the photo's
features (its "features" output). The head keeps the base's answer as a prior and adds a correction
read from the features:

    logits[label]  = log(base probability + EPS)       for the base's labels
                   = NewLabels.logits                  for labels the base does not have
    logits[c]     += standardised features @ weights[:, j] + bias[j]  for the classes c = classes[j] it corrects
    breeds         = softmax(logits)
    dog            = sigmoid(logit(base dog) + standardised features @ dog_weights + dog_bias)

With weights and bias zero and no new labels it answers exactly as the base model (up to EPS):
everything learned is a departure from what the base knew, which is how `dogtag learn` keeps the 120
breeds while adding new ones (which take their share of the softmax where they score).

A new label (one the base does not have) is scored against the breeds its photos looked like to the
base, its parents (a Lhasa's: Shih-Tzu, Tibetan terrier), in a whitened feature space where every
base breed has a mean (from all its training photos, shipped in the bank) and the new label has the
mean of its photos:

    mass     = sum_j parents[j] * (base probability[j] + EPS)    how much the photo looks like the parents
    logit    = log(mass) + sharpness * (g_new - sum_j share_j * g_j)
    g_m      = mean_m . u - |mean_m|^2 / 2 (+ bias for a new label)  the linear discriminant of mean m (u: whitened features)
    share_j  = parents[j] * (base probability[j] + EPS) / mass

so a new label competes with its parents: on a photo the base gives to another breed its logit starts
about log(EPS) below (a beagle photo does not become "Lhasa" unless its features sit far out toward
the Lhasas'), and among its parents it wins where the photo sits nearer the label's own photos than
the parent breeds' means (shared covariance, as in linear discriminant analysis). `bias` puts back
what the new label's |mean|^2 gains from the noise of a mean of few photos (r dimensions of unit
variance: r * n / (n + prior)^2 / 2 for n photos), which would otherwise hold a label of five photos
back more than one of twenty. Without NewLabels (a head written before them) a
new label starts at log(EPS) and has only its correction. Only numpy here: the Pi runs it without
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogtag.edge_app.embeddings import as_stored
from dogtag.edge_app.model_file import ModelFileError, ModelInfo, read_model_info
from dogtag.edge_app.runtime import Model, Outputs

# /2: the head may carry NewLabels (new_* arrays). A dogtag that reads only /1 would ignore them and never
# predict a new label; it refuses /2 and says to update instead. /1 folders still read.
LEARNED_FORMAT = "dogtag-learned/2"
READABLE_FORMATS = ("dogtag-learned/1", LEARNED_FORMAT)
LEARNED_FILE = "learned.json"
HEAD_FILE = "head.npz"
CARD_FILE = "MODEL_CARD.md"
# The floor under the base's probabilities: a label the base gives nothing (or does not have) starts
# at log(EPS), a few logits below a confident answer, so a handful of photos can lift it.
EPS = 1e-4


@dataclass(frozen=True)
class NewLabels:
    """How the labels the base does not have are scored (module docstring); k new labels, r whitened dims."""

    mean: np.ndarray  # (d,) features are standardised with these, then whitened by transform
    scale: np.ndarray  # (d,)
    transform: np.ndarray  # (d, r)
    base_means: np.ndarray  # (base labels, r) each base breed's mean (zero: a breed without photos)
    parents: np.ndarray  # (k, base labels) what the base called each new label's photos (+ EPS), summing to 1
    #                      (all zero for a label with no photos, e.g. in a k-fold's training folds: log(EPS))
    means: np.ndarray  # (k, r) each new label's mean
    sharpness: float  # how far the discriminant moves the logits
    bias: np.ndarray | None = None  # (k,) added to g_new: what a mean from few photos loses to its noise

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """Features in the whitened space the means live in."""
        return ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.transform

    def logits(self, base_breeds: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(n, k) logits of the new labels."""
        u = self.whiten(features)
        base = np.asarray(base_breeds, np.float32) + EPS  # no parent's share is exactly zero, so no 0/0
        g_base = u @ self.base_means.T - 0.5 * (self.base_means**2).sum(1)
        g_new = u @ self.means.T - 0.5 * (self.means**2).sum(1) + (0.0 if self.bias is None else self.bias)
        mass = base @ self.parents.T
        weighted = (base * g_base) @ self.parents.T
        known = mass > 0  # a new label with no photos (none in a k-fold's training folds) has no parents
        safe = np.where(known, mass, 1.0)
        logits = np.log(safe) + self.sharpness * (g_new - weighted / safe)
        return np.where(known, logits, np.log(EPS)).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Its arrays, named new_* beside the head's own in head.npz."""
        arrays = {f"new_{name}": np.asarray(getattr(self, name), np.float32)
                  for name in ("mean", "scale", "transform", "base_means", "parents", "means")}
        arrays |= {"new_sharpness": np.array(self.sharpness, np.float32)}
        return arrays | ({} if self.bias is None else {"new_bias": np.asarray(self.bias, np.float32)})

    @classmethod
    def from_arrays(cls, arrays) -> NewLabels | None:
        """The new labels saved by `arrays`; None in a head written before they existed."""
        if "new_means" not in arrays:
            return None
        return cls(**{name: arrays[f"new_{name}"].astype(np.float32)
                      for name in ("mean", "scale", "transform", "base_means", "parents", "means")},
                   sharpness=float(arrays["new_sharpness"]),
                   bias=arrays["new_bias"].astype(np.float32) if "new_bias" in arrays else None)


@dataclass(frozen=True)
class Head:
    """The arrays of a learned head (see the module docstring); d features, k corrected classes."""

    mean: np.ndarray  # (d,) features are standardised with these before the weights
    scale: np.ndarray  # (d,)
    classes: np.ndarray  # (k,) int: which labels the weight columns correct
    weights: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)
    base_labels: int  # the first base_labels labels are the base model's, in its order
    labels: int  # all labels: the base's, then the new ones
    dog_weights: np.ndarray | None = None  # (d,) None: the base's dog probability, unchanged
    dog_bias: float = 0.0
    new_labels: NewLabels | None = None  # None: new labels start at log(EPS) (see the module docstring)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Features as the weights read them."""
        return (np.asarray(features, np.float32) - self.mean) / self.scale

    def breed_logits(self, base_breeds: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(n, labels) logits from the base's probabilities and the photos' features."""
        offset = np.full((len(base_breeds), self.labels), np.log(EPS), np.float32)
        offset[:, : self.base_labels] = np.log(np.asarray(base_breeds, np.float32) + EPS)
        if self.new_labels is not None:
            offset[:, self.base_labels :] = self.new_labels.logits(base_breeds, features)
        if len(self.classes):
            offset[:, self.classes] += self.standardise(features) @ self.weights + self.bias
        return offset

    def apply(self, base: Outputs) -> Outputs:
        """The learned model's outputs from the base model's outputs (features included)."""
        if base.features is None:
            raise ModelFileError("the base model gives no features; a learned head cannot run on it")
        logits = self.breed_logits(base.breeds, base.features)
        breeds = softmax(logits)
        dog = base.dog
        if dog is not None and self.dog_weights is not None:
            dog = sigmoid(logit(dog) + self.standardise(base.features) @ self.dog_weights + self.dog_bias)
        return Outputs(breeds=breeds, dog=dog, features=base.features)

    def arrays(self) -> dict[str, np.ndarray]:
        """The head as named arrays, for np.savez."""
        arrays = {name: np.asarray(getattr(self, name)) for name in ("mean", "scale", "classes", "weights", "bias")}
        arrays["sizes"] = np.array([self.base_labels, self.labels])
        if self.dog_weights is not None:
            arrays["dog_weights"] = np.asarray(self.dog_weights, np.float32)
            arrays["dog_bias"] = np.array(self.dog_bias, np.float32)
        if self.new_labels is not None:
            arrays |= self.new_labels.arrays()
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> Head:
        """The head saved by `arrays`."""
        base_labels, labels = (int(x) for x in arrays["sizes"])
        return cls(
            mean=arrays["mean"].astype(np.float32), scale=arrays["scale"].astype(np.float32),
            classes=arrays["classes"].astype(np.int64), weights=arrays["weights"].astype(np.float32),
            bias=arrays["bias"].astype(np.float32), base_labels=base_labels, labels=labels,
            dog_weights=arrays["dog_weights"].astype(np.float32) if "dog_weights" in arrays else None,
            dog_bias=float(arrays["dog_bias"]) if "dog_bias" in arrays else 0.0,
            new_labels=NewLabels.from_arrays(arrays),
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, float32."""
    return (1.0 / (1.0 + np.exp(-np.clip(values, -60, 60)))).astype(np.float32)


def logit(probabilities: np.ndarray) -> np.ndarray:
    """The inverse of sigmoid, for probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probabilities, np.float32), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def learned_model_info(base: ModelInfo, labels: tuple[str, ...], min_confidence: float, min_dog: float,
                       model_version: str, extra: dict) -> ModelInfo:
    """The model info of a learned model: the base's input facts, its own labels, thresholds and version.

    The one place where a learned model's labels are set (new labels have no Stanford synset id).
    """
    return dataclasses.replace(
        base, labels=tuple(labels), min_confidence=min_confidence, min_dog=min_dog, model_version=model_version,
        breeds_output=None, dog_output=None, features_output=None, extra={**extra, "base_model_version": base.model_version},
    )


def is_learned_model(path: str | os.PathLike) -> bool:
    """Whether `path` is a learned model's folder."""
    return (Path(path) / LEARNED_FILE).is_file()


def _read_document(folder: Path) -> dict:
    try:
        document = json.loads((folder / LEARNED_FILE).read_text(encoding="utf-8"))
        if document.get("format") not in READABLE_FORMATS:
            raise ValueError(f"in the format {document.get('format')!r}, which this dogtag does not read "
                             f"(it reads {', '.join(READABLE_FORMATS)}): update dogtag, or learn again with this one")
        return document
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{folder}: not a usable learned model ({error}); run `dogtag learn` again") from error


def _info(folder: Path, document: dict, base: ModelInfo) -> ModelInfo:
    thresholds = document["thresholds"]
    return learned_model_info(base, tuple(document["labels"]), float(thresholds["min_confidence"]),
                              float(thresholds["min_dog"]), str(document["model_version"]),
                              {"learned": document.get("learned", {})})


def base_file(folder: str | os.PathLike) -> Path:
    """The base model file inside a learned model's folder (read from learned.json, nothing loaded)."""
    folder = Path(folder)
    return folder / _read_document(folder)["base"]["file"]


def read_info(path: str | os.PathLike) -> ModelInfo:
    """The model info of a model file or a learned model's folder, without loading a runtime."""
    path = Path(path)
    if not is_learned_model(path):
        return read_model_info(path)
    document = _read_document(path)
    return _info(path, document, read_model_info(path / document["base"]["file"]))


class LearnedModel:
    """A learned model folder, opened: the same face as runtime.Model (info, run, run_all)."""

    def __init__(self, folder: str | os.PathLike, num_threads: int | None = None):
        self.path = Path(folder)
        document = _read_document(self.path)
        try:
            with np.load(self.path / HEAD_FILE) as arrays:
                self.head = Head.from_arrays(arrays)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelFileError(f"{self.path}: not a usable learned model ({error}); run `dogtag learn` again") from error
        self.base = Model(self.path / document["base"]["file"], num_threads=num_threads)
        if self.base.features_output is None:
            raise ModelFileError(f"{self.path}: its base model gives no features; run `dogtag learn` again")
        if self.base.info.model_version != document["base"]["model_version"]:
            raise ModelFileError(f"{self.path}: its base model file is not the one it was learned on; "
                                 "run `dogtag learn` again")
        labels = tuple(document["labels"])
        if len(labels) != self.head.labels or tuple(labels[: self.head.base_labels]) != self.base.info.labels:
            raise ModelFileError(f"{self.path}: its labels do not fit its head; run `dogtag learn` again")
        self.document = document
        self.info = _info(self.path, document, self.base.info)
        self.runtime, self.batchable = self.base.runtime, self.base.batchable

    @property
    def base_model_version(self) -> str:
        """The version of the base model whose features the head reads (keys cached embeddings)."""
        return self.base.info.model_version

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Breed probabilities (n, len(labels)) and dog probabilities (n,), as runtime.Model.run."""
        outputs = self.run_all(pixels)
        return outputs.breeds, outputs.dog

    def run_all(self, pixels: np.ndarray) -> Outputs:
        """Every output of one base model call, through the head (features as the cache keeps them, so
        that predict and tagging from cached embeddings agree to the last digit)."""
        return self.head.apply(as_stored(self.base.run_all(pixels)))


def open_model(path: str | os.PathLike, num_threads: int | None = None) -> Model | LearnedModel:
    """A model file (.tflite / .onnx) or a learned model's folder, opened."""
    if Path(path).is_dir():
        if not is_learned_model(path):
            raise ModelFileError(f"{path}: a folder, but not a learned model (no {LEARNED_FILE}); "
                                 "pass a .tflite / .onnx file or a folder written by `dogtag learn`")
        return LearnedModel(path, num_threads=num_threads)
    return Model(path, num_threads=num_threads)


def save_learned_model(folder: str | os.PathLike, base_file: str | os.PathLike, base_info: ModelInfo,
                       head: Head, labels: tuple[str, ...], thresholds: dict, model_version: str,
                       learned: dict, card: str, bank_file: str | os.PathLike | None = None) -> Path:
    """Write a learned model folder (replacing one there), complete or not at all.

    `bank_file`, the base's bank (dogtag.learn.bank), is kept beside the base file as base.bank.npz,
    so that learning again from this folder keeps the base's breeds as well.
    """
    import shutil
    import tempfile

    folder, base_file = Path(folder), Path(base_file)
    if folder.exists() and not is_learned_model(folder):
        raise ModelFileError(f"{folder}: exists and is not a learned model; choose another --out")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        base_name = f"base{base_file.suffix.lower()}"
        shutil.copyfile(base_file, staging / base_name)
        if bank_file is not None:
            shutil.copyfile(bank_file, staging / "base.bank.npz")
        np.savez(staging / HEAD_FILE, **head.arrays())
        document = {"format": LEARNED_FORMAT, "labels": list(labels), "thresholds": thresholds,
                    "model_version": model_version, "learned": learned,
                    "base": {"file": base_name, "model_version": base_info.model_version,
                             "source": str(base_file)}}
        (staging / LEARNED_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
