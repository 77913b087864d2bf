"""`dogtag watch FOLDER`: tag every new or changed photo in a folder as it arrives, until stopped.

For an always-on Raspberry Pi (or office PC) beside an intake folder: a network share, a folder a
phone syncs to, a camera card. A watch is a loop of `tag_folders` runs ("passes") over the same folder
and results file, so every guarantee of `dogtag tag` holds: one row per photo, resumable after a kill
or a power cut, originals never modified, --xmp and --sort-into applied to every photo.

Between passes the watch sleeps until something changes: inotify events through watchdog (the
`watch` extra), or, where inotify cannot see the writes (network shares: NFS, SMB/CIFS, sshfs; other
machines' writes raise no local event) or watchdog is missing, a look at the folder's photos every
`--poll` seconds. Only photo files count: the results file, sidecars and hidden temporary files
written into the folder do not wake it.

- A photo is read only once its size and modification time stayed the same over two looks `settle`
  seconds apart, so a photo still being copied is never read half-written (one whose copy stalls
  longer than that is tagged again when it changes).
- Photos that fail are retried when the watch starts (as `dogtag tag` retries them) and when they
  change, not on every pass.
- SIGTERM or Ctrl-C stops it after the batch in hand is written and synced (exit 0); photos not
  tagged yet are tagged at the next start. A second signal stops it at once (rows stay whole).
- A folder that disappears (a card pulled out, a share unmounted) is waited for; when it (or another
  file system mounted there) comes back, the watch carries on.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import click

from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.cli import format_summary
from dogtag.edge_app.images import PHOTO_SUFFIXES, pillow_pixel_limit
from dogtag.edge_app.options import EXIT_INTERRUPTED, CannotRun, TagOptions, open_classifier, shared_options
from dogtag.edge_app.results import find_results
from dogtag.edge_app.tagging import Summary, TaggingError, tag_folders
from dogtag.edge_app.walk import find_photos

DEFAULT_SETTLE = 2.0  # seconds a photo's size must stay put before it is read
DEFAULT_POLL = 10.0  # seconds between looks at a folder that is polled
DEBOUNCE = 0.25  # after an event, wait this long for the rest of a burst before a pass
CHECK_FOLDER_EVERY = 5.0  # seconds between checks that the folder is still the same one (mounts)
RETRY_AFTER = 30.0  # seconds before a pass that failed (disk full, share gone) is tried again
# File systems where inotify misses other machines' writes: the folder is polled instead.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs", "fuse.glusterfs",
    "davfs", "fuse.davfs2", "fuse.rclone", "fuse.s3fs", "ncpfs", "coda",
})


class Stopped(Exception):
    """Raised inside a pass, between batches, when a stop was asked for."""


@dataclass
class WatchStats:
    """What a watch did since it started."""

    passes: int = 0
    tagged: int = 0
    failed_passes: int = 0


class Settling:
    """`ready(path)` for `tag_folders`: True once a photo looked the same on two looks `settle` s apart.

    Only photos waiting to be tagged are remembered, and only until the pass after they stop being
    asked about (tagged, or gone), so memory stays flat however long the watch runs.
    """

    def __init__(self, settle: float, clock: Callable[[], float] = time.monotonic):
        self.settle = settle
        self.clock = clock
        self.waiting: dict[str, tuple[tuple, float]] = {}  # path -> (what it looked like, since when)
        self._asked: set[str] = set()

    def __call__(self, path: str) -> bool:
        """Whether `path` has stopped changing (a vanished photo is not; it just sits this pass out)."""
        if self.settle <= 0:
            return True
        try:
            info = os.stat(path)
        except FileNotFoundError:
            try:
                info = os.lstat(path)  # a broken link is as finished as it will get: its error row is due
            except OSError:
                return False
        except OSError:
            return True  # unreadable: tagging it gives the error row that says why
        looks = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)
        now = self.clock()
        self._asked.add(path)
        seen = self.waiting.get(path)
        if seen is None or seen[0] != looks:
            self.waiting[path] = (looks, now)
            return False
        if now - seen[1] < self.settle:
            return False
        del self.waiting[path]
        return True

    def end_pass(self) -> float | None:
        """Forget photos not asked about in this pass; return when the next waiting one may be ready."""
        self.waiting = {path: seen for path, seen in self.waiting.items() if path in self._asked}
        self._asked = set()
        if not self.waiting:
            return None
        return min(since for _, since in self.waiting.values()) + self.settle


class Wakeup:
    """A wait that an event thread or a signal handler can cut short (a socket pair: no locks involved)."""

    def __init__(self):
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def wake(self) -> None:
        """End the current or next wait; safe from any thread and from a signal handler."""
        with suppress(OSError):  # full: a wake-up is already pending
            self._writer.send(b"\0")

    def wait(self, timeout: float | None) -> bool:
        """Sleep until woken or `timeout` seconds pass; True when woken."""
        import select

        readable, _, _ = select.select([self._reader], [], [], None if timeout is None else max(0.0, timeout))
        woken = bool(readable)
        with suppress(OSError):
            while self._reader.recv(4096):
                pass
        return woken

    def close(self) -> None:
        """Release the sockets."""
        self._reader.close()
        self._writer.close()


def filesystem_type(path: str | os.PathLike, mountinfo: str | None = None) -> str:
    """The type of the file system holding `path` (`ext4`, `nfs4`, `cifs`...), from /proc/self/mountinfo.

    '' where that is not known (not Linux).
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the deepest mount point wins (later mounts cover earlier)
            best, kind = point, line.split(" - ", 1)[1].split()[0]
    return kind


def is_photo_event(path: str, root: str, skip: tuple[str, ...] = ()) -> bool:
    """Whether a change at `path` (under the watched `root`) can matter: a photo, not hidden, not skipped."""
    if not path or os.path.splitext(path)[1].lower() not in PHOTO_SUFFIXES:
        return False
    return _visible(path, root, skip)


def _visible(path: str, root: str, skip: tuple[str, ...]) -> bool:
    if any(path == folder or path.startswith(folder.rstrip(os.sep) + os.sep) for folder in skip):
        return False
    relative = os.path.relpath(path, root)
    return not relative.startswith("..") and not any(part.startswith(".") for part in Path(relative).parts)


class InotifyWatcher:
    """Wakes the watch on inotify events about photos (through watchdog); re-arms when the folder is remounted."""

    name = "inotify"
    interval = math.inf  # never looks: events wake it

    def __init__(self, folder: str, recursive: bool, skip: tuple[str, ...], wakeup: Wakeup):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        root = os.path.realpath(folder)
        skip = tuple(os.path.realpath(path) for path in skip)

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                kind = event.event_type
                if kind in ("opened", "closed_no_write"):
                    return
                paths = [os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")]
                if event.is_directory:  # a folder of photos moved in or out; its own "modified" says nothing
                    matters = kind in ("created", "deleted", "moved") and any(_visible(p, root, skip) for p in paths if p)
                else:
                    matters = any(is_photo_event(p, root, skip) for p in paths)
                if matters:
                    wakeup.wake()

        self.folder, self.recursive = folder, recursive
        self._handler = Handler()
        self._observer = Observer()
        self._observer.start()
        self._watch = None

    def arm(self) -> None:
        """(Re)start watching the folder as it is now (after a mount, or a folder deleted and made again)."""
        self.disarm()
        self._watch = self._observer.schedule(self._handler, self.folder, recursive=self.recursive)

    def disarm(self) -> None:
        """Stop watching the folder (it is gone)."""
        if self._watch is not None:
            with suppress(KeyError, OSError):
                self._observer.unschedule(self._watch)
            self._watch = None

    def close(self) -> None:
        """Stop the event thread."""
        self.disarm()
        self._observer.stop()
        self._observer.join(timeout=5)


class Poller:
    """Looks at the folder's photos (name, size, time) every `interval` seconds: for network shares."""

    name = "polling"

    def __init__(self, folder: str, recursive: bool, skip: tuple[str, ...], interval: float):
        self.folder, self.recursive, self.skip, self.interval = folder, recursive, skip, interval
        self._last: dict[str, tuple[int, int]] | None = None

    def arm(self) -> None:
        """Take the first look."""
        self._last = self._look()

    def disarm(self) -> None:
        """Nothing to stop."""
        self._last = None

    def changed(self) -> bool:
        """Whether a photo appeared, changed or went away since the last look."""
        now = self._look()
        changed = self._last is not None and now != self._last
        self._last = now
        return changed

    def _look(self) -> dict[str, tuple[int, int]]:
        seen = {}
        for path in find_photos(self.folder, self.recursive, self.skip, on_error=lambda *_: None):
            try:
                info = os.stat(path)
            except OSError:
                seen[path] = (-1, -1)
            else:
                seen[path] = (info.st_size, info.st_mtime_ns)
        return seen

    def close(self) -> None:
        """Nothing to stop."""


def choose_watcher(
    folder: str, recursive: bool, skip: tuple[str, ...], wakeup: Wakeup, poll: float | None,
    log: Callable[[str], None],
) -> InotifyWatcher | Poller:
    """inotify where it works, else polling: asked for, a network file system, or watchdog missing."""
    if poll is not None:
        return Poller(folder, recursive, skip, poll)
    kind = filesystem_type(folder)
    if kind in NETWORK_FILESYSTEMS:
        log(f"{folder} is on a network share ({kind}): looking for new photos every {DEFAULT_POLL:g} s")
        return Poller(folder, recursive, skip, DEFAULT_POLL)
    try:
        return InotifyWatcher(folder, recursive, skip, wakeup)
    except ImportError:
        log(f"watchdog is not installed (pip install 'dogtag[watch]'): looking for new photos every "
            f"{DEFAULT_POLL:g} s instead of being told")
    except OSError as error:  # e.g. the inotify watch limit reached
        log(f"{folder}: cannot use inotify ({error}): looking for new photos every {DEFAULT_POLL:g} s")
    return Poller(folder, recursive, skip, DEFAULT_POLL)


class Watch:
    """One watched folder: the passes, the wait between them, and the way it stops."""

    def __init__(
        self,
        folder: str | os.PathLike,
        classifier: Classifier,
        options: TagOptions | None = None,
        *,
        settle: float = DEFAULT_SETTLE,
        poll: float | None = None,
        log: Callable[[str], None] = print,
    ):
        self.folder = os.fspath(folder)
        self.classifier = classifier
        # every pass tags what changed since the last: never everything again, whatever was asked
        self.options = replace(options or TagOptions(), restart=False)
        self.settling = Settling(settle)
        self.poll = poll
        self.log = log
        self.stats = WatchStats()
        self.wakeup = Wakeup()
        self._stopping = False
        self._tagging = False

    def stop(self) -> None:
        """Ask the watch to stop: at once when idle, after the batch in hand when tagging (any thread)."""
        self._stopping = True
        self.wakeup.wake()

    def run(self) -> WatchStats:
        """Tag what is there, then every photo that arrives, until `stop()`; returns what was done.

        Raises TaggingError when the first pass cannot run (the results file is not ours, or another
        run is writing it): a watch that cannot write its results must not sit there silently.
        """
        skip = (os.fspath(self.options.sort_into),) if self.options.sort_into is not None else ()
        watcher = choose_watcher(self.folder, self.options.recursive, skip, self.wakeup, self.poll, self.log)
        identity = _identity(self.folder)
        try:
            try:
                watcher.arm()
            except OSError as error:  # e.g. the inotify watch limit (fs.inotify.max_user_watches) reached
                self.log(f"{self.folder}: cannot use inotify ({error}): looking for new photos every "
                         f"{DEFAULT_POLL:g} s")
                watcher.close()
                watcher = Poller(self.folder, self.options.recursive, skip, DEFAULT_POLL)
                watcher.arm()
            self.log(f"Watching {self.folder} ({watcher.name}); results in {self._results_name()}. "
                     "Stop with Ctrl-C.")
            self._pass(first=True)
            due = self.settling.end_pass()
            now = time.monotonic()
            next_check, next_look = now + CHECK_FOLDER_EVERY, now + watcher.interval
            while not self._stopping:
                woken = self.wakeup.wait(min(next_check, next_look, due or math.inf) - time.monotonic())
                if self._stopping:
                    break
                now = time.monotonic()
                if now >= next_check:  # cheap (one stat): a card pulled out, or a share mounted on the folder
                    next_check = now + CHECK_FOLDER_EVERY
                    current = _identity(self.folder)
                    if current != identity:
                        identity = self._folder_moved(watcher, identity, current)
                        woken = woken or identity is not None
                if identity is None:
                    continue  # the folder is gone: wait for it to come back
                if now >= next_look:
                    next_look = now + watcher.interval
                    woken = watcher.changed() or woken
                if woken:
                    time.sleep(DEBOUNCE)  # the rest of a burst of events arrives meanwhile...
                    self.wakeup.wait(0)  # ...and is covered by this one pass
                if woken or (due is not None and now >= due):
                    tagged = self._pass(first=False)
                    due = self.settling.end_pass() if tagged else time.monotonic() + RETRY_AFTER
        except Stopped:
            pass
        finally:
            watcher.close()
        return self.stats

    def _pass(self, first: bool) -> bool:
        """One `tag_folders` run (the first one, at start, also retries photos that failed before);
        False when it could not write its results (a full disk, a share gone): tried again later."""
        self._tagging = True
        try:
            with pillow_pixel_limit(self.options.max_pixels):
                summary = tag_folders([self.folder], self.classifier, self.options, progress=self._progress,
                                      ready=self.settling, retry_errors=first)
        except TaggingError as error:
            if first:
                raise
            self.stats.failed_passes += 1
            self.log(f"{error}; trying again in {RETRY_AFTER:g} s")
            return False
        finally:
            self._tagging = False
        self.stats.passes += 1
        self.stats.tagged += summary.tagged
        report = _pass_report(summary, first, len(self.settling.waiting))
        if report and (summary.tagged or summary.errors or first):
            self.log(report)
        return True

    def _progress(self, done: int, total: int) -> None:
        if self._stopping:  # between batches: the rows so far are written and synced
            raise Stopped

    def _folder_moved(self, watcher, old: tuple[int, int] | None, new: tuple[int, int] | None):
        """The folder vanished, came back, or another file system was mounted on it: re-arm the watcher."""
        if new is None:
            self.log(f"{self.folder} is gone (unmounted or deleted?): waiting for it to come back")
            watcher.disarm()
            return None
        self.log(f"{self.folder} is {'back' if old is None else 'a different folder now (mounted?)'}: "
                 "looking at it again")
        try:
            watcher.arm()
        except OSError as error:
            self.log(f"{self.folder}: cannot watch it ({error}); trying again soon")
            return None
        return new

    def _results_name(self) -> str:
        (found,) = find_results([self.folder], self.options.out, self.options.fmt)
        return os.fspath(found.path)

    def close(self) -> None:
        """Release the wake-up sockets."""
        self.wakeup.close()

    @contextmanager
    def stop_on_signals(self):
        """Within this block, SIGTERM and SIGINT (Ctrl-C) stop the watch cleanly; a second one at once."""
        def handler(signum, frame):
            if self._stopping and self._tagging:
                raise KeyboardInterrupt  # asked twice: stop now (each row is one write: rows stay whole)
            self.stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if os.path.isdir(folder) else None


def _pass_report(summary: Summary, first: bool, waiting: int) -> str:
    """The log lines of one pass: the whole summary at the start (when there is one), then what was new."""
    if first:
        lines = [format_summary(summary)] if summary.photos else []
    else:
        lines = [f"Tagged {summary.tagged} new photo{'' if summary.tagged == 1 else 's'} "
                 f"in {summary.seconds:.1f} s."]
        lines += [f"  {click.format_filename(path)}: {message}" for path, message in summary.errors]
    if first and waiting:
        lines.append(f"{waiting} new photo{'' if waiting == 1 else 's'} will be tagged once settled.")
    return "\n".join(lines)


@click.command(epilog="\b\nExit codes:\n  0    stopped (SIGTERM, Ctrl-C)\n  2    bad command line\n"
                      "  3    cannot start: no usable model, results file not ours or in use\n"
                      "  130  stopped at once by a second Ctrl-C (rows written so far are kept)")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@shared_options("model", "out", "fmt", "top_k", "min_confidence", "min_dog", "xmp", "xmp_name", "sort_into", "recursive")
@click.option("--settle", type=click.FloatRange(0), default=DEFAULT_SETTLE, show_default=True,
              help="Seconds a new photo's size must stay the same before it is read (copies in progress).")
@click.option("--poll", type=click.FloatRange(0.1), default=None, metavar="SECONDS",
              help=f"Look for new photos every SECONDS instead of using inotify (automatic, every "
                   f"{DEFAULT_POLL:g} s, on network shares or without watchdog).")
@shared_options("batch_size", "workers", "threads", "max_pixels", "names")
def watch(folder, settle, poll, **params) -> None:
    """Tag every photo in FOLDER, then every new or changed one as it arrives, until stopped.

    Same results file, rows and options as `dogtag tag`; a photo still being copied is read once its
    size has settled. Stop it with Ctrl-C or SIGTERM (e.g. `systemctl stop`): it finishes the batch
    in hand and exits 0; what is left is tagged at the next start.
    """
    options = TagOptions.from_params(params)
    classifier = open_classifier(options)

    def log(line: str) -> None:
        click.echo(line, err=True)

    watcher = Watch(folder, classifier, options, settle=settle, poll=poll, log=log)
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        with watcher.stop_on_signals() if in_main_thread else _nothing():
            stats = watcher.run()
    except TaggingError as error:
        raise CannotRun(str(error)) from error
    except KeyboardInterrupt:
        log("Stopped at once; rows written so far are kept. Start it again to tag the rest.")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        watcher.close()
    log(f"Stopped. {stats.tagged} photo{'' if stats.tagged == 1 else 's'} tagged since the start; "
        "anything left is tagged at the next start.")


@contextmanager
def _nothing():
    yield
