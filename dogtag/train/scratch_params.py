"""ScratchParams: every hyperparameter of the CNN designed from scratch and of its training.

One dataclass with the defaults we ship; the hyperparameter search (train/search.py) fills it,
best_params.json and a run's config.json hold it (to_dict / from_dict), and a run resumes only
with the values it was started with (train/checkpoints.py). No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from dogtag.train.preprocess import Augmentation

BLOCK_TYPES = ("vgg", "residual", "separable")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class ScratchParams:
    """Every hyperparameter of the scratch CNN and its training, with the defaults we ship.

    filters has one entry per stage (its length is the number of stages); depth is the number of
    units per stage (a unit is one conv for "vgg", one two-conv residual block otherwise);
    stem_pool adds ResNet's max-pool to the stride-2 stem, so that the first stage works at a quarter
    of the input size (about 4x cheaper on CPU); dense_units 0 puts the softmax straight on the
    pooled features. head_only, for a warm start, keeps every copied layer frozen (batch norm in
    inference mode) and trains only the new "breeds" layer: a linear classifier on the donor's
    features, which suits a few breeds with few photos. flip_tta does not change training: the
    shipped model also looks at each photo mirrored and averages both answers (twice the
    inference compute). mixup and cutmix (Beta alphas, 0 = off) blend each augmented training
    batch with itself in reverse order: mixup averages whole photos, cutmix pastes a box of the
    partner photo; the labels are blended in the same proportions. With both on, each batch picks
    one of the two at random (as timm does). They fight overfitting and need longer training.
    """

    size: int = 112
    block: str = "residual"
    filters: tuple[int, ...] = (32, 64, 128, 256)
    depth: int = 2
    stem_pool: bool = True
    dense_units: int = 256
    dropout: float = 0.3
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    label_smoothing: float = 0.1
    batch_size: int = 32
    epochs: int = 60
    warmup_epochs: int = 2
    patience: int = 15
    validation_fraction: float = 0.1
    seed: int = 0
    augmentation: Augmentation = field(default_factory=Augmentation)
    mixup: float = 0.0
    cutmix: float = 0.0
    head_only: bool = False
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {self.block!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.filters or min(self.filters) < 1:
            raise ValueError(f"filters needs one positive count per stage, got {self.filters!r}")
        if self.size < 2 ** (len(self.filters) + 1 + self.stem_pool):
            raise ValueError(f"input size {self.size} is too small for {len(self.filters)} stages")
        if not (self.mixup >= 0 and self.cutmix >= 0):  # NaN refused too
            raise ValueError(f"mixup and cutmix are Beta alphas (0 = off), got {self.mixup!r} and {self.cutmix!r}")

    def to_dict(self) -> dict:
        """Plain JSON-able values (what best_params.json and config.json hold)."""
        values = asdict(self)
        values["filters"] = list(self.filters)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ScratchParams:
        """The inverse of to_dict; unknown keys are refused so that a typo cannot pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scratch hyperparameters {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "filters" in values:
            values["filters"] = tuple(int(f) for f in values["filters"])
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = Augmentation(**values["augmentation"])
        return cls(**values)

    def describe(self) -> str:
        """A short name, e.g. 'residual-32-64-128-256x2-d256-112px'."""
        dense = f"-d{self.dense_units}" if self.dense_units else ""
        return f"{self.block}-{'-'.join(map(str, self.filters))}x{self.depth}{dense}-{self.size}px"
