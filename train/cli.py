"""`dogtag train ...`: cache features, train transfer and scratch models, evaluate, report."""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_DATA = Path(os.environ.get("DOGTAG_DATA", "../shared/datasets/stanford-dogs"))
DEFAULT_CACHE = Path("cache/features")
DEFAULT_RUNS = Path("runs")

data_option = click.option(
    "--data", type=click.Path(path_type=Path), default=DEFAULT_DATA, show_default=True,
    help="Stanford Dogs in the official layout (Images/, Annotation/, *_list.mat) or one folder per breed.",
)
cache_option = click.option(
    "--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True,
    help="Where cached backbone features are kept.",
)
backbone_option = click.option(
    "--backbone", type=click.Choice(["mobilenet_v2", "resnet50"]), default="mobilenet_v2", show_default=True,
)
size_option = click.option("--size", type=int, default=224, show_default=True, help="Input size in pixels.")
box_option = click.option("--box-crop/--no-box-crop", default=False, show_default=True,
                          help="Crop training images to the annotated dog box.")
equalize_option = click.option("--equalize/--no-equalize", default=False, show_default=True,
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
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "test"]),
              default=("train", "test"), show_default=True)
@click.option("--view", "views", multiple=True, default=("plain",), show_default=True,
              help="plain, flip (mirrored) or augN (random augmentation, N = 1, 2, ...); repeatable.")
@click.option("--weights", default="imagenet", show_default=True, help="'imagenet', 'none' or a weights file.")
def cache(data, cache, backbone, size, box_crop, equalize, splits, views, weights) -> None:
    """Compute frozen-backbone features once per split and view (resumable)."""
    from train.dataset import load_split
    from train.features import cache_dir, cache_features, feature_extractor
    from train.preprocess import Preprocessing

    preprocessing = Preprocessing(size=size, box_crop=box_crop, equalize=equalize)
    extractor = feature_extractor(backbone, size, weights=None if weights == "none" else weights)
    for split in splits:
        dataset = load_split(data, split)
        for view in views:
            directory = cache_dir(cache, backbone, preprocessing, split, view)
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
@click.option("--view", "views", multiple=True, default=("plain", "flip"), show_default=True,
              help="Cached training views: plain, flip, box, box-flip, aug1, aug2; repeatable.")
@click.option("--head-epochs", type=int, default=30, show_default=True)
@click.option("--fine-tune-epochs", type=int, default=6, show_default=True, help="0 trains the head only.")
@click.option("--fine-tune-lr", type=float, default=1e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-model/--no-save-model", default=True, show_default=True)
def transfer(data, cache, backbone, size, equalize, run_dir, views, head_epochs, fine_tune_epochs,
             fine_tune_lr, seed, save_model) -> None:
    """Transfer learning from cached features: new head, then fine-tune the top of the backbone."""
    from train.transfer import TransferConfig
    from train.transfer_run import run_transfer

    config = TransferConfig(backbone=backbone, size=size, head_epochs=head_epochs,
                            fine_tune_epochs=fine_tune_epochs, fine_tune_learning_rate=fine_tune_lr, seed=seed)
    metrics = run_transfer(data, cache, run_dir, config, tuple(views), equalize, save_model,
                           log=lambda line: click.echo(line, err=True))
    click.echo(f"{run_dir}: test top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f} "
               f"(no-training baseline {metrics['baseline_top1']:.4f})")
