"""Tag folders of photos: walk, decode in parallel, classify in batches, write results; resumable.

`tag_folders` is what `dogtag tag` runs. The steps for each results file:

1. Walk the folders for photos (see `walk.py`) and stat each one.
2. Read the results file left by an earlier run. A photo is done when its size and modification
   time are unchanged and the same model tagged it; its row then gets the status this run's
   thresholds give it (counted in the summary: no need to read the photo again). A photo an earlier
   run could not read is read again only once it changed (or with retry_errors). Other rows of this
   walk (another model, changed files, a torn last line) are dropped in one atomic rewrite and their
   photos tagged again; the summary counts how their rows changed.
3. Decode and resize photos in a thread pool (Pillow releases the GIL while decoding) while the
   main thread runs the model on batches and appends one row per photo, fsynced per batch.

Photos are only ever opened for reading. Sidecars and sorted copies follow the rows, done photos'
too (so adding --xmp to a finished run completes it, and a rerun that changes a row changes them):
an XMP sidecar carries the row's breed (--xmp; without it, a sidecar that carries a Dogtag breed is
still kept in step), and a photo has one copy, with its sidecars, in its row's folder (`_unsure/`,
`_not_a_dog/` for the others). A place they cannot be written stops the run before it starts (the
--sort-into folder, a read-only photo folder with --xmp); one sidecar or copy that fails later is
counted in the summary, and its photo keeps its row: the results file says what the model saw, and
the next run tries the sidecar or copy again.

A person's review (`dogtag review`, kept in the reviews file beside the results, see `reviews.py`)
is copied into every row written for that photo, old or new, and sidecars and sorted copies carry
the reviewed breed instead of the model's: no run overwrites a human.
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
from dataclasses import dataclass, field, replace
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
    prediction_row,
    read_results,
    same_mtime,
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
from dogtag.edge_app.runtime import Outputs
from dogtag.edge_app.walk import find_photos, printable_path
from dogtag.edge_app.xmp import (
    PHOTO_XMP,
    XmpError,
    dogtag_breeds,
    existing_sidecars,
    photos_sharing_a_name,
    set_breed_keyword,
)

UNSURE_FOLDER, NOT_A_DOG_FOLDER = "_unsure", "_not_a_dog"


class TaggingError(Exception):
    """A problem that stops the whole run (a missing folder, an unusable results file or --sort-into folder)."""


@dataclass
class Summary:
    """What a run found: counts over every photo in the tagged folders, done now or before."""

    photos: int = 0
    tagged: int = 0  # photos read and tagged by this run
    resumed: int = 0  # photos whose row an earlier run wrote, kept
    statuses: Counter = field(default_factory=Counter)
    breeds: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (photo, why): what this run could not read
    unretried: list[tuple[str, str]] = field(default_factory=list)  # ... an earlier run, unchanged since: not read
    seconds: float = 0.0
    results: list[Path] = field(default_factory=list)
    model_version: str = ""
    other_models: Counter = field(default_factory=Counter)  # model versions of rows tagged again with this one
    restatused: Counter = field(default_factory=Counter)  # (old, new status) of rows this run's thresholds changed
    changes: Counter = field(default_factory=Counter)  # how the photos tagged again changed: "changed breed", ...
    sidecars_written: int = 0  # sidecars created or updated by this run
    sidecars_unchanged: int = 0  # --xmp: sidecars that already carried the breed
    xmp: bool = False
    sort_into: Path | None = None
    copies_made: int = 0  # --sort-into: photos copied by this run
    copies_found: int = 0  # ... whose copy an earlier run had made
    copies_moved: int = 0  # ... whose earlier copy was in the folder of an earlier tag: moved
    not_written: list[tuple[str, str]] = field(default_factory=list)  # (photo, why its sidecar or copy failed)
    longest_resumed_top_k: int = 0  # the most breeds a row kept from an earlier run lists
    folders: list[str] = field(default_factory=list)  # the folders tagged
    reviewed: int = 0  # rows that carry a person's answer (reviewed_breed), which no run overwrites

    @property
    def failed(self) -> int:
        """Photos (and folders) this run could not read."""
        return len(self.errors)

    def add(self, row: Row, where: str, now: bool = True) -> None:
        """Count one row of the final results (`now`: written by this run)."""
        self.photos += 1
        self.statuses[row.status] += 1
        self.reviewed += bool(row.reviewed_breed)
        if row.status == "dog":
            self.breeds[row.breed] += 1
        if row.status == "error":
            (self.errors if now else self.unretried).append((where, row.error))
        elif now:
            self.tagged += 1
        else:
            self.resumed += 1


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
    xmp_name: str = PHOTO_XMP


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
    previous: dict[str, Row] = field(default_factory=dict)  # each photo's row before this run
    unretried: list[Row] = field(default_factory=list)  # error rows of unchanged photos, not read again
    other_models: Counter = field(default_factory=Counter)  # model versions of rows to tag again with this one
    restatused: Counter = field(default_factory=Counter)  # (old, new status) of rows the thresholds changed


def tag_folders(
    folders: Iterable[str | os.PathLike],
    classifier: Classifier,
    options: TagOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    ready: Callable[[str], bool] | None = None,
    retry_errors: bool | None = None,
) -> Summary:
    """Tag every photo under `folders`; returns the summary. See the module docstring for the steps.

    `options` (default: those of `dogtag tag`) say where results go (`out`, else `dogtag-results.<fmt>`
    inside each folder), what else is written (xmp, sort_into) and how (restart, batch_size...); the
    model settings among them are the classifier's. `progress(done, total)` is called as photos are
    finished. Raises TaggingError when the run cannot start or its results cannot be written (rows
    written until then stay, and a rerun resumes).
    A photo an earlier run could not read is read again once it changed, or always with `retry_errors`
    (default: `options.retry_errors`). For `dogtag watch`: a photo to tag for which `ready(path)` is
    False (still being copied) sits this run out; its row stays.
    """
    started = time.monotonic()
    options = options or TagOptions()
    retry_errors = options.retry_errors if retry_errors is None else retry_errors
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
    summary.folders = folders
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
    outputs = _Outputs(options.xmp, None if options.sort_into is None else Path(options.sort_into), options.xmp_name)
    batch_size = options.batch_size
    summary = Summary(results=[plan.results for plan in plans], xmp=outputs.xmp, sort_into=outputs.sort_into,
                      model_version=classifier.info.model_version)
    summary.longest_resumed_top_k = max((len(row.top_k) for plan in plans for row in plan.done.values()), default=0)
    total = sum(len(plan.todo) for plan in plans)
    finished = 0
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=options.workers or min(4, os.cpu_count() or 1)) as pool:
        for plan in plans:
            summary.other_models.update(plan.other_models)
            summary.restatused.update(plan.restatused)
            rows: dict[str, Row] = dict(plan.done)
            with ResultsWriter(plan.results, plan.fmt) as writer:
                for row in plan.folder_errors:
                    writer.write(row)
                    rows[row.path] = row
                for photo in plan.photos:  # photos done by an earlier run get the sidecars and copies asked now
                    if photo.key in plan.done:
                        _write_outputs(photo, plan.done[photo.key], plan.previous.get(photo.key), outputs, summary,
                                       plan.base)
                loading = _load_all(pool, plan.todo, classifier, options.max_pixels, window=2 * batch_size + 8)
                with closing(loading):  # on Ctrl-C, photos queued for decoding are dropped at once
                    for batch in _batches(loading, batch_size):
                        for photo, row in _classify(batch, classifier):
                            row = with_review(row, plan.reviews.get(photo.key))
                            writer.write(row)
                            rows[photo.key] = row
                        writer.sync()  # the rows are safe before sidecars and copies say they exist
                        for photo, _, _ in batch:
                            before = plan.previous.get(photo.key)
                            _write_outputs(photo, rows[photo.key], before, outputs, summary, plan.base)
                            if before is not None and (change := _change(before, rows[photo.key])):
                                summary.changes[change] += 1
                        finished += len(batch)
                        if progress:
                            progress(finished, total)
            for photo in plan.photos:
                summary.add(rows[photo.key], os.path.join(plan.base, photo.key), now=photo.key not in plan.done)
            for row in plan.unretried:
                summary.add(row, os.path.join(plan.base, row.path), now=False)
            for row in plan.folder_errors:
                summary.add(row, os.path.join(plan.base, row.path))
    return summary


def _change(before: Row, after: Row) -> str:
    """How a photo's row changed when it was tagged again: "dog -> unsure", "changed breed", or ""."""
    if before.status != after.status:
        return f"{before.status} -> {after.status}"
    if before.status in ("dog", "unsure") and before.breed != after.breed:
        return "changed breed"
    return ""


def _plan(
    target: ResultsFile, classifier: Classifier, options: TagOptions,
    ready: Callable[[str], bool] | None = None, retry_errors: bool = False,
) -> _Plan:
    """Walk the folders and split their photos into done (by an earlier run) and to do.

    A row is kept when its photo is unchanged and was tagged with this model, then given the status
    this run's thresholds give it (no need to read the photo again for that); an error row is kept,
    and its photo not read again, unless the photo changed or `retry_errors`.
    """
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
    existing, whole = read_results(results, fmt)  # with --restart too: a copy made for an old row must move
    try:
        reviews = read_reviews(reviews_path(results))
    except ReviewsFileError as error:
        raise ResultsFileError(str(error)) from error
    previous = {row.path: row for row in existing if row.path in by_key}  # later rows win
    kept: dict[str, Row] = {}
    rewrite = options.restart or not whole
    other_models: Counter = Counter()
    restatused: Counter = Counter()
    earlier = {} if options.restart else {row.path: row for row in existing}  # the last row of each path
    labels = dict(zip(classifier.labels, classifier.breed_ids, strict=True))
    for key, row in earlier.items():
        photo = by_key.get(key)
        same_file = photo is not None and _same_file(row, photo)
        if photo is not None and not (same_file and row.model_version == version):
            if same_file and row.status != "error":
                other_models[row.model_version] += 1
            continue
        if photo is not None and not _named_alike(row, labels):  # another --names, or from before breed ids
            continue
        if row.status == "error" and (retry_errors or photo is None):
            continue
        reviewed = with_review(row, reviews.get(key))
        now = reviewed if photo is None else _under_thresholds(reviewed, classifier)
        if now is None:  # a not_a_dog row that would now be a dog: tagged again to know its breed
            continue
        if now.status != row.status:
            restatused[(row.status, now.status)] += 1
        kept[key] = now
        rewrite = rewrite or now is not row
    if rewrite or len(kept) != len(existing):
        write_results(results, fmt, list(kept.values()))
    unretried = [row for key, row in kept.items() if row.status == "error" and key in by_key]
    left_out = {key for key, row in kept.items() if row.status == "error"}
    if ready is not None:
        left_out.update(photo.key for photo in photos if photo.key not in kept and not ready(photo.path))
    photos = [photo for photo in photos if photo.key not in left_out]
    done = {key: row for key, row in kept.items() if key in by_key and key not in left_out}
    todo = [photo for photo in photos if photo.key not in done]
    return _Plan(results, fmt, base, photos, done, todo, folder_errors, reviews, previous, unretried,
                 other_models, restatused)


# Confidences and dog probabilities are written with 4 decimals: within this of a threshold, the
# status the row was written with stands.
_ROUNDING = 0.00005


def _under_thresholds(row: Row, classifier: Classifier) -> Row | None:
    """`row` with the status this classifier's thresholds give it (the row itself when unchanged); None for
    a not_a_dog row that would now be a dog, which lists no breeds: its photo must be tagged again."""
    if row.status not in ("dog", "unsure", "not_a_dog"):
        return row
    dog = row.dog_probability
    if row.status == "not_a_dog" and row.confidence is None:
        return None if dog is not None and dog >= classifier.min_dog + _ROUNDING else row
    if row.confidence is None:
        return row

    def around(value: float) -> tuple[float, float]:  # what the written value may have been, within [0, 1]
        return max(0.0, value - _ROUNDING), min(1.0, value + _ROUNDING)

    dogs = (None,) if dog is None else around(dog)
    status = {classifier.status(confidence, d) for confidence in around(row.confidence) for d in dogs}
    if len(status) != 1 or row.status in status:
        return row
    (status,) = status
    if status == "not_a_dog":
        return replace(row, status=status, breed="", confidence=None, top_k=(), line="")
    return replace(row, status=status, breed=row.breed or row.top_k[0][0], line="")


def _stat(path: str, key: str, shared_name: bool) -> _Photo:
    try:
        info = os.stat(path)
    except OSError:
        return _Photo(path, key, None, None, shared_name)
    return _Photo(path, key, info.st_size, info.st_mtime_ns, shared_name)


def _named_alike(row: Row, labels: dict[str, str]) -> bool:
    """Whether a row names breeds as this run does; `labels` maps this run's breed names to their ids.

    A row in other names (Stanford's, from before breed ids or --names stanford, or from before a merge)
    is tagged again, so that one results file never mixes two namings.
    """
    return all(name in labels for name, _ in row.top_k) and (not row.breed or labels.get(row.breed) == row.breed_id)


def _same_file(row: Row, photo: _Photo) -> bool:
    """Whether the photo is the one the row was written for (same size and modification time)."""
    return row.size == photo.size and same_mtime(row.mtime, photo.mtime_ns)


def _load_all(
    pool: ThreadPoolExecutor, photos: list[_Photo], classifier: Classifier, max_pixels: int, window: int
) -> Iterator[tuple[_Photo, np.ndarray | None, str]]:
    """Decode photos in the pool, in order, keeping at most `window` in flight (bounded memory)."""
    size, resize = classifier.info.input_size, classifier.info.resize

    def load(photo: _Photo) -> tuple[np.ndarray | Outputs | None, str]:
        cached = classifier.cached_outputs(photo.path)  # a learned model: the cached embedding, if any
        if cached is not None:
            return cached, ""
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
    decoded = [(photo, pixels) for photo, pixels, _ in batch if isinstance(pixels, np.ndarray)]
    cached = [outputs for _, outputs, _ in batch if isinstance(outputs, Outputs)]
    if decoded and classifier.caches_embeddings:
        fresh = classifier.predict_and_cache(np.stack([p for _, p in decoded]), [photo.path for photo, _ in decoded])
    else:
        fresh = classifier.predict_pixels(np.stack([p for _, p in decoded])) if decoded else []
    from_cache = iter(classifier.predict_cached(cached))
    predictions = iter(fresh)
    rows = []
    for photo, pixels, problem in batch:
        mtime = "" if photo.mtime_ns is None else format_mtime(photo.mtime_ns)
        common = {"path": photo.key, "size": photo.size, "mtime": mtime, "model_version": version}
        if pixels is None:
            rows.append((photo, Row(status="error", error=f"{problem}; skipped", **common)))
            continue
        prediction = next(from_cache) if isinstance(pixels, Outputs) else next(predictions)
        rows.append((photo, prediction_row(prediction, **common)))
    return rows


def _write_outputs(
    photo: _Photo, row: Row, before: Row | None, outputs: _Outputs, summary: Summary, base: str
) -> None:
    """Bring the photo's sidecars and sorted copy in step with its row, counting them (and any failure).

    With --xmp the sidecar carries the row's breed (`reviews.sidecar_breed`), and no Dogtag breed for
    the others; without, a sidecar that carries a Dogtag breed is still kept in step. With --sort-into
    the photo has one copy, in its row's folder, with copies of its sidecars beside it; a copy made
    for an earlier tag (`before`) is moved.
    """
    where = os.path.join(base, photo.key)
    wanted = sidecar_breed(row) if row.status != "error" else None
    try:
        if outputs.xmp and row.status != "error":
            written = set_breed_keyword(photo.path, wanted, photo.shared_name, outputs.xmp_name)
            summary.sidecars_written += written
            summary.sidecars_unchanged += not written and wanted is not None
        elif row.status != "error" and dogtag_breeds(photo.path, photo.shared_name) not in ([], [wanted]):
            summary.sidecars_written += set_breed_keyword(photo.path, wanted, photo.shared_name, create=False)
    except XmpError as error:
        summary.not_written.append((where, f"no sidecar: {error}"))
    if outputs.sort_into is None or row.status == "error":
        return
    folder = outputs.sort_into / sorted_folder_name(row)
    try:
        copy, copied = copy_into(photo.path, folder)
        copy_sidecars(photo.path, photo.shared_name, copy)
        earlier = {sorted_folder_name(old) for old in (before, row) if old is not None}
        earlier |= {sorted_folder_name(replace(old, reviewed_breed="")) for old in (before, row) if old is not None}
        moved = any([remove_copy(photo.path, outputs.sort_into / name) for name in earlier - {folder.name}])
    except OSError as error:
        summary.not_written.append((where, f"not copied into {folder} ({error.strerror or error})"))
        return
    if moved:
        summary.copies_moved += 1
    elif copied:
        summary.copies_made += 1
    else:
        summary.copies_found += 1


def sorted_folder_name(row: Row) -> str:
    """The --sort-into sub-folder for a row: the reviewed breed, else the model's (made safe as a folder
    name), or _unsure / _not_a_dog."""
    if row.reviewed_breed:
        breed = sidecar_breed(row)
        if breed is None:
            return NOT_A_DOG_FOLDER
    elif row.status == "unsure":
        return UNSURE_FOLDER
    elif row.status == "not_a_dog":
        return NOT_A_DOG_FOLDER
    else:
        breed = row.breed
    name = breed.replace(os.sep, "-").replace("/", "-").strip(". ")
    return name or UNSURE_FOLDER


def copy_sidecars(photo: str | os.PathLike, shared_name: bool, copy: Path) -> None:
    """Copy the photo's sidecars beside its copy, named after it (`rex (2).xmp` or `rex (2).jpg.xmp`, as the
    original is named), when missing or different; a sidecar appears under its name only when complete."""
    full_name = os.path.basename(photo) + ".xmp"
    for sidecar in existing_sidecars(photo, shared_name):
        target = copy.with_name(copy.name + ".xmp") if sidecar.name == full_name else copy.with_suffix(".xmp")
        data = sidecar.read_bytes()
        if target.exists() and target.read_bytes() == data:
            continue
        partial = target.with_name(f".{target.name}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def remove_copy(photo: str | os.PathLike, folder: Path) -> bool:
    """Remove the copy of `photo` that `copy_into` made in `folder`, and its sidecars; False when none is there.

    The copy is told by its name (`rex.jpg`, `rex (2).jpg`...) and its size and time, which copies keep.
    """
    name = os.path.basename(photo)
    stem, suffix = os.path.splitext(name)
    source = os.stat(photo)
    for number in range(1, 10_000):
        target = folder / (name if number == 1 else f"{stem} ({number}){suffix}")
        try:
            existing = target.stat()
        except FileNotFoundError:
            return False
        if (existing.st_size, existing.st_mtime_ns) == (source.st_size, source.st_mtime_ns):
            target.unlink()
            for sidecar in (target.with_name(target.name + ".xmp"), target.with_suffix(".xmp")):
                with contextlib.suppress(FileNotFoundError):
                    sidecar.unlink()
            return True
    return False


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
