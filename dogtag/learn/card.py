"""The learned model's card and the report `dogtag learn` prints: what it learned from, and how it fares."""

from __future__ import annotations

import time


def kfold_table(report) -> list[str]:
    """Markdown rows: per label, held-out photos right by the base and by the learned model."""
    evaluation = report.evaluation
    rows = ["| label | photos | base model right | learned model right |", "|---|---:|---:|---:|"]
    for label, figures in evaluation.per_label.items():
        new = "" if label in evaluation.labels[: evaluation.base_labels] or label == "not a dog" else " (new)"
        rows.append(f"| {label}{new} | {figures['photos']} | {figures['old']} | {figures['new']} |")
    summary = evaluation.summary()
    rows.append(f"| **all corrections** | {summary['photos']} | {summary['old_correct']} | {summary['new_correct']} |")
    if evaluation.bank_photos:
        rows.append(f"| the base's breeds (bank) | {evaluation.bank_photos} | {evaluation.bank_old_correct} | "
                    f"{evaluation.bank_new_correct} |")
    return rows


def found_lines(report) -> list[str]:
    """What was found and what was left out, one line each."""
    found = report.found
    lines = [f"{len(found.examples)} photos to learn from, {len(report.labels)} labels "
             f"({len(report.new_labels())} new: {', '.join(report.new_labels()) or 'none'})"]
    if found.waiting:
        lines.append("waiting for at least 3 photos: " + ", ".join(f"{k} ({v})" for k, v in found.waiting.items()))
    if found.deleted:
        lines.append(f"{len(found.deleted)} corrected photos no longer exist; skipped")
    if found.withdrawn:
        lines.append(f"{found.withdrawn} corrections withdrawn (undone); not used")
    if found.damaged_lines:
        lines.append(f"{found.damaged_lines} damaged lines in reviews files (a torn last line?); skipped")
    if report.failed:
        lines.append(f"{len(report.failed)} photos could not be read; skipped")
    return lines


def model_card(report, version: str) -> str:
    """The MODEL_CARD.md of a learned model folder."""
    evaluation = report.evaluation
    counts = report.found.counts()
    label_lines = [f"- {label}: {n} photos" + (" (new label)" if label in report.new_labels() else "")
                   for label, n in sorted(counts.items())]
    forced = "" if report.accepted else f"\n**Written with --force although it is worse:** {report.reason}.\n"
    bank = (f"{evaluation.bank_photos} training photos of the base's breeds (the bank shipped with the base "
            "model) took part as negatives, and are judged held-out below."
            if evaluation.bank_photos else "No bank of training photos was available for this base model: only "
            "the pull toward the base model keeps its breeds.")
    new_lines = ("" if not report.new_labels() else
                 " A new label competes with the breeds its photos looked like to the base model (its parents), "
                 "and wins where a photo sits nearer its photos than the parents' means (from the bank's training "
                 "photos where the base model has a bank, else from the photos learned from).")
    return "\n".join([
        f"# Learned model `{version}`", "",
        f"Made by `dogtag learn` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, from the base model "
        f"`{report.base.name}` (copied here as the base file). Copy this whole folder to use it: "
        "`dogtag tag --model FOLDER`, `dogtag review --model FOLDER`, `Classifier(FOLDER)`.", forced,
        "## What it learned from", "", *[f"- {line}" for line in found_lines(report)], "", *label_lines, "",
        "## How it was made", "",
        "A head fitted in numpy on the photos' features (the base model's `features` output): the base "
        "model's own probabilities are its prior, and a correction linear in the features is added for the "
        "base's breeds the examples name, classes balanced, pulled toward the base model. " + bank + new_lines, "",
        f"Thresholds: min_confidence {report.thresholds['min_confidence']:.3f} (re-derived so that `dog` tags "
        f"are right as often, on held-out photos, as the base's at its own threshold), "
        f"min_dog {report.thresholds['min_dog']:.3f}.", "",
        f"## Held-out check ({min(5, len(evaluation.examples))}-fold: each photo judged by a head fitted without it)", "",
        *kfold_table(report), "",
    ])
