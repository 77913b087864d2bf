"""Stops `pip install .` with a clear message where Dogtag's runtimes do not exist (32-bit Raspberry Pi OS).

Everything else is declared in setup.cfg. The check runs before pip looks for the dependencies, which
on a 32-bit system would otherwise end in "No matching distribution found for ai-edge-litert".
"""

import importlib.util
import sys
import textwrap
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "dogtag_platform_check", Path(__file__).resolve().parent / "dogtag" / "edge_app" / "platform_check.py"
)
_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_check)
_message = _check.unsupported_platform_message()
if _message:
    sys.exit("\n" + textwrap.fill(_message, 100) + "\n")

from setuptools import setup  # noqa: E402

setup()
