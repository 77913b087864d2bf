"""The record of a training run: its folder and, where MLflow is installed, its MLflow run.

Every approach records through here (transfer, the scratch CNN, the search's best run):

- a run folder: config.json, metrics.json (without the raw matrix), history.json, confusion.png,
  confusion.npy, learning_curves.png and most_confused.md (write_run); one process at a time
  trains a folder (only_trainer); a run resumes only with the hyperparameters it was started with
  (recorded_params, refuse_other_params, record_params);
- figures measured later on its model, export and benchmark results, in attached.json (attach);
- when `mlflow` can be imported, the same record in an MLflow run (track_run): the config as
  params, per-epoch history and final metrics (top-1, top-5, per-breed F1, timings, thresholds,
  any other number in metrics.json), the attached figures, the folder's files as artifacts,
  tagged with the commit it was trained at. The store is MLFLOW_TRACKING_URI, else ./mlruns;
  the experiment MLFLOW_EXPERIMENT_NAME, else "dogtag". mlflow.json in the folder names its
  MLflow run, so a resumed run, a re-evaluation or `dogtag train log-existing` continue it.

Without MLflow a run folder is written exactly as it would be without this module's tracking.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np

MLFLOW_LINK = "mlflow.json"
ATTACHED = "attached.json"
DEFAULT_STORE = Path("mlruns")
DEFAULT_EXPERIMENT = "dogtag"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow 3's name for training runs
# Config keys that say where a run was trained, not what: tags (they change between sittings), not params.
ENVIRONMENT_KEYS = ("commit", "tensorflow", "machine")
# Folder files that are not part of the record (the lock, the link to MLflow itself).
NOT_RECORDED = ("lock", MLFLOW_LINK)


# --- the run folder --------------------------------------------------------------------------------

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


def plot_confusion(counts: np.ndarray, names: list[str], path: Path) -> None:
    """Save the row-normalised confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, dtype="float64")
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6, len(names) * 0.12)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    if len(names) <= 40:
        axis.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        axis.set_yticks(range(len(names)), names, fontsize=6)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("Confusion (rows normalised)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Save loss and accuracy per epoch (train and validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, values in history.items():
            if key.endswith(metric) and values:
                axis.plot(range(1, len(values) + 1), values, label=key)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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




def attach(run_dir: Path, kind: str, source: str, figures: dict[str, float], files: list[Path] | None = None,
           log=print) -> None:
    """Add figures measured on a run's model (kind "export" or "bench") to its record, and to MLflow.

    attached.json keeps them by kind and source (the folder they were written to), so a run logged
    to MLflow later gets them too; `files` (the reports) become artifacts under KIND/SOURCE_NAME/.
    """
    run_dir = Path(run_dir)
    path = run_dir / ATTACHED
    attached = _read_json(path) or {}
    attached.setdefault(kind, {})[str(source)] = {
        "at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "figures": {name: value for name, value in figures.items() if _is_number(value)},
        "files": [str(Path(f).resolve()) for f in files or []],
    }
    path.write_text(json.dumps(attached, indent=2))
    log(f"{kind} results of {source} attached to {run_dir}")
    track_run(run_dir, log)


def attach_export(report: dict, out_dir: Path, run_dir: Path | None = None, log=print) -> Path | None:
    """Attach an export's verification (verification.json) to the run it exported (its "run").

    Figures per format: size_mb, top1, top1_change, agreement, ms_per_image, meets_target (1 or 0),
    dogs-in-the-wild's wild/... and wild96/... where measured, and the Keras model's keras_top1.
    Returns the run folder, or None when it is not here (said so).
    """
    run_dir = _existing_run(run_dir or report.get("run"), f"the export in {out_dir}", log)
    if run_dir is None:
        return None
    figures = {"keras_top1": report.get("keras_top1")}
    for name, entry in report.get("formats", {}).items():
        if _is_number(entry.get("size_bytes")):
            figures[f"{name}/size_mb"] = round(entry["size_bytes"] / 1e6, 3)
        for figure in ("top1", "top1_change", "agreement", "ms_per_image", "meets_target"):
            figures[f"{name}/{figure}"] = entry.get(figure)
    for name, measured in (report.get("wild") or {}).items():  # dogs-in-the-wild through the edge app
        figures |= {f"{name}/{key}": value for key, value in _flatten(measured, "/").items()}
    files = [Path(out_dir) / name for name in ("verification.json", "verification.md", "MODEL_CARD.md")]
    attach(run_dir, "export", str(out_dir), figures, [f for f in files if f.is_file()], log)
    return run_dir


def attach_bench(report: dict, out_dir: Path, run_dir: Path | None = None, log=print) -> list[Path]:
    """Attach each benchmark row to the run its model came from; returns those run folders.

    A Keras row belongs to the run folder holding its model.keras; a model file to the run named
    by the verification.json its export left beside it. Figures: MODEL/tTHREADS/FIGURE, MODEL being
    "keras" or the file's stem (size_mb, top1, latency, photos/s, cold start, memory, vs_keras/...).
    With `run_dir`, every row is attached to that run.
    """
    by_run: dict[Path, tuple[Path, dict]] = {}  # one entry per folder, however its path was written
    orphans = set()
    for row in report.get("rows", []):
        owner = Path(run_dir) if run_dir else _run_of_model(Path(str(row.get("path", ""))))
        if owner is None:
            orphans.add(str(row.get("path")))
            continue
        model = "keras" if row.get("format") == "keras" else Path(str(row.get("path") or row["model"])).stem
        prefix = f"{model}/t{row.get('threads')}"
        figures = by_run.setdefault(owner.resolve(), (owner, {}))[1]
        for key, value in _flatten({k: v for k, v in row.items() if k not in ("threads", "top1_photos")},
                                   "/").items():
            if _is_number(value) and not isinstance(value, bool):
                figures[f"{prefix}/{key}"] = value
    for path in sorted(orphans):
        log(f"bench: {path} names no run folder (no metrics.json beside it, nor a verification.json naming "
            "one): not attached")
    files = [Path(out_dir) / name for name in ("bench.json", "bench.md", "bench.png")]
    attached = []
    for owner, figures in by_run.values():
        owner = _existing_run(owner, f"the benchmark in {out_dir}", log)
        if owner is not None:
            attach(owner, "bench", str(out_dir), figures, [f for f in files if f.is_file()], log)
            attached.append(owner)
    return attached


def attach_results(path: Path, run_dir: Path | None = None, log=print) -> list[Path]:
    """Attach a verification.json or bench.json (or the folder holding one) to its run(s)."""
    path = Path(path)
    candidates = [path] if path.is_file() else [path / "verification.json", path / "bench.json"]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{path}: no verification.json or bench.json; give the folder that "
                                "`dogtag export --out` or `dogtag bench --out` wrote")
    attached = []
    for report_path in found:
        report = _read_json(report_path)
        if "formats" in report:
            owner = attach_export(report, report_path.parent, run_dir, log)
            attached += [owner] if owner else []
        elif "rows" in report:
            attached += attach_bench(report, report_path.parent, run_dir, log)
        else:
            raise ValueError(f"{report_path}: neither a verification report (formats) nor a benchmark (rows)")
    return attached


def _run_of_model(path: Path) -> Path | None:
    """The run folder a model came from: the folder of a model.keras, else the one its export names.

    The export's verification.json beside the file names its run; bundled models keep theirs as
    verification_NAME.json beside NAME_FORMAT files (models/), so the format names the entry there.
    """
    if path.is_dir() and (path / "metrics.json").is_file():
        return path
    if path.suffix == ".keras" and (path.parent / "metrics.json").is_file():
        return path.parent
    for verification in sorted(path.parent.glob("verification*.json")):
        report = _read_json(verification)
        formats = report.get("formats", {})
        name = verification.stem.removeprefix("verification").removeprefix("_")
        if report.get("run") and (any(entry.get("file") == path.name for entry in formats.values())
                                  or name and path.stem.removeprefix(f"{name}_") in formats):
            return Path(report["run"])
    return None


def _existing_run(run_dir, what: str, log) -> Path | None:
    if not run_dir or not (Path(run_dir) / "metrics.json").is_file():
        log(f"{what} came from {run_dir or 'an unnamed run'}, which is not a run folder here "
            "(no metrics.json): not attached")
        return None
    return Path(run_dir)


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


# --- MLflow ----------------------------------------------------------------------------------------

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
    config = _read_json(run_dir / "config.json") or {}
    metrics = _read_json(run_dir / "metrics.json") or {}
    history = _read_json(run_dir / "history.json") or {}
    attached = _read_json(run_dir / ATTACHED) or {}
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
        started = ended - int(total * 1000) if _is_number(total) else ended
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
    before = (_read_json(run_dir / MLFLOW_LINK) or {}).get("artifacts", {}) if what == "continued" else {}
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

    link = _read_json(run_dir / MLFLOW_LINK)
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
    for key, value in _flatten({k: v for k, v in config.items() if k not in ENVIRONMENT_KEYS}, ".").items():
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
    flat = {k: v for k, v in _flatten({k: v for k, v in metrics.items()
                                       if k not in ("per_breed", "confusion")}, "/").items() if _is_number(v)}
    for row in metrics.get("per_breed") or []:
        if isinstance(row, dict) and _is_number(row.get("f1")):
            flat[f"f1/{row['breed']}"] = row["f1"]
    return {_key(k): float(v) for k, v in flat.items()}


def attached_metrics(attached: dict) -> dict[str, float]:
    """The figures of attached.json as MLflow metrics KIND/FIGURE; a later source wins a shared name."""
    flat = {}
    for kind, sources in attached.items():
        for entry in sorted(sources.values(), key=lambda e: e.get("at", "")):
            flat |= {_key(f"{kind}/{name}"): float(v) for name, v in entry.get("figures", {}).items() if _is_number(v)}
    return flat


def _flatten(values: dict, separator: str, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat |= _flatten(value, separator, name)
        else:
            flat[name] = value
    return flat


def _key(name: str) -> str:
    """A metric name MLflow accepts: other characters become '_', no empty or '.' path parts."""
    parts = [re.sub(r"[^\w.\- ]", "_", part).strip() for part in str(name).split("/")]
    return "/".join(part if part.strip(".") else "_" for part in parts if part)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, float) and math.isinf(value))


def _same(a, b) -> bool:
    if a is None or b is None:
        return False
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _read_json(path: Path) -> dict | None:
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
