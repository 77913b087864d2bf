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
from tests.review_fixtures import MODEL, make_shelter_folder, raw_get  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def start_review(*args: str) -> tuple[subprocess.Popen, str]:
    """`dogtag review ARGS --no-browser --port 0` in a new process; returns it and the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from dogtag.cli import main; main()", "review", *args, "--no-browser", "--port", "0",
         "--model", MODEL],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    line = process.stdout.readline()
    if not line.startswith("Dogtag review: "):
        process.kill()
        pytest.fail(f"no address printed: {line!r} {process.stderr.read()}")
    return process, line.split(": ", 1)[1].strip()


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    finally:
        process.kill()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=20) as response:
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


def test_on_the_network_the_address_carries_a_token_that_every_request_needs(tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    process, url = start_review(str(folder), "--host", "0.0.0.0", "--cache", str(tmp_path / "cache"))
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
