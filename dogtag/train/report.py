"""A markdown comparison of every run folder: accuracy against training and inference time."""

from __future__ import annotations

import json
from pathlib import Path

CAVEAT = ("Stanford Dogs' images come from ImageNet: ImageNet-pretrained models (every transfer row and the "
          "baseline) have very likely seen these test images during pretraining, which flatters them.")


RESNET_NOTE = ("ResNet50 is a supported backbone, but its ImageNet weights cannot be downloaded on the machines "
               "these runs were made on, so it has no row here: its whole code path (cache, head, fine-tuning, "
               "one-pass model) is tested on generated images with random weights (tests/test_train_transfer.py).")


def read_runs(root: Path) -> list[tuple[str, dict, dict]]:
    """(run name, config, metrics) of every run folder below `root` that has finished."""
    runs = []
    for metrics_path in sorted(Path(root).rglob("metrics.json")):
        config_path = metrics_path.with_name("config.json")
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        runs.append((str(metrics_path.parent.relative_to(root)), config, json.loads(metrics_path.read_text())))
    return runs


def _seconds(metrics: dict) -> str:
    timings = metrics.get("timings", {})
    total = timings.get("total_seconds") or sum(v for k, v in timings.items() if k.endswith("_seconds"))
    return f"{total:.0f}" if total else "n/a"


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def comparison_table(runs: list[tuple[str, dict, dict]]) -> list[str]:
    """One row per run: what was trained on what, and what it scored at what cost."""
    lines = [
        "| run | approach | breeds | training data | test top-1 | test top-5 | validation top-1 "
        "| wild top-1 | wild 96 px top-1 | training s | inference ms/img |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, config, metrics in sorted(runs, key=lambda r: -r[2].get("top1", 0)):
        views = "+".join(metrics.get("views", config.get("views", []))) or config.get("augmentation", "")
        if metrics.get("equalize"):
            views += " (equalized)"
        params = config.get("params", {})
        views += "".join(f" + {mix} {params[mix]:g}" for mix in ("cutmix", "mixup") if params.get(mix))
        if metrics.get("distilled_from"):
            views += f", distilled from {Path(metrics['distilled_from']).name}"
        breeds = len(metrics.get("per_breed", [])) or "?"
        lines.append(
            f"| {name} | {metrics.get('approach', '?')} | {breeds} | {views} | {_percent(metrics.get('top1'))} "
            f"| {_percent(metrics.get('top5'))} | {_percent(metrics.get('validation_top1'))} "
            f"| {_percent(metrics.get('wild', {}).get('top1'))} | {_percent(metrics.get('wild96', {}).get('top1'))} "
            f"| {_seconds(metrics)} "
            f"| {metrics.get('timings', {}).get('inference_ms_per_image', 'n/a')} |"
        )
    return lines


def report(root: Path) -> str:
    """The whole comparison report as markdown."""
    runs = read_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no finished runs (no metrics.json below it)")
    lines = ["# Dogtag training runs", "", CAVEAT, ""]
    baselines = {(c.get("backbone", "mobilenet_v2"), len(m.get("per_breed", [])), bool(m.get("equalize"))): m
                 for _, c, m in runs if "baseline_top1" in m}
    if baselines:
        per_count = "; ".join(
            f"{backbone} {_percent(m['baseline_top1'])} on {count} breeds" + (" (equalized images)" if equalized else "")
            + (f" (dogs-in-the-wild {_percent(m['wild']['baseline_top1'])}, as 96 px thumbnails "
               f"{_percent(m.get('wild96', {}).get('baseline_top1'))})" if "wild" in m else "")
            for (backbone, count, equalized), m in sorted(baselines.items(), key=lambda i: (i[0][0], -i[0][1], i[0][2])))
        lines += ["No-training baselines, each backbone's ImageNet classifier restricted to the breeds, measured with "
                  f"the same code on the same test images: top-1 {per_count}.", ""]
    lines += comparison_table(runs)
    lines += ["", "Training seconds are wall-clock on the machine in each run's config.json (a scratch run resumed "
              "over several sittings adds up the training of all of them); for transfer runs they "
              "start from cached backbone features (the one-off caching pass is not included). Inference ms/img is "
              "the saved Keras model on a batch of 32 on the CPU, not the exported edge model.", "",
              "wild: the dogs-in-the-wild development set (339 real dog photos of 116 breeds from outside ImageNet, "
              "measured on, never trained on), as they are and shrunk to 96 px thumbnails first (96 px on the shorter "
              "side; runs made before 2026-12-01 10:15 used the longer side, which is harsher); n/a where its "
              "features were not cached for that backbone.", "",
              "Training data: plain = the images as they are, flip = mirrored copies, box = cropped to the annotated "
              "dog, aug1 = one randomly augmented copy (flip, crop, rotation, shift, shear, zoom), equalized = "
              "histogram-equalized train and test images, thumb96 = copies shrunk to 96 px thumbnails first, distilled "
              "from X = targets mixed 30/70 from the labels and run X's probabilities, cutmix a / mixup a = each training batch blended with "
              "itself reversed (a box pasted / whole photos averaged, labels mixed alike; a = the Beta alpha). "
              "flip TTA = the model also looks at each validation and test photo mirrored and averages (twice the "
              "inference compute). Scratch runs: warm-started = started from another scratch model's weights "
              "(all but its head), head only = those weights frozen and only a new breeds layer trained.", "",
              RESNET_NOTE]
    return "\n".join(lines) + "\n"
