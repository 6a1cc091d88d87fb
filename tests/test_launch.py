"""Launching real training processes: finish, refuse a busy device, stop and resume, survive `kill -9`."""

import os
import signal

import pytest
from train_support import (
    TINY,
    assert_logged_once,
    kill_trainers,
    wait_for,
    wait_state,
    wait_training_step,
    write_tiny_mnist,
)

from capsnet import launch
from capsnet.rundir import RunDir

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it


@pytest.fixture
def runs(mnist, tmp_path, monkeypatch):
    """A runs root of its own and a tiny MNIST that the trainer processes find through $CAPSNET_DATA."""
    monkeypatch.setenv("CAPSNET_DATA", str(write_tiny_mnist(mnist, tmp_path / "data")))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    started: list[RunDir] = []
    yield started
    kill_trainers(started)


# --- without processes ----------------------------------------------------------------------------------------

def test_train_args_spell_out_every_hyperparameter():
    args = launch.train_args({"epochs": 3, "subset": None, "debug": True, "lr": 0.01})
    assert args[args.index("--epochs") + 1] == "3" and args[args.index("--lr") + 1] == "0.01"
    assert "--subset" not in args and "--debug" in args and "--routings" in args
    with pytest.raises(ValueError, match="unknown"):
        launch.train_args({"learning_rate": 1})


def test_cpu_only_machine_lists_the_cpu(monkeypatch):
    monkeypatch.setattr(launch, "nvidia_present", lambda: False)
    assert [d.key for d in launch.list_devices()] == ["cpu"]


def test_delete_refuses_paths_outside_the_root_and_active_runs(tmp_path):
    outside = RunDir(tmp_path / "elsewhere" / "run")
    outside.write_status("finished")
    with pytest.raises(launch.LaunchError, match="not a run under"):
        launch.delete(outside, tmp_path / "runs")
    active = RunDir(tmp_path / "runs" / "active")
    active.write_status("running", pid=os.getpid())
    with pytest.raises(launch.LaunchError, match="stop it before"):
        launch.delete(active, tmp_path / "runs")
    active.write_status("stopped")
    launch.delete(active, tmp_path / "runs")
    assert not active.path.exists()


def test_resume_refuses_bad_new_values_and_new_values_without_a_checkpoint(tmp_path):
    run = RunDir(tmp_path / "runs" / "stopped")
    run.write_status("stopped", devices=["cpu"], command=["python", "-m", "capsnet", "train"])
    with pytest.raises(launch.LaunchError, match=r"--lr_decay: must be a number in \[0.01, 1\]"):
        launch.resume(run, lr_decay=1.5)
    with pytest.raises(launch.LaunchError, match="--epochs"):
        launch.resume(run, epochs=0)
    with pytest.raises(launch.LaunchError, match="no checkpoint to continue with new values"):
        launch.resume(run, lr=1e-4)
    assert run.read_raw_status()["state"] == "stopped"  # nothing was started


def test_runs_without_device_records_hold_the_device_they_name():
    assert launch.devices_of({"devices": ["gpu:1", "gpu:2"]}) == {"gpu:1", "gpu:2"}
    assert launch.devices_of({"device": "CPU (2 cores)"}) == {"cpu"}
    assert launch.devices_of({"device": "NVIDIA H100 80GB HBM3"}) == {"gpu:0"}


# --- real trainers --------------------------------------------------------------------------------------------

def test_tiny_run_finishes_and_a_second_run_on_the_device_is_refused(runs):
    run = launch.launch({**TINY, "subset": 200, "epochs": 1}, label="tiny")
    runs.append(run)
    status = run.read_raw_status()
    assert status["state"] == "queued" and status["pid"] and status["devices"] == ["cpu"]
    with pytest.raises(launch.DeviceBusy, match="one run per device"):
        runs.append(launch.launch(TINY, label="second"))
    assert wait_state(run, ("finished",), timeout=120)["final_val_accuracy"] is not None
    assert_logged_once(run, epochs=1, steps_per_epoch=4)
    assert run.best_model() == run.final_model
    assert "run directory:" in run.stdout_file.read_text()


def test_stop_then_resume_logs_every_epoch_once(runs):
    run = launch.launch(TINY, label="stop")
    runs.append(run)
    wait_training_step(run, epoch=0, step=2)
    with pytest.raises(launch.LaunchError, match="stop it before"):
        launch.delete(run)
    launch.stop(run)
    status = wait_state(run, ("stopped",), timeout=120)
    assert "resume" in status["message"]
    # The checkpoint is written at the step the stop came in (usually inside epoch 0), and holds every logged step.
    state = run.checkpoint_state()
    at = state["epochs_completed"] * 12 + state.get("steps_completed", 0)
    assert at == run.step_records()[-1]["global_step"] >= 2
    assert status["message"] == f"stopped by request; resume continues from {run.checkpoint_position()}"
    with pytest.raises(launch.LaunchError, match="not running"):
        launch.stop(run)

    launch.resume(run)
    wait_state(run, ("finished",), timeout=180)
    assert_logged_once(run, epochs=2, steps_per_epoch=12)
    resumed = run.read_raw_status()["sessions"][-1]
    assert (resumed["initial_epoch"], resumed["initial_step"]) == (state["epochs_completed"],
                                                                   state.get("steps_completed", 0))
    launch.delete(run)
    assert not run.path.exists()


def test_kill_9_reads_interrupted_and_resume_continues_from_the_checkpoint(runs):
    run = launch.launch(TINY, label="kill")
    runs.append(run)
    wait_training_step(run, epoch=1, step=1)  # epoch 0 is checkpointed
    first_epoch = run.epoch_records()[0]
    pid = run.read_raw_status()["pid"]
    os.killpg(pid, signal.SIGKILL)
    status = wait_for(lambda: (s := run.read_status())["state"] == "interrupted" and s, 30, "interrupted")
    assert "without writing a final status" in status["message"]
    assert run.checkpoint_state()["epochs_completed"] == 1

    launch.resume(run)
    wait_state(run, ("finished",), timeout=180)
    assert_logged_once(run, epochs=2, steps_per_epoch=12)
    assert run.epoch_records()[0] == first_epoch  # epoch 0 was not trained again
    resumed_log = run.stdout_file.read_text().split("--resume")[-1]
    assert "Epoch 2/2" in resumed_log and "Epoch 1/2" not in resumed_log


def test_stop_while_starting_then_resume_starts_over(runs):
    """A stop before training began (TensorFlow still importing) leaves no checkpoint: Resume starts afresh."""
    run = launch.launch({**TINY, "subset": 200, "epochs": 1}, label="early")
    runs.append(run)
    launch.stop(run)
    wait_state(run, ("stopped",), timeout=30)
    assert not run.last_checkpoint.is_file()

    launch.resume(run)
    wait_state(run, ("finished",), timeout=120)
    assert_logged_once(run, epochs=1, steps_per_epoch=4)
    assert run.stdout_file.read_text().count("=== ") == 2  # both attempts logged to the same stdout.log


def test_a_gpu_range_is_the_gpus_from_the_chosen_one_on():
    assert launch.gpu_range("gpu:1", 2, gpus_seen=4) == ["gpu:1", "gpu:2"]
    with pytest.raises(launch.LaunchError, match="3 GPUs from GPU:2 on: only 4 GPU"):
        launch.gpu_range("gpu:2", 3, gpus_seen=4)
