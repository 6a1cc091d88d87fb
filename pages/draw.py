"""Draw: a digit from the canvas or an image file -> the 28x28 input, every capsule's length, the reconstruction."""

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import PAGES, enter_page

enter_page("Draw", "✏️")
st.title("Draw a digit")

# After the title: these start TensorFlow.
from capsnet.explorer import figures, picker, state, views
from capsnet.explorer.canvas import drawing_canvas
from capsnet.explorer.explore import coupling_map
from capsnet.preprocess import (
    IMAGE_TYPES,
    MAX_UPLOAD_MB,
    PreprocessError,
    Stages,
    UnreadableImage,
    canvas_stages,
    upload_stages,
)

model = picker.require_model()
if model.dataset != "mnist":
    st.info(f"The active model classifies {', '.join(model.classes)}, but this page's preprocessing looks for a "
            "handwritten digit: a drawn outline may work, a photo of clothes is likely refused. The Routing, "
            "Reconstruct and Latent pages show this model on its own test images.")


def read_input() -> tuple[Stages | None, str | None]:
    """The canvas and the uploader; an uploaded image, while there is one, wins. Returns what the preprocessing made
    of it (None if there is no input) and what went wrong, if anything, as one line for the user."""
    pixels = drawing_canvas()
    st.caption("White ink on black, like MNIST: draw one digit, large, in the middle. The canvas' toolbar undoes "
               "and redoes strokes; Clear starts again.")
    upload = st.file_uploader("…or upload a photo or scan of a digit", type=IMAGE_TYPES, key=state.IMAGE_UPLOAD,
                              max_upload_size=MAX_UPLOAD_MB)
    if upload is not None:
        st.caption("Using the uploaded image: remove it (×) to draw again.")
        try:
            return upload_stages(upload.getvalue()), None
        except UnreadableImage as error:
            return None, f"Could not read {upload.name}: {error}."
        except PreprocessError as error:
            return None, f"No digit found in {upload.name}: {error}."
    if pixels is None:
        return None, None
    try:
        return canvas_stages(pixels), None
    except PreprocessError as error:
        return None, f"No digit on the canvas: {error}."


# Canvas, uploader and results rerun together, and alone: a stroke does not rerun the sidebar or the page around it.
@st.fragment
def draw_and_predict(model: picker.ActiveModel) -> None:
    left, right = st.columns([1, 1.4], gap="large")
    with left:
        stages, problem = read_input()
        if stages is not None:
            st.caption(f"{stages.explanation} As found, and the ink kept as the digit (then cropped, scaled to "
                       "20 px and centred: what the model sees, on the right).")
            views.show_stages(stages)
    with right:
        if problem:
            st.warning(problem)
        if stages is None:
            if not problem:
                st.info("Draw a digit on the canvas (or upload an image) to see what the capsules make of it.")
            return
        image = stages.image
        prediction = model.predictor.predict(image)
        st.session_state[state.DRAWING] = image  # the Latent page can start from this drawing
        digit = prediction.digit
        classes = model.classes
        st.markdown(f"## Prediction: {classes[digit]}")
        st.caption(f"capsule length {prediction.lengths[digit]:.3f} (a capsule's length is its probability)")
        columns = st.columns(3)
        side = len(image)
        views.show_digit(image, f"what the model sees ({side}×{side})", scale=5, where=columns[0], alt="model input")
        views.show_digit(prediction.reconstruction, f"reconstruction from capsule {classes[digit]}", scale=5,
                         where=columns[1], alt="reconstruction")
        other = st.segmented_control("Reconstruct as another class", list(range(len(classes))), key=state.AS_CLASS,
                                     format_func=classes.__getitem__,
                                     help="Decode the same capsules as if that class had won.")
        if other is not None:
            views.show_digit(model.predictor.decode(prediction.capsules, other), f"as {classes[other]}", scale=5,
                             where=columns[2], alt="reconstruction as another class")
        st.plotly_chart(figures.lengths_figure(prediction.lengths, highlight=digit, classes=classes),
                        config={"displayModeBar": False})
        st.page_link(PAGES["map"], label="See where it lands among all the test digits (Map)",
                     icon=":material/scatter_plot:")
        show_routing(model, image, digit)


def show_routing(model: picker.ActiveModel, image: np.ndarray, digit: int) -> None:
    # An expander's body runs even when collapsed; the routing pass is one compiled forward pass, cheaper than
    # keeping the expander's own open/closed state. Collapsed, it keeps the page short.
    with st.expander("How the capsules routed"):
        config = model.predictor.net.config
        st.caption(f"Each square is one of the {config.primary_grid}×{config.primary_grid} positions of the primary "
                   f"capsules; its value is how much of their output goes to capsule {model.classes[digit]}, "
                   f"averaged over the {config.primary_channels} capsule types. Round 1 is uniform "
                   f"({1 / config.num_classes:.2g}: every capsule splits its output evenly over the "
                   f"{config.num_classes} classes); later rounds concentrate where the lower capsules' predictions "
                   "agree with the winner.")
        maps = coupling_map(model.predictor.couplings(image), digit, config)
        for round_, column in enumerate(st.columns(len(maps))):  # one colour scale for all rounds: comparable
            figure = figures.coupling_figure(maps[round_], f"Round {round_ + 1}", float(maps.min()),
                                             float(maps.max()))
            column.plotly_chart(figure, config={"displayModeBar": False})


draw_and_predict(model)
