"""Say, in words, when this computer cannot run Dogtag: a 32-bit system (32-bit Raspberry Pi OS, armv7l).

The runtimes that run Dogtag's models, ai-edge-litert and onnxruntime, publish packages for 64-bit
systems only. On a 32-bit Raspberry Pi OS `pip install .` would end in "No matching distribution found
for ai-edge-litert"; instead, `setup.py` stops the install with `unsupported_platform_message()`, and
the app says the same if the runtimes are missing at first run. The check is on the Python itself
(32-bit pointers), not on `uname -m`: a 32-bit Raspberry Pi OS on a Pi 4 or 5 runs a 64-bit kernel,
so it reports aarch64 while none of the 64-bit packages can load.

Standard library only: setup.py loads this file by its path, before anything is installed.
"""

from __future__ import annotations

import platform
import struct

RASPBERRY_PI_ADVICE = (
    "On a Raspberry Pi 3, 4, 5, 400 or Zero 2 W: write Raspberry Pi OS (64-bit) to the SD card with "
    "Raspberry Pi Imager, then run the same command again (`getconf LONG_BIT` then says 64). "
    "A Raspberry Pi 1, Zero or Zero W cannot run a 64-bit system: use any 64-bit PC or laptop instead."
)


def unsupported_platform_message(machine: str | None = None, pointer_bits: int | None = None) -> str | None:
    """Why Dogtag cannot run here and what to install instead; None on a 64-bit system.

    `machine` (as `uname -m` says it) and `pointer_bits` (32 or 64) default to this Python's.
    """
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
