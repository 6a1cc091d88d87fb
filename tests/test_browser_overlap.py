"""The Overlap page end to end: `streamlit run app.py` with a MultiMNIST model, driven by headless Chromium: a deep
link opens a composed pair, a random test pair replaces it, and two digits drawn over each other are read."""

from __future__ import annotations

import re

import pytest

from capsnet.config import ModelConfig, TrainConfig
from capsnet.model import build_network, save_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAD = "canvas.upper-canvas"  # streamlit-drawable-canvas' pointer layer


@pytest.fixture
def pair_server(streamlit_app, chromium_path, tmp_path):
    narrow = ModelConfig(conv_filters=32, primary_channels=8, decoder_units=(32, 64))
    model = save_model(build_network(TrainConfig(dataset="multimnist", model=narrow).model),
                       tmp_path / "multimnist.keras")
    return streamlit_app({"CAPSNET_WEIGHTS": str(model), "CAPSNET_RUNS_DIR": str(tmp_path / "runs"),
                          "CAPSNET_UPLOAD_DIR": str(tmp_path / "uploads")})


def verdict(page) -> str:
    return page.get_by_text(re.compile(r"^Reads ")).first.inner_text(timeout=120_000)


def test_a_link_a_random_pair_and_a_drawing(pair_server, browser_page):
    page = browser_page
    page.goto(f"{pair_server.url}/overlap?digits=Compose&class_a=1&class_b=8&dx_b=-4")
    page.get_by_role("heading", name="Two digits at once").wait_for(timeout=120_000)
    assert "the digits are 1 and 8" in verdict(page)
    page.get_by_role("img", name="both reconstructions").wait_for()
    caption = page.get_by_text(re.compile(r"^1 \(test image")).inner_text()
    assert "moved -2, -2" in caption and "8 (test image" in caption and "moved +2, -4" in caption

    main = page.get_by_test_id("stMainBlockContainer")  # the sidebar has a "Draw" link too
    main.get_by_text("Test pair", exact=True).click()
    page.get_by_text(re.compile(r"^test pair #0:")).wait_for(timeout=60_000)
    page.get_by_role("button", name="Random pair").click()
    page.wait_for_function("() => /[?&]pair=[1-9]/.test(location.search)", timeout=60_000)
    index = re.search(r"pair=(\d+)", page.url).group(1)
    page.get_by_text(re.compile(rf"^test pair #{index}:")).wait_for(timeout=60_000)

    main.get_by_text("Draw", exact=True).click()
    pad = page.locator(PAD).first
    pad.wait_for(timeout=60_000)
    box = pad.bounding_box()
    x0, y0, side = box["x"], box["y"], box["width"]

    def stroke(points):
        page.mouse.move(x0 + points[0][0] * side, y0 + points[0][1] * side)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x0 + x * side, y0 + y * side, steps=6)
        page.mouse.up()

    stroke([(0.25, 0.2), (0.25, 0.75)])  # a 1
    stroke([(0.35, 0.3), (0.6, 0.25), (0.65, 0.45), (0.4, 0.75), (0.7, 0.75)])  # a 2 over it
    page.get_by_role("img", name="the overlaid digits").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"^Reads \*?\*?")).first.wait_for(timeout=60_000)
    assert page.get_by_text("your drawing").count() >= 1
    assert not page.get_by_text("Traceback").count()
