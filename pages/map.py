"""Map: every test digit as a point of capsule space (PCA or t-SNE of its digit capsules), coloured by its class;
select points to see them, send one to another page, and see where your last drawing lands."""

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import PAGES, enter_page

enter_page("Map", "🗺️")
st.title("Capsule space")

# After the title: these start TensorFlow.
from capsnet.explorer import mapview, picker, state
from capsnet.projection import KINDS, METHODS

model = mapview.require_capsule_model()
digits = picker.require_test_images(model)
classes = model.classes
total = len(digits.labels)
sizes = sorted({min(mapview.SMALL_MAP, total), total})

st.caption("Each point is one test image, placed by its digit capsules: PCA shows their two main directions as "
           "they are; t-SNE keeps each digit next to those whose capsules are closest, so classes become islands "
           "and the model's confusions show as islands that touch. Crosses are misclassified digits, in the colour "
           "of their true class. Click a point, or drag a box or a lasso around several, to see them.")

SHARED = [state.MAP_PROJECTION, state.MAP_CAPSULES, state.MAP_SIZE, state.MAP_CLASS, state.MAP_SELECTED]
DEFAULTS = {state.MAP_PROJECTION: "pca", state.MAP_CAPSULES: "winning", state.MAP_SIZE: total,
            state.MAP_CLASS: -1, state.MAP_SELECTED: ""}
state.from_url(SHARED, {state.MAP_PROJECTION: lambda v: v in METHODS, state.MAP_CAPSULES: lambda v: v in KINDS,
                        state.MAP_SIZE: lambda v: v in sizes, state.MAP_CLASS: lambda v: 0 <= v < len(classes)})
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)

controls = st.columns([1, 1.6, 1, 1])
method = controls[0].radio("Projection", METHODS, format_func=mapview.METHOD_NAMES.get, key=state.MAP_PROJECTION,
                           horizontal=True)
kind_names = mapview.kind_names(model.predictor.net.config)
kind = controls[1].radio("Capsules", KINDS, format_func=kind_names.get, key=state.MAP_CAPSULES, horizontal=True,
                         help="The winning capsule is the one the decoder reads; all of them also say how much every "
                              "other class was considered.")
size = controls[2].selectbox("Test images", sizes, key=state.MAP_SIZE,
                             format_func=lambda n: f"all {n:,}" if n == total else f"the first {n:,}")
picked = controls[3].selectbox("Pick out a class", range(-1, len(classes)), key=state.MAP_CLASS,
                               format_func=lambda c: "none" if c < 0 else classes[c])
selected = mapview.parse_selected(st.session_state[state.MAP_SELECTED], size)
st.session_state[state.MAP_SELECTED] = ",".join(map(str, selected))
state.to_url(SHARED, DEFAULTS)

space = mapview.space_of(model, size)
requested = st.session_state.setdefault(state.MAP_REQUESTED, set())
if not space.ready() and size > mapview.SMALL_MAP and (model.choice.key, size) not in requested:
    st.info(f"Mapping all {size:,} test images classifies each of them first: about a minute on a CPU (several "
            f"while it trains), once for this model; the map is kept on disk. The first {sizes[0]:,} take seconds.")
    st.button(f"Classify the {size:,} test images", icon=":material/play_arrow:",
              on_click=requested.add, args=((model.choice.key, size),))
    st.stop()
with st.spinner(f"Classifying the {size:,} test images (once for this model)…"):
    predicted, confidence = space.predicted(), space.confidence()
if method == "tsne" and not space.has(method, kind):
    if size > mapview.SMALL_MAP and (model.choice.key, size, kind) not in requested:
        st.info(f"The t-SNE map of {size:,} digits takes a few minutes on a CPU, once for this model (it is kept on "
                "disk); PCA is ready now.")
        st.button("Compute the t-SNE map", icon=":material/play_arrow:",
                  on_click=requested.add, args=((model.choice.key, size, kind),))
        st.stop()
with st.spinner(f"Computing the {mapview.METHOD_NAMES[method]} map of {size:,} digits (once for this model)…"):
    points = mapview.points_of(space, method, kind)

labels = digits.labels[:size]
errors = int(np.sum(predicted != labels))
st.caption(f"{size:,} test images ({digits.source}) · {errors:,} misclassified "
           f"(accuracy {100 * (1 - errors / size):.2f}%)")

drawing = None
if state.DRAWING in st.session_state:
    st.session_state.setdefault(state.MAP_DRAWING, True)
    if st.toggle("Show my last drawing", key=state.MAP_DRAWING, help="The digit last drawn (or uploaded) on the "
                                                                    "Draw page, as a red star."):
        reading = model.predictor.predict(st.session_state[state.DRAWING])
        drawing = (space.place(reading.capsules, method, kind), f"your drawing (read as {classes[reading.digit]})")
        st.caption(f"Your last drawing is read as {classes[reading.digit]} (capsule length "
                   f"{reading.lengths[reading.digit]:.2f}): the red star. "
                   + ("PCA places it exactly." if method == "pca" else
                      "t-SNE cannot place new points, so it sits among its nearest test digits in capsule space "
                      "(among those read as the same class)."))
else:
    st.page_link(PAGES["draw"], label="Draw a digit on the Draw page to see where it lands on this map",
                 icon=":material/draw:")

title = f"{mapview.METHOD_NAMES[method]} of the {kind_names[kind]}"
st.plotly_chart(mapview.map_figure(points, labels, predicted, confidence, digits.indices[:size], classes, title,
                                   None if picked < 0 else picked, selected, drawing),
                key=state.MAP_CHART, on_select=mapview.remember_selection, selection_mode=("points", "box", "lasso"),
                config={"displaylogo": False})

if not selected:
    st.info("Click a point, or drag a box (or a lasso) around several, to see their images and reconstructions "
            "here.")
    st.stop()
st.subheader("Selected digits")
shown = f" (the first {mapview.MAX_SHOWN} shown)" if len(selected) > mapview.MAX_SHOWN else ""
st.caption(st.session_state.get(state.MAP_SELECTION_NOTE, "")
           + mapview.describe_selection(selected, labels, predicted, classes) + shown
           + ". Each image above its reconstruction from the winning capsule.")
st.button("Clear the selection", on_click=mapview.clear_selection, icon=":material/close:")
mapview.show_selected(model, digits, selected, predicted)
mapview.send_buttons(model, digits, selected, predicted)
