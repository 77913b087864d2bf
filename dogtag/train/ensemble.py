"""An ensemble of finished transfer runs: measured like a run, and usable as a distillation teacher.

Each run folder keeps what its model said of the training photos (train_predictions.npz) and of
the test and dogs-in-the-wild photos (predictions.npz). The ensemble averages those probabilities
(optionally weighted), so it costs no inference at all; it is too slow to ship (one backbone per
member), but it teaches a single model (`dogtag train transfer --distill-from ENSEMBLE_RUN`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dogtag.train.evaluate import evaluate
from dogtag.train.run_record import write_run
from dogtag.train.wild import DEFAULT_WILD, WILD_SPLITS, read_wild, wild_metrics


def _load(run: Path, name: str) -> dict:
    path = run / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; re-run `dogtag train transfer` for {run} (it saves its predictions)")
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def ensemble_runs(runs: list[Path], out_dir: Path, weights: list[float] | None = None,
                  wild_root: Path | None = None, log=print) -> dict:
    """Average the members' probabilities; write a run folder with metrics and train_predictions.npz."""
    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two runs")
    weights = np.asarray(weights or [1.0] * len(runs), dtype="float64")
    if len(weights) != len(runs) or np.any(weights < 0) or weights.sum() == 0:
        raise ValueError(f"give one non-negative weight per run ({len(runs)}), not all zero")
    weights = weights / weights.sum()
    members = [(_load(run, "train_predictions.npz"), _load(run, "predictions.npz")) for run in runs]
    first_train, first = members[0]
    for run, (train, evaluation) in zip(runs, members, strict=True):
        if not np.array_equal(train["labels"], first_train["labels"]) or not np.array_equal(
                evaluation["test_labels"], first["test_labels"]):
            raise ValueError(f"{run}: trained or tested on other photos than {runs[0]}; an ensemble needs the same")

    def mean(pick) -> np.ndarray:
        return sum(w * pick(m).astype("float64") for w, m in zip(weights, members, strict=True))

    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    first_metrics = json.loads((runs[0] / "metrics.json").read_text())
    breeds = [row["breed"] for row in first_metrics["per_breed"]]
    metrics = evaluate(mean(lambda m: m[1]["test"]), first["test_labels"], breeds)
    thresholds = first_metrics["thresholds"]
    for split in WILD_SPLITS:
        if all(split in m[1] for m in members):
            sources = read_wild(wild_root or DEFAULT_WILD, breeds, _wnids(runs[0])).sources
            metrics[split] = wild_metrics(mean(lambda m, s=split: m[1][s]), mean(lambda m, s=split: m[1][f"{s}_dog"]),
                                          first[f"{split}_labels"], sources, thresholds["min_confidence"],
                                          thresholds["min_dog"])
    metrics.update(approach="ensemble of " + ", ".join(f"{r.name} ({w:.2f})" for r, w in zip(runs, weights, strict=True)),
                   members=[str(r) for r in runs], weights=weights.round(4).tolist(), thresholds=thresholds,
                   test_images=int(len(first["test_labels"])))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "train_predictions.npz", labels=first_train["labels"],
                        probabilities=mean(lambda m: m[0]["probabilities"]).astype("float16"))
    write_run(out_dir, {"approach": "ensemble", "members": [str(r) for r in runs], "weights": weights.tolist(),
                        "backbone": "+".join(c.get("backbone", "?") for c in configs)}, metrics, log=log)
    log(f"ensemble test top-1 {metrics['top1']:.4f}" + "".join(
        f", {split} {metrics[split]['top1']:.4f}" for split in WILD_SPLITS if split in metrics))
    return metrics


def _wnids(run: Path) -> list[str]:
    info = json.loads((run / "model_info.json").read_text())
    return info["wnids"]
