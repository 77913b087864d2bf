"""Shared fixtures: generated photos, a miniature Stanford Dogs tree, and the real copy when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import make_mini_stanford_dogs, make_photo

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DOGTAG_SHARED", REPO.parent / "shared"))
STANFORD_DOGS = SHARED / "datasets" / "stanford-dogs"
KERAS_HOME = SHARED / "weights" / "keras"


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """A folder of a few small generated photos in several formats, one in a sub-folder."""
    folder = tmp_path / "photos"
    (folder / "kennel_2").mkdir(parents=True)
    make_photo(folder / "rex.jpg", (64, 48), seed=1)
    make_photo(folder / "bella.png", (40, 60), seed=2)
    make_photo(folder / "kennel_2" / "max.jpg", (80, 80), seed=3)
    return folder


@pytest.fixture
def mini_stanford(tmp_path: Path) -> Path:
    """A miniature Stanford Dogs tree in the official layout: 3 breeds, 6 train and 4 test photos each."""
    return make_mini_stanford_dogs(tmp_path / "stanford-dogs", breeds=3, train_per_breed=6, test_per_breed=4)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (checks on real data run where ../shared is present)")
    return path


@pytest.fixture(scope="session")
def stanford_dogs() -> Path:
    """The real Stanford Dogs copy in ../shared; the test is skipped, saying so, when it is absent."""
    return _require(STANFORD_DOGS, "the Stanford Dogs copy")


@pytest.fixture(scope="session")
def keras_home() -> Path:
    """The KERAS_HOME with MobileNetV2 ImageNet weights in ../shared; skipped when absent."""
    return _require(KERAS_HOME / "models", "the Keras ImageNet weights")


@pytest.fixture(autouse=True, scope="session")
def mlflow_store(tmp_path_factory) -> Path:
    """Runs trained by tests log to MLflow (where it is installed) in a store of their own, never ./mlruns."""
    store = tmp_path_factory.mktemp("mlruns")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = store.as_uri()
    yield store
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
