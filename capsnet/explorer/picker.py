"""The active model: the sidebar's model picker (the same on every page), loading the pick, and model uploads."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from capsnet.config import class_names, digits_per_image
from capsnet.data import DataUnavailable
from capsnet.explorer import catalog, resources, state
from capsnet.explorer.catalog import ModelChoice
from capsnet.explorer.navigation import PAGES
from capsnet.explorer.views import no_model_hint
from capsnet.inference import MODEL_SUFFIXES, ModelLoadError, Predictor
from capsnet.sample import TestDigits


@dataclass
class ActiveModel:
    choice: ModelChoice
    predictor: Predictor
    version: float  # the file's mtime, part of every cache key derived from this model

    @property
    def cache_key(self) -> tuple[str, float]:
        return str(self.choice.path), self.version

    @property
    def dataset(self) -> str:
        """What the model was trained on: the test images its pages show are from the same dataset."""
        return self.predictor.net.config.dataset

    @property
    def classes(self) -> tuple[str, ...]:
        """Its classes' names, in label order: "0" … "9", or "T-shirt/top" … "Ankle boot"."""
        return class_names(self.predictor.net.config)


def use_run(run_name: str) -> None:
    """Make a training run the model of every explorer page (the Train page's "use this model" button): the same
    session_state entry the sidebar picker writes, so there is one notion of "the active model"."""
    st.session_state[state.MODEL] = catalog.run_key(run_name)


def chosen_key() -> str | None:
    """The ModelChoice.key picked in this session, if any (it may name a model that is gone by now)."""
    return st.session_state.get(state.MODEL)


def model_picker() -> ModelChoice | None:
    """The sidebar's model selectbox; the choice lives in session_state[MODEL], which survives page switches."""
    choices = catalog.available_models()
    if not choices:
        st.sidebar.info("No trained model yet.")
        return None
    by_key = {choice.key: choice for choice in choices}
    state.from_url([state.MODEL], {state.MODEL: lambda key: key in by_key})  # a link may name the model
    if st.session_state.get(state.MODEL) not in by_key:
        st.session_state[state.MODEL] = choices[0].key
    st.session_state[state.MODEL_PICKER] = st.session_state[state.MODEL]  # before the widget exists: allowed

    def remember() -> None:
        st.session_state[state.MODEL] = st.session_state[state.MODEL_PICKER]

    st.sidebar.selectbox("Model", list(by_key), format_func=lambda key: by_key[key].label, key=state.MODEL_PICKER,
                         on_change=remember, help="Shared by all pages. Upload your own on the Home page.")
    state.to_url([state.MODEL], {state.MODEL: choices[0].key})
    return by_key[st.session_state[state.MODEL]]


def active_model(show_errors: bool = True) -> ActiveModel | None:
    """The picked model, loaded (once per process); None, with the reason shown, if there is none or it is bad."""
    choice = model_picker()
    if choice is None:
        return None
    version = catalog.file_version(choice.path)
    try:
        predictor = resources.load_predictor(str(choice.path), version)
    except ModelLoadError as error:
        if show_errors:
            st.error(f"Cannot load the model: {error}")
        return None
    return ActiveModel(choice, predictor, version)


def require_model(pairs: bool = False) -> ActiveModel:
    """For pages that need a model: stop with a hint (not an error) when there is none. A page of single digits
    (`pairs=False`) also stops, saying where to go, when the model reads pairs of overlapping digits (MultiMNIST)."""
    model = active_model()
    if model is None:
        no_model_hint()
        st.stop()
    if not pairs and digits_per_image(model.dataset) > 1:
        st.info(f"The active model, {model.choice.label}, reads two overlapping digits at a time (36×36 MultiMNIST "
                "images), not one: the Overlap page shows what it sees. Pick a single-digit model in the sidebar "
                "for this page.")
        st.page_link(PAGES["overlap"], label="Overlap: two digits at once", icon=":material/join:")
        st.stop()
    return model


def require_test_images(model: ActiveModel) -> TestDigits:
    """The test images of the model's dataset; where there are none (a model file naming a dataset this version does
    not know), the page stops with the reason."""
    try:
        return resources.test_digits(model.dataset)
    except DataUnavailable as error:
        st.error(f"No test images for this model: {error}")
        st.stop()


def model_uploader() -> None:
    """Home's uploader: a model file becomes the active model once it has loaded; the outcome is shown once."""
    st.file_uploader("Upload a model file", type=[s.lstrip(".") for s in MODEL_SUFFIXES], key=state.MODEL_UPLOAD,
                     on_change=save_model_upload, max_upload_size=catalog.MAX_UPLOAD_MB)
    if message := st.session_state.pop(state.UPLOAD_MESSAGE, None):
        kind, text = message
        (st.error if kind == "error" else st.success)(text)


def save_model_upload() -> None:
    """on_change of Home's model uploader: keep the file and make it the active model."""
    upload = st.session_state.get(state.MODEL_UPLOAD)
    if upload is None:
        return
    try:
        choice = catalog.save_upload(upload.getvalue(), upload.name)
    except ValueError as error:  # not a model file at all: nothing was written
        st.session_state[state.UPLOAD_MESSAGE] = ("error", str(error))
        return
    try:
        predictor = resources.load_predictor(str(choice.path), catalog.file_version(choice.path))  # fail here
    except ModelLoadError as error:  # corrupt, unsafe or another network: not kept, not offered
        catalog.discard_upload(choice)
        # Named as the user named it: the stored copy's path and digest mean nothing to them.
        message = str(error).replace(str(choice.path), upload.name).replace(choice.path.name, upload.name)
        st.session_state[state.UPLOAD_MESSAGE] = ("error", message)
        return
    st.session_state[state.MODEL] = choice.key
    routings = predictor.net.config.routings
    st.session_state[state.UPLOAD_MESSAGE] = (
        "success", f"Loaded {upload.name} ({routings} routing iteration{'s' * (routings != 1)}): "
                   "it is now the active model.")
