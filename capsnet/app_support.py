"""Everything the explorer's pages share: session keys, cached models and data, the model picker, figures.

Pages import this module first. It brings in pandas, Plotly and TensorFlow at import time, on purpose: importing
them lazily, inside a fragment's rerun, raced with other reruns in our trials. It also caps TensorFlow's thread pools
before TensorFlow starts, because one Streamlit process serves every browser session (and may share the machine
with a training run): single-image inference gains nothing from more than a few threads, and contention hurts it.
"""

from __future__ import annotations

import base64
import gc
import os
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd  # noqa: F401  -- imported up front, see the docstring
import plotly.graph_objects as go
import streamlit as st
import tensorflow as tf

from capsnet import catalog
from capsnet.catalog import ModelChoice
from capsnet.evaluate import accuracy_report, manipulation_grid, png_bytes, predict_all
from capsnet.inference import ModelLoadError, Predictor, load_capsnet
from capsnet.navigation import PAGES  # noqa: F401  -- pages and tests use it as ui.PAGES
from capsnet.sample import TestDigits, load_test_digits


def configure_threads() -> None:
    """At most 4 threads per op ($CAPSNET_TF_THREADS overrides); a no-op once TensorFlow is running."""
    threads = int(os.environ.get("CAPSNET_TF_THREADS", "0")) or min(4, os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:  # already initialised (a test process that built a model first): keep its settings
        pass


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight. Streamlit runs a full collection after each
    script run; over TensorFlow + Keras + a loaded model (~450k objects) that takes ~250 ms -- on every slider move.
    Frozen, it scans only what the run itself allocated (~1 ms). Called after imports and after each model load."""
    gc.collect()
    gc.freeze()


def keep_keras_session() -> None:
    """Streamlit calls `keras.backend.clear_session()` after every script run (in `_clean_problem_modules`, for apps
    that build models in the script). That empties TensorFlow's kernel cache -- the next predict takes ~40 ms instead
    of ~9 -- and forces another full garbage collection. Our models live for the process (st.cache_resource), so this
    replaces that cleanup with the rest of it (closing Matplotlib figures). Guarded: if Streamlit moves the function,
    nothing is patched and the app is only slower."""
    from streamlit.runtime.scriptrunner import script_runner

    if not callable(getattr(script_runner, "_clean_problem_modules", None)):
        return

    def clean_problem_modules_but_keras() -> None:
        if "matplotlib.pyplot" in sys.modules:
            try:
                sys.modules["matplotlib.pyplot"].close("all")
            except Exception:  # as Streamlit does: never fail a run over cleanup
                pass

    script_runner._clean_problem_modules = clean_problem_modules_but_keras


configure_threads()
keep_keras_session()
freeze_heap()

# session_state keys, one place for all pages ----------------------------------------------------------------------
MODEL = "model.choice"  # the chosen ModelChoice.key; survives page switches (widget state does not)
MODEL_PICKER = "model.picker"  # the sidebar selectbox, re-synced from MODEL on every page
WEIGHTS_UPLOAD = "model.upload"  # Home's .weights.h5 uploader
UPLOAD_MESSAGE = "model.upload_message"  # the outcome of the last weights upload, shown once
CANVAS = "draw.canvas"  # the sketchpad: {"drawing": {"png": data URL, "strokes": [...]}}; also kept under
#                         CANVAS + ".saved", so the drawing survives a page switch (see capsnet.sketchpad)
IMAGE_UPLOAD = "draw.upload"  # Draw's image uploader
DRAWING = "draw.image"  # the last preprocessed 28x28 input from the Draw page, for the Latent page
LATENT_PICK = "latent.pick"  # a test-digit position sent from the Reconstruct page, consumed by Latent
LATENT_SOURCE = "latent.source"  # "Test image" or "Last drawing"
LATENT_CLASS = "latent.class"
LATENT_POSITION = "latent.position"  # which test image of that class, counting from 0
LATENT_ABSOLUTE = "latent.absolute"  # sliders hold absolute capsule values instead of offsets
LATENT_GENERATION = "latent.generation"  # bumped on reset / new digit: slider keys change, so they start afresh

DISPLAY_SCALE = 8  # 28 px digits are shown at 224 px


@dataclass
class ActiveModel:
    choice: ModelChoice
    predictor: Predictor
    version: float  # weights file mtime, part of every cache key derived from this model

    @property
    def cache_key(self) -> tuple[str, float]:
        return str(self.choice.weights), self.version


def use_run(run_name: str) -> None:
    """Make a training run the model of every explorer page (the Train page's "use this model" button): the same
    session_state entry the sidebar picker writes, so there is one notion of "the active model"."""
    st.session_state[MODEL] = catalog.run_key(run_name)


def chosen_key() -> str | None:
    """The ModelChoice.key picked in this session, if any (it may name a model that is gone by now)."""
    return st.session_state.get(MODEL)


# cached resources: one copy per process, shared by all sessions ---------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_predictor(weights: str, version: float) -> Predictor:
    """The one model-loading path (`load_capsnet`), warmed up so that the first interaction is not the slow one.
    `version` (the file's mtime) is only a cache key: a file rewritten in place is loaded again."""
    predictor = Predictor(load_capsnet(weights))
    warm = predictor.predict(np.zeros((28, 28), np.float32))
    predictor.decode(warm.capsules, warm.digit)  # traces the decoder's tf.function too
    predictor.couplings(np.zeros((28, 28), np.float32))  # and the routing one (Draw's "how the capsules routed")
    freeze_heap()  # the model's objects are here to stay
    return predictor


@st.cache_resource(show_spinner="Loading the test digits…")
def test_digits() -> TestDigits:
    return load_test_digits()


@dataclass
class Evaluation:
    lengths: np.ndarray  # [n, 10]
    reconstructions: np.ndarray  # [n, 28, 28]
    capsules: np.ndarray  # [n, 10, 16]
    report: dict  # capsnet.evaluate.accuracy_report over the first n test digits

    @property
    def predicted(self) -> np.ndarray:
        return np.argmax(self.lengths, axis=1)


@st.cache_resource(max_entries=6, show_spinner="Classifying the test digits…")
def evaluate(weights: str, version: float, count: int) -> Evaluation:
    """Batch predictions for the first `count` test digits (read-only arrays: cache_resource does not copy)."""
    digits = test_digits()
    predictor = load_predictor(weights, version)
    lengths, reconstructions, capsules = predict_all(predictor.net, digits.images[:count])
    return Evaluation(lengths, reconstructions, capsules, accuracy_report(lengths, digits.labels[:count]))


@st.cache_data(max_entries=64, show_spinner=False)
def manipulation(weights: str, version: float, capsules: bytes, digit: int) -> tuple[np.ndarray, bytes]:
    """The 16x11 manipulation grid of capsule `digit` (`capsules`: the [10, 16] float32 array's bytes) and its PNG."""
    net = load_predictor(weights, version).net
    grid = manipulation_grid(net, np.frombuffer(capsules, np.float32).reshape(net.config.num_classes, -1), digit)
    return grid, png_bytes(grid, scale=2)


# the model picker ---------------------------------------------------------------------------------------------------
def model_picker() -> ModelChoice | None:
    """The sidebar's model selectbox, the same on every page; the choice lives in session_state[MODEL]."""
    choices = catalog.available_models()
    if not choices:
        st.sidebar.info("No trained model yet.")
        return None
    by_key = {choice.key: choice for choice in choices}
    if st.session_state.get(MODEL) not in by_key:
        st.session_state[MODEL] = choices[0].key
    st.session_state[MODEL_PICKER] = st.session_state[MODEL]  # before the widget exists: allowed, and no warning

    def remember() -> None:
        st.session_state[MODEL] = st.session_state[MODEL_PICKER]

    st.sidebar.selectbox("Model", list(by_key), format_func=lambda key: by_key[key].label, key=MODEL_PICKER,
                         on_change=remember, help="Shared by all pages. Upload your own on the Home page.")
    return by_key[st.session_state[MODEL]]


def active_model(show_errors: bool = True) -> ActiveModel | None:
    """The picked model, loaded (once per process); None, with the reason shown, if there is none or it is bad."""
    choice = model_picker()
    if choice is None:
        return None
    version = catalog.weights_version(choice.weights)
    try:
        predictor = load_predictor(str(choice.weights), version)
    except ModelLoadError as error:
        if show_errors:
            st.error(f"Cannot load the model: {error}")
        return None
    return ActiveModel(choice, predictor, version)


def require_model() -> ActiveModel:
    """For pages that need a model: stop with a hint (not an error) when there is none."""
    model = active_model()
    if model is None:
        no_model_hint()
        st.stop()
    return model


def no_model_hint() -> None:
    st.info("There is no usable model to explore yet: pick or upload one on the Home page, or train one.")
    st.page_link(PAGES["home"], label="Home: choose a model", icon=":material/home:")
    train_link()


def train_link() -> None:
    st.page_link(PAGES["train"], label="Train a model", icon=":material/model_training:")


def save_weights_upload() -> None:
    """on_change of Home's weights uploader: keep the file and make it the active model."""
    upload = st.session_state.get(WEIGHTS_UPLOAD)
    if upload is None:
        return
    try:
        choice = catalog.save_uploaded_weights(upload.getvalue(), upload.name)
        load_predictor(str(choice.weights), catalog.weights_version(choice.weights))  # fail here, not on a page
    except (ValueError, ModelLoadError) as error:
        st.session_state[UPLOAD_MESSAGE] = ("error", str(error))
        return
    st.session_state[MODEL] = choice.key
    st.session_state[UPLOAD_MESSAGE] = ("success", f"Loaded {upload.name}: it is now the active model.")


# display helpers -------------------------------------------------------------------------------------------------
def show_digit(image: np.ndarray, caption: str | None = None, scale: int = DISPLAY_SCALE, where=st,
               alt: str | None = None) -> None:
    """A 28x28 image, enlarged with hard pixel edges. It travels inline, as a PNG data URL inside the page update:
    a media-file URL would cost the browser one more request to the server per image, per slider move. `alt`
    names it for screen readers and for the browser tests."""
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image, scale)).decode("ascii")
    where.image(url, caption=caption, alt=alt or caption)


def lengths_figure(lengths: np.ndarray, highlight: int | None = None) -> go.Figure:
    """All capsule lengths as bars: the network's confidence in each class (lengths are in [0, 1])."""
    colors = ["#ff4b4b" if digit == highlight else "#7aa6d6" for digit in range(len(lengths))]
    figure = go.Figure(go.Bar(x=[str(d) for d in range(len(lengths))], y=lengths, marker_color=colors,
                              hovertemplate="capsule %{x}: length %{y:.3f}<extra></extra>"))
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Capsule lengths",
                         yaxis=dict(range=[0, 1]), xaxis=dict(title="class", type="category"))
    return figure


def coupling_figure(coupling: np.ndarray, title: str, zmin: float = 0.0, zmax: float = 1.0) -> go.Figure:
    """One routing round's [6, 6] mean coupling to the winning capsule, as a heatmap laid out like the image (row 0 at
    the top). Give every round the same `zmin`/`zmax` so that rounds can be compared by eye; mean couplings stay close
    to 0.1, so a scale from 0 to 1 would show every round as one flat colour."""
    rows, cols = coupling.shape
    figure = go.Figure(go.Heatmap(z=coupling, x=list(range(cols)), y=list(range(rows)), colorscale="Blues",
                                  zmin=zmin, zmax=max(zmax, zmin + 1e-3), showscale=False, texttemplate="%{z:.2f}",
                                  hovertemplate="row %{y}, column %{x}: mean coupling %{z:.3f}<extra></extra>"))
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title=title,
                         xaxis=dict(visible=False), yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))
    return figure


def confusion_figure(confusion: list[list[int]]) -> go.Figure:
    matrix = np.asarray(confusion)
    figure = go.Figure(go.Heatmap(z=matrix, x=[str(d) for d in range(len(matrix))],
                                  y=[str(d) for d in range(len(matrix))], colorscale="Blues", showscale=False,
                                  text=matrix, texttemplate="%{text}",
                                  hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    figure.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix",
                         xaxis=dict(title="predicted", type="category"),
                         yaxis=dict(title="true", type="category", autorange="reversed"))
    return figure
