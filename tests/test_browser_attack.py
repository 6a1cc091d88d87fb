"""The Attack page and the Routing page's conv1 maps in a real headless Chromium, against the shipped models: a shared
link opens the attack it names on a fresh server, the keyboard moves epsilon, and the URL follows.

`pytest -s -m browser tests/test_browser_attack.py` prints how long the page took to answer an epsilon change
(reported, not asserted beyond a gross regression: a loaded CI machine must not make it flaky)."""

import time

import pytest
from test_browser_explorer import assert_no_exception, settle, sidebar_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_attack_link_and_the_epsilon_slider(streamlit_app, browser_page, tmp_path):
    server = streamlit_app({"CAPSNET_RUNS_DIR": str(tmp_path / "runs"), "CAPSNET_UPLOAD_DIR": str(tmp_path / "up")})
    page = browser_page
    page.goto(server.url + "/attack?class=7&attack=pgd&eps=0.2&target=3")
    heading = page.locator("h2").filter(has_text="Prediction:")
    heading.first.wait_for(timeout=180_000)
    settle(page, timeout=180_000)
    assert_no_exception(page)
    assert "Attack" in sidebar_pages(page)
    assert heading.first.inner_text().strip() == "Prediction: 7 → 3"
    assert page.get_by_text("Adversarial: flagged").count() == 1  # the reconstruction of a 3 does not fit the 7
    adversarial = page.locator('img[alt="adversarial"]')
    before = adversarial.get_attribute("src")
    page.screenshot(path=tmp_path / "attack-pgd.png", full_page=True)

    slider = page.locator('input[type=range][aria-label="ε: the most any pixel may change"]')
    slider.focus()
    started = time.perf_counter()
    slider.press("Home")  # epsilon 0: nothing may change
    page.wait_for_function("src => document.querySelector('img[alt=\"adversarial\"]')?.src !== src", arg=before,
                           timeout=30_000)
    answered = time.perf_counter() - started
    settle(page)
    print(f"\nepsilon 0.2 -> 0 to a new adversarial image on screen: {answered:.2f} s")
    assert heading.first.inner_text().strip() == "Prediction: 7 → 7"
    assert adversarial.get_attribute("src") == page.locator('img[alt="original"]').get_attribute("src")
    assert "eps=0.0" in page.url and "target=3" in page.url and "attack=pgd" in page.url
    assert answered < 10
    assert_no_exception(page)

    page.goto(server.url + "/routing?conv1=true")
    page.locator('img[alt="conv1 maps"]').wait_for(timeout=120_000)
    settle(page)
    assert page.locator('img[alt="primary capsule lengths"]').count() == 1
    assert page.locator('img[alt="cnn saliency"]').count() == 1
    assert_no_exception(page)
    page.screenshot(path=tmp_path / "routing-primary.png", full_page=True)
