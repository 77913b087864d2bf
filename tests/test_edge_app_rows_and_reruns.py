"""What Dogtag writes and prints must never contradict itself: rows, `dogtag predict`, reruns, exit codes.

These run the bundled fast model on drawn photos (no TensorFlow needed).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.classifier import Prediction
from dogtag.edge_app.cli import describe_prediction
from tests.edge_fixtures import make_breed_photo


def run(*args) -> object:
    return CliRunner().invoke(main, [*map(str, args)])


def test_predict_says_why_a_photo_is_not_a_dog_and_lists_no_breeds_for_it(tmp_path):
    make_breed_photo(tmp_path / "wall.jpg", None)  # grey noise

    result = run("predict", tmp_path / "wall.jpg", "--model", "fast")

    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"\S*wall\.jpg: not a dog \(dog probability \d+%, below the \d+% this model needs to call "
                        r"a photo a dog\)\n", result.stdout), result.stdout


def test_predict_says_why_it_is_unsure_and_lists_the_breeds_it_hesitates_between():
    classifier = SimpleNamespace(min_dog=0.4, min_confidence=0.5)
    unsure = Prediction("vizsla", 0.352, (("vizsla", 0.352), ("redbone", 0.301)), 0.97, "unsure")

    lines = describe_prediction("dog07.jpg", unsure, classifier)

    assert lines == ["dog07.jpg: unsure which breed, dog probability 97%; the best breed's 35.2% is below the 50% "
                     "this model needs to name one", "  1. vizsla    35.2%", "  2. redbone   30.1%"]
