"""`dogtag learn` from the shelter's side: tag, correct on the review page, learn, tag again.

The tiny models (tests/model_fixtures.py) know three "breeds", each a colour tint; yellow photos
are a breed they have never seen, which volunteers name "pit bull type".
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.learned import LEARNED_FILE
from dogtag.edge_app.model_file import ModelFileError
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.results import default_results_path, read_results
from dogtag.edge_app.reviews import Review, append_review, reviews_path
from dogtag.edge_app.runtime import Model
from dogtag.edge_app.tagging import tag_folders
from dogtag.learn import run as learn_run
from dogtag.learn.examples import gather, label_key
from dogtag.learn.fit import FitOptions
from dogtag.learn.run import learn
from tests.edge_fixtures import make_breed_photo
from tests.model_fixtures import TINY_LABELS, make_tiny_models, tiny_model_with_bank

YELLOW = 3  # breed_colour(3): a tint the tiny models were never trained on
NEW_LABEL = "pit bull type"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """Each test caches embeddings in a folder of its own, never in the user's ~/.cache."""
    monkeypatch.setenv("DOGTAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny int8 model with its bank beside it: its own training photos, as a bundled model has."""
    return tiny_model_with_bank(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tiny_model_without_bank(tmp_path_factory, tiny_model) -> Path:
    return Path(shutil.copy2(tiny_model, tmp_path_factory.mktemp("bare") / tiny_model.name))


@pytest.fixture
def shelter(tmp_path) -> Path:
    """Tagged photos of the three known tints, five yellow ones and one grey (not a dog)."""
    folder = tmp_path / "shelter"
    for breed in range(3):
        for i in range(3):
            make_breed_photo(folder / f"{TINY_LABELS[breed]}_{i}.png", breed, seed=10 * breed + i)
    for i in range(5):
        make_breed_photo(folder / f"yellow_{i}.png", YELLOW, seed=100 + i)
    make_breed_photo(folder / "wall.png", None, seed=200)
    return folder


def run(*args) -> object:
    return CliRunner().invoke(main, ["learn", *map(str, args)])


def correct(folder: Path, path: str, breed: str, kind: str = "other", when: str = "2026-12-01T08:00:00Z") -> None:
    append_review(reviews_path(default_results_path(folder)), Review(path, breed, kind, "Ana", when))


def test_a_new_label_corrected_on_the_review_page_is_learned_and_predicted_for_new_photos(
        tiny_model, shelter, tmp_path):
    pytest.importorskip("fastapi", reason="the review page needs the review extra")
    from fastapi.testclient import TestClient

    from dogtag.review.server import Options, ReviewServer

    tag_folders([shelter], Classifier(tiny_model, num_threads=1))
    server = ReviewServer(Options(folders=[str(shelter)], port=0, model=str(tiny_model), cache=str(tmp_path / "thumbs")))
    try:
        client = TestClient(server.app, base_url="http://127.0.0.1:8765")
        for i, spelling in enumerate(["pit bull type", "Pit Bull  type", "pit bull TYPE", "pit bull type"]):
            response = client.post("/api/reviews", json={"path": f"yellow_{i}.png", "reviewed_breed": spelling,
                                                         "reviewed_by": "Ana"})
            assert response.status_code == 200, response.text
    finally:
        server.socket.close()

    result = run(shelter, "--out", tmp_path / "learned", "--model", tiny_model)

    assert result.exit_code == 0, result.output
    assert "1 new: pit bull type" in result.output
    learned = Classifier(tmp_path / "learned", num_threads=1)
    assert learned.info.labels == (*TINY_LABELS, NEW_LABEL)
    new_yellow = make_breed_photo(tmp_path / "new" / "yellow.png", YELLOW, seed=999)
    new_red = make_breed_photo(tmp_path / "new" / "red.png", 0, seed=998)
    assert learned.predict(new_yellow).breed == NEW_LABEL
    assert learned.predict(new_red).breed == TINY_LABELS[0], "what the model knew is kept"
    # Tagging again with the learned model: the fifth yellow photo, never corrected, gets the new label.
    summary = tag_folders([shelter], learned, TagOptions(restart=True))
    rows = {row.path: row for row in read_results(default_results_path(shelter), "csv")[0]}
    assert summary.failed == 0
    assert rows["yellow_4.png"].breed == NEW_LABEL
    assert rows["Chihuahua_0.png"].breed == "Chihuahua"
    card = (tmp_path / "learned" / "MODEL_CARD.md").read_text()
    assert "- pit bull type: 4 photos (new label)" in card and tiny_model.name in card
    document = json.loads((tmp_path / "learned" / LEARNED_FILE).read_text())
    assert document["learned"]["labels"] == {NEW_LABEL: 4}
    assert document["learned"]["kfold"]["per_label"][NEW_LABEL]["new"] >= 3


def test_tagging_again_with_a_learned_model_reads_cached_embeddings_instead_of_decoding(
        tiny_model, shelter, tmp_path, monkeypatch):
    for i in range(4):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)
    assert run(shelter, "--out", tmp_path / "learned", "--model", tiny_model).exit_code == 0
    import dogtag.edge_app.tagging as tagging

    decoded = []

    def load_photo(path, *args, **kwargs):
        decoded.append(os.path.basename(path))
        return original(path, *args, **kwargs)

    original = tagging.load_photo
    monkeypatch.setattr(tagging, "load_photo", load_photo)
    learned = Classifier(tmp_path / "learned", num_threads=1)
    tag_folders([shelter], learned, TagOptions(restart=True))
    first = sorted(decoded)
    decoded.clear()
    tag_folders([shelter], learned, TagOptions(restart=True))

    assert "yellow_0.png" not in first, "learning cached the corrected photos"
    assert "Chihuahua_0.png" in first
    assert decoded == [], "the first tagging with the learned model cached every photo"
    rows = {row.path: row for row in read_results(default_results_path(shelter), "csv")[0]}
    assert rows["yellow_4.png"].breed == NEW_LABEL and rows["yellow_0.png"].breed == NEW_LABEL


def test_a_learned_model_of_a_newer_format_is_refused_with_what_to_do_and_the_first_format_still_reads(
        tiny_model, shelter, tmp_path):
    for i in range(4):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)
    assert run(shelter, "--out", tmp_path / "learned", "--model", tiny_model).exit_code == 0
    document_file = tmp_path / "learned" / LEARNED_FILE
    document = json.loads(document_file.read_text())

    document_file.write_text(json.dumps({**document, "format": "dogtag-learned/9"}))
    with pytest.raises(ModelFileError, match="update dogtag"):
        Classifier(tmp_path / "learned", num_threads=1)
    document_file.write_text(json.dumps({**document, "format": "dogtag-learned/1"}))
    assert NEW_LABEL in Classifier(tmp_path / "learned", num_threads=1).info.labels


def test_a_head_worse_on_held_out_corrections_is_refused_and_force_writes_it(tiny_model_without_bank, tmp_path,
                                                                            monkeypatch):
    """Volunteers contradict each other: every tint gets each of the three names once. The base
    model is right on a third of them; a head that follows the corrections closely (a pull toward
    the base 300 times weaker than the default, which keeps this head where the base was), learned
    from the others, is right on none. (Without a bank: its photos too would hold the head back.)"""
    monkeypatch.setattr(learn_run, "FitOptions", functools.partial(FitOptions, pull=FitOptions().pull / 300))
    tiny_model = tiny_model_without_bank
    folder = tmp_path / "muddle"
    for breed in range(3):
        for i in range(3):
            name = f"{breed}_{i}.png"
            make_breed_photo(folder / name, breed, seed=30 * breed + i)
            correct(folder, name, TINY_LABELS[(breed + i) % 3], "breed")

    refused = run(folder, "--out", tmp_path / "worse", "--model", tiny_model)

    assert refused.exit_code == 4, refused.output
    assert "Not written" in refused.output and "base model 3 times" in refused.output
    assert not (tmp_path / "worse").exists()
    forced = run(folder, "--out", tmp_path / "worse", "--model", tiny_model, "--force")
    assert forced.exit_code == 0, forced.output
    assert "forced" in forced.output
    assert "Written with --force although it is worse" in (tmp_path / "worse" / "MODEL_CARD.md").read_text()


def test_the_last_correction_wins_undone_and_deleted_photos_do_not_count_and_a_torn_line_is_skipped(
        tiny_model, shelter, tmp_path):
    correct(shelter, "yellow_0.png", "Maltese dog", "breed", "2026-12-01T08:00:00Z")
    correct(shelter, "yellow_0.png", NEW_LABEL, when="2026-12-01T09:00:00Z")  # changed her mind: this one counts
    for i in (1, 2, 3):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)
    correct(shelter, "Chihuahua_0.png", "Japanese spaniel", "breed")
    correct(shelter, "Chihuahua_0.png", "", "withdrawn")  # undone
    correct(shelter, "wall.png", NEW_LABEL)
    (shelter / "wall.png").unlink()  # deleted since
    with open(reviews_path(default_results_path(shelter)), "ab") as file:
        file.write(b'{"path": "yellow_4.png", "reviewed_br')  # the power went off mid-line

    result = run(shelter, "--out", tmp_path / "learned", "--model", tiny_model)

    assert result.exit_code == 0, result.output
    assert "4 photos to learn from" in result.output
    assert "1 corrected photos no longer exist; skipped" in result.output
    assert "1 corrections withdrawn (undone); not used" in result.output
    assert "1 damaged lines in reviews files" in result.output
    document = json.loads((tmp_path / "learned" / LEARNED_FILE).read_text())
    assert document["learned"]["labels"] == {NEW_LABEL: 4}
    assert document["learned"]["corrections_from"] == {"first": "2026-12-01T08:00:00Z", "last": "2026-12-01T09:00:00Z"}


def test_labeled_folders_teach_breeds_and_a_label_with_too_few_photos_waits(tiny_model, tmp_path):
    archive = tmp_path / "archive"
    for i in range(4):
        make_breed_photo(archive / "Pit_bull_type" / f"{i}.jpg", YELLOW, seed=300 + i)
    for i in range(2):
        make_breed_photo(archive / "Dachshund" / f"{i}.jpg", 4, seed=400 + i)
    for i in range(3):
        make_breed_photo(archive / "n02085620-Chihuahua" / f"{i}.jpg", 0, seed=500 + i)

    result = run("--labeled", archive, "--out", tmp_path / "learned", "--model", tiny_model)

    assert result.exit_code == 0, result.output
    assert "waiting for at least 3 photos: Dachshund (2)" in result.output
    learned = Classifier(tmp_path / "learned", num_threads=1)
    assert learned.info.labels == (*TINY_LABELS, "Pit bull type")
    assert learned.predict(make_breed_photo(tmp_path / "y.png", YELLOW, seed=777)).breed == "Pit bull type"


def test_not_a_dog_corrections_teach_the_dog_gate(tiny_model, shelter, tmp_path):
    """The yellow things are toys: volunteers say "not a dog", and new yellow photos are rejected."""
    for i in range(5):
        correct(shelter, f"yellow_{i}.png", "not a dog", "not_a_dog")
    before = Classifier(tiny_model, num_threads=1)
    photo = make_breed_photo(tmp_path / "toy.png", YELLOW, seed=888)
    assert before.predict(photo).status != "not_a_dog"

    result = run(shelter, "--out", tmp_path / "learned", "--model", tiny_model)

    assert result.exit_code == 0, result.output
    assert Classifier(tmp_path / "learned", num_threads=1).predict(photo).status == "not_a_dog"
    assert Classifier(tmp_path / "learned", num_threads=1).predict(
        make_breed_photo(tmp_path / "red.png", 0, seed=889)).status != "not_a_dog"


def test_names_are_merged_ignoring_case_spacing_and_match_the_models_own_labels(shelter):
    correct(shelter, "yellow_0.png", "MALTESE  dog", "other")
    correct(shelter, "yellow_1.png", "mixed breed", "mixed")
    found = gather([shelter], [], TINY_LABELS)

    assert {e.label for e in found.examples} == {"Maltese dog"}
    assert found.waiting == {"mixed breed": 1}
    assert label_key("n02085620-Chihuahua") == label_key("chihuahua")


def test_a_breed_corrected_under_its_display_name_or_a_nickname_is_the_models_own_label(shelter):
    correct(shelter, "yellow_0.png", "Japanese Chin", "other")  # the display name of "Japanese spaniel"
    correct(shelter, "yellow_1.png", "maltese", "other")  # Stanford's "Maltese dog", as the review page lists it
    correct(shelter, "yellow_2.png", "Labradoodle", "other")  # no breed of the model: a new label
    found = gather([shelter], [], TINY_LABELS)

    assert {e.photo.name: e.label for e in found.examples} == {"yellow_0.png": "Japanese spaniel",
                                                              "yellow_1.png": "Maltese dog"}
    assert found.waiting == {"Labradoodle": 1}


def test_embeddings_are_cached_and_a_changed_photo_is_computed_again(tiny_model, shelter, tmp_path):
    for i in range(4):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)

    first = learn([shelter], out=None, model=tiny_model)
    again = learn([shelter], out=None, model=tiny_model)
    make_breed_photo(shelter / "yellow_0.png", YELLOW, seed=4321)  # the photo was replaced
    changed = learn([shelter], out=None, model=tiny_model)

    assert (first.computed, again.computed, changed.computed) == (4, 0, 1)


CHILD = """
import sys
import dogtag.edge_app.embeddings as embeddings
from dogtag.learn.run import learn

embeddings.BATCH = 2
add = embeddings.EmbeddingCache.add

def add_then_wait(self, keys, outputs):
    add(self, keys, outputs)
    print("cached", len(keys), flush=True)
    sys.stdin.readline()  # wait here until killed

embeddings.EmbeddingCache.add = add_then_wait
learn([sys.argv[1]], out=None, model=sys.argv[2])
"""


def test_the_embedding_cache_survives_a_kill_and_the_next_run_resumes(tiny_model, shelter, own_cache):
    for i in range(5):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(shelter), str(tiny_model)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "DOGTAG_CACHE": str(own_cache)})
    try:
        assert child.stdout.readline().strip() == "cached 2"  # the first batch is on disk
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    resumed = learn([shelter], out=None, model=tiny_model)

    assert resumed.computed == 3, "the two photos cached before the kill are not computed again"


def test_a_model_file_without_a_features_output_is_refused_clearly(tmp_path, shelter):
    old = make_tiny_models(tmp_path / "old", formats=("tflite_int8",), features=False)["tflite_int8"]
    correct(shelter, "yellow_0.png", "Maltese dog", "breed")

    with pytest.raises(ModelFileError, match="has no features output"):
        learn([shelter], out=None, model=old)
    predictions, features = Classifier(old, num_threads=1).predict_with_features([shelter / "yellow_0.png"])
    assert features is None and predictions[0].breed in TINY_LABELS


def test_predictions_and_embeddings_come_from_one_model_call(tiny_model, shelter):
    classifier = Classifier(tiny_model, num_threads=1)
    photos = [shelter / "Chihuahua_0.png", shelter / "yellow_0.png"]

    predictions, features = classifier.predict_with_features(photos)

    assert [p.breed for p in predictions] == [p.breed for p in classifier.predict_batch(photos)]
    assert features.shape[0] == 2 and features.dtype == np.float32
    assert not np.allclose(features[0], features[1])


def test_nothing_to_learn_says_what_to_do(tiny_model, shelter, tmp_path):
    result = run(shelter, "--out", tmp_path / "learned", "--model", tiny_model)

    assert result.exit_code == 3
    assert "no corrections (review the photos first" in result.output


def test_the_review_page_runs_on_a_learned_model_and_knows_its_new_label(tiny_model, shelter, tmp_path):
    pytest.importorskip("fastapi", reason="the review page needs the review extra")
    from fastapi.testclient import TestClient

    from dogtag.review.server import Options, ReviewServer

    for i in range(4):
        correct(shelter, f"yellow_{i}.png", NEW_LABEL)
    assert run(shelter, "--out", tmp_path / "learned", "--model", tiny_model).exit_code == 0
    tag_folders([shelter], Classifier(tmp_path / "learned", num_threads=1), TagOptions(restart=True))
    server = ReviewServer(Options(folders=[str(shelter)], port=0, model=str(tmp_path / "learned"),
                                  cache=str(tmp_path / "thumbs")))
    try:
        client = TestClient(server.app, base_url="http://127.0.0.1:8765")
        response = client.post("/api/reviews", json={"path": "yellow_4.png", "reviewed_breed": NEW_LABEL})
    finally:
        server.socket.close()

    assert response.status_code == 200, response.text
    log = (shelter / "dogtag-results.reviews.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["kind"] == "breed", "the learned model's own label is a breed now"


def test_learn_from_the_review_page_switches_to_the_learned_model_and_keeps_the_volunteers_answers(
        tiny_model, shelter, tmp_path):
    pytest.importorskip("fastapi", reason="the review page needs the review extra")
    from fastapi.testclient import TestClient

    from dogtag.review.server import Options, ReviewServer

    tag_folders([shelter], Classifier(tiny_model, num_threads=1))
    server = ReviewServer(Options(folders=[str(shelter)], port=0, model=str(tiny_model), cache=str(tmp_path / "thumbs")))
    try:
        client = TestClient(server.app, base_url="http://127.0.0.1:8765")
        assert client.get("/api/learn").json()["corrections"] == 0
        for i in range(4):
            client.post("/api/reviews", json={"path": f"yellow_{i}.png", "reviewed_breed": NEW_LABEL})
        client.post("/api/reviews", json={"path": "Chihuahua_1.png", "reviewed_breed": "Japanese spaniel"})
        assert client.get("/api/learn").json()["corrections"] == 5

        started = client.post("/api/learn", json={})
        server.learner.thread.join()
        status = client.get("/api/learn").json()
        items = {item["path"]: item for item in client.get("/api/photos", params={"limit": 500}).json()["items"]}
        again = client.post("/api/reviews", json={"path": "yellow_4.png", "reviewed_breed": NEW_LABEL})
        predicted = client.post("/api/predict", files={"photo": ("new.png", (shelter / "yellow_4.png").read_bytes())})
    finally:
        server.socket.close()

    assert started.status_code == 202, started.text
    assert status["state"] == "done", status
    assert (status["photos"], status["before"], status["after"]) == (5, 0, 4)
    assert status["current_model"] == status["model"] == str(shelter / "dogtag-learned-model")
    assert items["yellow_4.png"]["breed"] == NEW_LABEL, "rows are scored again by the learned model"
    assert "learned" in items["yellow_4.png"]["model_version"]
    assert items["Chihuahua_1.png"]["reviewed_breed"] == "Japanese spaniel", "the volunteer's answer is kept"
    assert items["yellow_0.png"]["reviewed_breed"] == NEW_LABEL
    assert again.json()["item"]["reviewed_breed"] == NEW_LABEL
    assert predicted.json()["breed"] == NEW_LABEL, "/api/predict answers with the learned model too"
    log = (shelter / "dogtag-results.reviews.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["kind"] == "breed", "the page now knows the learned label"


@pytest.mark.parametrize("name", ["accurate", "fast"])
def test_the_bundled_models_give_their_embedding_and_a_bank_to_learn_with(name, tmp_path):
    from dogtag import models
    from dogtag.learn.bank import find_bank

    for path in models.bundled_files(name):
        model = Model(path, num_threads=1)
        outputs = model.run_all(np.zeros((1, *model.info.input_size, 3), np.uint8))
        assert model.features_output == "features" and outputs.features.shape == (1, 1280)
        bank, _ = find_bank(model.info, path)
        assert bank.features.shape == (1200, 1280) and sorted(set(bank.labels.tolist())) == list(range(120))


def test_another_base_model_never_reads_the_embeddings_of_this_one(tiny_model, shelter, own_cache):
    from dogtag.edge_app.embeddings import EmbeddingCache, embed_photos

    photos = [shelter / "yellow_0.png", shelter / "yellow_1.png"]
    model = Model(tiny_model, num_threads=1)
    first = embed_photos(model, photos, EmbeddingCache(model.info.model_version))
    same = embed_photos(model, photos, EmbeddingCache(model.info.model_version))
    other = embed_photos(model, photos, EmbeddingCache("another-model+tflite_int8"))

    assert (first.computed, same.computed, other.computed) == (2, 0, 2)
    assert np.array_equal(first.outputs.features, same.outputs.features)
