"""Thumbnails and large views of photos, made on demand and cached outside the photo folders.

A rendition is a JPEG no larger than `side` pixels either way, upright (EXIF applied) and in RGB,
so that HEIC, TIFF or 16-bit photos show in any browser. It is named by a hash of the photo's real
path, size and modification time, so an edited photo gets a new one and the cache never has to be
cleaned for correctness (delete the folder at any time to free space). Photos are only read.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from PIL import Image

from dogtag.edge_app.images import DEFAULT_MAX_PIXELS, PhotoError, to_rgb, upright

THUMBNAIL_SIDE = 360  # the grid shows 180 px cards: sharp on a 2x phone screen
LARGE_SIDE = 1600
QUALITY = 82
# Decoding is CPU work: at most one per core at once, whatever the server's thread pool does.
_DECODERS = threading.BoundedSemaphore(os.cpu_count() or 1)


def default_cache_folder() -> Path:
    """~/.cache/dogtag/review (or $XDG_CACHE_HOME/dogtag/review)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "dogtag" / "review"


def rendition(photo: str | os.PathLike, side: int, cache: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """The cached JPEG of `photo` at most `side` pixels wide and high; made now when missing.

    Raises PhotoError (with the reason) for a file that is not a readable photo.
    """
    try:
        info = os.stat(photo)
    except OSError as error:
        raise PhotoError(f"cannot read the file ({error.strerror or error})") from error
    key = hashlib.sha256(
        f"{os.path.realpath(photo)}\0{info.st_size}\0{info.st_mtime_ns}\0{side}".encode("utf-8", "surrogateescape")
    ).hexdigest()
    target = cache / key[:2] / f"{key}.jpg"
    if target.exists():
        return target
    with _DECODERS:
        image = _decode(photo, side, max_pixels)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
    image.save(temporary, "JPEG", quality=QUALITY, optimize=False)
    os.replace(temporary, target)
    return target


def _decode(photo: str | os.PathLike, side: int, max_pixels: int) -> Image.Image:
    """The photo, upright, RGB and shrunk to fit `side`; PhotoError when it cannot be read."""
    try:
        with Image.open(photo) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(f"too large: {width} x {height} pixels, above the limit of {max_pixels:,}")
            if image.format in ("JPEG", "MPO"):
                image.draft("RGB", (side, side))  # decode a 12 MP JPEG at 1/2, 1/4 or 1/8 scale
            image.load()
            picture = to_rgb(upright(image))
            picture.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return picture
    except PhotoError:
        raise
    except Exception as error:  # Pillow raises many kinds on damaged data: all mean "cannot show it"
        raise PhotoError(f"cannot show this photo ({type(error).__name__}: {error})") from error
