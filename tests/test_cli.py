"""The command line, run as a user runs it: real processes, real MNIST, checking the files they write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_support import write_tiny_mnist

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent


def capsnet(*args, cwd=REPO, timeout=600, data: Path | None = None):
    """`python -m capsnet ARGS` in a process of its own; `data`: a $CAPSNET_DATA folder."""
    env = {name: value for name, value in os.environ.items() if name not in ("TF_CPP_MIN_LOG_LEVEL", "CAPSNET_TF_LOGS")}
    if data is not None:
        env["CAPSNET_DATA"] = str(data)
    return subprocess.run([sys.executable, "-m", "capsnet", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mnist):
    """Real MNIST cut to 600 training and 500 test images: each command below evaluates the test set once or twice,
    and the full one would cost a CapsNet ~15 s each time on a CPU."""
    return write_tiny_mnist(mnist, tmp_path_factory.mktemp("data"), n_test=500)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny):
    run = tmp_path_factory.mktemp("cli") / "run"
    result = capsnet("train", "--subset", 200, "--epochs", 1, "--batch_size", 50, "--save_dir", run, data=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


def test_train_writes_the_run_directory(trained_run):
    run, result = trained_run
    for name in ("config.json", "status.json", "metrics.jsonl", "log.csv", "log.png", "trained_model.keras",
                 "checkpoints/last.weights.h5", "checkpoints/best.keras", "real_and_recon.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["subset"] == 200 and config["model"]["routings"] == 3
    assert "test accuracy:" in result.stdout
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_test_and_manipulate_write_their_images(trained_run, tiny, tmp_path):
    run, _ = trained_run
    weights = run / "trained_model.keras"
    result = capsnet("test", "-w", weights, "--save_dir", tmp_path, data=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test error:" in result.stdout
    assert not result.stderr.strip(), result.stderr  # TensorFlow's start-up lines (oneDNN, CUDA) are held back
    grid = Image.open(tmp_path / "real_and_recon.png")
    assert grid.size == (10 * 28, 10 * 28)

    result = capsnet("manipulate", "-w", weights, "--digit", 3, "--save_dir", tmp_path, data=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    grid = np.asarray(Image.open(tmp_path / "manipulate-3.png"))
    assert grid.shape == (16 * 28, 11 * 28)
    # The middle column is the unedited capsule: every row shows the same digit there.
    middle = grid[:, 5 * 28:6 * 28].reshape(16, 28, 28)
    assert all(np.array_equal(middle[0], row) for row in middle)


def test_reference_style_testing_flag(trained_run, tiny, tmp_path):
    run, _ = trained_run
    result = capsnet("-t", "-w", run / "trained_model.keras", "--digit", 7, "--save_dir", tmp_path, data=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "real_and_recon.png").is_file() and (tmp_path / "manipulate-7.png").is_file()


def test_resume_extends_a_finished_run_with_a_new_schedule(trained_run, tiny):
    run, _ = trained_run
    result = capsnet("train", "--resume", "--save_dir", run, "--epochs", 3, "--lr_decay", 0.5, data=tiny)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "learning rate from epoch 2 on: 0.0009, x 0.5 per epoch" in result.stdout
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    # Epoch 0 was trained at 0.001; the new decay applies from epoch 1 on, from the rate the old schedule gave it.
    assert [e["lr"] for e in epochs] == pytest.approx([0.001, 0.0009, 0.00045])
    config = json.loads((run / "config.json").read_text())
    assert (config["lr"], config["lr_decay"]) == (0.001, 0.9)
    assert config["lr_changes"] == [{"epoch": 1, "lr": pytest.approx(0.0009), "lr_decay": 0.5}]


def test_data_command_reports_its_source():
    result = capsnet("data")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["train"] == 60000 and report["test"] == 10000 and report["source"]


@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs", "zero"], "--epochs"),
    (["train", "--routings", "0"], "an integer in [1, 10]"),
    (["manipulate", "--digit", "12"], "--digit"),
    (["frobnicate"], "unrecognized"),
])
def test_bad_flags_give_one_line(args, fragment):
    assert_one_line_error(capsnet(*args), fragment)


def test_bare_weights_load_only_where_their_run_says_what_they_fit(trained_run, tiny, tmp_path):
    """Runs of earlier versions hold bare .weights.h5 files: their config.json tells the architecture."""
    from capsnet.inference import load_capsnet

    run, _ = trained_run
    load_capsnet(run / "trained_model.keras").save_weights(run / "legacy.weights.h5")
    result = capsnet("test", "-w", run / "legacy.weights.h5", "--save_dir", tmp_path, data=tiny)
    assert result.returncode == 0 and "test error:" in result.stdout, result.stderr[-3000:]
    (tmp_path / "loose.weights.h5").write_bytes((run / "legacy.weights.h5").read_bytes())
    assert_one_line_error(capsnet("test", "-w", tmp_path / "loose.weights.h5"), "nothing says which architecture")
