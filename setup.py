"""Stops `pip install .` with a clear message where Dogtag cannot run: 32-bit Raspberry Pi OS, Windows
(outside WSL), a Python older than 3.10.

Everything else is declared in setup.cfg. The check runs before pip looks for the dependencies, which
would otherwise end in "No matching distribution found for ai-edge-litert" (32-bit), a model runtime
missing at the first run (Windows), or numpy downloaded and then an error of its own (an old Python).
"""

import importlib.util
import re
import sys
import textwrap
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "dogtag_platform_check", Path(__file__).resolve().parent / "dogtag" / "edge_app" / "platform_check.py"
)
_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_check)
_message = _check.unsupported_python_message() or _check.unsupported_platform_message()
if _message:
    # wrapped for the terminal, but a `command` stays on one line, to be copied whole
    _message = re.sub(r"`[^`]*`", lambda command: command.group(0).replace(" ", "\xa0"), _message)
    _message = textwrap.fill(_message, 100, break_on_hyphens=False, break_long_words=False).replace("\xa0", " ")
    sys.exit("\n" + _message + "\n")

from setuptools import setup  # noqa: E402

setup()
