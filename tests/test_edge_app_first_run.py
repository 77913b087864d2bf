"""A newcomer's first run: what `dogtag tag` and `dogtag predict` write and say, where sidecars and
copies go (or why they could not), and how Dogtag answers the mistakes a volunteer makes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dogtag.cli import main
from dogtag.edge_app import Classifier, ModelFileError, PhotoError, default_model_path
from dogtag.edge_app.xmp import read_keywords
from tests.edge_fixtures import make_breed_folder, make_breed_photo
from tests.model_fixtures import committed_tiny_models

REPO = Path(__file__).resolve().parents[1]
RESULTS = "dogtag-results.csv"


def _permissions_are_enforced() -> bool:
    """False where this process writes into read-only folders anyway (root, with its usual capabilities)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            Path(folder, "probe").touch()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


needs_permissions = pytest.mark.skipif(not _permissions_are_enforced(), reason="this user writes into read-only folders")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return committed_tiny_models(tmp_path_factory.mktemp("models"))["tflite_int8"]


@pytest.fixture
def folder(tmp_path) -> Path:
    """A shelter folder with sub-folders: six dogs of the tiny models' three breeds and a grey wall."""
    make_breed_folder(tmp_path / "photos")
    return tmp_path / "photos"


def dogtag(*args) -> object:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a CSV results file by photo, failing on a photo that has two."""
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert len({row["path"] for row in rows}) == len(rows), "one row per photo"
    return {row["path"]: row for row in rows}


# --- sidecars and copies: a destination that cannot be written, and what was written where ------------------


def test_a_sort_into_folder_that_cannot_be_written_stops_the_run_once_and_leaves_the_results_alone(
        tmp_path, model, folder):
    assert dogtag("tag", folder, "--model", model).exit_code == 0
    before = (folder / RESULTS).read_bytes()
    (tmp_path / "usb-stick").write_text("a file where the volunteer thought a folder was")
    fresh = tmp_path / "fresh"
    make_breed_photo(fresh / "rex.jpg", 0)

    again = dogtag("tag", folder, "--model", model, "--sort-into", tmp_path / "usb-stick" / "sorted")
    first = dogtag("tag", fresh, "--model", model, "--sort-into", tmp_path / "usb-stick" / "sorted")

    assert (again.exit_code, first.exit_code) == (3, 3), again.output
    assert again.output.count("cannot copy photos into this folder") == 1, "one message, not one per photo"
    assert "usb-stick/sorted" in again.output and "choose a folder you can write to for --sort-into" in again.output
    assert (folder / RESULTS).read_bytes() == before, "no error rows, no second row for any photo"
    assert not (fresh / RESULTS).exists(), "stopped before tagging anything"


@needs_permissions
def test_a_read_only_sort_into_folder_stops_the_run_before_tagging(tmp_path, model, folder):
    (tmp_path / "sorted").mkdir()
    (tmp_path / "sorted").chmod(0o555)
    try:
        result = dogtag("tag", folder, "--model", model, "--sort-into", tmp_path / "sorted")
    finally:
        (tmp_path / "sorted").chmod(0o755)

    assert result.exit_code == 3 and "cannot copy photos into this folder (Permission denied)" in result.output
    assert not (folder / RESULTS).exists()


@needs_permissions
def test_xmp_beside_photos_in_a_read_only_folder_stops_the_run_before_tagging(tmp_path, model, folder):
    out = tmp_path / "results.csv"
    (folder / "kennel_2").chmod(0o555)
    try:
        result = dogtag("tag", folder, "--model", model, "--xmp", "--out", out)
    finally:
        (folder / "kennel_2").chmod(0o755)

    assert result.exit_code == 3, result.output
    assert result.output.count("cannot be written, so --xmp cannot put sidecars beside the photos there") == 1
    assert "kennel_2:" in result.output and "run without --xmp" in result.output
    assert not out.exists() and not list(folder.rglob("*.xmp")), "nothing tagged, no sidecar half-written"


def test_a_copy_that_fails_for_some_photos_is_reported_as_such_and_they_keep_their_rows(tmp_path, model, folder):
    sorted_ = tmp_path / "sorted"
    sorted_.mkdir()
    (sorted_ / "Chihuahua").write_text("a file where the Chihuahua folder goes")

    result = dogtag("tag", folder, "--model", model, "--sort-into", sorted_)

    assert result.exit_code == 1, "something was not done: worth a look"
    rows = rows_of(folder / RESULTS)
    assert len(rows) == 7 and all(row["error"] == "" for row in rows.values())
    assert [(rows[p]["status"], rows[p]["breed"]) for p in ("rex.jpg", "kennel_2/luna.bmp")] == [("dog", "Chihuahua")] * 2
    assert re.search(r"Not written \(these photos keep their rows; the next run tries again\):\n"
                     r"  \S*photos/rex\.jpg: not copied into \S*sorted/Chihuahua \(.+\)\n"
                     r"  \S*kennel_2/luna\.bmp: not copied into ", result.output), result.output
    assert "Could not read" not in result.output, "both photos were read and tagged"
    assert f"Copied 5 photos into {sorted_} (a folder per breed, _unsure, _not_a_dog); 0 were" in result.output

    (sorted_ / "Chihuahua").unlink()
    again = dogtag("tag", folder, "--model", model, "--sort-into", sorted_)

    assert again.exit_code == 0 and "Tagged 0 photos" in again.output
    assert f"Copied 2 photos into {sorted_} (a folder per breed, _unsure, _not_a_dog); 5 were already there" in again.output
    assert sorted(p.name for p in (sorted_ / "Chihuahua").iterdir()) == ["luna.bmp", "rex.jpg"]
    assert len(rows_of(folder / RESULTS)) == 7


def test_two_photos_with_the_same_name_get_a_sidecar_each(tmp_path, model):
    folder = tmp_path / "photos"
    make_breed_photo(folder / "rex.jpg", 0, quality=95)
    make_breed_photo(folder / "rex.png", 1)  # the same dog, saved twice by two volunteers? Two dogs, here.
    make_breed_photo(folder / "bella.jpg", 2, quality=95)

    result = dogtag("tag", folder, "--model", model, "--xmp")

    assert result.exit_code == 0, result.output
    assert read_keywords(folder / "rex.jpg.xmp") == (["Chihuahua"], ["Dogs|Toy|Chihuahua"])
    assert read_keywords(folder / "rex.png.xmp") == (["Japanese Chin"], ["Dogs|Toy|Japanese Chin"])
    assert read_keywords(folder / "bella.xmp") == (["Maltese"], ["Dogs|Toy|Maltese"]), "a name of its own: photo.xmp"
    assert not (folder / "rex.xmp").exists(), "no sidecar that merges two photos' breeds"
    assert ": 3 written, 0 already had the breed." in result.output


# --- what the results say --------------------------------------------------------------------------------------


def test_top_breeds_leave_out_the_alternatives_the_model_gives_almost_nothing(tmp_path, model, folder):
    classifier = Classifier(model)
    probabilities, _ = classifier.model.run(classifier.prepare(folder / "rex.jpg")[None])
    assert sorted(probabilities[0])[:2] == pytest.approx([0, 0], abs=0.001), "rex: one breed, the others ~0"

    # --min-dog 0: the grey cat.jpg counts as a dog, so that its row lists the breeds it hesitates between
    tagged = dogtag("tag", folder, "--model", model, "--min-dog", "0")
    as_jsonl = dogtag("tag", folder, "--model", model, "--out", tmp_path / "results.jsonl")
    predicted = dogtag("predict", folder / "rex.jpg", folder / "cat.jpg", "--model", model)

    assert (tagged.exit_code, as_jsonl.exit_code, predicted.exit_code) == (0, 0, 0)
    rows = rows_of(folder / RESULTS)
    assert re.fullmatch(r"Chihuahua=0\.9\d{3}", rows["rex.jpg"]["top_k"]), rows["rex.jpg"]["top_k"]
    assert len(rows["cat.jpg"]["top_k"].split("; ")) == 3, "alternatives the model gives something stay"
    documents = {d["path"]: d for d in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    rex = os.path.relpath(folder / "rex.jpg", tmp_path)  # paths start from the results file's folder
    assert [item["breed"] for item in documents[rex]["top_k"]] == ["Chihuahua"]
    assert re.search(r"rex\.jpg: dog, dog probability \d+%\n  1\. Chihuahua\s+\d+\.\d%\n\S*cat\.jpg: ", predicted.output)
    assert re.search(r"cat\.jpg: not a dog \(dog probability \d+%, below the \d+% this model needs", predicted.output)
    assert "  1. " not in predicted.output.split("cat.jpg: ")[1], "no breeds listed for what is not a dog"


def test_a_photo_that_is_not_a_dog_has_no_breed_so_sorting_by_breed_keeps_it_apart(tmp_path, model, folder):
    result = dogtag("tag", folder, "--model", model)

    rows = rows_of(folder / RESULTS)
    cat = rows["cat.jpg"]
    assert result.exit_code == 0 and cat["status"] == "not_a_dog"
    assert (cat["breed"], cat["confidence"], cat["top_k"]) == ("", "", ""), "no breed, nor breed scores"
    assert float(cat["dog_probability"]) < 0.5, "its dog probability says why"
    assert all(row["breed"] for path, row in rows.items() if path != "cat.jpg"), "the dogs keep theirs"


def test_changing_top_k_on_a_rerun_says_it_applies_to_new_photos_only(model, folder):
    every_photo_a_dog = ("--min-dog", "0")  # the grey cat.jpg too: its row lists the breeds it hesitates between
    first = dogtag("tag", folder, "--model", model, "--top-k", "1", *every_photo_a_dog)
    plain = dogtag("tag", folder, "--model", model, *every_photo_a_dog)
    more = dogtag("tag", folder, "--model", model, "--top-k", "2", *every_photo_a_dog)
    restarted = dogtag("tag", folder, "--model", model, "--restart", *every_photo_a_dog)
    fewer = dogtag("tag", folder, "--model", model, "--top-k", "1", *every_photo_a_dog)

    assert [r.exit_code for r in (first, plain, more, restarted, fewer)] == [0] * 5
    assert "Note:" not in first.output + plain.output, "a plain rerun has nothing to say: rows may list fewer"
    assert ("Note: the 7 photos tagged by an earlier run keep their rows, which list up to 1 breed, fewer than "
            "--top-k 2; it applies to newly tagged photos only. Run again with --restart to list 2 for every photo."
            ) in more.output
    assert rows_of(folder / RESULTS)["cat.jpg"]["top_k"].count("=") == 3, "--restart listed 3 again"
    assert "Tagged 7 photos" in restarted.output and "Note:" not in restarted.output
    assert "which list up to 3 breeds, more than --top-k 1;" in fewer.output


# --- the README --------------------------------------------------------------------------------------------------


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    try:
        default_model_path()
    except ModelFileError as error:
        pytest.skip(f"the example uses the bundled model, which this install lacks ({error})")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = re.search(r"From Python:\n\n```python\n(.*?)```", readme, re.S)[1]
    photo = re.search(r"open\(\"([^\"]+)\"\)", example)[1]
    make_breed_photo(tmp_path / photo, 0, size=300, quality=90)
    monkeypatch.chdir(tmp_path)

    exec(compile(example, "README.md", "exec"), {})

    printed = capsys.readouterr().out
    assert re.fullmatch(r"[\w' .-]+ n\d{8} [\d.e-]+ \(\('[\w' .-]+', [\d.e-]+\).*\) [\d.e-]+\n", printed), printed


def test_bench_without_the_dataset_says_how_to_get_it_and_its_help_shows_no_developer_path(
        tmp_path, monkeypatch, model):
    monkeypatch.delenv("DOGTAG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # a volunteer's folder, with no ../shared beside it

    result = dogtag("bench", "--quick", "--models", model, "--out", tmp_path / "bench")
    usage = dogtag("bench", "--help")

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "needs the Stanford Dogs photos: download images.tar" in result.output
    assert "pass it with --data FOLDER (or set DOGTAG_DATA=FOLDER)" in result.output
    assert "[default: $DOGTAG_DATA]" in usage.output and "../shared" not in usage.output
    assert not (tmp_path / "bench").exists()


# --- mistakes a volunteer makes -----------------------------------------------------------------------------------


def test_tagging_a_photo_instead_of_a_folder_points_to_predict_and_to_its_folder(tmp_path, model):
    photo = make_breed_photo(tmp_path / "kennel" / "rex.jpg", 0)

    result = dogtag("tag", photo, "--model", model)

    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output
    assert f"dogtag predict {photo}" in result.output and f"dogtag tag {photo.parent}\n" in result.output
    assert not (photo.parent / RESULTS).exists()


def test_a_path_where_the_command_goes_suggests_the_command(tmp_path, monkeypatch):
    make_breed_photo(tmp_path / "photos" / "rex.jpg", 0)
    (tmp_path / "desktop").mkdir()
    monkeypatch.chdir(tmp_path / "desktop")

    folder, photo = dogtag("../photos"), dogtag("../photos/rex.jpg")

    assert (folder.exit_code, photo.exit_code) == (2, 2)
    assert "'../photos' is not a dogtag command. To tag the photos in that folder: dogtag tag ../photos" in folder.output
    assert "To see that photo's breeds: dogtag predict ../photos/rex.jpg" in photo.output


def test_a_missing_folder_exits_with_the_code_the_help_gives(tmp_path, model):
    documented = re.search(r"(\d)\s+stopped: [^\n]*missing folder", dogtag("tag", "--help").output)

    result = dogtag("tag", tmp_path / "nothere", "--model", model)

    assert documented and result.exit_code == int(documented[1]) == 3, result.output
    assert "nothere: no such folder" in result.output


def test_predict_on_a_photo_that_is_not_there_says_so_plainly(tmp_path, model):
    result = dogtag("predict", tmp_path / "nothere.jpg", tmp_path, "--model", model)

    assert result.exit_code == 1
    assert f"{tmp_path / 'nothere.jpg'}: no such file\n" in result.stderr and "during the run" not in result.stderr
    assert f"{tmp_path}: this is a folder, not a photo; to tag every photo in it: dogtag tag {tmp_path}" in result.stderr


def test_the_python_classifier_takes_a_photos_path_and_explains_what_else_it_takes(tmp_path, model):
    photo = make_breed_photo(tmp_path / "bella.png", 1, size=64)
    classifier = Classifier(model)

    from_path, from_str, from_image = (classifier.predict(photo), classifier.predict(str(photo)),
                                       classifier.predict(Image.open(photo)))

    assert from_path == from_str == from_image and from_path.breed == "Japanese Chin"
    with pytest.raises(PhotoError, match=r"nothere\.jpg: no such file"):
        classifier.predict(tmp_path / "nothere.jpg")
    with pytest.raises(TypeError, match=r"expected an image: a photo's path, an HxWx3 uint8 array or a PIL image, got"
                                        r" list; e\.g\. Classifier\(\)\.predict\(PIL\.Image\.open\('rex\.jpg'\)\)"):
        classifier.predict([[0, 0, 0]])


# A `dogtag` whose optional packages are missing, as after `pip install .` alone.
WITHOUT = """
import sys
class Missing:
    def find_spec(self, name, *args):
        if name.split('.')[0] in sys.argv[1].split(','):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, Missing())
from dogtag.cli import main
main(sys.argv[2:], prog_name='dogtag')
"""


@pytest.mark.parametrize("blocked, command, message", [
    ("keras,tensorflow", ["train", "cache", "--data", "{data}"],
     r"`dogtag train` needs (keras|tensorflow), which is not installed\. Install the extra: pip install 'dogtag\[train\]'"),
    ("scipy", ["bench", "--quick", "--data", "{data}", "--models", "{model}"],
     r"`dogtag bench` needs scipy, which is not installed\. Install the extra: pip install 'dogtag\[bench\]'"),
    ("fastapi", ["review", "{data}", "--no-browser"],
     r"`dogtag review` needs fastapi, which is not installed\. Install the extra: pip install 'dogtag\[review\]'"),
], ids=["train", "bench", "review"])
def test_a_command_whose_extra_is_not_installed_says_which_to_install(tmp_path, model, blocked, command, message):
    data = tmp_path / "stanford-dogs"
    (data / "Images").mkdir(parents=True)
    (data / "train_list.mat").write_bytes(b"")  # the official layout, as far as looking at it goes
    args = [part.format(data=data, model=model) for part in command]

    result = subprocess.run([sys.executable, "-c", WITHOUT, blocked, *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_a_run_prints_no_info_lines_from_the_model_runtime(tmp_path, model):
    photo = make_breed_photo(tmp_path / "rex.png", 0)
    bare = subprocess.run([sys.executable, "-c", f"from dogtag import Classifier; Classifier({str(model)!r})"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    if "Error in cpuinfo" in bare.stderr:  # e.g. the Pi check's emulated root, which has no /sys
        pytest.skip(f"LiteRT cannot read this machine's processors, so makes no XNNPACK delegate to log: "
                    f"{bare.stderr.splitlines()[0]}")
    assert "INFO: Created TensorFlow Lite XNNPACK delegate" in bare.stderr, "LiteRT logs no more: drop this test"

    result = subprocess.run([sys.executable, "-m", "dogtag.cli", "predict", str(photo), "--model", str(model)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0 and "1. Chihuahua" in result.stdout
    assert "INFO" not in result.stderr and result.stderr == "", result.stderr
