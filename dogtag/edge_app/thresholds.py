"""The thresholds a model ships with, min_confidence and min_dog, tuned on validation predictions.

NumPy only (no TensorFlow): transfer and scratch training tune them here, and so can `dogtag learn`
on a Raspberry Pi. The edge app applies them with edge_app.classifier.photo_status.
"""

from __future__ import annotations

import numpy as np

# Stanford validation photos are ImageNet photos, easier than real ones: precision measured there flatters,
# and 1-2% of them are dogs the ImageNet classifier gives almost no dog mass (people, crowds, odd crops).
# Letting 97.5% of validation dogs through put min_dog near 0.3 for EfficientNet-Lite2, where 1% of the
# dogs-in-the-wild not-dogs pass and 1% of its dogs are rejected; 99% put it at 0.05, where 31% pass.
TARGET_PRECISION, DOG_RECALL = 0.95, 0.975
MAX_MIN_DOG = 0.5  # above it a dog the model is unsure of would be called no dog at all


def tune_thresholds(probabilities: np.ndarray, labels: np.ndarray, dog: np.ndarray | None = None,
                    precision: float = TARGET_PRECISION, dog_recall: float = DOG_RECALL) -> dict:
    """Thresholds for the edge app, from validation data (breed probabilities, true labels, dog probabilities).

    min_confidence: the lowest confidence above which `precision` of the named breeds are right.
    min_dog: the highest value (up to MAX_MIN_DOG) that still lets `dog_recall` of the validation dogs
    through; Stanford Dogs has no photos without a dog, so how many of those pass is checked on
    dogs-in-the-wild. A model without a dog output (`dog` None) gets no min_dog (nor its figure):
    the edge app never reads it for such a model.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    min_confidence = 0.0
    for threshold in np.round(np.arange(0.0, 0.96, 0.05), 2):
        kept = confidence >= threshold
        if kept.any() and correct[kept].mean() >= precision:
            min_confidence = float(threshold)
            break
    kept = confidence >= min_confidence
    thresholds = {
        "min_confidence": min_confidence,
        "target_precision": precision,
        "validation_precision_above_min_confidence": round(float(correct[kept].mean()), 4),
        "validation_coverage_above_min_confidence": round(float(kept.mean()), 4),
    }
    if dog is not None:
        steps = np.round(np.arange(0.05, MAX_MIN_DOG + 0.01, 0.05), 2)
        min_dog = max((float(t) for t in steps if np.mean(dog >= t) >= dog_recall), default=0.05)
        thresholds |= {"min_dog": min_dog,
                       "validation_dogs_below_min_dog": round(float(np.mean(dog < min_dog)), 4)}
    return thresholds
