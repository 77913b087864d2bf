"""Put the review page together and serve it: the library, the tagger, the app, a socket, uvicorn.

`ReviewServer` is what `dogtag review` runs (in the foreground) and what the tests and the
benchmark run (in a thread, on a free port).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from dogtag.edge_app.breeds import model_label_map
from dogtag.edge_app.classifier import Classifier, resolve_model
from dogtag.edge_app.images import DEFAULT_MAX_PIXELS
from dogtag.edge_app.learned import read_info
from dogtag.edge_app.options import TagOptions, runtime_info_hidden
from dogtag.review.jobs import Progress, Tagger
from dogtag.review.learning import Learner
from dogtag.review.library import Library
from dogtag.review.security import allowed_host_names, inside, is_loopback, kept_token, new_token, token_file
from dogtag.review.thumbnails import default_cache_folder

INTAKE_FOLDER = "intake"


class SetupError(Exception):
    """A review server that cannot start as asked; the message says what to change."""


@dataclass
class Options:
    """Everything `dogtag review` can be told (see `dogtag review --help`)."""

    folders: list[str]
    results: str | None = None
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    new_token: bool = False  # make a new token (and keep it) instead of the one kept from the last start
    token_file: str | None = None  # where the token is kept (default: security.token_file())
    allow_host: tuple[str, ...] = ()
    intake: str | None = None
    xmp: bool = False
    cache: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | None = None

    def tag_options(self) -> TagOptions:
        """How the page tags folders and uploads: as `dogtag tag` would with the same model, --xmp and limits."""
        return TagOptions(model=self.model, threads=self.threads, xmp=self.xmp, max_pixels=self.max_pixels)


class ReviewServer:
    """A review page over some tagged folders, bound to its socket (so its URL is known) but not yet serving."""

    def __init__(self, options: Options):
        import uvicorn

        from dogtag.review.app import Settings, create_app

        folders = [os.fspath(folder) for folder in options.folders]
        intake = Path(options.intake) if options.intake else Path(folders[0]) / INTAKE_FOLDER
        if not any(inside(folder, intake) for folder in folders):
            if options.results is not None:
                raise SetupError(f"{intake}: with --results, the intake folder must be inside one of the folders")
            intake.mkdir(parents=True, exist_ok=True)
            folders.append(os.fspath(intake))  # reviewed as a folder of its own, with its own results file
        cache = Path(options.cache) if options.cache else default_cache_folder()
        for folder in folders:
            if inside(folder, cache) and not _hidden_below(folder, cache):
                raise SetupError(f"{cache}: the thumbnail cache must not be inside the photo folder {folder}; "
                                 "choose another with --cache")
        model = resolve_model(options.model)  # accurate (the default), fast, a file or a learned model's folder
        labels = model_label_map(read_info(model)).labels  # the names `dogtag tag` writes
        self.library = Library(folders, options.results, labels=labels, xmp=options.xmp)
        tagging = replace(options.tag_options(), model=str(model))
        self.tagger = Tagger(self.library, lambda: _quiet(tagging.classifier), cache, tagging)
        self.require_token = not is_loopback(options.host)
        if options.token or not self.require_token:
            self.token = options.token or new_token()
        else:  # kept across starts: phones that scanned the address still get in
            self.token = kept_token(Path(options.token_file) if options.token_file else token_file(), options.new_token)
        self.socket = _bind(options.host, options.port)
        self.port = self.socket.getsockname()[1]
        self.host = options.host
        settings = Settings(
            host=options.host, token=self.token, require_token=self.require_token,
            allowed_hosts=allowed_host_names(options.host, options.allow_host), intake=intake, cache=cache,
            max_pixels=options.max_pixels, address=self.url if self.require_token else "",
        )
        self.learner = Learner(self.library, self.tagger)
        self.app = create_app(self.library, self.tagger, settings, self._predicting_classifier, self.learner)
        self._predictor: tuple[str, Classifier] | None = None
        # log_config=None: uvicorn's own dictConfig would close every logging handler of the process
        # (pytest's among them); its warnings still reach stderr through Python's last-resort handler.
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False, log_config=None))
        self._thread: threading.Thread | None = None

    def _predicting_classifier(self) -> Classifier:
        """/api/predict's model: the one the rows are tagged with now (Learn switches it), opened once."""
        model = str(self.tagger.options.model)
        if self._predictor is None or self._predictor[0] != model:
            self._predictor = (model, _quiet(lambda: Classifier(model, num_threads=1)))
        return self._predictor[1]

    @property
    def url(self) -> str:
        """The address to open: with the token where one is needed."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = _lan_address()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.require_token else "")

    def serve(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        """Tag what needs tagging in the background (telling `on_progress`), and serve until Ctrl-C."""
        self.tagger.start(on_progress)
        self.server.run(sockets=[self.socket])

    def start_in_thread(self) -> ReviewServer:
        """Serve from a background thread (tests, benchmarks); returns once it answers."""
        self._thread = threading.Thread(target=self.serve, name="dogtag-review-server", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise SetupError("the review server stopped while starting")
            threading.Event().wait(0.02)
        return self

    def stop(self) -> None:
        """Stop a server started with `start_in_thread`."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is named (IPPROTO_TCP) because asyncio only turns Nagle's
    algorithm off on such sockets: without it every keep-alive answer waited 40 ms for an ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock
    except OSError as error:
        sock.close()
        raise SetupError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port (0 picks a free one)"
        ) from error


def _lan_address() -> str:
    """This machine's address on the local network (no packet is sent), else 127.0.0.1."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _hidden_below(folder: str, path: Path) -> bool:
    """Whether `path` lies in a hidden folder below `folder` (which `dogtag tag` never walks into)."""
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    return any(part.startswith(".") and part not in (".", "..") for part in relative.split(os.sep))


def _quiet(open_model: Callable[[], Classifier]) -> Classifier:
    """The model, opened without LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line (as `dogtag tag`)."""
    with runtime_info_hidden():
        return open_model()
