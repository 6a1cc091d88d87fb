"""The numerical backend: which one Keras runs on, which devices it sees, and starting it without chatter.

The core runs on TensorFlow (the default), JAX or PyTorch, chosen the Keras way: `KERAS_BACKEND`, which the CLI's
`--backend` sets before Keras is first imported. Everything that differs between backends beyond `keras.ops` lives
here and in `capsnet.compiled` (compiled single-image inference).

TensorFlow's native code logs a few lines to stderr while it loads and looks for devices (oneDNN's notice, CUDA
stubs, CPU features), before it reads TF_CPP_MIN_LOG_LEVEL: no environment variable silences them. `quiet_start`
points file descriptor 2 elsewhere for that moment and shows what was held back only if starting failed.
`CAPSNET_TF_LOGS=1` keeps the lines.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

BACKENDS = ("tensorflow", "jax", "torch")


def select(backend: str | None) -> None:
    """Run Keras on `backend` in this process (and the processes it starts); must come before Keras is imported."""
    if backend is None:
        return
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise RuntimeError(f"Keras already runs on {sys.modules['keras'].backend.backend()}; cannot switch")
    os.environ["KERAS_BACKEND"] = backend


def name() -> str:
    """The active backend (Keras' default, TensorFlow, when nothing is chosen)."""
    import keras

    return keras.backend.backend()


@contextmanager
def native_stderr_held_back() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to a temporary file; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_start() -> None:
    """Import Keras and its backend and initialise the devices, without the native start-up lines (unless
    CAPSNET_TF_LOGS=1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # and nothing below warnings afterwards
    if os.environ.get("CAPSNET_TF_LOGS") == "1":
        return
    with native_stderr_held_back():
        import keras

        keras.ops.convert_to_numpy(keras.ops.zeros(1))  # the first op: device discovery happens here
        accelerators()


def accelerators() -> list[str]:
    """The names of the GPUs the active backend computes on (empty on a CPU)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def describe_device() -> str:
    """What a run records as its device: the GPUs' names, else the CPU and its cores."""
    return ", ".join(accelerators()) or f"CPU ({os.cpu_count()} cores)"


def gpu_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability (major, minor) of each GPU the active backend computes on (empty on a CPU)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
                for gpu in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [tuple(int(part) for part in str(device.compute_capability).split(".")[:2])
                for device in jax.devices() if device.platform == "gpu"]
    if backend == "torch":
        import torch

        return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    return []
