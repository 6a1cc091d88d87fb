"""The Draw page's canvas: `streamlit-drawable-canvas` set up like MNIST (white ink on black, strokes about as
thick as MNIST's at 10x scale), and kept across page switches.

Streamlit drops a widget's state when the user visits another page. The last drawing (Fabric.js JSON for the
strokes, pixels for the model) is kept under a key of its own; when the canvas is mounted again it starts from those
strokes. `initial_drawing` must then stay the same for the whole visit: the canvas reloads, and forgets its undo
history, whenever it changes. The canvas' own "Reset" goes back to the drawing it was mounted with, so a Clear
button starts a new, empty canvas (under a new key) whatever came before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from capsnet.explorer import state

SIZE = 280  # pixels a side: 10x MNIST
INK_WIDTH = 18  # MNIST's strokes are 1.5-2.5 px wide at 28 px


def drawing_canvas() -> np.ndarray | None:
    """Show the canvas; return what is drawn on it as [280, 280, 4] uint8 RGBA pixels, or None while it is empty."""
    saved: dict[str, Any] = st.session_state.get(state.CANVAS_SAVED) or {}
    key = canvas_key()
    if key not in st.session_state:  # mounted afresh: start from the last drawing
        st.session_state[state.CANVAS_INITIAL] = saved.get("strokes")
    result = st_canvas(stroke_width=INK_WIDTH, stroke_color="#ffffff", background_color="#000000", width=SIZE,
                       height=SIZE, drawing_mode="freedraw", initial_drawing=st.session_state[state.CANVAS_INITIAL],
                       return_image_data=True, key=key)
    strokes = result.json_data
    drawn = bool(strokes and strokes.get("objects"))
    pixels = result.image_data
    if pixels is None and drawn and strokes == st.session_state[state.CANVAS_INITIAL]:
        pixels = saved.get("pixels")  # the restored strokes: the canvas sends pixels only once they change
    st.session_state[state.CANVAS_SAVED] = {"strokes": strokes, "pixels": pixels}
    st.button("Clear", on_click=clear, icon=":material/delete:", help="Start again from an empty canvas.")
    return pixels if drawn else None


def canvas_key() -> str:
    return f"{state.CANVAS}.{st.session_state.get(state.CANVAS_GENERATION, 0)}"


def clear() -> None:
    """Forget the drawing; the next run mounts a new canvas, empty."""
    st.session_state.pop(state.CANVAS_SAVED, None)
    st.session_state[state.CANVAS_GENERATION] = st.session_state.get(state.CANVAS_GENERATION, 0) + 1
