"""What a run folder holds, and how its files are read: one place for names every record module uses.

A run folder (runs/NAME/) is written by train/run_record.py, gets figures attached by
train/attach.py and is mirrored to MLflow by train/tracking.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MLFLOW_LINK = "mlflow.json"  # names the folder's MLflow run, so that it is continued
ATTACHED = "attached.json"  # export and benchmark figures measured on the run's model
# Config keys that say where a run was trained, not what: tags (they change between sittings), not params.
ENVIRONMENT_KEYS = ("commit", "tensorflow", "machine")
# Folder files that are not part of the record (the training lock, the link to MLflow itself).
NOT_RECORDED = ("lock", MLFLOW_LINK)


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, None when it is absent; a broken file is an error naming it."""
    if not Path(path).is_file():
        return None
    try:
        values = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); fix or remove it") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(values).__name__}")
    return values


def find_runs(root: Path) -> list[Path]:
    """Every run folder below `root` (or `root` itself): those that hold a metrics.json.

    Hidden folders (.venv) and MLflow's own store (folders with a meta.yaml, whose artifacts are
    copies of run folders) are not searched.
    """
    root = Path(root)

    def in_store_or_hidden(folder: Path) -> bool:
        parts = folder.relative_to(root).parts
        return any(part.startswith(".") for part in parts) or any(
            (root.joinpath(*parts[:i]) / "meta.yaml").is_file() for i in range(1, len(parts) + 1))

    return sorted(path.parent for path in root.rglob("metrics.json") if not in_store_or_hidden(path.parent))


def flatten(values: dict, separator: str, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat |= flatten(value, separator, name)
        else:
            flat[name] = value
    return flat


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, float) and math.isinf(value))
