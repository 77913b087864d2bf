"""Breed names as shelters write them: display names with Stanford's ids beside them, the Eskimo dog
merged into the Siberian Husky, sibling breeds flagged, `--names stanford` for the old names, old
results files still read, and sidecars that exiftool reads as a keyword tree."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app import breeds
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.model_file import read_model_info
from dogtag.edge_app.results import FIELDS_BEFORE_BREED_IDS, read_results
from dogtag.models import bundled_files
from tests.edge_fixtures import make_breed_folder, make_breed_photo
from tests.model_fixtures import TINY_LABELS, TINY_NAMES, make_tiny_models

RESULTS = "dogtag-results.csv"
AKC_GROUPS = {"Toy", "Hound", "Terrier", "Sporting", "Non-Sporting", "Working", "Herding", "Wild Dogs"}
# Stanford's names of look-alikes: the husky pair (merged) and Lhasa / Shih-Tzu (siblings).
LOOK_ALIKES = ("Eskimo dog", "Siberian husky", "Lhasa", "Shih-Tzu")


def tag(*args) -> object:
    return CliRunner().invoke(main, ["tag", *map(str, args)])


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["path"]: row for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("tensorflow", reason="the tiny test models are made with TensorFlow")
    return make_tiny_models(tmp_path_factory.mktemp("models"), formats=("tflite_float32",))


@pytest.fixture(scope="module")
def look_alike_model(tmp_path_factory) -> Path:
    """A tiny model (no wnids in its info, as models from before breed ids) over four look-alike labels."""
    pytest.importorskip("tensorflow", reason="the tiny test models are made with TensorFlow")
    files = make_tiny_models(tmp_path_factory.mktemp("look-alikes"), labels=LOOK_ALIKES, formats=("tflite_float32",))
    return files["tflite_float32"]


# ---- the names themselves ---------------------------------------------------------------------------


def test_every_stanford_breed_has_a_title_case_name_a_kennel_club_group_and_its_id():
    everything = breeds.all_breeds()

    assert len(everything) == 120 and len({breed.breed_id for breed in everything}) == 120
    for breed in everything:
        assert breed.name == breed.name.strip() and breed.name[0].isupper(), breed
        small = {"and", "des", "of"}
        assert all(word[0].isupper() or word in small for word in breed.name.replace("-", " ").split()), breed
        assert breed.group in AKC_GROUPS, breed
        assert breeds.find(breed.stanford_name) == breeds.answering(breed.breed_id), breed
    shown = {breed.name for breed in everything if not breed.merged_into}
    assert len(shown) == 119, "one display name per breed once the Eskimo dog is merged"
    assert breeds.find("cairn").name == "Cairn Terrier" and breeds.find("Mexican_hairless").name == "Xoloitzcuintli"
    assert breeds.find("Eskimo dog").name == "Siberian Husky"
    assert "American Eskimo" not in json.dumps(breeds.describe("Siberian Husky")), "not the small white spitz"


@pytest.mark.parametrize("stem", ["accurate", "fast"])
def test_the_bundled_models_carry_an_id_for_every_label_in_stanfords_order(stem):
    for path in bundled_files(stem):
        info = read_model_info(path)
        ids = breeds.model_breed_ids(info.labels, info.extra.get("wnids"))
        assert [breeds.by_id(breed_id).stanford_name for breed_id in ids] == list(info.labels)
        mapping = breeds.model_label_map(info)
        assert len(mapping.labels) == 119 and mapping.labels[ids.index("n02096177")] == "Cairn Terrier"


def test_nicknames_and_old_names_find_the_breed_a_volunteer_means():
    names = [breed.name for breed in breeds.all_breeds()]

    assert breeds.search("yorkie", names)[0] == "Yorkshire Terrier"
    assert breeds.search("GSD", names)[0] == "German Shepherd Dog"
    assert breeds.search("lab", names)[0] == "Labrador Retriever"
    assert breeds.search("husky", names)[0] == "Siberian Husky"
    assert set(breeds.search("pit bull", names)) == {"American Staffordshire Terrier", "Staffordshire Bull Terrier"}
    assert breeds.search("Toy terrier", names)[0] == "Toy Fox Terrier"
    assert breeds.find("corgi") is None, "an alias of two breeds names neither"
    assert set(breeds.search("corgi", names)) == {"Pembroke Welsh Corgi", "Cardigan Welsh Corgi"}


def test_a_learned_label_without_an_id_keeps_its_name_as_typed_and_an_empty_id():
    mapping = breeds.label_map(["Chihuahua", "mixed  breed", "Labradoodle", "Poodle"], ["n02085620", "", "", ""])

    assert mapping.labels == ("Chihuahua", "mixed breed", "Labradoodle", "Poodle"), "as typed, spaces tidied"
    assert mapping.breed_ids == ("n02085620", "", "", "")
    assert breeds.model_breed_ids(["Mixed Breed", "Poodle", "Eskimo dog"]) == ("", "", "n02109961"), \
        "an id is never guessed from a nickname; a merged label keeps its own id"
    assert breeds.hierarchical_keyword("Mixed Breed") == "Dogs|Mixed Breed"


def test_a_correction_in_any_spelling_finds_the_model_label_it_means():
    info = read_model_info(bundled_files("fast")[0])
    ids = breeds.model_breed_ids(info.labels, info.extra.get("wnids"))

    for name in ("Cairn Terrier", "cairn", "CAIRN"):
        assert breeds.model_label(name, info.labels, ids) == "cairn"
    assert breeds.model_label("Siberian Husky", info.labels, ids) == "Siberian husky"
    assert breeds.model_label("yorkie", info.labels, ids) == "Yorkshire terrier"
    assert breeds.model_label("Labradoodle", info.labels, ids) is None


# ---- the answer -------------------------------------------------------------------------------------


def test_the_eskimo_dog_answers_as_a_siberian_husky_with_the_two_probabilities_summed(look_alike_model):
    display, stanford = Classifier(look_alike_model), Classifier(look_alike_model, names="stanford")
    eskimo_photo = np.asarray(make_breed_photo_pixels(0))

    merged, old = display.predict(eskimo_photo), stanford.predict(eskimo_photo)

    assert display.labels == ("Siberian Husky", "Lhasa Apso", "Shih Tzu")
    assert stanford.labels == LOOK_ALIKES, "stanford: the model's own labels, none merged"
    assert (old.breed, old.breed_id) == ("Eskimo dog", "n02109961")
    assert (merged.breed, merged.breed_id) == ("Siberian Husky", "n02110185")
    husky_share = dict(old.top_k).get("Siberian husky", 0.0)
    assert merged.confidence == pytest.approx(old.confidence + husky_share, abs=1e-4)


def test_the_answer_says_when_its_best_two_breeds_are_siblings(look_alike_model, tmp_path, monkeypatch):
    classifier = Classifier(look_alike_model, top_k=3)
    lhasa_or_shih_tzu = np.array([[0.05, 0.05, 0.5, 0.4]], dtype=np.float32)  # Stanford's order: LOOK_ALIKES
    husky_or_lhasa = np.array([[0.3, 0.3, 0.35, 0.05]], dtype=np.float32)
    monkeypatch.setattr(classifier.model, "run", lambda pixels: (lhasa_or_shih_tzu, None))
    pixels = np.zeros((1, *classifier.info.input_size, 3), np.uint8)

    (siblings,) = classifier.predict_pixels(pixels)
    monkeypatch.setattr(classifier.model, "run", lambda pixels: (husky_or_lhasa, None))
    (strangers,) = classifier.predict_pixels(pixels)

    assert siblings.siblings == ("Lhasa Apso", "Shih Tzu")
    assert strangers.breed == "Siberian Husky" and strangers.siblings == (), "0.3 + 0.3 beats 0.35; not siblings"
    stanford = Classifier(look_alike_model, names="stanford")
    monkeypatch.setattr(stanford.model, "run", lambda pixels: (np.array([[0.5, 0.4, 0.05, 0.05]], np.float32), None))
    (unmerged,) = stanford.predict_pixels(pixels)
    assert unmerged.siblings == ("Eskimo dog", "Siberian husky"), "kept apart, the husky pair is flagged"


def test_predict_prints_display_names_or_stanfords_and_says_when_siblings_lead(look_alike_model, tmp_path):
    photo = tmp_path / "luna.png"
    make_breed_photo(photo, 0)

    shown = CliRunner().invoke(main, ["predict", str(photo), "--model", str(look_alike_model)])
    old = CliRunner().invoke(main, ["predict", str(photo), "--model", str(look_alike_model), "--names", "stanford"])

    assert shown.exit_code == old.exit_code == 0, shown.output + old.output
    assert "1. Siberian Husky" in shown.output and "Eskimo" not in shown.output
    assert "1. Eskimo dog" in old.output


def make_breed_photo_pixels(index: int) -> np.ndarray:
    from tests.model_fixtures import tinted_photo

    return tinted_photo(index, seed=300 + index)


# ---- the results file -------------------------------------------------------------------------------


def test_results_carry_the_breed_id_beside_the_display_name_and_stanford_names_on_request(tiny_models, tmp_path):
    model = tiny_models["tflite_float32"]
    folder = tmp_path / "photos"
    expected = make_breed_folder(folder)

    assert tag(folder, "--model", model).exit_code == 0
    rows = read_rows(folder / RESULTS)
    assert tag(folder, "--model", model, "--names", "stanford", "--format", "jsonl").exit_code == 0
    documents = {d["path"]: d for d in map(json.loads, (folder / "dogtag-results.jsonl").read_text().splitlines())}

    ids = dict(zip(TINY_NAMES, ("n02085620", "n02085782", "n02085936"), strict=True))
    old_names = dict(zip(TINY_NAMES, TINY_LABELS, strict=True))
    for path, breed in expected.items():
        if breed is None:
            assert (rows[path]["breed"], rows[path]["breed_id"]) == ("", "")
            continue
        assert (rows[path]["breed"], rows[path]["breed_id"]) == (breed, ids[breed])
        assert (documents[path]["breed"], documents[path]["breed_id"]) == (old_names[breed], ids[breed])
        assert rows[path]["siblings"] == "" and documents[path]["siblings"] == []


def test_a_results_file_from_before_breed_ids_is_read_and_its_rows_tagged_again_under_display_names(
    tiny_models, tmp_path
):
    model = tiny_models["tflite_float32"]
    folder = tmp_path / "photos"
    expected = make_breed_folder(folder)
    assert tag(folder, "--model", model, "--names", "stanford").exit_code == 0
    text = (folder / RESULTS).read_text(encoding="utf-8-sig").splitlines()
    columns = len(FIELDS_BEFORE_BREED_IDS)
    old = ["\ufeff" + ",".join(FIELDS_BEFORE_BREED_IDS)] + [
        ",".join(next(csv.reader([line]))[:columns]) if "," in line else line for line in text[1:]]
    (folder / RESULTS).write_text("\n".join(old) + "\n", encoding="utf-8")

    rows, whole = read_results(folder / RESULTS, "csv")
    assert not whole and {row.breed for row in rows} >= {"Japanese spaniel", "Maltese dog"}
    assert {row.breed_id for row in rows} == {""}

    result = tag(folder, "--model", model)

    assert result.exit_code == 0, result.output
    not_dogs = sum(breed is None for breed in expected.values())
    assert f"{not_dogs} was already done" in result.output, \
        "rows in Stanford's names are tagged again, not mixed in; a not_a_dog row names no breed and stands"
    again = read_rows(folder / RESULTS)
    assert {path: row["breed"] or None for path, row in again.items()} == expected
    assert tag(folder, "--model", model).output.count("already done") == 1, "and then resumed as usual"


def test_sort_into_folders_are_named_as_shelters_write_breeds(tiny_models, tmp_path):
    folder = tmp_path / "photos"
    make_breed_folder(folder)

    assert tag(folder, "--model", tiny_models["tflite_float32"], "--sort-into", tmp_path / "sorted").exit_code == 0

    assert {"Chihuahua", "Japanese Chin", "Maltese"} <= {path.name for path in (tmp_path / "sorted").iterdir()}


# ---- sidecars, read by a real reader ----------------------------------------------------------------


def test_exiftool_reads_the_breed_keyword_and_its_place_in_the_kennel_club_tree(tiny_models, tmp_path):
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed (Debian: apt-get install libimage-exiftool-perl)")
    folder = tmp_path / "photos"
    make_breed_photo(folder / "bella.jpg", 1)

    assert tag(folder, "--model", tiny_models["tflite_float32"], "--xmp").exit_code == 0

    sidecar = folder / "bella.xmp"
    read = subprocess.run([exiftool, "-j", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", sidecar],
                          capture_output=True, text=True, check=True)
    (tags,) = json.loads(read.stdout)
    assert tags["Subject"] in ("Japanese Chin", ["Japanese Chin"])
    assert tags["HierarchicalSubject"] in ("Dogs|Toy|Japanese Chin", ["Dogs|Toy|Japanese Chin"])
    check = subprocess.run([exiftool, "-validate", "-warning", "-a", sidecar], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"^Validate\s*:\s*OK$", check.stdout, re.MULTILINE), check.stdout
    assert "Warning" not in check.stdout and "Error" not in check.stdout, check.stdout
