"""Two machines, played by two processes on 127.0.0.1: `python -m capsnet train --strategy multi_worker` with
`TF_CONFIG`, on TensorFlow's `MultiWorkerMirroredStrategy`.

The pair trains one epoch, is resumed for a second, and is compared with one process training both epochs with the
same global batch and seed. The first step's loss (same initial weights, the global batch split between the
workers) and the second's (one update from the gradient of the whole global batch) must agree to float precision.
Later steps agree closely but not to the last bit: TensorFlow's multi-worker runtime does not promise the same
float rounding from run to run (measured here: pairs departing at the 5th-6th digit from step 2 to 5 with its
default threads, more rarely single-threaded, as here; once the first step of the second epoch 13% off), and Adam
turns last-bit differences in near-zero gradients into whole learning-rate steps. So later values are held to 20%
(the last step, and the validation loss of each epoch): runs were seen 11% apart on a validation loss.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from train_support import write_tiny_mnist

from capsnet.rundir import RunDir

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent
RECIPE = ["--subset", "200", "--batch_size", "50", "--precision", "float32", "--log_every", "1"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def environment(tmp_path, mnist):
    return {**os.environ, "CAPSNET_DATA": str(write_tiny_mnist(mnist, tmp_path / "data")),
            "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def train(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "capsnet", "train", *RECIPE, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def train_two_workers(args: list[str], env: dict) -> list[str]:
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = [train([*args, "--strategy", "multi_worker"], {**env, "TF_CONFIG": json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}) for index in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    codes = [p.returncode for p in processes]
    # Both logs: when one worker dies, the other's error only says that it stopped sending heartbeats.
    assert codes == [0, 0], "\n\n".join(f"worker {index} (exit {code}):\n{output[-3000:]}"
                                        for index, (code, output) in enumerate(zip(codes, outputs, strict=True)))
    return outputs


def losses(run: RunDir) -> tuple[list[float], list[float]]:
    return [r["loss"] for r in run.step_records()], [r["val_loss"] for r in run.epoch_records()]


def test_two_workers_train_and_resume_like_one_process(tmp_path, environment):
    single = RunDir(tmp_path / "single")
    one = train(["--epochs", "2", "--save_dir", str(single.path)], environment)
    assert one.wait(timeout=600) == 0, one.stdout.read()[-3000:]

    pair = RunDir(tmp_path / "pair")
    chief_output, worker_output = train_two_workers(["--epochs", "1", "--save_dir", str(pair.path)], environment)
    assert "trains along" in worker_output and "trains along" not in chief_output
    assert pair.read_status()["state"] == "finished" and len(pair.epoch_records()) == 1
    train_two_workers(["--resume", "--epochs", "2", "--save_dir", str(pair.path)], environment)

    status = pair.read_status()
    assert status["state"] == "finished"
    # Only the chief wrote the directory: one session per launch, both the chief's, the second resuming.
    assert [s["initial_epoch"] for s in status["sessions"]] == [0, 1]
    assert (pair.path / "trained_model.keras").is_file() and (pair.path / "real_and_recon.png").is_file()
    pair_steps, pair_validation = losses(pair)
    single_steps, single_validation = losses(single)
    assert len(pair_steps) == len(single_steps) == 8  # 200 images / global batch 50, two epochs
    assert pair_steps[0] == pytest.approx(single_steps[0], rel=1e-6)
    assert pair_steps[1] == pytest.approx(single_steps[1], rel=1e-4)
    assert pair_steps[-1] == pytest.approx(single_steps[-1], rel=0.2)
    assert pair_validation == pytest.approx(single_validation, rel=0.2)
    assert single_steps[-1] < single_steps[0]  # it learned something: the comparison is not of two flat lines


def test_multi_worker_needs_tf_config(tmp_path, environment):
    environment.pop("TF_CONFIG", None)
    process = train(["--strategy", "multi_worker", "--save_dir", str(tmp_path / "run")], environment)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 2
    assert output.strip().splitlines()[-1].startswith("error: --strategy multi_worker needs TF_CONFIG")
    assert not (tmp_path / "run").exists()
