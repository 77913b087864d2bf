"""The results file: one row per photo, CSV or JSON Lines, written so that no crash can damage it.

This module is the file's one owner: which results file a folder has (`find_results`), its columns
(`Row`, `FIELDS`), reading it with its damaged lines (`read_results`, `read_results_file`), appending
(`ResultsWriter`), and every rewrite (`write_results`, `rewrite_rows`, `add_rows`). Adding a column
means editing this module (and `reviews.py` when a person sets it).

Crash safety, by design:
- Rows are appended with one `write` call each (a killed process leaves whole rows; the kernel
  finishes a write it has started) and the file is fsynced after every batch.
- Every row is exactly one line (paths and messages are escaped into one line), so a power cut
  can at worst leave an incomplete or garbled last line: `read_results` drops any line that does
  not parse, and the caller rewrites the file without it before appending again.
- Rewrites go to a temporary file that replaces the results file in one rename (`write_results`),
  so a crash during a rewrite leaves the old file whole.

Columns: path (relative to the results file's folder: the tagged folder, or the --out file's), status
(dog, unsure, not_a_dog, error), breed, confidence (the best breed's probability) and top_k ("Beagle=0.9120;
Basset=0.0510", alternatives below 0.1% left out; a list in JSON Lines), all three empty for not_a_dog and
error rows, dog_probability, error, what
resuming compares: size, mtime (the photo's modification time: local time to the second,
"2025-03-02 14:03:11", which Excel and LibreOffice read as a date; a string in JSON Lines too) and model_version; and what a person
said on the review page (`dogtag review`): reviewed_breed, reviewed_by, reviewed_at. Those three are
copied from the reviews file beside the results file (see `reviews.py`), which is their source of truth.
Then breed_id, Stanford's synset id of the breed (n02110185; empty for a label without one, and in rows
written before it existed, whose breeds carry Stanford's names: `breeds.find` reads both), and siblings,
the best two breeds when they are told apart mostly by pedigree ("Lhasa Apso; Shih Tzu"; a list in JSON
Lines).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from dogtag.edge_app.locks import held_lock

RESULTS_STEM = "dogtag-results"
FORMATS = ("csv", "jsonl")
FIELDS = (
    "path", "status", "breed", "confidence", "top_k", "dog_probability", "error", "size", "mtime", "model_version",
    "reviewed_breed", "reviewed_by", "reviewed_at", "breed_id", "siblings",
)
# The columns before reviews existed: such a CSV file is still read, and rewritten with every column.
FIELDS_BEFORE_REVIEWS = FIELDS[:10]
# ... and before breed ids (Stanford's names, no breed_id column): read, and rewritten the same way.
FIELDS_BEFORE_BREED_IDS = FIELDS[:13]
OLDER_HEADERS = (",".join(FIELDS_BEFORE_REVIEWS), ",".join(FIELDS_BEFORE_BREED_IDS))
# A byte-order mark lets Excel open the CSV as UTF-8 (file names with accents stay readable).
_BOM = "\ufeff"


class ResultsFileError(Exception):
    """A results file that cannot be used (not ours, or not writable)."""


@dataclass(frozen=True)
class Row:
    """One photo's line in the results file."""

    path: str
    status: str
    breed: str = ""
    confidence: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    dog_probability: float | None = None
    error: str = ""
    size: int | None = None
    mtime: str = ""
    model_version: str = ""
    reviewed_breed: str = ""  # what a person said the photo shows; "" when nobody reviewed it
    reviewed_by: str = ""
    reviewed_at: str = ""
    breed_id: str = ""  # the breed's synset id; "" for not_a_dog and error rows, and labels without one
    siblings: tuple[str, ...] = ()  # the best two breeds when they are siblings (see breeds.are_siblings)
    line: str = field(default="", compare=False, repr=False)  # the text read back, kept verbatim on rewrite


def prediction_row(prediction, **columns) -> Row:
    """The row for a prediction (a `classifier.Prediction`), with the other `columns` (path, size...).

    A `not_a_dog` row carries no breed, confidence or top breeds: the breed scores of a cat or a wall
    mean nothing, and a spreadsheet sorted by breed or confidence must not put it among the dogs. Its
    dog probability says why it is not a dog.
    """
    dog = prediction.status != "not_a_dog"
    return Row(
        status=prediction.status,
        breed=prediction.breed if dog else "",
        confidence=prediction.confidence if dog else None,
        top_k=prediction.top_k if dog else (),
        dog_probability=prediction.dog_probability,
        breed_id=prediction.breed_id if dog else "",
        siblings=prediction.siblings if dog else (),
        **columns,
    )


@dataclass(frozen=True)
class ResultsFile:
    """One results file and the folders whose photos it lists."""

    path: Path
    fmt: str
    base: str  # row paths are relative to this folder
    folders: tuple[str, ...]


@dataclass
class ResultsContent:
    """What a results file holds, as read: its rows, whether every line was a whole row, and which were not."""

    rows: list[Row]
    whole: bool
    damaged: list[tuple[int, str]]  # (line number, the line's start) of each non-empty line that is no row


def find_results(
    folders: list[str], out: str | os.PathLike | None = None, fmt: str | None = None
) -> list[ResultsFile]:
    """The results files of these folders, as `dogtag tag`, `watch` and `review` use them.

    With `out`: that one file for every folder, its row paths relative to the file's own folder
    (`../photos/rex.jpg`), so that it is readable on its own, wherever it is. A file written before
    (paths relative to the folders' common parent) keeps its paths. Without: each folder's own
    `dogtag-results.<fmt>`; with no format asked, the .jsonl a folder already has (and no .csv), else
    the .csv, so a rerun finds the file an earlier run wrote.
    """
    if out is not None:
        fmt = format_for(out, fmt)
        base = os.path.dirname(os.path.abspath(out))
        earlier = folders[0] if len(folders) == 1 else os.path.commonpath([os.path.abspath(f) for f in folders])
        if _paths_relative_to(earlier, out, fmt) and not _paths_relative_to(base, out, fmt):
            base = earlier
        return [ResultsFile(Path(out), fmt, base, tuple(folders))]
    found = []
    for folder in folders:
        if fmt is None:
            csv_file, jsonl_file = default_results_path(folder, "csv"), default_results_path(folder, "jsonl")
            path = jsonl_file if jsonl_file.exists() and not csv_file.exists() else csv_file
        else:
            path = default_results_path(folder, format_for("", fmt))
        found.append(ResultsFile(path, format_for(path), folder, (folder,)))
    return found


def _paths_relative_to(folder: str, results: str | os.PathLike, fmt: str) -> bool:
    """Whether the photos of an existing results file's first rows are found from `folder`."""
    try:
        rows = read_results_file(results, fmt).rows[:20]
    except ResultsFileError:
        return False
    return any(os.path.exists(os.path.join(folder, row.path)) for row in rows if row.status != "error")


def default_results_path(folder: str | os.PathLike, fmt: str = "csv") -> Path:
    """Where `dogtag tag FOLDER` writes its results unless told otherwise: inside the folder."""
    return Path(folder) / f"{RESULTS_STEM}.{fmt}"


def format_for(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format asked for, else the one the file name suggests (.jsonl / .json), else CSV."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        return fmt
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


def format_mtime(nanoseconds: int) -> str:
    """A modification time as a date that Excel and LibreOffice read: local time to the second,
    "2025-03-02 14:03:11" (they read no UTC offset and no fraction of a second)."""
    return datetime.fromtimestamp(nanoseconds // 1_000_000_000).strftime("%Y-%m-%d %H:%M:%S")


_LOCAL_MTIME = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)")
# Older results files: local ISO 8601 to the nanosecond with the UTC offset, or seconds.nanoseconds before that.
_ISO_MTIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d(?::\d\d)?)")
_OLD_MTIME = re.compile(r"(-?\d+)\.(\d{9})")
# A file's local time read on a machine in another time zone is off by whole quarter hours (at most 26 h).
_TIME_ZONE_STEP, _MOST_TIME_ZONE_APART = 900, 26 * 3600


def parse_mtime(text: str) -> int | None:
    """The nanosecond timestamp an mtime column holds (None when it holds none); a local time is read
    in this machine's time zone."""
    if match := _LOCAL_MTIME.fullmatch(text):
        return int(datetime.fromisoformat(f"{match[1]} {match[2]}").timestamp()) * 1_000_000_000
    if match := _ISO_MTIME.fullmatch(text):
        whole, fraction, offset = match.groups()
        moment = datetime.fromisoformat(whole + ("+00:00" if offset == "Z" else offset))
        return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))
    if match := _OLD_MTIME.fullmatch(text):
        return int(match[1]) * 1_000_000_000 + int(match[2])
    return None


def same_mtime(text: str, nanoseconds: int | None) -> bool:
    """Whether a row's mtime column is this modification time, as exactly as it was written: to the
    second for a local time (also when written in another time zone: a whole number of quarter hours
    apart), to the nanosecond for the older forms that carry their offset."""
    written = parse_mtime(text)
    if written is None or nanoseconds is None:
        return written == nanoseconds
    if not _LOCAL_MTIME.fullmatch(text):
        return written == nanoseconds
    apart = nanoseconds // 1_000_000_000 - written // 1_000_000_000
    return apart % _TIME_ZONE_STEP == 0 and abs(apart) <= _MOST_TIME_ZONE_APART


def one_line(text: str) -> str:
    """Text fit for a single results line (messages can quote file content or errors with newlines)."""
    return " ".join(str(text).split()) if any(c in str(text) for c in "\r\n\t\v\f") else str(text)


def header(fmt: str) -> str:
    """The first line of a new results file ('' for JSON Lines, which has no header)."""
    return _BOM + ",".join(FIELDS) + "\n" if fmt == "csv" else ""


def format_row(row: Row, fmt: str) -> str:
    """One row as one line of text, newline included."""
    if fmt == "jsonl":
        document = {
            "path": row.path,
            "status": row.status,
            "breed": row.breed or None,
            "confidence": _round(row.confidence),
            "top_k": [{"breed": breed, "probability": _round(p)} for breed, p in row.top_k],
            "dog_probability": _round(row.dog_probability),
            "error": one_line(row.error) or None,
            "size": row.size,
            "mtime": row.mtime or None,
            "model_version": row.model_version,
            "reviewed_breed": row.reviewed_breed or None,
            "reviewed_by": row.reviewed_by or None,
            "reviewed_at": row.reviewed_at or None,
            "breed_id": row.breed_id or None,
            "siblings": list(row.siblings),
        }
        return json.dumps(document, ensure_ascii=False) + "\n"
    values = [
        row.path,
        row.status,
        one_line(row.breed),
        _number(row.confidence),
        "; ".join(f"{one_line(breed)}={p:.4f}" for breed, p in row.top_k),
        _number(row.dog_probability),
        one_line(row.error),
        "" if row.size is None else str(row.size),
        row.mtime,
        one_line(row.model_version),
        one_line(row.reviewed_breed),
        one_line(row.reviewed_by),
        row.reviewed_at,
        row.breed_id,
        "; ".join(one_line(name) for name in row.siblings),
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def parse_row(line: str, fmt: str) -> Row | None:
    """A row from one line of a results file; None when the line is not a whole, valid row."""
    try:
        if fmt == "jsonl":
            document = json.loads(line)
            values = {name: document[name] for name in FIELDS_BEFORE_REVIEWS}
            values.update({name: document.get(name) for name in FIELDS[len(FIELDS_BEFORE_REVIEWS) :]})
            top_k = tuple((item["breed"], float(item["probability"])) for item in values["top_k"])
        else:
            (cells,) = list(csv.reader([line]))
            if len(cells) not in (len(FIELDS), len(FIELDS_BEFORE_REVIEWS), len(FIELDS_BEFORE_BREED_IDS)):
                return None
            values = dict(zip(FIELDS, cells, strict=False))
            top_k = tuple(_split_top_k(values["top_k"]))
            values["siblings"] = [name for name in (values.get("siblings") or "").split("; ") if name]
        return Row(
            path=str(values["path"]),
            status=str(values["status"]),
            breed=values["breed"] or "",
            confidence=_float(values["confidence"]),
            top_k=top_k,
            dog_probability=_float(values["dog_probability"]),
            error=values["error"] or "",
            size=None if values["size"] in (None, "") else int(values["size"]),
            mtime=values["mtime"] or "",
            model_version=str(values["model_version"]),
            reviewed_breed=values.get("reviewed_breed") or "",
            reviewed_by=values.get("reviewed_by") or "",
            reviewed_at=values.get("reviewed_at") or "",
            breed_id=values.get("breed_id") or "",
            siblings=tuple(str(name) for name in values.get("siblings") or ()),
            line=line if line.endswith("\n") else line + "\n",
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_results(path: str | os.PathLike, fmt: str) -> tuple[list[Row], bool]:
    """The rows of an existing results file, and whether the file was whole (every line a valid row).

    A CSV file from before the review columns is not whole either: it must be rewritten (with every
    column) before rows are appended to it. Raises ResultsFileError when the file is not a Dogtag
    results file at all, so that a file the user cares about is never rewritten.
    """
    content = read_results_file(path, fmt)
    return content.rows, content.whole


def read_results_file(path: str | os.PathLike, fmt: str) -> ResultsContent:
    """A results file's rows, whether it is whole, and its damaged lines (see `read_results`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ResultsContent([], True, [])
    except OSError as error:
        raise ResultsFileError(f"{path}: cannot read the results file ({error.strerror or error})") from error
    *lines, tail = data.split(b"\n")  # `tail` is what follows the last newline: empty unless torn
    whole = not tail
    damaged = []
    older_columns = False
    first_number = 1
    if fmt == "csv":
        if not lines:
            return ResultsContent([], whole, [])  # empty, or killed while writing the header
        older_columns = _older_header(lines[0])
        if older_columns:
            whole = False
        elif not _current_header(lines[0]):
            raise ResultsFileError(
                f"{path}: this file exists but is not a Dogtag results file of this version "
                "(its first line is not the expected header); choose another --out, or move it away"
            )
        lines, first_number = lines[1:], 2
    rows = []
    for number, raw in enumerate(lines, first_number):
        row = decode_row(raw, fmt)
        if row is not None and older_columns:
            row = replace(row, line="")  # written again with every column
        if row is None:
            whole = False
            if raw:
                damaged.append((number, _start(raw)))
        else:
            rows.append(row)
    if tail:
        damaged.append((first_number + len(lines), _start(tail)))
    if fmt == "jsonl" and lines and not rows:
        raise ResultsFileError(
            f"{path}: this file exists but holds no Dogtag results; choose another --out, or move it away"
        )
    return ResultsContent(rows, whole, damaged)


def decode_row(raw: bytes, fmt: str) -> Row | None:
    """A row from one line's bytes (newline left out); None when they are not a whole, valid row."""
    if b"\0" in raw:
        return None
    try:
        return parse_row(raw.decode("utf-8"), fmt)
    except UnicodeDecodeError:
        return None


def _start(raw: bytes) -> str:
    return raw[:60].decode("utf-8", "replace").replace("\0", "")


def _older_header(line: bytes) -> bool:
    return line.decode("utf-8", "replace").lstrip(_BOM) in OLDER_HEADERS


def _current_header(line: bytes) -> bool:
    return line.decode("utf-8", "replace").lstrip(_BOM) == ",".join(FIELDS)


def write_results(path: str | os.PathLike, fmt: str, rows: list[Row]) -> None:
    """Replace the results file with exactly these rows, atomically (temporary file, then rename)."""
    text = header(fmt) + "".join(row.line or format_row(row, fmt) for row in rows)
    _replace_file(Path(path), text.encode("utf-8"))


def rewrite_rows(
    path: str | os.PathLike, fmt: str, change: Callable[[Row], Row], only: Iterable[str] | None = None
) -> None:
    """Rewrite the results file atomically with `change(row)` in place of each row (of the paths in `only`,
    when given); every other line stays byte for byte, damaged ones too.

    A CSV file with the columns from before reviews gets the new header and every row written with
    every column. Call it holding `exclusive_access`. Raises FileNotFoundError when the file is gone,
    ResultsFileError when it cannot be written.
    """
    path = Path(path)
    lines = _updated_lines(path.read_bytes().split(b"\n"), fmt, change, only)
    _replace_file(path, b"\n".join(lines))


def add_rows(path: str | os.PathLike, fmt: str, rows: list[Row]) -> None:
    """Add rows at the end of a results file in one atomic rewrite, keeping every line it has.

    A CSV file of the older columns gets every column first; a torn last line stays, on its own line.
    Call it holding `exclusive_access`; ResultsFileError when the file cannot be written.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as error:
        raise ResultsFileError(f"{path}: cannot read the results file ({error.strerror or error})") from error
    if data:
        data = b"\n".join(_updated_lines(data.split(b"\n"), fmt, lambda row: row, only=()))
    if data and not data.endswith(b"\n"):
        data += b"\n"
    if not data:
        data = header(fmt).encode("utf-8")
    _replace_file(path, data + "".join(format_row(row, fmt) for row in rows).encode("utf-8"))


def _updated_lines(
    lines: list[bytes], fmt: str, change: Callable[[Row], Row], only: Iterable[str] | None
) -> list[bytes]:
    """The lines of a results file with `change` applied to the rows of `only` (every row when None)."""
    start, older = 0, False
    if fmt == "csv" and lines and lines[0]:
        older = _older_header(lines[0])
        if older:
            lines[0] = header("csv").rstrip("\n").encode("utf-8")
        start = 1
    only = None if only is None else set(only)
    needles = None if only is None else [_needle(key) for key in only]
    for number in range(start, len(lines)):
        raw = lines[number]
        if not raw or (not older and needles is not None and not any(needle in raw for needle in needles)):
            continue
        row = decode_row(raw, fmt)
        if row is None or (not older and only is not None and row.path not in only):
            continue
        changed = change(row)
        if changed is not row or older:
            lines[number] = format_row(changed, fmt).rstrip("\n").encode("utf-8")
    return lines


def _replace_file(path: Path, data: bytes) -> None:
    """Replace a file with `data` atomically: temporary file, fsync, rename, fsync of the folder."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise ResultsFileError(f"{path}: cannot write the results file ({error.strerror or error})") from error
    sync_folder(path.parent)


def _needle(key: str) -> bytes:
    """Bytes that the line of `key`'s row holds verbatim: a cheap test before parsing a line.

    The start of the file name, up to its first character that CSV or JSON might quote or escape.
    """
    name = os.path.basename(key)
    plain = len(name)
    for position, char in enumerate(name):
        if not (char.isalnum() or char in " -_.()"):
            plain = position
            break
    return name[:plain].encode("utf-8")


class ResultsWriter:
    """Appends rows to a results file: one write per row, fsync on `sync()` and on close."""

    def __init__(self, path: str | os.PathLike, fmt: str):
        self.path = Path(path)
        self.fmt = fmt
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise ResultsFileError(
                f"{self.path}: cannot write the results file ({error.strerror or error}); "
                "choose a writable place with --out"
            ) from error
        if os.fstat(self._fd).st_size == 0 and header(fmt):
            self._write(header(fmt))
            self.sync()
            sync_folder(self.path.parent)

    def write(self, row: Row) -> None:
        """Append one row (visible to readers, and safe from a killed process, at once)."""
        self._write(format_row(row, self.fmt))

    def sync(self) -> None:
        """Make what was written survive a power cut."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Sync and close."""
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as error:  # a full disk or a pulled USB stick; a torn row is repaired on resume
            raise ResultsFileError(f"{self.path}: cannot write the results file ({error.strerror or error})") from error


@contextmanager
def exclusive_access(path: str | os.PathLike) -> Iterator[None]:
    """Hold a lock on the results file's folder, so two runs never write the same results at once."""
    folder = Path(path).parent
    busy = ResultsFileError(f"{path}: another `dogtag tag` is writing results here; wait for it to finish")
    lock = ExitStack()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.enter_context(held_lock(folder, busy))
    except OSError as error:
        raise ResultsFileError(f"{path}: cannot use this folder for results ({error.strerror or error})") from error
    with lock:
        yield


def sync_folder(folder: Path) -> None:
    """Persist a new or renamed directory entry (without it a power cut can lose the whole file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def _split_top_k(text: str) -> list[tuple[str, float]]:
    pairs = []
    for item in filter(None, text.split("; ")):
        breed, _, probability = item.rpartition("=")
        pairs.append((breed, float(probability)))
    return pairs
