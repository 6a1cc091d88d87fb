"""Small display pieces the pages share: digits as crisp enlarged images, and links to other pages."""

from __future__ import annotations

import base64

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import PAGES
from capsnet.imaging import png_bytes
from capsnet.preprocess import Stages

DISPLAY_SCALE = 8  # 28 px digits are shown at 224 px


def show_digit(image: np.ndarray, caption: str | None = None, scale: int = DISPLAY_SCALE, where=st,
               alt: str | None = None) -> None:
    """A 28x28 image, enlarged with hard pixel edges. It travels inline, as a PNG data URL inside the page update:
    a media-file URL would cost the browser one more request to the server per image, per slider move. `alt`
    names it for screen readers and for the browser tests."""
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image, scale)).decode("ascii")
    where.image(url, caption=caption, alt=alt or caption)


def show_stages(stages: Stages, where=st) -> None:
    """What the preprocessing made of an input, side by side: the image as found (downscaled, grayscale) and the ink
    it kept as the digit, so that a user sees why a photo was misread."""
    found, kept = where.columns(2)
    show_digit(stages.found, "as found", scale=1, where=found, alt="input as found")
    show_digit(stages.ink, "ink kept as the digit", scale=1, where=kept, alt="ink kept as the digit")


def no_model_hint() -> None:
    st.info("There is no usable model to explore yet: pick or upload one on the Home page, or train one.")
    st.page_link(PAGES["home"], label="Home: choose a model", icon=":material/home:")
    train_link()


def train_link() -> None:
    st.page_link(PAGES["train"], label="Train a model", icon=":material/model_training:")


def pick_test_digit(digits, classes: tuple[str, ...], class_key: str, position_key: str, class_column,
                    position_column) -> int:
    """A class (shown by its name), then an example of it among the test images: the chosen image's index in
    `digits`. A position left from another class (or a link) that this class does not have falls back to its first
    example."""
    label = class_column.selectbox("Class", range(len(classes)), format_func=classes.__getitem__, key=class_key)
    of_class = np.flatnonzero(digits.labels == label)
    if st.session_state.get(position_key, 0) >= len(of_class):
        st.session_state[position_key] = 0
    position = position_column.number_input(f"Example (of {len(of_class)})", 0, len(of_class) - 1, key=position_key)
    return int(of_class[position])


def test_digit_caption(digits, index: int, classes: tuple[str, ...]) -> str:
    return f"test image #{digits.indices[index]}: {classes[digits.labels[index]]}"


def variant_table() -> None:
    """The routing x reconstruction table (capsnet.variants): what has been measured here beside the reference's and
    the paper's figures."""
    from capsnet.variants import results

    rows = [result.row() for result in results()]
    st.dataframe(rows, hide_index=True)
    st.caption("MNIST test error in %. After 15 epochs: each run's validation error at its epoch 15 (all 10,000 test "
               "images); after 50: its card's test error at float32. At 1 / 3 routings: the same weights re-routed "
               "at inference, after the epochs trained. CapsNet-Keras and the paper: the mean of 3 trials after 50 "
               "epochs (or more, in the paper). The Train page's presets start these runs.")
