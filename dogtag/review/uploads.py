"""Photos added from the browser (drag and drop, or a phone's camera): checked, kept, never overwriting.

An upload is written to a hidden temporary file in the intake folder, decoded as a photo (a file
that is not one is deleted and refused, with the reason), and only then given its name: the name
the browser sent, made safe (no folders, no hidden or odd names, a photo extension), and made
unique (`rex (2).jpg` when rex.jpg exists) by creating it exclusively, so nothing is overwritten.
A photo already in the intake folder byte for byte (sent twice) is refused as a duplicate, naming it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import unicodedata
from pathlib import Path

from PIL import Image

from dogtag.edge_app.images import DEFAULT_MAX_PIXELS, PHOTO_SUFFIXES, PhotoError, load_photo
from dogtag.edge_app.results import sync_folder

MAX_UPLOAD_BYTES = 30 * 1024 * 1024  # a 12 MP JPEG is 3 to 8 MB; a 48 MP phone photo up to about 25
MAX_UPLOAD_FILES = 50  # per request
_SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                     "TIFF": ".tif", "HEIF": ".heic"}


class UploadError(Exception):
    """An upload that is refused; the message names the file and says why."""


def safe_name(client_name: str | None, suffix_for_format: str) -> str:
    """A plain file name from what the browser sent: no folders, no control or hidden characters.

    `../../etc/passwd` -> `passwd.jpg`; `IMG 0042.HEIC` stays; an empty name becomes photo-<time>.
    """
    name = (client_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in PHOTO_SUFFIXES:
        stem, suffix = name, suffix_for_format
    stem = stem.strip(" .")[:100] or time.strftime("photo-%Y%m%d-%H%M%S")
    return stem + suffix


def keep_upload(data: bytes, client_name: str | None, intake: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Save one uploaded photo into `intake` under a new name; UploadError when it is not a photo."""
    shown = client_name or "the upload"
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{shown}: larger than {MAX_UPLOAD_BYTES // 2**20} MB; not kept")
    if not data:
        raise UploadError(f"{shown}: empty file; not kept")
    try:
        return _keep(data, client_name, shown, intake, max_pixels)
    except OSError as error:  # a full disk, a read-only folder
        raise UploadError(f"{shown}: cannot be saved in {intake} ({error.strerror or error}); not kept") from error


def _keep(data: bytes, client_name: str | None, shown: str, intake: Path, max_pixels: int) -> Path:
    intake.mkdir(parents=True, exist_ok=True)
    suffix = os.path.splitext(client_name or "")[1].lower()
    hidden = f".upload-{secrets.token_hex(8)}{suffix if suffix in PHOTO_SUFFIXES else '.partial'}"
    temporary = intake / hidden  # hidden: `dogtag tag` never sees it
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            load_photo(temporary, (32, 32), max_pixels=max_pixels)  # decodes it whole, or says why not
            with Image.open(temporary) as image:
                image_format = image.format or ""
        except PhotoError as error:
            raise UploadError(f"{shown}: {error}; not kept") from error
        twin = same_photo(intake, data)
        if twin is not None:
            raise UploadError(f"{shown}: a duplicate: the same photo, byte for byte, as {twin.name} "
                              f"already in {intake}; not kept twice")
        name = safe_name(client_name, _SUFFIX_BY_FORMAT.get(image_format, ".jpg"))
        target = _reserve(intake, name)
        try:
            os.replace(temporary, target)
        except OSError:
            target.unlink()  # the empty file that held the name
            raise
    finally:
        if temporary.exists():
            temporary.unlink()
    sync_folder(intake)
    return target


def same_photo(folder: Path, data: bytes) -> Path | None:
    """A visible file of `folder` whose content is exactly `data` (compared by size, then bytes), else None."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            if entry.stat().st_size == len(data) and Path(entry.path).read_bytes() == data:
                return Path(entry.path)
    return None


def _reserve(folder: Path, name: str) -> Path:
    """Create `name` (or `name (2)`, ...) exclusively in `folder`: a name nobody else has or gets."""
    stem, suffix = os.path.splitext(name)
    for number in range(1, 10_000):
        target = folder / (name if number == 1 else f"{stem} ({number}){suffix}")
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        return target
    raise UploadError(f"{name}: too many photos of this name in {folder}; not kept")


