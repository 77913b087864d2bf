"""Say, in words, when this computer cannot run Dogtag: a 32-bit system (32-bit Raspberry Pi OS, armv7l),
Windows itself (WSL works), or a Python older than 3.10.

The runtimes that run Dogtag's models, ai-edge-litert and onnxruntime, publish packages for 64-bit
systems only. On a 32-bit Raspberry Pi OS `pip install .` would end in "No matching distribution found
for ai-edge-litert"; instead, `setup.py` stops the install with `unsupported_platform_message()`, and
the app says the same if the runtimes are missing at first run. The check is on the Python itself
(32-bit pointers), not on `uname -m`: a 32-bit Raspberry Pi OS on a Pi 4 or 5 runs a 64-bit kernel,
so it reports aarch64 while none of the 64-bit packages can load.

Windows: ai-edge-litert publishes no Windows packages and Dogtag is built and tested on Linux (its
results-file lock, for one, is POSIX); inside WSL it is Linux, and works. Python older than 3.10 cannot
even import Dogtag (it is written for 3.10), and without this check pip would download numpy first and
then fail on a requirement of its own.

Standard library only, and Python 3.7 syntax: setup.py loads this file by its path, before anything is
installed, on whatever Python the user has.
"""

from __future__ import annotations

import platform
import struct
import sys

MINIMUM_PYTHON = (3, 10)

RASPBERRY_PI_ADVICE = (
    "On a Raspberry Pi 3, 4, 5, 400 or Zero 2 W: write Raspberry Pi OS (64-bit) to the SD card with "
    "Raspberry Pi Imager, then run the same command again (`getconf LONG_BIT` then says 64). "
    "A Raspberry Pi 1, Zero or Zero W cannot run a 64-bit system: use any 64-bit PC or laptop instead."
)


WINDOWS_ADVICE = (
    "Dogtag does not run on Windows itself: ai-edge-litert, which runs its models, publishes no Windows "
    "packages. Use it inside WSL, the Linux that comes with Windows 10 and 11: in PowerShell, `wsl --install`, "
    "restart, open Ubuntu from the Start menu and follow the Linux steps of the README there; your Windows "
    "folders are under /mnt/c (C:\\Users\\Ana\\Pictures is /mnt/c/Users/Ana/Pictures)."
)


def unsupported_python_message(version: tuple[int, ...] | None = None) -> str | None:
    """Why this Python is too old for Dogtag and what to do; None for 3.10 and newer (`version` defaults to
    this Python's)."""
    version = tuple(sys.version_info[:3] if version is None else version)
    if version[:2] >= MINIMUM_PYTHON:
        return None
    return (
        f"Dogtag needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer, and this is Python "
        f"{'.'.join(map(str, version))}. Install a newer one (Raspberry Pi OS 12 'bookworm', Debian 12 and "
        "Ubuntu 22.04 or later come with one; on macOS, from python.org), then make the .venv again with it: "
        "`rm -rf .venv && python3.11 -m venv .venv` (or python3.10, python3.12, ...)."
    )


def unsupported_platform_message(
    machine: str | None = None, pointer_bits: int | None = None, system: str | None = None
) -> str | None:
    """Why Dogtag cannot run here and what to install instead; None on a 64-bit Linux or macOS.

    `machine` (as `uname -m` says it), `pointer_bits` (32 or 64) and `system` (as `sys.platform` says it)
    default to this Python's.
    """
    if (sys.platform if system is None else system) == "win32":
        return WINDOWS_ADVICE
    machine = platform.machine() if machine is None else machine
    bits = struct.calcsize("P") * 8 if pointer_bits is None else pointer_bits
    if bits >= 64:
        return None
    kind = "32-bit ARM" if machine.lower().startswith(("arm", "aarch")) else "a 32-bit system"
    return (
        f"Dogtag needs a 64-bit system, and this is {kind} ({bits}-bit Python on {machine or 'an unknown machine'}): "
        "ai-edge-litert and onnxruntime, which run its models, publish no packages for it. "
        + (RASPBERRY_PI_ADVICE if kind == "32-bit ARM" else "Install the 64-bit version of the operating system.")
    )
