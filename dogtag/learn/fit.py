"""Fit a learned head in numpy, and judge it on held-out photos (k-fold) against the base model.

The head (edge_app.learned.Head) starts from the base model's own answer: its logits are the log of
the base's probabilities plus a correction linear in the photo's features, zero at the start. Why
the base's probabilities and not its dequantized head weights: the bundled breed logits are the sum
of two layers over two different feature vectors (the fine-tuned top's and the ImageNet backbone's),
and only one of them is the features output; the probabilities carry both, exactly, for every photo.

The correction is fitted by gradient descent (Adam) on a weighted cross-entropy:
- the examples of the base's own breeds (corrections and --labeled photos), classes balanced: each
  label weighs the same whatever its number of photos;
- the bank (bank.py), FitOptions.bank_weight times as much in total as the examples: training photos
  of all the base's breeds, so that a correction does not take photos of the other breeds;
- an L2 pull of the correction toward zero, i.e. toward the base model.
Only the columns of the base's labels that the examples name or that the base gave them are
corrected (the rest keep the base's logits exactly), in a PCA basis of FitOptions.rank dimensions of
the features (cheap on two cores; the weights are stored back in feature space).

The dog gate is corrected the same way (the same pull), on a logistic loss, when some example says
"not a dog" or shows a dog the base rejected; otherwise it stays the base's.

A label the base does not have is not fitted by gradient descent: ten photos in 1,280 dimensions
are learned by heart that way, and the new label then takes photos of every breed. It gets
edge_app.learned.NewLabels instead: its parents (the mean of the base's probabilities on its
photos) and the mean of its photos in the whitened space of ClassStats (the base breeds' means and
their shared within-breed covariance, from all of the bank's training photos), pulled toward its
parents' means by FitOptions.new_label_prior photos' worth. Measured on ten Stanford breeds held out of the
base (benchmarks/learning.py, k = 10 photos each): 74.9% of their test photos for 2.5 points of
the other 110 with the gradient-descent columns, 77.3% for 1.6 points this way.

Public: `fit`, `predict`, `kfold`, `Split`, `FitOptions`, `ClassStats`, `class_stats`, `projection`,
`threshold_for_precision`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dogtag.edge_app.embeddings import join
from dogtag.edge_app.learned import EPS, Head, NewLabels, logit, sigmoid, softmax
from dogtag.edge_app.runtime import Outputs

NOT_A_DOG_LABEL = -1  # the label index of "not a dog" examples


@dataclass(frozen=True)
class FitOptions:
    """How a head is fitted; the defaults are what `dogtag learn` uses.

    pull: 1.0 since new labels left gradient descent (NewLabels); on dogs-in-the-wild, 5-fold, the
    accurate model, every photo reviewed (the benchmark's shelter part), pull 0.03 / 0.3 / 1 / 3 / 10
    changed top-1 by -1.2 / -0.3 / +0.6 / +0.6 / +0.3 points on the photos as they are and +0.3 / +1.5 /
    +0.6 / +0.6 / 0.0 on 96 px thumbnails; from 3 on, the gate (same pull) let more not-dogs through,
    at 1 it rejected every not-dog and kept 99.4% of the dogs (94.7% before learning).
    new_label_prior and new_label_sharpness: from the benchmark's new-labels part, accurate model, with
    NewLabels.bias (k = 5 / 10 / 20 photos: sharpness 0.1: 73.4 / 74.3 / 73.2% new for -1.6 / -1.3 / -1.2
    points on the others; 0.15: 76.2 / 77.1 / 76.5% for -2.0 / -1.6 / -1.5; 0.2: 77.2 / 78.4 / 77.6% for
    -2.4 / -1.8 / -1.7; all with prior 2; prior 1 with 0.15: 77.4 / 77.3 / 76.4% for -2.0 / -1.6 / -1.4).
    Without the bias, sharpness 0.6 and prior 2 gave 69.4 / 74.3 / 76.0% for -1.6 / -1.6 / -1.6.

    bank_weight 3 comes from before new labels had their own scoring (one quick check: with pull 0.03,
    bank_weight 1 cost the base's breeds 1.7 points and 3 cost nothing); the benchmark's shelter part
    measures the pair as it stands.
    """

    pull: float = 1.0  # L2 weight pulling the correction toward zero (the base model)
    bank_weight: float = 3.0  # the bank's share of the loss, relative to the examples'
    rank: int = 128  # PCA dimensions of the features the correction is fitted in
    steps: int = 200  # Adam steps
    learning_rate: float = 0.05
    min_dog: float = 0.5  # the base's dog threshold: a dog example below it teaches the dog gate
    new_label_prior: float = 1.0  # a new label's mean starts at its parents', worth this many photos
    new_label_sharpness: float = 0.15  # NewLabels.sharpness


@dataclass(frozen=True)
class Split:
    """Embedded photos with labels: base outputs plus the label index of each (NOT_A_DOG_LABEL for none)."""

    outputs: Outputs
    labels: np.ndarray  # (n,) int

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Split:
        """The rows `rows` only."""
        o = self.outputs
        return Split(Outputs(o.breeds[rows], None if o.dog is None else o.dog[rows], o.features[rows]),
                     self.labels[rows])


@dataclass(frozen=True)
class Projection:
    """How features are standardised and projected before the correction: mean, scale, basis (d, r)."""

    mean: np.ndarray
    scale: np.ndarray
    basis: np.ndarray


def projection(features: np.ndarray, rank: int) -> Projection:
    """Standardisation and an orthonormal (d, r) basis of the main directions of `features`.

    The basis comes from the eigenvectors of the covariance (d x d), cheaper than an SVD of the rows.
    """
    features = np.asarray(features, np.float32)
    mean = features.mean(0)
    scale = features.std(0) + 1e-3
    if features.shape[1] <= rank:
        return Projection(mean, scale, np.eye(features.shape[1], dtype=np.float32))
    standard = (features - mean) / scale
    _, vectors = np.linalg.eigh(standard.T @ standard)
    return Projection(mean, scale, vectors[:, ::-1][:, :rank].astype(np.float32).copy())


STATS_RANK = 256  # whitened dimensions of ClassStats
STATS_SHRINK = 0.3  # the within-breed covariance, shrunk this far toward its average variance


@dataclass(frozen=True)
class ClassStats:
    """The base breeds in a whitened feature space: standardisation, transform (d, r) and each breed's
    mean (labels, r), zero for a breed without photos (the centre)."""

    mean: np.ndarray
    scale: np.ndarray
    transform: np.ndarray
    means: np.ndarray

    def whiten(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.transform


def class_stats(features: np.ndarray, labels: np.ndarray, n_labels: int, rank: int = STATS_RANK,
                shrink: float = STATS_SHRINK) -> ClassStats:
    """Whitening by the shared within-label covariance of `features` (labels < 0 ignored), in the
    `rank` main directions, and each label's mean in that space."""
    labels = np.asarray(labels)
    rows = labels >= 0
    features, labels = np.asarray(features, np.float32)[rows], labels[rows]
    space = projection(features, min(rank, max(1, len(features) - 1)))
    x = ((features - space.mean) / space.scale) @ space.basis
    present = np.unique(labels)
    means = np.zeros((n_labels, x.shape[1]), np.float32)
    for label in present:
        means[label] = x[labels == label].mean(0)
    total = float((x**2).sum()) / max(1, len(x) - 1) / x.shape[1]  # the average variance, all photos together
    if len(x) - len(present) >= 2:
        residual = x - means[labels]
        covariance = residual.T @ residual / (len(x) - len(present))
    else:  # about one photo per label: no spread within a label to measure; the spread of all of them
        covariance = x.T @ x / max(1, len(x) - 1)
    # a floor relative to the photos' own spread: within-label spread near zero must not blow the space up
    average = max(float(np.trace(covariance)) / len(covariance), 1e-2 * total, 1e-6)
    covariance = (1 - shrink) * covariance + shrink * average * np.eye(len(covariance), dtype=np.float32)
    values, vectors = np.linalg.eigh(covariance)
    whitening = (vectors / np.sqrt(np.maximum(values, max(shrink, 1e-3) * average))).astype(np.float32)
    means = means @ whitening  # x is centred (projection), so a breed without photos sits at the centre
    return ClassStats(space.mean, space.scale, (space.basis @ whitening).astype(np.float32),
                      means.astype(np.float32))


def new_labels(examples: Split, stats: ClassStats, base_labels: int, labels: int,
               options: FitOptions) -> NewLabels:
    """The scoring of labels base_labels..labels-1 from their examples (see the module docstring)."""
    count = labels - base_labels
    parents = np.zeros((count, base_labels), np.float32)
    rank = stats.means.shape[1]
    means = np.zeros((count, rank), np.float32)
    bias = np.zeros(count, np.float32)
    whitened = stats.whiten(examples.outputs.features) if len(examples) else None
    prior = options.new_label_prior
    for j in range(count):
        rows = examples.labels == base_labels + j
        if not rows.any():  # none in this fold: the label stays at log(EPS)
            continue
        parent = examples.outputs.breeds[rows].astype(np.float64).mean(0) + EPS  # every breed a little
        parents[j] = parent / parent.sum()
        n = int(rows.sum())
        means[j] = (whitened[rows].sum(0) + prior * (parents[j] @ stats.means)) / (n + prior)
        bias[j] = 0.5 * rank * n / (n + prior) ** 2  # E|noise of the mean|^2 / 2 (see NewLabels)
    return NewLabels(stats.mean, stats.scale, stats.transform, base_means=stats.means, parents=parents, means=means,
                     sharpness=options.new_label_sharpness, bias=bias)


def _balanced_weights(labels: np.ndarray, total: float) -> np.ndarray:
    """Per-row weights summing to `total`, each label's rows together weighing the same."""
    if not len(labels):
        return np.zeros(0, np.float32)
    counts = Counter(labels.tolist())
    return np.array([total / (len(counts) * counts[y]) for y in labels.tolist()], np.float32)


def fit(examples: Split, bank: Split | None, labels: int, base_labels: int,
        options: FitOptions = FitOptions(), space: Projection | None = None,
        stats: ClassStats | None = None) -> Head:
    """A head for `labels` labels (the base's `base_labels` first) fitted on examples and bank.

    `space`: the projection to fit the correction in (the bank's, computed once); None computes one
    from the photos. `stats`: the base breeds' ClassStats for new labels (the bank's); None computes
    them from the bank's and the examples' photos of the base's breeds.
    """
    parts = [examples] + ([bank] if bank is not None and len(bank) else [])
    features = np.concatenate([p.outputs.features for p in parts]).astype(np.float32)
    space = space or projection(features, options.rank)
    mean, scale, basis = space.mean, space.scale, space.basis
    projected = ((features - mean) / scale) @ basis
    base = np.concatenate([p.outputs.breeds for p in parts]).astype(np.float32)
    targets = np.concatenate([p.labels for p in parts])
    example_rows = np.flatnonzero((examples.labels >= 0) & (examples.labels < base_labels))
    weights = np.concatenate([_balanced_weights(examples.labels[example_rows], 1.0)] + (
        [np.full(len(bank), options.bank_weight / len(bank), np.float32)] if len(parts) > 1 else []))
    is_dog = targets >= 0
    # the base's labels only: a new label's photos take no part in the correction (NewLabels scores them)
    old_rows = np.concatenate([example_rows, len(examples) + np.arange(len(features) - len(examples))])
    classes = np.array(sorted(set(examples.labels[example_rows].tolist())
                              | set(examples.outputs.breeds[example_rows].argmax(1).tolist())), np.int64)
    w, b = _fit_softmax(projected[old_rows], np.log(base[old_rows] + EPS), targets[old_rows], weights, classes, options)
    head = Head(mean=mean.astype(np.float32), scale=scale.astype(np.float32), classes=classes,
                weights=(basis @ w).astype(np.float32), bias=b, base_labels=base_labels, labels=labels)
    if labels > base_labels:
        if stats is None:  # no bank: every labelled photo here (new labels too) shapes the space
            every = class_stats(features, targets, labels)
            stats = dataclasses.replace(every, means=every.means[:base_labels])
        head = dataclasses.replace(head, new_labels=new_labels(examples, stats, base_labels, labels, options))
    if examples.outputs.dog is not None and (
        (examples.labels == NOT_A_DOG_LABEL).any()
        or ((examples.labels >= 0) & (examples.outputs.dog < options.min_dog)).any()
    ):
        dog = np.concatenate([p.outputs.dog for p in parts])
        v, c = _fit_gate(projected, logit(dog), is_dog, options)
        head = dataclasses.replace(head, dog_weights=(basis @ v).astype(np.float32), dog_bias=c)
    return head


def _fit_softmax(x: np.ndarray, offset: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                 classes: np.ndarray, options: FitOptions) -> tuple[np.ndarray, np.ndarray]:
    """Weights (r, k) and bias (k) of the correction on columns `classes`, by Adam."""
    n, r = x.shape
    k = len(classes)
    params = [np.zeros((r, k), np.float32), np.zeros(k, np.float32)]
    if k == 0 or n == 0:
        return params[0], params[1]
    onehot = np.zeros_like(offset)
    onehot[np.arange(n), targets] = 1.0
    weights = (weights / weights.sum()).astype(np.float32)[:, None]
    adam = _Adam(params, options.learning_rate)
    for _ in range(options.steps):
        logits = offset.copy()
        logits[:, classes] += x @ params[0] + params[1]
        gradient = (softmax(logits) - onehot)[:, classes] * weights
        adam.step([x.T @ gradient + 2 * options.pull * params[0], gradient.sum(0) + 2 * options.pull * params[1]])
    return params[0], params[1]


def _fit_gate(x: np.ndarray, offset: np.ndarray, is_dog: np.ndarray, options: FitOptions) -> tuple[np.ndarray, float]:
    """Weights (r,) and bias of the dog gate's correction, classes (dog / not a dog) balanced."""
    weights = _balanced_weights(is_dog.astype(np.int64), 1.0)[:, None]
    params = [np.zeros((x.shape[1], 1), np.float32), np.zeros(1, np.float32)]
    adam = _Adam(params, options.learning_rate)
    target = is_dog.astype(np.float32)[:, None]
    for _ in range(options.steps):
        gradient = (sigmoid(offset[:, None] + x @ params[0] + params[1]) - target) * weights
        adam.step([x.T @ gradient + 2 * options.pull * params[0], gradient.sum(0)])
    return params[0][:, 0], float(params[1][0])


class _Adam:
    """Adam (Kingma & Ba) on a list of arrays, updated in place."""

    def __init__(self, params: list[np.ndarray], rate: float):
        self.params, self.rate, self.t = params, rate, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, gradients: list[np.ndarray]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, gradients, self.m, self.v, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= self.rate * (m / (1 - 0.9**self.t)) / (np.sqrt(v / (1 - 0.999**self.t)) + 1e-8)


def predict(head: Head | None, split: Split) -> Outputs:
    """The breed (and dog) probabilities of `head` on `split`; the base's own for head None."""
    return split.outputs if head is None else head.apply(split.outputs)


def threshold_for_precision(confidences: np.ndarray, correct: np.ndarray, target: float,
                            fallback: float) -> float:
    """The lowest confidence threshold at which the answers above it are right at least `target` of
    the time (so `dog` keeps meaning the same precision); `fallback` when no threshold reaches it.

    (A numpy function of the learn stage: arch-train's shared thresholds module had not landed.)
    """
    order = np.argsort(-confidences, kind="stable")
    hits = np.cumsum(np.asarray(correct, np.float64)[order])
    precision = hits / np.arange(1, len(order) + 1)
    reaching = np.flatnonzero(precision >= target)
    if not len(reaching):
        return fallback
    # the longest run of best answers that keeps the precision: its last confidence is the threshold
    return float(confidences[order][reaching[-1]])


@dataclass
class Evaluation:
    """Held-out answers of the base and the learned model (k-fold), and what they say per label."""

    labels: list[str]
    base_labels: int
    examples: Split
    old: Outputs  # base model on each held-out example
    new: Outputs  # the head fitted without it
    bank: Split | None = None  # held-out bank photos (all of the bank, each judged once)
    bank_new: Outputs | None = None  # the heads' answers on them
    per_label: dict[str, dict] = field(default_factory=dict)

    @property
    def bank_photos(self) -> int:
        return 0 if self.bank is None else len(self.bank)

    @property
    def bank_old_correct(self) -> int:
        return 0 if self.bank is None else int((self.bank.outputs.breeds.argmax(1) == self.bank.labels).sum())

    @property
    def bank_new_correct(self) -> int:
        return 0 if self.bank is None else int((self.bank_new.breeds.argmax(1) == self.bank.labels).sum())

    @property
    def old_correct(self) -> int:
        return sum(v["old"] for v in self.per_label.values())

    @property
    def new_correct(self) -> int:
        return sum(v["new"] for v in self.per_label.values())

    def summary(self) -> dict:
        """The figures a model card and a refusal quote."""
        photos = sum(v["photos"] for v in self.per_label.values())
        return {"photos": photos, "old_correct": self.old_correct, "new_correct": self.new_correct,
                "bank_photos": self.bank_photos, "bank_old_correct": self.bank_old_correct,
                "bank_new_correct": self.bank_new_correct, "per_label": self.per_label}


def folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """A fold number per row, each label's rows dealt round the folds in a shuffled order."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(labels), np.int64)
    start = 0
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        assignment[rows] = (start + np.arange(len(rows))) % k
        start += len(rows)
    return assignment


def kfold(examples: Split, bank: Split | None, label_names: list[str], base_labels: int, k: int = 5,
          options: FitOptions = FitOptions(), seed: int = 0, space: Projection | None = None,
          stats: ClassStats | None = None) -> Evaluation:
    """Old vs new on held-out photos: each fold's examples (and bank photos) are judged by a head
    fitted on the other folds (in `space`, with `stats`, see fit). Labels are label_names' indices; NOT_A_DOG_LABEL examples are judged
    by the dog gate (right when rejected under options.min_dog)."""
    k = max(2, min(k, len(examples))) if len(examples) >= 2 else 1
    example_folds = folds(examples.labels, k, seed)
    bank_folds = folds(bank.labels, k, seed) if bank is not None and len(bank) else None
    old_parts, new_parts, order, bank_rows, bank_parts = [], [], [], [], []
    for fold in range(k):
        held, kept = np.flatnonzero(example_folds == fold), np.flatnonzero(example_folds != fold)
        if not len(held):
            continue
        bank_train = bank.take(np.flatnonzero(bank_folds != fold)) if bank_folds is not None else None
        head = fit(examples.take(kept), bank_train, len(label_names), base_labels, options, space, stats) if len(kept) else None
        held_split = examples.take(held)
        old_parts.append(held_split.outputs)
        new_parts.append(predict(head, held_split))
        order.append(held)
        if bank_folds is not None:
            bank_rows.append(np.flatnonzero(bank_folds == fold))
            bank_parts.append(predict(head, bank.take(bank_rows[-1])))
    rows = np.concatenate(order) if order else np.zeros(0, np.int64)
    has_dog = examples.outputs.dog is not None
    evaluation = Evaluation(label_names, base_labels, examples.take(rows), join(old_parts, has_dog),
                            join(new_parts, has_dog))
    if bank_parts:
        evaluation.bank = bank.take(np.concatenate(bank_rows))
        evaluation.bank_new = join(bank_parts, bank.outputs.dog is not None)
    evaluation.per_label = _per_label(evaluation, options.min_dog)
    return evaluation


def _per_label(evaluation: Evaluation, min_dog: float) -> dict[str, dict]:
    labels = evaluation.examples.labels
    table: dict[str, dict] = {}
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        if label == NOT_A_DOG_LABEL:
            name = "not a dog"
            old = evaluation.old.dog is not None and int((evaluation.old.dog[rows] < min_dog).sum())
            new = evaluation.new.dog is not None and int((evaluation.new.dog[rows] < min_dog).sum())
        else:
            name = evaluation.labels[label]
            old = int((evaluation.old.breeds[rows].argmax(1) == label).sum())
            new = int((evaluation.new.breeds[rows].argmax(1) == label).sum())
        table[name] = {"photos": int(rows.sum()), "old": int(old), "new": int(new)}
    return table
