"""`dogtag review` as a command: it prints its address, serves the page there, and says clearly why it
cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")

from dogtag.cli import main  # noqa: E402
from tests.review_fixtures import MODEL, draw_dog, make_shelter_folder, raw_get  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def start_review(*args: str, config: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`dogtag review ARGS --no-browser --port 0` in a new process; returns it and the address it printed.

    `config` stands for ~/.config (where the token is kept).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if config is not None:
        env["XDG_CONFIG_HOME"] = str(config)
    process = subprocess.Popen(
        [sys.executable, "-c", "from dogtag.cli import main; main()", "review", *args, "--no-browser", "--port", "0",
         "--model", MODEL],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env,
        # Ctrl-C as a terminal gives it: a job started with `nohup ... &` passes SIGINT on ignored, and then
        # `stop` would wait for a server that never hears it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = process.stdout.readline()
    if not line.startswith("Dogtag review: "):
        process.kill()
        pytest.fail(f"no address printed: {line!r} {process.stderr.read()}")
    return process, line.split(": ", 1)[1].strip()


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=120)  # a bound for a hang on a loaded machine, not a race
    finally:
        process.kill()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_dogtag_review_prints_its_address_and_serves_the_page_and_api_there(tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    (tmp_path / "secret.txt").write_text("the shelter's bank details")
    process, url = start_review(str(folder), "--cache", str(tmp_path / "cache"))
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        status, page = get(url)
        assert status == 200 and b"Dogtag review" in page
        status, body = get(url + "api/photos?status=unsure")
        assert status == 200 and json.loads(body)["total"] == 3
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for path in ("/api/original/0/../../secret.txt", "/api/original/0/..%2F..%2Fsecret.txt",
                     "/api/thumbnail/0/%2e%2e/%2e%2e/secret.txt", "/static/../../../secret.txt"):
            code, body = raw_get(port, path)
            assert code == 404 and b"bank details" not in body, path
    finally:
        assert stop(process) == 0


def test_dogtag_review_says_nothing_of_the_model_runtime_and_the_page_has_its_icon(tmp_path):
    import httpx

    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    photo = draw_dog(tmp_path / "rex.jpg", seed=1).read_bytes()
    process, url = start_review(str(folder), "--cache", str(tmp_path / "cache"))
    try:
        predicted = httpx.post(url + "api/predict", files={"photo": ("rex.jpg", photo, "image/jpeg")}, timeout=60)
        status, icon = get(url + "favicon.ico")
    finally:
        assert stop(process) == 0
    stderr = process.stderr.read()

    assert predicted.status_code == 200 and predicted.json()["model_version"], predicted.text  # the model was opened
    assert "XNNPACK" not in stderr and "INFO:" not in stderr, stderr
    assert status == 200 and icon.startswith(b"\0\0\1\0"), "an icon, not a 404 in the browser's console"


def test_on_the_network_the_address_carries_a_token_that_every_request_needs(tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    process, url = start_review(str(folder), "--host", "0.0.0.0", "--cache", str(tmp_path / "cache"),
                                config=tmp_path / "config")
    try:
        assert "?token=" in url
        local = "http://127.0.0.1:" + url.split(":", 2)[2]
        token = local.split("?token=", 1)[1]
        bare = local.split("?", 1)[0]
        assert get(bare + "api/photos")[0] == 401
        assert get(bare + "api/photos", {"Authorization": f"Bearer {token}"})[0] == 200
        assert get(bare + "api/photos", {"Authorization": f"Bearer {token}", "Host": "evil.example"})[0] == 400
    finally:
        stop(process)


def test_it_cannot_start_on_a_port_in_use_or_with_its_cache_in_the_photos(tmp_path):
    import socket

    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(main, ["review", str(folder), "--no-browser", "--port", str(port), "--model", MODEL,
                                         "--cache", str(tmp_path / "cache")])
    assert busy.exit_code == 3 and f"cannot listen on 127.0.0.1:{port}" in busy.output and "--port" in busy.output
    inside = CliRunner().invoke(main, ["review", str(folder), "--no-browser", "--model", MODEL,
                                       "--cache", str(folder / "thumbs")])
    assert inside.exit_code == 3 and "must not be inside the photo folder" in inside.output
    assert not (folder / "thumbs").exists()


def test_dogtag_help_lists_the_review_command():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0 and "review" in result.output and "correct the tags" in result.output


def test_the_review_page_imports_nothing_from_tensorflow():
    code = ("import sys, dogtag.review.app, dogtag.review.server, dogtag.review.cli, dogtag.benchmarks.review; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or m.startswith(('dogtag.train', 'dogtag.export'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def printed_until(process: subprocess.Popen, last: str) -> list[str]:
    """The lines the command prints, up to the one that starts with `last`."""
    lines = []
    while not (lines and lines[-1].startswith(last)):
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"ended before {last!r}: {lines} {process.stderr.read()}")
        lines.append(line.rstrip("\n"))
    return lines


def qr_matrix(lines: list[str]) -> list[tuple[int, ...]]:
    """The modules (1 dark) of a QR code printed with half blocks: each character is two rows, light on top
    where it is \u2588 or \u2580."""
    top = {"\u2588": (0, 0), "\u2580": (0, 1), "\u2584": (1, 0), " ": (1, 1)}
    rows = []
    for line in lines:
        pairs = [top[char] for char in line]
        rows += [tuple(pair[0] for pair in pairs), tuple(pair[1] for pair in pairs)]
    return rows


def test_on_the_network_the_terminal_shows_the_address_as_a_qr_code_and_the_token_outlives_a_restart(tmp_path):
    import segno

    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    config = tmp_path / "config"
    args = (str(folder), "--host", "0.0.0.0", "--cache", str(tmp_path / "cache"))
    process, url = start_review(*args, config=config)
    try:
        printed = printed_until(process, "The token is kept")
    finally:
        stop(process)
    code = [line for line in printed if line and set(line) <= set("\u2588\u2580\u2584 ")]
    expected = segno.make(url, error="m")
    size = expected.symbol_size(border=2)[0]
    assert qr_matrix(code)[:size] == [tuple(int(m) for m in row) for row in expected.matrix_iter(border=2)]
    kept = config / "dogtag" / "review-token"
    assert kept.read_text().strip() == url.split("?token=")[1] and kept.stat().st_mode & 0o777 == 0o600

    again, same = start_review(*args, config=config)
    stop(again)
    renewed, new = start_review(*args, "--new-token", config=config)
    stop(renewed)

    token = url.split("?token=")[1]
    assert same.split("?token=")[1] == token, "a phone that scanned the code yesterday still gets in"
    assert new.split("?token=")[1] != token and kept.read_text().strip() == new.split("?token=")[1]


def test_the_first_start_says_it_is_tagging_with_progress(tmp_path):
    from tests.review_fixtures import draw_dog

    folder = tmp_path / "new"
    for seed in range(4):
        draw_dog(folder / f"dog{seed}.jpg", seed)
    process, url = start_review(str(folder), "--cache", str(tmp_path / "cache"))
    try:
        printed = printed_until(process, "Tagged ")
    finally:
        stop(process)
    assert any(line.startswith("First tagging") and str(folder) in line for line in printed)
    assert "  tagged 0 of 4 photos (0%)" in printed
    assert printed[-1].startswith("Tagged 4 photos") and printed[-1].endswith("ready to review.")
