"""The GPU check (`python -m capsnet.tools.gpu_check`) rehearsed on the CPU under what the GPU machines carry: Python
3.12, JAX 0.11, no TensorFlow, and Keras 3.15 with namex and optree as carried wheels. `.ci/run` builds that environment
(a venv of pyenv's Python 3.12 and a folder of wheels) in $CAPSNET_REHEARSAL_DIR; without it the test skips, unless
CAPSNET_REQUIRE_REHEARSAL=1 (as in CI) makes it fail."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from capsnet.rundir import RunDir, pid_alive

pytestmark = pytest.mark.slow  # the app, processes or trainings: `pytest -m "not slow"` skips it

REHEARSAL_DIR = Path(os.environ.get("CAPSNET_REHEARSAL_DIR") or Path.home() / ".cache" / "capsnet-gpu-rehearsal")
PYTHON = REHEARSAL_DIR / "venv" / "bin" / "python"
WHEELS = REHEARSAL_DIR / "wheels"
# What the venv must hold, asked of its own interpreter.
PROBE = ("import importlib.util, json, sys, jax; print(json.dumps({'python': list(sys.version_info[:2]), "
         "'jax': jax.__version__, 'tensorflow': importlib.util.find_spec('tensorflow') is not None, "
         "'keras': importlib.util.find_spec('keras') is not None}))")


@pytest.fixture(scope="module")
def rehearsal_python() -> Path:
    """The venv's interpreter, checked to be what the GPU machines run; skips (or fails in CI) where it is missing."""
    if not PYTHON.is_file() or not list(WHEELS.glob("keras-*.whl")):
        message = (f"no rehearsal environment in {REHEARSAL_DIR} (a Python 3.12 venv with JAX 0.11 and carried "
                   f"Keras wheels): run the rehearsal section of .ci/run, which needs pyenv's Python 3.12")
        if os.environ.get("CAPSNET_REQUIRE_REHEARSAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    probe = subprocess.run([str(PYTHON), "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    # Keras must come from the carried wheels, as on the GPU machines, and TensorFlow must be absent.
    assert found == {"python": [3, 12], "jax": found["jax"], "tensorflow": False, "keras": False}, found
    assert found["jax"].startswith("0.11."), found
    return PYTHON


def test_rehearsal_runs_the_whole_check_on_jax_without_tensorflow(rehearsal_python, tmp_path, mnist):
    # `mnist` first: the rehearsal reads its subset through the data layer, from the sources this fixture prepared.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND", "CAPSNET_DATA")}
    work, out = tmp_path / "work", tmp_path / "gpu_check.json"
    result = subprocess.run([str(rehearsal_python), "-m", "capsnet.tools.gpu_check", "--rehearse",
                             "--wheels", str(WHEELS), "--work", str(work), "--out", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads(out.read_text())
    assert report["ok"] and all(report["checks"].values()), report

    # What the report claims, seen for ourselves in what the run left behind.
    assert report["python"].startswith("3.12.") and report["keras"].startswith("3.15.")
    assert Path(report["keras_from"]).resolve().is_relative_to((work / "site").resolve())
    run = RunDir(report["run"])
    assert run.path.parent == work / "runs"
    status, config = run.read_status(), run.read_config()
    assert status["state"] == "finished" and status["backend"] == "jax"
    assert status["device"].startswith("CPU") and status["devices"] == ["cpu"]
    assert not pid_alive(status.get("pid"))  # the check waited for the trainer to exit
    assert config["epochs"] == 2 and config["precision"] == "float32"
    epochs = run.epoch_records()
    assert len(epochs) == 2 and epochs[1]["loss"] < epochs[0]["loss"]
    assert run.final_model.is_file() and (run.path / "real_and_recon.png").is_file()
    # The run read the rehearsal's subset, not the whole of MNIST: 10 steps of 20 images an epoch.
    assert max(record["step"] for record in run.step_records()) == 10
    stdout = run.stdout_file.read_text()
    assert "Traceback" not in stdout
    # The trainer, a real `python -m capsnet train` on JAX without a GPU in float32: nothing to note there
    # (capsnet.precision.jax_cpu_note).
    assert "note: Keras on JAX without a GPU" not in stdout
