"""The `dogtag` command: one grammar for every stage, `dogtag STAGE [OPTIONS] ARGS`.

Stages are imported only when they are invoked, so `dogtag tag` on a Raspberry Pi never
touches TensorFlow (which only `train` and `export` need).
"""

from __future__ import annotations

import importlib

import click

from dogtag import __version__

# command name -> (module, attribute, one-line help shown in `dogtag --help`)
STAGE_COMMANDS = {
    "tag": ("edge_app.cli", "tag", "Tag every photo in folders with the breed of the dog."),
    "predict": ("edge_app.cli", "predict", "Print the most probable breeds of a few photos."),
    "train": ("train.cli", "train", "Train and evaluate breed classifiers on Stanford Dogs."),
    "export": ("export.cli", "export", "Export a trained Keras model to TFLite and ONNX, and verify it."),
    "bench": ("benchmarks.cli", "bench", "Measure size, accuracy, speed and memory of every model format."),
}


class StageGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(STAGE_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in STAGE_COMMANDS:
            return None
        module_name, attribute, _ = STAGE_COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            missing = error.name or "a dependency"
            raise click.ClickException(
                f"`dogtag {name}` needs {missing}, which is not installed. "
                f"Install the extra: pip install 'dogtag[train]' (or '.[train]' from a checkout)."
            ) from error
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in STAGE_COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=StageGroup)
@click.version_option(__version__, prog_name="dogtag")
def main() -> None:
    """Dogtag: tag shelter photos with the breed of the dog, offline."""
