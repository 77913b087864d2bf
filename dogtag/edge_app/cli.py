"""`dogtag tag` and `dogtag predict`: thin commands over `tagging.tag_folders` and `Classifier`.

Exit codes (also in `dogtag tag --help` and the README):
  0    every photo has its row, and this run met no new problem (a photo an earlier run could not
       read, unchanged since, is listed but not read again)
  1    the run finished, but it could not read some photos (error rows, listed in the summary), or
       write a sidecar or sorted copy (listed too), or it found no photos
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
from dogtag.edge_app.images import PHOTO_SUFFIXES, PhotoError, load_photo, pillow_pixel_limit
from dogtag.edge_app.options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    CannotRun,
    TagOptions,
    open_classifier,
    shared_options,
)
from dogtag.edge_app.results import RESULTS_STEM
from dogtag.edge_app.tagging import Summary, TaggingError, tag_folders

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    every photo has its row, and this run met no new problem\n"
    "  1    finished, but this run could not read some photos, or write a sidecar or copy (see the summary),\n"
    "       or found no photos\n"
    "  2    bad command line\n"
    "  3    stopped: no usable model, missing folder, results file or --sort-into/--xmp place not writable\n"
    "  130  interrupted; run the same command again to resume"
)
MAX_ERRORS_SHOWN = 20


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("folders", nargs=-1, required=True, type=click.Path())
@shared_options("model", "out", "fmt", "top_k", "min_confidence", "min_dog", "xmp", "xmp_name", "sort_into",
                "recursive", "restart", "retry_errors", "batch_size", "workers", "threads", "max_pixels", "names")
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
    # An error an earlier run reported, on a photo unchanged since, is listed but fails no new run.
    sys.exit(EXIT_SOME_FAILED if summary.failed or summary.not_written or not summary.photos else EXIT_OK)


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
    photos = ("the 1 photo tagged by an earlier run keeps its row, which lists" if summary.resumed == 1 else
              f"the {summary.resumed} photos tagged by an earlier run keep their rows, which list")
    return (f"Note: {photos} up to {longest} "
            f"breed{'s' * (longest != 1)}, {how} than --top-k {top_k}; it applies to newly tagged photos only. "
            f"Run again with --restart to list {top_k} for every photo.")


@click.command(epilog="\b\nExit codes: 0 all photos read; 1 some could not be read; 3 no usable model.")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@shared_options("model", "top_k", "threads", "max_pixels", "names")
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
    if prediction.siblings:
        lines.append(f"  {sibling_note(prediction.siblings)}")
    return lines


def sibling_note(siblings: tuple[str, ...]) -> str:
    """What predict says when its best two breeds are siblings told apart mostly by pedigree."""
    return (f"{' and '.join(siblings)} are look-alike breeds told apart mostly by pedigree: "
            "the photo alone may not decide between them.")


def format_summary(summary: Summary) -> str:
    """The end-of-run report: what was tagged, counts per breed, unsure, not a dog, errors, what changed
    since the last run, sidecars and copies, problems."""
    if summary.photos == 0 and not summary.unretried:
        return "\n".join([no_photos_message(summary.folders)]
                         + [f"Results: {click.format_filename(str(path))}" for path in summary.results])
    rate = summary.tagged / summary.seconds if summary.seconds > 0 else 0.0
    first = f"Tagged {_count(summary.tagged, 'photo')} in {_duration(summary.seconds)} ({rate:.1f} photos/s)"
    if summary.failed:
        first += f"; {summary.failed} could not be read"
    if summary.resumed:
        first += f"; {summary.resumed} {'was' if summary.resumed == 1 else 'were'} already done"
    lines = [first + "."]
    counts = [(breed, n) for breed, n in sorted(summary.breeds.items(), key=lambda item: (-item[1], item[0]))]
    counts += [("unsure", summary.statuses["unsure"]), ("not a dog", summary.statuses["not_a_dog"]),
               ("errors", summary.statuses["error"]), ("total", summary.photos)]
    width = max(len(name) for name, _ in counts)
    lines += [f"  {name:<{width}}  {n:>6}" for name, n in counts]
    if summary.photos:
        lines.append(f"Reviewed by a person: {summary.reviewed} of {summary.photos} "
                     "(their reviewed_breed is kept; the counts above are the model's).")
    lines += rerun_lines(summary) + output_lines(summary)
    if summary.not_written:
        lines.append("Not written (these photos keep their rows; the next run tries again):")
        lines += _listed(summary.not_written, "sidecars or copies")
    if summary.errors:
        lines.append("Could not read:")
        lines += _listed(summary.errors, "rows with status 'error'")
    if summary.unretried:
        lines.append(f"{_count(len(summary.unretried), 'photo')} could not be read by an earlier run and "
                     f"{'has' if len(summary.unretried) == 1 else 'have'} not changed since: not tried again "
                     "(--retry-errors tries them):")
        lines += _listed(summary.unretried, "rows with status 'error'")
    lines += [f"Results: {click.format_filename(str(path))}" for path in summary.results]
    return "\n".join(lines)


def rerun_lines(summary: Summary) -> list[str]:
    """What this run changed in rows an earlier run wrote: another model, other thresholds, new answers."""
    lines = []
    if summary.other_models:
        count = sum(summary.other_models.values())
        lines.append(f"{_count(count, 'photo')} {'was' if count == 1 else 'were'} tagged with another model "
                     f"({', '.join(sorted(summary.other_models))}); tagged again with {summary.model_version}.")
    if summary.restatused:
        count = sum(summary.restatused.values())
        lines.append(f"Under this run's thresholds {_count(count, 'photo')} changed: " + _changes(summary.restatused)
                     + " (no need to read them again).")
    if summary.changes:
        lines.append("Changed since the last run: " + _changes(summary.changes) + ".")
    return lines


def _changes(counts) -> str:
    def name(change) -> str:
        return " -> ".join(change) if isinstance(change, tuple) else change

    return ", ".join(f"{n} {name(change)}" for change, n in sorted(counts.items(), key=lambda item: -item[1]))


def output_lines(summary: Summary) -> list[str]:
    """What the run wrote besides the results: sidecars and sorted copies."""
    lines = []
    if summary.xmp:
        lines.append(f"XMP sidecars (rex.xmp or rex.jpg.xmp for rex.jpg): {summary.sidecars_written} written, "
                     f"{summary.sidecars_unchanged} already had the breed.")
    elif summary.sidecars_written:
        lines.append(f"XMP sidecars: {summary.sidecars_written} that carried an earlier tag now carry the row's.")
    if summary.sort_into is not None:
        made, moved = summary.copies_made, summary.copies_moved
        lines.append(f"Copied {_count(made, 'photo')} into {click.format_filename(str(summary.sort_into))} "
                     f"(a folder per breed, _unsure, _not_a_dog); {summary.copies_found} "
                     f"{'was' if summary.copies_found == 1 else 'were'} already there"
                     + (f"; {moved} moved to the folder of their new tag" if moved else "") + ".")
    return lines


def no_photos_message(folders: list[str]) -> str:
    """"No photos found in ...", with what Dogtag reads and a few of the files it found instead."""
    others = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            others += [os.path.join(root, name) for name in sorted(files) if not name.startswith(".")
                       and not name.startswith(RESULTS_STEM)]
            if len(others) > 3:
                break
    where = ", ".join(click.format_filename(folder) for folder in folders)
    found = (f"; it holds other files, e.g. {', '.join(click.format_filename(os.path.basename(p)) for p in others[:3])}"
             if others else "; it is empty")
    return (f"No photos found in {where}{found}. Dogtag reads {', '.join(sorted(PHOTO_SUFFIXES))} files "
            "(camera RAW files: export them as JPEG first).")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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
