"""`dogtag watch` measured as a shelter's Pi lives it: a card of photos dropped at once, single photos
trickling in, and long quiet hours.

    python -m dogtag.benchmarks.watch                            # 1,000 photos, 10 singles, a quiet hour
    python -m dogtag.benchmarks.watch --photos 200 --quiet 60    # shortened

Starts `dogtag watch` in a fresh process on an empty folder (default settings; --settle 2) and prints:
- burst: photos tagged per second when `--photos` generated 640x480 JPEGs are copied in at once, from
  the first copy to the last row (the settle wait included: that is what the volunteer waits for);
- delay: seconds from a photo renamed into place (complete) to its row, median and max of `--singles`;
- quiet: the watcher's CPU use (% of one core) and resident memory at the start and end of `--quiet`
  seconds with nothing arriving, for inotify and for polling (--poll 10, as on a network share), with
  the folder holding every photo of the burst.
Linux only (it reads the watcher's /proc/PID/stat and status).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dogtag.benchmarks.fresh_process import DOGTAG
from dogtag.benchmarks.machine import describe_machine
from dogtag.edge_app.watch import DEFAULT_SETTLE

RESULTS = "dogtag-results.csv"


@dataclass
class QuietFigures:
    """The watcher's cost while nothing arrives."""

    mode: str
    seconds: float
    cpu_percent: float  # of one core
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float


@dataclass
class WatchFigures:
    """Everything one benchmark run measured."""

    photos: int
    settle: float
    burst_seconds: float
    burst_photos_per_s: float
    delays_s: list[float]
    quiet: list[QuietFigures]


def make_photos(folder: Path, count: int) -> list[Path]:
    """`count` different 640x480 JPEGs (phone-photo-like noise over a gradient)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x * 255 // 639, y * 255 // 479, np.full_like(x, 128)], axis=-1)
    paths = []
    for i in range(count):
        pixels = np.clip(base + rng.integers(-60, 60, (1, 1, 3)) + rng.integers(-20, 20, base.shape), 0, 255)
        path = folder / f"IMG_{i:04d}.jpg"
        Image.fromarray(pixels.astype("uint8")).save(path, quality=85)
        paths.append(path)
    return paths


def rows(folder: Path) -> int:
    """Rows in the results file so far (header excluded)."""
    try:
        return max(0, (folder / RESULTS).read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def start_watch(folder: Path, model: str | None, *extra: str) -> tuple[subprocess.Popen, Path]:
    """`dogtag watch FOLDER` in a fresh process, once it says it is watching; returns it and its log file."""
    log = folder.parent / f"watch-{time.monotonic_ns()}.log"
    command = [sys.executable, "-c", DOGTAG, "watch", str(folder), *(["--model", model] if model else []), *extra]
    with open(log, "w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    wait_until(lambda: "Watching" in log.read_text() or process.poll() is not None, 120, "the watch to start")
    if process.poll() is not None:
        raise RuntimeError(f"dogtag watch exited with {process.returncode}: {log.read_text()[-500:]}")
    return process, log


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, as systemd stops it; returns the exit code."""
    process.terminate()
    return process.wait(timeout=60)


def wait_until(condition, timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_quiet(process: subprocess.Popen, mode: str, seconds: float, every: float) -> QuietFigures:
    """Sample the watcher's CPU time and memory while the folder stays quiet."""
    time.sleep(min(5.0, seconds / 4))  # let the pass after start-up end
    cpu_start, wall_start = cpu_seconds(process.pid), time.monotonic()
    samples = [rss_mb(process.pid)]
    while time.monotonic() - wall_start < seconds:
        time.sleep(min(every, max(0.0, seconds - (time.monotonic() - wall_start))))
        samples.append(rss_mb(process.pid))
    wall = time.monotonic() - wall_start
    cpu = cpu_seconds(process.pid) - cpu_start
    return QuietFigures(mode, round(wall, 1), round(100 * cpu / wall, 3), round(samples[0], 1),
                        round(samples[-1], 1), round(max(samples), 1))


def run(photos: int, singles: int, quiet: float, model: str | None, work: Path, settle: float = DEFAULT_SETTLE,
        log=print) -> WatchFigures:
    """The whole benchmark in `work` (which it fills)."""
    staging, intake = work / "camera", work / "intake"
    intake.mkdir(parents=True)
    log(f"Making {photos + singles} photos...")
    burst = make_photos(staging / "burst", photos)
    trickle = make_photos(staging / "singles", singles)

    process, _ = start_watch(intake, model, "--settle", str(settle))
    try:
        started = time.monotonic()
        for path in burst:  # the card's photos copied in, as fast as the disk takes them
            shutil.copy(path, intake / path.name)
        wait_until(lambda: rows(intake) >= photos, 3600, f"{photos} rows", every=0.05)
        burst_seconds = time.monotonic() - started
        log(f"Burst: {photos} photos in {burst_seconds:.1f} s")
        delays = []
        for i, path in enumerate(trickle):
            partial = intake / f".single-{i}.part"  # copied under a hidden name, renamed when complete
            shutil.copy(path, partial)
            landed = time.monotonic()
            os.rename(partial, intake / f"single-{i:03d}.jpg")
            wait_until(lambda n=photos + i + 1: rows(intake) >= n, 600, "a single photo's row")
            delays.append(round(time.monotonic() - landed, 3))
        log(f"Delays: {delays}")
        figures = [measure_quiet(process, "inotify", quiet, every=max(1.0, quiet / 60))]
    finally:
        code = stop(process)
    if code != 0:
        raise RuntimeError(f"dogtag watch exited with {code} on SIGTERM")
    process, _ = start_watch(intake, model, "--settle", str(settle), "--poll", "10")
    try:
        figures.append(measure_quiet(process, "polling every 10 s", quiet, every=max(1.0, quiet / 60)))
    finally:
        stop(process)
    return WatchFigures(photos, settle, round(burst_seconds, 2), round(photos / burst_seconds, 1), delays, figures)


def format_figures(figures: WatchFigures) -> str:
    """The printed table."""
    lines = [
        f"burst:  {figures.photos} photos copied in at once, all tagged in {figures.burst_seconds:.1f} s: "
        f"{figures.burst_photos_per_s:.1f} photos/s (the {figures.settle:g} s settle wait included)",
        f"delay:  photo complete -> its row: median {statistics.median(figures.delays_s):.2f} s, "
        f"max {max(figures.delays_s):.2f} s over {len(figures.delays_s)} photos" if figures.delays_s else "delay: -",
    ]
    for q in figures.quiet:
        lines.append(f"quiet ({q.mode}), {q.seconds:.0f} s, {figures.photos + len(figures.delays_s)} photos in "
                     f"the folder: CPU {q.cpu_percent:.3f} % of a core, memory {q.rss_start_mb:.1f} -> "
                     f"{q.rss_end_mb:.1f} MB (max {q.rss_max_mb:.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000, help="photos dropped at once")
    parser.add_argument("--singles", type=int, default=10, help="photos dropped one at a time, for the delay")
    parser.add_argument("--quiet", type=float, default=3600, help="seconds of a quiet folder, per mode")
    parser.add_argument("--model", default=None, help="model file (default: the bundled one)")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE, help="dogtag watch --settle")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(f"{machine['cpu']}, {machine['usable_cores']} cores, load {machine['load_average']} at the start")
    with tempfile.TemporaryDirectory(prefix="dogtag-watch-bench-") as work:
        figures = run(args.photos, args.singles, args.quiet, args.model, Path(work), args.settle)
    print(format_figures(figures))
    print(f"load {describe_machine()['load_average']} at the end; figures: {asdict(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
