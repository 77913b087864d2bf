"""Reviews in the edge app without the review page: the reviews file, the results columns, the sidecar."""

from __future__ import annotations

from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.results import FIELDS, FIELDS_BEFORE_REVIEWS, Row, read_results
from dogtag.edge_app.reviews import Review, append_review, read_reviews, reviews_path, with_review
from dogtag.edge_app.tagging import tag_folders
from dogtag.edge_app.xmp import add_breed_keyword, read_keywords, set_breed_keyword
from tests.review_fixtures import draw_dog


def test_a_results_file_from_before_reviews_is_resumed_and_gets_the_review_columns(tmp_path):
    folder = tmp_path / "photos"
    for seed in range(3):
        draw_dog(folder / f"dog{seed}.jpg", seed)
    classifier = Classifier("fast", num_threads=1)
    tag_folders([folder], classifier)
    results = folder / "dogtag-results.csv"
    rows, _ = read_results(results, "csv")
    results.write_text("\ufeff" + ",".join(FIELDS_BEFORE_REVIEWS) + "\n" + "".join(
        ",".join(row.line.rstrip("\n").split(",")[:10]) + "\n" for row in rows), encoding="utf-8")
    append_review(reviews_path(results), Review("dog1.jpg", "beagle", "breed", "Ana", "2025-01-01T10:00:00Z"))
    draw_dog(folder / "dog3.jpg", 3)

    summary = tag_folders([folder], classifier)

    assert (summary.resumed, summary.tagged) == (3, 1), "the old rows still count as done"
    text = results.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == ",".join(FIELDS)
    again, whole = read_results(results, "csv")
    assert whole and sorted(row.path for row in again) == ["dog0.jpg", "dog1.jpg", "dog2.jpg", "dog3.jpg"]
    assert {row.path: row.reviewed_breed for row in again}["dog1.jpg"] == "beagle"


def test_the_tag_summary_says_how_many_rows_a_person_reviewed(tmp_path):
    folder = tmp_path / "photos"
    for seed in range(3):
        draw_dog(folder / f"dog{seed}.jpg", seed)
    first = CliRunner().invoke(main, ["tag", str(folder), "--model", "fast"])
    assert first.exit_code == 0, first.output
    assert "Reviewed by a person: 0 of 3" in first.output
    append_review(reviews_path(folder / "dogtag-results.csv"),
                  Review("dog1.jpg", "beagle", "breed", "Ana", "2025-01-01T10:00:00Z"))

    again = CliRunner().invoke(main, ["tag", str(folder), "--model", "fast"])

    assert again.exit_code == 0, again.output
    assert "Reviewed by a person: 1 of 3" in again.output


def test_the_last_review_of_a_photo_wins_and_a_withdrawn_one_clears_the_row(tmp_path):
    path = tmp_path / "dogtag-results.reviews.jsonl"
    append_review(path, Review("rex.jpg", "beagle", "breed", "Ana", "2025-01-01T10:00:00Z"))
    append_review(path, Review("rex.jpg", "basset", "breed", "Bo", "2025-01-01T10:05:00Z"))
    append_review(path, Review("max.jpg", "", "withdrawn"))

    reviews = read_reviews(path)

    assert (reviews["rex.jpg"].reviewed_breed, reviews["rex.jpg"].reviewed_by) == ("basset", "Bo")
    row = Row(path="max.jpg", status="dog", breed="pug", reviewed_breed="pug", reviewed_by="Ana", reviewed_at="x")
    cleared = with_review(row, reviews["max.jpg"])
    assert (cleared.reviewed_breed, cleared.reviewed_by, cleared.reviewed_at, cleared.breed) == ("", "", "", "pug")
    assert with_review(row, None) is row, "no review in the file: what the results file says stays"


def test_a_corrected_sidecar_carries_only_the_reviewed_breed_and_keeps_every_other_tag(tmp_path):
    photo = draw_dog(tmp_path / "rex.jpg", 1)
    add_breed_keyword(photo, "beagle")
    sidecar = tmp_path / "rex.xmp"
    sidecar.write_text(sidecar.read_text().replace("<rdf:li>beagle</rdf:li>", "<rdf:li>adopted</rdf:li><rdf:li>beagle</rdf:li>"))

    set_breed_keyword(photo, "basset")
    assert read_keywords(sidecar) == (["adopted", "basset"], ["Dogs|Hound|basset"])
    set_breed_keyword(photo, None)  # not a dog after all
    assert read_keywords(sidecar) == (["adopted"], [])
    assert set_breed_keyword(tmp_path / "nothing.jpg", None) is False
    assert not (tmp_path / "nothing.xmp").exists(), "no sidecar is made just to say 'no breed'"
