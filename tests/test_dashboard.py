"""The Train page's computations: progress and ETA, the runs table, reconstruction strips."""

import json

import numpy as np
import pytest

from capsnet.config import TrainConfig
from capsnet.explorer import dashboard
from capsnet.explorer.explore import one_per_class
from capsnet.imaging import real_over_reconstruction
from capsnet.rundir import RunDir


def test_progress_and_eta_from_status_and_config():
    status = {"state": "running", "epoch": 1, "step": 50, "steps_per_epoch": 100, "samples_per_sec": 500.0}
    progress = dashboard.progress(status, {"epochs": 4, "batch_size": 100})
    assert progress.fraction == pytest.approx(150 / 400)
    assert progress.eta_seconds == pytest.approx(250 * 100 / 500)
    assert progress.text == "epoch 2/4 · step 50/100 · 500 samples/s · ETA 50 s"


@pytest.mark.parametrize("state, fraction, text", [
    ("queued", 0.0, "epoch 1/3 · step 0"),
    ("finished", 1.0, "epoch 3/3 · step 100/100"),
    ("stopped", 0.5, "epoch 2/3 · step 50/100"),  # no speed or ETA for a run that is not training
])
def test_progress_outside_training(state, fraction, text):
    status = {"state": state}
    if state != "queued":
        status.update(epoch=1, step=50, steps_per_epoch=100, samples_per_sec=500.0)
    progress = dashboard.progress(status, {"epochs": 3, "batch_size": 100})
    assert progress.fraction == pytest.approx(fraction) and progress.text == text


@pytest.mark.parametrize("seconds, text", [(None, "–"), (5, "5 s"), (65, "1 min 05 s"), (7260, "2 h 01 min")])
def test_format_seconds(seconds, text):
    assert dashboard.format_seconds(seconds) == text


def test_runs_table_of_a_queued_run(tmp_path):
    run = RunDir(tmp_path / "20250101-000000-q")
    run.write_status("queued", devices=["gpu:0", "gpu:1"], launched=1.0)
    row = dashboard.runs_table([run]).iloc[0]
    assert row["state"] == "queued" and row["device"] == "GPU:0, GPU:1" and row["epochs"] == "0/?"
    assert np.isnan(row["best val acc"])


def test_real_over_reconstruction_puts_originals_over_reconstructions():
    images, recon = np.zeros((4, 28, 28), np.uint8), np.ones((4, 28, 28), np.float32)
    strip = real_over_reconstruction(images, recon, gap=2)
    assert strip.shape == (28 + 2 + 28, 4 * 28 + 3 * 2) and strip.dtype == np.float32
    assert strip[0, 0] == 0 and strip[-1, 0] == 1 and strip[28, 0] == 0.5 and strip[0, 28] == 0.5  # grey gaps
    single = real_over_reconstruction(np.full((28, 28), 255, np.uint8), np.zeros((28, 28)), gap=1)
    assert single.shape == (57, 28) and single[0, 0] == 1.0 and single[-1, 0] == 0.0  # uint8 scaled once
    assert one_per_class(np.array([3, 1, 1, 0, 3])).tolist() == [3, 1, 0]  # first 0, first 1, first 3


def test_the_runs_table_shows_a_changed_schedule():
    config = json.loads(TrainConfig(dataset="multimnist", lr_decay=0.9).with_lr_change(11, lr_decay=0.99).to_json())
    summary = dashboard.config_summary(config)
    assert "lr 0.001 · decay 0.9" in summary and "from epoch 12: lr 0.000314, decay 0.99" in summary
    assert "from epoch" not in dashboard.config_summary(json.loads(TrainConfig().to_json()))
