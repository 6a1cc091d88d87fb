"""MultiMNIST runs work as MNIST runs do: launched from the Train page (a real trainer process), watched live with
their reconstructions, resumed from the CLI; and the page says which precision `auto` picks, and why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from train_support import write_tiny_mnist

from capsnet import launch
from capsnet.explorer import state
from capsnet.explorer.navigation import PAGES
from capsnet.precision import auto_for
from capsnet.rundir import RunDir, list_runs

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it


@pytest.fixture
def runs_root(mnist, tmp_path, monkeypatch, no_shipped_models):
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("CAPSNET_DATA", str(write_tiny_mnist(mnist, tmp_path / "data", n_train=400, n_test=60)))
    monkeypatch.delenv("CAPSNET_WEIGHTS", raising=False)
    yield tmp_path / "runs"
    for run in list_runs(tmp_path / "runs"):  # never leave a trainer behind
        pid = run.read_raw_status().get("pid")
        if pid and launch.owns_pid(run, pid):
            os.killpg(pid, signal.SIGKILL)


def train_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page(PAGES["train"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_train_page_says_what_auto_picks(runs_root):
    at = train_page()
    expected = auto_for(on_gpu=False).describe()  # the page's CPU device
    assert any("Precision on CPU" in c.value and expected in c.value for c in at.caption)
    assert at.selectbox(key=state.TRAIN_FORM + "precision").value == "auto"


@pytest.mark.slow
def test_a_multimnist_run_from_the_page_then_resumed_from_the_cli(runs_root):
    at = train_page()
    at.text_input(key=state.TRAIN_FORM + "label").input("pairs")
    at.selectbox(key=state.TRAIN_FORM + "dataset").set_value("multimnist")
    for key, value in {"epochs": 1, "subset": 200, "batch_size": 100, "log_every": 1}.items():
        at.number_input(key=state.TRAIN_FORM + key).set_value(value)
    next(b for b in at.button if b.label == "Launch").click()
    at.run()
    assert "Launched" in at.success[0].value
    run = list_runs(runs_root)[0]
    deadline = time.monotonic() + 600
    while run.read_status().get("state") != "finished" and time.monotonic() < deadline:
        assert run.read_status().get("state") in ("queued", "running"), run.stdout_tail(30)
        time.sleep(2)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert "finished" in table.loc[0, "state"] and table.loc[0, "epochs"] == "1/1"
    assert table.loc[0, "precision"] == auto_for(on_gpu=False).describe()
    caption = at.get("image")[0].captions[0]
    assert "predicted:" in caption and "+" in caption  # a pair's two readings per image
    assert "MultiMNIST test error" in run.stdout_tail(10)  # the CLI's report at the end of training
    [epoch] = run.epoch_records()
    assert 0.0 <= epoch["val_accuracy"] <= 1.0 and epoch["recon_loss"] > 0

    # Resumed from the CLI for one more epoch: the same run, its curves carry on.
    env = {**os.environ, "CAPSNET_RUNS_DIR": str(runs_root)}
    result = subprocess.run([sys.executable, "-m", "capsnet", "train", "--resume", "--epochs", "2", "--save_dir",
                             str(run.path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = RunDir(run.path)
    assert [r["epoch"] for r in resumed.epoch_records()] == [0, 1]
    assert resumed.read_raw_status()["state"] == "finished" and len(resumed.read_raw_status()["sessions"]) == 2
