"""The prepared GPU check: `python -m capsnet.tools.gpu_check` on a machine with an NVIDIA GPU and JAX (the `device`
tool's machines have no TensorFlow), in one call of at most a few minutes.

It verifies the path the Train page takes, not only the CLI: the run is started through `capsnet.launch` as its own
process (`python -m capsnet train`, Keras on JAX, on GPU 0), and this script follows it the way the dashboard does,
by reading the run directory's status and metrics while it trains. It prints the GPU's name, seconds per epoch and
samples per second, checks that validation accuracy rises from epoch to epoch, and writes everything as JSON.

Carried with the command (see README, "GPU check"): wheels for what the machine lacks (keras, namex, optree) in
`.whl/`, installed here into a private folder, and the MNIST arrays as `data/mnist.npz`.

`--rehearse` runs the same path on the CPU, in a few minutes, so that CI can prove it before a GPU is lent: the
carried wheels go into a fresh private folder, `import tensorflow` is made to fail in this process and the trainer's
(whatever the interpreter has installed), and a 2-epoch run on a subset of MNIST is launched on the CPU and followed.
CI runs it under what the GPU machines carry: Python 3.12, JAX 0.11, no TensorFlow (`.ci/run`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from capsnet.assets import REPO

NO_TENSORFLOW = "raise ImportError('TensorFlow is blocked here: the GPU machines have none (the GPU check)')\n"


def install_carried_wheels(wheels: Path, target: Path) -> list[str]:
    """pip-install the carried wheels (no index, no dependencies) into `target`, for this process and its children;
    returns the wheels' file names."""
    found = sorted(wheels.glob("*.whl"))
    if found:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--disable-pip-version-check", "--upgrade", "--target", str(target), *map(str, found)],
                       check=True)
    prepend_to_path(target)
    return [wheel.name for wheel in found]


def prepend_to_path(folder: Path) -> None:
    """Put `folder` first on the module path of this process and of the processes it starts."""
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def block_tensorflow(folder: Path) -> bool:
    """Make `import tensorflow` fail here and in child processes, as on a machine without it; True if it now fails."""
    package = folder / "tensorflow"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(NO_TENSORFLOW)
    prepend_to_path(folder)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return True
    return False


def rehearsal_data(folder: Path, train_images: int, test_images: int) -> Path:
    """The first `train_images` and `test_images` MNIST digits as `folder/mnist.npz`, for the trainer's
    `$CAPSNET_DATA`: a subset for training, and a validation set small enough for a CPU."""
    import numpy as np

    from capsnet.data import load_dataset  # NumPy only: no Keras in this process yet

    data = load_dataset("mnist")
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "mnist.npz", x_train=data.x_train[:train_images], y_train=data.y_train[:train_images],
             x_test=data.x_test[:test_images], y_test=data.y_test[:test_images])
    return folder


def follow(run, timeout: float) -> tuple[dict, int]:
    """Poll the run directory like the Train page does, until the run ends and its process has exited (after
    training the CLI tests the model); return the last status and how many step records were seen while it was
    still running."""
    from capsnet.rundir import pid_alive

    seen_steps, seen_live, start = set(), 0, time.monotonic()
    while time.monotonic() - start < timeout:
        status = run.read_status()
        for record in run.step_records():
            if (record["epoch"], record["step"]) not in seen_steps:
                seen_steps.add((record["epoch"], record["step"]))
                seen_live += status.get("state") in ("queued", "running", "stopping")
                print(f"  epoch {record['epoch'] + 1} step {record['step']}: loss {record['loss']:.4f}, "
                      f"{record['samples_per_sec']:.1f} samples/s", flush=True)
        if status.get("state") not in ("queued", "running", "stopping") and not pid_alive(status.get("pid")):
            return status, seen_live
        time.sleep(1.0)
    return {**run.read_status(), "state": "timeout"}, seen_live


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true",
                        help="run the whole check on the CPU (a subset, 2 short epochs) with TensorFlow blocked")
    parser.add_argument("--epochs", type=int, help="default: 3 (rehearsal: 2)")
    parser.add_argument("--batch_size", type=int, help="default: 100 (rehearsal: 20)")
    parser.add_argument("--subset", type=int, help="training images (default: all; rehearsal: 200)")
    parser.add_argument("--test_images", type=int, default=100, help="rehearsal's validation and test images")
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl", help="the carried wheels")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    parser.add_argument("--work", type=Path, help="rehearsal's folder for its install, data and run (default: a new "
                                                  "temporary folder)")
    parser.add_argument("--timeout", type=float, help="seconds the training may take (default 420; rehearsal 300)")
    args = parser.parse_args(argv)
    defaults = {"epochs": 2, "batch_size": 20, "subset": 200, "timeout": 300.0} if args.rehearse else \
        {"epochs": 3, "batch_size": 100, "subset": None, "timeout": 420.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.rehearse:
        scratch = args.work or Path(tempfile.mkdtemp(prefix="capsnet-rehearsal-"))
        # A fresh folder, so that what an earlier run installed cannot stand in for this install.
        site = scratch / "site"
        if site.exists():
            raise SystemExit(f"error: {site} exists; give the rehearsal a new --work folder")
    else:
        scratch, site = Path("/tmp/capsnet-gpu-check"), Path("/tmp/capsnet-site")
    wheels = install_carried_wheels(args.wheels, site)
    result: dict[str, Any] = {"rehearsal": args.rehearse, "backend": "jax", "python": sys.version.split()[0],
                              "carried_wheels": wheels, "ok": False}
    if args.rehearse:
        result["tensorflow_blocked"] = block_tensorflow(scratch / "no-tensorflow")
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("CAPSNET_DATA", str(REPO / "data"))
    train_images = args.subset or 60000
    if args.rehearse:
        os.environ["CAPSNET_DATA"] = str(rehearsal_data(scratch / "data", args.subset, args.test_images))
    import keras  # here, from the carried wheels: a broken install fails before anything is launched

    from capsnet import launch
    from capsnet.rundir import RunDir

    result |= {"keras": keras.__version__, "keras_from": keras.__file__}

    devices = launch.list_devices()
    gpus = [device for device in devices if device.key != launch.CPU]
    print("devices:", ", ".join(device.label for device in devices), flush=True)
    result["devices"] = [device.label for device in devices]
    if not gpus and not args.rehearse:
        result["message"] = "no GPU: the JAX backend sees none on this machine"
    else:
        device = launch.cpu_device() if args.rehearse else gpus[0]
        params: dict[str, Any] = {"epochs": args.epochs, "batch_size": args.batch_size, "subset": args.subset}
        if args.rehearse:
            # XLA's CPU code trains bfloat16 at less than half float32's rate (README, "JAX on a CPU"): the
            # rehearsal proves the path, and float32 keeps it within minutes on any CPU.
            params |= {"precision": "float32", "log_every": 5}
        root = scratch / "runs" if args.rehearse else scratch
        run = launch.launch(params, label="rehearsal" if args.rehearse else "gpu", devices=[device.key], root=root,
                            backend="jax")
        print(f"launched {run.name} on {device.label}", flush=True)
        status, seen_live = follow(run, args.timeout)
        if status["state"] == "timeout":
            launch.stop(run)
        epochs = RunDir(run.path).epoch_records()
        accuracies = [e.get("val_accuracy") for e in epochs]
        losses = [e.get("loss") for e in epochs]
        steady = [e["seconds"] for e in epochs[1:]] or [e["seconds"] for e in epochs]  # epoch 1 compiles
        seconds = sorted(steady)[len(steady) // 2] if steady else None
        result |= {
            "gpu": None if args.rehearse else device.name, "run": str(run.path), "state": status.get("state"),
            "message": status.get("message"), "run_backend": status.get("backend"),
            "run_device": status.get("device"), "epochs": len(epochs), "loss": losses, "val_accuracy": accuracies,
            "steps_seen_while_running": seen_live, "seconds_per_epoch": seconds,
            "first_epoch_seconds": epochs[0]["seconds"] if epochs else None,
            "samples_per_sec": train_images / seconds if seconds else None,
        }
        finished = status.get("state") == "finished" and len(epochs) == args.epochs and len(epochs) >= 2
        if args.rehearse:
            checks = {
                "finished": finished,
                "keras_from_the_carried_wheels": bool(wheels) and
                                                 Path(keras.__file__).resolve().is_relative_to(site.resolve()),
                "tensorflow_blocked": result["tensorflow_blocked"],
                "trained_on_jax": status.get("backend") == "jax",
                "followed_while_training": seen_live > 0,
                "loss_falls": finished and losses[-1] < losses[0],
                "model_written": RunDir(run.path).final_model.is_file(),
                "model_tested": (run.path / "real_and_recon.png").is_file(),
            }
        else:
            checks = {"finished": finished,
                      "accuracy_rises": finished and accuracies[-1] > accuracies[0] and accuracies[-1] > 0.9}
        result["checks"] = checks
        result["ok"] = all(checks.values())
        if not result["ok"]:
            print(run.stdout_tail(40), flush=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
