"""Overlap: two overlapping digits, named and pulled apart by a CapsNet trained on MultiMNIST (paper, section 6)."""

import streamlit as st

from capsnet.explorer.navigation import enter_page

enter_page("Overlap", "🔶")
st.title("Two digits at once")

# After the title: these start TensorFlow.
from capsnet.evaluate import MANIPULATION_OFFSETS
from capsnet.explorer import figures, overlap, picker, state, views

model = picker.require_model(pairs=True)
if not overlap.reads_pairs(model):
    overlap.needs_pair_model(model)
    st.stop()
digits = picker.require_test_images(model)
classes = model.classes

st.caption("Two digits of different classes, each shifted by up to 4 pixels, drawn over each other in a 36×36 frame "
           "— their boxes overlap by about 80%. The network names both (its two longest capsules) and redraws each "
           "from its own capsule alone: red from the longest, green from the second (yellow where both draw).")

pair = overlap.choose_pair(digits, classes)
if pair is None:
    st.stop()
reading = overlap.read_pair(model.predictor, pair.image)

left, middle, right = st.columns([1, 1, 1.4])
views.show_digit(pair.image, pair.caption, scale=overlap.DISPLAY_SCALE, where=left, alt="the overlaid digits")
views.show_digit(overlap.figure5(pair.image, reading), "reconstructions over the input (red, green)",
                 scale=overlap.DISPLAY_SCALE, where=middle, alt="both reconstructions")
right.plotly_chart(figures.lengths_figure(reading.lengths, reading.top, classes, overlap.COLOURS),
                   key="overlap.lengths")
right.markdown(overlap.verdict(reading, pair, classes))

singles = st.columns(4)
for k in range(2):
    views.show_digit(overlap.coloured(reading.reconstructions[k], k),
                     f"capsule {classes[reading.top[k]]} alone", scale=overlap.SMALL_SCALE, where=singles[k],
                     alt=f"reconstruction {k + 1}")
as_class = singles[2].selectbox("Reconstruct as class", range(len(classes)), format_func=classes.__getitem__,
                                key=state.OVERLAP_AS_CLASS,
                                help="Decode any capsule, not only the two longest: what the network would draw if "
                                     "that class were present.")
views.show_digit(model.predictor.decode(reading.capsules, as_class), f"from capsule {classes[as_class]}",
                 scale=overlap.SMALL_SCALE, where=singles[3], alt="reconstruction as chosen class")

st.subheader("Inside either capsule")
edited_index, offsets = overlap.capsule_sliders(reading, pair.identity, classes, MANIPULATION_OFFSETS)
edited = reading.capsules.copy()
edited[reading.top[edited_index]] += offsets
views.show_digit(overlap.figure5(pair.image, reading, replace={edited_index: model.predictor.decode(
    edited, int(reading.top[edited_index]))}), "with the edited capsule", scale=overlap.DISPLAY_SCALE,
    alt="edited reconstruction")

overlap.keep_in_url()
