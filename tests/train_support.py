"""Helpers for the dashboard tests that start real training processes: a tiny MNIST and waiting on run states.

Each trainer pays a TensorFlow import (~5-8 s); the tiny dataset keeps the rest to seconds, validation included
(it runs on the whole test set every epoch, so the test set is cut to 100 images here).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from capsnet import launch
from capsnet.rundir import RunDir

# 600 images in batches of 50 with a record per step: 12 steps (~5 s) per epoch on a busy 2-core CPU.
TINY = {"subset": 600, "batch_size": 50, "log_every": 1, "epochs": 2}


def kill_trainers(runs: list[RunDir]) -> None:
    """Never leave a trainer behind, whatever a test did: kill the process group of each run's live trainer."""
    for run in runs:
        pid = run.read_raw_status().get("pid")
        if pid and launch.owns_pid(run, pid):
            os.killpg(pid, signal.SIGKILL)


def write_tiny_mnist(mnist, folder: Path, n_train: int = 600, n_test: int = 100) -> Path:
    """A small mnist.npz for $CAPSNET_DATA, cut from the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "mnist.npz", x_train=mnist.x_train[:n_train], y_train=mnist.y_train[:n_train],
             x_test=mnist.x_test[:n_test], y_test=mnist.y_test[:n_test])
    return folder


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_state(run: RunDir, states: tuple[str, ...], timeout: float = 180.0) -> dict:
    """Wait until the run reads as one of `states`; fail fast (with its log) when it ends otherwise."""
    final = {"finished", "stopped", "failed", "interrupted"}

    def reached():
        status = run.read_status()
        if status.get("state") in states:
            return status
        if status.get("state") in final - set(states):
            raise AssertionError(f"{run.name} ended {status}\n{run.stdout_tail(30)}")
        return None

    try:
        return wait_for(reached, timeout, f"{run.name} to be {'/'.join(states)}")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; status {run.read_raw_status()}\n{run.stdout_tail(30)}") from None


def wait_training_step(run: RunDir, epoch: int = 0, step: int = 1, timeout: float = 180.0) -> dict:
    """Wait until the trainer has logged `step` of `epoch` (it is then inside fit, with its stop handler)."""
    def reached():
        status = run.read_status()
        if status.get("state") in ("failed", "interrupted", "finished", "stopped"):
            raise AssertionError(f"{run.name} ended early: {status}\n{run.stdout_tail(30)}")
        done = [r for r in run.step_records() if (r["epoch"], r["step"]) >= (epoch, step)]
        return status if done else None

    return wait_for(reached, timeout, f"{run.name} to log step {step} of epoch {epoch}")


def assert_logged_once(run: RunDir, epochs: int, steps_per_epoch: int) -> None:
    """Every epoch and every step recorded exactly once, in order: what resume must guarantee."""
    assert [r["epoch"] for r in run.epoch_records()] == list(range(epochs))
    assert [r["global_step"] for r in run.step_records()] == list(range(1, epochs * steps_per_epoch + 1))
