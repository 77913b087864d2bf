"""The benchmark's one table: ratios to the Keras baseline, the targets, markdown, JSON and a plot.

A report is a plain dict (saved as bench.json): the machine, the settings, the photos, one row per
model and thread count, the rows skipped with their reason, and the targets. Targets are printed
beside the figures and never fail anything: timings depend on the machine and on what else runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# Figures compared with the Keras row of the same thread count: name -> (figure, how).
# "faster": Keras time / this time; "more": this rate / Keras rate; "ratio": this / Keras; "points": difference x 100.
RATIOS = {
    "tag_speedup": ("tag_images_per_s", "more"),
    "large_speedup": ("large_images_per_s", "more"),
    "batch_speedup": ("batch_images_per_s", "more"),
    "latency_speedup": ("latency_p50_ms", "faster"),
    "cold_start_speedup": ("cold_start_s", "faster"),
    "size_ratio": ("size_mb", "ratio"),
    "memory_ratio": ("tag_peak_mb", "ratio"),
    "top1_change_points": ("top1", "points"),
}


@dataclass(frozen=True)
class Target:
    """A figure the int8 model should reach (issue 6), checked on the int8 rows at the most threads."""

    name: str
    figure: str  # a row key, or "vs_keras.<ratio>"
    at_least: float | None = None
    at_most: float | None = None

    def met(self, value: float | None) -> bool | None:
        """Whether `value` reaches the target (None when there is no value)."""
        if value is None:
            return None
        return value >= self.at_least if self.at_least is not None else value <= self.at_most


TARGETS = (
    Target("tagging 224 px photos >= 200 photos/s", "tag_images_per_s", at_least=200),
    Target("tagging >= 6x the Keras baseline", "vs_keras.tag_speedup", at_least=6),
    Target("single-photo p50 <= 5 ms", "latency_p50_ms", at_most=5),
    Target("cold start to first result <= 0.5 s", "cold_start_s", at_most=0.5),
    Target("peak memory while tagging <= 150 MB", "tag_peak_mb", at_most=150),
    Target("12 MP JPEGs >= 30 photos/s end to end", "large_images_per_s", at_least=30),
)

# Markdown columns: (header, row key or "vs_keras.<ratio>", format).
COLUMNS = (
    ("model", "model", "{}"),
    ("format", "format", "{}"),
    ("threads", "threads", "{}"),
    ("size MB", "size_mb", "{:.3g}"),
    ("top-1 %", "top1", "{:.2%}"),
    ("p50 ms", "latency_p50_ms", "{:.2f}"),
    ("p90 ms", "latency_p90_ms", "{:.2f}"),
    ("batch photos/s", "batch_images_per_s", "{:.1f}"),
    ("tagging photos/s", "tag_images_per_s", "{:.1f}"),
    ("12 MP photos/s", "large_images_per_s", "{:.1f}"),
    ("cold start s", "cold_start_s", "{:.2f}"),
    ("peak MB cold start", "cold_start_peak_mb", "{:.0f}"),
    ("peak MB tagging", "tag_peak_mb", "{:.0f}"),
    ("tagging vs Keras", "vs_keras.tag_speedup", "{:.1f}x"),
    ("p50 vs Keras", "vs_keras.latency_speedup", "{:.1f}x"),
    ("size vs Keras", "vs_keras.size_ratio", "{:.2f}x"),
)


def add_ratios(rows: list[dict]) -> None:
    """Give every non-Keras row `vs_keras`: its figures against the Keras row of the same thread count."""
    keras = {row["threads"]: row for row in rows if row["format"] == "keras"}
    for row in rows:
        baseline = keras.get(row["threads"])
        if row["format"] == "keras" or baseline is None:
            continue
        ratios = {}
        for name, (figure, how) in RATIOS.items():
            mine, theirs = row.get(figure), baseline.get(figure)
            if mine is None or theirs is None or (how != "points" and not (mine and theirs)):
                ratios[name] = None
            elif how == "points":
                ratios[name] = round((mine - theirs) * 100, 2)
            else:
                ratio = theirs / mine if how == "faster" else mine / theirs
                ratios[name] = round(ratio, 3)
        row["vs_keras"] = ratios


def share_accuracy(rows: list[dict]) -> None:
    """Copy top-1 (measured once per model, at one thread count) to the model's other rows."""
    measured = {row["path"]: row for row in rows if row.get("top1_photos") is not None}
    for row in rows:
        source = measured.get(row["path"])
        if source is not None and "top1" not in row:
            row["top1"], row["top1_photos"] = source["top1"], source["top1_photos"]


def figure(row: dict, key: str):
    """A row's figure by key; "vs_keras.x" reaches into the ratios (None when absent)."""
    if key.startswith("vs_keras."):
        return (row.get("vs_keras") or {}).get(key.split(".", 1)[1])
    return row.get(key)


def target_rows(rows: list[dict]) -> list[dict]:
    """The rows the targets are for: int8 models (all models if none is int8) at the most threads measured."""
    models = [row for row in rows if row["format"] != "keras"]
    int8 = [row for row in models if "int8" in row["format"]] or models
    if not int8:
        return []
    most = max(row["threads"] for row in int8)
    return [row for row in int8 if row["threads"] == most]


def evaluate_targets(rows: list[dict]) -> list[dict]:
    """For each target row: every target's value and whether it is met (None: not measured)."""
    return [{
        "model": row["model"], "threads": row["threads"],
        "targets": [{"target": t.name, "value": figure(row, t.figure), "met": t.met(figure(row, t.figure))}
                    for t in TARGETS],
    } for row in target_rows(rows)]


def _threads(count: int) -> str:
    return f"{count} thread{'s' * (count != 1)}"


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def summary_line(row: dict) -> str:
    """A row's main figures on one line, logged as it is measured."""
    keys = ("top1", "latency_p50_ms", "tag_images_per_s", "large_images_per_s", "cold_start_s", "tag_peak_mb")
    columns = {key: (header, fmt) for header, key, fmt in COLUMNS}
    return "  -> " + ", ".join(f"{columns[key][0]} {_cell(row.get(key), columns[key][1])}" for key in keys)


def format_table(report: dict) -> str:
    """The markdown report: context, the table, skipped rows, problems, targets, and what the figures mean."""
    machine, photos, settings = report["machine"], report["photos"], report["settings"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items() if version)
    lines = ["# Dogtag benchmark", ""]
    if report.get("busy"):
        lines += [f"**Warning: {report['busy']}.**", ""]
    lines += [
        f"{report['started']}, commit {report['commit']}: `{report['command']}`",
        "",
        f"- Machine: {machine['cpu']}{' (' + machine['board'] + ')' if machine.get('board') else ''}, "
        f"{machine['usable_cores']} usable of {machine['cores']} cores, {machine['memory_gb']} GB; "
        f"{machine['system']}; Python {machine['python']}",
        f"- Load average: {machine['load_average']} before, {report['load_average_after']} after",
        f"- Runtimes: {packages}",
        f"- Photos: {photos['count']} from {photos['data']} ({photos['split']}); "
        f"12 MP: {photos['large_count']} generated JPEGs of {photos['large_size']}",
        f"- Settings: batches of {settings['batch_size']}; latency over {settings['latency_runs']} calls after "
        f"{settings['warmup_runs']}; batch throughput over {settings['throughput_photos']} photos; cold start: "
        f"median of {settings['cold_start_runs']} fresh processes; peak memory: `dogtag tag` over "
        f"{photos['memory_count']} photos and the 12 MP ones",
        "",
        "| " + " | ".join(header for header, _, _ in COLUMNS) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for row in report["rows"]:
        lines.append("| " + " | ".join(_cell(figure(row, key), fmt) for _, key, fmt in COLUMNS) + " |")
    for skipped in report["skipped"]:
        lines += ["", f"Skipped {skipped['model']}: {skipped['reason']}"]
    problems = [f"- {row['model']} ({_threads(row['threads'])}): {p}" for row in report["rows"] for p in row["problems"]]
    if problems:
        lines += ["", "Problems:", *problems]
    if report["targets"]:
        lines += ["", "## Targets", "", "Printed, never enforced: timings depend on the machine and on what else runs.",
                  "", "| target | " + " | ".join(f"{t['model']} ({_threads(t['threads'])})" for t in report["targets"]) + " |",
                  "|---|" + "---|" * len(report["targets"])]
        for index, target in enumerate(TARGETS):
            cells = []
            for entry in report["targets"]:
                result = entry["targets"][index]
                mark = {True: "met", False: "MISSED", None: "not measured"}[result["met"]]
                cells.append(f"{_cell(result['value'], '{:.3g}')} ({mark})")
            lines.append(f"| {target.name} | " + " | ".join(cells) + " |")
    lines += ["", EXPLANATION]
    return "\n".join(lines) + "\n"


EXPLANATION = """\
What the columns mean (benchmarks/README.md has the details):
- top-1: the most probable breed is the true one, over the photos above; measured once per model.
  Stanford Dogs comes from ImageNet, so models pretrained on ImageNet have likely seen these test photos:
  every accuracy here flatters them.
- p50 / p90 ms: one decoded photo through the model (after warm-up); batch photos/s: batches of decoded photos.
- tagging photos/s: the `dogtag tag` code path over a folder: walk, decode, resize, infer, write results.
  Keras: the seeds' way (PIL, model.predict in batches, CSV). 12 MP photos/s: the same over the generated JPEGs.
- cold start s: a fresh `dogtag predict photo.jpg` process until it prints its result (median of fresh runs);
  peak MB cold start: that process's peak resident memory.
- peak MB tagging: peak resident memory of a fresh `dogtag tag` process over 224 px and 12 MP photos.
- vs Keras: against the Keras row of the same thread count (speed: times faster; size: times the size)."""


def save_report(report: dict, out_dir: Path, log=print) -> list[Path]:
    """Write bench.json, bench.md and (with matplotlib) bench.png into `out_dir`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "bench.json", out_dir / "bench.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(format_table(report), encoding="utf-8")
    skipped = plot(report, out_dir / "bench.png")
    if skipped:
        log(f"no plot: {skipped}")
    else:
        paths.append(out_dir / "bench.png")
    return paths


def plot(report: dict, path: Path) -> str | None:
    """Top-1 against single-photo p50 latency, a point per row; returns why it was skipped, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    rows = [row for row in report["rows"] if row.get("top1") is not None and row.get("latency_p50_ms")]
    if not rows:
        return "no row has both a top-1 and a latency"
    figure_, axes = plt.subplots(figsize=(10, 5.5))
    # One colour per model file, one marker per thread count; a legend, since labels would overlap.
    models = list(dict.fromkeys(row["path"] for row in rows))
    colours = {path: plt.get_cmap("tab10")(i % 10) for i, path in enumerate(models)}
    markers = dict(zip(sorted({row["threads"] for row in rows}), "osD^vP*X", strict=False))
    for row in rows:
        axes.scatter(row["latency_p50_ms"], row["top1"] * 100, s=50, color=colours[row["path"]],
                     marker=markers.get(row["threads"], "o"), label=f"{row['model']} ({_threads(row['threads'])})")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    axes.set_xscale("log")
    # Plain numbers at 1, 2, 5, 10, 20, 50 ... ms instead of overlapping powers of ten.
    plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "125" else "")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.set_xlabel("single-photo latency p50 (ms, log scale)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(f"Dogtag: accuracy vs latency, {report['photos']['count']} test photos\n{report['machine']['cpu']}",
                   fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    figure_.tight_layout()
    figure_.savefig(path, dpi=120)
    plt.close(figure_)
    return None
