"""The explorer's pages and how a request reaches them. Light on purpose (Streamlit only): app.py routes with it
before any page imports TensorFlow, so a first visit shows its page's title while TensorFlow is still loading.

Why `enter_page`: Streamlit decides once per process whether an app uses `st.navigation` or the older file-based
pages, and until `st.navigation` has been called it assumes the latter whenever a `pages/` folder sits next to the
main script. The first request of a fresh server is therefore run file-based: a deep link such as `/draw` runs
`pages/draw.py` directly, without app.py, its navigation or its page titles. Page hashes come from URL paths in both
modes, so a page that finds itself run that way routes the request as app.py would, in the same script run (its
widget events intact), and stops: the navigation is then the real one, for this request and every later one.
"""

from __future__ import annotations

from contextvars import ContextVar

import streamlit as st

# The page files, relative to app.py: st.page_link and st.switch_page take these paths. url_path is the page's URL.
PAGES = {"home": "pages/home.py", "draw": "pages/draw.py", "routing": "pages/routing.py",
         "robustness": "pages/robustness.py", "reconstruct": "pages/reconstruct.py", "latent": "pages/latent.py",
         "train": "pages/train.py", "attack": "pages/attack.py",
         "map": "pages/map.py", "overlap": "pages/overlap.py"}

# Set while app.py's navigation runs a page: a page run without it was started by the file-based mode.
_ROUTED: ContextVar[bool] = ContextVar("capsnet_routed", default=False)


def navigation_pages() -> list[st.Page]:
    """The app's pages, in sidebar order. Explicit lowercase URL paths: `/draw`, `/reconstruct`, ... (Home is `/`)."""
    return [
        st.Page(PAGES["home"], title="Home", icon=":material/home:", default=True),
        st.Page(PAGES["draw"], title="Draw", icon=":material/draw:", url_path="draw"),
        st.Page(PAGES["routing"], title="Routing", icon=":material/hub:", url_path="routing"),
        st.Page(PAGES["robustness"], title="Robustness", icon=":material/rotate_right:", url_path="robustness"),
        st.Page(PAGES["reconstruct"], title="Reconstruct", icon=":material/compare:", url_path="reconstruct"),
        st.Page(PAGES["latent"], title="Latent", icon=":material/tune:", url_path="latent"),
        st.Page(PAGES["map"], title="Map", icon=":material/scatter_plot:", url_path="map"),
        st.Page(PAGES["attack"], title="Attack", icon=":material/gpp_maybe:", url_path="attack"),
        st.Page(PAGES["overlap"], title="Overlap", icon=":material/join:", url_path="overlap"),
        st.Page(PAGES["train"], title="Train", icon=":material/model_training:", url_path="train"),
    ]


def route() -> None:
    """app.py: run the page the URL names, through `st.navigation`."""
    page = st.navigation(navigation_pages())
    token = _ROUTED.set(True)
    try:
        page.run()
    finally:
        _ROUTED.reset(token)


def enter_page(title: str, icon: str) -> None:
    """The first call of every page: hand a file-based run over to app.py's navigation (see the module docstring),
    then set the page's browser title."""
    if not _ROUTED.get():
        route()  # st.navigation also ends the file-based mode, for the whole process
        st.stop()  # the page has run, routed
    st.set_page_config(page_title=f"{title} · CapsNet Explorer", page_icon=icon, layout="wide")
