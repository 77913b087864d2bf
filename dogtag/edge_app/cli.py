"""`dogtag tag` and `dogtag predict`: thin commands over `tagging.tag_folders` and `Classifier`.

Exit codes (also in `dogtag tag --help`):
  0    every photo was processed
  1    the run finished, but some photos could not be read (error rows, listed in the summary), or a
       sidecar or sorted copy could not be written (listed too)
  2    bad command line
  3    stopped: no usable model, a missing folder, a results file that cannot be read
       or written, or a --sort-into / --xmp destination that cannot be written
  130  interrupted (Ctrl-C); run the same command again to resume
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import click
from click.core import ParameterSource

from dogtag.edge_app.classifier import Classifier, Prediction
from dogtag.edge_app.images import PhotoError, load_photo, pillow_pixel_limit
from dogtag.edge_app.options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    CannotRun,
    TagOptions,
    open_classifier,
    shared_options,
)
from dogtag.edge_app.tagging import Summary, TaggingError, tag_folders

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    every photo was processed\n"
    "  1    finished, but some photos could not be read, or a sidecar or copy not written (see the summary)\n"
    "  2    bad command line\n"
    "  3    stopped: no usable model, missing folder, results file or --sort-into/--xmp place not writable\n"
    "  130  interrupted; run the same command again to resume"
)
MAX_ERRORS_SHOWN = 20


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@shared_options("model", "out", "fmt", "top_k", "min_confidence", "min_dog", "xmp", "sort_into", "recursive",
                "restart", "batch_size", "workers", "threads", "max_pixels")
def tag(folders, **params) -> None:
    """Tag every photo in FOLDERS with the breed of the dog.

    Writes one row per photo (path, status dog/unsure/not_a_dog/error, breed, confidence, top-k,
    dog probability, error). Run the same command again after an interruption: finished photos are
    skipped. Photos are never modified. Hidden files and folders (names starting with '.') are skipped.
    """
    _check_folders(folders)
    options = TagOptions.from_params(params)
    classifier = open_classifier(options)
    bar = ProgressBar()
    try:
        with pillow_pixel_limit(options.max_pixels):
            summary = tag_folders(folders, classifier, options, progress=bar.update)
    except TaggingError as error:
        bar.close()
        raise CannotRun(str(error)) from error
    except KeyboardInterrupt:
        bar.close()
        click.echo("Interrupted. Finished photos are saved; run the same command again to resume.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    bar.close()
    click.echo(format_summary(summary))
    given = click.get_current_context().get_parameter_source("top_k") == ParameterSource.COMMANDLINE
    note = top_k_note(summary, classifier.top_k, given)
    if note:
        click.echo(note)
    sys.exit(EXIT_SOME_FAILED if summary.failed or summary.not_written else EXIT_OK)


def _check_folders(folders: tuple[str, ...]) -> None:
    """Stop before loading the model for a folder that is not there, or a photo given where a folder goes."""
    for folder in folders:
        if os.path.isfile(folder):
            parent = os.path.dirname(folder) or "."
            raise click.UsageError(
                f"{click.format_filename(folder)} is a file, not a folder: `dogtag tag` tags the photos in "
                f"folders. To see this photo's breeds: dogtag predict {shlex.quote(folder)} ; to tag every photo "
                f"in its folder: dogtag tag {shlex.quote(parent)}"
            )
        if not os.path.isdir(folder):
            raise CannotRun(f"{click.format_filename(folder)}: no such folder (check the name; `ls` lists the "
                            "folders here)")


def top_k_note(summary: Summary, top_k: int, given: bool) -> str:
    """A note when rows kept from an earlier run list another number of breeds than --top-k asks for.

    Rows list up to top-k breeds and leave out those under 0.1%, so a row with fewer breeds may
    be complete: fewer than asked is only reported when --top-k was given on this command line.
    """
    longest = summary.longest_resumed_top_k
    if not summary.resumed or longest == top_k or (longest < top_k and not given):
        return ""
    how = "more" if longest > top_k else "fewer"
    return (f"Note: the {summary.resumed} photos tagged by an earlier run keep their rows, which list up to {longest} "
            f"breed{'s' * (longest != 1)}, {how} than --top-k {top_k}; it applies to newly tagged photos only. "
            f"Run again with --restart to list {top_k} for every photo.")


@click.command(epilog="\b\nExit codes: 0 all photos read; 1 some could not be read; 3 no usable model.")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@shared_options("model", "top_k", "threads", "max_pixels")
def predict(photos, **params) -> None:
    """Print the most probable breeds of a few PHOTOS."""
    options = TagOptions.from_params(params)
    classifier = open_classifier(options)
    size, resize = classifier.info.input_size, classifier.info.resize
    max_pixels = options.max_pixels
    failed = 0
    with pillow_pixel_limit(max_pixels):
        for photo in photos:
            try:
                pixels = load_photo(photo, size, resize, max_pixels=max_pixels)
            except PhotoError as error:
                hint = f"; to tag every photo in it: dogtag tag {shlex.quote(photo)}" if os.path.isdir(photo) else ""
                click.echo(f"{click.format_filename(photo)}: {error}{hint}", err=True)
                failed += 1
                continue
            prediction = classifier.predict_pixels(pixels[None])[0]
            click.echo("\n".join(describe_prediction(click.format_filename(photo), prediction, classifier)))
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def describe_prediction(name: str, prediction: Prediction, classifier: Classifier) -> list[str]:
    """What `dogtag predict` prints for one photo: its status and why, then its breeds (none when not a dog:
    the breed scores of a cat or a wall mean nothing, and the results file lists none for it either)."""
    dog = prediction.dog_probability
    if prediction.status == "not_a_dog":
        return [f"{name}: not a dog (dog probability {dog:.0%}, below the {classifier.min_dog:.0%} this model "
                "needs to call a photo a dog)"]
    dog_text = "" if dog is None else f", dog probability {dog:.0%}"
    if prediction.status == "unsure":
        lines = [f"{name}: unsure which breed{dog_text}; the best breed's {prediction.confidence:.1%} is below "
                 f"the {classifier.min_confidence:.0%} this model needs to name one"]
    else:
        lines = [f"{name}: dog{dog_text}"]
    width = max(len(breed) for breed, _ in prediction.top_k)
    lines += [f"  {rank}. {breed:<{width}}  {probability:6.1%}"
              for rank, (breed, probability) in enumerate(prediction.top_k, 1)]
    return lines


def format_summary(summary: Summary) -> str:
    """The end-of-run report: counts per breed, unsure, not a dog, errors, sidecars and copies, time."""
    rate = summary.tagged / summary.seconds if summary.seconds > 0 else 0.0
    lines = [
        f"Tagged {summary.tagged} photo{'' if summary.tagged == 1 else 's'} in {_duration(summary.seconds)} ({rate:.1f} photos/s)"
        + (f"; {summary.resumed} were already done" if summary.resumed else "") + "."
    ]
    counts = [(breed, n) for breed, n in sorted(summary.breeds.items(), key=lambda item: (-item[1], item[0]))]
    counts += [("unsure", summary.statuses["unsure"]), ("not a dog", summary.statuses["not_a_dog"]),
               ("errors", summary.statuses["error"]), ("total", summary.photos)]
    width = max(len(name) for name, _ in counts)
    lines += [f"  {name:<{width}}  {n:>6}" for name, n in counts]
    if summary.xmp:
        lines.append(f"XMP sidecars beside the photos (rex.xmp for rex.jpg): {summary.sidecars_written} written, "
                     f"{summary.sidecars_unchanged} already had the breed.")
    if summary.sort_into is not None:
        made = summary.copies_made
        lines.append(f"Copied {made} photo{'' if made == 1 else 's'} into {click.format_filename(str(summary.sort_into))} "
                     f"(a folder per breed, _unsure, _not_a_dog); {summary.copies_found} were already there.")
    if summary.not_written:
        lines.append("Not written (these photos keep their rows; the next run tries again):")
        lines += _listed(summary.not_written, "sidecars or copies")
    if summary.errors:
        lines.append("Could not read:")
        lines += _listed(summary.errors, "rows with status 'error'")
    lines += [f"Results: {click.format_filename(str(path))}" for path in summary.results]
    return "\n".join(lines)


def _listed(problems: list[tuple[str, str]], rest: str) -> list[str]:
    lines = [f"  {click.format_filename(path)}: {message}" for path, message in problems[:MAX_ERRORS_SHOWN]]
    if len(problems) > MAX_ERRORS_SHOWN:
        lines.append(f"  ... and {len(problems) - MAX_ERRORS_SHOWN} more ({rest})")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
    """`[#####-----] 120/500  24%  15.3 photos/s  ETA 0:00:25` on stderr; plain lines when not a terminal."""

    def __init__(self, stream=None, width: int = 30, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.width = width
        self.interval = interval if interval is not None else (0.2 if self.terminal else 30.0)
        self.started = time.monotonic()
        self.last_drawn = 0.0
        self.drawn = False

    def update(self, done: int, total: int) -> None:
        """Record progress; redrawn at most every `interval` seconds, and at the end."""
        now = time.monotonic()
        if done == 0:
            self.started = now  # the rate counts photos, not the walk before them
        if done < total and now - self.last_drawn < self.interval:
            return
        self.last_drawn = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = _duration((total - done) / rate) if rate > 0 else "?"
        filled = self.width * done // total if total else self.width
        line = (f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} "
                f"{100 * done // total if total else 100:3d}%  {rate:.1f} photos/s  ETA {eta}")
        self.stream.write(f"\r{line}" if self.terminal else f"{line}\n")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn and self.terminal:
            self.stream.write("\n")
            self.stream.flush()
