"""Read Stanford Dogs (official layout) or a plain folder-per-breed tree into lists of samples.

Official layout (as extracted from images.tar, annotation.tar and lists.tar)::

    Images/<wnid>-<Breed>/<wnid>_<n>.jpg
    Annotation/<wnid>-<Breed>/<wnid>_<n>     PASCAL-VOC XML: original <size> and <bndbox>es
    train_list.mat, test_list.mat            file_list, annotation_list, labels (1..120)

Boxes are kept in the XML's pixels together with the XML's image size, so that they can be scaled to
whatever size the image file actually has (the copy in ../shared is resized to 224 x 224).
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

# Where users get the official data (README explains how to extract it).
OFFICIAL_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
OFFICIAL_ARCHIVES = ("images.tar", "annotation.tar", "lists.tar")


@dataclass(frozen=True)
class Box:
    """A bounding box in the pixels of an image of size (width, height) as the XML states it."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in the pixels of the same image resized to (width, height), clipped to it."""
        sx, sy = width / self.width, height / self.height
        left = min(max(int(round(self.xmin * sx)), 0), width - 1)
        top = min(max(int(round(self.ymin * sy)), 0), height - 1)
        right = min(max(int(round(self.xmax * sx)), left + 1), width)
        bottom = min(max(int(round(self.ymax * sy)), top + 1), height)
        return left, top, right, bottom


@dataclass(frozen=True)
class Sample:
    """One labelled photo: its path, its class index and (official layout only) its dog's box."""

    path: Path
    label: int
    box: Box | None = None


@dataclass(frozen=True)
class Dataset:
    """Samples of one split and the breed names their labels index."""

    samples: list[Sample]
    breeds: list[str]
    wnids: list[str]

    def __len__(self) -> int:
        return len(self.samples)


def breed_name(folder: str) -> str:
    """'n02085620-Chihuahua' -> 'Chihuahua'; 'n02085936-Maltese_dog' -> 'Maltese dog'."""
    name = folder.split("-", 1)[1] if folder[:1] == "n" and "-" in folder else folder
    return name.replace("_", " ")


def is_official_layout(root: str | Path | None) -> bool:
    """True when `root` holds the official Images/ folder and split lists."""
    if root is None:
        return False
    root = Path(root)
    return (root / "Images").is_dir() and (root / "train_list.mat").is_file()


def read_official(root: str | Path, split: str) -> Dataset:
    """Read the official 'train' or 'test' list, with the first box of each annotation."""
    from scipy.io import loadmat

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not is_official_layout(root):
        raise FileNotFoundError(
            f"{root}: not the official Stanford Dogs layout (needs Images/ and train_list.mat); "
            f"download {', '.join(OFFICIAL_ARCHIVES)} from {OFFICIAL_URL} and extract them there"
        )
    folders = sorted(p.name for p in (root / "Images").iterdir() if p.is_dir())
    lists = loadmat(str(root / f"{split}_list.mat"))
    files = [str(x.item()) for x in lists["file_list"].ravel()]
    annotations = [str(x.item()) for x in lists["annotation_list"].ravel()]
    labels = [int(x) - 1 for x in lists["labels"].ravel()]
    samples = []
    for file, annotation, label in zip(files, annotations, labels, strict=True):
        folder = file.split("/", 1)[0]
        if folders[label] != folder:
            raise ValueError(f"{root}: {split}_list.mat labels {file} as class {label + 1}, not its folder")
        samples.append(Sample(root / "Images" / file, label, read_box(root / "Annotation" / annotation)))
    return Dataset(samples, [breed_name(f) for f in folders], [f.split("-", 1)[0] for f in folders])


def read_box(xml_path: Path) -> Box | None:
    """The first <bndbox> of a PASCAL-VOC annotation, or None when the file is missing or has none."""
    try:
        tree = ElementTree.parse(xml_path)
    except (OSError, ElementTree.ParseError):
        return None
    size = tree.find("size")
    box = tree.find("object/bndbox")
    if size is None or box is None:
        return None
    width, height = int(size.findtext("width", "0")), int(size.findtext("height", "0"))
    if width <= 0 or height <= 0:
        return None
    xmin, ymin, xmax, ymax = (float(box.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
    return Box(xmin, ymin, xmax, ymax, width, height)


def read_folders(root: str | Path) -> Dataset:
    """Read a plain layout: one sub-folder per breed, images inside (no boxes)."""
    root = Path(root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{root}: no breed folders found (expected one sub-folder per breed)")
    samples = [
        Sample(path, label)
        for label, folder in enumerate(folders)
        for path in sorted((root / folder).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    wnids = [f.split("-", 1)[0] if f[:1] == "n" and "-" in f else "" for f in folders]
    return Dataset(samples, [breed_name(f) for f in folders], wnids)


def load_split(root: str | Path | None, split: str) -> Dataset:
    """The official split when `root` has the official layout; a folder tree otherwise (split ignored).

    No `root`, or one that is not there, raises FileNotFoundError saying where to get the data.
    """
    if root is None or not Path(root).is_dir():
        where = "no dataset was given" if root is None else f"{root}: no such folder"
        raise FileNotFoundError(
            f"{where}. This needs the Stanford Dogs photos: download {', '.join(OFFICIAL_ARCHIVES)} from "
            f"{OFFICIAL_URL}, extract them side by side into one folder, and pass it with --data FOLDER "
            "(or set DOGTAG_DATA=FOLDER)"
        )
    return read_official(root, split) if is_official_layout(root) else read_folders(root)


def select_breeds(dataset: Dataset, breeds: list[str] | None = None, count: int | None = None) -> Dataset:
    """Keep only some breeds (by name, case-insensitive, or the first `count`), relabelled 0..n-1."""
    if breeds:
        lookup = {name.lower().replace("_", " "): i for i, name in enumerate(dataset.breeds)}
        unknown = [b for b in breeds if b.lower().replace("_", " ") not in lookup]
        if unknown:
            raise ValueError(f"unknown breeds {unknown}; known: {', '.join(dataset.breeds)}")
        keep = sorted(lookup[b.lower().replace("_", " ")] for b in breeds)
    elif count:
        if not 2 <= count <= len(dataset.breeds):
            raise ValueError(f"breed count must be 2..{len(dataset.breeds)}, got {count}")
        keep = list(range(count))
    else:
        return dataset
    new_label = {old: new for new, old in enumerate(keep)}
    samples = [
        Sample(s.path, new_label[s.label], s.box) for s in dataset.samples if s.label in new_label
    ]
    return Dataset(samples, [dataset.breeds[i] for i in keep], [dataset.wnids[i] for i in keep])


def stratified_indices(labels: list[int], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (rest, held-out) with `fraction` of every class held out, reproducibly.

    Every class with at least two samples keeps at least one sample on each side.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    rest, held_out = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_held = min(max(1, round(len(group) * fraction)), len(group) - 1)
        held_out += sorted(group[:n_held])
        rest += sorted(group[n_held:])
    return sorted(rest), sorted(held_out)


def stratified_split(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into (rest, held-out) datasets with `fraction` of every class held out, reproducibly."""
    rest, held_out = stratified_indices([s.label for s in dataset.samples], fraction, seed)
    return subset(dataset, rest), subset(dataset, held_out)


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    """The samples at `indices`, with the same breeds."""
    return Dataset([dataset.samples[i] for i in indices], dataset.breeds, dataset.wnids)
