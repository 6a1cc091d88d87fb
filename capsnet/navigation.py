"""The explorer's pages for `st.navigation`. Light on purpose (Streamlit only): app.py routes with it before any
page imports TensorFlow, so a first visit shows its page's title while TensorFlow is still loading."""

from __future__ import annotations

import streamlit as st

# The page files, relative to app.py: st.page_link and st.switch_page take these paths. url_path is the page's URL.
PAGES = {"home": "app_pages/home.py", "draw": "app_pages/draw.py", "reconstruct": "app_pages/reconstruct.py",
         "latent": "app_pages/latent.py", "train": "app_pages/train.py"}


def navigation_pages() -> list[st.Page]:
    """The app's pages, in sidebar order. Explicit lowercase URL paths: `/draw`, `/reconstruct`, ... (Home is `/`)."""
    return [
        st.Page(PAGES["home"], title="Home", icon=":material/home:", default=True),
        st.Page(PAGES["draw"], title="Draw", icon=":material/draw:", url_path="draw"),
        st.Page(PAGES["reconstruct"], title="Reconstruct", icon=":material/compare:", url_path="reconstruct"),
        st.Page(PAGES["latent"], title="Latent", icon=":material/tune:", url_path="latent"),
        st.Page(PAGES["train"], title="Train", icon=":material/model_training:", url_path="train"),
    ]
