"""Reviews: what a person said a photo shows, kept beside the results file so no tagging run overwrites it.

The review page (`dogtag review`) appends one line per correction to the reviews file next to the
results file (`dogtag-results.reviews.jsonl` beside `dogtag-results.csv`):

    {"path": "kennel_2/max.jpg", "reviewed_breed": "beagle", "kind": "breed", "reviewed_by": "Ana",
     "reviewed_at": "2025-12-01T08:30:12Z", "model_status": "unsure", "model_breed": "basset"}

`kind` says what the name is: `breed` (one of the model's labels), `mixed` ("mixed breed"),
`not_a_dog` ("not a dog"), `other` (a breed the model does not know) or `withdrawn` (an undo: the
photo is unreviewed again). The last line of a path wins, and every line stays, so the file is also
the history of who said what. `dogtag tag` copies each photo's latest review into its results row
(reviewed_breed, reviewed_by, reviewed_at) and `--xmp` writes the reviewed breed; the model's own
columns stay as the model said. A later training step reads `read_reviews` and the labels.

This module owns corrections: how a person's answer becomes a `Review` (`correction`), the reviews
file, and how reviews are applied to rows (`with_review`) and to a results file (`apply_reviews`,
through `results.rewrite_rows`, the results file's one writer).

Crash safety, as for the results file: one write per line (O_APPEND) and an fsync; a torn last
line is skipped when reading and closed with a newline before the next line is appended; an append
holds a lock on the file, so two writers (two browser tabs, two servers) never interleave.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dogtag.edge_app.breeds import canonical_name
from dogtag.edge_app.locks import lock_descriptor
from dogtag.edge_app.results import Row, one_line, rewrite_rows, sync_folder

MIXED_BREED = "mixed breed"
NOT_A_DOG = "not a dog"
KINDS = ("breed", "mixed", "not_a_dog", "other", "withdrawn")
MAX_NAME_LENGTH = 100  # a breed or reviewer name; longer text is cut


class ReviewsFileError(Exception):
    """A reviews file that cannot be read or written."""


@dataclass(frozen=True)
class Review:
    """One line of the reviews file: a person's answer for one photo."""

    path: str
    reviewed_breed: str  # "" when the review was withdrawn
    kind: str
    reviewed_by: str = ""
    reviewed_at: str = ""
    model_status: str = ""  # what the model had said, kept so the file alone is training data
    model_breed: str = ""


def reviews_path(results: str | os.PathLike) -> Path:
    """The reviews file that belongs to a results file: `dogtag-results.csv` -> `dogtag-results.reviews.jsonl`."""
    results = Path(results)
    return results.with_name(f"{results.stem}.reviews.jsonl")


def clean_name(text: str | None) -> str:
    """A breed or reviewer name fit for one results cell: one line, trimmed, at most MAX_NAME_LENGTH."""
    return one_line(text or "").strip()[:MAX_NAME_LENGTH]


def review_kind(name: str, labels: tuple[str, ...] | list[str]) -> str:
    """The kind of a reviewed name: breed, mixed, not_a_dog, other, or withdrawn for ''."""
    if not name:
        return "withdrawn"
    if name == MIXED_BREED:
        return "mixed"
    if name == NOT_A_DOG:
        return "not_a_dog"
    # an old Stanford name ("cairn") of a breed the model answers as "Cairn Terrier" is that breed
    return "breed" if name in labels or canonical_name(name) in labels else "other"


def correction(row: Row, name: str | None, reviewer: str | None, labels: tuple[str, ...] | list[str]) -> Review:
    """A person's answer for the photo of `row` as a review: `name` a breed, mixed breed, not a dog,
    another breed, or '' to withdraw the review; a withdrawal (an undo) says who and when too."""
    name = clean_name(name)
    return Review(
        path=row.path, reviewed_breed=name, kind=review_kind(name, labels),
        reviewed_by=clean_name(reviewer), reviewed_at=timestamp(),
        model_status=row.status, model_breed=row.breed,
    )


def timestamp(seconds: float | None = None) -> str:
    """A review time as people and spreadsheets read it: UTC, to the second (2025-12-01T08:30:12Z)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if seconds is None else seconds))


def read_review_log(path: str | os.PathLike) -> tuple[list[Review], list[int]]:
    """Every review in the file, in order, and the numbers of the lines that are not whole reviews."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as error:
        raise ReviewsFileError(f"{path}: cannot read the reviews file ({error.strerror or error})") from error
    reviews, damaged = [], []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        review = _parse(raw)
        if review is None:
            damaged.append(number)
        else:
            reviews.append(review)
    return reviews, damaged


def read_reviews(path: str | os.PathLike) -> dict[str, Review]:
    """The latest review of each photo path (withdrawn ones included, with reviewed_breed '')."""
    reviews, _ = read_review_log(path)
    return {review.path: review for review in reviews}


def append_review(path: str | os.PathLike, review: Review) -> None:
    """Add one review to the file, durably (fsynced before returning), under the file's lock."""
    path = Path(path)
    line = json.dumps(asdict(review), ensure_ascii=False) + "\n"
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise ReviewsFileError(f"{path}: cannot write the reviews file ({error.strerror or error})") from error
    try:
        lock_descriptor(fd)  # waits: an append holds it for a moment only
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line  # a torn last line (power cut) stays on its own, skipped when read
        data = line.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as error:
        raise ReviewsFileError(f"{path}: cannot write the reviews file ({error.strerror or error})") from error
    finally:
        os.close(fd)
    if size == 0:
        sync_folder(path.parent)


def with_review(row: Row, review: Review | None) -> Row:
    """The row carrying the photo's latest review (a withdrawn one clears it); unchanged without one."""
    if review is None:
        return row
    fields = (review.reviewed_breed, review.reviewed_by if review.reviewed_breed else "",
              review.reviewed_at if review.reviewed_breed else "")
    if (row.reviewed_breed, row.reviewed_by, row.reviewed_at) == fields:
        return row
    return replace(row, reviewed_breed=fields[0], reviewed_by=fields[1], reviewed_at=fields[2], line="")


def apply_reviews(results: str | os.PathLike, fmt: str, reviews: dict[str, Review]) -> None:
    """Show these reviews in the results file's rows (one atomic rewrite; every other line unchanged).

    Call it holding the results file's `exclusive_access`. FileNotFoundError when the results file is
    gone, ResultsFileError when it cannot be written: the reviews stay safe in the reviews file.
    """
    rewrite_rows(results, fmt, lambda row: with_review(row, reviews.get(row.path)), only=reviews)


def sidecar_breed(row: Row) -> str | None:
    """The breed an XMP sidecar should carry: the reviewed one, else the model's for a `dog` row; None for none."""
    if row.reviewed_breed:
        return None if row.reviewed_breed == NOT_A_DOG else row.reviewed_breed
    return row.breed if row.status == "dog" and row.breed else None


def _parse(raw: bytes) -> Review | None:
    try:
        document = json.loads(raw.decode("utf-8"))
        review = Review(**{name: str(document.get(name) or "") for name in Review.__dataclass_fields__})
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError):
        return None
    return review if review.path and review.kind in KINDS else None
