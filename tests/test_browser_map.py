"""The Map page in a real browser (`streamlit run app.py`, headless Chromium, the shipped MNIST CapsNet and its
shipped map): a box drawn with the mouse selects digits and shows them, the projection control redraws the map, a
selected digit opens on the Latent page, and a digit drawn on the Draw page lands on the map.

`pytest -s tests/test_browser_map.py` prints how long the page took (with the machine's load average).
"""

import os
import re
import time

import pytest
from conftest import CHROMIUM_FLAGS, REPO, StreamlitServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMINGS: dict[str, object] = {}
PLOT = "[data-testid=stPlotlyChart] .js-plotly-plot"
PAD = "canvas.upper-canvas"  # streamlit-drawable-canvas' pointer layer


@pytest.fixture(scope="module")
def server(chromium_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("map-server")
    # The shipped model, named explicitly (whatever the environment says): its map is found by the file's content.
    env = {"CAPSNET_WEIGHTS": str(REPO / "assets" / "capsnet.keras"), "CAPSNET_RUNS_DIR": str(folder / "runs"),
           "CAPSNET_UPLOAD_DIR": str(folder / "uploads"), "CAPSNET_CACHE_DIR": str(folder / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    app = StreamlitServer(env, REPO, folder / "streamlit.log")
    try:
        app.wait_healthy()
        yield app
    finally:
        app.stop()
        if TIMINGS:
            TIMINGS["load average (1, 5, 15 min) at the end"] = os.getloadavg()
            print("\nmap timings:", *(f"  {name}: {value}" for name, value in TIMINGS.items()), sep="\n")


@pytest.fixture
def page(chromium_path, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1100})
        yield context.pages[0] if context.pages else context.new_page()
        context.close()


def settle(page, timeout: float = 300_000) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout)


def assert_no_exception(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, page.locator(
        "[data-testid=stException]").first.inner_text()


def wait_for_map(page) -> None:
    """The map on screen: its plot drawn (the shipped map needs no computing; without the full test set here, the
    page asks first, and the test asks it to go ahead)."""
    page.locator("h1").first.wait_for(timeout=180_000)
    settle(page)
    classify = page.get_by_role("button", name=re.compile("^Classify the"))
    if classify.count():
        classify.click()
        settle(page, timeout=900_000)
    page.locator(PLOT).first.wait_for(timeout=120_000)
    page.locator(f"{PLOT} .scatterlayer, {PLOT} canvas").first.wait_for(timeout=60_000)


def box_select(page, left: float, top: float, right: float, bottom: float) -> None:
    """Drag a box over the plot area, in fractions of its width and height (the map's drag mode is selection)."""
    area = page.locator(f"{PLOT} .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + left * area["width"], area["y"] + top * area["height"])
    page.mouse.down()
    page.mouse.move(area["x"] + right * area["width"], area["y"] + bottom * area["height"], steps=12)
    page.mouse.up()


def test_select_digits_on_the_map_and_open_one_on_the_latent_page(server, page, tmp_path):
    started = time.perf_counter()
    page.goto(server.url + "/map")
    wait_for_map(page)
    TIMINGS["first visit: /map drawn (s, includes loading the model)"] = round(time.perf_counter() - started, 2)
    assert page.locator("h1").first.inner_text().strip() == "Capsule space"
    assert page.get_by_text("misclassified (").count() >= 1  # the legend
    assert_no_exception(page)
    page.screenshot(path=tmp_path / "map-pca.png")

    # A box in the middle of the map: digits under it are selected, shown, and in the URL.
    box_select(page, 0.30, 0.30, 0.70, 0.70)
    page.get_by_text("Selected digits").wait_for(timeout=60_000)
    page.locator('img[alt^="#"]').first.wait_for(timeout=60_000)  # captioned "#<test index>: <true>→<read>"
    settle(page)
    assert "selected=" in page.url
    shown = page.locator('img[alt^="#"]').count()
    assert 1 <= shown <= 20
    summary = page.get_by_text(re.compile(r"\d+ selected: ")).first.inner_text()
    assert int(re.search(r"(\d+) selected: ", summary).group(1)) >= shown
    assert_no_exception(page)
    page.get_by_text("Selected digits").scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "map-selected.png")

    # The projection control: t-SNE (shipped, so read from disk) redraws the map.
    before = page.url
    started = time.perf_counter()
    page.get_by_text("t-SNE", exact=True).click()
    page.wait_for_url(re.compile("projection=tsne"), timeout=60_000)
    settle(page)
    TIMINGS["PCA -> t-SNE, click to map redrawn (s)"] = round(time.perf_counter() - started, 2)
    assert page.url != before and "selected=" in page.url  # the selection stays
    assert_no_exception(page)
    page.screenshot(path=tmp_path / "map-tsne.png", full_page=True)

    # Send the first selected digit to the Latent page: it opens on that digit.
    chosen = page.get_by_role("combobox", name="Send a selected digit to").input_value()
    test_image = re.match(r"#(\d+): (\d)→", chosen)
    page.get_by_role("button", name="Latent").click()
    page.locator('img[alt="edited reconstruction"]').wait_for(timeout=120_000)
    settle(page)
    assert "/latent" in page.url and f"class={test_image.group(2)}" in page.url
    assert page.get_by_text(f"test image #{test_image.group(1)}: {test_image.group(2)}").count() >= 1
    assert_no_exception(page)


def test_a_drawn_digit_lands_on_the_map(server, page, tmp_path):
    page.goto(server.url + "/draw")
    page.locator(PAD).wait_for(timeout=180_000)
    settle(page)
    box = page.locator(PAD).bounding_box()
    points = [(70, 60), (210, 60), (200, 90), (140, 240)]  # a 7
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
    page.mouse.up()
    page.get_by_text("Prediction:").wait_for(timeout=60_000)
    settle(page)
    read = page.get_by_text("Prediction:").inner_text().split(": ")[1]
    page.get_by_role("link", name=re.compile("See where it lands")).click()
    wait_for_map(page)
    assert "/map" in page.url
    page.get_by_text(f"your drawing (read as {read})").first.wait_for(timeout=60_000)  # the star, in the legend
    assert page.get_by_text(f"Your last drawing is read as {read}").count() == 1
    assert_no_exception(page)
    page.screenshot(path=tmp_path / "map-drawing.png", full_page=True)
