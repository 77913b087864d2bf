"""The review API keeps the contract it publishes at /openapi.json: Schemathesis sends it generated
requests, valid and invalid, and every answer must be one the schema declares, in the declared shape,
with no server error. A shelter's own scripts are written against that schema."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
pytest.importorskip("schemathesis", reason="the contract test needs Schemathesis: pip install -e '.[test]'")

from tests.review_fixtures import make_shelter_folder  # noqa: E402
from tests.test_review_cli import start_review, stop  # noqa: E402

# A photo upload is valid by its schema (image parts of a multipart body) yet may hold bytes that are not a
# photo: Dogtag answers those with 422 and says why, which Schemathesis must accept for these two routes.
CONFIG = "".join(f"""
[[operations]]
include-name = "POST {path}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "413", "422"]
""" for path in ("/api/photos", "/api/predict"))


def test_every_answer_of_the_review_api_is_one_its_openapi_schema_declares(tmp_path):
    make_shelter_folder(tmp_path / "shelter")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    process, url = start_review(str(tmp_path / "shelter"), "--cache", str(tmp_path / "cache"),
                                "--intake", str(tmp_path / "intake"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
             f"{url}openapi.json", "--checks", "all", "--max-examples", "40", "--generation-deterministic",
             "--no-color"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:
        stop(process)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    assert selected and selected[1] == selected[2] and f"Tested: {selected[1]}" in result.stdout, "every route was tried"
