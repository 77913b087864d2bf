"""The photos every benchmarked model sees: the official test split, as files, pixels and big JPEGs.

- `bench_photos`: the official test split (or, with --quick, a fixed stratified part of it) as paths
  and true breed names; the same list for every model, so all figures are on the same photos.
- `link_folder`: those photos as a folder to tag (symbolic links; copies where links fail).
- `decode_photos`: their pixels at a model's input size, decoded once by the edge app's `load_photo`
  into a .npy file that every model (and the Keras process) reads.
- `make_large_photos`: 12-megapixel JPEGs made by upscaling test photos, with a little noise added so
  that they carry the fine detail a camera photo has (a smooth upscale compresses to a small file
  that decodes unrealistically fast).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from dogtag.edge_app.images import load_photo
from dogtag.train.dataset import is_official_layout, load_split, stratified_indices, subset

# --quick keeps this fraction of every breed of the test split (about 600 of 8,580 photos).
QUICK_FRACTION = 0.07
LARGE_SIZE = (4000, 3000)  # width, height: 12 megapixels, a phone photo
LARGE_NOISE = 6  # +- grey levels of grain added to upscaled photos
LARGE_QUALITY = 90


@dataclass(frozen=True)
class BenchPhotos:
    """Photos with their true breed names, in a fixed order."""

    paths: list[Path]
    breeds: list[str]
    split: str

    def __len__(self) -> int:
        return len(self.paths)


def bench_photos(data: str | os.PathLike, quick: bool = False) -> BenchPhotos:
    """The official test split of `data` (a folder-per-breed tree: all of it); --quick: a fixed stratified part."""
    dataset = load_split(data, "test")
    split = "official test split" if is_official_layout(data) else "every photo of the breed folders"
    if quick:
        _, kept = stratified_indices([sample.label for sample in dataset.samples], QUICK_FRACTION, seed=0)
        dataset = subset(dataset, kept)
        split += f", {QUICK_FRACTION:.0%} of each breed: --quick"
    if not len(dataset):
        raise ValueError(f"{data}: no test photos found")
    return BenchPhotos([s.path for s in dataset.samples], [dataset.breeds[s.label] for s in dataset.samples], split)


def link_folder(paths: list[Path], folder: Path) -> Path:
    """A folder holding `paths` (as <parent>/<name>, like Images/<breed>/), by symbolic links or copies."""
    for path in paths:
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(Path(path).resolve())
        except OSError:  # file systems without links (FAT on a Pi's USB stick)
            shutil.copy2(path, target)
    return folder


def decode_photos(paths: list[Path], size: tuple[int, int], resize: str, file: Path) -> np.ndarray:
    """The pixels of every photo, uint8 (n, height, width, 3), decoded by `load_photo` into a .npy file.

    Returned memory-mapped: the full test split at 224 px is 1.3 GB.
    """
    pixels = np.lib.format.open_memmap(file, mode="w+", dtype=np.uint8, shape=(len(paths), *size, 3))

    def decode(index: int) -> None:
        pixels[index] = load_photo(paths[index], size, resize)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow decodes outside the GIL
        list(pool.map(decode, range(len(paths))))
    pixels.flush()
    return np.load(file, mmap_mode="r")


def make_large_photos(paths: list[Path], folder: Path, count: int, size: tuple[int, int] = LARGE_SIZE) -> Path:
    """`count` JPEGs of `size` (width, height) upscaled from photos spread over `paths`, into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, len(paths) // max(count, 1))
    chosen = [paths[(i * step) % len(paths)] for i in range(count)]

    # One grain pattern for all of them (drawing 36 million random numbers costs more than the rest),
    # added by Pillow in C: (photo + grain) - LARGE_NOISE, clipped to 0..255.
    levels = np.random.default_rng(0).integers(0, 2 * LARGE_NOISE + 1, (size[1], size[0], 3), dtype=np.uint8)
    grain = Image.fromarray(levels)

    def make(index: int) -> None:
        with Image.open(chosen[index]) as photo:
            big = photo.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        ImageChops.add(big, grain, offset=-LARGE_NOISE).save(folder / f"large_{index:03d}.jpg", quality=LARGE_QUALITY)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(make, range(count)))
    return folder


class Workspace:
    """The benchmark's scratch folder: the photos as folders to tag, the 12 MP JPEGs, decoded pixels.

    Built once per benchmark, so every model is measured on the same files.
    """

    def __init__(self, photos: BenchPhotos, root: Path, large_photos: int, memory_photos: int):
        self.photos = photos
        self.root = root
        self.folder = link_folder(photos.paths, root / "photos")
        self.large_folder = make_large_photos(photos.paths, root / "large", large_photos) if large_photos else None
        self.large_count = large_photos
        # What the fresh `dogtag tag` process that measures peak memory tags: some photos and the 12 MP ones.
        self.memory_folders = [str(link_folder(photos.paths[:memory_photos], root / "memory"))]
        self.memory_folders += [str(self.large_folder)] if self.large_folder else []
        self.first_photo = photos.paths[0]
        self._pixels: dict[tuple, tuple[np.ndarray, Path]] = {}

    def pixels(self, size: tuple[int, int], resize: str) -> tuple[np.ndarray, Path]:
        """Every photo at `size` and `resize` (decoded on first use), and the .npy file holding them."""
        key = (tuple(size), resize)
        if key not in self._pixels:
            file = self.root / f"pixels_{size[0]}x{size[1]}_{resize}.npy"
            self._pixels[key] = (decode_photos(self.photos.paths, tuple(size), resize, file), file)
        return self._pixels[key]

    def results_file(self, name: str) -> Path:
        """A fresh path for a results file (tagging writes real results, like `dogtag tag`)."""
        folder = self.root / "results"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.csv"
        path.unlink(missing_ok=True)
        return path
