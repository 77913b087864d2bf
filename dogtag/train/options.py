"""Options shared by `dogtag train`, `dogtag export` and `dogtag bench`, declared once.

All three read Stanford Dogs (to train, to calibrate and verify, to measure), so `--data` and its
default live here, not in any one command's module. Nothing here imports TensorFlow: `--help`
stays quick.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

# The team's copy beside a checkout: the default on the project's machines, never shown as one to users.
SHARED_DATA = Path("../shared/datasets/stanford-dogs")


def default_data() -> Path | None:
    """--data when it is not given: $DOGTAG_DATA, else the shared copy when there is one, else None
    (whatever reads the data then says how to get it)."""
    if os.environ.get("DOGTAG_DATA"):
        return Path(os.environ["DOGTAG_DATA"])
    return SHARED_DATA if SHARED_DATA.is_dir() else None


data_option = click.option(
    "--data", type=click.Path(path_type=Path), default=default_data,
    help="Stanford Dogs in the official layout (Images/, Annotation/, *_list.mat) or one folder per breed "
         "[default: $DOGTAG_DATA].",
)
