"""The machine the figures were taken on: CPU, cores, memory, load, and the versions of the runtimes.

Speed figures mean nothing without it, so it is saved with every benchmark, and a machine that was
already busy when the benchmark started is called out (its figures are not comparable).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# Distributions whose version changes the figures (None in the record when not installed).
PACKAGES = ("dogtag", "numpy", "pillow", "pillow-heif", "ai-edge-litert", "tflite-runtime", "onnxruntime",
            "tensorflow", "tensorflow-cpu", "keras")
# Load average per usable core above which a run is flagged as taken on a busy machine.
BUSY_LOAD_PER_CORE = 0.3


def describe_machine() -> dict:
    """CPU model, board, core counts, memory, OS, Python, load average now, and package versions."""
    cpuinfo = _read("/proc/cpuinfo")
    return {
        "cpu": _field(cpuinfo, "model name") or _field(cpuinfo, "Hardware") or platform.processor() or "unknown",
        "board": _field(cpuinfo, "Model") or _read("/proc/device-tree/model").strip("\0\n") or None,
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": _memory_gb(_read("/proc/meminfo")),
        "system": platform.platform(),
        "python": platform.python_version(),
        "load_average": load_average(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def busy_warning(load: float | None, cores: int) -> str | None:
    """A warning when the machine was busy with other work; None when it was quiet enough."""
    if load is None or load <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (f"the machine was busy: load average {load:.1f} on {cores} cores before the benchmark started; "
            "other work shares the CPU, so these speed figures are not final")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _field(cpuinfo: str, key: str) -> str | None:
    """The first `key : value` line of /proc/cpuinfo (x86: "model name"; Raspberry Pi: "Model")."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key and value.strip():
            return value.strip()
    return None


def _memory_gb(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1e6, 1)  # kB -> GB
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
