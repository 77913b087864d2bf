"""Deploying on a Raspberry Pi: the systemd unit, the 32-bit message, and the arm64 check's judgement
(the check itself needs root and emulation: .ci/run runs it, see deploy/raspberry_pi_check.py)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import raspberry_pi_check as check
from dogtag.cli import STAGE_COMMANDS
from dogtag.edge_app.platform_check import unsupported_platform_message

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "dogtag-watch@.service"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_the_service_runs_dogtag_watch_restarts_on_failure_and_stops_with_sigterm():
    unit = read_unit()
    service = unit["Service"]
    program, command, folder = shlex.split(service["ExecStart"])

    assert program == "/home/%i/dogtag/.venv/bin/dogtag" and command == "watch" and command in STAGE_COMMANDS
    assert folder == "/home/%i/intake" and service["User"] == "%i"
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_unit_file(tmp_path):
    shutil.copy(UNIT, tmp_path / UNIT.name)

    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "dogtag-watch@volunteer.service")],
                            capture_output=True, text=True, timeout=60)

    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and "is not executable" not in line]  # no Dogtag installed in /home/volunteer
    assert complaints == []


@pytest.mark.parametrize("machine, bits", [("armv7l", 32), ("aarch64", 32), ("armv6l", 32)],
                         ids=["32-bit-pi-os", "32-bit-pi-os-on-a-64-bit-kernel", "pi-zero"])
def test_a_32_bit_raspberry_pi_is_told_to_install_the_64_bit_system(machine, bits):
    message = unsupported_platform_message(machine, bits)

    assert message.startswith(f"Dogtag needs a 64-bit system, and this is 32-bit ARM (32-bit Python on {machine})")
    assert "Raspberry Pi OS (64-bit)" in message and "Raspberry Pi Imager" in message


def test_64_bit_systems_pass_the_check():
    assert unsupported_platform_message("aarch64", 64) is None
    assert unsupported_platform_message("x86_64", 64) is None
    assert unsupported_platform_message() is None, "this machine runs the tests: it is 64-bit"
    assert "64-bit version of the operating system" in unsupported_platform_message("i686", 32)


def test_pip_install_on_32_bit_arm_stops_with_the_message_not_a_traceback(tmp_path):
    # setup.py as pip runs it to read the metadata, on a Python that says it is 32-bit ARM
    pretend = ("import platform, runpy, struct, sys\n"
               "platform.machine = lambda: 'armv7l'\n"
               "struct.calcsize = lambda fmt: 4\n"
               "sys.argv = ['setup.py', 'egg_info', '--egg-base', sys.argv[1]]\n"
               "runpy.run_path('setup.py', run_name='__main__')\n")

    result = subprocess.run([sys.executable, "-c", pretend, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 1
    assert "Dogtag needs a 64-bit system" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "stopped before writing any metadata"


def row(path: str, status: str, top_k: dict[str, float], dog: float | None = 0.9, error: str = "") -> dict[str, str]:
    ranked = sorted(top_k.items(), key=lambda item: -item[1])
    return {"path": path, "status": status, "breed": ranked[0][0] if ranked else "",
            "confidence": f"{ranked[0][1]:.4f}" if ranked else "",
            "top_k": "; ".join(f"{breed}={p:.4f}" for breed, p in ranked),
            "dog_probability": "" if dog is None else f"{dog:.4f}", "error": error}


def test_the_arm64_check_accepts_small_differences_and_near_ties_only():
    here = {
        "rex.jpg": row("rex.jpg", "dog", {"beagle": 0.95, "basset": 0.04}),
        "tie.jpg": row("tie.jpg", "unsure", {"Lhasa": 0.48, "Shih-Tzu": 0.40}),
        "broken.jpg": row("broken.jpg", "error", {}, None, "damaged or truncated image; skipped"),
    }
    there = {
        "rex.jpg": row("rex.jpg", "dog", {"beagle": 0.93, "basset": 0.06}),
        "tie.jpg": row("tie.jpg", "unsure", {"Shih-Tzu": 0.47, "Lhasa": 0.42}),  # a near tie, flipped
        "broken.jpg": row("broken.jpg", "error", {}, None, "damaged or truncated image; skipped"),
    }

    result = check.compare("m.tflite", here, there, min_confidence=0.9, min_dog=0.5, tolerance=0.1)

    assert result.problems == [] and result.max_difference == pytest.approx(0.07)
    assert result.near_ties == ["tie.jpg: breed Lhasa on x86, Shih-Tzu on arm64 (a near tie here: allowed)"]


def test_the_arm64_check_fails_on_another_breed_status_or_probability():
    here = {"a.jpg": row("a.jpg", "dog", {"beagle": 0.95, "basset": 0.04}),
            "b.jpg": row("b.jpg", "dog", {"pug": 0.99}, dog=0.99),
            "c.jpg": row("c.jpg", "dog", {"boxer": 0.97}),
            "d.jpg": row("d.jpg", "dog", {"boxer": 0.97})}
    there = {"a.jpg": row("a.jpg", "dog", {"basset": 0.95, "beagle": 0.04}),  # labels in another order
             "b.jpg": row("b.jpg", "not_a_dog", {"pug": 0.99}, dog=0.1),  # no longer a dog
             "c.jpg": row("c.jpg", "dog", {"boxer": 0.70}),  # the same breed, far less sure
             "e.jpg": row("e.jpg", "dog", {"boxer": 0.97})}

    problems = check.compare("m.onnx", here, there, min_confidence=0.9, min_dog=0.5, tolerance=0.1).problems

    assert any(p.startswith("a.jpg: probabilities differ by 0.910") for p in problems)
    assert "a.jpg: breed beagle on x86, basset on arm64" in problems
    assert "b.jpg: status dog on x86, not_a_dog on arm64" in problems
    assert any(p.startswith("c.jpg: probabilities differ by 0.270") for p in problems)
    assert "d.jpg: tagged on x86 only" in problems and "e.jpg: tagged on arm64 only" in problems


def test_the_arm64_check_skips_saying_why_where_it_cannot_emulate(monkeypatch):
    monkeypatch.setattr(check.sys, "platform", "linux")
    monkeypatch.setattr(check.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(check.os, "geteuid", lambda: 1000)
    assert check.why_it_cannot_run() == "it needs root (mmdebstrap, chroot and mount): run it as root"

    monkeypatch.setattr(check.os, "geteuid", lambda: 0)
    monkeypatch.setattr(check.shutil, "which", lambda tool: None if tool == "mmdebstrap" else f"/usr/bin/{tool}")
    assert check.why_it_cannot_run() == "mmdebstrap not installed (apt-get install mmdebstrap)"
    monkeypatch.setattr(check.shutil, "which", lambda tool: None if "qemu" in tool else f"/usr/bin/{tool}")
    assert check.why_it_cannot_run() == (
        "qemu-aarch64-static, qemu-arm-static not installed (apt-get install qemu-user-static)")


def test_the_arm64_check_tags_every_format_and_broken_files(tmp_path):
    check.make_generated_photos(tmp_path)

    names = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    suffixes = {Path(name).suffix for name in names}

    assert suffixes == {".jpg", ".png", ".webp", ".gif", ".bmp", ".tif"}
    assert {"truncated.jpg", "notes.jpg", "empty.png", "twelve-megapixels.jpg", "upright.jpg"} <= set(names)
