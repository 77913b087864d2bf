"""`dogtag tag` and `dogtag predict` as a shelter volunteer uses them: a folder of photos in, one
results row per photo out, bad files reported, interrupted runs resumed, photos never touched."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.cli import ProgressBar
from dogtag.edge_app.model_file import read_model_info
from dogtag.edge_app.results import parse_mtime
from dogtag.edge_app.xmp import read_keywords
from tests.edge_fixtures import fingerprints, make_bad_files, make_breed_folder, make_breed_photo
from tests.model_fixtures import committed_tiny_models

REPO = Path(__file__).resolve().parents[1]
RESULTS = "dogtag-results.csv"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return committed_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def model(tiny_models) -> Path:
    return tiny_models["tflite_int8"]


@pytest.fixture
def photos(tmp_path) -> tuple[Path, dict[str, str | None]]:
    """A shelter folder with sub-folders: relative path -> expected breed (None: not a dog)."""
    folder = tmp_path / "photos"
    return folder, make_breed_folder(folder)


def tag(*args) -> object:
    return CliRunner().invoke(main, ["tag", *map(str, args)])


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV results file; fails on any line that is not a whole row."""
    text = path.read_text(encoding="utf-8-sig")
    assert text.endswith("\n"), "the results file ends with a whole line"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(None not in row and None not in row.values() for row in rows), "every row has every column"
    return rows


def by_path(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), f"duplicated rows: {sorted(p for p in paths if paths.count(p) > 1)}"
    return {row["path"]: row for row in rows}


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_float32"])
def test_tagging_a_folder_writes_one_row_per_photo_with_breed_top_k_and_dog_probability(tiny_models, photos, name):
    if name.startswith("onnx"):
        pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra: pip install -e '.[onnx]'")
    folder, expected = photos

    result = tag(folder, "--model", tiny_models[name])

    assert result.exit_code == 0, result.output
    rows = by_path(read_rows(folder / RESULTS))
    assert {path: row["breed"] if row["status"] == "dog" else None for path, row in rows.items()} == expected
    version = read_model_info(tiny_models[name]).model_version
    for path, row in rows.items():
        stat = (folder / path).stat()
        assert row["status"] == ("not_a_dog" if expected[path] is None else "dog")
        assert row["breed"] == (expected[path] or ""), "a breed for dogs only"
        if expected[path] is None:
            assert (row["confidence"], row["top_k"]) == ("", ""), "no breed scores for what is not a dog"
        else:
            top_k = [item.rpartition("=") for item in row["top_k"].split("; ")]
            assert 1 <= len(top_k) <= 3 and top_k[0][2] == row["confidence"]
            assert all(float(probability) >= 0.001 for _, _, probability in top_k), "no alternative that says nothing"
        assert (float(row["dog_probability"]) < 0.5) == (expected[path] is None)
        assert (row["error"], int(row["size"]), row["model_version"]) == ("", stat.st_size, version)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["mtime"]), "a date spreadsheets read"
        assert parse_mtime(row["mtime"]) == stat.st_mtime_ns // 10**9 * 10**9, "local time, to the second"
    assert "Tagged 7 photos" in result.output
    assert re.search(r"Chihuahua\s+2\n", result.output) and re.search(r"not a dog\s+1\n", result.output)
    assert re.search(r"\d+/7 100%.*photos/s.*ETA", result.output), "a progress bar with rate and ETA"


def test_tagging_a_folder_skips_corrupt_files_and_keeps_going(tmp_path, model, photos):
    folder, expected = photos
    bad = make_bad_files(folder / "bad")
    weird_name = os.fsencode(folder / "kennel_2") + b"/caf\xe9.jpg"  # a name that is not UTF-8
    make_breed_photo(Path(os.fsdecode(weird_name)), 1)

    result = tag(folder, "--model", model)

    assert result.exit_code == 1, "some files failed: the documented exit code 1"
    rows = by_path(read_rows(folder / RESULTS))
    for name, message in bad.items():
        row = rows[f"bad/{name}"]
        assert row["status"] == "error" and re.search(message, row["error"]), row
        assert row["error"].endswith("; skipped") and f"bad/{name}" in result.output
    assert {path: row["breed"] for path, row in rows.items() if row["status"] == "dog"} == {
        **{path: breed for path, breed in expected.items() if breed}, "kennel_2/caf\\xe9.jpg": "Japanese Chin"}
    assert re.search(rf"errors\s+{len(bad)}\n", result.output) and "Could not read:" in result.output


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_photo_gets_an_error_row_and_the_run_goes_on(model, photos):
    folder, _ = photos
    (folder / "rex.jpg").chmod(0)
    try:
        result = tag(folder, "--model", model)
    finally:
        (folder / "rex.jpg").chmod(0o644)

    rows = by_path(read_rows(folder / RESULTS))
    assert result.exit_code == 1 and "permission denied" in rows["rex.jpg"]["error"]
    assert rows["bella.png"]["breed"] == "Japanese Chin"


# A `dogtag` that stops before its fourth batch (three batches, six rows, are in the results file), tells
# the test through the pipe whose descriptor is argv[1], and waits there until a signal comes. Python runs
# a signal handler in the main thread only, but the kernel may hand the signal to a decoding thread: the
# wakeup descriptor wakes the main thread whichever thread got it, so SIGINT raises KeyboardInterrupt here.
# A shell without job control starts background jobs with SIGINT ignored, and Python keeps it ignored:
# the child puts back the handler a terminal gives it, or a CI started with `nohup ... &` never stops it.
PAUSING_DOGTAG = """
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal (a background CI ignores it)
import dogtag.edge_app.classifier
predict_pixels = dogtag.edge_app.classifier.Classifier.predict_pixels
batches = 0
def pause_before_the_fourth_batch(self, pixels):
    global batches
    batches += 1
    if batches == 4:
        woken, wake = os.pipe()
        os.set_blocking(wake, False)
        signal.set_wakeup_fd(wake)
        os.write(int(sys.argv[1]), b"paused")
        os.close(int(sys.argv[1]))
        select.select([woken], [], [])
    return predict_pixels(self, pixels)
dogtag.edge_app.classifier.Classifier.predict_pixels = pause_before_the_fourth_batch
from dogtag.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_killed_run_resumes_without_losing_or_duplicating_a_row(tmp_path, model, how):
    folder = tmp_path / "photos"
    for i in range(40):
        make_breed_photo(folder / f"dog_{i:02d}.jpg", i % 3, seed=i, size=32)
    paused, pausing = os.pipe()
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", PAUSING_DOGTAG, str(pausing), "tag", str(folder), "--model", str(model),
             "--batch-size", "2"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(pausing,), text=True,
        )
        os.close(pausing)
        with os.fdopen(paused, "rb") as said:
            assert said.read() == b"paused", "the child stopped before its fourth batch"  # EOF if it died first
        child.send_signal(getattr(signal, how))
        try:
            child.wait(timeout=300)  # a bound for a hang (a signal not acted on), not a race
        finally:
            child.kill()
        stderr.seek(0)
        message = stderr.read()

    assert child.returncode == (-signal.SIGKILL if how == "SIGKILL" else 130), message
    if how == "SIGINT":
        assert "run the same command again to resume" in message
    before = read_rows(folder / RESULTS)
    assert len(before) == 6, "stopped after three batches of two, with whole rows only"

    result = tag(folder, "--model", model)

    assert result.exit_code == 0, result.output
    after = by_path(read_rows(folder / RESULTS))
    assert sorted(after) == [f"dog_{i:02d}.jpg" for i in range(40)]
    assert all(after[row["path"]] == row for row in before), "finished rows are kept as they were"
    assert f"Tagged {40 - len(before)} photos" in result.output
    assert f"{len(before)} were already done" in result.output


@pytest.mark.parametrize("damage", [b"rex.jpg,dog,Chihua", b"\0" * 37], ids=["torn-line", "zeroed-tail"])
def test_after_a_power_cut_a_damaged_last_line_is_dropped_and_its_photo_tagged_again(model, photos, damage):
    folder, expected = photos
    assert tag(folder, "--model", model).exit_code == 0
    results = folder / RESULTS
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]) + damage)  # the last row's write never reached the disk whole

    result = tag(folder, "--model", model)

    assert result.exit_code == 0, result.output
    rows = by_path(read_rows(results))
    assert sorted(rows) == sorted(expected)
    assert "Tagged 1 photo in" in result.output and f"{len(expected) - 1} were already done" in result.output


def test_a_second_run_tags_only_new_changed_and_failed_photos(model, photos):
    folder, expected = photos
    (folder / "kennel_2" / "notes.jpg").write_text("not a photo")
    assert tag(folder, "--model", model).exit_code == 1
    make_breed_photo(folder / "new.png", 2, seed=77)  # a new photo
    os.remove(folder / "rex.jpg")
    make_breed_photo(folder / "rex.jpg", 1, seed=78, quality=90)  # replaced by a photo of another breed
    os.remove(folder / "kennel_2" / "notes.jpg")
    make_breed_photo(folder / "kennel_2" / "notes.jpg", 0, seed=79)  # the broken file, fixed

    result = tag(folder, "--model", model)

    assert result.exit_code == 0, result.output
    assert "Tagged 3 photos" in result.output and f"{len(expected) - 1} were already done" in result.output
    rows = by_path(read_rows(folder / RESULTS))
    assert len(rows) == len(expected) + 2
    assert (rows["new.png"]["breed"], rows["rex.jpg"]["breed"]) == ("Maltese", "Japanese Chin")
    assert (rows["kennel_2/notes.jpg"]["status"], rows["kennel_2/notes.jpg"]["breed"]) == ("dog", "Chihuahua")


def test_photos_are_never_modified_even_with_sidecars_and_sorting(tmp_path, model, photos):
    folder, _ = photos
    make_bad_files(folder / "bad")
    before = fingerprints(folder)

    result = tag(folder, "--model", model, "--xmp", "--sort-into", tmp_path / "sorted")

    after = fingerprints(folder)
    assert result.exit_code == 1, result.output
    assert {path: after[path] for path in before} == before, "every original byte-identical, same mtime"
    assert {path for path in after if path not in before} == {
        RESULTS, "rex.xmp", "bella.xmp", "kennel_2/max.xmp", "kennel_2/luna.xmp", "kennel_2/old/daisy.xmp",
        "kennel_2/old/coco.xmp"}, "only the results file and sidecars of dogs are new"


LIGHTROOM_SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmp:Rating="4">
   <dc:subject><rdf:Bag><rdf:li>Adopted</rdf:li><rdf:li>Kennel 4</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>Shelter|Kennel 4</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <digiKam:TagsList><rdf:Seq><rdf:li>Shelter/Kennel 4</rdf:li></rdf:Seq></digiKam:TagsList>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_xmp_sidecars_carry_the_breed_and_keep_every_existing_tag(model, photos):
    folder, _ = photos
    (folder / "rex.xmp").write_text(LIGHTROOM_SIDECAR)
    (folder / "kennel_2" / "luna.xmp").write_text("<x:xmpmeta>half a sidecar")

    first = tag(folder, "--model", model, "--xmp")
    second = tag(folder, "--model", model, "--xmp")

    assert read_keywords(folder / "rex.xmp") == (
        ["Adopted", "Kennel 4", "Chihuahua"], ["Shelter|Kennel 4", "Dogs|Toy|Chihuahua"])
    merged = (folder / "rex.xmp").read_text()
    assert 'xmp:Rating="4"' in merged and "<digiKam:TagsList><rdf:Seq><rdf:li>Shelter/Kennel 4" in merged
    assert read_keywords(folder / "bella.xmp") == (["Japanese Chin"], ["Dogs|Toy|Japanese Chin"])
    assert not (folder / "cat.xmp").exists(), "no breed keyword for a photo that is not a dog"
    assert (folder / "kennel_2" / "luna.xmp").read_text() == "<x:xmpmeta>half a sidecar", "left unchanged"
    rows = by_path(read_rows(folder / RESULTS))
    luna = rows["kennel_2/luna.bmp"]
    assert (luna["status"], luna["breed"], luna["error"]) == ("dog", "Chihuahua", ""), "the photo keeps its row"
    assert re.search(r"Not written.*\n  \S*kennel_2/luna\.bmp: no sidecar: luna\.xmp: the existing sidecar is not "
                     r"valid XML", first.output), first.output
    assert "Could not read" not in first.output, "the photo was read and tagged"
    assert "XMP sidecars (rex.xmp or rex.jpg.xmp for rex.jpg): 5 written, 0 already had the breed." in first.output
    assert "5 written" not in second.output and "0 written, 5 already had the breed" in second.output
    assert (first.exit_code, second.exit_code) == (1, 1), "a sidecar not written is worth a look: exit code 1"
    assert len(rows) == 7, "sidecars are never tagged themselves"


def test_adding_xmp_to_a_finished_run_writes_the_sidecars_without_tagging_again(model, photos):
    folder, _ = photos
    assert tag(folder, "--model", model).exit_code == 0

    result = tag(folder, "--model", model, "--xmp")

    assert result.exit_code == 0 and "Tagged 0 photos in" in result.output
    assert read_keywords(folder / "kennel_2" / "max.xmp") == (["Maltese"], ["Dogs|Toy|Maltese"])
    assert ": 6 written, 0 already had the breed." in result.output


def test_sort_into_copies_photos_into_breed_folders_and_never_moves_them(model, photos):
    folder, _ = photos
    sorted_ = folder / "sorted"  # inside the tagged folder: its copies must not be tagged again

    first = tag(folder, "--model", model, "--sort-into", sorted_)
    second = tag(folder, "--model", model, "--sort-into", sorted_)

    copies = sorted(str(p.relative_to(sorted_)) for p in sorted_.rglob("*") if p.is_file())
    assert copies == ["Chihuahua/luna.bmp", "Chihuahua/rex.jpg", "Japanese Chin/bella.png",
                      "Japanese Chin/daisy.tiff", "Maltese/coco.gif", "Maltese/max.webp",
                      "_not_a_dog/cat.jpg"], "each photo copied once, even after two runs"
    assert (folder / "rex.jpg").read_bytes() == (sorted_ / "Chihuahua" / "rex.jpg").read_bytes()
    assert len(read_rows(folder / RESULTS)) == 7
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert f"Copied 7 photos into {sorted_} (a folder per breed, _unsure, _not_a_dog); 0 were already there." in first.output
    assert f"Copied 0 photos into {sorted_} (a folder per breed, _unsure, _not_a_dog); 7 were already there." in second.output


def test_two_photos_with_the_same_name_both_get_sorted(tmp_path, model):
    folder = tmp_path / "photos"
    make_breed_photo(folder / "a" / "rex.jpg", 0, seed=1)
    make_breed_photo(folder / "b" / "rex.jpg", 0, seed=2)

    assert tag(folder, "--model", model, "--sort-into", tmp_path / "sorted").exit_code == 0

    assert sorted(p.name for p in (tmp_path / "sorted" / "Chihuahua").iterdir()) == ["rex (2).jpg", "rex.jpg"]


def test_results_can_be_json_lines_written_outside_the_folder(tmp_path, model, photos):
    folder, expected = photos
    out = tmp_path / "reports" / "kennels.jsonl"

    result = tag(folder, "--model", model, "--out", out)

    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # paths lead from the results file's folder to the photos: the file is readable on its own
    assert {row["path"]: row["breed"] if row["status"] == "dog" else None for row in rows} == {
        f"../photos/{path}": breed for path, breed in expected.items()}
    rex = next(row for row in rows if row["path"] == "../photos/rex.jpg")
    assert rex["top_k"][0] == {"breed": "Chihuahua", "probability": rex["confidence"]} and rex["error"] is None
    assert isinstance(rex["mtime"], str) and parse_mtime(rex["mtime"]) == (folder / "rex.jpg").stat().st_mtime_ns // 10**9 * 10**9
    cat = next(row for row in rows if row["path"] == "../photos/cat.jpg")
    assert (cat["status"], cat["breed"], cat["confidence"], cat["top_k"]) == ("not_a_dog", None, None, [])
    assert not (folder / RESULTS).exists() and not list(folder.glob("dogtag-results*"))


def test_a_folder_tagged_into_json_lines_is_resumed_by_a_run_without_format(model, photos):
    folder, expected = photos
    assert tag(folder, "--model", model, "--format", "jsonl").exit_code == 0

    again = tag(folder, "--model", model)

    assert again.exit_code == 0, again.output
    assert "Tagged 0 photos" in again.output and f"{len(expected)} were already done" in again.output
    assert sorted(path.name for path in folder.glob("dogtag-results*")) == ["dogtag-results.jsonl"]


def test_several_folders_get_a_results_file_each_or_share_one_with_out(tmp_path, model):
    for kennel in ("north", "south"):
        make_breed_photo(tmp_path / kennel / "rex.jpg", 0)

    separate = tag(tmp_path / "north", tmp_path / "south", "--model", model)
    shared = tag(tmp_path / "north", tmp_path / "south", "--model", model, "--out", tmp_path / "all.csv")

    assert (separate.exit_code, shared.exit_code) == (0, 0)
    assert [row["path"] for row in read_rows(tmp_path / "north" / RESULTS)] == ["rex.jpg"]
    assert [row["path"] for row in read_rows(tmp_path / "all.csv")] == ["north/rex.jpg", "south/rex.jpg"]
    nested = tag(tmp_path, tmp_path / "north", "--model", model, "--out", tmp_path / "nested.csv")
    assert nested.exit_code == 0 and [row["path"] for row in read_rows(tmp_path / "nested.csv")] == [
        "north/rex.jpg", "south/rex.jpg"], "a photo inside two given folders gets one row"


def test_thresholds_on_the_command_line_override_the_models(model, photos):
    folder, _ = photos

    assert tag(folder, "--model", model, "--min-confidence", "1", "--min-dog", "0").exit_code == 0

    statuses = {row["path"]: row["status"] for row in read_rows(folder / RESULTS)}
    assert set(statuses.values()) == {"unsure"}, "nothing is sure at 100 %, and everything may be a dog"


def test_predict_prints_the_top_breeds_of_each_photo(tmp_path, model):
    make_breed_photo(tmp_path / "rex.jpg", 2, quality=95)
    (tmp_path / "notes.jpg").write_text("hello")

    result = CliRunner().invoke(main, ["predict", str(tmp_path / "rex.jpg"), str(tmp_path / "notes.jpg"),
                                       "--model", str(model), "--top-k", "2"])

    assert result.exit_code == 1, "one photo could not be read"
    assert re.search(r"rex\.jpg: dog, dog probability \d+%\n  1\. Maltese\s+\d+\.\d%\n", result.output)
    assert "notes.jpg: not an image: this is a text file" in result.stderr


def test_without_a_usable_model_nothing_is_tagged_and_the_exit_code_is_3(tmp_path, monkeypatch, photos):
    import dogtag.models

    folder, _ = photos
    monkeypatch.setattr(dogtag.models, "DEFAULT_TFLITE", tmp_path / "none.tflite")
    monkeypatch.setattr(dogtag.models, "DEFAULT_ONNX", tmp_path / "none.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")

    missing, broken = tag(folder), tag(folder, "--model", tmp_path / "empty.onnx")

    assert missing.exit_code == broken.exit_code == 3
    assert "no bundled model" in missing.output and "pass a model with --model FILE" in missing.output
    assert "empty.onnx" in broken.output and not (folder / RESULTS).exists()


def test_a_results_file_that_is_not_ours_is_never_overwritten(tmp_path, model, photos):
    folder, _ = photos
    (tmp_path / "adoptions.csv").write_text("name,age\nRex,3\n")

    result = tag(folder, "--model", model, "--out", tmp_path / "adoptions.csv")

    assert result.exit_code == 3 and "is not a Dogtag results file" in result.output
    assert (tmp_path / "adoptions.csv").read_text() == "name,age\nRex,3\n"


def test_two_runs_never_write_the_same_results_file_at_once(model, photos):
    from dogtag.edge_app.results import exclusive_access

    folder, _ = photos

    with exclusive_access(folder / RESULTS):  # a first run, still busy
        second = tag(folder, "--model", model)

    assert second.exit_code == 3 and "another `dogtag tag` is writing results here" in second.output
    assert not (folder / RESULTS).exists()
    assert tag(folder, folder, "--model", model).exit_code == 0, "a folder given twice is tagged once"
    assert len(read_rows(folder / RESULTS)) == 7


def test_the_progress_bar_shows_count_percentage_rate_and_eta():
    stream = io.StringIO()
    bar = ProgressBar(stream, interval=0)

    for done in (0, 5, 10):
        bar.update(done, 10)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].startswith("[###############---------------] 5/10  50%")
    assert re.search(r"\d+\.\d photos/s  ETA \d", lines[1]), lines[1]


def test_help_documents_the_exit_codes():
    result = CliRunner().invoke(main, ["tag", "--help"])

    assert result.exit_code == 0
    assert "1    finished, but this run could not read some photos" in result.output and "--sort-into" in result.output


def test_dogtag_tag_runs_where_tensorflow_is_not_installed(tmp_path, model, photos):
    folder, _ = photos
    script = (
        "import sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, *args):\n"
        "        if (name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'onnx') or name.split('.')[:2] in (['dogtag', 'train'], ['dogtag', 'export'])):\n"
        "            raise ImportError(f'{name} is not installed (blocked by the test)')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "from dogtag.cli import main\n"
        "try:\n"
        f"    main(['tag', {str(folder)!r}, '--model', {str(model)!r}])\n"
        "except SystemExit as done:\n"
        "    print('exit', done.code, 'tensorflow' in sys.modules)\n"
    )

    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert result.stdout.strip().endswith("exit 0 False"), result.stdout + result.stderr
    assert len(read_rows(folder / RESULTS)) == 7
