"""Home: what a capsule network is, the active model's card and the model picker (shared by all pages)."""

import streamlit as st

from capsnet.explorer.navigation import PAGES, enter_page

enter_page("Home", "🧠")
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

# Only now the heavy imports (TensorFlow takes seconds on a fresh server): the title and the introduction are on
# screen.
with st.spinner("Starting TensorFlow…"):
    from capsnet.config import DATASET_TITLES
    from capsnet.explorer import catalog, picker, views

model = picker.active_model()

st.header("Active model")
if model is None:
    if not catalog.available_models():
        st.warning("No trained model exists yet: there is no shipped pretrained model and no finished training run.")
        views.train_link()
else:
    card = catalog.model_card(model.choice, model.predictor.net.config)
    accuracy = card.get("test_accuracy")
    columns = st.columns(4)
    columns[0].metric("Source", model.choice.source)
    columns[1].metric("Routing iterations", card["routings"], help="As the model file says, and as it runs.")
    known = isinstance(accuracy, (int, float))
    pairs = card["dataset"] == "multimnist"  # the paper's metric: both digits of a pair named
    columns[2].metric("Test pairs right" if pairs else "Test accuracy", f"{100 * accuracy:.2f}%" if known else "n/a",
                      help="From the model card, or the best epoch of its training run (validated on its "
                           "dataset's test set)." if known
                      else "Not recorded with this file: the Reconstruct page measures it.")
    trained = card.get("trained") or "unknown"
    columns[3].metric("Trained", trained.split(" ")[0], help=trained)  # the date; the time is in the tooltip
    if interim := card.get("interim"):
        st.info(f"An interim model: the best checkpoint (epoch {interim.get('checkpoint_epoch')} of "
                f"{interim.get('epochs_planned')}) of a run that is still being trained; its figures are that "
                "checkpoint's, and a later version replaces it.", icon=":material/hourglass_top:")
    dataset = DATASET_TITLES.get(card["dataset"], card["dataset"])
    st.caption(f"{card['source']} · trained on {dataset} ({', '.join(model.classes)}) · `{card['path']}`")
    if card.get("details"):
        with st.expander("Full model card"):
            st.json(card["details"])

st.subheader("What routing and reconstruction buy")
views.variant_table()

st.subheader("Use another model")
st.markdown("Pick one in the sidebar (the shipped model, any finished training run), or upload a model file: a "
            "`.keras` file saved by this project (`python -m capsnet train` writes them into `runs/<name>/`), or "
            "the `trained_model.h5` of a [CapsNet-Keras](https://github.com/XifengGuo/CapsNet-Keras) run.")
picker.model_uploader()

st.subheader("Explore")
st.page_link(PAGES["draw"], label="Draw a digit and see every capsule's vote", icon=":material/draw:")
st.page_link(PAGES["reconstruct"], label="Test images next to their reconstructions", icon=":material/compare:")
st.page_link(PAGES["latent"], label="Move through a capsule's 16 dimensions", icon=":material/tune:")
st.page_link(PAGES["overlap"], label="Two overlapping digits, named and pulled apart (MultiMNIST)",
             icon=":material/join:")
