"""The training recipe under a real `tf.distribute.MirroredStrategy`, with two logical CPU devices standing in
for two GPUs (the code path `--gpus N` takes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from capsnet.config import TrainConfig
from capsnet.data import Dataset, load_dataset

from capsnet.train import train

full = load_dataset("mnist")
data = Dataset(full.x_train[:400], full.y_train[:400], full.x_test[:200], full.y_test[:200], full.source)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print("replicas", strategy.num_replicas_in_sync)
train(TrainConfig(epochs=2, batch_size=50), sys.argv[1], data=data, distribution=strategy, verbose=0)
"""


def test_mirrored_strategy_trains_and_checkpoints(tmp_path, mnist):
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(run)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[1]["val_accuracy"] > 0.3  # learning happened across replicas
    assert (run / "trained_model.keras").is_file()
