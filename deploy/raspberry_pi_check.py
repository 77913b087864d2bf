"""The Raspberry Pi check: Dogtag installed and run on arm64 Debian bookworm (what Raspberry Pi OS 64-bit is),
under qemu-user emulation, with the same results as on this machine; and a clear message on 32-bit ARM.

    python deploy/raspberry_pi_check.py        # as root; .ci/run runs it after the tests

1. Build a Debian bookworm arm64 root with mmdebstrap (cached in ~/.cache/dogtag/pi-check, rebuilt when
   its recipe changes or after 30 days) and unpack a fresh copy of it for this run.
2. Inside it, as the README says: `python3 -m venv .venv && pip install .`, then tag a folder of generated
   photos (every format, some broken) and a few real ones (../shared/datasets/dogs-in-the-wild, when
   present) with every bundled .tflite model; then `pip install ".[onnx]"` and the same with every
   .onnx model; then `pip install ".[watch]"` and a short `dogtag watch` (inotify, SIGTERM, exit 0);
   then `pip install pytest` and the edge app's own tests (tests/test_edge_app_*.py, on the committed
   tiny models: no TensorFlow there either).
3. Tag the same photos with the same models here and compare, photo by photo: the same status and breed,
   and every probability within TOLERANCE (see there for why results differ at all).
4. On an armhf (32-bit, armv7l) root: `pip install .` must stop with the 32-bit message, not a traceback.

Prints the comparison and the time of each step. Exit 0 when everything matched, or when the check
cannot run here (it says why in one line: not root, a tool not installed, no binfmt_misc, no mirror);
exit 1 when a step failed or a result differed (one line says which), never a traceback. Emulated speed says nothing about a real Pi's.
The heavy steps run at the lowest priority (nice 19).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
MIRROR = "deb http://deb.debian.org/debian bookworm main"  # the release itself: no mirror-sync surprises
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
ROOT_MAX_AGE_DAYS = 30
REAL_PHOTOS = 24  # dogs-in-the-wild photos tagged in emulation (about 1 s each per model there)
# Probabilities may differ by this much between x86 and arm64. Both int8 runtimes pick other integer
# kernels on ARM (XNNPACK and MLAS requantize differently per CPU) and dozens of int8 layers amplify the
# rounding; the decoded pixels are identical. Measured here on all 442 dogs-in-the-wild photos with the
# MobileNetV2 int8 models: median 0.004, 99th percentile 0.14, largest 0.26 (TFLite) and 0.20 (ONNX),
# while top-1 on its 339 dogs stayed within 0.3 points (TFLite 88.8% x86, 88.5% arm64; ONNX 87.6%,
# 87.9%). A breed or a status may differ only where this machine's own answer was within TOLERANCE of
# a tie or a threshold (26 and 28 of the 442 photos differed so).
TOLERANCE = 0.3
NICE = ["nice", "-n", "19"]
# The tools the check calls, and the Debian package that has each.
TOOLS = {"mmdebstrap": "mmdebstrap", "arch-test": "arch-test", "qemu-aarch64-static": "qemu-user-static", "qemu-arm-static": "qemu-user-static",
         "chroot": "coreutils", "mount": "mount", "tar": "tar", "git": "git"}
# The edge app's tests, run inside the arm64 root on the install it targets (no TensorFlow).
EDGE_APP_TESTS = "tests/test_edge_app_*.py"


class CannotRun(Exception):
    """The check cannot run on this machine (the reason says why); not a failure of Dogtag."""


class CheckFailed(Exception):
    """A step that should have worked did not."""


# --- 1. The roots ------------------------------------------------------------------------------------


def why_it_cannot_run() -> str | None:
    """None when this machine can build and emulate the roots, else the reason (it tries mounting binfmt_misc)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"it emulates arm64 on x86_64 Linux; this is {sys.platform} {platform.machine()}"
    if os.geteuid() != 0:
        return "it needs root (mmdebstrap, chroot and mount): run it as root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[tool] for tool in missing))
        return f"{', '.join(missing)} not installed (apt-get install {packages})"
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True, text=True)
        if mounted.returncode != 0:
            return f"binfmt_misc cannot be mounted here ({mounted.stderr.strip() or 'mount failed'})"
    for name in ("qemu-aarch64", "qemu-arm"):
        if not _binfmt_enabled(binfmt / name):
            if shutil.which("update-binfmts") is None:
                return f"binfmt_misc has no enabled {name} entry, and update-binfmts is not installed " \
                       "(apt-get install binfmt-support)"
            subprocess.run(["update-binfmts", "--import", name], capture_output=True)  # qemu installed before binfmt-support
            subprocess.run(["update-binfmts", "--enable", name], capture_output=True)
        if not _binfmt_enabled(binfmt / name):
            return f"binfmt_misc has no enabled {name} entry (update-binfmts --enable {name} failed)"
    return None


def _binfmt_enabled(entry: Path) -> bool:
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def cached_root(arch: str, cache: Path, rebuild: bool, log) -> Path:
    """The tarball of a bookworm root for `arch`, built with mmdebstrap unless a fresh one is cached."""
    recipe = f"{SUITE} {arch} {' '.join(PACKAGES)} {MIRROR} minbase"
    tarball = cache / f"{SUITE}-{arch}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}.tar"
    if tarball.exists() and not rebuild and time.time() - tarball.stat().st_mtime < ROOT_MAX_AGE_DAYS * 86400:
        log(f"{arch} root: cached {tarball}")
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    command = [*NICE, "mmdebstrap", f"--arch={arch}", "--variant=minbase", "--format=tar", f"--include={','.join(PACKAGES)}",
               SUITE, str(partial), MIRROR]
    log(f"{arch} root: building with mmdebstrap (a few minutes)")
    for attempt in (1, 2):
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode == 0:
            break
        log(f"  mmdebstrap failed (attempt {attempt}): {_tail(built.stderr)}")
    else:
        partial.unlink(missing_ok=True)
        raise CheckFailed(f"mmdebstrap could not build the {arch} root (mirror unreachable?): {_tail(built.stderr, 3)}")
    partial.rename(tarball)
    for old in cache.glob(f"{SUITE}-{arch}-*.tar"):  # roots of an older recipe
        if old != tarball:
            old.unlink()
    return tarball


@contextmanager
def unpacked_root(tarball: Path, work: Path, pip_cache: Path) -> Iterator[Path]:
    """A fresh root from the tarball, set up to reach the package index as this machine does; removed after.

    The chroot gets this machine's CA bundles and pip configuration (a proxy or a private index needs
    both), /proc, and pip's cache (moved in and back, so that warm runs download less).
    """
    root = work / tarball.stem
    if root.exists():
        _remove_root(root)
    root.mkdir(parents=True)
    inside_cache = root / "root" / ".cache" / "pip"
    try:
        subprocess.run(["tar", "-C", str(root), "-xf", str(tarball)], check=True)
        for path, inside in _host_files_for_pip().items():
            target = root / inside.relative_to("/")
            if target.is_symlink():  # e.g. a resolv.conf pointing into /run: replaced by the file
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                shutil.copy2(path, target)
        pip_cache.mkdir(parents=True, exist_ok=True)
        inside_cache.parent.mkdir(parents=True, exist_ok=True)
        pip_cache.rename(inside_cache)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        yield root
    finally:
        subprocess.run(["umount", str(root / "proc")], capture_output=True)
        if inside_cache.exists():
            inside_cache.rename(pip_cache)
        _remove_root(root)


def _host_files_for_pip() -> dict[Path, Path]:
    """This machine's CA bundles, pip configuration files and resolver: {here: path inside the root}."""
    candidates = [Path("/etc/resolv.conf"), Path("/etc/hosts"), Path("/etc/ssl/certs/ca-certificates.crt"),
                  Path("/etc/pip.conf"), Path("/etc/xdg/pip"), Path.home() / ".config/pip/pip.conf",
                  Path.home() / ".pip/pip.conf"]
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CONFIG_FILE", "PIP_CONSTRAINT"):
        candidates += [Path(value) for value in os.environ.get(name, "").split() if value.startswith("/")]
    found = {}
    for path in candidates:
        if not path.exists() or path.parts[1:2] == ("proc",):
            continue
        inside = path
        if path.is_relative_to(Path.home()):  # pip's user configuration: root's home inside the chroot
            inside = Path("/root") / path.relative_to(Path.home())
        found[path.resolve()] = inside
    return found


def _remove_root(root: Path) -> None:
    """Delete an unpacked root, but never through a mount that is still there."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    inside = [point for point in mounts if point == str(root) or point.startswith(f"{root}/")]
    for point in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    if any(point == str(root) or point.startswith(f"{root}/") for point in mounts):
        raise CheckFailed(f"{root}: still mounted; not deleting it (unmount it by hand)")
    shutil.rmtree(root)


# The core qemu emulates in the arm64 root: a Raspberry Pi 4's. qemu's default CPU offers SVE and SME,
# which no Pi has: OpenBLAS then takes its SME kernels, which qemu runs 20 times slower (a 1205 x 1280
# by 1280 x 128 matrix product: 21.7 s instead of 1.0 s), and an instruction a Pi lacks would pass unseen.
ARM64_CPU = "cortex-a72"


def run_inside(root: Path, script: str, timeout: float = 3600, cpu: str | None = None) -> subprocess.CompletedProcess:
    """Run a bash script in the root (emulated, as the qemu CPU model `cpu` where given), at the lowest
    priority, with pip's settings from here."""
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                   "PYTHONUNBUFFERED": "1"} | ({"QEMU_CPU": cpu} if cpu else {})
    environment.update({name: value for name, value in os.environ.items()
                        if name.startswith("PIP_") or name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                                                                "http_proxy", "https_proxy", "no_proxy",
                                                                "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")})
    command = [*NICE, "chroot", str(root), "/usr/bin/env", "-i",
               *[f"{name}={value}" for name, value in environment.items()], "/bin/bash", "-euo", "pipefail", "-c", script]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def copy_project(root: Path) -> None:
    """The checkout's files (tracked and new, not ignored ones) into the root's /src, as a clone has them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        raise CheckFailed(f"{REPO}: git ls-files failed ({listed.stderr.decode(errors='replace').strip()})")
    target = root / "src"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


# --- 2. The photos -----------------------------------------------------------------------------------


def make_generated_photos(folder: Path) -> None:
    """Photos in every format the app reads (and the ways they break), made the same way every time."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(17)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:480, 0:640]
    scene = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], axis=-1).astype("uint8")
    scene[(x - 320) ** 2 + (y - 240) ** 2 < 120**2] = (150, 110, 70)  # a brown blob on a gradient
    noisy = np.clip(scene.astype("int16") + rng.integers(-40, 40, scene.shape), 0, 255).astype("uint8")
    photo = Image.fromarray(noisy)
    photo.save(folder / "gradient.jpg", quality=90)
    photo.resize((4032, 3024), Image.Resampling.NEAREST).save(folder / "twelve-megapixels.jpg", quality=85)  # decoded in draft mode
    photo.convert("L").save(folder / "grey.jpg", quality=90)
    rotated = photo.copy()
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: the camera was held upright
    rotated.save(folder / "upright.jpg", quality=90, exif=exif)
    with_alpha = photo.convert("RGBA").resize((320, 240))
    with_alpha.putalpha(Image.fromarray((x[:240, :320] % 256).astype("uint8")))
    with_alpha.save(folder / "transparent.png")
    photo.resize((400, 300)).save(folder / "photo.webp", quality=90)
    photo.resize((200, 150)).quantize(64, method=Image.Quantize.FASTOCTREE).save(folder / "palette.gif")
    photo.resize((256, 192)).save(folder / "photo.bmp")
    Image.fromarray(np.asarray(photo.convert("L"), dtype="uint16") * 257).save(folder / "sixteen-bit.tif")
    (folder / "kennel").mkdir(exist_ok=True)
    for seed in range(3):
        Image.fromarray(rng.integers(0, 256, (224, 224, 3)).astype("uint8")).save(folder / "kennel" / f"noise-{seed}.png")
    (folder / "truncated.jpg").write_bytes((folder / "gradient.jpg").read_bytes()[:2000])
    (folder / "notes.jpg").write_text("adoption notes\n")
    (folder / "empty.png").write_bytes(b"")


def pick_real_photos(dataset: Path, count: int) -> list[Path]:
    """`count` photos spread over the breeds, and a few with no dog, always the same ones."""
    dogs = sorted((dataset / "dogs").rglob("*.jpg"))
    not_dogs = sorted((dataset / "not_dogs").glob("*.jpg"))
    if not dogs:
        return []
    n_not = min(len(not_dogs), max(1, count // 6))
    n_dogs = count - n_not
    return ([dogs[i * len(dogs) // n_dogs] for i in range(n_dogs)]
            + [not_dogs[i * len(not_dogs) // n_not] for i in range(n_not)])


# --- 3. Comparing ------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """How one model's rows on arm64 compare with this machine's."""

    model: str
    photos: int = 0
    max_difference: float = 0.0
    near_ties: list[str] = field(default_factory=list)  # allowed: this machine's answer was a near tie
    problems: list[str] = field(default_factory=list)


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a `dogtag tag` CSV, by photo path."""
    return {row["path"]: row for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))}


def _top_k(row: dict[str, str]) -> dict[str, float]:
    pairs = (item.rpartition("=") for item in filter(None, row["top_k"].split("; ")))
    return {breed: float(probability) for breed, _, probability in pairs}


def _number(text: str) -> float | None:
    return float(text) if text else None


def compare(model: str, here: dict[str, dict[str, str]], there: dict[str, dict[str, str]],
            min_confidence: float, min_dog: float, tolerance: float = TOLERANCE) -> Comparison:
    """Photo by photo: same status and breed (unless `here` was within `tolerance` of a tie or a
    threshold), every probability in both within `tolerance`."""
    result = Comparison(model, photos=len(here))
    for path in sorted(set(here) ^ set(there)):
        result.problems.append(f"{path}: tagged on {'x86' if path in here else 'arm64'} only")
    for path in sorted(set(here) & set(there)):
        x86, arm = here[path], there[path]
        if x86["status"] == "error" or arm["status"] == "error":
            if x86["status"] != arm["status"]:
                result.problems.append(f"{path}: {x86['status']} on x86, {arm['status']} on arm64 "
                                       f"({x86['error'] or arm['error']})")
            continue
        x86_k, arm_k = _top_k(x86), _top_k(arm)
        differences = [abs(x86_k[breed] - arm_k[breed]) for breed in x86_k.keys() & arm_k.keys()]
        dog_x86, dog_arm = _number(x86["dog_probability"]), _number(arm["dog_probability"])
        if dog_x86 is not None and dog_arm is not None:
            differences.append(abs(dog_x86 - dog_arm))
        result.max_difference = max([result.max_difference, *differences])
        if any(difference > tolerance for difference in differences):
            result.problems.append(f"{path}: probabilities differ by {max(differences):.3f} (over {tolerance})")
        ranked = sorted(x86_k.values(), reverse=True) + [0.0, 0.0]  # a not_a_dog row lists no breeds
        tie = ranked[0] - ranked[1] <= tolerance
        if "not_a_dog" in (x86["status"], arm["status"]):  # decided by the dog probability
            near_threshold = dog_x86 is not None and abs(dog_x86 - min_dog) <= tolerance
        else:  # dog or unsure: decided by the best breed's probability
            near_threshold = abs(float(x86["confidence"]) - min_confidence) <= tolerance
        for what, allowed in (("breed", tie), ("status", near_threshold)):
            if x86[what] != arm[what]:
                note = f"{path}: {what} {x86[what]} on x86, {arm[what]} on arm64"
                (result.near_ties if allowed else result.problems).append(
                    note + (" (a near tie here: allowed)" if allowed else ""))
    return result


def format_comparisons(comparisons: list[Comparison]) -> str:
    """The table printed at the end."""
    lines = [f"{'model':<32} {'photos':>6} {'max prob. diff':>14} {'near ties':>9} {'problems':>8}"]
    for c in comparisons:
        lines.append(f"{c.model:<32} {c.photos:>6} {c.max_difference:>14.3f} {len(c.near_ties):>9} {len(c.problems):>8}")
        lines += [f"  {note}" for note in c.near_ties + c.problems]
    return "\n".join(lines)


# --- The check ---------------------------------------------------------------------------------------


def tag_here(photos: Path, model: Path, out: Path) -> None:
    """`dogtag tag` on this machine, exactly as in the root."""
    done = subprocess.run([*NICE, sys.executable, "-c", "from dogtag.cli import main; main()", "tag", str(photos),
                           "--model", str(model), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some photos are broken on purpose
        raise CheckFailed(f"dogtag tag {model.name} here failed: {_tail(done.stderr + done.stdout)}")


def models() -> tuple[list[Path], list[Path]]:
    """The bundled .tflite and .onnx models, however many there are."""
    return sorted((REPO / "dogtag" / "models").glob("*.tflite")), sorted((REPO / "dogtag" / "models").glob("*.onnx"))


WATCH_SCRIPT = """
cd /src && . .venv/bin/activate && mkdir -p /intake
dogtag watch /intake --settle 1 --model dogtag/models/{model} > /out/watch.log 2>&1 & watcher=$!
for _ in $(seq 600); do grep -q Watching /out/watch.log && break; sleep 0.5; done
cp /photos/generated/gradient.jpg /photos/generated/photo.webp /intake/
for _ in $(seq 600); do [ -f /intake/dogtag-results.csv ] && [ "$(wc -l < /intake/dogtag-results.csv)" -ge 3 ] && break; sleep 0.5; done
kill -TERM $watcher; status=0; wait $watcher || status=$?
cp /intake/dogtag-results.csv /out/watch.csv; echo "exit $status"
"""


# `dogtag learn` on arm64: two labels of generated photos (forced: a verdict on three photos each is
# not the point here, running the whole stage without TensorFlow is), then `dogtag tag` with the result.
# The script runs under `bash -e`: the tag's exit 1 (the generated folder holds unreadable photos on
# purpose) is allowed by `|| test`, which -e does not apply to, where `; test` would never be reached.
LEARN_SCRIPT = (
    "cd /src && . .venv/bin/activate && mkdir -p /learnset/blob /learnset/noise"
    " && cp /photos/generated/gradient.jpg /photos/generated/upright.jpg /photos/generated/photo.webp /learnset/blob/"
    " && cp /photos/generated/kennel/noise-*.png /learnset/noise/"
    " && DOGTAG_CACHE=/out/cache dogtag learn --labeled /learnset --out /out/learned --model dogtag/models/{model} --force"
    " && {{ dogtag tag /photos --model /out/learned --out /out/learned.csv || test $? -le 1; }}"
)


def check_arm64(root: Path, photos: Path, out: Path, log) -> tuple[list[Comparison], dict[str, float]]:
    """Install and tag inside the arm64 root, tag here, compare; returns the comparisons and step times."""
    times: dict[str, float] = {}
    tflite, onnx = models()

    def step(name: str, script: str, ok=(0,)) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = run_inside(root, script, cpu=ARM64_CPU)
        times[name] = time.monotonic() - started
        log(f"  {name}: {times[name]:.0f} s")
        if done.returncode not in ok:
            raise CheckFailed(f"arm64 `{name}` failed (exit {done.returncode}): {_tail(done.stderr + done.stdout, 8)}")
        return done

    copy_project(root)
    shutil.copytree(photos, root / "photos")
    (root / "out").mkdir()
    machine = step("uname", "uname -m && python3 --version").stdout.split()
    if machine[:1] != ["aarch64"]:
        raise CheckFailed(f"the root does not run as arm64: uname -m says {machine[:1]}")
    step("venv and pip install .", "cd /src && python3 -m venv .venv && . .venv/bin/activate && pip install -q .")
    for model in tflite + [None] + onnx:
        if model is None:
            step('pip install ".[onnx]"', 'cd /src && . .venv/bin/activate && pip install -q ".[onnx]"')
            continue
        step(f"tag with {model.name}", f"cd /src && . .venv/bin/activate && dogtag tag /photos --model "
             f"dogtag/models/{model.name} --out /out/{model.name}.csv", ok=(0, 1))
    if tflite:  # the learning loop on the base install: --labeled folders in, a learned model out, tag with it
        step("dogtag learn", LEARN_SCRIPT.format(model=tflite[0].name))
        if not (root / "out" / "learned" / "learned.json").is_file():
            raise CheckFailed("dogtag learn on arm64 wrote no learned model (out/learned/learned.json)")
        learned = json.loads((root / "out" / "learned" / "learned.json").read_text())
        rows = read_rows(root / "out" / "learned.csv")
        if learned["labels"][-2:] != ["blob", "noise"] or len(rows) < 3:
            raise CheckFailed(f"dogtag learn on arm64: labels {learned['labels'][-2:]}, {len(rows)} rows tagged with it")
        step('pip install ".[watch]"', 'cd /src && . .venv/bin/activate && pip install -q ".[watch]"')
        watched = step("dogtag watch, two photos, SIGTERM", WATCH_SCRIPT.format(model=tflite[0].name))
        log_text = (root / "out" / "watch.log").read_text(errors="replace")
        rows = read_rows(root / "out" / "watch.csv")
        if watched.stdout.split()[-2:] != ["exit", "0"] or set(rows) != {"gradient.jpg", "photo.webp"}:
            raise CheckFailed(f"dogtag watch on arm64: {watched.stdout.strip()}, rows {sorted(rows)}; log: {_tail(log_text, 6)}")
        if "(inotify)" not in log_text:
            raise CheckFailed(f"dogtag watch on arm64 did not use inotify: {_tail(log_text, 4)}")
    tested = step("edge-app tests (pytest)", "cd /src && . .venv/bin/activate && pip install -q pytest && "
                  f"python -m pytest -q -p no:cacheprovider {EDGE_APP_TESTS}")
    log(f"  edge-app tests on arm64: {_tail(tested.stdout, 1)}")

    from dogtag.edge_app.model_file import read_model_info

    comparisons = []
    started = time.monotonic()
    here = out / "out"  # beside the photos as the root's /out is: the rows name the photos alike (../photos/...)
    here.mkdir(exist_ok=True)
    for model in tflite + onnx:
        tag_here(photos, model, here / f"x86-{model.name}.csv")
        info = read_model_info(model)
        comparisons.append(compare(model.name, read_rows(here / f"x86-{model.name}.csv"),
                                   read_rows(root / "out" / f"{model.name}.csv"), info.min_confidence, info.min_dog))
    times["tag here (x86)"] = time.monotonic() - started
    return comparisons, times


def check_armhf(root: Path, log) -> float:
    """`pip install .` on 32-bit ARM must stop with Dogtag's message; returns the seconds it took."""
    copy_project(root)
    started = time.monotonic()
    done = run_inside(root, "uname -m; cd /src && python3 -m venv .venv && . .venv/bin/activate && pip install .")
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    if done.returncode == 0:
        raise CheckFailed("pip install . succeeded on 32-bit ARM, where the runtimes cannot exist")
    if "Dogtag needs a 64-bit system" not in output or "Traceback" in output:
        raise CheckFailed(f"pip install . on 32-bit ARM did not say why clearly: {_tail(output, 12)}")
    machine = output.split()[0]
    log(f"  armhf ({machine}): pip install . stopped with the 32-bit message in {seconds:.0f} s")
    return seconds


def _tail(text: str, lines: int = 2) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "dogtag" / "pi-check", help="where the roots and pip's downloads are kept between runs")
    parser.add_argument("--rebuild", action="store_true", help="build the roots again even when cached")
    parser.add_argument("--real-photos", type=int, default=REAL_PHOTOS, help="dogs-in-the-wild photos to tag (0: none)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("DOGTAG_SHARED", REPO.parent / "shared")))
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.monotonic()
    reason = why_it_cannot_run()
    if reason:
        log(f"Raspberry Pi check SKIPPED: {reason}")
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="dogtag-pi-check-") as scratch:
            scratch = Path(scratch)
            photos = scratch / "photos"
            make_generated_photos(photos / "generated")
            real = pick_real_photos(args.shared / "datasets" / "dogs-in-the-wild", args.real_photos)
            for path in real:
                (photos / "real").mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, photos / "real" / path.name)
            log(f"Photos: {sum(1 for p in photos.rglob('*') if p.is_file())} "
                f"({len(real)} real{'' if real else ': ../shared/datasets/dogs-in-the-wild not found'})")
            times = {}
            build = time.monotonic()
            arm64 = cached_root("arm64", args.cache, args.rebuild, log)
            armhf = cached_root("armhf", args.cache, args.rebuild, log)
            times["roots (build or cache)"] = time.monotonic() - build
            work = args.cache / "work"
            with unpacked_root(arm64, work, args.cache / "pip-arm64") as root:
                comparisons, arm_times = check_arm64(root, photos, scratch, log)
            times.update(arm_times)
            with unpacked_root(armhf, work, args.cache / "pip-armhf") as root:
                times["armhf pip install . (refused)"] = check_armhf(root, log)
    except CannotRun as error:
        log(f"Raspberry Pi check SKIPPED: {error}")
        return 0
    except (CheckFailed, subprocess.TimeoutExpired, subprocess.CalledProcessError, OSError) as error:
        log(f"Raspberry Pi check FAILED: {error}")  # OSError: e.g. a tool removed meanwhile, a full disk
        return 1
    log(format_comparisons(comparisons))
    log("Times: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items())
        + f"; total {time.monotonic() - started:.0f} s")
    failed = [c for c in comparisons if c.problems]
    log(f"Raspberry Pi check {'FAILED' if failed else 'passed'}: {len(comparisons)} models, tolerance {TOLERANCE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
