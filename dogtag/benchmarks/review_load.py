"""The review page under a shelter's busiest hour: `python -m dogtag.benchmarks.review_load`.

20 volunteers on their phones (threads with their own HTTP connection, a second or two of thinking
between steps) use `dogtag review` for 2 minutes, against 127.0.0.1 only: each loads the page, its
status and a page of rows, a screen of thumbnails, a large view, saves corrections, and uploads two
photos. Meanwhile a camera drops a photo into the same folder every few seconds and `dogtag watch`
appends its row to the same results file that the corrections are written into.

Then it checks what must hold whatever the load: every correction that was answered 200 is in the
reviews file exactly once and the results file shows the last one per photo, every upload has exactly
one row, every camera photo exactly one row, and no answer was a 5xx. Prints p50 / p95 latency per
route (and writes them as JSON with the machine's description). Needs the review and test extras
(httpx). Bounded: --volunteers (20), --seconds (120), at most 500 steps per volunteer.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from PIL import Image

from dogtag.benchmarks.machine import describe_machine, load_average, usable_cores
from dogtag.benchmarks.review import make_photos
from dogtag.benchmarks.watch import start_watch, stop, wait_until
from dogtag.edge_app.classifier import resolve_model
from dogtag.edge_app.model_file import read_model_info
from dogtag.edge_app.results import read_results
from dogtag.edge_app.reviews import read_review_log, reviews_path

RESULTS = "dogtag-results.csv"
MAX_STEPS = 500  # per volunteer: a bound besides the time
CAMERA_EVERY = 3.0  # seconds between the camera's photos
DOGTAG = "from dogtag.cli import main; main()"


@dataclass
class Volunteer:
    """What one simulated volunteer sent and what came back."""

    name: str
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    corrections: list[tuple[int, str, str]] = field(default_factory=list)  # (source, path, breed), answered 200
    uploads: list[str] = field(default_factory=list)  # the names sent, answered 200 with one row each
    problems: list[str] = field(default_factory=list)


def phone_photo(seed: int) -> bytes:
    """A 1024 x 768 JPEG, different for every seed (as a phone sends, a little smaller)."""
    colours = random.Random(seed).choices(range(256), k=12)
    image = Image.frombytes("RGB", (2, 2), bytes(colours)).resize((1024, 768), Image.Resampling.BILINEAR)
    noise = Image.effect_noise((1024, 768), 24 + seed % 16).convert("RGB")
    data = io.BytesIO()
    Image.blend(image, noise, 0.25).save(data, "JPEG", quality=85)
    return data.getvalue()


def volunteer_session(url: str, volunteer: Volunteer, labels: tuple[str, ...], deadline: float, seed: int) -> None:
    """One phone: browse, look, correct, upload twice, think between steps, until the deadline."""
    import httpx

    rng = random.Random(seed)

    def call(route: str, method: str, path: str, **kwargs) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            volunteer.problems.append(f"{method} {path}: {error!r}")
            return None
        volunteer.timings[route].append(time.perf_counter() - started)
        volunteer.statuses[response.status_code] += 1
        if response.status_code >= 500:
            volunteer.problems.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def upload(step: int) -> None:
        name = f"{volunteer.name}-upload-{len(volunteer.uploads) + 1}.jpg"
        added = call("POST /api/photos", "POST", "/api/photos",
                     files={"files": (name, phone_photo(seed * 10 + step), "image/jpeg")})
        if added is not None and added.status_code == 200:
            answer = added.json()
            if len(answer["items"]) != 1 or answer["errors"]:
                volunteer.problems.append(f"upload {name}: {answer}")
            volunteer.uploads.append(name)

    with httpx.Client(base_url=url, timeout=120) as client:
        for step in range(MAX_STEPS):
            if time.monotonic() >= deadline:
                break
            call("GET / (page)", "GET", "/")
            call("GET /static/*", "GET", "/static/app.js")
            call("GET /static/*", "GET", "/static/style.css")
            status = call("GET /api/status", "GET", "/api/status")
            total = sum(s["photos"] for s in status.json()["sources"]) if status is not None and status.status_code == 200 else 0
            offset = rng.randrange(0, max(1, total - 59))  # a page somewhere in the folder, as one scrolls
            listing = call("GET /api/photos", "GET", f"/api/photos?status=all&offset={offset}&limit=60")
            items = listing.json()["items"] if listing is not None and listing.status_code == 200 else []
            items = [item for item in items if not item.get("missing")]
            for item in rng.sample(items, min(8, len(items))):
                call("GET /api/thumbnail", "GET", f"/api/thumbnail/{item['source']}/{item['path']}")
            time.sleep(rng.uniform(0.5, 1.5))  # a volunteer looks at the grid
            if items:
                item = rng.choice(items)
                call("GET /api/large", "GET", f"/api/large/{item['source']}/{item['path']}")
                time.sleep(rng.uniform(0.5, 1.5))
                breed = rng.choice(labels)
                saved = call("POST /api/reviews", "POST", "/api/reviews", json={
                    "source": item["source"], "path": item["path"], "reviewed_breed": breed,
                    "reviewed_by": volunteer.name})
                if saved is not None and saved.status_code == 200:
                    volunteer.corrections.append((item["source"], item["path"], breed))
            if step in (0, 2):  # two uploads each: photos taken on the phone
                upload(step)
            time.sleep(rng.uniform(1.0, 3.0))
        for step in range(len(volunteer.uploads), 2):  # two each, however short the run
            upload(100 + step)


def camera(folder: Path, staged: list[Path], stop_at: float, dropped: list[str]) -> None:
    """A camera (or a phone's sync) dropping a photo into the watched folder every CAMERA_EVERY seconds."""
    for photo in staged:
        if time.monotonic() >= stop_at:
            return
        target = folder / "camera" / photo.name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(photo, folder / "camera" / f".{photo.name}.part")
        (folder / "camera" / f".{photo.name}.part").rename(target)  # arrives whole, as a sync app does it
        dropped.append(f"camera/{photo.name}")
        time.sleep(CAMERA_EVERY)


def start_review(folder: Path, work: Path, model: str) -> tuple[subprocess.Popen, str]:
    """`dogtag review` on 127.0.0.1 with a port of its choosing; returns it and its address."""
    with open(work / "review.log", "w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", DOGTAG, "review", str(folder), "--no-browser", "--port", "0", "--model", model,
             "--cache", str(work / "cache"), "--intake", str(work / "intake")],
            stdout=subprocess.PIPE, stderr=errors, text=True)
    line = process.stdout.readline()
    if not line.startswith("Dogtag review: "):
        process.kill()
        raise RuntimeError(f"dogtag review did not start: {line!r} {(work / 'review.log').read_text()[-500:]}")
    return process, line.split(": ", 1)[1].strip()


def check(folder: Path, work: Path, volunteers: list[Volunteer], dropped: list[str], sources: dict[int, Path]) -> list[str]:
    """What must hold after the run: each correction once, each upload and camera photo one row, no 5xx.
    `sources`: the results file of each source index (the folder's, the intake's)."""
    problems = [problem for v in volunteers for problem in v.problems]
    sent = Counter((source, path, breed, v.name) for v in volunteers for source, path, breed in v.corrections)
    saved: Counter = Counter()
    for index, results in sources.items():
        log, damaged = read_review_log(reviews_path(results)) if reviews_path(results).exists() else ([], [])
        if damaged:
            problems.append(f"{reviews_path(results)}: damaged lines {damaged}")
        saved.update((index, r.path, r.reviewed_breed, r.reviewed_by) for r in log)
        rows, _ = read_results(results, "csv")
        last = {r.path: r.reviewed_breed for r in log}
        shown = {row.path: row.reviewed_breed for row in rows}
        wrong = [path for path, breed in last.items() if shown.get(path) != breed]
        if wrong:
            problems.append(f"{results}: {len(wrong)} photos without their last correction, e.g. {wrong[:3]}")
    if sent != saved:
        problems.append(f"corrections: {sum((sent - saved).values())} answered 200 but not in a reviews file, "
                        f"{sum((saved - sent).values())} in one more often than sent")
    rows, _ = read_results(folder / RESULTS, "csv")
    paths = Counter(row.path for row in rows)
    for path in dropped:
        if paths[path] != 1:
            problems.append(f"{path}: {paths[path]} rows in the results file (the watch must add exactly one)")
    problems += [f"{path}: {count} rows in the results file" for path, count in paths.items() if count > 1]
    intake_rows, _ = read_results(work / "intake" / RESULTS, "csv") if (work / "intake" / RESULTS).exists() else ([], True)
    uploaded = Counter(Path(row.path).name for row in intake_rows)
    for name in (name for v in volunteers for name in v.uploads):
        if uploaded[name] != 1:
            problems.append(f"upload {name}: {uploaded[name]} rows in the intake's results file (expected 1)")
    return problems


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(volunteers: int, seconds: float, photos: int, model: str, work: Path, log=print) -> dict:
    """Set up the folder, run the load with the watch and the camera beside it, check; returns the record."""
    folder = work / "shelter"
    make_photos(folder, photos, (640, 480))
    staged = make_photos(work / "staged", int(seconds / CAMERA_EVERY) + 2, (640, 480), seed=7)
    log(f"Tagging {photos} photos with `dogtag tag` (the folder the volunteers review)...")
    tagged = subprocess.run([sys.executable, "-c", DOGTAG, "tag", str(folder), "--model", model],
                            capture_output=True, text=True)
    if tagged.returncode != 0:
        raise RuntimeError(f"dogtag tag failed: {tagged.stderr[-500:]}")
    labels = read_model_info(resolve_model(model)).labels
    watch, watch_log = start_watch(folder, model, "--settle", "1")
    review, url = start_review(folder, work, model)
    sources = {s["source"]: Path(s["results"]) for s in json.loads(urlopen(f"{url}api/status", timeout=60).read())["sources"]}
    load_before = load_average()
    log(f"{volunteers} volunteers for {seconds:.0f} s against {url} (dogtag watch on the same folder)...")
    people = [Volunteer(f"volunteer-{i:02d}") for i in range(volunteers)]
    dropped: list[str] = []
    started = time.monotonic()
    deadline = started + seconds
    threads = [threading.Thread(target=volunteer_session, args=(url, v, labels, deadline, i + 1)) for i, v in enumerate(people)]
    threads.append(threading.Thread(target=camera, args=(folder, [p for p in staged], deadline, dropped)))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        load_after = load_average()
        wait_until(lambda: all(f"{path}," in (folder / RESULTS).read_text(encoding="utf-8-sig") for path in dropped),
                   120, "the watch to tag the camera's last photos", every=0.2)
    finally:
        review.send_signal(2)  # Ctrl-C
        review_exit = review.wait(timeout=60)
        watch_exit = stop(watch)
    problems = check(folder, work, people, dropped, sources)
    if review_exit != 0 or watch_exit != 0:
        problems.append(f"exit codes: dogtag review {review_exit}, dogtag watch {watch_exit} "
                        f"({watch_log.read_text()[-300:]})")
    timings: dict[str, list[float]] = defaultdict(list)
    for person in people:
        for route, values in person.timings.items():
            timings[route] += values
    statuses = sum((p.statuses for p in people), Counter())
    return {
        "machine": describe_machine(), "usable_cores": usable_cores(),
        "load_average_before": load_before, "load_average_after": load_after,
        "volunteers": volunteers, "seconds": round(elapsed, 1), "photos_in_folder": photos,
        "requests": sum(statuses.values()), "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "corrections": sum(len(p.corrections) for p in people), "uploads": sum(len(p.uploads) for p in people),
        "camera_photos": len(dropped),
        "routes": {route: {"n": len(values), "p50_ms": round(1000 * statistics.median(values), 1),
                           "p95_ms": round(1000 * percentile(values, 0.95), 1)}
                   for route, values in sorted(timings.items())},
        "problems": problems,
    }


def report(record: dict) -> str:
    """The table and the verdict, as printed."""
    lines = [f"{record['volunteers']} volunteers, {record['seconds']} s, {record['requests']} requests "
             f"(statuses {record['statuses']}); {record['corrections']} corrections, {record['uploads']} uploads, "
             f"{record['camera_photos']} camera photos tagged by dogtag watch meanwhile",
             f"load average {record['load_average_before']} before, {record['load_average_after']} after "
             f"({record['usable_cores']} cores)",
             f"{'route':<22} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8}"]
    for route, figures in record["routes"].items():
        lines.append(f"{route:<22} {figures['n']:>8} {figures['p50_ms']:>8.0f} {figures['p95_ms']:>8.0f}")
    if record["problems"]:
        lines += ["PROBLEMS:", *(f"  {problem}" for problem in record["problems"])]
    else:
        lines.append("Every correction saved exactly once, every upload and camera photo tagged once, no 5xx.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volunteers", type=int, default=20, help="simulated phones at once (default 20)")
    parser.add_argument("--seconds", type=float, default=120, help="how long they keep at it (default 120)")
    parser.add_argument("--photos", type=int, default=300, help="tagged photos in the folder (default 300)")
    parser.add_argument("--model", default="fast", help="accurate, fast (default) or a model file")
    parser.add_argument("--out", type=Path, default=Path("bench-results/review_load.json"), help="the JSON record")
    args = parser.parse_args(argv)
    if not 1 <= args.volunteers <= 200 or not 0 < args.seconds <= 1800:
        parser.error("--volunteers must be 1 to 200 and --seconds at most 1800")
    with tempfile.TemporaryDirectory(prefix="dogtag-review-load-") as work:
        record = run(args.volunteers, args.seconds, args.photos, args.model, Path(work))
    print(report(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"Written: {args.out}")
    return 1 if record["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
