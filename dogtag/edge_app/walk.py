"""Find the photos in a folder tree, and name them in results files.

The walk is sorted (the same folder gives the same order), follows symbolic links to folders but
visits each real folder once (a link loop cannot make it run forever), and skips hidden entries
(names starting with "."; e.g. macOS "._photo.jpg" files and ".thumbnails" folders). Files are chosen
by extension only: a broken link or a text file named .jpg is still yielded, so that it gets an
error row instead of vanishing silently.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterator

from dogtag.edge_app.images import PHOTO_SUFFIXES


def find_photos(
    folder: str | os.PathLike,
    recursive: bool = True,
    skip_folders: tuple[str | os.PathLike, ...] = (),
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[str]:
    """Yield the path of every photo under `folder`, sorted, as str (non-UTF-8 names surrogate-escaped).

    `skip_folders` are never entered (e.g. the --sort-into folder); a folder that cannot be listed
    is reported to `on_error(path, error)` and skipped.
    """
    skipped = {_identity(path) for path in skip_folders if os.path.isdir(path)}
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(folder)]
    while stack:
        current = stack.pop()
        try:
            identity = _identity(current)
            if identity in seen or identity in skipped:
                continue
            seen.add(identity)
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            if on_error is not None:
                on_error(current, error)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_folder(entry):
                subfolders.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in PHOTO_SUFFIXES:
                yield entry.path
        if recursive:
            stack.extend(reversed(subfolders))


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _identity(path: str | os.PathLike) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def printable_path(path: str) -> str:
    """A path as one line of readable UTF-8 text that still tells every file apart.

    Bytes that are not UTF-8 (surrogate-escaped by Python) become ``\\xNN``, control characters such
    as newlines become ``\\n`` or ``\\xNN``, and a backslash becomes ``\\\\``; so every results row is
    one line and two different files never get the same name.
    """
    parts = []
    for char in path:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode escapes it
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            parts.append("\\\\")
        elif char in "\n\r\t":
            parts.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif unicodedata.category(char) in ("Cc", "Cs"):
            parts.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            parts.append(char)
    return "".join(parts)
