"""What `dogtag tag`, `watch` and `review` (and `learn`) share: their options, declared once, and how they start.

Each shared option is declared once, in `OPTIONS` (flag, type, default, help); a command lists the
ones it takes with `@shared_options("model", "top_k", ...)` and turns what click parsed into one
`TagOptions` with `TagOptions.from_params`. That object travels through `tag_folders` and its
planning, `Watch` and the review page's tagging, instead of a dozen loose parameters: a new option
is one field here, one entry in `OPTIONS`, and its use.

Also here, for every command: the "cannot run" error and exit codes, and opening the model quietly.
A command whose optional package is missing is handled in one place, `dogtag.cli.missing_package`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import click

from dogtag.edge_app.breeds import DEFAULT_NAMING, NAMINGS
from dogtag.edge_app.classifier import DEFAULT_TOP_K, Classifier
from dogtag.edge_app.images import DEFAULT_MAX_PIXELS
from dogtag.edge_app.model_file import ModelFileError
from dogtag.edge_app.results import FORMATS
from dogtag.edge_app.xmp import PHOTO_XMP, SIDECAR_NAMES

# Photos per model call. 8 measured: same speed as 16 (386 vs 359 photos/s on 2 cores) and 115 MB peak memory
# instead of 156 with the bundled model, whose float depthwise layers hold float activations per photo.
DEFAULT_BATCH_SIZE = 8
EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 3, 130


class CannotRun(click.ClickException):
    """A problem that stops a command before it does anything (exit code 3)."""

    exit_code = EXIT_CANNOT_RUN


@dataclass(frozen=True)
class TagOptions:
    """How photos are tagged and what a run writes: the settings `tag`, `watch` and `review` share.

    The first five open the model (`classifier`); the rest say where results go and what else is
    written. Defaults are those of `dogtag tag`.
    """

    model: str | None = None  # accurate (the default), fast, a .tflite / .onnx file or a learned model folder
    top_k: int = DEFAULT_TOP_K
    min_confidence: float | None = None  # None: the model's own threshold
    min_dog: float | None = None
    threads: int | None = None  # for the model; None: all cores
    out: str | os.PathLike | None = None  # one results file for every folder; None: one inside each
    fmt: str | None = None  # csv or jsonl; None: from the --out name, else the folder's file, else csv
    recursive: bool = True
    xmp: bool = False
    xmp_name: str = PHOTO_XMP  # how a new sidecar is named: photo.xmp or photo.jpg.xmp (an existing one is used)
    sort_into: str | os.PathLike | None = None
    restart: bool = False
    retry_errors: bool = False  # read again the photos an earlier run could not read, changed or not
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None  # threads decoding photos; None: up to 4
    names: str = DEFAULT_NAMING  # display (as shelters write breeds, look-alikes merged) or stanford

    @classmethod
    def from_params(cls, params: dict) -> TagOptions:
        """The options among a command's parsed parameters (click's names); the others are left out."""
        names = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in params.items() if name in names})

    def classifier(self) -> Classifier:
        """The model these options ask for, with their thresholds and top-k; ModelFileError when unusable."""
        return Classifier(self.model, top_k=self.top_k, min_confidence=self.min_confidence, min_dog=self.min_dog,
                          num_threads=self.threads, names=self.names)


# Every shared option, declared once: the parameter name (a TagOptions field where it is one) -> its decorator.
OPTIONS: dict[str, Callable] = {
    "model": click.option(
        "--model", default="accurate", show_default=True, metavar="accurate|fast|PATH",
        help="A bundled model, `accurate` or `fast` (faster, for a Raspberry Pi), "
             "or a .tflite / .onnx file made by `dogtag export`, or a folder made by `dogtag learn`."),
    "out": click.option(
        "--out", type=click.Path(dir_okay=False), default=None,
        help="Results file (default: dogtag-results.csv inside each folder)."),
    "fmt": click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=None,
        help="csv or jsonl (default: from the --out name, else the folder's results file, else csv)."),
    "top_k": click.option(
        "--top-k", type=click.IntRange(1), default=DEFAULT_TOP_K, show_default=True,
        help="How many breeds to list per photo, at most (those under 0.1% are left out)."),
    "min_confidence": click.option(
        "--min-confidence", type=click.FloatRange(0, 1), default=None,
        help="Below this breed probability a photo is `unsure` (default: the model's)."),
    "min_dog": click.option(
        "--min-dog", type=click.FloatRange(0, 1), default=None,
        help="Below this dog probability a photo is `not_a_dog` (default: the model's)."),
    "xmp": click.option(
        "--xmp", is_flag=True,
        help="Write the breed into the XMP sidecar of each photo, the one it has (photo.xmp or photo.jpg.xmp) or "
             "a new one, keeping its other tags: the reviewed breed, else the model's for a `dog` photo."),
    "xmp_name": click.option(
        "--xmp-name", type=click.Choice(SIDECAR_NAMES), default=PHOTO_XMP, show_default=True,
        help="How --xmp names a new sidecar: photo.xmp (Lightroom) or photo.jpg.xmp (digiKam, darktable). "
             "A sidecar a photo already has is used, whichever its name."),
    "sort_into": click.option(
        "--sort-into", type=click.Path(file_okay=False), default=None,
        help="Copy photos into per-breed folders here, and _unsure/, _not_a_dog/ (never moves)."),
    "recursive": click.option(
        "--recursive/--no-recursive", default=True, show_default=True, help="Look into sub-folders."),
    "restart": click.option(
        "--restart", is_flag=True,
        help="Ignore earlier results and tag everything again (e.g. to list more breeds after raising --top-k)."),
    "retry_errors": click.option(
        "--retry-errors", is_flag=True,
        help="Read again the photos an earlier run could not read (by default only those that changed since)."),
    "batch_size": click.option(
        "--batch-size", type=click.IntRange(1), default=DEFAULT_BATCH_SIZE, show_default=True,
        help="Photos per model call."),
    "workers": click.option(
        "--workers", type=click.IntRange(1), default=None, help="Threads decoding photos (default: up to 4)."),
    "threads": click.option(
        "--threads", type=click.IntRange(1), default=None, help="Threads for the model (default: all cores)."),
    "names": click.option(
        "--names", type=click.Choice(NAMINGS), default=DEFAULT_NAMING, show_default=True,
        help="display: breed names as kennel clubs and adoption listings write them (Cairn Terrier), look-alike "
             "labels merged (Eskimo dog into Siberian Husky); stanford: the model's own 120 Stanford Dogs labels "
             "(cairn), unmerged, as Dogtag wrote before."),
    "max_pixels": click.option(
        "--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
        help="Refuse photos larger than this (decompression bombs)."),
}


def shared_options(*names: str) -> Callable:
    """A decorator adding these shared options to a command, in this order in its --help."""
    unknown = [name for name in names if name not in OPTIONS]
    if unknown:
        raise ValueError(f"no shared option {unknown}; the shared options are {sorted(OPTIONS)}")

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):  # click lists the decorator applied last first
            command = OPTIONS[name](command)
        return command

    return decorate


def open_classifier(options: TagOptions) -> Classifier:
    """The model for a command, opened without the runtime's start-up chatter; CannotRun when unusable."""
    try:
        with runtime_info_hidden():
            return options.classifier()
    except ModelFileError as error:
        raise CannotRun(str(error)) from error


_STDERR_SWAP = threading.Lock()  # file descriptor 2 is the process's: one swap at a time (review's threads)


@contextlib.contextmanager
def runtime_info_hidden() -> Iterator[None]:
    """Drop the "INFO: ..." lines the model runtime's C++ code writes to stderr (LiteRT announces its
    XNNPACK delegate on every start, and has no switch for it); anything else it writes still shows."""
    with _STDERR_SWAP:
        yield from _runtime_info_hidden()


def _runtime_info_hidden() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not line.startswith("INFO: "))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
