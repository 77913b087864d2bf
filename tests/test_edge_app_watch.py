"""`dogtag watch` as a shelter's always-on Pi runs it: photos land in an intake folder (copied slowly,
renamed into place, deleted, broken) and each gets exactly one row, through kills, restarts and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import dogtag.edge_app.tagging
import dogtag.edge_app.watch
from dogtag.cli import main
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.options import TagOptions
from dogtag.edge_app.tagging import TaggingError, tag_folders
from dogtag.edge_app.watch import Poller, Settling, Watch, choose_watcher, filesystem_type
from tests.edge_fixtures import make_breed_photo, truncated_jpeg
from tests.model_fixtures import committed_tiny_models
from tests.test_edge_app_tagging import PAUSING_DOGTAG, RESULTS, by_path, read_rows

REPO = Path(__file__).resolve().parents[1]
SETTLE = 1.0  # seconds; the slow copy below writes a chunk every 0.1 s, ten times faster than that


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return committed_tiny_models(tmp_path_factory.mktemp("models"))["tflite_int8"]


def wait_for(condition, timeout: float = 300, what: str = "the watch") -> None:
    """Until `condition()` holds; the timeout only turns a hang into a failure (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def row_paths(folder: Path) -> set[str]:
    results = folder / RESULTS
    return {row["path"] for row in read_rows(results)} if results.exists() else set()


class Running:
    """A Watch in a background thread, as `dogtag watch` runs it in the foreground."""

    def __init__(self, watch: Watch):
        self.watch = watch
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.watch.run()
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        self.watch.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the watch stops when asked"
        self.watch.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, int | None]]:
    """Every photo the watch decodes: (file name, its size on disk at that moment)."""
    seen: list[tuple[str, int | None]] = []
    load_photo = dogtag.edge_app.tagging.load_photo

    def recording(path, *args, **kwargs):
        seen.append((os.path.basename(path), os.path.getsize(path) if os.path.exists(path) else None))
        return load_photo(path, *args, **kwargs)

    monkeypatch.setattr(dogtag.edge_app.tagging, "load_photo", recording)
    return seen


class HeldClock:
    """The watch's settle clock, held still while the test copies a photo in: however slowly this machine
    runs the copy, no half-written photo can have "looked the same for SETTLE seconds" meanwhile."""

    def __init__(self):
        self.held: float | None = None

    def __call__(self) -> float:
        return time.monotonic() if self.held is None else self.held


def looked_at(watch: Watch, name: str, size: int) -> bool:
    """Whether the watch's last look at photo `name` (still waiting to settle) saw it `size` bytes long."""
    return any(os.path.basename(path) == name and looks[0] == size for path, (looks, _) in watch.settling.waiting.items())


@pytest.mark.parametrize("poll", [None, 0.1], ids=["inotify", "polling"])
def test_photos_landing_in_the_folder_get_one_row_each_and_are_never_read_half_written(tmp_path, model, reads, poll):
    folder = tmp_path / "intake"
    make_breed_photo(folder / "already-there.jpg", 0, seed=1)
    slow = make_breed_photo(tmp_path / "camera" / "slow.jpg", 1, seed=2, size=256, quality=95).read_bytes()
    log: list[str] = []
    watch = Watch(folder, Classifier(model), TagOptions(xmp=True), settle=SETTLE, poll=poll, log=log.append)
    clock = watch.settling.clock = HeldClock()
    running = Running(watch)
    try:
        wait_for(lambda: row_paths(folder) == {"already-there.jpg"}, what="the photo there at the start")

        clock.held = time.monotonic()
        with open(folder / "slow.jpg", "wb") as copy:  # a copy over a slow network, chunk by chunk...
            for start in range(0, len(slow), len(slow) // 8 + 1):
                copy.write(slow[start : start + len(slow) // 8 + 1])
                copy.flush()
                size = copy.tell()  # ...each chunk seen by the watch before the next one comes
                wait_for(lambda size=size: looked_at(watch, "slow.jpg", size), what=f"a look at slow.jpg at {size} bytes")
        clock.held = None
        make_breed_photo(folder / ".phone-sync.tmp", 2, seed=3, format="JPEG", quality=95)  # a sync app's hidden temporary file...
        os.rename(folder / ".phone-sync.tmp", folder / "renamed.jpg")  # ...renamed into place when complete
        make_breed_photo(folder / "oops.jpg", 0, seed=4)
        os.remove(folder / "oops.jpg")  # dropped in by mistake, deleted at once
        truncated_jpeg(folder / "kennel_3" / "broken.jpg")
        arrived = {"already-there.jpg", "slow.jpg", "renamed.jpg", "kennel_3/broken.jpg"}
        wait_for(lambda: row_paths(folder) == arrived, what="the photos that arrived")
        make_breed_photo(folder / "later.png", 2, seed=5)  # another pass: the broken photo is not read again
        readable = arrived - {"kennel_3/broken.jpg"}  # a photo that cannot be read is an error, not tagged
        wait_for(lambda: watch.stats.tagged == len(readable) + 1, what="the pass that tagged a later photo, ended")
        passes = watch.stats.passes
        # Quiet: its own results file and sidecars must not wake it. (Looking for 1.5 s decides nothing
        # on its own: a slower machine only looks less hard, it cannot make this fail.)
        time.sleep(1.5)
        idle_passes = watch.stats.passes - passes
    finally:
        running.stop()

    rows = by_path(read_rows(folder / RESULTS))
    assert sorted(rows) == sorted(arrived | {"later.png"})
    assert {path: row["breed"] for path, row in rows.items() if row["status"] == "dog"} == {
        "already-there.jpg": "Chihuahua", "slow.jpg": "Japanese Chin", "renamed.jpg": "Maltese",
        "later.png": "Maltese"}
    assert rows["kennel_3/broken.jpg"]["status"] == "error" and "truncated" in rows["kennel_3/broken.jpg"]["error"]
    assert int(rows["slow.jpg"]["size"]) == len(slow)
    assert [size for name, size in reads if name == "slow.jpg"] == [len(slow)], "read once, when complete"
    assert [name for name, _ in reads].count("broken.jpg") == 1, "a broken photo is not retried on every pass"
    assert not any(name in ("oops.jpg", ".phone-sync.tmp") for name, _ in reads)
    assert (folder / "later.xmp").exists() and not (folder / "kennel_3" / "broken.xmp").exists()
    assert idle_passes == 0, "no pass while nothing arrives"
    assert any("kennel_3/broken.jpg: damaged or truncated image" in line for line in log), log


def test_a_photo_that_changes_is_tagged_again_and_keeps_one_row(tmp_path, model):
    folder = tmp_path / "intake"
    make_breed_photo(folder / "rex.jpg", 0, seed=1)
    running = Running(Watch(folder, Classifier(model), settle=0.3, log=lambda _: None))
    try:
        wait_for(lambda: row_paths(folder) == {"rex.jpg"})
        make_breed_photo(folder / "rex.jpg", 2, seed=9, quality=80)  # replaced by a photo of another dog
        wait_for(lambda: [row["breed"] for row in read_rows(folder / RESULTS)] == ["Maltese"],
                 what="the changed photo's new row")
    finally:
        running.stop()


def test_a_camera_card_pulled_out_and_put_back_is_watched_again(tmp_path, model, monkeypatch):
    monkeypatch.setattr(dogtag.edge_app.watch, "CHECK_FOLDER_EVERY", 0.1)
    card = tmp_path / "card"
    make_breed_photo(card / "DCIM" / "IMG_0001.jpg", 0, seed=1)
    log: list[str] = []
    running = Running(Watch(card, Classifier(model), settle=0.3, log=log.append))
    try:
        wait_for(lambda: row_paths(card) == {"DCIM/IMG_0001.jpg"})
        card.rename(tmp_path / "in-the-camera")  # pulled out
        wait_for(lambda: any("is gone" in line for line in log), what="the card noticed gone")
        (tmp_path / "in-the-camera").rename(card)  # put back, with a new photo taken meanwhile
        make_breed_photo(card / "DCIM" / "IMG_0002.jpg", 1, seed=2)
        wait_for(lambda: row_paths(card) == {"DCIM/IMG_0001.jpg", "DCIM/IMG_0002.jpg"}, what="the new photo")
    finally:
        running.stop()
    assert any("is back" in line for line in log), log


def test_a_pass_that_cannot_write_its_results_is_tried_again_without_waiting_for_another_photo(
        tmp_path, model, monkeypatch):
    monkeypatch.setattr(dogtag.edge_app.watch, "RETRY_AFTER", 0.3)
    passes = []

    def disk_full_once(*args, **kwargs):
        passes.append(1)
        if len(passes) == 2:
            raise TaggingError("intake/dogtag-results.csv: cannot write the results file (No space left on device)")
        return tag_folders(*args, **kwargs)

    monkeypatch.setattr(dogtag.edge_app.watch, "tag_folders", disk_full_once)
    folder = tmp_path / "intake"
    folder.mkdir()
    log: list[str] = []
    running = Running(Watch(folder, Classifier(model), settle=0, log=log.append))
    try:
        wait_for(lambda: running.watch.stats.passes == 1, what="the first pass")
        make_breed_photo(folder / "rex.jpg", 0)
        wait_for(lambda: row_paths(folder) == {"rex.jpg"}, what="the photo, after the disk had room again")
    finally:
        running.stop()
    assert any("(No space left on device); trying again in 0.3 s" in line for line in log), log


# `dogtag watch` that stops before its fourth batch (three batches, six rows, are in the results file), tells
# the test through the pipe whose descriptor is argv[1] ("-": it never stops), and waits there for a signal
# (see PAUSING_DOGTAG in test_edge_app_tagging.py: the wakeup descriptor wakes it whichever thread got it).
PAUSING_WATCH = PAUSING_DOGTAG.replace("if batches == 4:", "if batches == 4 and sys.argv[1] != '-':")


def start_watch(folder: Path, model: Path, tmp_path: Path, pause: bool = True) -> tuple[subprocess.Popen, Path]:
    """A `dogtag watch` child (stderr into a file); with `pause`, returns once it waits before its fourth batch."""
    paused, pausing = os.pipe()
    stderr = tmp_path / f"watch-{len(list(tmp_path.glob('watch-*')))}.txt"
    with open(stderr, "w") as file:
        child = subprocess.Popen(
            [sys.executable, "-c", PAUSING_WATCH, str(pausing) if pause else "-", "watch", str(folder),
             "--model", str(model), "--settle", "0.2", "--batch-size", "2"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=file, pass_fds=(pausing,), text=True)
    os.close(pausing)
    with os.fdopen(paused, "rb") as said:
        if pause:
            assert said.read() == b"paused", stderr.read_text()  # EOF: it died first
    return child, stderr


def stopped(child: subprocess.Popen) -> None:
    """Wait for a signalled watch to exit; the bound only turns a hang (a signal not acted on) into a failure."""
    try:
        child.wait(timeout=300)
    finally:
        child.kill()


def rows_written(folder: Path) -> int:
    results = folder / RESULTS
    return results.read_bytes().count(b"\n") - 1 if results.exists() else 0


def forty_photos(folder: Path) -> list[str]:
    for i in range(40):
        make_breed_photo(folder / f"dog_{i:02d}.jpg", i % 3, seed=i, size=32)
    return [f"dog_{i:02d}.jpg" for i in range(40)]


def test_a_killed_watch_started_again_loses_nothing_and_duplicates_nothing(tmp_path, model):
    folder = tmp_path / "intake"
    names = forty_photos(folder)
    first, _ = start_watch(folder, model, tmp_path)
    first.kill()  # a power cut, or the OOM killer
    first.wait(timeout=300)
    before = read_rows(folder / RESULTS)
    assert len(before) == 6, "killed after three batches of two, with whole rows only"

    second, stderr = start_watch(folder, model, tmp_path, pause=False)
    wait_for(lambda: rows_written(folder) >= 40 or second.poll() is not None, what="all rows")
    second.send_signal(signal.SIGTERM)  # `systemctl stop`
    stopped(second)

    assert second.returncode == 0, stderr.read_text()
    after = by_path(read_rows(folder / RESULTS))
    assert sorted(after) == names
    assert all(after[row["path"]] == row for row in before), "rows written before the kill are kept as they were"
    assert f"{len(before)} were already done" in stderr.read_text() and "Stopped." in stderr.read_text()


def test_sigterm_stops_a_busy_watch_after_the_batch_in_hand_with_exit_0(tmp_path, model):
    folder = tmp_path / "intake"
    forty_photos(folder)
    child, stderr = start_watch(folder, model, tmp_path)  # busy: waiting before its fourth batch

    child.send_signal(signal.SIGTERM)
    stopped(child)

    assert child.returncode == 0, stderr.read_text()
    rows = read_rows(folder / RESULTS)  # fails on a torn line
    assert len(rows) == 8, "the batch in hand (the fourth) is finished, and no other"
    assert "Stopped." in stderr.read_text() and "anything left is tagged at the next start" in stderr.read_text()


def test_a_watch_that_cannot_use_its_results_file_stops_at_once_with_exit_3(tmp_path, model):
    folder = tmp_path / "intake"
    make_breed_photo(folder / "rex.jpg", 0)
    (folder / RESULTS).write_text("name,age\nRex,3\n")

    result = CliRunner().invoke(main, ["watch", str(folder), "--model", str(model)])

    assert result.exit_code == 3 and "is not a Dogtag results file" in result.output
    assert (folder / RESULTS).read_text() == "name,age\nRex,3\n"


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:35 / /mnt/shelter rw,relatime shared:20 - cifs //nas/intake rw,vers=3.1.1
41 40 0:36 / /mnt/shelter/usb rw,relatime shared:21 - vfat /dev/sda1 rw
42 22 0:37 / /srv/photos\\040share rw,relatime shared:22 - nfs4 nas:/photos rw
"""


def test_a_folder_on_a_network_share_is_polled_because_inotify_cannot_see_other_machines(tmp_path, monkeypatch):
    assert filesystem_type("/mnt/shelter/intake/2024", MOUNTINFO) == "cifs"
    assert filesystem_type("/mnt/shelter/usb/DCIM", MOUNTINFO) == "vfat", "the deepest mount point counts"
    assert filesystem_type("/srv/photos share/a", MOUNTINFO) == "nfs4"
    assert filesystem_type("/mnt/shelterx", MOUNTINFO) == "ext4"
    log: list[str] = []
    monkeypatch.setattr(dogtag.edge_app.watch, "filesystem_type", lambda path: "cifs")

    watcher = choose_watcher(str(tmp_path), True, (), None, None, log.append)

    assert isinstance(watcher, Poller) and watcher.interval == dogtag.edge_app.watch.DEFAULT_POLL
    assert "is on a network share (cifs): looking for new photos every 10 s" in log[0]


def test_without_watchdog_the_watch_polls_and_says_how_to_get_inotify(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "watchdog.observers", None)  # as if not installed
    log: list[str] = []

    watcher = choose_watcher(str(tmp_path), True, (), None, None, log.append)

    assert isinstance(watcher, Poller)
    assert "watchdog is not installed (pip install 'dogtag[watch]')" in log[0]


def test_a_photo_is_ready_once_it_looks_the_same_twice_settle_seconds_apart(tmp_path):
    now = [100.0]
    ready = Settling(2.0, clock=lambda: now[0])
    photo = tmp_path / "rex.jpg"
    photo.write_bytes(b"x" * 10)

    assert not ready(str(photo)), "first look: it may still be growing"
    now[0] += 1.0
    assert not ready(str(photo)), "same size, but not for long enough"
    assert ready.end_pass() == 102.0, "the next pass is due when it may be ready"
    with open(photo, "ab") as grow:
        grow.write(b"more")
    now[0] += 1.5
    assert not ready(str(photo)), "it grew: the wait starts again"
    now[0] += 2.0
    assert ready(str(photo))
    ready.end_pass()
    ready.end_pass()
    assert ready.waiting == {}, "nothing remembered about tagged or vanished photos"


def test_sorted_copies_and_hidden_files_never_wake_the_watch(tmp_path):
    from dogtag.edge_app.watch import is_photo_event

    root = str(tmp_path)
    assert is_photo_event(f"{root}/kennel/rex.JPG", root)
    assert not is_photo_event(f"{root}/dogtag-results.csv", root)
    assert not is_photo_event(f"{root}/rex.xmp", root)
    assert not is_photo_event(f"{root}/.rex.jpg.partial", root)
    assert not is_photo_event(f"{root}/.thumbnails/rex.jpg", root)
    assert not is_photo_event(f"{root}/sorted/Beagle/rex.jpg", root, skip=(f"{root}/sorted",))


def test_help_lists_the_watch_command_and_its_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    watch_help = CliRunner().invoke(main, ["watch", "--help"])

    assert "watch" in result.output and watch_help.exit_code == 0
    assert "0    stopped (SIGTERM, Ctrl-C)" in watch_help.output and "--settle" in watch_help.output


def test_dogtag_watch_needs_no_tensorflow():
    script = (
        "import sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, *args):\n"
        "        if (name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'onnx') or name.split('.')[:2] in (['dogtag', 'train'], ['dogtag', 'export'])):\n"
        "            raise ImportError(f'{name} is not installed (blocked by the test)')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "import dogtag.edge_app.watch\n"
        "print('tensorflow' in sys.modules, 'dogtag.train' in sys.modules)\n"
    )

    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert result.stdout.strip() == "False False", result.stdout + result.stderr


def test_the_watch_benchmark_measures_a_burst_the_delay_and_the_quiet_cost(tmp_path, model):
    pytest.importorskip("watchdog", reason="it compares inotify with polling: pip install -e '.[watch]'")
    from dogtag.benchmarks.watch import format_figures, run

    figures = run(photos=6, singles=2, quiet=1.0, model=str(model), work=tmp_path, settle=0.2, log=lambda _: None)

    assert len(figures.delays_s) == 2 and all(0.2 <= delay < 30 for delay in figures.delays_s), figures
    assert figures.burst_photos_per_s == pytest.approx(6 / figures.burst_seconds, rel=0.05, abs=0.06)  # both rounded
    assert [q.mode for q in figures.quiet] == ["inotify", "polling every 10 s"]
    assert all(q.rss_start_mb > 10 and q.cpu_percent < 50 for q in figures.quiet), figures.quiet
    assert "6 photos copied in at once" in format_figures(figures)
