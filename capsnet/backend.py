"""Starting TensorFlow without its start-up chatter.

TensorFlow's native code logs a few lines to stderr while it loads and looks for devices (oneDNN's notice, CUDA
stubs, CPU features), before it reads TF_CPP_MIN_LOG_LEVEL: no environment variable silences them. The CLI starts
TensorFlow inside `quiet_start()`, which points file descriptor 2 elsewhere for that moment and shows what was held
back only if starting failed. `CAPSNET_TF_LOGS=1` keeps the lines.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


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
    """Import TensorFlow and Keras and initialise the devices, without the native start-up lines (unless
    CAPSNET_TF_LOGS=1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # and nothing below warnings afterwards
    if os.environ.get("CAPSNET_TF_LOGS") == "1":
        return
    with native_stderr_held_back():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_logical_devices()
