"""Run a command in a fresh process: seconds until its first line of output, and its peak memory.

Cold start is what a volunteer waits for after typing `dogtag predict photo.jpg`: Python starting,
imports, opening the model and the first photo through it. The child's first line on stdout is its
first result, so the time to that line is the cold start (the process exiting afterwards is not
counted). Peak memory is the child's own maximum resident set size (VmHWM), which the child writes
to a file as it exits. Not wait4's ru_maxrss: on Linux a child's ru_maxrss starts at the RSS of the
parent it was forked from (the benchmark process itself, hundreds of MB), so every child would seem
to need at least that much.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FreshRun:
    """What one fresh process did."""

    first_line_s: float | None  # None: it printed nothing on stdout
    seconds: float  # until it exited
    peak_rss_mb: float | None  # None: the process died before recording it
    returncode: int
    first_line: str
    stderr: str

    def failure(self, what: str) -> str | None:
        """A one-line reason when the process failed; None when it exited with 0."""
        if self.returncode == 0:
            return None
        last = (self.stderr.strip().splitlines() or ["no message"])[-1]
        return f"{what} exited with {self.returncode}: {last}"


# Run first in every fresh Python process: at exit (after the code's own atexit handlers), write the
# process's peak resident memory in KiB (/proc's "kB") to the file named by $DOGTAG_BENCH_PEAK. Only modules Python
# has already loaded at start-up, so that it adds nothing to the cold start.
PEAK_ENV = "DOGTAG_BENCH_PEAK"
_RECORD_PEAK = f"""\
import atexit, os
def _record_peak(path=os.environ.get("{PEAK_ENV}")):
    try:
        with open("/proc/self/status") as status:  # Linux (a Raspberry Pi too); elsewhere no figure
            peak = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "")
        with open(path, "w") as file:
            file.write(peak)
    except (OSError, TypeError):
        pass
atexit.register(_record_peak)
"""


def python_command(code: str, *args: str) -> list[str]:
    """This Python running `code` with `args` (sys.argv[1:] inside), recording its peak memory at exit."""
    return [sys.executable, "-c", _RECORD_PEAK + code, *args]


# The `dogtag` command exactly as its console script runs it, from this interpreter.
DOGTAG = "import sys; from dogtag.cli import main; sys.exit(main())"


def run_fresh(command: list[str], timeout: float = 600.0, env: dict | None = None) -> FreshRun:
    """Start `command` (made by `python_command`), time its first stdout line and its exit, read its peak RSS."""
    with tempfile.TemporaryFile(mode="w+") as stderr, tempfile.TemporaryDirectory() as scratch:
        peak_file = os.path.join(scratch, "peak")
        started = time.perf_counter()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   env={**os.environ, **(env or {}), PEAK_ENV: peak_file})
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            first_line = process.stdout.readline()
            first_line_s = time.perf_counter() - started if first_line else None
            process.stdin.close()  # EOF on its stdin tells a child that waits for it that its first line was read
            process.stdout.read()  # drain, so the child never blocks on a full pipe
            process.wait()
            seconds = time.perf_counter() - started
        finally:
            timer.cancel()
            process.stdout.close()
        stderr.seek(0)
        errors = stderr.read()
        peak = _read_kilobytes(peak_file)
    return FreshRun(first_line_s, seconds, peak, process.returncode, first_line.rstrip("\n"), errors)


def _read_kilobytes(path: str) -> float | None:
    """The peak the child wrote, in MB (None when it wrote none: killed, or no /proc)."""
    try:
        with open(path) as file:
            return int(file.read()) * 1024 / 1e6
    except (OSError, ValueError):
        return None


def cold_start_and_peak_memory(predict: list[str], tag: list[str], runs: int,
                               env: dict | None = None) -> tuple[dict, list[str]]:
    """Figures of fresh processes, and what went wrong: `predict` (one photo) run `runs` times, `tag` once.

    cold_start_s is the median time to the first result of `predict`; cold_start_peak_mb its largest
    peak memory; tag_peak_mb the peak memory of `tag`. A figure whose process failed is None.
    """
    figures = {"cold_start_s": None, "cold_start_peak_mb": None, "tag_peak_mb": None}
    predicted = [run_fresh(predict, env=env) for _ in range(runs)]
    problems = [run.failure("the predict process") for run in predicted if run.returncode][:1]
    if not problems:
        figures["cold_start_s"] = round(statistics.median(run.first_line_s for run in predicted), 3)
        peaks = [run.peak_rss_mb for run in predicted if run.peak_rss_mb is not None]
        figures["cold_start_peak_mb"] = round(max(peaks), 1) if peaks else None
    tagged = run_fresh(tag, env=env)
    if tagged.returncode:
        problems.append(tagged.failure("the tag process"))
    elif tagged.peak_rss_mb is not None:
        figures["tag_peak_mb"] = round(tagged.peak_rss_mb, 1)
    return figures, problems
