"""What `dogtag learn` learns from: the volunteers' corrections and folders already sorted by breed.

- Corrections: each folder's reviews file (edge_app.reviews, beside the folder's results file).
  The last review of a photo wins; a withdrawn one (an undo) leaves the photo out; a photo deleted
  since is skipped and counted; a torn last line (a power cut) is skipped by reviews.read_review_log.
- `--labeled DIR`: one sub-folder of photos per label (`DIR/Dachshund/*.jpg`); a Stanford-style
  prefix (`n02085620-Chihuahua`) and underscores are read as the plain name.

Names are matched to the base model's labels ignoring case, spacing, underscores and hyphens
("siberian  HUSKY" is "Siberian husky"); a name the base does not know is a new label, spelt as it
was first written, and spellings that differ only so are merged. "not a dog" teaches the dog gate.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dogtag.edge_app.breeds import model_breed_ids, model_label
from dogtag.edge_app.images import PHOTO_SUFFIXES
from dogtag.edge_app.results import default_results_path
from dogtag.edge_app.reviews import NOT_A_DOG, read_review_log, reviews_path
from dogtag.edge_app.walk import find_photos

# A new label is learned once it has this many photos; fewer are reported as waiting.
MIN_PHOTOS_PER_LABEL = 3
_WNID_PREFIX = re.compile(r"^n\d{8}[-_]")


@dataclass(frozen=True)
class Example:
    """One photo and what a person said it shows (label is NOT_A_DOG for the dog gate)."""

    photo: Path
    label: str
    source: str  # "review" or "labeled"
    when: str = ""  # the review's time, "" for --labeled photos


@dataclass
class Examples:
    """Everything found to learn from, with what was left out and why."""

    examples: list[Example] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # reviewed photos no longer on disk
    withdrawn: int = 0  # photos whose last review was an undo
    damaged_lines: int = 0  # lines of reviews files that were not whole reviews (torn)
    waiting: dict[str, int] = field(default_factory=dict)  # new labels with too few photos: label -> photos

    def counts(self) -> Counter:
        """Photos per label."""
        return Counter(example.label for example in self.examples)


def label_key(name: str) -> str:
    """The form two spellings of one label share: case, spacing, underscores and hyphens ignored."""
    return " ".join(re.sub(r"[\s_\-]+", " ", _WNID_PREFIX.sub("", name)).split()).casefold()


class LabelNames:
    """Maps what people wrote to labels: the base model's own where they match, else one spelling per new label."""

    def __init__(self, base_labels: tuple[str, ...] | list[str], wnids: list[str] | None = None):
        self.labels = list(base_labels)
        self.breed_ids = model_breed_ids(self.labels, wnids)
        self.known = {label_key(label): label for label in base_labels}
        self.known.setdefault(label_key(NOT_A_DOG), NOT_A_DOG)

    def __call__(self, name: str) -> str:
        key = label_key(name)
        if key not in self.known:
            # A breed's display name, old Stanford name or nickname ("Cairn Terrier", "yorkie") is the
            # base label of that breed, not a new label.
            plain = " ".join(_WNID_PREFIX.sub("", name).replace("_", " ").split())
            self.known[key] = model_label(plain, self.labels, self.breed_ids) or plain
        return self.known[key]


def from_reviews(folder: str | os.PathLike, names: LabelNames, found: Examples) -> None:
    """Add the corrections in `folder`'s reviews file to `found`."""
    folder = Path(folder)
    # dogtag-results.csv and .jsonl share one reviews file
    for path in sorted({reviews_path(default_results_path(folder, fmt)) for fmt in ("csv", "jsonl")}):
        log, damaged = read_review_log(path)
        found.damaged_lines += len(damaged)
        latest = {review.path: review for review in log}  # the last review of a photo wins
        for key, review in sorted(latest.items()):
            if not review.reviewed_breed:
                found.withdrawn += 1
                continue
            photo = folder / key
            if not photo.is_file():
                found.deleted.append(str(photo))
                continue
            found.examples.append(Example(photo, names(review.reviewed_breed), "review", review.reviewed_at))


def from_labeled_tree(root: str | os.PathLike, names: LabelNames, found: Examples) -> None:
    """Add every photo of `root`/LABEL/ (any depth below LABEL) to `found` with that label."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder; --labeled takes a folder with one sub-folder per label")
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            label = names(entry.name)
            for photo in find_photos(entry):
                if Path(photo).suffix.lower() in PHOTO_SUFFIXES:
                    found.examples.append(Example(Path(photo), label, "labeled"))


def gather(folders: list[str | os.PathLike], labeled: list[str | os.PathLike],
           base_labels: tuple[str, ...], wnids: list[str] | None = None) -> Examples:
    """Every example in the folders' corrections and the labeled trees; new labels with fewer than
    MIN_PHOTOS_PER_LABEL photos are moved to `waiting`. A photo named twice keeps its last label."""
    names = LabelNames(base_labels, wnids)
    found = Examples()
    for folder in folders:
        from_reviews(folder, names, found)
    for root in labeled:
        from_labeled_tree(root, names, found)
    latest = {os.path.realpath(example.photo): example for example in found.examples}
    found.examples = list(latest.values())
    counts = found.counts()
    known = set(base_labels) | {NOT_A_DOG}
    found.waiting = {label: n for label, n in sorted(counts.items()) if label not in known and n < MIN_PHOTOS_PER_LABEL}
    found.examples = [example for example in found.examples if example.label not in found.waiting]
    return found
