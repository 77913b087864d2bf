"""How fast the review page is with a big folder: `python -m dogtag.benchmarks.review [--photos 10000]`.

Prints (and writes as JSON with the machine's description):
- the server's first listing of a folder of N tagged photos (it reads the results file and finds
  every photo on disk) and a warm listing;
- first paint in headless Chromium: first contentful paint, the first page of rows, and the first
  screen of thumbnails loaded, with the thumbnail cache cold and then warm (browser cache off);
- thumbnails made per second: small photos in the server's way (one decoder per core), through
  HTTP with 4 clients at once, and 12-megapixel JPEGs;
- a correction's round trip: POST /api/reviews until saved in the reviews file and the results file.

The photos are generated (320 x 240 JPEGs, and a few 4000 x 3000 ones) and the results file is
written with made-up rows in the bundled model's labels (30% unsure), as `dogtag tag` writes them:
the page's speed does not depend on who made the rows. Needs the review extra; Chromium figures
need `chromium` and `chromium-driver` (skipped, saying so, without them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from dogtag.benchmarks.machine import busy_warning, describe_machine, load_average, usable_cores
from dogtag.edge_app.classifier import resolve_model
from dogtag.edge_app.model_file import read_model_info
from dogtag.edge_app.results import Row, format_mtime, write_results

SMALL_SIZE = (320, 240)
LARGE_SIZE = (4000, 3000)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1280,900")
# When the first screen of thumbnails has loaded, from the page's own timings (ms since navigation).
FIRST_SCREEN = """
const done = arguments[arguments.length - 1];
function check() {
  const cards = [...document.querySelectorAll('#grid .card')];
  const visible = cards.filter(c => c.getBoundingClientRect().top < innerHeight);
  const images = visible.map(c => c.querySelector('img')).filter(Boolean);
  if (!images.length || !images.every(i => i.complete)) { setTimeout(check, 10); return; }
  const end = (url) => { const e = performance.getEntriesByName(url)[0]; return e ? e.responseEnd : null; };
  const listing = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/photos?'))[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  done({first_contentful_paint_ms: paint ? paint.startTime : null,
        first_rows_ms: listing ? listing.responseEnd : null,
        first_screen_ms: Math.max(...images.map(i => end(i.src) || performance.now())),
        thumbnails_on_screen: images.length, cards: cards.length});
}
check();
"""


def make_photos(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """`count` JPEGs of `size`: smooth colour fields with grain (so they compress like photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    grain = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)

    def make(index: int) -> Path:
        colours = np.random.default_rng(seed * 1_000_003 + index).integers(0, 256, (2, 2, 3), dtype=np.uint8)
        base = Image.fromarray(colours).resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(base, dtype=np.uint8) // 2 + grain * 2
        path = folder / f"kennel_{index % 50:02d}" / f"photo_{index:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path, quality=88)
        return path

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(make, range(count)))


def write_made_up_results(folder: Path, photos: list[Path], labels: tuple[str, ...], seed: int = 0) -> Path:
    """A results file for the photos: 30% unsure, 60% dog, 7% not a dog, 3% errors."""
    rng = np.random.default_rng(seed)
    rows = []
    for path in photos:
        draw = rng.random()
        status = "unsure" if draw < 0.3 else "dog" if draw < 0.9 else "not_a_dog" if draw < 0.97 else "error"
        picks = rng.choice(len(labels), 3, replace=False)
        first = float(rng.uniform(0.3, 0.9) if status == "unsure" else rng.uniform(0.9, 1.0))
        top_k = ((labels[picks[0]], first), (labels[picks[1]], (1 - first) * 0.6), (labels[picks[2]], (1 - first) * 0.3))
        info = path.stat()
        rows.append(Row(
            path=str(path.relative_to(folder)), status=status, breed="" if status in ("error", "not_a_dog") else top_k[0][0],
            confidence=None if status == "error" else first, top_k=() if status == "error" else top_k,
            dog_probability=None if status == "error" else 0.99, error="damaged image; skipped" if status == "error" else "",
            size=info.st_size, mtime=format_mtime(info.st_mtime_ns), model_version="bench",
        ))
    results = folder / "dogtag-results.csv"
    write_results(results, "csv", rows)
    return results


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))], "max": ordered[-1],
            "n": len(ordered)}


def browser_first_paint(url: str, profile: Path) -> dict:
    """First paint figures in headless Chromium: with the thumbnail cache cold, then warm."""
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return {"skipped": "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"}
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        driver.set_script_timeout(300)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        figures = {}
        for run in ("cold_thumbnail_cache", "warm_thumbnail_cache"):
            driver.get("about:blank")
            driver.get(url)
            figures[run] = driver.execute_async_script(FIRST_SCREEN)
        return figures
    finally:
        driver.quit()


def thumbnail_rates(photos: list[Path], large: list[Path], cache: Path, client, count: int) -> dict:
    """Thumbnails per second: in the server's way, through HTTP with 4 clients, and of 12 MP JPEGs."""
    from dogtag.review.thumbnails import THUMBNAIL_SIDE, rendition

    direct, http = photos[-2 * count : -count], photos[-count:]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda p: rendition(p, THUMBNAIL_SIDE, cache), direct))
    small = len(direct) / (time.perf_counter() - started)
    folder = photos[0].parents[1]

    def fetch(path: Path) -> int:
        return client.get(f"/api/thumbnail/0/{path.relative_to(folder).as_posix()}").status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(fetch, http))
    over_http = len(http) / (time.perf_counter() - started)
    assert codes == [200] * len(http), f"thumbnail requests failed: {sorted(set(codes))}"
    large_rate = None
    if large:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(lambda p: rendition(p, THUMBNAIL_SIDE, cache), large))
        large_rate = len(large) / (time.perf_counter() - started)
    return {"small_photos_per_s": small, "small_photos_over_http_4_clients_per_s": over_http,
            "large_12mp_jpegs_per_s": large_rate, "small_count": len(direct), "large_count": len(large)}


def correction_round_trips(client, paths: list[str], results: Path) -> dict:
    """Milliseconds from sending a correction to its answer (saved in both files), one after another."""
    times = []
    for index, path in enumerate(paths):
        started = time.perf_counter()
        response = client.post("/api/reviews", json={"path": path, "reviewed_breed": f"bench {index}", "reviewed_by": "bench"})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and not response.json()["warnings"], response.text
    text = results.read_text(encoding="utf-8")
    assert all(f"bench {index}," in text for index in range(len(paths))), "every correction is in the results file"
    return percentiles(times)


def run(count: int, large_count: int, corrections: int, thumbnails: int, browser: bool, model: str | None = None) -> dict:
    """Every figure, on a scratch folder that is removed afterwards."""
    import httpx

    from dogtag.review.server import Options, ReviewServer

    load_before = load_average()
    labels = read_model_info(resolve_model(model)).labels
    record: dict = {"photos": count, "machine": describe_machine()}
    with tempfile.TemporaryDirectory(prefix="dogtag-review-bench-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        photos = make_photos(root / "shelter", count, SMALL_SIZE)
        large = make_photos(root / "large", large_count, LARGE_SIZE, seed=1)
        results = write_made_up_results(root / "shelter", photos, labels)
        record["setup_s"] = time.perf_counter() - started
        options = Options(folders=[str(root / "shelter")], port=0, cache=str(root / "cache"), model=model)
        server = ReviewServer(options).start_in_thread()
        try:
            client = httpx.Client(base_url=server.url, timeout=120)
            started = time.perf_counter()
            first = client.get("/api/photos", params={"limit": 120})
            record["first_listing_ms"] = (time.perf_counter() - started) * 1000
            assert first.status_code == 200 and first.json()["total"] == count, first.text[:300]
            warm = []
            for _ in range(20):
                started = time.perf_counter()
                client.get("/api/photos", params={"limit": 120, "status": "unsure"})
                warm.append((time.perf_counter() - started) * 1000)
            record["warm_listing_ms"] = percentiles(warm)
            record["browser"] = (browser_first_paint(server.url, root / "profile") if browser
                                 else {"skipped": "--no-browser"})
            record["thumbnails"] = thumbnail_rates(photos, large, root / "thumbs-direct", client, thumbnails)
            rows = [item["path"] for item in first.json()["items"]]
            record["correction_ms"] = correction_round_trips(client, rows[:corrections], results)
            record["results_file_mb"] = results.stat().st_size / 1e6
        finally:
            server.stop()
    record["load_average_before"] = load_before
    record["busy"] = busy_warning(load_before, usable_cores())
    return record


def report(record: dict) -> str:
    """The figures as lines of text."""
    lines = [f"Review page with {record['photos']:,} tagged photos (results file {record['results_file_mb']:.1f} MB)"]
    lines.append(f"  first listing (read results, find photos): {record['first_listing_ms']:8.0f} ms")
    lines.append(f"  warm listing, 120 rows, p50 / p90:         {record['warm_listing_ms']['p50']:8.1f} / "
                 f"{record['warm_listing_ms']['p90']:.1f} ms")
    browser = record["browser"]
    if "skipped" in browser:
        lines.append(f"  first paint in Chromium: skipped ({browser['skipped']})")
    for run in ("cold_thumbnail_cache", "warm_thumbnail_cache"):
        if run in browser:
            figures = browser[run]
            lines.append(
                f"  Chromium, {run.replace('_', ' ')}: first contentful paint {figures['first_contentful_paint_ms']:.0f} ms, "
                f"first rows {figures['first_rows_ms']:.0f} ms, first screen of {figures['thumbnails_on_screen']} "
                f"thumbnails {figures['first_screen_ms']:.0f} ms")
    thumbs = record["thumbnails"]
    lines.append(f"  thumbnails/s, 320x240 JPEGs, one decoder per core: {thumbs['small_photos_per_s']:7.0f}")
    lines.append(f"  thumbnails/s, 320x240 JPEGs, HTTP, 4 clients:      {thumbs['small_photos_over_http_4_clients_per_s']:7.0f}")
    if thumbs["large_12mp_jpegs_per_s"] is not None:
        lines.append(f"  thumbnails/s, 12 MP JPEGs:                         {thumbs['large_12mp_jpegs_per_s']:7.1f}")
    trip = record["correction_ms"]
    lines.append(f"  correction round trip, p50 / p90 / max: {trip['p50']:.1f} / {trip['p90']:.1f} / {trip['max']:.1f} ms "
                 f"({trip['n']} corrections)")
    machine = record["machine"]
    lines.append(f"Machine: {machine['cpu']}, {machine['usable_cores']} cores, load average {record['load_average_before']} before")
    if record["busy"]:
        lines.append(f"Warning: {record['busy']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m dogtag.benchmarks.review [--photos N] [--out FILE] [--no-browser]."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000, help="tagged photos in the folder (default 10000)")
    parser.add_argument("--large-photos", type=int, default=8, help="12 MP JPEGs to make thumbnails of (default 8)")
    parser.add_argument("--thumbnails", type=int, default=300, help="small photos per thumbnail figure (default 300)")
    parser.add_argument("--corrections", type=int, default=50, help="corrections timed (default 50)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium figures")
    parser.add_argument("--model", default=None, help="accurate, fast or a file: whose labels the rows use (default: accurate)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/review.json"), help="the JSON record")
    args = parser.parse_args(argv)
    if args.photos < 2 * args.thumbnails or args.photos < args.corrections:
        parser.error("--photos must be at least twice --thumbnails and at least --corrections")
    record = run(args.photos, args.large_photos, args.corrections, args.thumbnails, not args.no_browser, args.model)
    print(report(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"Written: {args.out}")


if __name__ == "__main__":
    main()
