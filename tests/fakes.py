"""Generators of test data: small photos and a miniature Stanford Dogs tree in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Real wnids and folder names of Stanford Dogs, so label order and ImageNet lookups behave as on real data.
BREED_FOLDERS = [
    "n02085620-Chihuahua",
    "n02085782-Japanese_spaniel",
    "n02085936-Maltese_dog",
    "n02086079-Pekinese",
    "n02086240-Shih-Tzu",
]
# One distinct colour per breed: an easily separable task for short training runs.
BREED_COLOURS = [(200, 40, 40), (40, 180, 60), (50, 70, 210), (220, 200, 40), (160, 60, 190)]


def make_photo(path: Path, size: tuple[int, int], seed: int = 0, colour=None, **save_options) -> Path:
    """Write a small noisy photo of `size` (width, height); `colour` sets its dominant tint."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3)).astype("float32")
    if colour is not None:
        pixels = 0.35 * pixels + 0.65 * np.array(colour, dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(path, **save_options)
    return path


def annotation_xml(folder: str, stem: str, width: int, height: int, box: tuple[int, int, int, int]) -> str:
    """A PASCAL-VOC annotation as Stanford Dogs ships it: original size and one box."""
    xmin, ymin, xmax, ymax = box
    name = folder.split("-", 1)[1]
    return (
        f"<annotation><folder>{folder[1:].split('-')[0]}</folder><filename>{stem}</filename>"
        "<source><database>ImageNet database</database></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size><segment>0</segment>"
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
        "</object></annotation>"
    )


def make_mini_stanford_dogs(
    root: Path, breeds: int = 3, train_per_breed: int = 6, test_per_breed: int = 4, image_size: int = 32
) -> Path:
    """Write Images/, Annotation/ and train/test/file_list.mat as the official download has them.

    Like the shared copy, images are resized squares while the XML keeps an 'original' size of
    (2 * image_size) x (3 * image_size) and boxes in those original pixels.
    """
    from scipy.io import savemat

    lists: dict[str, list[tuple[str, str, int]]] = {"train": [], "test": []}
    original_w, original_h = 2 * image_size, 3 * image_size
    for label, folder in enumerate(BREED_FOLDERS[:breeds]):
        wnid = folder.split("-", 1)[0]
        for index in range(train_per_breed + test_per_breed):
            stem = f"{wnid}_{1000 + index}"
            make_photo(root / "Images" / folder / f"{stem}.jpg", (image_size, image_size),
                       seed=label * 100 + index, colour=BREED_COLOURS[label], quality=95)
            box = (original_w // 4, original_h // 4, 3 * original_w // 4, 3 * original_h // 4)
            (root / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
            (root / "Annotation" / folder / stem).write_text(annotation_xml(folder, stem, original_w, original_h, box))
            split = "train" if index < train_per_breed else "test"
            lists[split].append((f"{folder}/{stem}.jpg", f"{folder}/{stem}", label + 1))
    for split, rows in [*lists.items(), ("file", lists["train"] + lists["test"])]:
        savemat(root / f"{split}_list.mat", {
            "file_list": np.array([[np.array([r[0]])] for r in rows], dtype=object),
            "annotation_list": np.array([[np.array([r[1]])] for r in rows], dtype=object),
            "labels": np.array([[float(r[2])] for r in rows]),
        })
    return root
