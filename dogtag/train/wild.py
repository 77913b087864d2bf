"""dogs-in-the-wild: real photos from outside ImageNet, the development set for real-world accuracy.

Its layout (see its README): `dogs/<wnid>-<Breed>/*.jpg` for 339 dogs of 116 Stanford breeds,
`not_dogs/*.jpg` for 103 photos without a dog, and `labels.csv` naming each photo's source. It is
for measuring and choosing, never for training. Besides the photos as they are, every model is
measured on the same photos shrunk to 96 px thumbnails, as shelter databases store them.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogtag.edge_app.classifier import statuses
from dogtag.train.dataset import Dataset, Sample

DEFAULT_WILD = Path(os.environ.get("DOGTAG_WILD", "../shared/datasets/dogs-in-the-wild"))
THUMBNAIL_SIZE = 96  # shorter side, in pixels (a 4:3 photo becomes 128 x 96)
NOT_A_DOG = -1  # the label of a photo without a dog
# Sources the README singles out: Wikipedia images that ImageNet-1k may hold, and casual snapshots.
MAYBE_IN_IMAGENET = "datarobot-community/dogsnap-workshop"
CASUAL_SNAPSHOTS = "LTSACH/AILearningHub"
WILD_SPLITS = ("wild", "wild96")  # as they are; shrunk to thumbnails


@dataclass(frozen=True)
class WildSet:
    """The photos (dogs labelled in the Stanford breed order, not-dogs NOT_A_DOG) and their sources."""

    dataset: Dataset
    sources: list[str]


def read_wild(root: str | Path, breeds: list[str], wnids: list[str]) -> WildSet:
    """Read labels.csv; breeds are indexed as in the Stanford split (`wnids` gives its order)."""
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{root}: no labels.csv; is this the dogs-in-the-wild folder?")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    samples, sources = [], []
    with table.open(newline="") as file:
        for row_number, row in enumerate(csv.DictReader(file), start=2):
            wnid = row["wnid"].strip()
            if wnid and wnid not in index:
                raise ValueError(f"{table}, row {row_number}: breed {wnid} is not one of the model's breeds")
            samples.append(Sample(root / row["path"], index[wnid] if wnid else NOT_A_DOG))
            sources.append(row["source_repo"])
    return WildSet(Dataset(samples, list(breeds), list(wnids)), sources)


def thumbnails(wild: WildSet, folder: Path, size: int = THUMBNAIL_SIZE) -> WildSet:
    """The same photos shrunk so that the shorter side is `size` px (JPEG, quality 90; never enlarged),
    made once in `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for number, sample in enumerate(wild.dataset.samples):
        target = folder / f"{number:04d}-{sample.path.stem}-{size}s.jpg"
        if not target.exists():
            with Image.open(sample.path) as image:
                image = image.convert("RGB")
                scale = min(size / min(image.size), 1.0)
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                     Image.Resampling.LANCZOS)
                temporary = target.with_suffix(".tmp.jpg")
                image.save(temporary, quality=90)
                temporary.rename(target)
        samples.append(Sample(target, sample.label))
    return WildSet(Dataset(samples, wild.dataset.breeds, wild.dataset.wnids), wild.sources)


def wild_split(name: str, root: str | Path, breeds: list[str], wnids: list[str], thumbnail_folder: Path) -> WildSet:
    """'wild' (the photos as they are) or 'wild96' (their 96 px thumbnails)."""
    wild = read_wild(root, breeds, wnids)
    if name == "wild":
        return wild
    if name == "wild96":
        return thumbnails(wild, thumbnail_folder)
    raise ValueError(f"unknown dogs-in-the-wild split {name!r}; use one of {WILD_SPLITS}")


def wild_metrics(
    breed_probabilities: np.ndarray, dog_probabilities: np.ndarray, labels: np.ndarray, sources: list[str],
    min_confidence: float, min_dog: float,
) -> dict:
    """What a volunteer sees on real photos: breed accuracy, the dog gate, and confident tags.

    top1 counts every dog photo (whatever the dog gate says); a photo's status (`dog`, `unsure`,
    `not_a_dog`) comes from the edge app's own rule, edge_app.classifier.statuses.
    """
    labels = np.asarray(labels)
    sources = np.asarray(sources)
    dogs = labels != NOT_A_DOG
    predicted = breed_probabilities.argmax(axis=1)
    right = (predicted == labels) & dogs
    status = statuses(breed_probabilities.max(axis=1), dog_probabilities, min_confidence, min_dog)
    is_dog = status != "not_a_dog"
    confident = status == "dog"

    def top1(mask):
        return round(float(right[mask].mean()), 4) if mask.any() else None

    top5 = np.argsort(-breed_probabilities, axis=1)[:, :5]
    return {
        "dogs": int(dogs.sum()), "not_dogs": int((~dogs).sum()),
        "top1": top1(dogs),
        "top5": round(float(np.any(top5[dogs] == labels[dogs, None], axis=1).mean()), 4),
        "top1_without_maybe_imagenet": top1(dogs & (sources != MAYBE_IN_IMAGENET)),
        "top1_casual_snapshots": top1(dogs & (sources == CASUAL_SNAPSHOTS)),
        "not_dogs_called_dog": round(float(is_dog[~dogs].mean()), 4) if (~dogs).any() else None,
        "dogs_rejected": round(float((~is_dog[dogs]).mean()), 4),
        "confident_right": round(float(right[confident & dogs].mean()), 4) if (confident & dogs).any() else None,
        "dogs_confident": round(float(confident[dogs].mean()), 4),
        "min_confidence": min_confidence, "min_dog": min_dog,
    }
