"""Figures measured later on a run's model (its export's verification, benchmarks) added to its record.

attached.json in the run folder keeps them by kind ("export", "bench") and source (the folder they
were written to); where MLflow is installed they reach the run's MLflow run too (train/tracking.py).
`dogtag export` and `dogtag bench` attach theirs themselves; `dogtag train attach` attaches older ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dogtag.train.run_folder import ATTACHED, flatten, is_number, read_json
from dogtag.train.tracking import track_run


def attach(run_dir: Path, kind: str, source: str, figures: dict[str, float], files: list[Path] | None = None,
           log=print) -> None:
    """Add figures measured on a run's model (kind "export" or "bench") to its record, and to MLflow.

    attached.json keeps them by kind and source (the folder they were written to), so a run logged
    to MLflow later gets them too; `files` (the reports) become artifacts under KIND/SOURCE_NAME/.
    """
    run_dir = Path(run_dir)
    path = run_dir / ATTACHED
    attached = read_json(path) or {}
    attached.setdefault(kind, {})[str(source)] = {
        "at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "figures": {name: value for name, value in figures.items() if is_number(value)},
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
        if is_number(entry.get("size_bytes")):
            figures[f"{name}/size_mb"] = round(entry["size_bytes"] / 1e6, 3)
        for figure in ("top1", "top1_change", "agreement", "ms_per_image", "meets_target"):
            figures[f"{name}/{figure}"] = entry.get(figure)
    for name, measured in (report.get("wild") or {}).items():  # dogs-in-the-wild through the edge app
        figures |= {f"{name}/{key}": value for key, value in flatten(measured, "/").items()}
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
        for key, value in flatten({k: v for k, v in row.items() if k not in ("threads", "top1_photos")},
                                   "/").items():
            if is_number(value) and not isinstance(value, bool):
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
        report = read_json(report_path)
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
        report = read_json(verification)
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
