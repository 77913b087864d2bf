"""The tagged folders as the review page sees them: results rows, reviews, and the photo files on disk.

A `Source` is one results file and the folders whose photos it lists (one per folder, or one for
all with --results, as `dogtag tag --out`). `Library` holds them in memory, reloads one when its
files change on disk (a `dogtag tag` run beside the page), lists rows for the page, finds the file
of a photo (only inside the reviewed folders), and saves corrections:

1. the review is appended to the reviews file (`edge_app.reviews`): saved, durably, at once;
2. the results file is rewritten (`edge_app.reviews.apply_reviews`: temporary file, then rename) with
   the reviewed columns of that row; every other line stays byte for byte, damaged ones too. While a `dogtag tag` run holds the
   results file, this waits: the review is safe in the reviews file, and `dogtag tag` copies it in;
3. the photo's XMP sidecar gets the reviewed breed, when the photo has one or --xmp was given.

Nothing else is ever written, and photos are only opened for reading. The files' formats are not
this module's business: `edge_app.results` reads and writes the results file, `edge_app.reviews`
the reviews file and what a correction is.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dogtag.edge_app.results import (
    ResultsFileError,
    Row,
    exclusive_access,
    find_results,
    format_row,
    read_results_file,
)
from dogtag.edge_app.reviews import (
    Review,
    ReviewsFileError,
    append_review,
    apply_reviews,
    correction,
    read_review_log,
    reviews_path,
    sidecar_breed,
    with_review,
)
from dogtag.edge_app.walk import find_photos, printable_path
from dogtag.edge_app.xmp import XmpError, photos_sharing_a_name, set_breed_keyword, sidecar_paths
from dogtag.review.security import inside

# The page lists `unsure` first, then confident tags from the least sure, then the rest.
STATUS_ORDER = {"unsure": 0, "dog": 1, "not_a_dog": 2, "error": 3}
FILTERS = ("all", "unsure", "dog", "not_a_dog", "error", "reviewed", "unreviewed")
RELOAD_SECONDS = 2.0  # a results file that keeps changing (a tagging run) is read again at most this often


class NotFound(Exception):
    """No such photo in the reviewed folders (or it is gone from the disk)."""


class Forbidden(Exception):
    """A photo that the page must not serve: its file lies outside the reviewed folders."""


@dataclass
class Source:
    """One results file and the folders it covers, as last read from disk."""

    index: int
    results: Path
    fmt: str
    base: str  # row paths are relative to this folder
    folders: list[str]
    rows: dict[str, Row] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # row path -> the photo file found on disk
    shared_names: set[str] = field(default_factory=set)  # files whose sidecar is rex.jpg.xmp, not rex.xmp
    reviews: dict[str, Review] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unwritten: set[str] = field(default_factory=set)  # reviews the results file does not show yet
    stamp: tuple = ()
    loaded_at: float = 0.0  # time.monotonic() of the last full read

    @property
    def reviews_file(self) -> Path:
        return reviews_path(self.results)


class Library:
    """Every reviewed source, kept in step with the disk; thread-safe (the server answers in threads)."""

    def __init__(
        self,
        folders: list[str],
        results: str | os.PathLike | None = None,
        labels: tuple[str, ...] = (),
        xmp: bool = False,
    ):
        self.labels = tuple(labels)
        self.xmp = xmp
        self.sources = [
            Source(index, found.path, found.fmt, found.base, list(found.folders))
            for index, found in enumerate(find_results(list(folders), results))
        ]
        self.lock = threading.RLock()
        self._order: list[tuple[Source, str]] | None = None

    def untagged(self) -> list[Source]:
        """Sources whose results file does not exist yet: the page tags them first."""
        return [source for source in self.sources if not source.results.exists()]

    def refresh(self, now: bool = False) -> None:
        """Reload every source whose results or reviews file changed on disk since it was read.

        While `dogtag tag` appends to a results file, it is read again at most every
        RELOAD_SECONDS (each thumbnail asks), unless `now`.
        """
        with self.lock:
            for source in self.sources:
                stamp = _stamp(source)
                due = now or time.monotonic() - source.loaded_at >= RELOAD_SECONDS
                if not source.stamp or (source.stamp[0] != stamp[0] and due):
                    self._load(source)
                    self._order = None
                elif source.stamp[1] != stamp[1]:
                    self._load_reviews(source)
                if source.unwritten:
                    self._write_results(source)

    def listing(self, status: str = "all", breed: str = "", offset: int = 0, limit: int = 100) -> dict:
        """One page of rows (unsure first) under a filter, with the counts the page's filters show."""
        if status not in FILTERS:
            raise ValueError(f"status must be one of {', '.join(FILTERS)}, got {status!r}")
        with self.lock:
            self.refresh()
            order = self._ordered()
            counts = dict.fromkeys(FILTERS, 0)
            breeds: dict[str, int] = {}
            chosen = []
            for source, key in order:
                row = source.rows[key]
                reviewed = bool(row.reviewed_breed)
                counts["all"] += 1
                counts[row.status] = counts.get(row.status, 0) + 1
                counts["reviewed" if reviewed else "unreviewed"] += 1
                shown = row.reviewed_breed or row.breed
                if shown:
                    breeds[shown] = breeds.get(shown, 0) + 1
                wanted = status in ("all", row.status) or status == ("reviewed" if reviewed else "unreviewed")
                if wanted and (not breed or breed == shown):
                    chosen.append((source, key))
            page = [self.item(source, key) for source, key in chosen[offset : offset + limit]]
            return {
                "total": len(chosen),
                "offset": offset,
                "items": page,
                "counts": counts,
                "breeds": dict(sorted(breeds.items())),
                "problems": [problem for source in self.sources for problem in source.problems],
            }

    def item(self, source: Source, key: str) -> dict:
        """A row as the API shows it: the `dogtag tag --format jsonl` document plus where to see it."""
        row = source.rows[key]
        document = json.loads(format_row(row, "jsonl"))
        document["source"] = source.index
        document["missing"] = key not in source.files
        if document["missing"]:
            document["problem"] = f"{key}: not found in {source.base} (deleted or moved since it was tagged)"
        return document

    def row(self, index: int, key: str) -> tuple[Source, Row]:
        """The source and row of one photo; NotFound when no reviewed results file lists it."""
        with self.lock:
            self.refresh()
            if not 0 <= index < len(self.sources) or key not in self.sources[index].rows:
                raise NotFound(f"{key}: not a photo of the reviewed folders")
            source = self.sources[index]
            return source, source.rows[key]

    def photo_file(self, index: int, key: str) -> str:
        """The file of a listed photo, only when it is on disk inside a reviewed folder (links resolved)."""
        source, _ = self.row(index, key)
        path = source.files.get(key)
        if path is None or not os.path.exists(path):
            raise NotFound(f"{key}: not found in {source.base} (deleted or moved since it was tagged)")
        if not any(inside(folder, path) for folder in source.folders):
            raise Forbidden(f"{key}: this file lies outside the reviewed folders (a symbolic link?); not shown")
        return path

    def save_review(self, index: int, key: str, name: str | None, reviewer: str | None = "") -> tuple[dict, list[str]]:
        """Save a person's answer for one photo ('' withdraws it); returns the item and any warnings.

        The review is durable when this returns (fsynced into the reviews file), even if the results
        file or the sidecar could not be updated: the warnings say so.
        """
        with self.lock:
            self.refresh()
            source, row = self.row(index, key)
            review = correction(row, name, reviewer, self.labels)
            append_review(source.reviews_file, review)
            source.reviews[key] = review
            source.rows[key] = with_review(row, review)
            source.unwritten.add(key)
            warnings = [message for message in (self._write_results(source), self._write_sidecar(source, key)) if message]
            return self.item(source, key), warnings

    def _ordered(self) -> list[tuple[Source, str]]:
        if self._order is None:
            entries = [(source, key) for source in self.sources for key in source.rows]
            self._order = sorted(entries, key=lambda entry: _sort_key(entry[0].rows[entry[1]]))
        return self._order

    def _load(self, source: Source) -> None:
        """Read a source's results, reviews and photo files afresh."""
        stamp = _stamp(source)
        source.problems = []
        try:
            content = read_results_file(source.results, source.fmt)
        except ResultsFileError as error:
            content = None
            source.problems.append(str(error))
        rows = content.rows if content else []
        source.problems += [
            f"{source.results}, line {number}: damaged row, not shown ({start!r}...); the other rows are. "
            "Run `dogtag tag` on the folder to tag that photo again"
            for number, start in (content.damaged if content else [])
        ]
        source.rows = {row.path: row for row in rows}  # later rows win, as in `dogtag tag`
        source.unwritten = set()
        self._load_reviews(source)
        source.files = {}
        for folder in source.folders:
            if os.path.isdir(folder):
                for path in find_photos(folder):
                    source.files.setdefault(printable_path(os.path.relpath(path, source.base)), path)
        source.shared_names = photos_sharing_a_name(source.files.values())
        source.stamp = stamp
        source.loaded_at = time.monotonic()

    def _load_reviews(self, source: Source) -> None:
        """Read the reviews file afresh (another tab or server may have added to it) into the rows."""
        stamp = _file_stamp(source.reviews_file)
        source.problems = [problem for problem in source.problems if source.reviews_file.name not in problem]
        try:
            log, damaged = read_review_log(source.reviews_file)
        except ReviewsFileError as error:
            log, damaged = [], []
            source.problems.append(str(error))
        source.problems += [
            f"{source.reviews_file}, line {number}: damaged review, ignored (the other reviews are used)"
            for number in damaged
        ]
        source.reviews = {review.path: review for review in log}
        for key, review in source.reviews.items():
            row = source.rows.get(key)
            if row is not None and with_review(row, review) is not row:
                source.rows[key] = with_review(row, review)
                source.unwritten.add(key)
        if source.stamp:
            source.stamp = (source.stamp[0], stamp)

    def _write_results(self, source: Source) -> str:
        """Show the saved reviews in the results file; '' when done or when a tagging run holds the file
        (tried again at the next refresh), else why it could not."""
        try:
            with exclusive_access(source.results):
                unchanged = bool(source.stamp) and _file_stamp(source.results) == source.stamp[0]
                apply_reviews(source.results, source.fmt, {key: source.reviews[key] for key in source.unwritten})
        except FileNotFoundError:
            return f"{source.results}: the results file is gone; the review is kept in {source.reviews_file.name}"
        except (ResultsFileError, OSError) as error:
            if isinstance(error.__cause__, BlockingIOError):
                return ""  # a tagging run holds it: it copies the reviews in, and the next refresh retries
            return (f"saved in {source.reviews_file.name}; the results file shows it once it can be written "
                    f"({error})")
        source.unwritten.clear()
        # Written by someone else since it was read: reload it; else only our rename changed it.
        source.stamp = (_file_stamp(source.results), source.stamp[1]) if unchanged else ()
        return ""

    def _write_sidecar(self, source: Source, key: str) -> str:
        """Put the reviewed breed into the photo's XMP sidecar (when it has one, or with --xmp)."""
        path = source.files.get(key)
        if path is None:
            return ""
        shared = path in source.shared_names
        sidecars = sidecar_paths(path, shared)  # those it has (rex.xmp, rex.jpg.xmp), else the one to make
        if not (self.xmp or any(sidecar.exists() for sidecar in sidecars)):
            return ""
        sidecar = sidecars[0]  # all in the photo's folder
        if not any(inside(folder, sidecar.parent) for folder in source.folders):
            return f"{sidecar.name}: its folder lies outside the reviewed folders; the sidecar was not written"
        try:
            set_breed_keyword(path, sidecar_breed(source.rows[key]), shared)
        except XmpError as error:
            return str(error)
        return ""


def _sort_key(row: Row) -> tuple:
    confidence = row.confidence if row.confidence is not None else 2.0
    return STATUS_ORDER.get(row.status, 4), confidence, row.path


def _file_stamp(path: Path) -> tuple:
    try:
        info = os.stat(path)
    except OSError:
        return ()
    return info.st_size, info.st_mtime_ns, info.st_ino


def _stamp(source: Source) -> tuple:
    return _file_stamp(source.results), _file_stamp(source.reviews_file)
