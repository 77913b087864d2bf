"""Every transfer run is measured on real photos from outside ImageNet (dogs-in-the-wild), at full
size and as 96 px thumbnails, and can learn from a stronger run (knowledge distillation).

A generated folder in the dogs-in-the-wild layout stands in for the real set here.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from dogtag.train.dataset import read_official  # noqa: E402
from dogtag.train.features import cache_dir, cache_features, feature_extractor  # noqa: E402
from dogtag.train.preprocess import Preprocessing  # noqa: E402
from dogtag.train.transfer import training_targets  # noqa: E402
from dogtag.train.transfer_config import TransferConfig  # noqa: E402
from dogtag.train.transfer_run import run_transfer  # noqa: E402
from dogtag.train.wild import NOT_A_DOG, read_wild, wild_metrics, wild_split  # noqa: E402
from tests.fakes import BREED_COLOURS, BREED_FOLDERS, make_photo  # noqa: E402
from tests.test_train_transfer import SIZE, cache_everything, offline_class_index, random_weights  # noqa: E402, F401


def make_wild_folder(root, breeds: int = 3, dogs_per_breed: int = 2, not_dogs: int = 3):
    """dogs/<wnid>-<Breed>/*.jpg, not_dogs/*.jpg and labels.csv, as the real set has them."""
    rows = []
    for label, folder in enumerate(BREED_FOLDERS[:breeds]):
        for n in range(dogs_per_breed):
            path = f"dogs/{folder}/quiz_{n}.jpg"
            make_photo(root / path, (200, 150), seed=100 + 10 * label + n, colour=BREED_COLOURS[label])
            source = "LTSACH/AILearningHub" if n == 0 else "datarobot-community/dogsnap-workshop"
            rows.append([path, folder.split("-")[0], folder.split("-", 1)[1], source, "0" * 40, path])
    for n in range(not_dogs):
        make_photo(root / f"not_dogs/wall_{n}.jpg", (120, 160), seed=500 + n, colour=(128, 128, 128))
        rows.append([f"not_dogs/wall_{n}.jpg", "", "", "KGrastorf/Photography2", "0" * 40, f"wall_{n}.jpg"])
    with (root / "labels.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "wnid", "breed", "source_repo", "source_commit", "source_path"])
        writer.writerows(rows)
    return root


def test_dogs_in_the_wild_is_read_in_the_models_breed_order_with_not_dogs_apart(tmp_path, mini_stanford):
    wild_root = make_wild_folder(tmp_path / "wild")
    train = read_official(mini_stanford, "train")
    wild = read_wild(wild_root, list(reversed(train.breeds)), list(reversed(train.wnids)))
    labels = [s.label for s in wild.dataset.samples]
    assert labels == [2, 2, 1, 1, 0, 0, NOT_A_DOG, NOT_A_DOG, NOT_A_DOG]  # Chihuahua is last in that order
    assert wild.sources[0] == "LTSACH/AILearningHub"

    thumbs = wild_split("wild96", wild_root, train.breeds, train.wnids, tmp_path / "thumbs")
    sizes = [Image.open(s.path).size for s in thumbs.dataset.samples]
    assert sizes[0] == (128, 96) and sizes[-1] == (96, 128)  # shorter side 96, aspect kept
    assert (wild_root / "dogs" / BREED_FOLDERS[0] / "quiz_0.jpg").exists()  # originals untouched

    with pytest.raises(ValueError, match="row 2: breed n02085620 is not one of the model's breeds"):
        read_wild(wild_root, ["Pekinese"], ["n02086079"])


def test_wild_metrics_count_the_dog_gate_and_the_confident_tags_as_the_app_does():
    breeds = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.5, 0.5]])
    dog = np.array([0.9, 0.9, 0.3, 0.8, 0.1])
    labels = np.array([0, 1, 1, NOT_A_DOG, NOT_A_DOG])
    scores = wild_metrics(breeds, dog, labels, ["a", "b", "a", "c", "c"], min_confidence=0.7, min_dog=0.5)
    assert scores["dogs"] == 3 and scores["not_dogs"] == 2
    assert scores["top1"] == pytest.approx(2 / 3, abs=1e-4)  # the gate does not change which breed is named
    assert scores["dogs_rejected"] == pytest.approx(1 / 3, abs=1e-4)  # the third dog falls under min_dog
    assert scores["not_dogs_called_dog"] == 0.5
    assert scores["dogs_confident"] == pytest.approx(1 / 3, abs=1e-4) and scores["confident_right"] == 1.0


def test_a_run_is_measured_on_dogs_in_the_wild_and_teaches_a_student_run(
        mini_stanford, tmp_path, offline_class_index, random_weights):  # noqa: F811 (fixtures imported above)
    wild_root = make_wild_folder(tmp_path / "wild")
    cache = tmp_path / "cache"
    weights = random_weights("mobilenet_v2")
    cache_everything(mini_stanford, cache, "mobilenet_v2", weights)
    train = read_official(mini_stanford, "train")
    extractor = feature_extractor("mobilenet_v2", SIZE, weights=weights)
    for split in ("wild", "wild96"):
        dataset = wild_split(split, wild_root, train.breeds, train.wnids, cache / "wild96-photos").dataset
        cache_features(dataset, cache_dir(cache, "mobilenet_v2", Preprocessing(size=SIZE), split, "plain"),
                       extractor, Preprocessing(size=SIZE), log=lambda line: None)

    config = TransferConfig(data=mini_stanford, cache=cache, wild=wild_root, size=SIZE, weights=weights,
                            head_epochs=2, fine_tune_epochs=0, batch_size=8, validation_fraction=0.34)
    teacher = run_transfer(tmp_path / "teacher", config, log=lambda line: None)
    for split in ("wild", "wild96"):
        assert teacher[split]["dogs"] == 6 and teacher[split]["not_dogs"] == 3
        assert 0.0 <= teacher[split]["top1"] <= teacher[split]["top5"] <= 1.0
        assert 0.0 <= teacher[split]["baseline_top1"] <= 1.0
    assert json.loads((tmp_path / "teacher" / "metrics.json").read_text())["wild"] == teacher["wild"]
    predictions = np.load(tmp_path / "teacher" / "train_predictions.npz")
    assert predictions["probabilities"].shape == (18, 3)
    np.testing.assert_allclose(predictions["probabilities"].astype("float32").sum(axis=1), 1.0, atol=1e-2)

    student = run_transfer(tmp_path / "student", replace(config, distill_from=tmp_path / "teacher"),
                           log=lambda line: None)
    assert student["distilled_from"] == str(tmp_path / "teacher")

    # Teacher and student averaged: scored like a run, and a teacher in its own right.
    from dogtag.train.ensemble import ensemble_runs
    from dogtag.train.transfer_run import read_teacher

    both = ensemble_runs([tmp_path / "teacher", tmp_path / "student"], tmp_path / "ensemble", [3, 1],
                         wild_root=wild_root, log=lambda line: None)
    saved = [np.load(tmp_path / run / "predictions.npz") for run in ("teacher", "student")]
    averaged = 0.75 * saved[0]["test"].astype("float64") + 0.25 * saved[1]["test"]
    assert both["top1"] == pytest.approx(np.mean(averaged.argmax(1) == saved[0]["test_labels"]), abs=1e-4)
    assert both["wild"]["dogs"] == 6 and both["weights"] == [0.75, 0.25]
    assert read_teacher(tmp_path / "ensemble", train).shape == (18, 3)
    np.savez(tmp_path / "teacher" / "train_predictions.npz", labels=predictions["labels"][::-1],
             probabilities=predictions["probabilities"])
    with pytest.raises(ValueError, match="trained on other photos"):
        run_transfer(tmp_path / "student2", replace(config, distill_from=tmp_path / "teacher"), log=lambda line: None)


def test_distillation_targets_mix_the_teachers_probabilities_with_the_true_labels():
    teacher = np.array([[0.2, 0.8], [0.5, 0.5]], dtype="float32")
    config = TransferConfig(distill_weight=0.7)
    targets = training_targets(np.array([0, 1]), 2, config, teacher)
    np.testing.assert_allclose(targets, [[0.3 + 0.14, 0.56], [0.35, 0.3 + 0.35]], atol=1e-6)
    np.testing.assert_array_equal(training_targets(np.array([1]), 2, config), [[0.0, 1.0]])


def test_thresholds_are_tuned_on_validation_photos_for_precision_and_for_letting_dogs_through():
    from dogtag.edge_app.thresholds import tune_thresholds

    sure = np.tile([[0.9, 0.1]], (100, 1))  # all right
    torn = np.tile([[0.6, 0.4]], (100, 1))  # half right
    probabilities = np.concatenate([sure, torn])
    labels = np.array([0] * 100 + [0, 1] * 50)
    dog = np.array([0.9] * 194 + [0.2] * 6)  # 3% of the dogs get little dog mass

    thresholds = tune_thresholds(probabilities, labels, dog, precision=0.95, dog_recall=0.975)
    assert thresholds["min_confidence"] == 0.65  # the first at which 95% of the named breeds are right
    assert thresholds["validation_coverage_above_min_confidence"] == 0.5
    assert thresholds["min_dog"] == 0.2  # above it, more than 2.5% of the dogs would be turned away
    assert tune_thresholds(probabilities, labels, dog, dog_recall=0.96)["min_dog"] == 0.5  # capped at 0.5
    # A model without a dog output (the scratch CNN) gets a min_confidence and no min_dog to misread.
    no_dog_output = tune_thresholds(probabilities, labels)
    assert no_dog_output["min_confidence"] == 0.65 and "min_dog" not in no_dog_output


def test_dogs_in_the_wild_figures_count_a_photo_as_the_edge_app_would_tag_it():
    from dogtag.edge_app.classifier import photo_status

    breeds = np.array([[0.9, 0.1], [0.55, 0.45], [0.8, 0.2], [0.7, 0.3]])
    dog = np.array([0.9, 0.9, 0.1, 0.2])
    labels = np.array([0, 0, 1, NOT_A_DOG])
    figures = wild_metrics(breeds, dog, labels, ["a"] * 4, min_confidence=0.6, min_dog=0.3)
    statuses = [photo_status(max(b), d, 0.6, 0.3) for b, d in zip(breeds, dog, strict=True)]
    assert statuses == ["dog", "unsure", "not_a_dog", "not_a_dog"]
    assert figures["dogs_rejected"] == round(1 / 3, 4)  # the dog the edge app would call no dog
    assert figures["dogs_confident"] == round(1 / 3, 4)  # only the first is tagged `dog`
    assert figures["not_dogs_called_dog"] == 0.0
