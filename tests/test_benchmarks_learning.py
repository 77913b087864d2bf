"""The learning benchmark (python -m dogtag.benchmarks.learning) on a tiny generated world, so it cannot rot.

The tiny model knows three tints as "breeds" (tests/model_fixtures.py); a Stanford-like folder of
tinted photos stands for Stanford Dogs and a labels.csv of more for dogs-in-the-wild. No ../shared.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dogtag.benchmarks.learning import main
from dogtag.edge_app.classifier import Classifier
from tests.edge_fixtures import make_breed_photo
from tests.model_fixtures import TINY_LABELS, tiny_model_with_bank

FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog")
HELD_OUT = "Maltese dog"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny int8 model with a bank beside it, as a bundled model has."""
    return tiny_model_with_bank(tmp_path_factory.mktemp("models"))


@pytest.fixture
def datasets(tmp_path) -> tuple[Path, Path]:
    """A Stanford-like tree (train/ and test/, a folder per breed) and a dogs-in-the-wild-like set."""
    stanford = tmp_path / "stanford"
    for split, count, offset in (("train", 6, 0), ("test", 4, 1000)):
        for breed, folder in enumerate(FOLDERS):
            for i in range(count):
                make_breed_photo(stanford / split / folder / f"{i}.jpg", breed, seed=offset + 10 * breed + i)
    wild = tmp_path / "wild"
    rows = []
    for breed, folder in enumerate(FOLDERS):
        for i in range(5):
            name = f"dogs/{folder}/{i}.jpg"
            make_breed_photo(wild / name, breed, seed=5000 + 10 * breed + i, size=160)
            rows.append({"path": name, "wnid": folder.split("-")[0], "source_repo": "somewhere/photos"})
    for i in range(5):
        make_breed_photo(wild / f"not_dogs/{i}.jpg", None, seed=6000 + i, size=160)
        rows.append({"path": f"not_dogs/{i}.jpg", "wnid": "", "source_repo": "somewhere/photos"})
    with (wild / "labels.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, ["path", "wnid", "source_repo"])
        writer.writeheader()
        writer.writerows(rows)
    return stanford, wild


def test_the_learning_benchmark_measures_new_labels_a_shelters_photos_flip_and_the_cost(
        tiny_model, datasets, tmp_path, monkeypatch):
    stanford, wild = datasets
    monkeypatch.setenv("DOGTAG_CACHE", str(tmp_path / "user-cache"))
    out = tmp_path / "results"
    result = CliRunner().invoke(main, [
        "--models", str(tiny_model), "--data", str(stanford), "--wild", str(wild), "--cache", str(tmp_path / "cache"),
        "--held-out", HELD_OUT, "--ks", "2,4", "--draws", "2", "--cost-photos", "4", "--cost-megapixels", "0.05",
        "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "learning.json").read_text())
    (figures,) = report["results"]

    new = figures["new_labels"]
    assert (new["test_photos_new"], new["test_photos_others"]) == (4, 8)
    # without its column the base can never say Maltese; learned back from 4 photos it does
    assert new["by_k"]["4"]["top1_new"] > 0.5
    assert len(new["by_k"]["2"]["draws"]) == 2

    # the base's figures are what the tiny model itself says of those photos
    classifier = Classifier(tiny_model, names="stanford")  # the benchmark scores the model's own labels
    dogs = sorted((wild / "dogs").glob("*/*.jpg"))
    right = np.mean([classifier.predict(p).breed == TINY_LABELS[FOLDERS.index(p.parent.name)] for p in dogs])
    for kind in ("wild", "wild96"):
        shelter = figures["shelter"][kind]
        assert shelter["photos"] == 20 and shelter["base"]["dogs"] == 15
        assert shelter["learned"]["dogs"] == 15
        assert figures["flip"][kind]["tagging"]["plain"]["top1"] == shelter["base"]["top1"]
    assert figures["shelter"]["wild"]["base"]["top1"] == pytest.approx(right, abs=1e-4)

    cost = figures["cost"]
    assert cost["first"]["corrections"] == 4 and cost["after_more"]["corrections"] == 14
    assert cost["first"]["seconds"] > 0 and cost["after_more"]["seconds"] > 0
    assert "| first (empty cache) | 4 |" in (out / "learning.md").read_text()
