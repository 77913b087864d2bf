"""Photos to model input: decode any common format, upright and in RGB, resized as the model was trained.

`load_photo` is the one way a photo file becomes the uint8 (height, width, 3) array a Dogtag model
takes; `prepare_image` does the same for a PIL image already in memory. The benchmarks reuse both.

Colour decisions, made once here:
- EXIF orientation is applied, so a phone photo taken upright is seen upright.
- Transparent pixels are composited on white (not dropped): what lies under transparent pixels is
  often black or garbage, while white is what a viewer shows behind a cut-out dog.
- Grayscale and black-and-white become gray RGB; palette (GIF, PNG-8) and CMYK become RGB; 16-bit
  grayscale is scaled down to 8 bits (not clipped, which would turn it white).
- Only the first frame of a GIF or a multi-page TIFF is used.

Large JPEGs are decoded at a reduced scale (JPEG draft mode) no smaller than the model input, so a
12 MP photo does not need a full decode to become 224 px.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".hif"}
)
# Pillow's own default limit (about 89 megapixels); a 12 MP phone photo is far below it.
DEFAULT_MAX_PIXELS = 89_478_485
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking, like tf.image.resize(antialias=True)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif")


class PhotoError(Exception):
    """A photo that cannot be used; the message says why, in words a volunteer can act on."""


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF photos when the optional pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()


def load_photo(
    path: str | os.PathLike,
    size: tuple[int, int],
    resize: str = "squash",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a photo file into uint8 RGB pixels of shape (height, width, 3) = `size` + (3,).

    `resize` is "squash" (stretch to size) or "crop" (keep the aspect ratio, crop the centre).
    Raises PhotoError, with the reason in its message, for anything that is not a readable photo;
    photos above `max_pixels` are refused before they are decoded (decompression bombs).
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(_too_large(width, height, max_pixels))
            if image.format in ("JPEG", "MPO"):  # MPO: the multi-picture JPEGs of some cameras
                side = max(size)  # whichever way EXIF turns it, both sides stay >= the input size
                image.draft("RGB", (side, side))
            image.load()
            return prepare_image(image, size, resize)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PhotoError(
            f"refused as a possible decompression bomb ({error}); raise --max-pixels if it is a real photo"
        ) from error
    except UnidentifiedImageError as error:
        raise PhotoError(_why_not_an_image(path)) from error
    except OSError as error:
        raise PhotoError(_os_problem(path, error)) from error
    except MemoryError as error:
        raise PhotoError("not enough memory to decode this photo") from error
    except Exception as error:  # decoders raise ValueError, SyntaxError, struct.error, EOFError... on bad data
        raise PhotoError(f"damaged image ({type(error).__name__}: {error})") from error


def prepare_image(image: Image.Image, size: tuple[int, int], resize: str = "squash") -> np.ndarray:
    """Turn a PIL image into model input: upright, RGB, resized to `size` (height, width); uint8 array."""
    rgb = to_rgb(upright(image))
    return np.asarray(fit(rgb, size, resize), dtype=np.uint8)


def array_to_image(pixels: np.ndarray) -> Image.Image:
    """A PIL image from an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 array (RGB / RGBA order)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(
            f"expected uint8 pixels in 0..255, got {pixels.dtype}; for floats in 0..1 pass "
            "(pixels * 255).round().astype('uint8')"
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB" if pixels.shape[2] == 3 else "RGBA")
    raise ValueError(f"expected an image array of shape (height, width, 3), got shape {pixels.shape}")


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a photo with unreadable EXIF is used as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block must not cost us an otherwise good photo
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the choices)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_8_bits(np.asarray(image), mode), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise PhotoError(f"unsupported colour mode {mode} ({error})") from error


def _to_8_bits(pixels: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (or 32-bit integer, or float) grayscale to 8 bits, keeping the picture's brightness."""
    pixels = pixels.astype(np.float64)
    if mode == "F" and pixels.size and pixels.max() <= 1.0:
        pixels = pixels * 255.0
    elif mode != "F" and (mode.startswith("I;16") or (pixels.size and pixels.max() > 255)):
        pixels = pixels / 257.0  # 65535 -> 255
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def fit(image: Image.Image, size: tuple[int, int], resize: str = "squash") -> Image.Image:
    """Resize to `size` (height, width): "squash" stretches, "crop" keeps the aspect and crops the centre.

    "crop" follows the training code: scale so the image covers the size, then cut the centre.
    """
    height, width = size
    if resize == "squash":
        return image.resize((width, height), _RESAMPLE, reducing_gap=3.0)
    if resize != "crop":
        raise ValueError(f"resize must be 'squash' or 'crop', got {resize!r}")
    scale = max(height / image.height, width / image.width)
    new_width = max(width, math.ceil(image.width * scale - 1e-6))
    new_height = max(height, math.ceil(image.height * scale - 1e-6))
    resized = image.resize((new_width, new_height), _RESAMPLE, reducing_gap=3.0)
    left, top = (new_width - width) // 2, (new_height - height) // 2
    return resized.crop((left, top, left + width, top + height))


@contextmanager
def pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Within the block, Pillow's own decompression-bomb checks use `max_pixels` and raise, not warn.

    Pillow also checks inside some formats (GIF frames, ICO, ...), so a command line tool sets its
    limit once around a run. Process-wide state: for `dogtag` commands, not for library code.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return (
        f"too large: {width} x {height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
        "(a decompression bomb?); raise --max-pixels if it is a real photo"
    )


def _why_not_an_image(path: str | os.PathLike) -> str:
    """Pillow could not identify the file: say what it looks like instead."""
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError as error:
        return _os_problem(path, error)
    if not head:
        return "empty file (0 bytes); not a photo"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        if not HEIF_SUPPORTED:
            return "HEIC/HEIF photo, which needs pillow-heif: pip install 'dogtag[heif]'"
        return "damaged or unsupported HEIC/HEIF photo"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "not an image: this is a text file"
        except UnicodeDecodeError:
            pass
    suffix = Path(os.fsdecode(path)).suffix or "(no extension)"
    return f"not an image, or a damaged one: its content is not a format Dogtag reads (named {suffix})"


def _os_problem(path: str | os.PathLike, error: OSError) -> str:
    """Explain an OSError from opening or decoding a photo."""
    if isinstance(error, FileNotFoundError) and os.path.islink(path):
        return f"broken symbolic link: it points to {os.fsdecode(os.readlink(path))!r}, which does not exist"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if error.errno == errno.ELOOP:
        return "symbolic link loop: the link points (through other links) back to itself"
    if isinstance(error, PermissionError):
        return "permission denied: cannot read this file; check its permissions"
    if isinstance(error, IsADirectoryError):
        return "this is a folder, not a photo"
    if error.errno is None:  # Pillow's decoders report damage as a bare OSError
        return f"damaged or truncated image ({error})"
    return f"cannot read the file ({error.strerror or error})"
