"""`dogtag review` through its HTTP API, as the page and a shelter's database use it: listing tagged
photos, correcting them (saved at once, kept by every later `dogtag tag` run), adding photos, and
every way a request could reach what it must not."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest

pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
from fastapi.testclient import TestClient  # noqa: E402

from dogtag.edge_app.classifier import Classifier  # noqa: E402
from dogtag.edge_app.options import TagOptions  # noqa: E402
from dogtag.edge_app.results import FIELDS_BEFORE_REVIEWS, Row, exclusive_access, read_results, write_results  # noqa: E402
from dogtag.edge_app.reviews import read_review_log, reviews_path  # noqa: E402
from dogtag.edge_app.tagging import tag_folders  # noqa: E402
from dogtag.edge_app.xmp import read_keywords  # noqa: E402
from dogtag.review.library import NotFound  # noqa: E402
from dogtag.review.server import Options, ReviewServer, SetupError  # noqa: E402
from tests.edge_fixtures import fingerprints  # noqa: E402
from tests.review_fixtures import DELETED, MODEL, SHELTER_ROWS, draw_dog, make_shelter_folder, results_rows  # noqa: E402

RESULTS, REVIEWS = "dogtag-results.csv", "dogtag-results.reviews.jsonl"


@pytest.fixture
def shelter(tmp_path) -> Path:
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    return folder


@pytest.fixture
def servers(tmp_path):
    """Start review servers (not listening: requests go through TestClient); closed afterwards."""
    started = []

    def start(*folders, base_url="http://127.0.0.1:8765", **options) -> TestClient:
        options.setdefault("cache", str(tmp_path / "cache"))
        options.setdefault("model", MODEL)
        server = ReviewServer(Options(folders=[str(f) for f in folders], port=0, **options))
        started.append(server)
        client = TestClient(server.app, base_url=base_url)
        client.server = server
        return client

    yield start
    for server in started:
        server.socket.close()


@pytest.fixture
def client(servers, shelter) -> TestClient:
    return servers(shelter)


def review(client, path, breed, who="Ana", source=0):
    response = client.post("/api/reviews", json={"source": source, "path": path, "reviewed_breed": breed,
                                                 "reviewed_by": who})
    assert response.status_code == 200, response.text
    return response.json()


def tag(folder, **options):
    return tag_folders([folder], Classifier(MODEL, num_threads=1), TagOptions(**options))


# ---- looking ----------------------------------------------------------------------------------------


def test_the_page_lists_unsure_photos_first_then_the_least_sure_with_breed_confidence_and_top_breeds(client):
    page = client.get("/api/photos").json()

    statuses = [item["status"] for item in page["items"]]
    assert statuses == ["unsure"] * 3 + ["dog"] * 5 + ["not_a_dog"]
    assert [item["path"] for item in page["items"][:3]] == ["coco.jpg", "bella.jpg", "kennel_2/luna.png"]
    dogs = [item["confidence"] for item in page["items"] if item["status"] == "dog"]
    assert dogs == sorted(dogs)
    bella = next(item for item in page["items"] if item["path"] == "bella.jpg")
    assert bella["breed"] == "golden retriever" and bella["confidence"] == 0.48
    assert [(t["breed"], t["probability"]) for t in bella["top_k"]] == [
        ("golden retriever", 0.48), ("Labrador retriever", 0.31), ("kuvasz", 0.1)]
    assert page["counts"] == {"all": 9, "unsure": 3, "dog": 5, "not_a_dog": 1, "error": 0, "reviewed": 0,
                              "unreviewed": 9}


def test_filters_by_status_and_breed_and_pages_through_the_rows(client):
    unsure = client.get("/api/photos", params={"status": "unsure"}).json()
    assert {item["path"] for item in unsure["items"]} == {"coco.jpg", "bella.jpg", "kennel_2/luna.png"}
    pugs = client.get("/api/photos", params={"breed": "pug"}).json()
    assert [item["path"] for item in pugs["items"]] == ["kennel_2/daisy.jpg"]
    first = client.get("/api/photos", params={"limit": 4}).json()
    rest = client.get("/api/photos", params={"limit": 4, "offset": 4}).json()
    assert first["total"] == rest["total"] == 9
    assert len(first["items"]) == 4 and len(rest["items"]) == 4
    assert not {i["path"] for i in first["items"]} & {i["path"] for i in rest["items"]}
    assert client.get("/api/photos", params={"status": "cats"}).status_code == 400


def test_thumbnails_are_made_once_cached_outside_the_photo_folder_and_no_photo_changes(client, shelter, tmp_path):
    before = fingerprints(shelter)

    first = client.get("/api/thumbnail/0/kennel_2/max.jpg")
    large = client.get("/api/large/0/kennel_2/max.jpg")

    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    from PIL import Image

    assert max(Image.open(io.BytesIO(first.content)).size) <= 360
    assert Image.open(io.BytesIO(large.content)).size == (320, 240)  # never enlarged
    cached = sorted((tmp_path / "cache").rglob("*.jpg"))
    assert len(cached) == 2
    stamp = cached[0].stat().st_mtime_ns
    assert client.get("/api/thumbnail/0/kennel_2/max.jpg").content == first.content
    assert cached[0].stat().st_mtime_ns == stamp, "served from the cache, not made again"
    assert fingerprints(shelter) == before


def test_a_photo_deleted_since_tagging_shows_a_placeholder_message(client):
    page = client.get("/api/photos").json()

    gone = next(item for item in page["items"] if item["path"] == DELETED)
    assert gone["missing"] is True
    assert gone["problem"].startswith(f"{DELETED}: not found in ") and "deleted or moved" in gone["problem"]
    response = client.get(f"/api/thumbnail/0/{DELETED}")
    assert response.status_code == 404 and "deleted or moved" in response.json()["detail"]
    assert all(item["missing"] is False for item in page["items"] if item["path"] != DELETED)


def test_a_damaged_results_row_is_named_and_every_other_row_shown_and_kept(servers, shelter):
    results = shelter / RESULTS
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(3, '"kennel_2/torn.jpg",dog,bea\n')
    results.write_text("".join(lines), encoding="utf-8")
    client = servers(shelter)

    page = client.get("/api/photos").json()

    assert page["total"] == 9
    (problem,) = page["problems"]
    assert "line 4" in problem and "kennel_2/torn.jpg" in problem and RESULTS in problem
    review(client, "rex.jpg", "basset")
    assert '"kennel_2/torn.jpg",dog,bea\n' in results.read_text(encoding="utf-8"), "the damaged line is kept"
    assert results_rows(results)["rex.jpg"]["reviewed_breed"] == "basset"


def test_the_breed_list_gives_display_names_ids_groups_and_finds_nicknames_and_old_names(client):
    everything = client.get("/api/breeds").json()
    names = [breed["name"] for breed in everything["breeds"]]

    assert len(names) == 119 and len(set(names)) == 119, "Eskimo dog answers as Siberian Husky"
    assert "Cairn Terrier" in names and "cairn" not in names and "Eskimo dog" not in names
    assert everything["special_names"] == ["mixed breed", "not a dog"]
    cairn = next(breed for breed in everything["breeds"] if breed["name"] == "Cairn Terrier")
    assert cairn == {"name": "Cairn Terrier", "breed_id": "n02096177", "stanford_name": "cairn",
                     "group": "Terrier", "aliases": ["cairn", "toto"]}

    def first(query: str) -> list[str]:
        return [breed["name"] for breed in client.get("/api/breeds", params={"q": query}).json()["breeds"]][:2]

    assert first("lab")[0] == "Labrador Retriever"
    assert first("yorkie")[0] == "Yorkshire Terrier"
    assert first("GSD")[0] == "German Shepherd Dog"
    assert first("husky")[0] == first("eskimo dog")[0] == "Siberian Husky"
    assert set(first("pit bull")) == {"American Staffordshire Terrier", "Staffordshire Bull Terrier"}
    assert first("Blenheim spaniel")[0] == "Cavalier King Charles Spaniel"
    assert client.get("/api/breeds", params={"q": "zebra"}).json()["breeds"] == []
    schema = client.get("/openapi.json").json()["components"]["schemas"]["BreedOut"]["properties"]
    assert set(schema) == {"name", "breed_id", "stanford_name", "group", "aliases"}


# ---- correcting -------------------------------------------------------------------------------------


def test_a_correction_is_saved_at_once_in_the_reviews_file_the_results_file_and_the_sidecar(client, shelter):
    sidecar = shelter / "bella.xmp"
    sidecar.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:lr="http://ns.adobe.com/lightroom/1.0/"><dc:subject><rdf:Bag><rdf:li>adopted</rdf:li>'
        '<rdf:li>golden retriever</rdf:li></rdf:Bag></dc:subject><lr:hierarchicalSubject><rdf:Bag>'
        "<rdf:li>Dogs|golden retriever</rdf:li></rdf:Bag></lr:hierarchicalSubject></rdf:Description>"
        "</rdf:RDF></x:xmpmeta>", encoding="utf-8")

    answer = review(client, "bella.jpg", "Labrador retriever", who="Ana")

    assert answer["item"]["reviewed_breed"] == "Labrador retriever" and answer["warnings"] == []
    row = results_rows(shelter / RESULTS)["bella.jpg"]
    assert (row["reviewed_breed"], row["reviewed_by"]) == ("Labrador retriever", "Ana")
    assert row["reviewed_at"].endswith("Z") and row["breed"] == "golden retriever", "the model's answer stays"
    (saved,), damaged = read_review_log(shelter / REVIEWS)
    assert damaged == []
    assert (saved.path, saved.reviewed_breed, saved.kind, saved.model_breed) == (
        "bella.jpg", "Labrador retriever", "breed", "golden retriever")
    subject, hierarchical = read_keywords(sidecar)
    assert subject == ["adopted", "Labrador retriever"]
    assert hierarchical == ["Dogs|Sporting|Labrador retriever"]
    assert client.get("/api/photos/0/bella.jpg").json()["reviewed_by"] == "Ana"


@pytest.mark.parametrize(("name", "kind"), [("mixed breed", "mixed"), ("not a dog", "not_a_dog"),
                                            ("Labradoodle", "other")])
def test_mixed_breed_not_a_dog_and_names_the_model_does_not_know_are_kept_apart(client, shelter, name, kind):
    review(client, "coco.jpg", name)

    assert results_rows(shelter / RESULTS)["coco.jpg"]["reviewed_breed"] == name
    (saved,), _ = read_review_log(shelter / REVIEWS)
    assert saved.kind == kind


def test_undo_withdraws_a_review_and_the_history_stays_in_the_reviews_file(client, shelter):
    review(client, "rex.jpg", "basset")
    review(client, "rex.jpg", "")

    row = results_rows(shelter / RESULTS)["rex.jpg"]
    assert (row["reviewed_breed"], row["reviewed_by"], row["reviewed_at"]) == ("", "", "")
    log, _ = read_review_log(shelter / REVIEWS)
    assert [(r.reviewed_breed, r.kind) for r in log] == [("basset", "breed"), ("", "withdrawn")]


def test_two_browser_tabs_saving_at_the_same_time_lose_nothing(servers, shelter):
    tabs = [servers(shelter), servers(shelter)]  # two servers even: two processes on one folder
    names = sorted(SHELTER_ROWS)
    errors = []

    def correct(tab, paths):
        for path in paths:
            response = tab.post("/api/reviews", json={"path": path, "reviewed_breed": f"checked {path}"})
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=correct, args=(tab, names[i::2])) for i, tab in enumerate(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    log, damaged = read_review_log(shelter / REVIEWS)
    assert damaged == [] and sorted(r.path for r in log) == names
    tabs[0].get("/api/photos")  # a later request finishes any results update that had to wait
    rows = results_rows(shelter / RESULTS)
    assert {path: rows[path]["reviewed_breed"] for path in names} == {path: f"checked {path}" for path in names}


def test_a_correction_made_while_dogtag_tag_runs_is_kept_and_reaches_the_results_file_after(client, shelter):
    with exclusive_access(shelter / RESULTS):  # what a `dogtag tag` run holds while it writes
        answer = review(client, "bella.jpg", "kuvasz")
        assert answer["warnings"] == [] and answer["item"]["reviewed_breed"] == "kuvasz"
        assert results_rows(shelter / RESULTS)["bella.jpg"]["reviewed_breed"] == ""
        assert [r.reviewed_breed for r in read_review_log(shelter / REVIEWS)[0]] == ["kuvasz"]

    client.get("/api/photos")

    assert results_rows(shelter / RESULTS)["bella.jpg"]["reviewed_breed"] == "kuvasz"


def test_a_torn_last_review_line_is_skipped_and_the_next_review_is_whole(client, shelter):
    review(client, "rex.jpg", "basset")
    with open(shelter / REVIEWS, "ab") as file:
        file.write(b'{"path": "bella.jpg", "reviewed_br')  # a power cut in the middle of a write

    review(client, "coco.jpg", "toy poodle")

    log, damaged = read_review_log(shelter / REVIEWS)
    assert [r.path for r in log] == ["rex.jpg", "coco.jpg"] and damaged == [2]
    assert results_rows(shelter / RESULTS)["coco.jpg"]["reviewed_breed"] == "toy poodle"


def test_a_review_survives_every_later_tag_run_and_xmp_writes_the_reviewed_breed(servers, tmp_path):
    folder = tmp_path / "intake-day"
    for seed, name in enumerate(["rex.jpg", "bella.jpg"]):
        draw_dog(folder / name, seed)
    tag(folder)
    client = servers(folder)
    review(client, "rex.jpg", "Labradoodle", who="Ana")

    tag(folder)  # resumed: nothing to do
    assert results_rows(folder / RESULTS)["rex.jpg"]["reviewed_breed"] == "Labradoodle"
    tag(folder, restart=True)  # every photo tagged again
    assert results_rows(folder / RESULTS)["rex.jpg"]["reviewed_breed"] == "Labradoodle"
    draw_dog(folder / "rex.jpg", seed=5)  # the photo edited: tagged again, the review kept
    tag(folder, xmp=True)
    row = results_rows(folder / RESULTS)["rex.jpg"]
    assert (row["reviewed_breed"], row["reviewed_by"]) == ("Labradoodle", "Ana")
    assert row["size"] == str((folder / "rex.jpg").stat().st_size)
    subject, hierarchical = read_keywords(folder / "rex.xmp")
    assert subject == ["Labradoodle"] and hierarchical == ["Dogs|Labradoodle"]
    assert results_rows(folder / RESULTS)["bella.jpg"]["reviewed_breed"] == ""


def test_a_results_file_from_before_reviews_is_read_and_written_with_the_new_columns(servers, shelter):
    results = shelter / RESULTS
    rows, _ = read_results(results, "csv")
    old = "\ufeff" + ",".join(FIELDS_BEFORE_REVIEWS) + "\n" + "".join(
        ",".join(row.line.rstrip("\n").split(",")[: len(FIELDS_BEFORE_REVIEWS)]) + "\n" for row in rows)
    results.write_text(old, encoding="utf-8")
    client = servers(shelter)

    assert client.get("/api/photos").json()["total"] == 9
    review(client, "rex.jpg", "basset")

    rows = results_rows(results)
    assert len(rows) == 9 and rows["rex.jpg"]["reviewed_breed"] == "basset" and rows["coco.jpg"]["reviewed_breed"] == ""
    assert rows["bella.jpg"]["top_k"].startswith("golden retriever=0.4800")


def test_json_lines_results_get_the_review_too(servers, tmp_path):
    folder = tmp_path / "jsonl"
    make_shelter_folder(folder, fmt="jsonl")
    client = servers(folder)

    review(client, "rex.jpg", "basset")

    documents = [json.loads(line) for line in (folder / "dogtag-results.jsonl").read_text().splitlines()]
    assert {d["path"]: d["reviewed_breed"] for d in documents}["rex.jpg"] == "basset"
    assert reviews_path(folder / "dogtag-results.jsonl").exists()


# ---- tagging and adding photos ------------------------------------------------------------------------


def test_folders_without_results_are_tagged_first_with_progress(servers, tmp_path):
    folder = tmp_path / "new"
    for seed in range(3):
        draw_dog(folder / f"dog{seed}.jpg", seed)
    client = servers(folder)
    assert client.server.library.untagged()

    client.server.tagger.start().join()  # the job ends by itself: no clock to lose a race against

    progress = client.get("/api/status").json()["tagging"]
    assert (progress["state"], progress["done"], progress["total"]) == ("done", 3, 3)
    assert client.get("/api/photos").json()["total"] == 3
    assert (folder / RESULTS).exists()


def test_an_uploaded_photo_is_kept_in_the_intake_folder_tagged_at_once_and_never_overwrites(client, shelter):
    (shelter / "intake").mkdir()
    draw_dog(shelter / "intake" / "rex.jpg", seed=9)
    before = (shelter / "intake" / "rex.jpg").read_bytes()
    draw_dog(Path(shelter.parent / "phone.jpg"), seed=3)

    response = client.post("/api/photos", files=[("files", ("rex.jpg", (shelter.parent / "phone.jpg").read_bytes(),
                                                            "image/jpeg"))])

    assert response.status_code == 200, response.text
    (item,) = response.json()["items"]
    assert item["path"] == "intake/rex (2).jpg" and item["status"] in ("dog", "unsure", "not_a_dog")
    assert (shelter / "intake" / "rex.jpg").read_bytes() == before
    assert (shelter / "intake" / "rex (2).jpg").read_bytes() == (shelter.parent / "phone.jpg").read_bytes()
    assert "intake/rex (2).jpg" in results_rows(shelter / RESULTS)
    assert sorted(p.name for p in (shelter / "intake").iterdir()) == ["rex (2).jpg", "rex.jpg"], "no partial file"
    assert client.get("/api/photos").json()["total"] == 11, "the photo already in the intake folder is tagged too"


def test_the_same_photo_sent_twice_is_named_as_a_duplicate_and_kept_once(client, shelter, tmp_path):
    data = draw_dog(tmp_path / "rex.jpg", seed=4).read_bytes()
    assert client.post("/api/photos", files=[("files", ("rex.jpg", data, "image/jpeg"))]).status_code == 200

    again = client.post("/api/photos", files=[("files", ("IMG_0042.jpg", data, "image/jpeg"))])

    assert again.status_code == 422
    assert again.json()["errors"] == [f"IMG_0042.jpg: a duplicate: the same photo, byte for byte, as rex.jpg already in "
                                      f"{shelter / 'intake'}; not kept twice"]
    assert [p.name for p in (shelter / "intake").iterdir()] == ["rex.jpg"]


def test_an_upload_while_a_correction_is_being_written_waits_for_it_and_is_tagged_at_once(client, shelter, monkeypatch):
    import dogtag.review.jobs

    draw_dog(shelter.parent / "phone.jpg", seed=3)
    waiting = threading.Event()
    busy = dogtag.review.jobs._busy

    def noticing(error):
        found = busy(error)
        if found:
            waiting.set()
        return found

    monkeypatch.setattr(dogtag.review.jobs, "_busy", noticing)
    answers = []
    upload = threading.Thread(target=lambda: answers.append(client.post(
        "/api/photos", files=[("files", ("rex.jpg", (shelter.parent / "phone.jpg").read_bytes(), "image/jpeg"))])))
    with exclusive_access(shelter / RESULTS):  # another writer (a correction from another phone) holds the file
        upload.start()
        assert waiting.wait(timeout=300), "the upload found it held"  # (the bound only stops a hang)
    upload.join()  # and goes on once it is free

    (response,) = answers
    assert response.status_code == 200 and response.json()["errors"] == [], response.text
    (item,) = response.json()["items"]
    assert item["path"] == "intake/rex.jpg" and "intake/rex.jpg" in results_rows(shelter / RESULTS)


def test_uploads_that_are_not_photos_too_large_or_too_many_are_refused_and_nothing_is_kept(client, shelter):
    intake = shelter / "intake"
    refused = client.post("/api/photos", files=[("files", ("notes.jpg", b"adoption notes for Rex\n", "image/jpeg")),
                                                ("files", ("empty.png", b"", "image/png"))])
    assert refused.status_code == 422
    assert "notes.jpg: not an image: this is a text file; not kept" in refused.json()["errors"]
    huge = client.post("/api/photos", files=[("files", ("big.jpg", b"\xff" * (31 * 2**20), "image/jpeg"))])
    assert huge.status_code == 422 and "larger than 30 MB" in huge.json()["detail"]
    many = client.post("/api/photos", files=[("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(51)])
    assert many.status_code in (400, 413)
    no_length = client.post("/api/photos", content=b"--x--", headers={"content-type": "multipart/form-data; boundary=x",
                                                                       "content-length": ""})
    assert no_length.status_code in (400, 411)
    assert not intake.exists() or [p.name for p in intake.iterdir()] == []


def test_an_upload_named_like_a_path_stays_in_the_intake_folder(client, shelter, tmp_path):
    draw_dog(tmp_path / "p.jpg", seed=1)

    response = client.post("/api/photos", files=[("files", ("../../../escape.jpg", (tmp_path / "p.jpg").read_bytes(),
                                                            "image/jpeg"))])

    assert response.status_code == 200, response.text
    assert [item["path"] for item in response.json()["items"]] == ["intake/escape.jpg"]
    assert not (tmp_path / "escape.jpg").exists() and not (shelter / "escape.jpg").exists()


def test_predict_answers_with_a_results_row_and_keeps_nothing(client, shelter, tmp_path):
    draw_dog(tmp_path / "visitor.jpg", seed=2)
    before = fingerprints(shelter)

    response = client.post("/api/predict", files={"photo": ("visitor.jpg", (tmp_path / "visitor.jpg").read_bytes())})

    assert response.status_code == 200, response.text
    row = response.json()
    assert row["path"] == "visitor.jpg" and row["status"] in ("dog", "unsure", "not_a_dog")
    if row["status"] == "not_a_dog":  # as `dogtag tag` writes it: no breed, nor breed scores
        assert (row["breed"], row["confidence"], row["top_k"]) == (None, None, [])
    else:
        assert 1 <= len(row["top_k"]) <= 3 and row["breed"] == row["top_k"][0]["breed"]
    assert set(row) >= {"confidence", "dog_probability", "model_version", "reviewed_breed"}
    assert fingerprints(shelter) == before
    assert client.post("/api/predict", files={"photo": ("x.jpg", b"not a photo")}).status_code == 422


def test_the_openapi_page_documents_the_api(client):
    schema = client.get("/openapi.json").json()

    assert {"/api/photos", "/api/reviews", "/api/predict", "/api/status"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


# ---- what must not be reachable -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "../secret.jpg", "..%2Fsecret.jpg", "%2E%2E/secret.jpg", "kennel_2/../../secret.jpg", "/etc/passwd",
    "%2Fetc%2Fpasswd", "dogtag-results.csv", "....//secret.jpg",
])
def test_no_path_reaches_a_file_outside_the_listed_photos(client, shelter, path):
    (shelter.parent / "secret.jpg").write_bytes(b"the shelter's bank details")

    for kind in ("thumbnail", "large", "original"):
        response = client.get(f"/api/{kind}/0/{path}")
        # 422 where the client itself resolved the dots (/api/thumbnail/secret.jpg: no such source)
        assert response.status_code in (404, 422), (kind, path, response.status_code)
        assert b"bank details" not in response.content
    assert client.server.library.row(0, "rex.jpg")
    with pytest.raises(NotFound):
        client.server.library.photo_file(0, unquote(path))
    assert client.post("/api/reviews", json={"path": path, "reviewed_breed": "x"}).status_code == 404
    assert not (shelter / REVIEWS).exists()


def test_a_symbolic_link_out_of_the_folder_is_not_served(servers, shelter, tmp_path):
    outside = draw_dog(tmp_path / "elsewhere" / "private.jpg", seed=4)
    (shelter / "linked.jpg").symlink_to(outside)
    rows, _ = read_results(shelter / RESULTS, "csv")
    write_results(shelter / RESULTS, "csv", [*rows, Row(path="linked.jpg", status="dog", breed="pug", confidence=0.99,
                                                         top_k=(("pug", 0.99),), model_version="test-model-1")])
    client = servers(shelter)

    for kind in ("thumbnail", "large", "original"):
        response = client.get(f"/api/{kind}/0/linked.jpg")
        assert response.status_code == 403 and "outside the reviewed folders" in response.json()["detail"]


def test_a_review_writes_only_the_results_reviews_and_sidecar_files_whatever_its_text(servers, shelter, tmp_path):
    client = servers(shelter, xmp=True)
    before = fingerprints(tmp_path)
    hostile = '../../evil"\n</rdf:li><script>alert(1)</script>,=;' + "x" * 500

    answer = review(client, "rex.jpg", hostile, who="<b>Ana</b>\r\n")

    changed = {path for path, value in fingerprints(tmp_path).items() if before.get(path) != value}
    assert changed == {f"shelter/{RESULTS}", f"shelter/{REVIEWS}", "shelter/rex.xmp"}
    assert len(answer["item"]["reviewed_breed"]) == 100 and "\n" not in answer["item"]["reviewed_breed"]
    subject, _ = read_keywords(shelter / "rex.xmp")
    assert subject == [answer["item"]["reviewed_breed"]]
    assert len(results_rows(shelter / RESULTS)) == 9


def test_a_host_name_of_another_site_is_refused(client):
    """DNS rebinding: a site whose name resolves to 127.0.0.1 reaches the server with its own Host header."""
    response = client.get("/api/photos", headers={"host": "evil.example:8765"})
    assert response.status_code == 400 and "Unknown Host header" in response.text
    assert client.get("/api/photos", headers={"host": "localhost:8765"}).status_code == 200


def test_a_change_sent_from_another_sites_page_is_refused(client, shelter):
    response = client.post("/api/reviews", json={"path": "rex.jpg", "reviewed_breed": "x"},
                           headers={"origin": "http://evil.example"})

    assert response.status_code == 403
    assert not (shelter / REVIEWS).exists()
    same = client.post("/api/reviews", json={"path": "rex.jpg", "reviewed_breed": "basset"},
                       headers={"origin": "http://127.0.0.1:8765"})
    assert same.status_code == 200


def test_on_the_network_every_request_needs_the_printed_token(servers, shelter):
    client = servers(shelter, host="0.0.0.0", token="s3cret-token", base_url="http://192.168.1.20:8765")
    assert client.server.url.endswith("/?token=s3cret-token")

    assert client.get("/api/photos").status_code == 401
    assert client.get("/").status_code == 401
    assert client.get("/api/photos", params={"token": "wrong"}).status_code == 401
    assert client.get("/api/thumbnail/0/rex.jpg").status_code == 401
    assert client.post("/api/reviews", json={"path": "rex.jpg", "reviewed_breed": "x"}).status_code == 401
    assert not (shelter / REVIEWS).exists()

    opened = client.get("/?token=s3cret-token", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert "HttpOnly" in opened.headers["set-cookie"] and "samesite=strict" in opened.headers["set-cookie"].lower()
    assert client.get("/api/photos").status_code == 200, "the browser keeps the token in a cookie"
    client.cookies.clear()
    assert client.get("/api/photos", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/api/photos", headers={"host": "evil.example"}).status_code == 400
    qr = client.get("/api/address.svg", headers={"authorization": "Bearer s3cret-token"})
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/api/address.svg").status_code == 401, "the code carries the token: only for the signed in"


def test_on_this_computer_only_there_is_no_address_for_phones(client):
    assert client.get("/api/status").json()["address"] == ""
    missing = client.get("/api/address.svg")
    assert missing.status_code == 404 and "--host 0.0.0.0" in missing.json()["detail"]


def test_the_thumbnail_cache_may_not_be_inside_a_photo_folder(shelter):
    with pytest.raises(SetupError, match="must not be inside the photo folder"):
        ReviewServer(Options(folders=[str(shelter)], port=0, cache=str(shelter / "thumbs"), model=MODEL))


def test_the_page_loads_nothing_from_elsewhere(client):
    page = client.get("/")

    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text
    assert "http" not in page.text.replace('name="viewport"', "")


def test_photos_are_never_modified_by_looking_correcting_or_uploading(client, shelter, tmp_path):
    photos = {path: value for path, value in fingerprints(shelter).items() if path.endswith((".jpg", ".png"))}
    draw_dog(tmp_path / "new.jpg", seed=8)

    client.get("/api/photos")
    for path in photos:
        client.get(f"/api/thumbnail/0/{path}")
        client.get(f"/api/large/0/{path}")
        review(client, path, "mixed breed")
    client.post("/api/photos", files=[("files", ("new.jpg", (tmp_path / "new.jpg").read_bytes(), "image/jpeg"))])

    after = fingerprints(shelter)
    assert {path: after[path] for path in photos} == photos
    assert os.listdir(shelter / "intake") == ["new.jpg"]
