"""End to end in headless Chromium: launch a run from the Train page, watch it count steps on its own, stop it,
resume it, see it finish. Screenshots land in the test's tmp_path."""

import os
import re
import signal
import time

import pytest
from train_support import TINY, assert_logged_once, write_tiny_mnist

from capsnet import launch
from capsnet.rundir import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def runs_root(mnist, tmp_path):
    yield tmp_path / "runs"
    for run in list_runs(tmp_path / "runs"):  # never leave a trainer behind
        pid = run.read_raw_status().get("pid")
        if pid and launch.owns_pid(run, pid):
            os.killpg(pid, signal.SIGKILL)


def wait_page(page, predicate, what: str, timeout: float = 150.0):
    """Poll the page without touching it: whatever changes, the live fragment changed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(250)
    raise TimeoutError(f"timed out waiting for {what}; headings {page.locator('h3').all_inner_texts()}")


def heading(page) -> str:
    texts = page.locator("h3").all_inner_texts()
    return next((t for t in texts if re.search(r": (queued|running|stopping|stopped|finished|failed)", t)), "")


def step_shown(page) -> int | None:
    bars = page.locator('[data-testid="stProgress"]').all_inner_texts()
    match = re.search(r"step (\d+)", " ".join(bars))
    return int(match.group(1)) if match else None


def test_launch_watch_stop_resume_finish_in_chromium(streamlit_app, browser_page, runs_root, mnist, tmp_path):
    data = write_tiny_mnist(mnist, tmp_path / "data")
    server = streamlit_app({"CAPSNET_RUNS_DIR": str(runs_root), "CAPSNET_DATA": str(data)})
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2400})  # Streamlit scrolls inside the page: show it all
    page.goto(f"{server.url}/train")
    page.get_by_role("button", name="Launch").wait_for(timeout=90_000)

    page.get_by_label("Label", exact=True).fill("browser")
    for label, value in (("Epochs", TINY["epochs"]), ("Batch size", TINY["batch_size"]),
                         ("Subset (0 = all images)", TINY["subset"]), ("Log every N steps", TINY["log_every"])):
        field = page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Tab")
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("Launched").wait_for(timeout=30_000)

    # The step counter moves with nobody touching the page: the fragment re-reads the run every second.
    first = wait_page(page, lambda: (step_shown(page) or 0) >= 1 and step_shown(page), "a first training step")
    later = wait_page(page, lambda: (step_shown(page) or 0) > first and step_shown(page), "the step count to grow",
                      timeout=60)
    assert later > first
    page.screenshot(path=str(tmp_path / "1-running.png"), full_page=True)

    page.get_by_role("button", name="Stop", exact=True).click()
    wait_page(page, lambda: "stopped" in heading(page), "the run to stop")
    page.wait_for_timeout(1500)  # a redraw or two
    page.screenshot(path=str(tmp_path / "2-stopped.png"), full_page=True)

    page.get_by_role("button", name="Resume", exact=True).click()
    wait_page(page, lambda: "finished" in heading(page), "the resumed run to finish", timeout=200)
    page.get_by_text("trained_model.keras").wait_for(timeout=60_000)  # reconstructions, final weights
    page.wait_for_timeout(2000)  # let the model load and the charts draw
    page.screenshot(path=str(tmp_path / "3-finished.png"), full_page=True)

    (run,) = list_runs(runs_root)
    assert run.read_status()["state"] == "finished"
    assert_logged_once(run, epochs=TINY["epochs"], steps_per_epoch=TINY["subset"] // TINY["batch_size"])

    # Continue the finished run with one more epoch at a new decay: the values typed survive the live fragment's
    # redraws (every second) until the button is pressed.
    page.get_by_text("Continue with more epochs or a new learning rate").click()
    for label, value in (("Epochs in all", 3), ("LR decay per epoch from there", 0.5)):
        field = page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Tab")
    page.wait_for_timeout(2500)
    assert page.get_by_label("Epochs in all", exact=True).input_value() == "3"
    page.get_by_role("button", name="Resume with these").click()
    wait_page(page, lambda: "finished" in heading(page) and len(run.epoch_records()) == 3,
              "the continued run to finish", timeout=200)
    assert run.read_config()["lr_changes"] == [{"epoch": 2, "lr": pytest.approx(0.00081), "lr_decay": 0.5}]
