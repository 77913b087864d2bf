"""TransferConfig: every choice of one transfer-learning run, with the default we ship, in one place.

`dogtag train transfer` takes its option defaults from here, run_transfer (train/transfer_run.py)
reads nothing else, and the run's config.json records all of it. No TensorFlow here, so that
`dogtag train transfer --help` stays quick. The defaults are the ones measured best (train/REPORT.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FEATURE_CACHE = Path("cache/features")
# Training views: name -> (uses the box-cropped cache, cached view name).
TRAIN_VIEWS = {
    "plain": (False, "plain"),
    "flip": (False, "flip"),
    "box": (True, "plain"),
    "box-flip": (True, "flip"),
    "aug1": (False, "aug1"),
    "aug2": (False, "aug2"),
    "thumb96": (False, "thumb96"),
}


@dataclass(frozen=True)
class TransferConfig:
    """One transfer-learning run: phase 1 trains a new head on cached pooled features, phase 2
    (fine_tune_epochs > 0) fine-tunes the top of the backbone above split_layer.

    Data:
        data: Stanford Dogs (official layout or one folder per breed); None: --data's default.
        cache: where `dogtag train cache` keeps the backbone's features.
        wild: the dogs-in-the-wild folder, measured on when its features are cached; None: $DOGTAG_WILD,
            else the development copy beside the checkout.
        breeds: train on these breeds only (names as in the dataset); () for all.
    What the model sees:
        backbone, size: the ImageNet backbone and the input size in pixels; `dogtag train transfer` without
            --size gives the backbone's own (train/backbones.py: 224, Lite1 240, Lite2 260).
        weights: "imagenet", or None only to test the code path offline.
        split_layer: the last frozen (cached) layer; None: the backbone's default.
        views: cached training views (TRAIN_VIEWS); flip_tta needs "flip" among them.
        equalize: histogram-equalized photos (their own cache).
    Phase 1, the head:
        head_epochs, head_learning_rate, head_dropout; feature_shift randomly shifts the cached
        activation maps (augmentation); label_smoothing, batch_size, validation_fraction (of the
        training photos, for choosing epochs, the blend weight and the thresholds), seed.
    Phase 2, fine-tuning:
        fine_tune_epochs (0: head only), fine_tune_learning_rate, fine_tune_dropout;
        fine_tune_from: the first trainable layer above the split (None: all of them).
    After training:
        refit: head-only runs train the head again on all training photos once validation chose its
            epochs, blend weight and thresholds.
        flip_tta: the shipped model also looks at the mirrored photo and averages (2x the compute).
        distill_from: a finished run (the teacher) whose probabilities on the training photos are
            mixed into the targets, with distill_weight their share.
        save_model: write model.keras, model_info.json and the predictions (for ensembles, distillation).
    """

    data: Path | None = None
    cache: Path = FEATURE_CACHE
    wild: Path | None = None
    breeds: tuple[str, ...] = ()
    backbone: str = "mobilenet_v2"
    size: int = 224
    weights: str | None = "imagenet"
    split_layer: str | None = None
    views: tuple[str, ...] = ("plain", "flip")
    equalize: bool = False
    head_epochs: int = 40
    head_learning_rate: float = 3e-4
    head_dropout: float = 0.5
    feature_shift: float = 0.1
    label_smoothing: float = 0.1
    batch_size: int = 64
    validation_fraction: float = 0.1
    seed: int = 0
    fine_tune_epochs: int = 4
    fine_tune_learning_rate: float = 3e-5
    fine_tune_dropout: float = 0.5
    fine_tune_from: str | None = None
    refit: bool = False
    flip_tta: bool = False
    distill_from: Path | None = None
    distill_weight: float = 0.7
    save_model: bool = True

    def __post_init__(self) -> None:
        unknown = [view for view in self.views if view not in TRAIN_VIEWS]
        if unknown or not self.views:
            raise ValueError(f"training views must be among {', '.join(TRAIN_VIEWS)}, got {list(self.views)}")
        if self.distill_from and self.breeds:
            raise ValueError("distillation needs the teacher's breeds: train on all breeds (no --breeds) to distil")
        if self.flip_tta and "flip" not in self.views:
            raise ValueError("flip test-time augmentation needs the flip view among the training views (--view flip)")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight is a share, between 0 and 1, got {self.distill_weight}")

    def record(self) -> dict:
        """The config as config.json keeps it: plain JSON values, breeds "all" when not restricted."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return values | {"views": list(self.views), "breeds": list(self.breeds) or "all",
                         **{key: str(values[key]) if values[key] is not None else None
                            for key in ("data", "cache", "wild", "distill_from")}}


DEFAULTS = TransferConfig()
