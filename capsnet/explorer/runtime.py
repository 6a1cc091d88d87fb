"""How the explorer's one Streamlit process is set up for interactive TensorFlow: thread pools and the patch that
keeps Keras' session alive between script runs.

One Streamlit process serves every browser session (and may share the machine with a training run): single-image
inference gains nothing from more than a few threads, and contention hurts it.
"""

from __future__ import annotations

import os
import sys

from streamlit.runtime.scriptrunner import script_runner


def configure_threads() -> None:
    """At most 4 threads per op ($CAPSNET_TF_THREADS overrides); a no-op once TensorFlow is running."""
    import tensorflow as tf

    threads = int(os.environ.get("CAPSNET_TF_THREADS", "0")) or min(4, os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # already initialised (a test process that built a model first): keep its settings
        pass


def clean_problem_modules_but_keras() -> None:
    """Streamlit's after-run cleanup (`script_runner._clean_problem_modules`) minus `keras.backend.clear_session()`,
    which empties TensorFlow's kernel cache (the next predict takes ~40 ms instead of ~9) and runs a full garbage
    collection. Our models live for the process (st.cache_resource), so only Matplotlib's figures are closed. (The
    collection Streamlit itself runs after every script run is off: `runner.postScriptGC` in .streamlit/config.toml.)"""
    if "matplotlib.pyplot" in sys.modules:
        try:
            sys.modules["matplotlib.pyplot"].close("all")
        except Exception:  # as Streamlit does: never fail a run over cleanup
            pass


def keep_keras_session() -> bool:
    """Install `clean_problem_modules_but_keras` in Streamlit's script runner (app.py does, at start-up). Returns
    whether it is in place: False if Streamlit no longer has the function, and then the app is only slower
    (tests/test_explorer_runtime.py notices)."""
    if not callable(getattr(script_runner, "_clean_problem_modules", None)):
        return False
    script_runner._clean_problem_modules = clean_problem_modules_but_keras
    return True


def keras_session_kept() -> bool:
    return getattr(script_runner, "_clean_problem_modules", None) is clean_problem_modules_but_keras
