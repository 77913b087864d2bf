"""Test data for the edge app: folders of photos whose breeds the tiny test models know.

The tiny models (tests/model_fixtures.py) see each breed as a colour tint over noise and untinted
grey noise as "not a dog", so a photo's expected answer is known from how it was made.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fakes import make_photo
from tests.model_fixtures import TINY_NAMES, tinted_photo

# name -> (breed index or None for "not a dog", save options); one photo per common format.
BREED_PHOTOS = {
    "rex.jpg": (0, {"quality": 95}),
    "bella.png": (1, {}),
    "kennel_2/max.webp": (2, {"quality": 95}),
    "kennel_2/luna.bmp": (0, {}),
    "kennel_2/old/daisy.tiff": (1, {}),
    "kennel_2/old/coco.gif": (2, {}),
    "cat.jpg": (None, {"quality": 95}),
}


def make_breed_photo(path: Path, breed: int | None, seed: int = 0, size: int = 64, **save_options) -> Path:
    """Save a photo the tiny models classify as TINY_NAMES[breed] (None: grey noise, not a dog)."""
    pixels = tinted_photo(breed, seed=seed, size=size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_options)
    return path


def make_breed_folder(folder: Path) -> dict[str, str | None]:
    """A folder tree with one photo per format; returns relative path -> expected breed (None: not a dog)."""
    expected = {}
    for seed, (name, (breed, options)) in enumerate(BREED_PHOTOS.items()):
        make_breed_photo(folder / name, breed, seed=seed, **options)
        expected[name] = None if breed is None else TINY_NAMES[breed]
    return expected


def fingerprints(folder: Path) -> dict[str, tuple[str, int]]:
    """(sha256, mtime_ns) of every file under `folder`, by relative path: to prove nothing changed."""
    result = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not os.access(path, os.R_OK):
                continue
            result[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                     path.stat().st_mtime_ns)
    return result


def mean_colour(pixels: np.ndarray) -> np.ndarray:
    """The average RGB of an (H, W, 3) array."""
    return pixels.reshape(-1, 3).mean(axis=0)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims a huge size: a decompression bomb in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def truncated_jpeg(path: Path) -> None:
    """A JPEG cut short, as a copy interrupted by pulling out the USB stick leaves it."""
    make_photo(path, (64, 64), seed=5, quality=95)
    path.write_bytes(path.read_bytes()[:600])


# file name -> (how to make it, what its error message says); each is a way a file can fail to be a photo.
BAD_FILES = {
    "truncated.jpg": (truncated_jpeg, r"damaged or truncated image"),
    "empty.jpg": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "notes.jpg": (lambda p: p.write_text("adoption notes for Rex\n"), r"not an image: this is a text file"),
    "garbage.png": (lambda p: p.write_bytes(bytes(range(256)) * 4), r"not an image, or a damaged one"),
    "bomb.png": (lambda p: p.write_bytes(png_claiming_size(30_000, 30_000)), r"decompression bomb"),
    "big-bomb.png": (lambda p: p.write_bytes(png_claiming_size(10_000, 10_000)), r"decompression bomb"),
    "broken-link.jpg": (lambda p: p.symlink_to(p.parent / "deleted.jpg"), r"broken symbolic link: it points to"),
    "loop.jpg": (lambda p: (p.symlink_to(p.parent / "loop2.jpg"), (p.parent / "loop2.jpg").symlink_to(p)),
                 r"symbolic link loop"),
}


def make_bad_files(folder: Path) -> dict[str, str]:
    """Write every BAD_FILES case into `folder`; returns file name -> expected error message (regex)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (make, message) in BAD_FILES.items():
        make(folder / name)
        expected[name] = message
    expected["loop2.jpg"] = BAD_FILES["loop.jpg"][1]  # the other half of the loop
    return expected
