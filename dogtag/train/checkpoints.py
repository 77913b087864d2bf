"""Resumable training: a checkpoint every epoch, one trainer per run folder, the same params on resume.

After every epoch the full model (with its optimizer state) and the progress (state.json) are
saved in the run's checkpoints/ folder, so a run started again with the same folder continues
where it stopped. A second process is refused while one trains the folder (only_trainer), and a
run goes on only with the hyperparameters it was started with (check_run_folder).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import keras

from dogtag.edge_app.locks import held_lock
from dogtag.train.scratch_params import ScratchParams


class RunMismatch(ValueError):
    """A run folder, a model to start from and the options given do not fit together."""


class Progress(keras.callbacks.Callback):
    """Checkpoints every epoch, keeps the best weights, stops early or at a time limit, logs a line.

    Keeps its own state (epoch, history, best score, epochs without improvement, the model it was
    warm-started from) in state.json beside last.keras, so a run started again resumes exactly where
    it stopped.
    """

    def __init__(self, directory: Path, patience: int, time_limit_s: float | None, log=print):
        super().__init__()
        self.directory, self.patience, self.time_limit_s, self.log = Path(directory), patience, time_limit_s, log
        self.state = {"epoch": 0, "history": {}, "best": None, "wait": 0, "stopped": None, "seconds": 0.0,
                      "init_from": None}
        if (self.directory / "state.json").exists():
            self.state.update(json.loads((self.directory / "state.json").read_text()))
        self.began = time.perf_counter()
        self.seconds_before = self.state["seconds"]

    @property
    def finished(self) -> bool:
        """True when early stopping (not a time limit) ended training, so there is nothing to resume."""
        return self.state["stopped"] == "early stopping"

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for key, value in logs.items():
            self.state["history"].setdefault(key, []).append(value)
        score = (logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0))
        improved = self.state["best"] is None or tuple(score) > tuple(self.state["best"])
        if improved:
            self.state["best"], self.state["wait"] = list(score), 0
            self.model.save_weights(self.directory / "best.tmp.weights.h5")
            (self.directory / "best.tmp.weights.h5").replace(self.directory / "best.weights.h5")
        else:
            self.state["wait"] += 1
        self.state["epoch"] = epoch + 1
        self.state["seconds"] = round(self.seconds_before + time.perf_counter() - self.began, 1)
        if self.state["wait"] >= self.patience:
            self.state["stopped"], self.model.stop_training = "early stopping", True
        elif self.time_limit_s is not None and time.perf_counter() - self.began >= self.time_limit_s:
            self.state["stopped"], self.model.stop_training = "time limit", True
        else:
            self.state["stopped"] = None
        self.model.save(self.directory / "last.tmp.keras")
        (self.directory / "last.tmp.keras").replace(self.directory / "last.keras")
        (self.directory / "state.tmp.json").write_text(json.dumps(self.state))
        (self.directory / "state.tmp.json").replace(self.directory / "state.json")
        scores = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        self.log(f"epoch {epoch + 1}: {scores} ({self.state['seconds']:.0f}s{', best' if improved else ''})")


@contextmanager
def only_trainer(run_dir: Path, lock_file: Path):
    """Hold an exclusive lock on `lock_file` while training `run_dir`, so that a second trainer is refused.

    Two processes saving the same checkpoints would each record the other's weights as their own.
    """
    busy = RunMismatch(f"{run_dir} is being trained by another process: wait for it to end or stop it")
    with held_lock(lock_file, busy):
        yield


def recorded_params(checkpoint_dir: Path) -> tuple[Path, dict] | None:
    """The hyperparameters a run was started with and the file they were read from, or None.

    The record is checkpoints/params.json, or for older runs the "params" of the run's config.json.
    """
    recorded = Path(checkpoint_dir) / "params.json"
    if not recorded.exists():
        recorded = Path(checkpoint_dir).parent / "config.json"
    if not recorded.exists():
        return None
    values = json.loads(recorded.read_text())
    if recorded.name == "config.json":  # a run's record keeps its params under "params"
        values = values.get("params", values)
    return recorded, values


def refuse_other_params(run_dir: Path, recorded: Path, before: dict, now: dict, free: tuple[str, ...] = (),
                        advice: str = "") -> None:
    """Raise RunMismatch naming the hyperparameters (but the `free` ones) whose values differ."""
    differing = sorted(key for key in now if key not in free and before.get(key) != now[key])
    if differing:
        raise RunMismatch(f"{run_dir} was started with other values of {', '.join(differing)} (see {recorded}); "
                          f"resume it with the same hyperparameters{advice}")


def record_params(checkpoint_dir: Path, values: dict) -> None:
    """Write the hyperparameters a run goes on with (checkpoints/params.json)."""
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    (Path(checkpoint_dir) / "params.json").write_text(json.dumps(values, indent=2))


def check_run_folder(checkpoint_dir: Path, params: ScratchParams, init_from: Path | None) -> None:
    """Refuse, before any work, a training that cannot go on in this folder; then record its params.

    A run resumes (or is re-evaluated) only with the hyperparameters it was started with: its
    checkpoint holds a network and an optimizer schedule built from them, so other values would be
    recorded beside a model they did not make. flip_tta is free: it only changes the shipped model.
    The record is checkpoints/params.json, or for older runs the params in the run's config.json;
    a hyperparameter it lacks (added since) means that hyperparameter's default.
    """
    checkpoint_dir = Path(checkpoint_dir)
    resuming = (checkpoint_dir / "last.keras").exists()
    if params.head_only and init_from is None and not resuming:
        raise RunMismatch("head_only trains the breeds layer alone on top of a warm-started network: "
                          "give the model to start from (init_from / --init-from)")
    recorded = recorded_params(checkpoint_dir)
    if resuming and recorded is not None:
        path, values = recorded
        try:
            before = ScratchParams.from_dict(values)
        except (TypeError, ValueError) as error:
            raise RunMismatch(f"{path} holds hyperparameters this version cannot read ({error})") from None
        run_dir = checkpoint_dir.parent
        refuse_other_params(
            run_dir, path, before.to_dict(), params.to_dict(), free=("flip_tta",),
            advice=f", or train on from its model in a new run folder (--init-from {run_dir / 'model.keras'})")
    record_params(checkpoint_dir, params.to_dict())


def best_epoch(history: dict) -> int:
    """The epoch (from 1) whose weights were kept: highest validation accuracy, then lowest loss."""
    scores = list(zip(history.get("val_accuracy", []), [-v for v in history.get("val_loss", [])], strict=False))
    return max(range(len(scores)), key=lambda i: scores[i]) + 1 if scores else 0
