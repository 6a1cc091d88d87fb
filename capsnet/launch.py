"""Training as a separate process: launch, stop, resume and delete runs, and the devices they run on.

The app never trains inside the Streamlit process. `launch` starts `python -m capsnet train` in a session of its
own (so it survives page reloads and a restart of the Streamlit server), with its output in `<run>/stdout.log`,
and writes status `queued` with the pid before the process has even imported TensorFlow. From then on the run
directory is the only channel: the trainer writes it, `RunDir.read_status` reads it (and notices dead pids).

Policy: one run per device. Launching or resuming on a device that an active run holds is refused with
`DeviceBusy`, never queued: a queue would need a scheduler that outlives the page.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capsnet.assets import REPO
from capsnet.config import check_train_parameters, train_parameters
from capsnet.rundir import ACTIVE_STATES, RunDir, list_runs, new_run_name, runs_root, validate_run_name

CPU = "cpu"


def train_defaults() -> dict[str, Any]:
    """Every hyperparameter of `python -m capsnet train` with its default (`capsnet.config.train_parameters`)."""
    return {name: default for name, (_, default) in train_parameters().items()}


class LaunchError(Exception):
    """A launch, stop, resume or delete that cannot be done; the message is for the user."""


class DeviceBusy(LaunchError):
    pass


# --- devices --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Device:
    key: str  # "cpu" or "gpu:<index>", the index CUDA_VISIBLE_DEVICES takes (PCI bus order)
    name: str
    memory_bytes: int | None = None

    @property
    def label(self) -> str:
        memory = f", {self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else ""
        return f"{self.key.upper()} · {self.name}{memory}"


# Runs in a throwaway interpreter: initialising CUDA inside the Streamlit process would reserve GPU memory
# that the training processes need. It asks the backend the trainers will use (KERAS_BACKEND, inherited).
GPU_PROBE = "import json; from capsnet import backend; print(json.dumps(backend.accelerators()))"


def cpu_device() -> Device:
    return Device(CPU, f"CPU ({os.cpu_count()} cores)")


def nvidia_present() -> bool:
    return shutil.which("nvidia-smi") is not None or any(Path("/dev").glob("nvidia[0-9]*"))


def list_devices(timeout: float = 120.0) -> list[Device]:
    """The GPUs the active Keras backend sees, then the CPU. Costs a backend import in a subprocess, so only where
    an NVIDIA GPU could exist at all; cache the answer."""
    if not nvidia_present():
        return [cpu_device()]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    try:
        result = subprocess.run([sys.executable, "-c", GPU_PROBE], capture_output=True, text=True, env=env,
                                timeout=timeout, cwd=REPO)
        names = json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError):
        names = []
    return [Device(f"gpu:{i}", name, gpu_memory(i)) for i, name in enumerate(names)] + [cpu_device()]


def gpu_memory(index: int) -> int | None:
    """Total memory of GPU `index` in bytes, as nvidia-smi reports it (None where it cannot)."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits",
                                 f"--id={index}"], capture_output=True, text=True, timeout=20)
        return int(result.stdout.strip()) * 2**20
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def devices_of(status: dict[str, Any]) -> set[str]:
    """The devices a run holds: as launched by the app, else guessed from the trainer's device description."""
    if status.get("devices"):
        return set(status["devices"])
    return {CPU} if str(status.get("device", "CPU")).startswith("CPU") else {"gpu:0"}


def run_on(devices: set[str], root: Path | None = None, exclude: RunDir | None = None) -> RunDir | None:
    """An active run holding any of `devices`, if there is one."""
    for run in list_runs(root or runs_root()):
        if exclude is not None and run.path == exclude.path:
            continue
        status = run.read_status()
        if status.get("state") in ACTIVE_STATES and devices & devices_of(status):
            return run
    return None


def check_free(devices: list[str], root: Path, exclude: RunDir | None = None) -> None:
    busy = run_on(set(devices), root, exclude)
    if busy is not None:
        held = ", ".join(sorted(set(devices) & devices_of(busy.read_status()))).upper()
        raise DeviceBusy(f"{held} is busy with run {busy.name}: one run per device. "
                         "Stop it or wait for it to finish, or pick another device.")


def gpu_range(first: str, count: int, gpus_seen: int) -> list[str]:
    """`count` GPUs from device `first` ("gpu:<index>") on, or LaunchError where there are not that many."""
    start = int(first.split(":")[1])
    if start + count > gpus_seen:
        raise LaunchError(f"{count} GPUs from {first.upper()} on: only {gpus_seen} GPU(s) exist")
    return [f"gpu:{i}" for i in range(start, start + count)]


# --- launch ---------------------------------------------------------------------------------------------------

def train_args(params: dict[str, Any]) -> list[str]:
    """CLI flags for the hyperparameters in `params` (keys of `train_defaults()`), checked as the CLI checks them:
    a value it would refuse (a NaN learning rate, a negative subset) raises `LaunchError` with its message, before
    anything is created."""
    unknown = set(params) - set(train_parameters())
    if unknown:  # a bug in the caller, not the user's input
        raise ValueError(f"unknown training parameters {sorted(unknown)}")
    try:
        checked = check_train_parameters(params)
    except ValueError as error:
        raise LaunchError(str(error)) from None
    args = []
    for key, value in {**train_defaults(), **checked}.items():
        if key == "debug":
            args += ["--debug"] if value else []
        elif value is not None:
            args += [f"--{key}", str(value)]
    return args


def start_process(run: RunDir, argv: list[str], devices: list[str]) -> None:
    """Start the trainer for `run`, write its pid into the status, reap it when it exits."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
           # GPU runs see exactly their GPUs; a CPU run sees none, so TensorFlow cannot wander onto one.
           "CUDA_VISIBLE_DEVICES": ",".join(d.split(":")[1] for d in devices if d != CPU) or "-1"}
    run.path.mkdir(parents=True, exist_ok=True)
    with open(run.stdout_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            run.write_status("failed", message=f"could not start the trainer: {error}")
            raise LaunchError(f"could not start the trainer: {error}") from None
    # Only if the trainer has not already taken over (it needs seconds to import TensorFlow).
    if run.read_raw_status().get("state") == "queued":
        run.write_status("queued", pid=process.pid)
    # Reap the child when it exits, so a finished trainer does not linger as a zombie of the Streamlit server.
    threading.Thread(target=process.wait, daemon=True).start()


def launch(params: dict[str, Any], label: str = "", devices: list[str] | None = None,
           root: Path | None = None, name: str | None = None, backend: str | None = None) -> RunDir:
    """Start a new run of `python -m capsnet train` with `params` on `devices` (default: CPU), on the Keras
    `backend` (default: this process's, `KERAS_BACKEND`).

    Several GPUs train together with `--gpus N`. Raises `LaunchError` for a value the CLI would refuse, `DeviceBusy`
    when an active run holds one of the devices, `ValueError` for a bad run `name`; a `label` is made safe instead.
    """
    root = Path(root or runs_root())
    devices = list(devices or [CPU])
    if CPU in devices and len(devices) > 1:
        raise LaunchError("a run trains on the CPU or on GPUs, not both")
    flags = train_args(params)
    check_free(devices, root)
    name = validate_run_name(name) if name else new_run_name(label)  # one folder inside root, whatever the label
    run = RunDir(root / name)
    for n in range(2, 100):  # two launches within a second with the same label
        if not run.path.exists():
            break
        run = RunDir(root / validate_run_name(f"{name}-{n}"))
    argv = [sys.executable, "-m", "capsnet", "train", "--save_dir", str(run.path), *flags]
    argv += ["--backend", backend] if backend else []
    gpus = [d for d in devices if d != CPU]
    if len(gpus) > 1:
        argv += ["--gpus", str(len(gpus))]
    run.path.mkdir(parents=True)
    run.write_status("queued", devices=devices, command=argv, label=label, launched=time.time(),
                     message="starting: the trainer is importing TensorFlow")
    start_process(run, argv, devices)
    return run


# --- stop, resume, delete -------------------------------------------------------------------------------------

def owns_pid(run: RunDir, pid: int) -> bool:
    """Whether `pid` is still this run's trainer and not a recycled pid of something else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return not Path("/proc").is_dir()  # no procfs to ask: trust the status file
    return "capsnet" in cmdline and str(run.path) in cmdline


def stop(run: RunDir) -> None:
    """Ask a running run to stop: SIGTERM to its process group. The trainer finishes the step, writes a
    checkpoint and status `stopped`; a trainer still starting up just ends (and reads as `stopped`)."""
    status = run.read_status()
    if status.get("state") not in ACTIVE_STATES:
        raise LaunchError(f"run {run.name} is not running ({status.get('state')})")
    pid = status.get("pid")
    run.write_status(run.read_raw_status().get("state", "running"), stop_requested=True)
    if pid and owns_pid(run, pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def resume(run: RunDir, epochs: int | None = None, lr: float | None = None, lr_decay: float | None = None) -> RunDir:
    """Continue a stopped, interrupted or failed run from its last checkpoint (`--resume`), on the devices it was
    launched on; or a finished one, with more `epochs`. `lr` and `lr_decay` give it a new learning-rate schedule
    from the epoch it resumes in (`TrainConfig.with_lr_change`). A run that died before its first checkpoint starts
    over with its original command."""
    status = run.read_status()
    if status.get("state") in ACTIVE_STATES:
        raise LaunchError(f"run {run.name} is still {status['state']}")
    changes = {name: value for name, value in (("epochs", epochs), ("lr", lr), ("lr_decay", lr_decay))
               if value is not None}
    try:
        changes = check_train_parameters(changes)
    except ValueError as error:
        raise LaunchError(str(error)) from None
    devices = list(status.get("devices") or sorted(devices_of(status)))
    check_free(devices, run.path.parent, exclude=run)
    if run.last_checkpoint.is_file():
        argv = [sys.executable, "-m", "capsnet", "train", "--resume", "--save_dir", str(run.path)]
        argv += [arg for name, value in changes.items() for arg in (f"--{name}", str(value))]
        argv += ["--backend", status["backend"]] if status.get("backend") else []  # as it trained so far
        gpus = [d for d in devices if d != CPU]
        argv += ["--gpus", str(len(gpus))] if len(gpus) > 1 else []
    elif changes:
        raise LaunchError(f"run {run.name} has no checkpoint to continue with new values; launch a new run")
    elif status.get("command"):
        argv = list(status["command"])
        for leftover in (run.config_file, run.metrics_file, run.log_csv, run.log_png):
            leftover.unlink(missing_ok=True)  # the CLI refuses to start a fresh run over an old config.json
    else:
        raise LaunchError(f"run {run.name} has no checkpoint to resume from")
    run.write_status("queued", pid=None, stop_requested=False, devices=devices,
                     message="resuming: the trainer is importing TensorFlow")
    start_process(run, argv, devices)
    return run


def delete(run: RunDir, root: Path | None = None) -> None:
    """Remove a run directory; refused while the run is active or when `run` lies outside the runs root."""
    root = Path(root or runs_root()).resolve()
    if run.path.resolve().parent != root:
        raise LaunchError(f"{run.path} is not a run under {root}")
    validate_run_name(run.name)
    state = run.read_status().get("state")
    if state in ACTIVE_STATES:
        raise LaunchError(f"run {run.name} is {state}: stop it before deleting it")
    shutil.rmtree(run.path)
