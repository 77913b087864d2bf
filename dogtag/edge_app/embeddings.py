"""Embeddings computed once per photo: the base model's features, breed and dog probabilities, cached.

Learning again after ten more corrections decodes only those ten photos; re-tagging a folder with a
learned model reads the cache instead of decoding photos it already has.

The cache is a folder per base model (its model_version: another base model never reads another's
features), in the user's cache folder ($DOGTAG_CACHE, else $XDG_CACHE_HOME/dogtag, else
~/.cache/dogtag) under embeddings/. A photo is keyed by its real path, size and modification time,
so a photo changed since is computed again. Each batch is written as one small .npz file, atomically
(a temporary name renamed into place): a run killed at any point loses at most the batch in hand,
and the next run resumes. Many small files are merged into one now and then.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogtag.edge_app.images import PhotoError, load_photo
from dogtag.edge_app.runtime import Model, Outputs

BATCH = 16
MERGE_ABOVE = 64  # chunk files; more are merged into one when the cache is opened


def cache_root() -> Path:
    """Where Dogtag keeps caches: $DOGTAG_CACHE, else $XDG_CACHE_HOME/dogtag, else ~/.cache/dogtag."""
    if os.environ.get("DOGTAG_CACHE"):
        return Path(os.environ["DOGTAG_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dogtag"


def photo_key(path: str | os.PathLike) -> str:
    """The cache key of a photo file: real path, size and modification time (raises OSError if gone)."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}"


@dataclass
class Embedded:
    """The base model's outputs for photos, in the order asked, and the photos that could not be read."""

    outputs: Outputs
    kept: list[int]  # the index in `photos` of each row of outputs
    failed: dict[str, str]  # photo path -> why it was skipped
    computed: int  # photos decoded and run through the model (the rest came from the cache)


class EmbeddingCache:
    """The cached embeddings of one base model (see the module docstring)."""

    def __init__(self, model_version: str, root: str | os.PathLike | None = None):
        slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", model_version)[:60]
        digest = hashlib.sha256(model_version.encode()).hexdigest()[:10]
        self.folder = Path(root or cache_root()) / "embeddings" / f"{slug}-{digest}"
        self.rows: dict[str, tuple[np.ndarray, np.ndarray, np.float32]] = {}
        self._load()

    def _chunks(self) -> list[Path]:
        return sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []

    def _load(self) -> None:
        chunks = self._chunks()
        for chunk in chunks:  # in name order, which is time order: a later entry wins
            try:
                with np.load(chunk) as data:
                    # each data[name] reads the whole array again: once per chunk, not once per row
                    # (per row, a merged chunk of n photos took n times its size in memory)
                    keys, features, breeds, dog = data["keys"], data["features"], data["breeds"], data["dog"]
                for i, key in enumerate(keys):
                    self.rows[str(key)] = (features[i], breeds[i], dog[i])
            except (OSError, ValueError, KeyError):
                continue  # unreadable (another program's file, a disk error): its photos are computed again
        if len(chunks) > MERGE_ABOVE:
            self._write(list(self.rows))
            for chunk in chunks:
                chunk.unlink(missing_ok=True)

    def get(self, key: str) -> Outputs | None:
        """The cached outputs of one photo (as a batch of one), or None."""
        row = self.rows.get(key)
        if row is None:
            return None
        features, breeds, dog = row
        return Outputs(breeds=breeds[None].astype(np.float32), dog=np.array([dog], np.float32),
                       features=features[None].astype(np.float32))

    def add(self, keys: list[str], outputs: Outputs) -> None:
        """Cache a batch: one new file, written atomically."""
        dog = outputs.dog if outputs.dog is not None else np.ones(len(keys), np.float32)
        for i, key in enumerate(keys):
            self.rows[key] = (outputs.features[i].astype(np.float16), outputs.breeds[i].astype(np.float32),
                              np.float32(dog[i]))
        self._write(keys)

    def _write(self, keys: list[str]) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = [self.rows[key] for key in keys]
        name = f"{time.time_ns():020d}-{os.getpid()}.npz"
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                np.savez(file, keys=np.array(keys), features=np.stack([r[0] for r in rows]),
                         breeds=np.stack([r[1] for r in rows]), dog=np.array([r[2] for r in rows], np.float32))
            os.replace(temporary, self.folder / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def as_stored(outputs: Outputs) -> Outputs:
    """The outputs as the cache keeps them (features rounded to float16), so that a photo gives the
    same answer whether its embedding was just computed or read back from the cache."""
    return Outputs(outputs.breeds, outputs.dog, outputs.features.astype(np.float16).astype(np.float32))


def embed_photos(
    model: Model, photos: list[str | os.PathLike], cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None = None, max_pixels: int | None = None,
) -> Embedded:
    """The base model's outputs (features included) for every photo, from the cache where it has them.

    Photos are decoded and run in batches of BATCH, each batch cached as soon as it is computed.
    `progress(done, total)` is called after each batch. Unreadable photos are left out of the
    outputs and listed in `failed`; the outputs follow the order of the other photos.
    """
    if model.features_output is None:
        raise ValueError(f"{model.path}: this model file has no features output; "
                         "re-export it (dogtag export) or add it (python -m dogtag.export.add_features_output)")
    total = len(photos)
    found: dict[int, Outputs] = {}
    failed: dict[str, str] = {}
    pending: list[tuple[int, str]] = []
    for index, photo in enumerate(photos):
        try:
            key = photo_key(photo)
        except OSError as error:
            failed[os.fspath(photo)] = error.strerror or str(error)
            continue
        cached = cache.get(key) if cache is not None else None
        if cached is None:
            pending.append((index, key))
        else:
            found[index] = cached
    done = total - len(pending)
    if progress:
        progress(done, total)
    size, resize = model.info.input_size, model.info.resize
    options = {} if max_pixels is None else {"max_pixels": max_pixels}
    computed = 0
    for start in range(0, len(pending), BATCH):
        batch, pixels = [], []
        for index, key in pending[start : start + BATCH]:
            try:
                pixels.append(load_photo(photos[index], size, resize, **options))
                batch.append((index, key))
            except PhotoError as error:
                failed[os.fspath(photos[index])] = str(error)
        if batch:
            outputs = as_stored(model.run_all(np.stack(pixels)))
            if cache is not None:
                cache.add([key for _, key in batch], outputs)
            for row, (index, _) in enumerate(batch):
                found[index] = Outputs(outputs.breeds[row : row + 1],
                                       None if outputs.dog is None else outputs.dog[row : row + 1],
                                       outputs.features[row : row + 1])
            computed += len(batch)
        done += len(pending[start : start + BATCH])
        if progress:
            progress(done, total)
    order = sorted(found)
    return Embedded(outputs=join([found[i] for i in order], model.dog_output is not None), kept=order,
                    failed=failed, computed=computed)


def join(parts: list[Outputs], has_dog: bool = True) -> Outputs:
    """Several Outputs as one batch."""
    if not parts:
        return Outputs(np.zeros((0, 0), np.float32), np.zeros(0, np.float32) if has_dog else None,
                       np.zeros((0, 0), np.float32))
    return Outputs(
        breeds=np.concatenate([p.breeds for p in parts]).astype(np.float32),
        dog=np.concatenate([p.dog for p in parts]).astype(np.float32) if has_dog else None,
        features=np.concatenate([p.features for p in parts]).astype(np.float32),
    )
