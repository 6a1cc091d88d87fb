"""The run-directory module: names, atomic status, tolerant metrics reading, pid checks, truncation,
checkpoints."""

import json
import multiprocessing
import os
import subprocess
import sys
import threading

import h5py
import pytest

from capsnet.files import partial_writes, write_text, written_whole
from capsnet.rundir import RunDir, list_runs, new_run_name, read_jsonl, validate_run_name


@pytest.mark.parametrize("name", ["20250101-120000-r3", "a", "run_1.b-2", "X" * 80])
def test_valid_run_names(name):
    assert validate_run_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "a..b", "a b", "x" * 81,
                                  "-flag", "ünï"])
def test_invalid_run_names(name):
    with pytest.raises(ValueError, match="invalid run name"):
        validate_run_name(name)


def test_new_run_name_slugifies_the_label():
    name = new_run_name("my label/../../etc")
    assert validate_run_name(name) == name
    assert "/" not in name and ".." not in name and name.endswith("my-label-etc")


def test_status_is_replaced_atomically(tmp_path):
    """A reader polling while a writer rewrites status.json never sees a half-written file."""
    run = RunDir(tmp_path / "run")
    run.write_status("running", pid=os.getpid(), step=0)
    stop = threading.Event()

    def writer():
        step = 0
        while not stop.is_set():
            step += 1
            run.write_status("running", step=step, padding="x" * (step % 5000))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = [run.read_raw_status() for _ in range(2000)]
    finally:
        stop.set()
        thread.join()
    assert all(s.get("state") == "running" and s.get("pid") == os.getpid() for s in seen)
    assert [p.name for p in run.path.iterdir()] == ["status.json"]  # no temp files left behind


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError):
        RunDir(tmp_path).write_status("exploded")


def test_reader_skips_a_half_written_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "step", "step": 1}\nnot json\n{"kind": "step", "step": 2}\n{"kind": "st')
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_dead_pid_reads_as_interrupted(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_status("running", pid=os.getpid())
    assert run.read_status()["state"] == "running"
    run.write_status("running", pid=dead_pid())
    status = run.read_status()
    assert status["state"] == "interrupted" and "without writing a final status" in status["message"]
    assert run.read_raw_status()["state"] == "running"  # reading never rewrites the file


def test_zombie_reads_as_interrupted(tmp_path):
    """An exited child its parent has not reaped yet still has a pid, but it is not training."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
        run = RunDir(tmp_path / "run")
        run.write_status("running", pid=process.pid)
        assert run.read_status()["state"] == "interrupted"
    finally:
        process.wait()


def test_queued_and_stop_requests(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_status("queued")  # not started yet: no pid to check
    assert run.read_status()["state"] == "queued"
    run.write_status("queued", pid=dead_pid())  # the trainer died while importing TensorFlow
    assert run.read_status()["state"] == "failed"
    run.write_status("running", pid=os.getpid(), stop_requested=True)
    assert run.read_status()["state"] == "stopping"
    run.write_status("running", pid=dead_pid())  # killed by the stop before its handler was installed
    assert run.read_status()["state"] == "stopped"
    run.write_status("finished", stop_requested=False)
    assert run.read_status()["state"] == "finished"


def test_truncate_metrics_keeps_completed_epochs(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for epoch in range(3):
        for step in (1, 2):
            run.append_metrics({"kind": "step", "epoch": epoch, "step": step, "global_step": 2 * epoch + step})
        run.append_metrics({"kind": "epoch", "epoch": epoch, "loss": 1.0, "accuracy": 0.5})
    with open(run.metrics_file, "a") as f:
        f.write('{"kind": "step", "epo')  # the trainer was killed mid-write
    run.write_epoch_log()
    run.truncate_metrics(2)
    assert [r["epoch"] for r in run.epoch_records()] == [0, 1]
    assert [r["global_step"] for r in run.step_records()] == [1, 2, 3, 4]
    assert run.metrics_file.read_text().endswith("\n")
    assert [row["epoch"] for row in run.read_log_csv()] == [0, 1]  # the dropped epoch leaves log.csv too


def weights_saver(value: int):
    """A stand-in for `model.save_weights`: an HDF5 file with one dataset."""
    def save(path):
        with h5py.File(path, "w") as f:
            f["w"] = value
    return save


def test_a_checkpoint_and_the_epochs_it_covers_are_one_file(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.checkpoint_state() == {}
    assert run.checkpoint_position() is None
    run.save_checkpoint(weights_saver(1), epochs_completed=1, best_val_accuracy=0.5)
    assert run.checkpoint_state() == {"epochs_completed": 1, "best_val_accuracy": 0.5}
    assert run.checkpoint_position() == "the end of epoch 1"

    def dies_while_writing(path):
        weights_saver(2)(path)
        os._exit(9)  # killed mid-write: no clean-up runs

    writer = multiprocessing.get_context("fork").Process(
        target=run.save_checkpoint, args=(dies_while_writing,), kwargs={"epochs_completed": 2,
                                                                       "best_val_accuracy": 0.6})
    writer.start()
    writer.join(60)
    assert writer.exitcode == 9
    # The old pair is whole: weights and state of epoch 1; the next trainer deletes the unfinished one.
    assert run.checkpoint_state()["epochs_completed"] == 1
    with h5py.File(run.last_checkpoint, "r") as f:
        assert f["w"][()] == 1
    assert [p.name.split(".part-")[0] for p in partial_writes(run.checkpoint_dir)] == [".last.weights.h5"]
    run.remove_partial_checkpoints()
    assert [p.name for p in run.checkpoint_dir.iterdir()] == ["last.weights.h5"]


def test_a_checkpoint_inside_an_epoch_keeps_the_records_of_its_steps(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for epoch in range(2):
        for step in range(1, 5):
            run.append_metrics({"kind": "step", "epoch": epoch, "step": step, "global_step": 4 * epoch + step})
        run.append_metrics({"kind": "epoch", "epoch": epoch, "loss": 0.5, "accuracy": 0.5})
    run.save_checkpoint(weights_saver(1), epochs_completed=1, best_val_accuracy=0.5, steps_completed=2,
                        epoch_seconds=12.5)
    assert run.checkpoint_state() == {"epochs_completed": 1, "best_val_accuracy": 0.5, "steps_completed": 2,
                                      "epoch_seconds": 12.5}
    assert run.checkpoint_position() == "epoch 2, step 2"
    run.truncate_metrics(1, 2)  # what the resumed process does first: steps 3-4 and epoch 1's record go
    assert [(r["kind"], r["epoch"], r.get("step")) for r in run.read_metrics()] == [
        *(("step", 0, s) for s in range(1, 5)), ("epoch", 0, None), ("step", 1, 1), ("step", 1, 2)]
    assert [int(row["epoch"]) for row in run.read_log_csv()] == [0]


def test_checkpoints_of_earlier_versions_keep_their_state_beside_the_weights(tmp_path):
    run = RunDir(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    weights_saver(1)(run.last_checkpoint)
    (run.checkpoint_dir / "state.json").write_text(json.dumps({"epochs_completed": 3, "best_val_accuracy": 0.9}))
    assert run.checkpoint_state()["epochs_completed"] == 3


def test_stdout_tail_shows_what_a_terminal_would(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    bar = "".join(f"\r\x1b[1m{i}/4\x1b[0m \x1b[32m━━\x1b[0m loss: 0.{i}" for i in range(1, 5))
    run.stdout_file.write_text(f"line 1\n{bar}\nTraceback (most recent call last):\nValueError: boom\n")
    assert run.stdout_tail(3) == "4/4 ━━ loss: 0.4\nTraceback (most recent call last):\nValueError: boom"
    assert RunDir(tmp_path / "none").stdout_tail() == ""


def test_list_runs_includes_launched_runs_and_skips_strangers(tmp_path):
    RunDir(tmp_path / "20250101-000000-a").write_status("queued")  # launched: config.json comes later
    finished = RunDir(tmp_path / "20250102-000000-b")
    finished.path.mkdir()
    finished.config_file.write_text(json.dumps({"epochs": 1}))
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.json").write_text("{}")
    assert [r.name for r in list_runs(tmp_path)] == ["20250102-000000-b", "20250101-000000-a"]
    assert list_runs(tmp_path / "missing") == []


def test_a_write_that_fails_leaves_the_old_file_and_nothing_beside_it(tmp_path):
    target = tmp_path / "status.json"
    write_text(target, "old")
    with pytest.raises(OSError), written_whole(target) as partial:
        partial.write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["status.json"]
    write_text(target, "new")
    assert target.read_text() == "new" and not partial_writes(tmp_path)
