"""Reconstruct: test digits above their reconstructions, test accuracy and the confusion matrix of the active model."""

import numpy as np
import pandas as pd
import streamlit as st

from capsnet.explorer.navigation import PAGES, enter_page

enter_page("Reconstruct", "🔁")
st.title("Real vs. reconstructed")

# After the title: these start TensorFlow.
from capsnet.explorer import figures, picker, resources, state, views
from capsnet.explorer.explore import choose_examples
from capsnet.imaging import real_over_reconstruction

model = picker.require_model()
digits = picker.require_test_images(model)
classes = model.classes
COLUMNS = 10

SHARED = [state.RECONSTRUCT_SIZE, state.RECONSTRUCT_COUNT, state.RECONSTRUCT_CLASS, state.RECONSTRUCT_WRONG,
          state.RECONSTRUCT_SHUFFLE, state.RECONSTRUCT_SEED]
sizes = sorted({min(1000, len(digits.labels)), len(digits.labels)})
DEFAULTS = {state.RECONSTRUCT_SIZE: sizes[0], state.RECONSTRUCT_COUNT: 20, state.RECONSTRUCT_CLASS: None,
            state.RECONSTRUCT_WRONG: False, state.RECONSTRUCT_SHUFFLE: False, state.RECONSTRUCT_SEED: 0}
state.from_url(SHARED, {state.RECONSTRUCT_SIZE: lambda v: v in sizes,
                        state.RECONSTRUCT_COUNT: lambda v: 10 <= v <= 100,
                        state.RECONSTRUCT_CLASS: lambda v: 0 <= v < len(classes),
                        state.RECONSTRUCT_SEED: lambda v: v >= 0})
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)

with st.sidebar:
    st.header("Test images")
    size = st.selectbox("Evaluate on", sizes, format_func=lambda n: f"the first {n:,} test images",
                        key=state.RECONSTRUCT_SIZE, help="The whole test set takes about a minute on a CPU.")
    count = st.slider("Images shown", 10, 100, step=10, key=state.RECONSTRUCT_COUNT)
    digit = st.selectbox("Class", [None, *range(len(classes))],
                         format_func=lambda d: "all" if d is None else classes[d],
                         key=state.RECONSTRUCT_CLASS)
    wrong_only = st.toggle("Misclassified only", key=state.RECONSTRUCT_WRONG)
    shuffle = st.toggle("Random draw", key=state.RECONSTRUCT_SHUFFLE, help="Off: the first matching test images.")
    seed = st.number_input("Seed", 0, 2**31 - 1, key=state.RECONSTRUCT_SEED, disabled=not shuffle,
                           help="The same seed draws the same images.")
state.to_url(SHARED, DEFAULTS)

evaluation = resources.evaluate(*model.cache_key, size)
report = evaluation.report
labels = digits.labels[:size]

summary, matrix = st.columns([1, 1.2], gap="large")
with summary:
    st.metric(f"Test accuracy on {report['count']:,} images", f"{100 * report['accuracy']:.2f}%",
              help=f"{report['errors']} misclassified; test images from {digits.source}.")
    accuracy = np.round(100 * np.array(report["per_class_accuracy"]), 2)
    st.dataframe(pd.DataFrame({"class": classes, "accuracy %": accuracy}), hide_index=True, height=390)
with matrix:
    st.plotly_chart(figures.confusion_figure(report["confusion"], classes), config={"displayModeBar": False})

positions = choose_examples(labels, evaluation.predicted, count, seed=int(seed) if shuffle else None, digit=digit,
                            misclassified=wrong_only)
st.subheader("Each test image above its reconstruction")
if len(positions) == 0:
    st.info("No test image matches these filters" + (" (this model gets them all right)." if wrong_only else "."))


def send_to_latent(position: int) -> None:
    st.session_state[state.LATENT_PICK] = int(position)


for start in range(0, len(positions), COLUMNS):
    for column, position in zip(st.columns(COLUMNS), positions[start:start + COLUMNS], strict=False):
        label, predicted = int(labels[position]), int(evaluation.predicted[position])
        mark = "" if label == predicted else " ✗"
        strip = real_over_reconstruction(digits.images[position], evaluation.reconstructions[position], gap=1)
        views.show_digit(strip, f"#{digits.indices[position]}: {classes[label]}→{classes[predicted]}{mark}", scale=3,
                         where=column)
        if column.button("Latent", key=state.reconstruct_send(position), help="Explore this digit's capsule",
                         on_click=send_to_latent, args=(position,)):
            st.switch_page(PAGES["latent"])
