"""Test data for the review page: a shelter folder whose results file says what each photo is.

The photos are drawn (a dog-like shape on a lawn, one colour per photo) so that the page and its
screenshot look like a photo grid; their rows are written as `dogtag tag` would, with chosen
statuses, so what the page must show first is known. The bundled model's labels are used.
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dogtag.edge_app.classifier import resolve_model
from dogtag.edge_app.model_file import read_model_info
from dogtag.edge_app.results import Row, default_results_path, format_mtime, write_results

MODEL_VERSION = "test-model-1"
# The bundled model the review tests tag with (the small one: the tests need a real model, not the best).
MODEL = "fast"

# relative path -> (status, top breeds with probabilities, dog probability, error)
SHELTER_ROWS = {
    "rex.jpg": ("dog", [("beagle", 0.93), ("basset", 0.04), ("English foxhound", 0.02)], 0.99, ""),
    "bella.jpg": ("unsure", [("golden retriever", 0.48), ("Labrador retriever", 0.31), ("kuvasz", 0.1)], 0.97, ""),
    "kennel_2/max.jpg": ("dog", [("German shepherd", 0.97), ("malinois", 0.02), ("kelpie", 0.01)], 0.99, ""),
    "kennel_2/luna.png": ("unsure", [("Siberian husky", 0.52), ("Eskimo dog", 0.4), ("malamute", 0.05)], 0.95, ""),
    "kennel_2/daisy.jpg": ("dog", [("pug", 0.91), ("French bulldog", 0.05), ("boxer", 0.01)], 0.98, ""),
    "coco.jpg": ("unsure", [("toy poodle", 0.39), ("miniature poodle", 0.37), ("Maltese dog", 0.12)], 0.9, ""),
    "office-chair.jpg": ("not_a_dog", [("Chihuahua", 0.2), ("pug", 0.1), ("papillon", 0.05)], 0.03, ""),
    "old/buddy.jpg": ("dog", [("boxer", 0.95), ("bull mastiff", 0.03), ("Great Dane", 0.01)], 0.99, ""),
}
# A photo the results file lists, but that was deleted since.
DELETED = "old/sunny.jpg"
FUR = [(139, 90, 43), (222, 184, 135), (60, 60, 60), (245, 245, 240), (205, 133, 63), (90, 60, 40), (190, 190, 190)]


def labels() -> tuple[str, ...]:
    """The bundled model's 120 breed names."""
    return read_model_info(resolve_model(MODEL)).labels


def draw_dog(path: Path, seed: int, size: tuple[int, int] = (320, 240)) -> Path:
    """A drawn photo: a dog-like shape of one fur colour on a lawn under a sky (EXIF-free JPEG or PNG)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    sky = np.linspace([150, 195, 235], [220, 235, 250], height // 2).astype(np.uint8)
    grass = np.linspace([110, 170, 80], [70, 130, 50], height - height // 2).astype(np.uint8)
    pixels[:, :] = np.concatenate([sky, grass])[:, None, :]
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    fur = FUR[seed % len(FUR)]
    dark = tuple(max(0, c - 50) for c in fur)
    x, y = int(width * rng.uniform(0.3, 0.45)), int(height * 0.55)
    draw.ellipse((x - 70, y - 30, x + 60, y + 30), fill=fur)  # body
    for leg in (x - 55, x - 30, x + 20, x + 42):
        draw.rectangle((leg, y + 10, leg + 13, y + 65), fill=fur)
    draw.ellipse((x + 40, y - 75, x + 105, y - 15), fill=fur)  # head
    draw.ellipse((x + 88, y - 52, x + 122, y - 28), fill=fur)  # muzzle
    draw.ellipse((x + 114, y - 46, x + 124, y - 36), fill=(20, 20, 20))  # nose
    draw.ellipse((x + 72, y - 60, x + 81, y - 51), fill=(25, 25, 25))  # eye
    draw.polygon([(x + 45, y - 62), (x + 62, y - 70), (x + 52, y - 25)], fill=dark)  # ear
    draw.line((x - 68, y - 12, x - 100, y - 45), fill=fur, width=10)  # tail
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=90)
    else:
        image.save(path)
    return path


def make_shelter_folder(folder: Path, fmt: str = "csv") -> Path:
    """Drawn photos and a results file listing them (plus one deleted photo); returns the results file."""
    rows = []
    for seed, (name, (status, top_k, dog, error)) in enumerate({**SHELTER_ROWS, DELETED: SHELTER_ROWS["rex.jpg"]}.items()):
        if name != DELETED:
            draw_dog(folder / name, seed)
        size = (folder / name).stat().st_size if name != DELETED else 1234
        rows.append(Row(
            path=name, status=status, breed="" if status == "not_a_dog" else top_k[0][0], confidence=top_k[0][1],
            top_k=tuple(top_k), dog_probability=dog, error=error, size=size, mtime=format_mtime(1_700_000_000 * 10**9),
            model_version=MODEL_VERSION,
        ))
    results = default_results_path(folder, fmt)
    write_results(results, fmt, rows)
    return results


def results_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a CSV results file by path, as a spreadsheet reads them."""
    text = path.read_text(encoding="utf-8-sig")
    return {row["path"]: row for row in csv.DictReader(io.StringIO(text))}


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """A GET to 127.0.0.1:port with the path exactly as given (browsers and HTTP libraries resolve `..`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:  # a bound for a hang, not a race
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
