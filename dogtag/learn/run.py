"""`learn`: corrections and sorted folders in, a learned model folder out, checked on held-out photos.

    from dogtag.learn.run import learn
    report = learn(["shelter/photos"], labeled=["archive/by-breed"], out="shelter-model")
    report.accepted, report.evaluation.summary(), report.written

The steps: gather the examples (examples.py), embed their photos once (edge_app.embeddings, cached),
judge a head fitted without each fold against the base model on that fold (fit.kfold), re-derive
min_confidence so that `dog` keeps the base's precision, fit the head on everything, and write the
folder (edge_app.learned) unless the new head is worse on held-out photos (unless forced).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dogtag.edge_app.classifier import resolve_model
from dogtag.edge_app.embeddings import EmbeddingCache, embed_photos
from dogtag.edge_app.learned import LEARNED_FILE, base_file, is_learned_model, save_learned_model
from dogtag.edge_app.model_file import ModelFileError
from dogtag.edge_app.reviews import NOT_A_DOG
from dogtag.edge_app.runtime import Model, Outputs
from dogtag.learn.bank import Bank, find_bank
from dogtag.learn.card import model_card
from dogtag.learn.examples import Examples, gather
from dogtag.learn.fit import (
    NOT_A_DOG_LABEL,
    Evaluation,
    FitOptions,
    Split,
    fit,
    kfold,
    threshold_for_precision,
)

# The bank may lose at most this share of its held-out photos (besides one photo) before a head is
# refused: learning new labels must cost the base's breeds almost nothing.
BANK_TOLERANCE = 0.005


class NothingToLearn(ValueError):
    """No usable example: no correction, no labeled photo (the message says what was found)."""


@dataclass
class LearnReport:
    """What a learning run found, measured and did."""

    base: Path
    labels: list[str]  # every label of the learned model: the base's, then the new ones
    found: Examples
    failed: dict[str, str]  # photos that could not be read
    computed: int  # photos embedded now (the rest came from the cache)
    evaluation: Evaluation
    thresholds: dict
    accepted: bool  # not worse than the base on held-out photos
    reason: str  # why not, when not
    written: Path | None = None
    seconds: dict = field(default_factory=dict)

    def new_labels(self) -> list[str]:
        """Labels the base model did not have."""
        return [label for label in self.labels if label not in self.evaluation.labels[: self.evaluation.base_labels]]


def base_model_path(model: str | os.PathLike | None) -> Path:
    """The model file a learned model is fitted on: a bundled name, a file, or a learned model's base."""
    path = resolve_model(model)
    return base_file(path) if is_learned_model(path) else path


def learn(
    folders: list[str | os.PathLike], labeled: list[str | os.PathLike] = (), out: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None, force: bool = False, k: int = 5, options: FitOptions | None = None,
    progress: Callable[[str, int, int], None] | None = None, bank: Bank | None | bool = True,
) -> LearnReport:
    """Learn from the folders' corrections and the labeled trees; write `out` unless the result is worse.

    `progress(stage, done, total)` is called as photos are embedded ("embedding") and folds fitted
    ("checking"). `bank`: True finds the bundled bank of the base model, None uses none.
    Raises NothingToLearn when there is nothing to learn from.
    """
    began = time.perf_counter()
    base_path = base_model_path(model)
    base = Model(base_path)
    if base.features_output is None:
        raise ModelFileError(f"{base_path}: this model file has no features output, so nothing can be learned "
                             "on it; use a bundled model or re-export it with `dogtag export`")
    found = gather(list(folders), list(labeled), base.info.labels, base.info.extra.get("wnids"))
    counts = found.counts()
    if not found.examples:
        raise NothingToLearn(_nothing_message(found, folders, labeled))
    new = sorted(label for label in counts if label not in base.info.labels and label != NOT_A_DOG)
    labels = [*base.info.labels, *new]
    index = {label: i for i, label in enumerate(labels)}
    embedded = embed_photos(base, [e.photo for e in found.examples], EmbeddingCache(base.info.model_version),
                            progress=(lambda d, t: progress("embedding", d, t)) if progress else None)
    kept = [found.examples[i] for i in embedded.kept]
    targets = np.array([index.get(e.label, NOT_A_DOG_LABEL) for e in kept], np.int64)
    examples = Split(embedded.outputs, targets)
    found_bank = find_bank(base.info, base_path) if bank is True else None
    bank_split = _bank_split(found_bank[0] if found_bank else bank or None)
    options = options or FitOptions(min_dog=base.info.min_dog)
    seconds = {"embedding": time.perf_counter() - began}
    space, stats = (found_bank[0].space, found_bank[0].stats) if found_bank else (None, None)
    evaluation = kfold(examples, bank_split, labels, len(base.info.labels), k, options, space=space, stats=stats)
    seconds["k-fold"] = time.perf_counter() - began - seconds["embedding"]
    accepted, reason = judge(evaluation)
    thresholds = {"min_confidence": rederived_min_confidence(evaluation, base.info.min_confidence),
                  "min_dog": base.info.min_dog}
    report = LearnReport(base_path, labels, found, embedded.failed, embedded.computed, evaluation, thresholds,
                         accepted, reason, seconds=seconds)
    if out is not None and (accepted or force):
        head = fit(examples, bank_split, len(labels), len(base.info.labels), options, space, stats)
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in head.arrays().values()))
        version = f"{base.info.model_version}+learned-{digest.hexdigest()[:10]}"
        learned = {"base_model": str(base_path.name), "base_model_version": base.info.model_version,
                   "labels": dict(sorted(Counter(e.label for e in kept).items())), "new_labels": new,
                   "learned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "corrections_from": _dates(kept), "kfold": _plain(evaluation.summary()), "forced": not accepted}
        report.written = save_learned_model(out, base_path, base.info, head, tuple(labels), thresholds, version,
                                            learned, model_card(report, version),
                                            bank_file=found_bank[1] if found_bank else None)
    report.seconds["total"] = time.perf_counter() - began
    return report


def judge(evaluation: Evaluation) -> tuple[bool, str]:
    """Whether the new head is no worse than the base on held-out photos, and why not."""
    if evaluation.new_correct < evaluation.old_correct:
        return False, (f"on held-out corrections the learned model is right {evaluation.new_correct} times, "
                       f"the base model {evaluation.old_correct} times")
    allowed = 1 + int(BANK_TOLERANCE * evaluation.bank_photos)
    if evaluation.bank_new_correct < evaluation.bank_old_correct - allowed:
        return False, (f"it would forget the base's breeds: {evaluation.bank_new_correct} of "
                       f"{evaluation.bank_photos} held-out training photos right instead of {evaluation.bank_old_correct}")
    return True, ""


def rederived_min_confidence(evaluation: Evaluation, base_threshold: float) -> float:
    """The new head's min_confidence: the lowest at which its `dog` tags, on held-out photos, are as
    often right as the base's are at its own threshold on the same photos."""
    parts_old, parts_new, truths = [], [], []
    dogs = evaluation.examples.labels >= 0
    parts_old.append(evaluation.old.breeds[dogs])
    parts_new.append(evaluation.new.breeds[dogs])
    truths.append(evaluation.examples.labels[dogs])
    if evaluation.bank is not None:
        parts_old.append(evaluation.bank.outputs.breeds)
        parts_new.append(evaluation.bank_new.breeds)
        truths.append(evaluation.bank.labels)
    truth = np.concatenate(truths)
    if not len(truth):
        return base_threshold
    old = np.concatenate([_padded(p, evaluation.new.breeds.shape[1]) for p in parts_old])
    new = np.concatenate(parts_new)
    tagged = old.max(1) >= base_threshold
    if not tagged.any():
        return base_threshold
    target = float((old.argmax(1) == truth)[tagged].mean())
    return threshold_for_precision(new.max(1), new.argmax(1) == truth, target, base_threshold)


def _padded(breeds: np.ndarray, width: int) -> np.ndarray:
    return np.pad(breeds, ((0, 0), (0, width - breeds.shape[1])))


def _bank_split(bank: Bank | None | bool) -> Split | None:
    if not isinstance(bank, Bank):
        return None
    return Split(Outputs(bank.breeds, bank.dog, bank.features), bank.labels)


def _dates(examples) -> dict:
    dates = sorted(e.when for e in examples if e.when)
    return {"first": dates[0], "last": dates[-1]} if dates else {}


def _plain(value):
    """JSON-ready copy (numpy integers become ints)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _nothing_message(found: Examples, folders, labeled) -> str:
    parts = [f"nothing to learn from in {', '.join(map(str, [*folders, *labeled])) or 'no folder'}:"]
    parts.append("no corrections (review the photos first: dogtag review FOLDER) and no --labeled photos")
    if found.waiting:
        parts.append("; waiting for more photos: " + ", ".join(f"{k} ({v})" for k, v in found.waiting.items()))
    if found.deleted:
        parts.append(f"; {len(found.deleted)} corrected photos no longer exist")
    return " ".join(parts)


__all__ = ["LEARNED_FILE", "LearnReport", "NothingToLearn", "base_model_path", "judge", "learn",
           "rederived_min_confidence"]
