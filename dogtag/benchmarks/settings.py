"""The benchmark's knobs in one place: how many photos and runs each figure is measured over.

FULL is what `dogtag bench` runs; QUICK (`--quick`) is a few minutes on a small machine and is
what CI runs on generated data. Thread counts and the number of 12 MP photos can be overridden.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dogtag.edge_app.options import DEFAULT_BATCH_SIZE


def default_threads() -> tuple[int, ...]:
    """1 thread and every core: the two ends a user chooses between."""
    return tuple(sorted({1, os.cpu_count() or 1}))



@dataclass(frozen=True)
class BenchSettings:
    """How the figures are measured (see benchmarks/README.md for what each figure means)."""

    threads: tuple[int, ...] = field(default_factory=default_threads)
    quick: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE  # as `dogtag tag` batches photos
    warmup_runs: int = 10  # single-photo calls before latency is timed
    latency_runs: int = 200  # single-photo calls timed for p50 / p90
    throughput_photos: int = 512  # photos timed in batches for batch throughput
    cold_start_runs: int = 3  # fresh processes per model and thread count; the median is kept
    memory_photos: int = 300  # 224 px photos the fresh `dogtag tag` process tags (with the 12 MP ones)
    large_photos: int = 32  # generated 12 MP JPEGs tagged end to end

    def __post_init__(self) -> None:
        if not self.threads or any(n < 1 for n in self.threads):
            raise ValueError(f"thread counts must be 1 or more, got {self.threads}")


FULL = BenchSettings()
QUICK = BenchSettings(quick=True, latency_runs=50, throughput_photos=128, cold_start_runs=1, memory_photos=100,
                      large_photos=8)


def parse_threads(text: str) -> tuple[int, ...]:
    """'1,2' -> (1, 2); refuses anything but positive integers."""
    try:
        threads = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError as error:
        raise ValueError(f"--threads takes comma-separated numbers like 1,2, got {text!r}") from error
    if not threads or min(threads) < 1:
        raise ValueError(f"--threads takes numbers of 1 or more, got {text!r}")
    return threads
