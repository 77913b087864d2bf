"""A run's record mirrored to MLflow, where `mlflow` can be imported (the `track` extra).

The config as params, per-epoch history and final metrics (top-1, top-5, per-breed F1, timings,
thresholds, any other number in metrics.json), the attached figures, the folder's files as
artifacts, tagged with the commit it was trained at. The store is MLFLOW_TRACKING_URI, else
./mlruns; the experiment MLFLOW_EXPERIMENT_NAME, else "dogtag". mlflow.json in the folder names
its MLflow run, so a resumed run, a re-evaluation or `dogtag train log-existing` continue it.
Without MLflow a run folder is written exactly as it would be without tracking.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

from dogtag.train.run_folder import (
    ATTACHED,
    ENVIRONMENT_KEYS,
    MLFLOW_LINK,
    NOT_RECORDED,
    find_runs,
    flatten,
    is_number,
    read_json,
)

DEFAULT_STORE = Path("mlruns")
DEFAULT_EXPERIMENT = "dogtag"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow 3's name for training runs


def mlflow_installed() -> bool:
    """True when `mlflow` (or mlflow-skinny) can be imported."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the local store ./mlruns (as an absolute file: URI)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return DEFAULT_STORE.resolve().as_uri()


def track_run(run_dir: Path, log=print) -> str | None:
    """Log the run folder to its MLflow run when MLflow is installed; returns the MLflow run id.

    Never fails a run whose folder is written: a tracker that cannot be reached costs a warning.
    """
    if not mlflow_installed():
        return None
    try:
        run_id, _ = log_folder(run_dir)
    except Exception as error:  # whatever the tracker raises, the folder is already complete
        log(f"warning: {run_dir} was not logged to MLflow ({type(error).__name__}: {error}); the run folder is "
            f"complete, and `dogtag train log-existing {run_dir}` logs it when the tracker works")
        return None
    log(f"MLflow run {run_id} in {tracking_uri()}")
    return run_id


def log_existing(root: Path, log=print) -> list[tuple[Path, str, str]]:
    """Log every run folder below `root` to MLflow: [(run folder, MLflow run id, what was done)].

    Safe to repeat: a folder already logged continues its MLflow run and adds only what is new.
    """
    if not mlflow_installed():
        raise RuntimeError("MLflow is not installed: pip install 'dogtag[track]' (or '.[track]' from a checkout)")
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no run folders (no metrics.json below it)")
    done, failed = [], []
    for run_dir in runs:
        try:
            run_id, what = log_folder(run_dir)
        except Exception as error:  # one broken folder must not keep the others out of the tracker
            log(f"{run_dir}: not logged ({type(error).__name__}: {error})")
            failed.append(str(run_dir))
            continue
        log(f"{run_dir}: MLflow run {run_id} ({what})")
        done.append((run_dir, run_id, what))
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs)} run folders were not logged ({', '.join(failed)}); "
                           f"the {len(done)} others were")
    return done


def log_folder(run_dir: Path) -> tuple[str, str]:
    """Log what the MLflow run of `run_dir` lacks; returns (run id, "new", "continued" or "up to date").

    The folder's MLflow run (mlflow.json) is continued when the folder still describes it: the
    same params, and the history it holds begins with what was logged (a resumed run adds epochs).
    Otherwise (other hyperparameters, e.g. a re-evaluation with flip TTA, or a new training in the
    same folder) a new MLflow run starts, tagged with the one it follows; MLflow keeps both.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json") or {}
    metrics = read_json(run_dir / "metrics.json") or {}
    history = read_json(run_dir / "history.json") or {}
    attached = read_json(run_dir / ATTACHED) or {}
    uri = tracking_uri()
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 keeps its file store only for those who ask; the default is that store.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    params = run_params(config)
    history = {key: [float(v) for v in values] for key, values in history.items() if isinstance(values, list)}
    ended = int((run_dir / "metrics.json").stat().st_mtime * 1000) if (run_dir / "metrics.json").exists() \
        else int(time.time() * 1000)

    run_id, what, followed = _run_to_continue(client, uri, run_dir, params, history)
    if run_id is None:
        total = (metrics.get("timings") or {}).get("total_seconds")
        started = ended - int(total * 1000) if is_number(total) else ended
        run_id = client.create_run(_experiment_id(client), start_time=started, run_name=str(run_dir)).info.run_id
        what = "new"
    logged = client.get_run(run_id).data

    tags = run_tags(config, metrics, run_dir) | ({"dogtag.follows": followed} if followed else {})
    new_tags = [RunTag(k, v) for k, v in tags.items() if logged.tags.get(k) != v]
    new_params = [Param(k, v) for k, v in params.items() if k not in logged.params]
    finals = final_metrics(metrics) | attached_metrics(attached)
    new_metrics = [Metric(k, v, ended, 0) for k, v in finals.items() if not _same(logged.metrics.get(k), v)]
    for key, values in history.items():
        have = {m.step for m in client.get_metric_history(run_id, key)} if key in logged.metrics else set()
        new_metrics += [Metric(key, v, ended, step) for step, v in enumerate(values, 1) if step not in have]
    for start in range(0, max(len(new_params), len(new_tags), len(new_metrics)), 100):
        client.log_batch(run_id, metrics=new_metrics[start : start + 100], params=new_params[start : start + 100],
                         tags=new_tags[start : start + 100])
    artifacts = [(path, None) for path in sorted(run_dir.iterdir())
                 if path.is_file() and path.name not in NOT_RECORDED]
    artifacts += [(Path(file), f"{kind}/{_key(Path(source).name) or kind}") for kind, sources in attached.items()
                  for source, entry in sources.items() for file in entry.get("files", []) if Path(file).is_file()]
    # Files logged before and unchanged since (size and time) are not copied again.
    before = (read_json(run_dir / MLFLOW_LINK) or {}).get("artifacts", {}) if what == "continued" else {}
    copied = {}
    for path, folder in artifacts:
        name, stamp = f"{folder or '.'}/{path.name}", [path.stat().st_size, path.stat().st_mtime_ns]
        if before.get(name) != stamp:
            client.log_artifact(run_id, str(path), folder)
        copied[name] = stamp
    client.set_terminated(run_id, "FINISHED", end_time=ended)
    (run_dir / MLFLOW_LINK).write_text(json.dumps({"tracking_uri": uri, "run_id": run_id, "artifacts": copied},
                                                  indent=2))
    if what == "continued" and not (new_params or new_metrics or new_tags) and copied == before:
        what = "up to date"
    return run_id, what


def _run_to_continue(client, uri: str, run_dir: Path, params: dict, history: dict) -> tuple[str | None, str, str]:
    """(MLflow run id or None, "continued", the run a new one follows or "") for this folder."""
    from mlflow.exceptions import MlflowException

    link = read_json(run_dir / MLFLOW_LINK)
    if not link or link.get("tracking_uri") != uri:
        return None, "new", ""
    try:
        run = client.get_run(link["run_id"])
    except MlflowException:  # deleted, or another store behind the same URI
        return None, "new", ""
    if run.info.lifecycle_stage != "active":
        return None, "new", ""
    if any(run.data.params.get(k, v) != v for k, v in params.items()):
        return None, "new", run.info.run_id
    for key, values in history.items():
        if key in run.data.metrics:
            logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            if any(step > len(values) or not _same(values[step - 1], value) for step, value in logged):
                return None, "new", run.info.run_id
    return run.info.run_id, "continued", ""


def _experiment_id(client) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    if experiment is None or EXPERIMENT_KIND[0] not in experiment.tags:
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)  # the UI then opens on runs, not LLM traces
    return experiment_id


def run_params(config: dict) -> dict[str, str]:
    """The config as MLflow params: nested keys joined by '.', values as text (JSON but for strings)."""
    params = {}
    for key, value in flatten({k: v for k, v in config.items() if k not in ENVIRONMENT_KEYS}, ".").items():
        text = value if isinstance(value, str) else json.dumps(value)
        params[key[:250]] = text if len(text) <= 6000 else text[:5990] + " [cut]"  # MLflow's limits
    return params


def run_tags(config: dict, metrics: dict, run_dir: Path) -> dict[str, str]:
    """Where and when the run was made (commit, TensorFlow, machine) and what it is, as MLflow tags."""
    tags = {"mlflow.runName": str(run_dir), "dogtag.run_dir": str(Path(run_dir).resolve()),
            "mlflow.source.name": "dogtag train"}
    commit = str(config.get("commit", ""))
    if commit and commit != "unknown":
        tags |= {"mlflow.source.git.commit": commit.removesuffix("+dirty"), "dogtag.commit": commit}
    for key in ("tensorflow", "machine"):
        if config.get(key):
            tags[f"dogtag.{key}"] = str(config[key])
    for key in ("approach", "stopped"):
        if isinstance(metrics.get(key), str):
            tags[f"dogtag.{key}"] = metrics[key]
    return tags


def final_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of metrics.json as MLflow metrics: nested keys joined by '/', F1 per breed as f1/BREED.

    Lists (confused pairs, views) are left to the artifacts; booleans are kept as 0 or 1.
    """
    flat = {k: v for k, v in flatten({k: v for k, v in metrics.items()
                                       if k not in ("per_breed", "confusion")}, "/").items() if is_number(v)}
    for row in metrics.get("per_breed") or []:
        if isinstance(row, dict) and is_number(row.get("f1")):
            flat[f"f1/{row['breed']}"] = row["f1"]
    return {_key(k): float(v) for k, v in flat.items()}


def attached_metrics(attached: dict) -> dict[str, float]:
    """The figures of attached.json as MLflow metrics KIND/FIGURE; a later source wins a shared name."""
    flat = {}
    for kind, sources in attached.items():
        for entry in sorted(sources.values(), key=lambda e: e.get("at", "")):
            flat |= {_key(f"{kind}/{name}"): float(v) for name, v in entry.get("figures", {}).items() if is_number(v)}
    return flat


def _key(name: str) -> str:
    """A metric name MLflow accepts: other characters become '_', no empty or '.' path parts."""
    parts = [re.sub(r"[^\w.\- ]", "_", part).strip() for part in str(name).split("/")]
    return "/".join(part if part.strip(".") else "_" for part in parts if part)


def _same(a, b) -> bool:
    if a is None or b is None:
        return False
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
