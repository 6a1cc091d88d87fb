"""Trainer processes that end badly: killed at any moment, a run resumes from its last checkpoint (an epoch's end or,
every `checkpoint_minutes`, a step inside one); a loss that becomes NaN ends the CLI with a one-line error.

The kill test SIGKILLs a real trainer ten times and resumes it each time: twice in its first epoch (resumed
once with `python -m capsnet train --resume`, once as the Train page's Resume does it, `launch.resume`), then at
seeded random moments: while it starts up, a random time after a random step, and inside checkpoint writes (the
moment the temporary file appears, plus a few random milliseconds). After every kill each checkpoint file loads and
holds the weights of the steps its state names; at the end every epoch is logged once and the accuracy is that of
an uninterrupted run.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

import h5py
import keras
import pytest
from train_support import assert_logged_once, kill_trainers, wait_for, wait_state, write_tiny_mnist

from capsnet import launch
from capsnet.assets import REPO
from capsnet.config import TrainConfig
from capsnet.data import Dataset
from capsnet.files import partial_writes
from capsnet.inference import load_capsnet
from capsnet.losses import compile_for_training
from capsnet.model import CapsNet, save_model
from capsnet.rundir import RunDir, pid_alive
from capsnet.train import restore_training_state, train

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

# 200 images in batches of 50, validated on 100: 4 steps (~1 s each on a busy 2-core CPU) and a second per epoch; a
# checkpoint every 3 seconds too, so that kills also land after checkpoints written in the middle of an epoch.
PARAMS = {"subset": 200, "batch_size": 50, "epochs": 4, "log_every": 1, "checkpoint_minutes": 0.05}
STEPS = 4
SEED = 20261127


@pytest.fixture
def runs(mnist, tmp_path, monkeypatch):
    """A tiny MNIST for the trainer processes ($CAPSNET_DATA) and a list of runs whose trainers die afterwards."""
    monkeypatch.setenv("CAPSNET_DATA", str(write_tiny_mnist(mnist, tmp_path / "data")))
    started: list[RunDir] = []
    yield started
    kill_trainers(started)


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def kill_plan(rng: random.Random) -> list[tuple[str, float]]:
    """(how, where) of ten kills in the order of the run. `step`: a random time (< 1 s) after global step `where`;
    `last`/`best`: inside the checkpoint write at the end of the epoch of step `where` (`best`: whichever of the two
    files comes first); `start`: `where` seconds after the process started (importing, building, restoring)."""
    modes = ["last", "last", "last", "best", "step", "step", "start", "start"]
    rng.shuffle(modes)
    positions = iter(sorted(rng.sample(range(3, PARAMS["epochs"] * STEPS), len(modes) - modes.count("start"))))
    plan = [("step", 1), ("step", 2)]  # both in the first epoch
    for mode in modes:
        plan.append((mode, rng.uniform(1.0, 10.0)) if mode == "start" else (mode, next(positions)))
    return plan


def kill_when(run: RunDir, pid: int, mode: str, where: float, started: float, rng: random.Random) -> None:
    """SIGKILL the trainer `pid`, started at `started` (time.time()), at the moment `mode` and `where` name."""
    def alive():
        if not pid_alive(pid):
            raise AssertionError(f"the trainer ended before its kill: {run.read_status()}\n{run.stdout_tail(30)}")
        return True

    def logged(step):  # by this process: records of the killed one may linger until it truncates them
        return any(r["global_step"] >= step and r["time"] >= started for r in run.step_records())

    if mode == "start":
        wait_for(lambda: alive() and time.time() - started >= where, 60, "the kill time")
    else:
        # A checkpoint write follows an epoch's last step. The temporary file of a killed write is gone by then: the
        # trainer deletes it before it trains.
        step = where if mode == "step" else -(-where // STEPS) * STEPS
        wait_for(lambda: alive() and logged(step), 300, f"step {step}")
        if mode == "step":
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            names = ["last.weights.h5"] + (["best.keras"] if mode == "best" else [])
            wait_for(lambda: alive() and any(p.name.split(".part-")[0][1:] in names
                                             for p in partial_writes(run.checkpoint_dir)), 60,
                     f"a checkpoint write ({names})", interval=0.002)
            time.sleep(rng.uniform(0.0, 0.02))  # a write takes ~0.1-0.5 s
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 30, "the trainer to die")


def check_checkpoints(run: RunDir, checker: CapsNet, loaded: dict) -> int:
    """Every file in checkpoints/ loads, and last.weights.h5 holds the state of the epochs it says it covers (Adam's
    step counter is epochs x steps + the steps into the next). Returns the epochs the checkpoint covers."""
    files = {p.name for p in run.checkpoint_dir.glob("*") if not p.name.startswith(".")}
    assert files <= {"last.weights.h5", "best.keras"}, files
    if not run.last_checkpoint.is_file():
        return 0
    state = run.checkpoint_state()
    completed = state["epochs_completed"]
    with h5py.File(run.last_checkpoint, "r") as f:  # Keras's optimizer variable 0: its iterations
        assert f["optimizer/vars/0"][()] == completed * STEPS + state.get("steps_completed", 0)
    for path, load in ((run.last_checkpoint, lambda p: restore_training_state(checker.train, p)),
                       (run.best_checkpoint, load_capsnet)):
        version = path.stat().st_mtime_ns if path.is_file() else None
        if version is not None and loaded.get(path) != version:  # load each version once
            load(path)
            loaded[path] = version
    assert completed <= len(run.epoch_records()) <= completed + 1  # the epoch record comes just before its checkpoint
    return completed


def resume_with_the_cli(run: RunDir) -> subprocess.Popen:
    with open(run.stdout_file, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "capsnet", "train", "--resume", "--save_dir", str(run.path)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_ten_kills_lose_nothing_and_match_an_uninterrupted_run(runs, mnist, tmp_path):
    rng = random.Random(SEED)
    plan = kill_plan(rng)
    checker = CapsNet()  # before the trainer starts: on a busy CPU this alone can take as long as 3 epochs
    compile_for_training(checker.train, 0.001, 0.392)
    started = time.time()  # when the trainer to kill next started
    run = launch.launch(PARAMS, root=tmp_path / "runs", name="killed")
    runs.append(run)
    loaded: dict = {}
    report = []
    cli_process: subprocess.Popen | None = None
    for number, (mode, where) in enumerate(plan):
        pid = cli_process.pid if number == 1 else run.read_raw_status()["pid"]
        kill_when(run, pid, mode, where, started, rng)
        partial = [p.name for p in partial_writes(run.checkpoint_dir)]
        completed = check_checkpoints(run, checker, loaded)
        report.append((mode, where, completed, partial, time.time() - started))
        if number < 2:
            assert completed == 0 and run.config_file.is_file()  # a run, killed before an epoch's end
        started = time.time()
        if number == 0:  # resumed as a user would, with the CLI
            cli_process = resume_with_the_cli(run)
        else:
            launch.resume(run)
    cli_process.wait(30)
    print("\n".join(f"kill {i + 1} after {seconds:.0f} s: {mode} {where:.3g} -> checkpoint covers {completed} epochs, "
                    f"left {partial}" for i, (mode, where, completed, partial, seconds) in enumerate(report)))

    wait_state(run, ("finished",), timeout=300)
    wait_for(lambda: not pid_alive(run.read_raw_status()["pid"]), 120, "the CLI's final test")
    writes = [partial for mode, _, _, partial, _ in report if mode in ("last", "best")]
    assert len(report) == 10 and len(writes) == 4 and all(writes), report  # each write kill landed inside its write
    assert_logged_once(run, PARAMS["epochs"], STEPS)
    assert [int(row["epoch"]) for row in run.read_log_csv()] == list(range(PARAMS["epochs"]))
    check_checkpoints(run, checker, loaded)
    load_capsnet(run.final_model)

    # The same run uninterrupted (same seed, same batches). Resume restores the weights and Adam's state exactly, so
    # only the order of floating-point sums (thread scheduling in TensorFlow's CPU kernels) can tell the two apart:
    # ~1e-5 of the validation loss. An epoch lost, repeated or resumed from weights of another epoch moves it by
    # 10-20% at this stage of training, and the last epoch's accuracy by several of the 100 test images.
    data = Dataset(mnist.x_train[:600], mnist.y_train[:600], mnist.x_test[:100], mnist.y_test[:100], mnist.source)
    straight = RunDir(tmp_path / "straight")
    train(TrainConfig(**PARAMS), straight.path, data=data, verbose=0)
    killed, reference = run.epoch_records(), straight.epoch_records()
    print(f"final val accuracy: killed {killed[-1]['val_accuracy']:.3f}, uninterrupted "
          f"{reference[-1]['val_accuracy']:.3f}; val loss by epoch {[round(r['val_loss'], 5) for r in killed]} vs "
          f"{[round(r['val_loss'], 5) for r in reference]}")
    assert [r["val_loss"] for r in killed] == pytest.approx([r["val_loss"] for r in reference], rel=0.02)
    assert abs(killed[-1]["val_accuracy"] - reference[-1]["val_accuracy"]) <= 0.02


def test_a_loss_that_becomes_nan_ends_the_cli_with_a_one_line_error(mnist, tmp_path):
    run = RunDir(tmp_path / "run")
    env = {**os.environ, "CAPSNET_DATA": str(write_tiny_mnist(mnist, tmp_path / "data", n_train=100, n_test=50))}
    # A start from weights that overflow float32 (any learning rate the CLI takes is too gentle to diverge in two
    # steps): conv1's outputs reach ~1e30, the primary capsules' convolution multiplies them past 3.4e38.
    exploding = CapsNet()
    conv1 = exploding.eval.get_layer("conv1")
    kernel, bias = conv1.get_weights()
    conv1.set_weights([kernel * 1e30, bias])
    start = save_model(exploding, tmp_path / "exploding.keras")
    result = subprocess.run([sys.executable, "-m", "capsnet", "train", "--save_dir", str(run.path), "--batch_size",
                             "50", "--epochs", "1", "--log_every", "1", "-w", str(start)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: (validation )?loss became (-?inf|nan) at epoch 1(, step [12])?; "
                        r"there is no checkpoint yet", error), error
    status = run.read_status()
    assert status["state"] == "failed" and status["message"] == error.removeprefix("error: ")
    assert not run.checkpoint_dir.exists() and not run.final_model.exists()
