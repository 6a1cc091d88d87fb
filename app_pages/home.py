"""Home: what a capsule network is, the active model's card and the model picker (shared by all pages)."""

import streamlit as st

st.title("CapsNet Explorer")
st.markdown(
    """
A **capsule network** (Sabour, Frosst & Hinton, 2017) replaces the single numbers a neural network passes between
layers with small *vectors*, called capsules. Each of the 10 digit capsules is a 16-number vector: its **length**
says how sure the network is that its digit is present, and its **direction** encodes how the digit looks
(thickness, slant, width, ...). Lower capsules send their output to the digit capsules they agree with most,
through *dynamic routing*. A decoder rebuilds the image from the winning capsule alone, so you can watch what each
of the 16 numbers means.
"""
)

# Only now the heavy imports (TensorFlow, ~2.5 s on a fresh server): the title and the introduction are on screen.
with st.spinner("Starting TensorFlow…"):
    from capsnet import app_support as ui
    from capsnet.catalog import model_card

model = ui.active_model()

st.header("Active model")
if model is None:
    if not ui.catalog.available_models():
        st.warning("No trained model exists yet: there is no shipped pretrained model and no finished training run.")
        ui.train_link()
else:
    card = model_card(model.choice)
    accuracy = card.get("test_accuracy")
    columns = st.columns(4)
    columns[0].metric("Source", model.choice.source)
    columns[1].metric("Routing iterations", card.get("routings") or "?")
    known = isinstance(accuracy, (int, float))
    columns[2].metric("Test accuracy", f"{100 * accuracy:.2f}%" if known else "n/a",
                      help="From the model card, or the best epoch of its training run (validated on the MNIST "
                           "test set)." if known else "Not recorded with this file: the Reconstruct page measures it.")
    trained = card.get("trained") or "unknown"
    columns[3].metric("Trained", trained.split(" ")[0], help=trained)  # the date; the time is in the tooltip
    st.caption(f"{card['source']} · `{card['weights']}`")
    if card.get("details"):
        with st.expander("Full model card"):
            st.json(card["details"])

st.subheader("Use another model")
st.markdown("Pick one in the sidebar (the shipped model, any finished training run), or upload a `.weights.h5` "
            "saved by this project (`python -m capsnet train` writes them into `runs/<name>/`).")
st.file_uploader("Upload a .weights.h5", type=["h5"], key=ui.WEIGHTS_UPLOAD, on_change=ui.save_weights_upload)
if message := st.session_state.pop(ui.UPLOAD_MESSAGE, None):
    kind, text = message
    (st.error if kind == "error" else st.success)(text)

st.subheader("Explore")
st.page_link(ui.PAGES["draw"], label="Draw a digit and see every capsule's vote", icon=":material/draw:")
st.page_link(ui.PAGES["reconstruct"], label="Test images next to their reconstructions", icon=":material/compare:")
st.page_link(ui.PAGES["latent"], label="Move through a capsule's 16 dimensions", icon=":material/tune:")
