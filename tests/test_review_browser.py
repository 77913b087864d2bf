"""The review page in a real browser (Chromium, headless), as a volunteer uses it day after day: the grid,
corrections made with the keyboard, counts that follow them, undo (also of yesterday's corrections), coming
back to the next photo to review, the name that signs corrections, the breed search, a phone's screen, the
QR code for phones, uploads, the API page with no network, and paths that must not work.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them with apt-get) and Selenium;
skipped, saying so, without them. Set DOGTAG_REVIEW_SCREENSHOT=docs/review.png to keep the
screenshots that the README shows (review.png, review-photo.png, review-phone.png; otherwise they go into
the test's temporary folder).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
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

from dogtag.edge_app.reviews import read_review_log  # noqa: E402
from dogtag.edge_app.xmp import read_keywords  # noqa: E402
from dogtag.review.server import Options, ReviewServer  # noqa: E402
from tests.review_fixtures import DELETED, MODEL, draw_dog, make_shelter_folder, raw_get, results_rows  # noqa: E402

# Without these, headless Chromium on a machine with no network waits on connections it never gets.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1280,900")


REVIEWS = "dogtag-results.reviews.jsonl"


def start_chromium(tmp_path: Path, *flags: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path)
    yield driver
    driver.quit()


def review_server(folder: Path, tmp_path: Path, **options) -> ReviewServer:
    options = {"port": 0, "cache": str(tmp_path / "cache"), "xmp": True, "model": MODEL,
               "token_file": str(tmp_path / "config" / "review-token"), **options}
    return ReviewServer(Options(folders=[str(folder)], **options)).start_in_thread()


@pytest.fixture
def shelter_page(tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    server = review_server(folder, tmp_path)
    yield folder, server
    server.stop()


def wait(driver, condition, what: str, seconds: float = 60):  # generous: Chromium on a loaded machine
    return WebDriverWait(driver, seconds).until(lambda d: condition(d), message=f"waited for {what}")


def cards(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#grid .card")


def press(driver, *keys) -> None:
    webdriver.ActionChains(driver).send_keys(*keys).perform()


def open_page(driver, server: ReviewServer, name: str | None = "Ana", photos: int = 9) -> None:
    """Open the page as a volunteer whose browser knows their name (None: a first visit)."""
    driver.get(server.url)
    if name is not None:
        driver.execute_script("localStorage.setItem('dogtag-reviewer', arguments[0])", name)
        driver.refresh()
    wait(driver, lambda d: len(cards(d)) == photos, f"the {photos} photos")


def shown_filter(driver) -> str:
    """The filter the page shows (once its photos are listed: the buttons are drawn with them)."""
    return driver.execute_script("const b = document.querySelector('#filters [aria-pressed=true]'); "
                                 "return b ? b.dataset.filter : ''")


def selected(driver) -> int:
    return next(i for i, card in enumerate(cards(driver)) if "selected" in card.get_attribute("class"))


def notice_text(driver) -> str:
    return driver.find_element(By.ID, "notice").get_attribute("textContent")


def reviews_saved(folder: Path) -> list:
    return read_review_log(folder / REVIEWS)[0] if (folder / REVIEWS).exists() else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- the daily round ------------------------------------------------------------------------------


def test_a_volunteer_corrects_photos_with_the_keyboard_and_finds_the_corrections_after_a_reload(
    browser, shelter_page, tmp_path
):
    folder, server = shelter_page
    open_page(browser, server)

    first = cards(browser)[0]
    assert "UNSURE" in first.text and "toy poodle" in first.text and "39%" in first.text
    assert "selected" in first.get_attribute("class")
    gone = next(card for card in cards(browser) if "deleted or moved" in card.text)
    assert DELETED in gone.text
    assert "Unsure3" in browser.find_element(By.ID, "filters").text  # the filter with its count
    shown = browser.execute_script("return [0.001, 0.003, 0.0049, 0.39, 0.999].map(percent)")
    assert shown == ["0.1%", "0.3%", "0.5%", "39%", "100%"], "a small alternative never reads 0%"

    press(browser, "2")  # coco.jpg: the second of its top breeds
    wait(browser, lambda d: "miniature poodle" in cards(d)[0].text and "REVIEWED" in cards(d)[0].text, "the review")
    assert "selected" in cards(browser)[1].get_attribute("class"), "on to the next photo"
    press(browser, Keys.ARROW_RIGHT, Keys.ENTER)  # luna.png: confirm the model's breed
    wait(browser, lambda d: "REVIEWED" in cards(d)[2].text, "the confirmation")
    press(browser, "u")  # ... and undo it
    wait(browser, lambda d: "REVIEWED" not in cards(d)[2].text, "the undo")
    wait(browser, lambda d: results_rows(folder / "dogtag-results.csv")["kennel_2/luna.png"]["reviewed_breed"] == "",
         "the undo in the results file")
    withdrawal = reviews_saved(folder)[-1]
    assert (withdrawal.reviewed_breed, withdrawal.reviewed_by) == ("", "Ana") and withdrawal.reviewed_at, \
        "an undo says who and when"

    rows = results_rows(folder / "dogtag-results.csv")
    assert (rows["coco.jpg"]["reviewed_breed"], rows["coco.jpg"]["reviewed_by"]) == ("miniature poodle", "Ana")
    assert read_keywords(folder / "coco.xmp") == (["miniature poodle"], ["Dogs|Non-Sporting|miniature poodle"])
    browser.find_element(By.CSS_SELECTOR, "#filters [data-filter=all]").click()
    wait(browser, lambda d: shown_filter(d) == "all" and "\u2713 miniature poodle" in cards(d)[0].text, "every photo")
    assert "toy poodle" in cards(browser)[0].text

    press(browser, " ")  # bella.jpg, the first not reviewed, large, for the screenshot
    wait(browser, lambda d: d.find_element(By.ID, "viewer").is_displayed(), "the large view")
    wait(browser, lambda d: d.execute_script("return document.querySelector('#viewer img').complete"), "the photo")
    assert "golden retriever" in browser.find_element(By.CSS_SELECTOR, "#viewer .choices").text
    press(browser, "/", "retriever")  # the breed search, for the screenshot
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#suggestions li")) >= 5, "the retrievers")
    save_screenshot(browser, tmp_path, "-photo")
    press(browser, Keys.ESCAPE, Keys.ESCAPE)  # out of the search, then out of the large view
    wait(browser, lambda d: not d.find_element(By.ID, "viewer").is_displayed(), "the grid again")
    save_screenshot(browser, tmp_path)


def test_the_counts_follow_each_correction_and_each_added_photo(browser, shelter_page, tmp_path):
    folder, server = shelter_page
    open_page(browser, server)
    summary = browser.find_element(By.ID, "summary")
    filters = browser.find_element(By.ID, "filters")
    assert "0 of 9 reviewed" in summary.text and "To review9" in filters.text and "Reviewed0" in filters.text

    press(browser, "1")  # coco.jpg: toy poodle

    wait(browser, lambda d: "1 of 9 reviewed" in summary.text, "the summary after a correction")
    assert "Reviewed1" in filters.text and "To review8" in filters.text
    browser.find_element(By.ID, "file-input").send_keys(str(draw_dog(tmp_path / "new.jpg", seed=6)))
    wait(browser, lambda d: "1 of 10 reviewed" in summary.text, "the summary after an upload", seconds=30)
    assert "All10" in filters.text and "To review9" in filters.text and len(cards(browser)) == 10


def test_keys_pressed_faster_than_the_server_answers_go_to_photo_after_photo(browser, shelter_page):
    folder, server = shelter_page
    open_page(browser, server)

    press(browser, "1", "1", "1", "u")  # in one go: three corrections, then undo the last

    wait(browser, lambda d: len(reviews_saved(folder)) == 4 and "Undone" in notice_text(d), "every key's answer")
    assert [(r.path, r.reviewed_breed) for r in reviews_saved(folder)] == [
        ("coco.jpg", "toy poodle"), ("bella.jpg", "golden retriever"), ("kennel_2/luna.png", "Siberian husky"),
        ("kennel_2/luna.png", "")]


def test_coming_back_the_next_day_lands_on_the_next_photo_to_review_and_can_undo_yesterdays_corrections(
    browser, tmp_path
):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    port = free_port()
    yesterday = review_server(folder, tmp_path, port=port)
    try:
        open_page(browser, yesterday)
        browser.find_element(By.CSS_SELECTOR, "#filters [data-filter=all]").click()  # every photo, on purpose
        wait(browser, lambda d: shown_filter(d) == "all", "every photo")
        press(browser, "1")
        wait(browser, lambda d: "REVIEWED" in cards(d)[0].text, "the first correction")
        press(browser, "1")
        wait(browser, lambda d: "REVIEWED" in cards(d)[1].text, "the second correction")
    finally:
        yesterday.stop()

    today = review_server(folder, tmp_path, port=port)  # the same address: the browser's memory is its own
    try:
        browser.get(today.url)
        wait(browser, lambda d: len(cards(d)) == 9 and selected(d) == 2, "the next photo to review selected")
        assert "REVIEWED" not in cards(browser)[2].text
        assert shown_filter(browser) == "all", "the view kept"

        press(browser, "u")
        wait(browser, lambda d: "REVIEWED" not in cards(d)[1].text, "yesterday's last correction undone")
        press(browser, "u")
        wait(browser, lambda d: "REVIEWED" not in cards(d)[0].text, "the one before")
        press(browser, "u")
        wait(browser, lambda d: "Nothing to undo" in notice_text(d), "nothing more to undo")
        rows = results_rows(folder / "dogtag-results.csv")
        assert rows["coco.jpg"]["reviewed_breed"] == rows["bella.jpg"]["reviewed_breed"] == ""
    finally:
        today.stop()


def test_a_name_typed_and_entered_hands_the_keys_back_to_the_photos(browser, shelter_page):
    folder, server = shelter_page
    open_page(browser, server, name=None)
    name = browser.find_element(By.ID, "reviewer")
    name.click()
    name.send_keys("Ben", Keys.ENTER)
    wait(browser, lambda d: "Your name: Ben" in notice_text(d), "the name taken")

    press(browser, "n")  # a correction, not one more letter of the name

    wait(browser, lambda d: "REVIEWED" in cards(d)[0].text, "the correction")
    assert name.get_attribute("value") == "Ben"
    (saved,) = reviews_saved(folder)
    assert (saved.path, saved.reviewed_breed, saved.reviewed_by) == ("coco.jpg", "not a dog", "Ben")


def test_the_name_is_asked_for_before_the_first_correction(browser, shelter_page):
    folder, server = shelter_page
    open_page(browser, server, name=None)

    press(browser, "1")

    wait(browser, lambda d: d.find_element(By.ID, "who").is_displayed(), "the question: who is reviewing?")
    assert reviews_saved(folder) == [], "nothing saved before the name is known"
    press(browser, Keys.ENTER)  # no name typed: still asked
    assert browser.find_element(By.ID, "who").is_displayed() and reviews_saved(folder) == []
    press(browser, "Cleo", Keys.ENTER)
    wait(browser, lambda d: "REVIEWED" in cards(d)[0].text, "the correction")
    press(browser, "1")  # not asked again
    wait(browser, lambda d: "REVIEWED" in cards(d)[1].text, "the second correction")
    assert [(r.path, r.reviewed_by) for r in reviews_saved(folder)] == [("coco.jpg", "Cleo"), ("bella.jpg", "Cleo")]
    assert browser.find_element(By.ID, "reviewer").get_attribute("value") == "Cleo"


def test_the_breed_search_resolves_labrador_to_the_breed_and_asks_before_a_new_label(browser, shelter_page):
    folder, server = shelter_page
    open_page(browser, server)
    search = browser.find_element(By.CSS_SELECTOR, "#viewer .search input")

    press(browser, "/")
    search.send_keys("labrador")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#suggestions li").text.startswith("Labrador Retriever"),
         "the breed suggested")
    search.send_keys(Keys.ENTER)
    wait(browser, lambda d: "Saved: Labrador Retriever" in notice_text(d), "the breed saved")
    assert [(r.path, r.reviewed_breed, r.kind) for r in reviews_saved(folder)] == [
        ("coco.jpg", "Labrador Retriever", "breed")]

    press(browser, "/")  # bella.jpg: a name no breed matches is asked about first
    search.send_keys("Snoopy mix", Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "new-label").is_displayed(), "the question")
    assert "not a known breed" in browser.find_element(By.ID, "new-label").text and len(reviews_saved(folder)) == 1
    search.send_keys(Keys.ENTER)
    wait(browser, lambda d: "Saved: Snoopy mix" in notice_text(d), "the new label saved")
    assert (reviews_saved(folder)[-1].reviewed_breed, reviews_saved(folder)[-1].kind) == ("Snoopy mix", "other")

    press(browser, "/")  # the next volunteer finds the label added before, and a nickname when the server has them
    browser.execute_script("state.breeds = state.breeds.map((b) => b.name === 'German Shepherd Dog' ? "
                           "{...b, aliases: ['Alsatian']} : b)")
    search.send_keys("snoopy")
    wait(browser, lambda d: "Snoopy mix" in d.find_element(By.CSS_SELECTOR, "#suggestions li").text, "the label")
    search.clear()
    search.send_keys("ALSATIAN")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#suggestions li").text.startswith("German Shepherd Dog"),
         "the breed by its nickname")


def test_the_smaller_things_a_volunteer_meets(browser, shelter_page, tmp_path):
    folder, server = shelter_page
    open_page(browser, server)

    press(browser, "7")  # coco.jpg lists three breeds
    wait(browser, lambda d: "lists 3 breeds: press 1-3" in notice_text(d), "a word about the digit")
    assert reviews_saved(folder) == []
    names = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#breed-filter option")][1:]
    assert names == sorted(names, key=str.casefold) and names.index("boxer") < names.index("German shepherd")

    photo = draw_dog(tmp_path / "rex.jpg", seed=7)
    upload = browser.find_element(By.ID, "file-input")
    upload.send_keys(str(photo))
    wait(browser, lambda d: len(cards(d)) == 10, "the added photo", seconds=30)
    upload.send_keys(str(photo))
    wait(browser, lambda d: "duplicate" in notice_text(d), "the duplicate named")
    assert "same photo, byte for byte, as rex.jpg" in notice_text(browser)
    assert sorted(p.name for p in (folder / "intake").iterdir()) == ["rex.jpg"] and len(cards(browser)) == 10


# ---- phones -----------------------------------------------------------------------------------------


def test_on_a_phone_no_badge_is_cut_every_button_is_finger_sized_and_the_photos_get_the_screen(
    browser, shelter_page, tmp_path
):
    folder, server = shelter_page
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    open_page(browser, server)
    press(browser, "1")
    wait(browser, lambda d: "REVIEWED" in cards(d)[0].text, "a reviewed photo")

    badges = browser.execute_script("""
        return [...document.querySelectorAll('#grid .badge')].map((b) => {
          const r = b.getBoundingClientRect(), card = b.closest('.card').getBoundingClientRect();
          return {text: b.textContent, cut: b.scrollWidth > b.clientWidth || r.right > card.right - 1};
        });""")
    assert {"text": "reviewed", "cut": False} in badges and not [b for b in badges if b["cut"]]
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390, "nothing wider than the phone"
    assert all(height >= 44 for height in visible_heights(browser, "header button, header select, header input"))
    assert browser.execute_script("return document.querySelector('header').offsetHeight") <= 844 / 5
    browser.execute_script("window.scrollTo(0, 400)")
    assert browser.execute_script("return document.querySelector('header').getBoundingClientRect().bottom") <= 0, \
        "the header scrolls away: the photos get the screen"
    browser.execute_script("window.scrollTo(0, 0)")
    save_screenshot(browser, tmp_path, "-phone")

    cards(browser)[1].click()
    wait(browser, lambda d: d.find_element(By.ID, "viewer").is_displayed(), "the large view")
    heights = visible_heights(browser, "#viewer button, #viewer input, #viewer a")
    assert len(heights) >= 8 and min(heights) >= 44


def visible_heights(driver, selector: str) -> list[float]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent !== null)"
        ".map((e) => e.getBoundingClientRect().height)", selector)


def test_the_phone_button_shows_the_qr_code_of_the_network_address_with_its_token(browser, tmp_path):
    folder = tmp_path / "shelter"
    make_shelter_folder(folder)
    server = review_server(folder, tmp_path, host="0.0.0.0")
    try:
        assert "?token=" in server.url
        browser.get(server.url.replace(server.url.split("/")[2].rsplit(":", 1)[0], "127.0.0.1"))
        wait(browser, lambda d: len(cards(d)) == 9, "the page, signed in by the address's token")
        browser.find_element(By.ID, "phone-button").click()
        wait(browser, lambda d: d.execute_script(
            "const i = document.querySelector('#phone img'); return i.complete && i.naturalWidth > 100"), "the QR code")
        assert browser.find_element(By.CSS_SELECTOR, "#phone .address").text == server.url
        svg = browser.execute_async_script(
            "fetch('/api/address.svg').then((r) => r.text()).then(arguments[0])")
        from dogtag.review.qr import qr_svg

        assert svg.encode() == qr_svg(server.url)
    finally:
        server.stop()


def test_on_this_computer_only_the_phone_button_says_how_to_let_phones_in(browser, shelter_page):
    folder, server = shelter_page
    open_page(browser, server)

    browser.find_element(By.ID, "phone-button").click()

    wait(browser, lambda d: d.find_element(By.ID, "phone").is_displayed(), "the dialog")
    assert "Only this computer" in browser.find_element(By.CSS_SELECTOR, "#phone .how").text
    assert browser.find_element(By.CSS_SELECTOR, "#phone .address").text == "dogtag review --host 0.0.0.0 FOLDER"
    assert not browser.find_element(By.CSS_SELECTOR, "#phone img").is_displayed()


# ---- the API page ------------------------------------------------------------------------------------


def test_the_api_page_works_with_the_network_off(shelter_page, tmp_path):
    folder, server = shelter_page
    # No name resolves (as at a shelter with no internet): a script from a CDN could not load.
    offline = start_chromium(tmp_path, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    try:
        offline.get(server.url + "docs")
        wait(offline, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) >= 8, "the API page")
        page = offline.find_element(By.CSS_SELECTOR, ".swagger-ui").text
        assert "/api/reviews" in page and "/api/photos" in page and "Dogtag review" in page
        loaded = offline.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert loaded and all(url.startswith(server.url) for url in loaded), loaded
    finally:
        offline.quit()


# ---- adding photos, and what must not be reachable ----------------------------------------------------


def test_a_photo_added_from_the_browser_is_tagged_and_shown_and_no_path_leaves_the_folder(browser, shelter_page, tmp_path):
    folder, server = shelter_page
    (tmp_path / "secret.txt").write_text("the shelter's bank details")
    new = draw_dog(tmp_path / "from-the-phone.jpg", seed=6)
    open_page(browser, server)

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
