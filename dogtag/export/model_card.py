"""MODEL_CARD.md for exported models, from the training run's records and the export's verification.

Reads the run folder (metrics.json and config.json as train.run_record.write_run leaves them) and the
verification report of export.verify; writes what a shelter volunteer or a maintainer needs to
trust, or distrust, the model: data and split, how it was made, accuracy per file, thresholds,
known weaknesses and intended use.
"""

from __future__ import annotations

import json
from pathlib import Path

from dogtag.edge_app.model_file import ModelInfo

IMAGENET_CAVEAT = (
    "Stanford Dogs photos come from ImageNet, on which the backbone was pretrained: the backbone has very "
    "likely seen these test photos, so every accuracy on this test split flatters it. Expect lower accuracy "
    "on shelter photos (other lighting, kennels, mixed breeds)."
)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _percent(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _training_data_sentence(metrics: dict) -> str:
    if "train_images" not in metrics:
        return ""
    if metrics.get("refit_on_all_training_images"):
        return (f"{metrics['validation_images']} training photos were held out to choose the epochs, the blend "
                f"weight and the thresholds; the head was then trained again on all {metrics['train_images']} "
                "training photos. ")
    return (f"Training used {metrics['train_images']} photos and held out {metrics['validation_images']} "
            "training photos for validation (early stopping, blend weight, thresholds). ")


def model_card(
    info: ModelInfo, run_dir: str | Path, verification: dict | None, command: str, commit: str
) -> str:
    """The model card as markdown text."""
    run_dir = Path(run_dir)
    metrics, config = _read_json(run_dir / "metrics.json"), _read_json(run_dir / "config.json")
    lines = [f"# Dogtag model card: `{info.model_version}`", ""]
    lines += _what_it_is(info, metrics)
    lines += _data_and_making(metrics, config, run_dir, command, commit)
    lines += _test_accuracy(metrics, verification)
    lines += wild_section(metrics, (verification or {}).get("wild", {}))
    lines += _thresholds(info, metrics.get("thresholds", {}))
    lines += _weaknesses(metrics)
    return "\n".join(lines)


def _what_it_is(info: ModelInfo, metrics: dict) -> list[str]:
    return [
        "## What it is",
        "",
        f"A photo classifier that names the breed of the dog in a photo among {len(info.labels)} breeds of the "
        "Stanford Dogs dataset and gives, from the same forward pass, the probability that the photo shows a dog "
        "at all (the ImageNet classifier's mass on its dog classes, 151-268)"
        + ("." if info.dog_output else "; this model has no dog output."),
        f"Approach: {metrics.get('approach', 'unknown')}"
        + (f", backbone {info.extra['backbone']}" if "backbone" in info.extra else "") + ".",
        f"Input: raw RGB pixels, uint8, {info.input_size[0]} x {info.input_size[1]}, resized `{info.resize}` "
        "(stretched to size, as in training) with PIL bilinear; all preprocessing is inside the model.",
        "The labels, input size, resize mode, thresholds and model version are embedded in each file "
        "(TFLite metadata / ONNX metadata_props, key `dogtag`), so a file cannot be paired with the wrong labels.",
        "",
        "## Intended use",
        "",
        "- Sorting and tagging shelter photo folders offline (`dogtag tag`), on a laptop or a Raspberry Pi.",
        "- A breed is a visual resemblance, a suggestion for staff: not a pedigree, not a DNA test, and not a "
        "basis for decisions about an animal (breed-specific rules, adoption, euthanasia).",
        "- Mixed-breed dogs, the majority in shelters, get the pure breed they look most like; treat the top "
        "few breeds as a description, not a fact.",
        "",
    ]


def _data_and_making(metrics: dict, config: dict, run_dir: Path, command: str, commit: str) -> list[str]:
    return [
        "## Data and split",
        "",
        "Stanford Dogs (Khosla et al., FGVC 2011; images from ImageNet): 120 breeds, official split of "
        "12,000 training and 8,580 test photos. "
        + _training_data_sentence(metrics)
        + "The test split was used only for the figures below; int8 calibration used training photos only.",
        "",
        IMAGENET_CAVEAT,
        "",
        "## How it was made",
        "",
        f"- Training run: `{run_dir}`" + (f", commit `{config['commit']}`" if "commit" in config else "")
        + (f", TensorFlow {config['tensorflow']}" if "tensorflow" in config else "") + ".",
        f"- Export: `{command}` at commit `{commit}`.",
        "",
    ]


def _test_accuracy(metrics: dict, verification: dict | None) -> list[str]:
    lines = ["## Accuracy on the official test split", ""]
    if metrics:
        lines += [
            f"- Keras model: top-1 {_percent(metrics.get('top1'))}, top-5 {_percent(metrics.get('top5'))} "
            f"on {metrics.get('images', metrics.get('test_images', '?'))} test photos.",
            f"- No-training baseline (the ImageNet classifier restricted to the breeds): top-1 "
            f"{_percent(metrics.get('baseline_top1'))}, top-5 {_percent(metrics.get('baseline_top5'))}.",
            "",
        ]
    if verification:
        from dogtag.export.verify import format_table

        lines += ["Every exported file, run in its own runtime on the same pixels as the Keras model:", "",
                  format_table(verification), ""]
    return lines


def _thresholds(info: ModelInfo, thresholds: dict) -> list[str]:
    confidence = (
        f"- `min_confidence` = {info.min_confidence}: below it a photo is tagged `unsure` instead of a breed"
        + (f" (on validation photos, {_percent(thresholds.get('validation_precision_above_min_confidence'))} "
           f"of the breeds named above it are right, and {_percent(thresholds.get('validation_coverage_above_min_confidence'))} "
           "of photos clear it)." if "validation_precision_above_min_confidence" in thresholds else "."))
    if not info.dog_output:
        dog = "- No dog output, so no `min_dog`: no photo is tagged `not_a_dog` by this model."
    else:
        dog = (f"- `min_dog` = {info.min_dog}: below it a photo is tagged `not_a_dog`"
               + (f" ({_percent(thresholds.get('validation_dogs_below_min_dog'))} of validation dog photos fall below "
                  "it; Stanford Dogs has no photos without a dog: how many of those pass it is in the "
                  "dogs-in-the-wild table above)." if "validation_dogs_below_min_dog" in thresholds else "."))
    return ["## Thresholds", "", confidence, dog, ""]


def _weaknesses(metrics: dict) -> list[str]:
    lines = ["## Known weaknesses", ""]
    confused = metrics.get("most_confused", [])[:10]
    if confused:
        lines += ["Most confused breeds on the test split (true -> predicted; Stanford's labels: `dogtag tag` answers "
                  "the Eskimo dog / Siberian husky pair as one breed, Siberian Husky, and says when its best two are "
                  "siblings such as Lhasa Apso / Shih Tzu, see `dogtag/edge_app/breeds.json`):", "",
                  "| true | predicted as | photos |", "|---|---|---|"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} of {p['of']} |" for p in confused]
        lines.append("")
    weakest = sorted(metrics.get("per_breed", []), key=lambda row: row["recall"])[:5]
    if weakest:
        lines += ["Breeds recognised least often: "
                  + ", ".join(f"{row['breed']} ({_percent(row['recall'])})" for row in weakest) + ".", ""]
    return lines + [
        "- Look-alike breeds (the pairs above) are confused far more often than the average suggests.",
        "- The dog probability comes from ImageNet's classifier: cartoons, toys and dog-like animals may pass it, "
        "and dogs that are small, hidden or in odd light may fail it.",
        "- Photos with several dogs get one breed.",
        "",
    ]


def wild_section(metrics: dict, files: dict) -> list[str]:
    """Accuracy on dogs-in-the-wild, real photos from outside ImageNet: the figures that count."""
    if "wild" not in metrics and not files:
        return []
    lines = ["## Accuracy on real photos (dogs-in-the-wild)", "",
             "339 dog photos of 116 breeds and 103 photos without a dog, from outside ImageNet and Stanford Dogs "
             "(the development set: measured on and chosen with, never trained on), as they are and shrunk to "
             "96 px thumbnails first (96 px on the shorter side), as shelter databases keep them. With 1-4 photos a breed, per-breed figures "
             "from it are noise; a separate hidden set of the same kind checks the same thing.", ""]
    if "wild" in metrics:
        wild, thumbs = metrics["wild"], metrics.get("wild96", {})
        lines += [f"- Keras model: top-1 {_percent(wild.get('top1'))} (96 px thumbnails "
                  f"{_percent(thumbs.get('top1'))}); no-training baseline {_percent(wild.get('baseline_top1'))} "
                  f"({_percent(thumbs.get('baseline_top1'))}).", ""]
    if files:
        lines += ["Each exported file through the edge app (`load_photo`, the model's thresholds):", "",
                  "| file | top-1 | top-5 | 96 px top-1 | casual snapshots | without possible ImageNet photos "
                  "| not-dogs called dog | dogs rejected | `dog` tags right | dogs tagged `dog` |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, result in files.items():
            for suffix, label in (("", name), ("_merged", f"{name}, breeds merged")):
                if f"wild{suffix}" not in result:
                    continue
                w, t = result[f"wild{suffix}"], result[f"wild96{suffix}"]
                lines.append(
                    f"| {label} | {_percent(w['top1'])} | {_percent(w['top5'])} | {_percent(t['top1'])} "
                    f"| {_percent(w['top1_casual_snapshots'])} | {_percent(w['top1_without_maybe_imagenet'])} "
                    f"| {_percent(w['not_dogs_called_dog'])} | {_percent(w['dogs_rejected'])} "
                    f"| {_percent(w['confident_right'])} | {_percent(w['dogs_confident'])} |")
        lines += ["", "Casual snapshots: the Oxford-IIIT Pet photos; possible ImageNet photos: the Wikipedia images "
                  "(about 1 in 20 of those candidates was a Stanford photo), left out as a sensitivity check. "
                  "Breeds merged: as `dogtag tag` answers by default, Stanford's Eskimo dog (whose photos are "
                  "Siberian huskies) counted as Siberian Husky; the other rows score the model's 120 labels, "
                  "as `--names stanford` answers.", ""]
    return lines


def write_model_card(
    path: str | Path, info: ModelInfo, run_dir: str | Path, verification: dict | None, command: str, commit: str
) -> Path:
    """Write MODEL_CARD.md (see model_card)."""
    path = Path(path)
    path.write_text(model_card(info, run_dir, verification, command, commit), encoding="utf-8")
    return path
