"""`pip install .` where Dogtag cannot run stops at once with what to do, not a traceback: a Python older
than 3.10, Windows outside WSL (the 32-bit Raspberry Pi case is in test_deploy.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dogtag.edge_app.platform_check import unsupported_platform_message, unsupported_python_message

REPO = Path(__file__).resolve().parents[1]


def run_setup_py_as_pip_does(tmp_path: Path, pretend: str) -> subprocess.CompletedProcess:
    """setup.py as pip runs it to read the metadata, after `pretend` (Python statements) changed this Python."""
    script = ("import platform, runpy, struct, sys\n" + pretend + "\n"
              "sys.argv = ['setup.py', 'egg_info', '--egg-base', sys.argv[1]]\n"
              "runpy.run_path('setup.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    result.stderr = " ".join(result.stderr.split())  # the message is wrapped at 100 columns
    return result


@pytest.mark.parametrize("version", [(3, 9, 2), (3, 7, 3)], ids=["bullseye-3.9", "buster-3.7"])
def test_pip_install_on_an_old_python_stops_before_installing_anything_and_says_which_python_to_use(
        tmp_path, version):
    result = run_setup_py_as_pip_does(tmp_path, f"sys.version_info = {version + ('final', 0)!r}")

    assert result.returncode == 1
    version_text = ".".join(map(str, version))
    assert f"Dogtag needs Python 3.10 or newer, and this is Python {version_text}" in result.stderr
    assert "rm -rf .venv && python3.11 -m venv .venv" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "stopped before writing any metadata"


def test_pip_install_on_windows_stops_and_points_to_wsl(tmp_path):
    result = run_setup_py_as_pip_does(tmp_path, "sys.platform = 'win32'")

    assert result.returncode == 1
    assert "Dogtag does not run on Windows itself" in result.stderr and "wsl --install" in result.stderr
    assert "/mnt/c/Users/Ana/Pictures" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_this_python_and_system_pass_and_newer_pythons_too():
    assert unsupported_python_message() is None and unsupported_platform_message() is None
    assert unsupported_python_message((3, 10, 0)) is None and unsupported_python_message((3, 13, 1)) is None
    assert unsupported_platform_message("x86_64", 64, "darwin") is None


def test_the_readme_opens_with_the_volunteers_page_and_leaves_the_developers_material_to_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"(?m)^## (.+)$", readme)
    first_screen = readme[:readme.index("## Tag photos")]

    assert headings[:5] == ["Install", "Tag photos", "Review and correct the tags", "Learn from the corrections",
                            "Raspberry Pi: tag every new photo by itself"]
    assert "pip install . && dogtag tag" in first_screen
    for developer_word in ("pytest", "ruff", "real_data", "../shared", ".[all]", "Stanford"):
        assert developer_word not in first_screen, f"{developer_word!r} comes before a volunteer has tagged a photo"
    assert "**Windows**" in first_screen and "wsl --install" in first_screen
    assert "**Python older than 3.10**" in first_screen and "python3.11 -m venv .venv" in first_screen
    assert not {"Train", "Export", "Benchmark"} & set(headings), "training, export and benchmarks are in docs/"
    developing = (REPO / "docs" / "DEVELOPING.md").read_text(encoding="utf-8")
    assert "## Train" in developing and "## Benchmark" in developing and "python -m pytest" in developing
    assert "[docs/DEVELOPING.md](docs/DEVELOPING.md)" in readme
    for image in re.findall(r"\]\(([\w/.-]+\.png)\)", developing):
        assert (REPO / "docs" / image).is_file(), f"{image} is linked from docs/DEVELOPING.md but missing"
