"""Tag folders of photos: walk, decode in parallel, classify in batches, write results; resumable.

`tag_folders` is what `dogtag tag` runs. The steps for each results file:

1. Walk the folders for photos (see `walk.py`) and stat each one.
2. Read the results file left by an earlier run. A photo is done when its row is not an error and
   its size, modification time and model version are unchanged; other rows of this walk (errors,
   changed files, a torn last line) are dropped in one atomic rewrite and their photos tagged again.
3. Decode and resize photos in a thread pool (Pillow releases the GIL while decoding) while the
   main thread runs the model on batches and appends one row per photo, fsynced per batch.

Photos are only ever opened for reading. Optional outputs, applied to done photos too (so adding
--xmp to a finished run completes it): an XMP sidecar with the breed for `dog` rows, and copies
into per-breed folders (`_unsure/`, `_not_a_dog/` for the others). A place they cannot be written
stops the run before it starts (the --sort-into folder, a read-only photo folder with --xmp); one
sidecar or copy that fails later is counted in the summary, and its photo keeps its row: the results
file says what the model saw, and the next run tries the sidecar or copy again.

A person's review (`dogtag review`, kept in the reviews file beside the results, see `reviews.py`)
is copied into every row written for that photo, old or new, and an --xmp sidecar carries the
reviewed breed instead of the model's: no run overwrites a human.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.images import PhotoError, load_photo
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.results import (
    ResultsFile,
    ResultsFileError,
    ResultsWriter,
    Row,
    exclusive_access,
    find_results,
    format_mtime,
    parse_mtime,
    read_results,
    write_results,
)
from dogtag.edge_app.reviews import (
    Review,
    ReviewsFileError,
    read_reviews,
    reviews_path,
    sidecar_breed,
    with_review,
)
from dogtag.edge_app.walk import find_photos, printable_path
from dogtag.edge_app.xmp import XmpError, add_breed_keyword, photos_sharing_a_name, set_breed_keyword

UNSURE_FOLDER, NOT_A_DOG_FOLDER = "_unsure", "_not_a_dog"


class TaggingError(Exception):
    """A problem that stops the whole run (a missing folder, an unusable results file or --sort-into folder)."""


@dataclass
class Summary:
    """What a run found: counts over every photo in the tagged folders, done now or before."""

    photos: int = 0
    tagged: int = 0
    resumed: int = 0
    statuses: Counter = field(default_factory=Counter)
    breeds: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    results: list[Path] = field(default_factory=list)
    sidecars_written: int = 0  # --xmp: sidecars created or updated by this run
    sidecars_unchanged: int = 0  # ... that already carried the breed
    xmp: bool = False
    sort_into: Path | None = None
    copies_made: int = 0  # --sort-into: photos copied by this run
    copies_found: int = 0  # ... whose copy an earlier run had made
    not_written: list[tuple[str, str]] = field(default_factory=list)  # (photo, why its sidecar or copy failed)
    longest_resumed_top_k: int = 0  # the most breeds a row kept from an earlier run lists

    @property
    def failed(self) -> int:
        """Photos that got an error row."""
        return self.statuses["error"]

    def add(self, row: Row, where: str) -> None:
        """Count one row of the final results."""
        self.photos += 1
        self.statuses[row.status] += 1
        if row.status == "dog":
            self.breeds[row.breed] += 1
        if row.status == "error":
            self.errors.append((where, row.error))


@dataclass(frozen=True)
class _Photo:
    path: str  # as found by the walk: what we open
    key: str  # printable path relative to the results base: the row's `path`
    size: int | None
    mtime_ns: int | None
    shared_name: bool = False  # another photo in its folder has the same name: see xmp.sidecar_paths


@dataclass(frozen=True)
class _Outputs:
    xmp: bool = False
    sort_into: Path | None = None


@dataclass
class _Plan:
    results: Path
    fmt: str
    base: str
    photos: list[_Photo]
    done: dict[str, Row]
    todo: list[_Photo]
    folder_errors: list[Row]
    reviews: dict[str, Review] = field(default_factory=dict)


def tag_folders(
    folders: Iterable[str | os.PathLike],
    classifier: Classifier,
    options: TagOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    ready: Callable[[str], bool] | None = None,
    retry_errors: bool = True,
) -> Summary:
    """Tag every photo under `folders`; returns the summary. See the module docstring for the steps.

    `options` (default: those of `dogtag tag`) say where results go (`out`, else `dogtag-results.<fmt>`
    inside each folder), what else is written (xmp, sort_into) and how (restart, batch_size...); the
    model settings among them are the classifier's. `progress(done, total)` is called as photos are
    finished. Raises TaggingError when the run cannot start or its results cannot be written (rows
    written until then stay, and a rerun resumes).
    For `dogtag watch`: a photo to tag for which `ready(path)` is False (still being copied) sits this
    run out, and with `retry_errors=False` so does one whose error row still matches it; their rows stay.
    """
    started = time.monotonic()
    options = options or TagOptions()
    unique = {os.path.realpath(folder): os.fspath(folder) for folder in reversed(list(folders))}
    folders = list(reversed(unique.values()))  # a folder given twice is tagged once
    for folder in folders:
        if not os.path.isdir(folder):
            raise TaggingError(f"{folder}: no such folder")
    if options.sort_into is not None:
        check_sort_folder(Path(options.sort_into))
    try:
        with ExitStack() as locks:
            found = find_results(folders, options.out, options.fmt)
            for results in found:
                locks.enter_context(exclusive_access(results.path))
            plans = [_plan(results, classifier, options, ready, retry_errors) for results in found]
            if options.xmp:
                _check_sidecar_folders(plans)
            summary = _run(plans, classifier, options, progress)
    except ResultsFileError as error:
        raise TaggingError(str(error)) from error
    summary.seconds = time.monotonic() - started
    return summary


def check_sort_folder(folder: Path) -> None:
    """Make sure copies can be written into the --sort-into folder (created if need be); TaggingError if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".dogtag-write-test-")
        os.close(descriptor)
        os.remove(probe)
    except OSError as error:
        raise TaggingError(
            f"{folder}: cannot copy photos into this folder ({error.strerror or error}); "
            "choose a folder you can write to for --sort-into"
        ) from error


def _check_sidecar_folders(plans: list[_Plan]) -> None:
    """With --xmp, every folder holding photos must take sidecars; TaggingError naming those that cannot."""
    folders = sorted({os.path.dirname(photo.path) or "." for plan in plans for photo in plan.photos})
    read_only = [folder for folder in folders if not os.access(folder, os.W_OK)]
    if read_only:
        more = f" and {len(read_only) - 3} more folders" if len(read_only) > 3 else ""
        raise TaggingError(
            f"{', '.join(printable_path(folder) for folder in read_only[:3])}{more}: cannot be written, so --xmp "
            "cannot put sidecars beside the photos there; make the folder writable, or run without --xmp"
        )


def _run(
    plans: list[_Plan], classifier: Classifier, options: TagOptions, progress: Callable[[int, int], None] | None,
) -> Summary:
    """Tag what the plans left to do, appending rows; returns the counts over every planned photo."""
    outputs = _Outputs(options.xmp, None if options.sort_into is None else Path(options.sort_into))
    batch_size = options.batch_size
    summary = Summary(results=[plan.results for plan in plans], xmp=outputs.xmp, sort_into=outputs.sort_into)
    summary.longest_resumed_top_k = max((len(row.top_k) for plan in plans for row in plan.done.values()), default=0)
    total = sum(len(plan.todo) for plan in plans)
    finished = 0
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=options.workers or min(4, os.cpu_count() or 1)) as pool:
        for plan in plans:
            rows: dict[str, Row] = dict(plan.done)
            with ResultsWriter(plan.results, plan.fmt) as writer:
                for row in plan.folder_errors:
                    writer.write(row)
                    rows[row.path] = row
                for photo in plan.photos:  # photos done by an earlier run get the sidecars and copies asked now
                    if photo.key in plan.done:
                        _write_outputs(photo, plan.done[photo.key], outputs, summary, plan.base)
                loading = _load_all(pool, plan.todo, classifier, options.max_pixels, window=2 * batch_size + 8)
                with closing(loading):  # on Ctrl-C, photos queued for decoding are dropped at once
                    for batch in _batches(loading, batch_size):
                        for photo, row in _classify(batch, classifier):
                            row = with_review(row, plan.reviews.get(photo.key))
                            writer.write(row)
                            rows[photo.key] = row
                        writer.sync()  # the rows are safe before sidecars and copies say they exist
                        for photo, _, _ in batch:
                            _write_outputs(photo, rows[photo.key], outputs, summary, plan.base)
                        finished += len(batch)
                        if progress:
                            progress(finished, total)
            summary.tagged += len(plan.todo)
            summary.resumed += len(plan.done)
            for photo in plan.photos:
                summary.add(rows[photo.key], os.path.join(plan.base, photo.key))
            for row in plan.folder_errors:
                summary.add(row, os.path.join(plan.base, row.path))
    return summary


def _plan(
    target: ResultsFile, classifier: Classifier, options: TagOptions,
    ready: Callable[[str], bool] | None = None, retry_errors: bool = True,
) -> _Plan:
    """Walk the folders and split their photos into done (by an earlier run) and to do."""
    results, fmt, base = target.path, target.fmt, target.base
    folder_errors: list[Row] = []
    version = classifier.info.model_version

    def folder_error(path: str, error: OSError) -> None:
        key = printable_path(os.path.relpath(path, base))
        message = f"cannot list this folder ({error.strerror or error}); its photos were not tagged"
        folder_errors.append(Row(path=key, status="error", error=message, model_version=version))

    results_file = os.path.abspath(results)
    found: dict[str, str] = {}  # a photo inside two of the given folders is tagged once
    skip = (options.sort_into,) if options.sort_into is not None else ()
    for folder in target.folders:
        for path in find_photos(folder, recursive=options.recursive, skip_folders=skip, on_error=folder_error):
            key = printable_path(os.path.relpath(path, base))
            if os.path.abspath(path) != results_file and key not in found:
                found[key] = path
    shared = photos_sharing_a_name(found.values())
    by_key = {key: _stat(path, key, path in shared) for key, path in found.items()}
    photos = list(by_key.values())
    existing, whole = ([], True) if options.restart else read_results(results, fmt)
    try:
        reviews = read_reviews(reviews_path(results))
    except ReviewsFileError as error:
        raise ResultsFileError(str(error)) from error
    kept, reviewed = {}, 0
    for row in existing:  # later rows win: a photo tagged twice keeps its last row
        photo = by_key.get(row.path)
        unchanged = photo is not None and _still_valid(row, photo, version)
        if (row.status == "error" and (retry_errors or not unchanged)) or (photo is not None and not unchanged):
            kept.pop(row.path, None)
        else:
            kept[row.path] = with_review(row, reviews.get(row.path))
            reviewed += kept[row.path] is not row
    if options.restart or not whole or reviewed or len(kept) != len(existing):
        write_results(results, fmt, list(kept.values()))
    left_out = {key for key, row in kept.items() if row.status == "error"}  # only kept when not retried
    if ready is not None:
        left_out.update(photo.key for photo in photos if photo.key not in kept and not ready(photo.path))
    photos = [photo for photo in photos if photo.key not in left_out]
    done = {key: row for key, row in kept.items() if key in by_key and key not in left_out}
    todo = [photo for photo in photos if photo.key not in done]
    return _Plan(results, fmt, base, photos, done, todo, folder_errors, reviews)


def _stat(path: str, key: str, shared_name: bool) -> _Photo:
    try:
        info = os.stat(path)
    except OSError:
        return _Photo(path, key, None, None, shared_name)
    return _Photo(path, key, info.st_size, info.st_mtime_ns, shared_name)


def _still_valid(row: Row, photo: _Photo, model_version: str) -> bool:
    # mtimes are compared as instants: a row written in another time zone is still valid
    return (row.size, parse_mtime(row.mtime), row.model_version) == (photo.size, photo.mtime_ns, model_version)


def _load_all(
    pool: ThreadPoolExecutor, photos: list[_Photo], classifier: Classifier, max_pixels: int, window: int
) -> Iterator[tuple[_Photo, np.ndarray | None, str]]:
    """Decode photos in the pool, in order, keeping at most `window` in flight (bounded memory)."""
    size, resize = classifier.info.input_size, classifier.info.resize

    def load(photo: _Photo) -> tuple[np.ndarray | None, str]:
        try:
            return load_photo(photo.path, size, resize, max_pixels=max_pixels), ""
        except PhotoError as error:
            if isinstance(error.__cause__, FileNotFoundError) and not os.path.islink(photo.path):
                return None, "no such file any more (deleted or moved during the run?)"
            return None, str(error)
        except Exception as error:  # one odd photo must not stop a night's run
            return None, f"unexpected error while reading ({type(error).__name__}: {error})"

    pending: deque[tuple[_Photo, Future]] = deque()
    try:
        for photo in photos:
            pending.append((photo, pool.submit(load, photo)))
            if len(pending) >= window:
                photo_, future = pending.popleft()
                yield photo_, *future.result()
        while pending:
            photo_, future = pending.popleft()
            yield photo_, *future.result()
    finally:
        for _, future in pending:
            future.cancel()


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _classify(
    batch: list[tuple[_Photo, np.ndarray | None, str]], classifier: Classifier
) -> list[tuple[_Photo, Row]]:
    """Rows for one batch, in order: predictions for decoded photos, error rows for the rest."""
    version = classifier.info.model_version
    decoded = [pixels for _, pixels, _ in batch if pixels is not None]
    predictions = iter(classifier.predict_pixels(np.stack(decoded)) if decoded else [])
    rows = []
    for photo, pixels, problem in batch:
        mtime = "" if photo.mtime_ns is None else format_mtime(photo.mtime_ns)
        common = {"path": photo.key, "size": photo.size, "mtime": mtime, "model_version": version}
        if pixels is None:
            rows.append((photo, Row(status="error", error=f"{problem}; skipped", **common)))
            continue
        prediction = next(predictions)
        rows.append((photo, Row(
            status=prediction.status,
            # a wall has no breed: sorting the sheet by breed must not put it among the bassets (top_k keeps the guess)
            breed="" if prediction.status == "not_a_dog" else prediction.breed,
            confidence=prediction.confidence,
            top_k=prediction.top_k,
            dog_probability=prediction.dog_probability,
            **common,
        )))
    return rows


def _write_outputs(photo: _Photo, row: Row, outputs: _Outputs, summary: Summary, base: str) -> None:
    """Write the sidecar and the sorted copy a row asks for, counting them (and any failure) in the summary."""
    where = os.path.join(base, photo.key)
    if outputs.xmp and (row.reviewed_breed or row.status == "dog"):
        try:
            if row.reviewed_breed:  # a person's answer replaces the model's breed in the sidecar
                written = set_breed_keyword(photo.path, sidecar_breed(row), photo.shared_name)
            else:
                written = add_breed_keyword(photo.path, row.breed, photo.shared_name)
            if written:
                summary.sidecars_written += 1
            else:
                summary.sidecars_unchanged += 1
        except XmpError as error:
            summary.not_written.append((where, f"no sidecar: {error}"))
    if outputs.sort_into is not None and row.status != "error":
        folder = outputs.sort_into / sorted_folder_name(row)
        try:
            _, copied = copy_into(photo.path, folder)
        except OSError as error:
            summary.not_written.append((where, f"not copied into {folder} ({error.strerror or error})"))
        else:
            if copied:
                summary.copies_made += 1
            else:
                summary.copies_found += 1


def sorted_folder_name(row: Row) -> str:
    """The --sort-into sub-folder for a row: the breed (made safe as a folder name), or _unsure / _not_a_dog."""
    if row.status == "unsure":
        return UNSURE_FOLDER
    if row.status == "not_a_dog":
        return NOT_A_DOG_FOLDER
    name = row.breed.replace(os.sep, "-").replace("/", "-").strip(". ")
    return name or UNSURE_FOLDER


def copy_into(photo: str | os.PathLike, folder: Path) -> tuple[Path, bool]:
    """Copy a photo into `folder` (never move), keeping its name; `rex (2).jpg` if another rex.jpg is there.

    Returns the copy's path and whether it was made now. A copy already made (same size and time,
    as copy2 keeps them) is reused, so reruns add no duplicates; the copy appears under its name
    only when complete.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(photo)
    stem, suffix = os.path.splitext(name)
    source = os.stat(photo)
    for number in range(1, 10_000):
        target = folder / (name if number == 1 else f"{stem} ({number}){suffix}")
        if not target.exists():
            partial = folder / f".{target.name}.partial"
            try:
                shutil.copy2(photo, partial)
                os.replace(partial, target)
            except OSError:
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise
            return target, True
        existing = target.stat()
        if (existing.st_size, existing.st_mtime_ns) == (source.st_size, source.st_mtime_ns):
            return target, False
    raise OSError(f"too many photos named {name} in {folder}")
