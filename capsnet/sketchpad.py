"""A drawing pad for the Draw page: white ink on black, like MNIST, with Undo and Clear.

A Streamlit custom component (components v2: inline HTML, CSS and JavaScript, no build step). It replaces
streamlit-drawable-canvas, whose frontend waits a fixed 200 ms after every stroke before telling the server; this
one sends the drawing the moment the pointer is lifted, which is most of the stroke-to-prediction latency.

The state it reports is `{"png": data URL or None, "strokes": [[x, y, x, y, ...], ...]}`: the pixels feed the same
preprocessing as an uploaded image (`capsnet.preprocess.from_canvas`), and the strokes let the pad redraw itself
when the page is visited again.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

SIZE = 280  # pixels a side: 10x MNIST, so a finger or mouse stroke is about as thick as a pen stroke in MNIST
INK_WIDTH = 18

_HTML = f"""
<div class="pad">
  <canvas width="{SIZE}" height="{SIZE}" aria-label="drawing pad"></canvas>
  <div class="tools">
    <button type="button" data-action="undo" title="Undo the last stroke">Undo</button>
    <button type="button" data-action="clear" title="Clear the pad">Clear</button>
  </div>
</div>
"""

_CSS = f"""
.pad {{ display: inline-flex; flex-direction: column; gap: 0.5rem; }}
canvas {{ width: {SIZE}px; height: {SIZE}px; background: #000; border-radius: 0.5rem; cursor: crosshair;
          touch-action: none; outline: 1px solid var(--st-border-color, #888); }}
.tools {{ display: flex; gap: 0.5rem; }}
button {{ font: inherit; padding: 0.25rem 0.9rem; border-radius: 0.5rem; cursor: pointer;
          color: var(--st-text-color); background: var(--st-secondary-background-color);
          border: 1px solid var(--st-border-color, #888); }}
button:hover {{ border-color: var(--st-primary-color); color: var(--st-primary-color); }}
"""

# Idempotent: Streamlit may call the function again on the same DOM (every rerun sends the component), even in the
# middle of a stroke, so the strokes, finished and current, live on the canvas element and handlers are assigned, not
# added. A fresh canvas (a new visit to the page) starts from the strokes Python hands back in `data`.
_JS = f"""
export default function ({{ parentElement, data, setStateValue }}) {{
  const canvas = parentElement.querySelector("canvas");
  const pen = canvas.getContext("2d");
  if (!canvas.strokes) {{
    canvas.strokes = (data && data.strokes) || [];
    canvas.current = null;
    redraw();
  }}

  function line(points) {{
    pen.beginPath();
    pen.moveTo(points[0], points[1]);
    for (let i = 2; i < points.length; i += 2) pen.lineTo(points[i], points[i + 1]);
    if (points.length === 2) pen.lineTo(points[0] + 0.01, points[1]);  // a click leaves a dot
    pen.stroke();
  }}
  function redraw() {{
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, {SIZE}, {SIZE});
    Object.assign(pen, {{ strokeStyle: "#fff", lineWidth: {INK_WIDTH}, lineCap: "round", lineJoin: "round" }});
    canvas.strokes.forEach(line);
  }}
  function report() {{
    const empty = canvas.strokes.length === 0;
    setStateValue("drawing", {{ png: empty ? null : canvas.toDataURL("image/png"), strokes: canvas.strokes }});
  }}
  function at(event) {{
    const box = canvas.getBoundingClientRect();
    return [Math.round((event.clientX - box.left) * {SIZE} / box.width),
            Math.round((event.clientY - box.top) * {SIZE} / box.height)];
  }}

  canvas.onpointerdown = (event) => {{
    canvas.setPointerCapture(event.pointerId);
    canvas.current = at(event);
    canvas.strokes.push(canvas.current);
    line(canvas.current);
  }};
  canvas.onpointermove = (event) => {{
    const current = canvas.current;
    if (!current) return;
    const [x, y] = at(event);
    pen.beginPath();
    pen.moveTo(current[current.length - 2], current[current.length - 1]);
    pen.lineTo(x, y);
    pen.stroke();
    current.push(x, y);
  }};
  canvas.onpointerup = canvas.onpointercancel = () => {{
    if (!canvas.current) return;
    canvas.current = null;
    report();
  }};
  parentElement.querySelector('[data-action="undo"]').onclick = () => {{
    if (!canvas.strokes.length) return;
    canvas.strokes.pop();
    redraw();
    report();
  }};
  parentElement.querySelector('[data-action="clear"]').onclick = () => {{
    if (!canvas.strokes.length) return;
    canvas.strokes = [];
    redraw();
    report();
  }};
}}
"""

_sketchpad = st.components.v2.component("capsnet.sketchpad", html=_HTML, css=_CSS, js=_JS)


def sketchpad(key: str) -> np.ndarray | None:
    """Show the pad; return what is drawn on it as [280, 280, 4] uint8 RGBA pixels, or None while it is empty."""
    # Streamlit drops a widget's state when the user visits another page. The last drawing, kept under a key of its
    # own, is the state's default: back on the page, the pad redraws its strokes and the drawing is still there.
    saved_key = f"{key}.saved"
    saved = st.session_state.get(saved_key)
    result = _sketchpad(key=key, data={"strokes": (saved or {}).get("strokes", [])}, default={"drawing": saved},
                        on_drawing_change=lambda: None, width="content")
    st.session_state[saved_key] = result.drawing
    return decode_drawing(result.drawing)


def decode_drawing(drawing: dict[str, Any] | None) -> np.ndarray | None:
    """The pixels of a drawing the pad reported (a PNG data URL), or None for an empty pad."""
    url = (drawing or {}).get("png")
    if not url:
        return None
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
