""""Learn from N corrections" behind the review page: `dogtag learn` in the background, then the page
switches to the learned model and every row is scored again by it.

One job at a time, under the tagger's lock (no tagging while the model changes). The learned model
is written to LEARNED_FOLDER inside the first reviewed folder (a shelter copies that folder to its
Pi); learning again replaces it, learning from the same base model (never a learned head on top of
a learned head). Rows are re-scored with `tag_folders(restart)`: reviewed rows keep the human's
answer, since a row's review columns come from the reviews file, which tagging never touches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dogtag.edge_app.learned import read_info
from dogtag.edge_app.tagging import tag_folders
from dogtag.learn.examples import gather
from dogtag.learn.run import NothingToLearn, base_model_path, learn
from dogtag.review.jobs import Tagger
from dogtag.review.library import Library

LEARNED_FOLDER = "dogtag-learned-model"


@dataclass
class LearnProgress:
    """What the page shows: state is idle, learning, rescoring, done, refused or failed."""

    state: str = "idle"
    stage: str = ""  # embedding, checking, rescoring
    done: int = 0
    total: int = 0
    message: str = ""
    before: int = 0  # held-out corrections the model before got right
    after: int = 0  # ... and the learned model
    photos: int = 0  # held-out corrections judged
    per_label: dict = field(default_factory=dict)
    model: str = ""  # the learned model's folder, once written
    seconds: float = 0.0


class Learner:
    """Runs learning jobs behind the page and reports their progress."""

    def __init__(self, library: Library, tagger: Tagger, out: Path | None = None):
        self.library = library
        self.tagger = tagger
        self.out = out or Path(library.sources[0].base) / LEARNED_FOLDER
        self.progress = LearnProgress()
        self._running = threading.Lock()
        self.thread: threading.Thread | None = None  # the last job's

    def corrections(self) -> int:
        """How many corrected photos there are to learn from now."""
        base = read_info(base_model_path(self.tagger.options.model))
        return len(gather(self._folders(), [], base.labels).examples)

    def status(self) -> dict:
        """The progress of the current or last job, and the corrections there are to learn from."""
        return {**asdict(self.progress), "corrections": self.corrections(), "current_model": str(self.tagger.options.model)}

    def start(self, force: bool = False) -> threading.Thread | None:
        """Learn in the background; None when a job is already running."""
        if not self._running.acquire(blocking=False):
            return None
        self.progress = LearnProgress(state="learning", stage="embedding")
        self.thread = threading.Thread(target=self._run, args=(force,), name="dogtag-review-learning", daemon=True)
        self.thread.start()
        return self.thread

    def _folders(self) -> list[str]:
        return sorted({folder for source in self.library.sources for folder in source.folders})

    def _report(self, stage: str, done: int, total: int) -> None:
        self.progress = replace(self.progress, stage=stage, done=done, total=total)

    def _run(self, force: bool) -> None:
        started = time.monotonic()
        try:
            with self.tagger.lock:
                report = learn(self._folders(), out=self.out, model=self.tagger.options.model, force=force,
                               progress=self._report)
                summary = report.evaluation.summary()
                self.progress = replace(self.progress, before=summary["old_correct"], after=summary["new_correct"],
                                        photos=summary["photos"], per_label=summary["per_label"])
                if report.written is None:
                    self.progress = replace(self.progress, state="refused", message=report.reason,
                                            seconds=time.monotonic() - started)
                    return
                self._switch(report.written)
            self.library.refresh(now=True)
            self.progress = replace(self.progress, state="done", model=str(report.written),
                                    seconds=time.monotonic() - started)
        except (NothingToLearn, ValueError, OSError) as error:  # shown on the page; the server goes on serving
            self.progress = replace(self.progress, state="failed", message=str(error),
                                    seconds=time.monotonic() - started)
        finally:
            self._running.release()

    def _switch(self, model: Path) -> None:
        """Use the learned model from now on, and score every row again with it (tagger lock held)."""
        self.tagger.options = replace(self.tagger.options, model=str(model))
        self.tagger._classifier_factory = self.tagger.options.classifier
        self.tagger._classifier = None
        classifier = self.tagger.classifier()
        self.library.labels = classifier.info.labels
        self.progress = replace(self.progress, state="rescoring", stage="rescoring", done=0, total=0)
        for source in self.library.sources:
            options = replace(self.tagger.options, out=source.results, fmt=source.fmt, restart=True)
            tag_folders(source.folders, classifier, options,
                        progress=lambda done, total: self._report("rescoring", done, total))
