"""The record of a training run in its folder: config, metrics, history, plots; then its MLflow run.

Every approach records through write_run (transfer, the scratch CNN, the search's best run, an
ensemble): config.json (with the commit, TensorFlow and machine it was trained on), metrics.json
(without the raw matrix), history.json, confusion.png, confusion.npy, learning_curves.png and
most_confused.md. Where MLflow is installed the folder is then logged (train/tracking.py).
Figures measured later are attached by train/attach.py; the folder's file names are in
train/run_folder.py, resumable checkpoints in train/checkpoints.py.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import numpy as np

from dogtag.train.plots import plot_confusion, plot_history
from dogtag.train.tracking import track_run


def write_run(run_dir: Path, config: dict, metrics: dict, history: dict | None = None, log=print) -> None:
    """Write a run's record and plots: config, metrics (without the raw matrix), plots, confusions.

    Then, where MLflow is installed, log the folder to its MLflow run (see track_run).
    """
    import tensorflow as tf

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {**config, "commit": git_commit(), "tensorflow": tf.__version__,
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
    summary = {k: v for k, v in metrics.items() if k != "confusion"}
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    if "confusion" in metrics:
        names = [row["breed"] for row in metrics["per_breed"]]
        plot_confusion(np.array(metrics["confusion"]), names, run_dir / "confusion.png")
        np.save(run_dir / "confusion.npy", np.array(metrics["confusion"]))
        lines = ["| true | predicted as | count |", "|---|---|---|"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} / {p['of']} |" for p in metrics["most_confused"]]
        (run_dir / "most_confused.md").write_text("\n".join(lines) + "\n")
    if history:
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        plot_history(history, run_dir / "learning_curves.png")
    track_run(run_dir, log)


def git_commit() -> str:
    """The current commit of the checkout (with '+dirty' when there are uncommitted changes)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
