"""The `unsure` rule, one rule for the edge app, training figures and benchmarks: a photo is
`not_a_dog` below min_dog, else `unsure` below min_confidence, else `dog`."""

from __future__ import annotations

import numpy as np

from dogtag.edge_app.classifier import photo_status, statuses


def test_a_photo_is_not_a_dog_first_then_unsure_then_dog():
    confidences = [0.95, 0.95, 0.40, 0.40, 0.60]
    dogs = [0.90, 0.20, 0.90, 0.20, 0.50]

    got = statuses(confidences, dogs, min_confidence=0.6, min_dog=0.5)

    assert list(got) == ["dog", "not_a_dog", "unsure", "not_a_dog", "dog"], "thresholds are reached, not passed"
    assert [photo_status(c, d, 0.6, 0.5) for c, d in zip(confidences, dogs, strict=True)] == list(got)


def test_a_model_without_a_dog_output_never_calls_a_photo_not_a_dog():
    got = statuses(np.array([0.1, 0.9]), None, min_confidence=0.5, min_dog=0.99)

    assert list(got) == ["unsure", "dog"]
    assert photo_status(0.1, None, 0.5, 0.99) == "unsure"
