"""What Dogtag writes and prints must never contradict itself: rows, `dogtag predict`, reruns, exit codes.

These run the bundled fast model on drawn photos (no TensorFlow needed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.breeds import hierarchical_keyword
from dogtag.edge_app.classifier import Prediction
from dogtag.edge_app.cli import describe_prediction
from dogtag.edge_app.results import Row, format_for, read_results
from dogtag.edge_app.tagging import sorted_folder_name
from dogtag.edge_app.xmp import read_keywords
from tests.edge_fixtures import make_breed_photo
from tests.review_fixtures import draw_dog
from tests.test_edge_app_sidecars import DIGIKAM_SIDECAR, assert_exiftool_reads

REPO = Path(__file__).resolve().parents[1]


def run(*args) -> object:
    """Run `dogtag ARGS`; its output without the timing of the first line ("in 0.4 s (9.5 photos/s)")."""
    result = CliRunner().invoke(main, [*map(str, args)])
    result.said = re.sub(r" in [\d.:]+ s? ?\([\d.]+ photos/s\)", "", result.output)
    return result


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


# The bundled fast model with no thresholds: every drawn dog is a `dog` with a breed.
EVERY_PHOTO_A_DOG = ["--min-dog", "0", "--min-confidence", "0"]


def shelter(folder: Path, count: int = 4) -> Path:
    for seed in range(count):
        draw_dog(folder / f"dog{seed}.jpg", seed)
    return folder


def rows(results: Path) -> dict[str, Row]:
    found, whole = read_results(results, format_for(results))
    assert whole, "every line of the results file is a whole row"
    return {row.path: row for row in found}


def sorted_copies(sort_folder: Path) -> dict[str, list[str]]:
    """photo name -> the --sort-into folders holding a copy of it."""
    copies: dict[str, list[str]] = {}
    for path in sorted(sort_folder.rglob("*.jpg")):
        copies.setdefault(path.name, []).append(path.parent.name)
    return copies


def assert_files_agree_with_rows(folder: Path, sort_folder: Path) -> dict[str, Row]:
    """Every sidecar carries its row's breed (or none) and every photo has one copy, in its row's folder."""
    current = rows(folder / "dogtag-results.csv")
    for path, row in current.items():
        sidecar = folder / Path(path).with_suffix(".xmp")
        breed = row.breed if row.status == "dog" else None
        if sidecar.exists():
            _, hierarchical = read_keywords(sidecar)
            assert [k for k in hierarchical if k.startswith("Dogs|")] == ([hierarchical_keyword(breed)] if breed else []), path
        else:
            assert breed is None, f"{path}: a dog without its sidecar"
        assert sorted_copies(sort_folder)[Path(path).name] == [sorted_folder_name(row)], path
    return current


def test_a_rerun_with_another_model_says_so_and_brings_every_sidecar_and_copy_in_step(tmp_path):
    folder, sort_folder = shelter(tmp_path / "photos"), tmp_path / "sorted"
    outputs = ["--xmp", "--sort-into", sort_folder, *EVERY_PHOTO_A_DOG]
    assert run("tag", folder, "--model", "fast", *outputs).exit_code == 0
    before = rows(folder / "dogtag-results.csv")
    sidecar = folder / "dog0.xmp"
    sidecar.write_text(sidecar.read_text().replace("<rdf:li>Dogs|", "<rdf:li>Status|Adopted</rdf:li><rdf:li>Dogs|"))

    result = run("tag", folder, "--model", "accurate", *outputs)

    assert result.exit_code == 0, result.output
    after = assert_files_agree_with_rows(folder, sort_folder)
    changed = [path for path in after if after[path].breed != before[path].breed]
    assert changed, "the two models disagree on some drawn dog (else this test proves nothing)"
    old_model, new_model = before["dog0.jpg"].model_version, after["dog0.jpg"].model_version
    assert f"4 photos were tagged with another model ({old_model}); tagged again with {new_model}" in result.output
    assert f"Changed since the last run: {len(changed)} changed breed" in result.output
    assert "Status|Adopted" in read_keywords(sidecar)[1], "what a person wrote stays"
    breed = after["dog0.jpg"].breed
    assert_exiftool_reads(sidecar, [breed], ["Status|Adopted", hierarchical_keyword(breed)])


def test_a_rerun_with_other_thresholds_says_what_changes_without_tagging_again(tmp_path):
    folder, sort_folder = shelter(tmp_path / "photos"), tmp_path / "sorted"
    assert run("tag", folder, "--model", "fast", "--xmp", "--sort-into", sort_folder, *EVERY_PHOTO_A_DOG).exit_code == 0

    stricter = run("tag", folder, "--model", "fast", "--sort-into", sort_folder, "--min-dog", "0",
                   "--min-confidence", "0.999")  # no --xmp: the sidecars made before are kept in step anyway

    assert stricter.exit_code == 0, stricter.output
    assert "Tagged 0 photos" in stricter.said
    assert "Under this run's thresholds 4 photos changed: 4 dog -> unsure" in stricter.output
    after = assert_files_agree_with_rows(folder, sort_folder)
    assert {row.status for row in after.values()} == {"unsure"}
    assert sorted(path.name for path in folder.glob("*.xmp")) == ["dog0.xmp", "dog1.xmp", "dog2.xmp", "dog3.xmp"]

    again = run("tag", folder, "--model", "fast", "--sort-into", sort_folder, "--min-dog", "0", "--min-confidence", "0.999")
    assert "changed" not in again.output, "the same thresholds again change nothing"


def test_an_unreadable_photo_is_tried_again_only_once_it_has_changed(tmp_path):
    folder = shelter(tmp_path / "photos", 2)
    (folder / "broken.jpg").write_text("not a photo")

    first = run("tag", folder, "--model", "fast")
    second = run("tag", folder, "--model", "fast")
    draw_dog(folder / "broken.jpg", 5)  # the volunteer copied it again, whole this time
    third = run("tag", folder, "--model", "fast")

    assert first.exit_code == 1 and "Tagged 2 photos; 1 could not be read" in first.said
    assert second.exit_code == 0, "nothing new went wrong: a nightly job stays green"
    assert "Tagged 0 photos; 2 were already done" in second.said
    assert "1 photo could not be read by an earlier run and has not changed since: not tried again" in second.output
    assert third.exit_code == 0 and "Tagged 1 photo; 2 were already done" in third.said
    assert rows(folder / "dogtag-results.csv")["broken.jpg"].status != "error"


def test_the_summary_counts_in_words_that_agree_with_the_numbers(tmp_path):
    folder = shelter(tmp_path / "photos", 1)

    first = run("tag", folder, "--model", "fast")
    draw_dog(folder / "dog1.jpg", 1)
    second = run("tag", folder, "--model", "fast")

    assert "Tagged 1 photo." in first.said
    assert "Tagged 1 photo; 1 was already done." in second.said


def test_a_folder_without_photos_says_so_and_exits_1(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "IMG_0001.CR2").write_bytes(b"raw")

    result = run("tag", tmp_path / "raw", "--model", "fast")

    assert result.exit_code == 1
    assert "No photos found in" in result.output and "IMG_0001.CR2" in result.output


def test_the_readme_documents_every_exit_code():
    readme = (REPO / "README.md").read_text(encoding="utf-8")

    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"(?m)^\| `{code}` \|", readme), f"exit code {code} is not in the README's table"


def test_results_written_outside_the_folder_name_the_photos_relative_to_the_results_file(tmp_path):
    folder = shelter(tmp_path / "photos", 2)
    out = tmp_path / "reports" / "kennels.csv"

    first = run("tag", folder, "--model", "fast", "--out", out)
    second = run("tag", folder, "--model", "fast", "--out", out)

    assert first.exit_code == 0, first.output
    assert sorted(rows(out)) == ["../photos/dog0.jpg", "../photos/dog1.jpg"]
    assert all((out.parent / path).is_file() for path in rows(out)), "each path leads from the results file to its photo"
    assert "Tagged 0 photos; 2 were already done" in second.said


def test_the_mtime_column_is_a_date_that_spreadsheets_read(tmp_path):
    folder = shelter(tmp_path / "photos", 1)
    os.utime(folder / "dog0.jpg", ns=(1_765_000_000_123_456_789, 1_765_000_000_123_456_789))

    run("tag", folder, "--model", "fast")
    again = run("tag", folder, "--model", "fast")

    mtime = rows(folder / "dogtag-results.csv")["dog0.jpg"].mtime
    assert mtime == datetime.fromtimestamp(1_765_000_000).strftime("%Y-%m-%d %H:%M:%S"), "local time, to the second"
    assert "Tagged 0 photos; 1 was already done" in again.said, "and it still tells an unchanged photo"
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice is not installed: the CSV was not opened in a spreadsheet")
    # As LibreOffice opens it with "Detect special numbers" ticked in its CSV dialog (Excel needs nothing)
    subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo-profile",
                    "--infilter=CSV:44,34,76,1,,1033,false,true", "--convert-to", "fods", "--outdir", str(tmp_path),
                    str(folder / "dogtag-results.csv")], check=True, capture_output=True, timeout=300)
    sheet = (tmp_path / "dogtag-results.fods").read_text(encoding="utf-8")
    assert re.search(r'office:value-type="date" office:date-value="[\d-]+T[\d:]+"', sheet), "read as a date"


def test_sorted_copies_carry_their_sidecar(tmp_path):
    folder, sort_folder = shelter(tmp_path / "photos", 2), tmp_path / "sorted"
    (folder / "dog1.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")

    result = run("tag", folder, "--model", "fast", "--xmp", "--sort-into", sort_folder, *EVERY_PHOTO_A_DOG)

    assert result.exit_code == 0, result.output
    breeds = {path: row.breed for path, row in rows(folder / "dogtag-results.csv").items()}
    copy0, copy1 = sort_folder / breeds["dog0.jpg"], sort_folder / breeds["dog1.jpg"]
    assert (copy0 / "dog0.xmp").read_bytes() == (folder / "dog0.xmp").read_bytes()
    assert (copy1 / "dog1.jpg.xmp").read_bytes() == (folder / "dog1.jpg.xmp").read_bytes()
    assert "Vaccinated" in read_keywords(copy1 / "dog1.jpg.xmp")[0]


def test_the_raspberry_pi_check_compares_not_a_dog_rows_that_list_no_breeds():
    from deploy import raspberry_pi_check as check

    wall = {"path": "wall.jpg", "status": "not_a_dog", "breed": "", "confidence": "", "top_k": "",
            "dog_probability": "0.0200", "error": ""}
    there = dict(wall, dog_probability="0.0300")

    result = check.compare("m.tflite", {"wall.jpg": wall}, {"wall.jpg": there}, min_confidence=0.5, min_dog=0.5,
                           tolerance=0.1)

    assert result.problems == [] and result.max_difference == pytest.approx(0.01)


def test_a_restart_also_moves_the_copies_and_updates_the_sidecars_of_changed_rows(tmp_path):
    folder, sort_folder = shelter(tmp_path / "photos", 2), tmp_path / "sorted"
    assert run("tag", folder, "--model", "fast", "--xmp", "--sort-into", sort_folder, *EVERY_PHOTO_A_DOG).exit_code == 0

    result = run("tag", folder, "--model", "fast", "--xmp", "--sort-into", sort_folder, "--restart",
                 "--min-dog", "0", "--min-confidence", "0.999")

    assert result.exit_code == 0, result.output
    assert "Changed since the last run: 2 dog -> unsure." in result.output
    assert {row.status for row in assert_files_agree_with_rows(folder, sort_folder).values()} == {"unsure"}
