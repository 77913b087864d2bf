"""`dogtag learn FOLDER... [--labeled DIR]... --out PATH`: learn from the volunteers' corrections."""

from __future__ import annotations

import sys

import click

from dogtag.edge_app.model_file import ModelFileError
from dogtag.edge_app.options import CannotRun, runtime_info_hidden, shared_options
from dogtag.learn.card import found_lines, kfold_table
from dogtag.learn.run import NothingToLearn
from dogtag.learn.run import learn as learn_from

EXIT_REFUSED = 4


@click.command(epilog="Exit codes: 0 the learned model was written; 3 nothing to learn from or no usable model; "
               "4 refused: the learned model would be worse on held-out photos (see --force).")
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--labeled", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder with one sub-folder of photos per label (a shelter's archive sorted by breed); repeatable.")
@click.option("--out", required=True, type=click.Path(), help="The learned model folder to write.")
@shared_options("model")
@click.option("--force", is_flag=True, help="Write the learned model even if it is worse on held-out photos.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True,
              help="Held-out check: each photo is judged by a model learned without its fold.")
def learn(folders, labeled, out, model, force, folds) -> None:
    """Learn from the corrections made on the review page in FOLDERS (and --labeled folders).

    Keeps the model's 120 breeds and adds the labels volunteers typed once they have 3 photos;
    "not a dog" corrections teach the dog gate. Photos are read once and their embeddings cached,
    so learning again after more corrections takes seconds. Before writing, every label is checked
    on held-out photos, old model against new; a worse model is not written unless --force.
    Use the result with --model OUT in tag, predict, watch and review.
    """
    if not folders and not labeled:
        raise click.UsageError("give the folders whose corrections to learn from, or --labeled folders")
    bar = _Progress()
    try:
        with runtime_info_hidden():
            report = learn_from(list(folders), list(labeled), out=out, model=model, force=force, k=folds,
                                progress=bar.update)
    except (NothingToLearn, ModelFileError, FileNotFoundError) as error:
        bar.close()
        raise CannotRun(str(error)) from error
    bar.close()
    for line in found_lines(report):
        click.echo(line)
    click.echo("")
    for row in kfold_table(report):
        click.echo(row)
    click.echo("")
    if report.written is not None:
        forced = "" if report.accepted else f" (forced: {report.reason})"
        click.echo(f"Wrote {report.written}{forced}; min_confidence {report.thresholds['min_confidence']:.3f}. "
                   f"Use it: dogtag tag --model {report.written} FOLDER")
        sys.exit(0)
    click.echo(f"Not written: {report.reason}. Nothing was changed; use --force to write it anyway.", err=True)
    sys.exit(EXIT_REFUSED)


class _Progress:
    """One line on stderr: the stage and how far it is."""

    def __init__(self) -> None:
        self.shown = False

    def update(self, stage: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{stage}: {done}/{total}", nl=False, err=True)
            self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)
