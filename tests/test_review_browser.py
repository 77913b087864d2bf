"""The review page in a real browser (Chromium, headless), as a volunteer uses it: the grid, a correction
made with the keyboard, undo, a reload that still shows it, an upload, and a path that must not work.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them with apt-get) and Selenium;
skipped, saying so, without them. Set DOGTAG_REVIEW_SCREENSHOT=docs/review.png to keep the
screenshot that the README shows (otherwise it goes into the test's temporary folder).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the review page needs the review extra: pip install -e '.[review]'")
pytest.importorskip("selenium", reason="the browser test needs Selenium: pip install -e '.[test]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("Chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                ".ci/run does it)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from dogtag.edge_app.xmp import read_keywords  # noqa: E402
from dogtag.review.server import Options, ReviewServer  # noqa: E402
from tests.review_fixtures import DELETED, MODEL, draw_dog, make_shelter_folder, raw_get, results_rows  # noqa: E402

# Without these, headless Chromium on a machine with no network waits on connections it never gets.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1280,900")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def shelter_page(tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    server = ReviewServer(Options(folders=[str(folder)], port=0, cache=str(tmp_path / "cache"), xmp=True, model=MODEL))
    server.start_in_thread()
    yield folder, server
    server.stop()


def wait(driver, condition, what: str, seconds: float = 15):
    return WebDriverWait(driver, seconds).until(lambda d: condition(d), message=f"waited for {what}")


def cards(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#grid .card")


def press(driver, *keys) -> None:
    webdriver.ActionChains(driver).send_keys(*keys).perform()


def test_a_volunteer_corrects_photos_with_the_keyboard_and_finds_the_corrections_after_a_reload(
    browser, shelter_page, tmp_path
):
    folder, server = shelter_page
    browser.get(server.url)
    wait(browser, lambda d: len(cards(d)) == 9, "the nine tagged photos")

    first = cards(browser)[0]
    assert "UNSURE" in first.text and "toy poodle" in first.text and "39%" in first.text
    assert "selected" in first.get_attribute("class")
    gone = next(card for card in cards(browser) if "deleted or moved" in card.text)
    assert DELETED in gone.text
    assert "Unsure3" in browser.find_element(By.ID, "filters").text  # the filter with its count

    press(browser, "2")  # coco.jpg: the second of its top breeds
    wait(browser, lambda d: "miniature poodle" in cards(d)[0].text and "REVIEWED" in cards(d)[0].text, "the review")
    assert "selected" in cards(browser)[1].get_attribute("class"), "on to the next photo"
    press(browser, Keys.ARROW_RIGHT, Keys.ENTER)  # luna.png: confirm the model's breed
    wait(browser, lambda d: "REVIEWED" in cards(d)[2].text, "the confirmation")
    press(browser, "u")  # ... and undo it
    wait(browser, lambda d: "REVIEWED" not in cards(d)[2].text, "the undo")
    wait(browser, lambda d: results_rows(folder / "dogtag-results.csv")["kennel_2/luna.png"]["reviewed_breed"] == "",
         "the undo in the results file")

    rows = results_rows(folder / "dogtag-results.csv")
    assert rows["coco.jpg"]["reviewed_breed"] == "miniature poodle"
    assert read_keywords(folder / "coco.xmp") == (["miniature poodle"], ["Dogs|miniature poodle"])
    browser.refresh()
    wait(browser, lambda d: len(cards(d)) == 9, "the reloaded page")
    assert "\u2713 miniature poodle" in cards(browser)[0].text and "toy poodle" in cards(browser)[0].text

    press(browser, Keys.ARROW_RIGHT, " ")  # bella.jpg, large, for the screenshot
    wait(browser, lambda d: d.find_element(By.ID, "viewer").is_displayed(), "the large view")
    wait(browser, lambda d: d.execute_script("return document.querySelector('#viewer img').complete"), "the photo")
    assert "golden retriever" in browser.find_element(By.CSS_SELECTOR, "#viewer .choices").text
    save_screenshot(browser, tmp_path, "-photo")
    press(browser, Keys.ESCAPE)
    wait(browser, lambda d: not d.find_element(By.ID, "viewer").is_displayed(), "the grid again")
    save_screenshot(browser, tmp_path)


def test_a_photo_added_from_the_browser_is_tagged_and_shown_and_no_path_leaves_the_folder(browser, shelter_page, tmp_path):
    folder, server = shelter_page
    (tmp_path / "secret.txt").write_text("the shelter's bank details")
    new = draw_dog(tmp_path / "from-the-phone.jpg", seed=6)
    browser.get(server.url)
    wait(browser, lambda d: len(cards(d)) == 9, "the grid")

    browser.find_element(By.ID, "file-input").send_keys(str(new))

    wait(browser, lambda d: len(cards(d)) == 10, "the added photo", seconds=30)
    assert (folder / "intake" / "from-the-phone.jpg").read_bytes() == new.read_bytes()
    assert "intake/from-the-phone.jpg" in results_rows(folder / "dogtag-results.csv")
    added = cards(browser)[0]
    assert "selected" in added.get_attribute("class")
    assert added.find_element(By.TAG_NAME, "img").get_attribute("alt") == "intake/from-the-phone.jpg"

    browser.get(f"{server.url}api/original/0/..%2F..%2Fsecret.txt")
    assert "bank details" not in browser.page_source and "not a photo of the reviewed folders" in browser.page_source
    browser.get(f"{server.url}api/original/0/%2E%2E/%2E%2E/secret.txt")  # Chromium resolves these dots itself
    assert "bank details" not in browser.page_source and "Not Found" in browser.page_source
    status, body = raw_get(server.port, "/api/original/0/../../secret.txt")  # sent as is, no client tidying
    assert status == 404 and b"bank details" not in body


def save_screenshot(driver, tmp_path: Path, suffix: str = "") -> Path:
    """Keep the page as a small PNG (256 colours): where DOGTAG_REVIEW_SCREENSHOT says, else in tmp_path.

    `suffix` goes before the extension: review.png, review-photo.png.
    """
    from PIL import Image

    target = Path(os.environ.get("DOGTAG_REVIEW_SCREENSHOT") or tmp_path / "review.png")
    target = target.with_name(f"{target.stem}{suffix}{target.suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    assert target.stat().st_size > 10_000
    return target
