"""Tagging behind the review page: folders with no results yet, and uploaded photos, with progress.

One job at a time, in a background thread, with the same `tag_folders` as `dogtag tag` (so its
results files, resuming and locks are the same). Uploaded photos land in the intake folder; when
that folder lies inside a reviewed folder, they are tagged into a results file of their own in the
cache and their rows appended to the reviewed folder's results file (so tagging an upload never
re-tags the rest of the folder, whatever model made its rows).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.results import ResultsFileError, add_rows, exclusive_access, find_results, read_results
from dogtag.edge_app.tagging import TaggingError, tag_folders
from dogtag.edge_app.walk import printable_path
from dogtag.review.library import Library, Source
from dogtag.review.security import inside

# How long an upload waits for a results file that another writer holds (a correction: milliseconds;
# `dogtag watch` or `dogtag tag` on the intake: a whole pass, then the upload says so and is tagged later).
BUSY_WAIT = 10.0


@dataclass
class Progress:
    """What the page shows while tagging: `state` is idle, tagging, done or failed."""

    state: str = "idle"
    done: int = 0
    total: int = 0
    folder: str = ""
    message: str = ""
    seconds: float = 0.0


class Tagger:
    """Runs tagging jobs one at a time and reports their progress."""

    def __init__(
        self,
        library: Library,
        classifier: Callable[[], Classifier],
        cache: Path,
        options: TagOptions | None = None,
    ):
        self.library = library
        self._classifier_factory = classifier
        self._classifier: Classifier | None = None
        self.cache = cache
        self.options = options or TagOptions()  # its out and fmt are each source's own
        self.lock = threading.Lock()  # one job at a time; the model is not shared between threads
        self.progress = Progress()

    def status(self) -> dict:
        """The progress of the current or last job, as a dict for the page."""
        return asdict(self.progress)

    def start(self, on_progress: Callable[[Progress], None] | None = None) -> threading.Thread | None:
        """Tag, in the background, every reviewed folder that has no results yet; None when none.

        `on_progress` hears of every step of that job (the terminal says what is happening).
        """
        sources = self.library.untagged()
        if not sources:
            return None
        self.progress = Progress(state="tagging", folder=", ".join(sources[0].folders))
        thread = threading.Thread(target=self._tag_sources, args=(sources, on_progress), name="dogtag-review-tagging", daemon=True)
        thread.start()
        return thread

    def tag_uploads(self, intake: Path, photos: list[Path]) -> tuple[Source, list[str]]:
        """Tag newly kept photos of the intake folder; returns their source and row paths."""
        source = intake_source(self.library, intake)
        with self.lock:
            started = time.monotonic()
            self.progress = Progress(state="tagging", folder=str(intake), total=len(photos))
            try:
                if os.path.realpath(source.base) == os.path.realpath(intake):
                    _when_free(lambda: self._tag(source.folders, source.results, source.fmt))
                else:
                    _when_free(lambda: self._tag_into(source, intake))
            except (TaggingError, ResultsFileError) as error:
                self.progress = Progress(state="failed", folder=str(intake), message=str(error))
                raise
            self.progress = Progress(state="done", folder=str(intake), done=len(photos), total=len(photos),
                                     seconds=time.monotonic() - started)
        self.library.refresh(now=True)
        return source, [printable_path(os.path.relpath(photo, source.base)) for photo in photos]

    def classifier(self) -> Classifier:
        """The model, opened on first use (call with `lock` held)."""
        if self._classifier is None:
            self._classifier = self._classifier_factory()
        return self._classifier

    def _tag_sources(self, sources: list[Source], on_progress: Callable[[Progress], None] | None) -> None:
        tell = on_progress or (lambda progress: None)
        with self.lock:
            started = time.monotonic()
            for source in sources:
                try:
                    self._tag(source.folders, source.results, source.fmt, tell)
                except Exception as error:  # shown on the page; the server goes on serving
                    self.progress = Progress(state="failed", folder=", ".join(source.folders), message=str(error))
                    tell(self.progress)
                    return
            self.progress = replace(self.progress, state="done", seconds=time.monotonic() - started)
        self.library.refresh(now=True)
        tell(self.progress)

    def _tag(self, folders: list[str], results: Path, fmt: str,
             tell: Callable[[Progress], None] = lambda progress: None) -> None:
        def progress(done: int, total: int) -> None:
            self.progress = replace(self.progress, done=done, total=total, folder=", ".join(folders))
            tell(self.progress)

        tag_folders(folders, self.classifier(), replace(self.options, out=results, fmt=fmt), progress=progress)

    def _tag_into(self, source: Source, intake: Path) -> None:
        """Tag the intake folder into its own results file in the cache, then add its new rows to `source`'s."""
        own = self.cache / f"intake-{hashlib.sha256(os.path.realpath(intake).encode()).hexdigest()[:16]}.csv"
        own.parent.mkdir(parents=True, exist_ok=True)
        self._tag([str(intake)], own, "csv")
        rows, _ = read_results(own, "csv")
        start = find_results([str(intake)], own, "csv")[0].base  # where the paths in `own` start from

        def path_in_source(path: str) -> str:
            return os.path.relpath(os.path.normpath(os.path.join(start, path)), os.path.abspath(source.base))

        with exclusive_access(source.results):
            known = {row.path for row in read_results(source.results, source.fmt)[0]}
            new = [replace(row, path=path_in_source(row.path), line="") for row in rows]
            new = [row for row in new if row.path not in known]
            if new:
                add_rows(source.results, source.fmt, new)


def intake_source(library: Library, intake: Path) -> Source:
    """The reviewed source whose folders hold the intake folder."""
    for source in library.sources:
        if any(inside(folder, intake) for folder in source.folders):
            return source
    raise ValueError(f"{intake}: the intake folder is not inside any reviewed folder")


def _when_free(action: Callable[[], None]) -> None:
    """Run `action`, again while its results file is held by another writer (a correction being written
    into it takes milliseconds), for at most BUSY_WAIT seconds; then the error says who holds it."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            return action()
        except (TaggingError, ResultsFileError) as error:
            if not _busy(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def _busy(error: BaseException | None) -> bool:
    """Whether the error comes from a results file's lock being held (and not from anything else)."""
    while error is not None:
        if isinstance(error, BlockingIOError):
            return True
        error = error.__cause__
    return False
