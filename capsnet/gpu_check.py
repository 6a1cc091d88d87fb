"""The prepared GPU check: `python -m capsnet.gpu_check` on a machine with an NVIDIA GPU and JAX (the `device` tool's
machines have no TensorFlow), in one call of at most a few minutes.

It verifies the path the Train page takes, not only the CLI: the run is started through `capsnet.launch` as its own
process (`python -m capsnet train`, Keras on JAX, on GPU 0), and this script follows it the way the dashboard does,
by reading the run directory's status and metrics while it trains. It prints the GPU's name, seconds per epoch and
samples per second, checks that validation accuracy rises from epoch to epoch, and writes everything as JSON.

Carried with the command (see README, "GPU check"): wheels for what the machine lacks (keras, namex, optree) in
`.whl/`, installed here into a private folder, and the MNIST arrays as `data/mnist.npz`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install_carried_wheels(wheels: Path, target: Path) -> None:
    """pip-install the carried wheels (no index, no dependencies) into `target`, for this process and its children."""
    found = sorted(wheels.glob("*.whl"))
    if found:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", str(target), *map(str, found)], check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))


def follow(run, timeout: float) -> dict:
    """Poll the run directory like the Train page does, until the run ends; return what was seen."""
    seen_steps, start = set(), time.monotonic()
    while time.monotonic() - start < timeout:
        status = run.read_status()
        for record in run.step_records():
            if (record["epoch"], record["step"]) not in seen_steps:
                seen_steps.add((record["epoch"], record["step"]))
                print(f"  epoch {record['epoch'] + 1} step {record['step']}: loss {record['loss']:.4f}, "
                      f"{record['samples_per_sec']:.0f} samples/s", flush=True)
        if status.get("state") not in ("queued", "running", "stopping"):
            return status
        time.sleep(1.0)
    return {**run.read_status(), "state": "timeout"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--wheels", type=Path, default=REPO / ".whl")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds the training may take")
    args = parser.parse_args()

    install_carried_wheels(args.wheels, Path("/tmp/capsnet-site"))
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("CAPSNET_DATA", str(REPO / "data"))
    from capsnet import launch
    from capsnet.rundir import RunDir

    devices = launch.list_devices()
    gpus = [device for device in devices if device.key != launch.CPU]
    print("devices:", ", ".join(device.label for device in devices), flush=True)
    result: dict = {"backend": "jax", "devices": [device.label for device in devices], "ok": False}
    if not gpus:
        result["message"] = "no GPU: the JAX backend sees none on this machine"
    else:
        root = Path("/tmp/capsnet-gpu-check")
        run = launch.launch({"epochs": args.epochs, "batch_size": args.batch_size}, label="gpu",
                            devices=[gpus[0].key], root=root, backend="jax")
        print(f"launched {run.name} on {gpus[0].label}", flush=True)
        status = follow(run, args.timeout)
        epochs = RunDir(run.path).epoch_records()
        accuracies = [e.get("val_accuracy") for e in epochs]
        steady = [e["seconds"] for e in epochs[1:]] or [e["seconds"] for e in epochs]  # epoch 1 compiles
        seconds = sorted(steady)[len(steady) // 2] if steady else None
        result |= {
            "gpu": gpus[0].name, "state": status.get("state"), "message": status.get("message"),
            "run_device": status.get("device"), "epochs": len(epochs), "val_accuracy": accuracies,
            "seconds_per_epoch": seconds, "first_epoch_seconds": epochs[0]["seconds"] if epochs else None,
            "samples_per_sec": 60000 / seconds if seconds else None,
            "ok": status.get("state") == "finished" and len(accuracies) >= 2
                  and accuracies[-1] > accuracies[0] and accuracies[-1] > 0.9,
        }
        if not result["ok"]:
            print(run.stdout_tail(40), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
