"""Accuracy of exported model files on real photos from outside ImageNet (dogs-in-the-wild).

Each photo goes through the edge app's own path (`load_photo`, the model's resize, `Classifier`'s
thresholds), as `dogtag tag` would see it: at full size and shrunk to a 96 px thumbnail first.
Each is scored twice: over the model's 120 Stanford labels (`wild`, `wild96`, as `--names stanford`
answers) and with the breeds merged as `dogtag tag` answers by default (`wild_merged`,
`wild96_merged`: the Eskimo dog's probability added to the Siberian Husky's; see edge_app.breeds).

    python -m dogtag.benchmarks.wild dogtag/models/accurate_tflite_int8.tflite models/fast_tflite_int8.tflite
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from dogtag.edge_app.breeds import model_label_map
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.images import load_photo
from dogtag.train.wild import DEFAULT_WILD, WILD_SPLITS, wild_metrics, wild_split


def model_wnids(classifier: Classifier) -> list[str]:
    """The wnid of each breed output, which the model file carries (exported by `dogtag export`)."""
    wnids = classifier.info.extra.get("wnids")
    if not wnids or len(wnids) != len(classifier.info.labels):
        raise ValueError(f"{classifier.model.path}: the model carries no breed wnids, so dogs-in-the-wild "
                         "labels cannot be matched to its outputs; re-export it with `dogtag export`")
    return list(wnids)


def wild_accuracy(classifier: Classifier, root: Path = DEFAULT_WILD, work: Path | None = None,
                  batch_size: int = 32) -> dict:
    """{'wild': metrics, 'wild96': metrics, 'wild_merged': ..., 'wild96_merged': ...} of one model
    (see train.wild.wild_metrics and the module docstring)."""
    results = {}
    merge = model_label_map(classifier.info)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(work or scratch) / "wild96-photos"
        for split in WILD_SPLITS:
            wild = wild_split(split, root, list(classifier.info.labels), model_wnids(classifier), folder)
            size, resize = classifier.info.input_size, classifier.info.resize
            breeds, dogs = [], []
            samples = wild.dataset.samples
            for start in range(0, len(samples), batch_size):
                pixels = np.stack([load_photo(s.path, size, resize) for s in samples[start:start + batch_size]])
                batch_breeds, batch_dogs = classifier.model.run(pixels)
                breeds.append(batch_breeds)
                dogs.append(np.ones(len(pixels)) if batch_dogs is None else batch_dogs)
            breeds, dogs = np.concatenate(breeds), np.concatenate(dogs)
            labels = np.array([s.label for s in samples])
            results[split] = wild_metrics(breeds, dogs, labels, wild.sources, classifier.min_confidence,
                                          classifier.min_dog)
            merged_labels = np.array([merge.index[label] if label >= 0 else label for label in labels])
            results[f"{split}_merged"] = wild_metrics(merge.merge(breeds), dogs, merged_labels, wild.sources,
                                                      classifier.min_confidence, classifier.min_dog)
    return results


def main(paths: list[str]) -> None:
    """Print each model's dogs-in-the-wild metrics as JSON lines."""
    if not paths:
        raise SystemExit("usage: python -m dogtag.benchmarks.wild MODEL_FILE [MODEL_FILE ...]")
    for path in paths:
        print(json.dumps({"model": path, **wild_accuracy(Classifier(path))}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
