"""`dogtag review FOLDER...`: a local web page to check and correct the tags of folders of photos.

FastAPI and uvicorn are imported only when the command runs: the base install stays small, and
without the `review` extra the command says how to add it (`dogtag.cli.missing_package`).
"""

from __future__ import annotations

import contextlib
import threading
import webbrowser

import click

from dogtag.edge_app.model_file import ModelFileError
from dogtag.edge_app.options import CannotRun, shared_options


@click.command(epilog="\b\nExit codes: 0 stopped with Ctrl-C; 1 the review extra is not installed; 2 bad command "
                      "line; 3 cannot start (see the message).")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--results", type=click.Path(dir_okay=False), default=None,
              help="One results file for all FOLDERS, as written by `dogtag tag --out` (default: each folder's own).")
@shared_options("model")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets phones on the shelter's network in (with the printed token).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--token", envvar="DOGTAG_REVIEW_TOKEN", default=None,
              help="Access token asked for when not on 127.0.0.1 (default: a random one, kept across starts in "
                   "~/.config/dogtag/review-token).")
@click.option("--new-token", is_flag=True,
              help="Make a new access token (and keep it): phones with the old address must scan the new one.")
@click.option("--allow-host", multiple=True, help="Another name of this machine that browsers may use (repeatable).")
@click.option("--intake", type=click.Path(file_okay=False), default=None,
              help="Where photos added from the browser are saved (default: FIRST_FOLDER/intake).")
@shared_options("xmp")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Thumbnail cache, outside the photo folders (default: ~/.cache/dogtag/review).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; just print the address.")
@shared_options("threads", "max_pixels")
def review(folders, results, model, host, port, token, new_token, allow_host, intake, xmp, cache, no_browser, threads,
           max_pixels) -> None:
    """Open a web page to review and correct the tags of FOLDERS, and to add photos from a browser or phone.

    Folders with no results yet are tagged first. Every correction is saved at once in a reviews
    file beside the results file (e.g. dogtag-results.reviews.jsonl), shown in the results file's
    reviewed_breed, reviewed_by and reviewed_at columns, and kept by every later `dogtag tag` run.
    A photo's XMP sidecar gets the reviewed breed when it has one (with --xmp, every reviewed photo).
    Stop the server with Ctrl-C: nothing is lost.
    """
    # Without the review extra these raise ModuleNotFoundError, which `dogtag` turns into how to install it.
    import fastapi  # noqa: F401
    import fastapi_offline  # noqa: F401  (the /docs page's scripts, offline)
    import python_multipart  # noqa: F401  (for uploads)
    import segno  # noqa: F401  (the address as a QR code)
    import uvicorn  # noqa: F401

    from dogtag.review.server import Options, ReviewServer, SetupError

    options = Options(
        folders=list(folders), results=results, model=model, host=host, port=port, token=token, new_token=new_token,
        allow_host=tuple(allow_host), intake=intake, xmp=xmp, cache=cache, max_pixels=max_pixels, threads=threads,
    )
    try:
        server = ReviewServer(options)
    except (SetupError, ModelFileError) as error:
        raise CannotRun(str(error)) from error
    click.echo(f"Dogtag review: {server.url}")
    if server.require_token:
        from dogtag.review.qr import qr_text

        click.echo("Anyone with this address (and its token) on your network can review; Ctrl-C stops it.")
        click.echo("On a phone, scan this code with the camera (the page's Phone button shows it too):")
        click.echo(qr_text(server.url), nl=False)
        click.echo("The token is kept for the next start; --new-token makes a new one.")
    else:
        click.echo("Only this computer can open it (use --host 0.0.0.0 for phones on the network); Ctrl-C stops it.")
    untagged = server.library.untagged()
    if untagged:
        names = ", ".join(folder for source in untagged for folder in source.folders)
        click.echo(f"First tagging {names} (no results file yet); the page lists the photos when it is done.")
    if not no_browser:
        threading.Timer(0.5, webbrowser.open, args=(server.url,)).start()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops on Ctrl-C, then passes the signal on
        server.serve(TerminalProgress())
    click.echo("Stopped. Every correction was saved as it was made.")


class TerminalProgress:
    """Says in the terminal how the first start's tagging goes: every tenth of the photos, and the end."""

    def __init__(self) -> None:
        self.shown = -1  # the last tenth printed

    def __call__(self, progress) -> None:
        if progress.state == "failed":
            click.echo(f"Tagging stopped: {progress.message} (the page says so too).", err=True)
        elif progress.state == "done":
            click.echo(f"Tagged {progress.done} photos in {progress.seconds:.0f} s: ready to review.")
        elif progress.total:
            tenth = progress.done * 10 // progress.total
            if tenth > self.shown and progress.done < progress.total:
                self.shown = tenth
                click.echo(f"  tagged {progress.done} of {progress.total} photos ({tenth * 10}%)")
