"""Learning from corrections, measured (issue 23): new labels from few photos, a shelter's own photos,
the cost on this machine, and flip (each photo and its mirror). TensorFlow-free: the bundled int8
models through the edge app, and dogtag.learn's own functions (fit, predict, folds, the bank).

    python -m dogtag.benchmarks.learning                              # every part, accurate model
    python -m dogtag.benchmarks.learning --models accurate,fast --parts new-labels,shelter,flip
    python -m dogtag.benchmarks.learning --parts cost --cost-photos 1000

Parts:
- new-labels: a base model without the ten HELD_OUT breeds (the bundled model's probabilities over
  the other 110, renormalised: exactly a softmax head without those ten columns; the features come
  from a backbone fine-tuned with all 120, which flatters the figures a little), and its bank without
  them; then the ten are learned as new labels from k = 5, 10, 20 Stanford TRAIN photos each (DRAWS
  random draws, averaged). Judged on Stanford TEST photos: top-1 on the ten, and on the other 110
  before and after.
- shelter: dogs-in-the-wild (real photos from outside ImageNet) in 5 folds: a head learned from four
  folds as if a volunteer had reviewed every photo (not-dogs too), judged on the fifth against the
  base model; the photos as they are and as 96 px thumbnails, each learned from its own kind.
- flip: on dogs-in-the-wild, tagging with the average of a photo's and its mirror's probabilities,
  and the shelter part again with averaged embeddings (the bank stays as shipped, unflipped).
- cost: COST_PHOTOS generated 12 MP phone photos (real Stanford photos enlarged), each with a
  correction in a reviews file; `dogtag learn` in a fresh process with an empty embedding cache
  (wall seconds, peak memory), then again after 10 more corrections (the cache).

Embeddings are computed once into --cache (edge_app.embeddings' cache, resumable after a kill; the
mirrors in a cache of their own) and every experiment reads them. dogs-in-the-wild stays out of the
bank and the bundled models: it is only read here, and nothing is written beside it.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import click

# numpy's BLAS on one thread, as the dogtag command sets it (dogtag/cli.py): hundreds of small head
# fits run here, where OpenBLAS's threads spin for more than they give. Before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from dogtag.benchmarks.fresh_process import DOGTAG, python_command, run_fresh
from dogtag.benchmarks.machine import describe_machine, load_average
from dogtag.edge_app.classifier import resolve_model
from dogtag.edge_app.embeddings import EmbeddingCache, embed_photos, join, photo_key
from dogtag.edge_app.images import PhotoError, load_photo
from dogtag.edge_app.learned import EPS
from dogtag.edge_app.results import default_results_path
from dogtag.edge_app.reviews import Review, append_review, reviews_path
from dogtag.edge_app.runtime import Model, Outputs
from dogtag.learn.bank import find_bank
from dogtag.learn.examples import label_key
from dogtag.learn.fit import (
    NOT_A_DOG_LABEL,
    ClassStats,
    FitOptions,
    Split,
    class_stats,
    fit,
    folds,
    predict,
    projection,
)
from dogtag.train.dataset import Dataset, load_split
from dogtag.train.wild import DEFAULT_WILD, wild_metrics, wild_split

# Chosen up front, before any figure: three with a close sibling that stays among the 110 (Eskimo
# dog / Siberian husky and malamute, Lhasa / Shih-Tzu, American / Staffordshire bullterrier), then
# seven drawn from the rest with numpy's default_rng(23).
HELD_OUT = ("Eskimo dog", "Lhasa", "American Staffordshire terrier", "Border terrier", "Pekinese",
            "Scotch terrier", "Shetland sheepdog", "black-and-tan coonhound", "briard", "schipperke")
KS = (5, 10, 20)
DRAWS = 3  # random draws of the k training photos (seeds 0, 1, 2), averaged
FOLDS = 5
COST_PHOTOS = 1000
COST_MORE = 10
COST_MEGAPIXELS = 12.0
PARTS = ("new-labels", "shelter", "flip", "cost")
DEFAULT_STANFORD = Path(os.environ.get("DOGTAG_DATA", "../shared/datasets/stanford-dogs"))


# ---------------------------------------------------------------- embeddings, computed once


def embed(model: Model, photos: list[Path], cache_root: Path, mirror: bool = False,
          log: Callable[[str], None] = print) -> Outputs:
    """The model's outputs for every photo (mirrored left-right with `mirror`), from the cache where
    it has them; computed now and cached otherwise. Every photo must be readable."""
    name = "mirror" if mirror else "photos"
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 512 < 16:
            log(f"  {name}: {done}/{total} embedded ({time.perf_counter() - started:.0f} s)")

    if not mirror:
        embedded = embed_photos(model, photos, EmbeddingCache(model.info.model_version, cache_root), progress)
        if embedded.failed:
            raise PhotoError(f"unreadable photos: {embedded.failed}")
        return embedded.outputs
    # The mirror goes through the same decode and resize, flipped just before the model: a cache of
    # its own keyed as the photos' (the edge app has no mirror option; it would take one if it paid).
    cache = EmbeddingCache(model.info.model_version + "+mirror", cache_root)
    keys = [photo_key(photo) for photo in photos]
    pending = [i for i, key in enumerate(keys) if cache.get(key) is None]
    for start in range(0, len(pending), 16):
        batch = pending[start : start + 16]
        pixels = np.stack([load_photo(photos[i], model.info.input_size, model.info.resize) for i in batch])
        cache.add([keys[i] for i in batch], model.run_all(pixels[:, :, ::-1]))
        progress(len(photos) - len(pending) + start + len(batch), len(photos))
    return join([cache.get(key) for key in keys], model.dog_output is not None)


def averaged(a: Outputs, b: Outputs) -> Outputs:
    """The mean of two models' (or a photo's and its mirror's) outputs."""
    return Outputs((a.breeds + b.breeds) / 2, None if a.dog is None else (a.dog + b.dog) / 2,
                   (a.features + b.features) / 2)


def stanford_split(root: Path, split: str) -> Dataset:
    """Stanford Dogs' 'train' or 'test' split: the official layout, or ROOT/train and ROOT/test with a
    folder per breed (a small set made for a check)."""
    if (Path(root) / split).is_dir() and not (Path(root) / "train_list.mat").is_file():
        return load_split(Path(root) / split, split)
    return load_split(root, split)


def label_order(dataset: Dataset, labels: tuple[str, ...]) -> np.ndarray:
    """For each breed of the dataset, its index among the model's labels (names matched as learn does)."""
    index = {label_key(label): i for i, label in enumerate(labels)}
    missing = [breed for breed in dataset.breeds if label_key(breed) not in index]
    if missing:
        raise ValueError(f"breeds the model does not have: {missing}")
    return np.array([index[label_key(breed)] for breed in dataset.breeds])


# ---------------------------------------------------------------- 1. new labels from few photos


@dataclass(frozen=True)
class Without:
    """A base model without some breeds: which of its labels it keeps, and the new label of each held-out one."""

    keep: np.ndarray  # indices of the kept labels, in the base's order
    held: np.ndarray  # indices of the held-out labels
    new_label: dict  # base label index -> label index in the learned model (len(keep) + j)

    def outputs(self, outputs: Outputs) -> Outputs:
        """The base's outputs as a head without the held-out columns gives them (renormalised softmax).

        The int8 model's probabilities come in steps, so a photo can give the kept breeds nothing at
        all: a floor of EPS (the learned head's own, below which it tells no probabilities apart) first.
        """
        kept = outputs.breeds[:, self.keep] + EPS
        return Outputs(kept / kept.sum(1, keepdims=True), outputs.dog, outputs.features)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """Base label indices as the learned model numbers them: kept ones first, then the new ones."""
        position = {int(label): i for i, label in enumerate(self.keep)} | self.new_label
        return np.array([position[int(label)] for label in labels])


def without(labels: tuple[str, ...], held_out: tuple[str, ...]) -> Without:
    """The split of a model's labels into kept and held out (new labels in HELD_OUT order)."""
    index = {label_key(label): i for i, label in enumerate(labels)}
    unknown = [name for name in held_out if label_key(name) not in index]
    if unknown:
        raise ValueError(f"held-out breeds the model does not have: {unknown}")
    held = np.array([index[label_key(name)] for name in held_out])
    keep = np.array([i for i in range(len(labels)) if i not in set(held.tolist())])
    return Without(keep, held, {int(label): len(keep) + j for j, label in enumerate(held)})


def draw_training_photos(train: Dataset, order: np.ndarray, held: np.ndarray, k: int, seed: int) -> list[int]:
    """k training photos of each held-out breed (sample indices); the k of a smaller k are among them."""
    rng = np.random.default_rng(seed)
    chosen = []
    model_labels = order[[s.label for s in train.samples]]
    for label in held:
        members = np.flatnonzero(model_labels == label)
        chosen.extend(int(i) for i in rng.permutation(members)[:k])
    return chosen


def new_labels(model: Model, stanford: Path, cache_root: Path, options: FitOptions,
               held_out: tuple[str, ...] = HELD_OUT, ks: tuple[int, ...] = KS, draws: int = DRAWS,
               test_per_breed: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Part 1: the held-out breeds learned back from k training photos each (see the module docstring)."""
    train, test = stanford_split(stanford, "train"), stanford_split(stanford, "test")
    split = without(model.info.labels, held_out)
    train_order, test_order = label_order(train, model.info.labels), label_order(test, model.info.labels)
    test_rows = _test_subset(test, test_per_breed)
    test_labels = test_order[[test.samples[i].label for i in test_rows]]
    log(f"new labels: {len(test_rows)} test photos")
    test_outputs = embed(model, [test.samples[i].path for i in test_rows], cache_root, log=log)
    draws_rows = {(k, seed): draw_training_photos(train, train_order, split.held, k, seed)
                  for seed in range(draws) for k in ks}
    every = sorted({i for rows in draws_rows.values() for i in rows})
    log(f"new labels: {len(every)} training photos of the held-out breeds")
    train_outputs = embed(model, [train.samples[i].path for i in every], cache_root, log=log)
    row_of = {sample: row for row, sample in enumerate(every)}
    bank = _bank_without(model, split)
    space = projection(bank.outputs.features, options.rank)
    stats = _stats_without(model, train, train_order, split, cache_root, log)
    base_test = Split(split.outputs(test_outputs), split.labels(test_labels))
    is_new = np.isin(test_labels, split.held)
    base_right = base_test.outputs.breeds.argmax(1) == base_test.labels
    results = {"held_out": list(held_out), "test_photos_new": int(is_new.sum()), "test_photos_others": int((~is_new).sum()),
               "full_model_top1_new": _mean(test_outputs.breeds.argmax(1)[is_new] == test_labels[is_new]),
               "full_model_top1_others": _mean(test_outputs.breeds.argmax(1)[~is_new] == test_labels[~is_new]),
               "base_top1_others": _mean(base_right[~is_new]), "bank_photos": len(bank), "by_k": {}}
    results["full_model_within_half_point"] = _full_model_within(test_outputs, test_labels, split.held, is_new,
                                                                 results["base_top1_others"], 0.5)
    for k in ks:
        runs = []
        for seed in range(draws):
            rows = [row_of[i] for i in draws_rows[(k, seed)]]
            labels = split.labels(train_order[[train.samples[i].label for i in draws_rows[(k, seed)]]])
            examples = Split(split.outputs(_rows(train_outputs, rows)), labels)
            began = time.perf_counter()
            head = fit(examples, bank, len(model.info.labels), len(split.keep), options, space, stats)
            seconds = time.perf_counter() - began
            right = predict(head, base_test).breeds.argmax(1) == base_test.labels
            runs.append({"seed": seed, "top1_new": _mean(right[is_new]), "top1_others": _mean(right[~is_new]),
                         "fit_s": round(seconds, 2), "per_breed_new": _per_breed(right, test_labels, split.held, model)})
        results["by_k"][k] = _summarise(runs, results["base_top1_others"])
        log(f"  k={k}: new {results['by_k'][k]['top1_new']:.1%}, others {results['by_k'][k]['top1_others']:.1%} "
            f"(base {results['base_top1_others']:.1%})")
    return results


def _test_subset(test: Dataset, per_breed: int | None) -> list[int]:
    if per_breed is None:
        return list(range(len(test)))
    rng = np.random.default_rng(0)
    labels = np.array([s.label for s in test.samples])
    return sorted(int(i) for label in sorted(set(labels.tolist()))
                  for i in rng.permutation(np.flatnonzero(labels == label))[:per_breed])


def _bank_without(model: Model, split: Without) -> Split:
    found = find_bank(model.info, model.path)
    if found is None:
        raise FileNotFoundError(f"{model.path}: no bank of training photos for this model (dogtag.learn.bank)")
    bank = found[0]
    rows = np.flatnonzero(np.isin(bank.labels, split.keep))
    outputs = Outputs(bank.breeds[rows], bank.dog[rows], bank.features[rows])
    return Split(split.outputs(outputs), split.labels(bank.labels[rows]))


def _full_model_within(outputs: Outputs, labels: np.ndarray, held: np.ndarray, is_new: np.ndarray,
                       base_others: float, points: float) -> dict:
    """What the target asks of a learned head, asked of the bundled model (trained on all 120 breeds,
    every training photo): its ten columns lowered by a constant, in steps of 0.25, until the other 110
    lose at most `points` points against the base without the ten; top-1 on the ten there."""
    logits = np.log(outputs.breeds + EPS)
    for shift in np.arange(0.0, 10.01, 0.25):
        moved = logits.copy()
        moved[:, held] -= shift
        right = moved.argmax(1) == labels
        change = 100 * (float(right[~is_new].mean()) - base_others)
        if change >= -points:
            return {"shift": float(shift), "top1_new": _mean(right[is_new]), "others_change_points": round(change, 2)}
    return {}


def _stats_without(model: Model, train: Dataset, order: np.ndarray, split: Without, cache_root: Path,
                   log: Callable[[str], None]) -> ClassStats:
    """The kept breeds' ClassStats from all their training photos, as the bank's are made from all
    120 (dogtag.learn.bank): the held-out breeds take no part, not even in the shared covariance."""
    labels = order[[s.label for s in train.samples]]
    rows = np.flatnonzero(np.isin(labels, split.keep))
    log(f"new labels: {len(rows)} training photos of the other breeds (their statistics)")
    outputs = embed(model, [train.samples[i].path for i in rows], cache_root, log=log)
    return class_stats(outputs.features, split.labels(labels[rows]), len(split.keep))


def _rows(outputs: Outputs, rows: list[int] | np.ndarray) -> Outputs:
    rows = np.asarray(rows, np.int64)
    return Outputs(outputs.breeds[rows], None if outputs.dog is None else outputs.dog[rows], outputs.features[rows])


def _per_breed(right: np.ndarray, labels: np.ndarray, held: np.ndarray, model: Model) -> dict:
    return {model.info.labels[label]: _mean(right[labels == label]) for label in held}


def _summarise(runs: list[dict], base_others: float) -> dict:
    new = [run["top1_new"] for run in runs]
    others = [run["top1_others"] for run in runs]
    breeds = runs[0]["per_breed_new"]
    return {"top1_new": round(float(np.mean(new)), 4), "top1_new_range": [min(new), max(new)],
            "top1_others": round(float(np.mean(others)), 4),
            "others_change_points": round(100 * (float(np.mean(others)) - base_others), 2),
            "fit_s_median": float(np.median([run["fit_s"] for run in runs])),
            "per_breed_new": {b: round(float(np.mean([r["per_breed_new"][b] for r in runs])), 4) for b in breeds},
            "draws": runs}


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 4) if len(values) else float("nan")


# ---------------------------------------------------------------- 2. a shelter's own photos (and 4. flip)


@dataclass(frozen=True)
class WildPhotos:
    """dogs-in-the-wild as one kind of photo (as they are, or thumbnails): outputs, labels, sources."""

    outputs: Outputs
    mirrored: Outputs | None
    labels: np.ndarray  # the model's label index; NOT_A_DOG_LABEL for photos without a dog
    sources: list[str]


def wild_photos(model: Model, wild_root: Path, stanford: Path | None, cache_root: Path, kind: str,
                mirror: bool, log: Callable[[str], None] = print) -> WildPhotos:
    """The 'wild' or 'wild96' photos (thumbnails made once under cache_root), embedded."""
    breeds, wnids = _breeds_and_wnids(model, stanford)
    wild = wild_split(kind, wild_root, breeds, wnids, cache_root / "wild96-photos")
    photos = [sample.path for sample in wild.dataset.samples]
    log(f"{kind}: {len(photos)} photos")
    outputs = embed(model, photos, cache_root, log=log)
    mirrored = embed(model, photos, cache_root, mirror=True, log=log) if mirror else None
    order = {label_key(name): i for i, name in enumerate(model.info.labels)}
    labels = np.array([NOT_A_DOG_LABEL if s.label < 0 else order[label_key(breeds[s.label])]
                       for s in wild.dataset.samples])
    return WildPhotos(outputs, mirrored, labels, wild.sources)


def _breeds_and_wnids(model: Model, stanford: Path | None) -> tuple[list[str], list[str]]:
    """The model's breeds with their wnids: from the model file, else from Stanford's folder names."""
    wnids = model.info.extra.get("wnids")
    if wnids and len(wnids) == len(model.info.labels):
        return list(model.info.labels), list(wnids)
    if stanford is None:
        raise ValueError(f"{model.path}: the model carries no wnids; pass the Stanford Dogs folder")
    dataset = stanford_split(stanford, "train")
    return dataset.breeds, dataset.wnids


def shelter(model: Model, photos: WildPhotos, options: FitOptions, outputs: Outputs | None = None,
            k: int = FOLDS, seed: int = 0) -> dict:
    """Part 2: each fold judged by a head learned from the other folds' photos (every photo reviewed,
    not-dogs included) and by the base; wild_metrics (the project's scoring) of both."""
    outputs = outputs or photos.outputs
    examples = Split(outputs, photos.labels)
    found = find_bank(model.info, model.path)
    bank = Split(Outputs(found[0].breeds, found[0].dog, found[0].features), found[0].labels) if found else None
    space = found[0].space if found else None
    assignment = folds(photos.labels, k, seed)
    learned = [None] * len(photos.labels)
    fit_seconds = []
    for fold in range(k):
        held, kept = np.flatnonzero(assignment == fold), np.flatnonzero(assignment != fold)
        began = time.perf_counter()
        head = fit(examples.take(kept), bank, len(model.info.labels), len(model.info.labels), options, space)
        fit_seconds.append(time.perf_counter() - began)
        answer = predict(head, examples.take(held))
        for row, index in enumerate(held):
            learned[index] = _rows(answer, [row])
    new = join(learned, outputs.dog is not None)
    score = _scorer(model, photos)
    before, after = score(outputs), score(new)
    return {"photos": len(photos.labels), "folds": k, "base": before, "learned": after,
            "top1_change_points": round(100 * (after["top1"] - before["top1"]), 2),
            "fit_s_median": round(float(np.median(fit_seconds)), 2)}


def _scorer(model: Model, photos: WildPhotos) -> Callable[[Outputs], dict]:
    def score(outputs: Outputs) -> dict:
        dog = outputs.dog if outputs.dog is not None else np.ones(len(photos.labels))
        return wild_metrics(outputs.breeds, dog, photos.labels, photos.sources, model.info.min_confidence,
                            model.info.min_dog)
    return score


def flip(model: Model, photos: WildPhotos, options: FitOptions) -> dict:
    """Part 4: tagging with the mean of photo and mirror, and learning from mean embeddings."""
    both = averaged(photos.outputs, photos.mirrored)
    score = _scorer(model, photos)
    plain, flipped = score(photos.outputs), score(both)
    learned_flip = shelter(model, photos, options, outputs=both)
    return {"tagging": {"plain": plain, "flip": flipped,
                        "top1_change_points": round(100 * (flipped["top1"] - plain["top1"]), 2)},
            "learning_with_flip": learned_flip}


# ---------------------------------------------------------------- 3. the cost on this machine


def phone_photos(stanford: Path, folder: Path, count: int, megapixels: float,
                 log: Callable[[str], None] = print) -> list[tuple[Path, str]]:
    """`count` JPEGs of `megapixels` (4:3), real Stanford TRAIN photos enlarged, made once in `folder`;
    (photo, breed) pairs, breeds dealt round so that each has about as many."""
    from PIL import Image

    train = stanford_split(stanford, "train")
    rng = np.random.default_rng(0)
    by_breed = [rng.permutation([i for i, s in enumerate(train.samples) if s.label == b]).tolist()
                for b in range(len(train.breeds))]
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for n in range(count):
        breed = n % len(by_breed)
        sample = train.samples[by_breed[breed][(n // len(by_breed)) % len(by_breed[breed])]]
        target = folder / f"phone_{n:05d}.jpg"
        if not target.exists():
            with Image.open(sample.path) as image:
                enlarged = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
            temporary = target.with_suffix(".tmp")
            enlarged.save(temporary, format="JPEG", quality=90)
            os.replace(temporary, target)
            if (n + 1) % 100 == 0:
                log(f"  {n + 1}/{count} phone photos made")
        made.append((target, train.breeds[sample.label]))
    return made


def cost(model_name: str, stanford: Path, cache_root: Path, count: int = COST_PHOTOS, more: int = COST_MORE,
         megapixels: float = COST_MEGAPIXELS, log: Callable[[str], None] = print) -> dict:
    """Part 3: `dogtag learn` on `count` corrected phone photos in a fresh process with an empty
    embedding cache, then again after `more` corrections; wall seconds and peak memory of each."""
    folder = cache_root / f"phone-photos-{megapixels:g}mp"
    photos = phone_photos(stanford, folder, count + more, megapixels, log)
    reviews = reviews_path(default_results_path(folder))
    reviews.unlink(missing_ok=True)
    for photo, breed in photos[:count]:
        append_review(reviews, Review(photo.name, breed, "breed", "benchmark", "2026-12-01T08:00:00Z"))
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {"DOGTAG_CACHE": str(Path(scratch) / "cache")}
        command = python_command(DOGTAG, "learn", str(folder), "--model", model_name, "--force",
                                 "--out", str(Path(scratch) / "learned"))
        for name, photo_count in (("first", count), ("after_more", count + more)):
            if name == "after_more":
                for photo, breed in photos[count:]:
                    append_review(reviews, Review(photo.name, breed, "breed", "benchmark", "2026-12-02T08:00:00Z"))
            log(f"cost: dogtag learn on {photo_count} corrections ({name})")
            run = run_fresh(command, timeout=1800, env=env)
            if run.returncode:
                raise RuntimeError(run.failure("dogtag learn") or "dogtag learn failed")
            runs[name] = {"corrections": photo_count, "seconds": round(run.seconds, 2),
                          "peak_mb": None if run.peak_rss_mb is None else round(run.peak_rss_mb, 1)}
            log(f"  {runs[name]}")
    size = photos[0][0].stat().st_size if photos else 0
    return {"photos": count, "more": more, "megapixels": megapixels, "jpeg_mb_each": round(size / 1e6, 2),
            "command": shlex.join(["dogtag", "learn", "FOLDER", "--model", model_name, "--force", "--out", "OUT"]),
            **runs}


# ---------------------------------------------------------------- the command


def fit_options(model: Model, settings: tuple[str, ...]) -> FitOptions:
    """FitOptions as `dogtag learn` uses them (the base's min_dog), with KEY=VALUE overrides."""
    options = FitOptions(min_dog=model.info.min_dog)
    known = {f.name: f.type for f in fields(FitOptions)}
    for setting in settings:
        key, _, value = setting.partition("=")
        if key not in known or not value:
            raise click.BadParameter(f"{setting!r}: use KEY=VALUE with KEY one of {', '.join(known)}")
        options = replace(options, **{key: (int if key in ("rank", "steps") else float)(value)})
    return options


def run_parts(model_name: str, parts: tuple[str, ...], stanford: Path, wild: Path, cache_root: Path,
              settings: tuple[str, ...] = (), held_out: tuple[str, ...] = HELD_OUT, ks: tuple[int, ...] = KS,
              draws: int = DRAWS, test_per_breed: int | None = None, cost_photos: int = COST_PHOTOS,
              cost_megapixels: float = COST_MEGAPIXELS, log: Callable[[str], None] = print) -> dict:
    """Every asked part for one bundled model (or model file); the figures as a dict."""
    model = Model(resolve_model(model_name))
    options = fit_options(model, settings)
    results: dict = {"model": model_name, "model_version": model.info.model_version,
                     "fit_options": {f.name: getattr(options, f.name) for f in fields(FitOptions)}}
    if "new-labels" in parts:
        results["new_labels"] = new_labels(model, stanford, cache_root, options, held_out, ks, draws,
                                           test_per_breed, log)
    if "shelter" in parts or "flip" in parts:
        for kind in ("wild", "wild96"):
            photos = wild_photos(model, wild, stanford, cache_root, kind, mirror="flip" in parts, log=log)
            if "shelter" in parts:
                results.setdefault("shelter", {})[kind] = shelter(model, photos, options)
                log(f"  shelter {kind}: {results['shelter'][kind]['top1_change_points']:+.1f} points")
            if "flip" in parts:
                results.setdefault("flip", {})[kind] = flip(model, photos, options)
    if "cost" in parts:
        results["cost"] = cost(model_name, stanford, cache_root, cost_photos, megapixels=cost_megapixels, log=log)
    return results


def table(results: list[dict]) -> str:
    """The figures as the README shows them (markdown)."""
    lines = []
    for result in results:
        name = result["model"]
        if "new_labels" in result:
            figures = result["new_labels"]
            lines += [f"**{name}: new labels** ({figures['test_photos_new']} test photos of the 10 held-out breeds, "
                      f"{figures['test_photos_others']} of the other 110; mean of {len(next(iter(figures['by_k'].values()))['draws'])} draws)", "",
                      "| k photos each | top-1 new breeds (min-max) | top-1 other 110 | change on the others |",
                      "|---:|---:|---:|---:|",
                      f"| 0 (base without them) | 0% | {figures['base_top1_others']:.1%} | |"]
            for k, row in figures["by_k"].items():
                low, high = row["top1_new_range"]
                lines.append(f"| {k} | {row['top1_new']:.1%} ({low:.1%}-{high:.1%}) | {row['top1_others']:.1%} | "
                             f"{row['others_change_points']:+.2f} points |")
            lines += [f"| all 120 in training (bundled model) | {figures['full_model_top1_new']:.1%} | "
                      f"{figures['full_model_top1_others']:.1%} | |"]
            within = figures.get("full_model_within_half_point") or {}
            if within:
                lines.append(f"| the same, its ten columns lowered by {within['shift']:g} (others within 0.5) | "
                             f"{within['top1_new']:.1%} | | {within['others_change_points']:+.2f} points |")
            lines.append("")
        if "shelter" in result or "flip" in result:
            lines += [f"**{name}: dogs-in-the-wild**, 5-fold (top-1 of dogs)", "",
                      "| photos | base | learned from the other folds | flip (tagging) | learned, flip embeddings |",
                      "|---|---:|---:|---:|---:|"]
            for kind in ("wild", "wild96"):
                learned = result.get("shelter", {}).get(kind)
                flipped = result.get("flip", {}).get(kind)
                base = (learned or flipped["learning_with_flip"])["base"]["top1"]
                lines.append(" | ".join([
                    f"| {'as they are' if kind == 'wild' else '96 px thumbnails'}", f"{base:.1%}",
                    f"{learned['learned']['top1']:.1%} ({learned['top1_change_points']:+.1f})" if learned else "",
                    f"{flipped['tagging']['flip']['top1']:.1%}" if flipped else "",
                    f"{flipped['learning_with_flip']['learned']['top1']:.1%}" if flipped else ""]) + " |")
            lines.append("")
        if "cost" in result:
            c = result["cost"]
            lines += [f"**{name}: cost** (`{c['command']}`, {c['megapixels']:g} MP JPEGs of {c['jpeg_mb_each']} MB)", "",
                      "| run | corrections | wall seconds | peak memory |", "|---|---:|---:|---:|",
                      f"| first (empty cache) | {c['first']['corrections']} | {c['first']['seconds']} | {c['first']['peak_mb']} MB |",
                      f"| after {c['more']} more | {c['after_more']['corrections']} | {c['after_more']['seconds']} | "
                      f"{c['after_more']['peak_mb']} MB |", ""]
    return "\n".join(lines)


@click.command()
@click.option("--models", default="accurate", show_default=True, help="Bundled model names or files, comma-separated.")
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Which measurements, comma-separated.")
@click.option("--data", "stanford", type=click.Path(path_type=Path), default=DEFAULT_STANFORD, show_default=True,
              help="Stanford Dogs (official layout, or a folder per breed for a quick check).")
@click.option("--wild", type=click.Path(path_type=Path), default=DEFAULT_WILD, show_default=True,
              help="dogs-in-the-wild.")
@click.option("--cache", "cache_root", type=click.Path(path_type=Path), default=Path("cache/learning"),
              show_default=True, help="Embeddings, thumbnails and generated photos, kept between runs.")
@click.option("--held-out", default=",".join(HELD_OUT), show_default=True, help="The breeds learned back as new labels.")
@click.option("--ks", default=",".join(map(str, KS)), show_default=True, help="Training photos per new breed.")
@click.option("--draws", type=click.IntRange(1), default=DRAWS, show_default=True)
@click.option("--test-per-breed", type=click.IntRange(1), default=None, help="A fixed subset of the test split [all].")
@click.option("--cost-photos", type=click.IntRange(1), default=COST_PHOTOS, show_default=True)
@click.option("--cost-megapixels", type=float, default=COST_MEGAPIXELS, show_default=True)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A FitOptions field (pull, bank_weight, ...).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-results"),
              show_default=True, help="Folder for learning.json and learning.md.")
def main(models, parts, stanford, wild, cache_root, held_out, ks, draws, test_per_breed, cost_photos,
         cost_megapixels, settings, out_dir) -> None:
    """Measure learning from corrections: new labels, a shelter's own photos, flip, and the cost."""
    chosen = tuple(p for p in parts.split(",") if p)
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise click.BadParameter(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    report = {"machine": describe_machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "held_out": held_out.split(","), "results": []}
    for name in (m for m in models.split(",") if m):
        report["results"].append(run_parts(
            name, chosen, stanford, wild, cache_root, settings, tuple(held_out.split(",")),
            tuple(int(k) for k in ks.split(",")), draws, test_per_breed, cost_photos, cost_megapixels,
            log=lambda line: click.echo(line, err=True)))
    report["load_average_after"] = load_average()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "learning.json").write_text(json.dumps(report, indent=1, default=_plain) + "\n")
    text = table(report["results"])
    (out_dir / "learning.md").write_text(text + "\n")
    click.echo(text)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value)} is not JSON")


if __name__ == "__main__":
    main()
