"""CapsNet Explorer: `streamlit run app.py`. The entry point of every page, through `st.navigation`.

The pages live in `pages/`; `capsnet.explorer.navigation` explains how a fresh server's first request, which
Streamlit runs in its file-based mode because that folder exists, still reaches the right page.

Nothing heavy is imported here: each page imports TensorFlow (through `capsnet.explorer.resources`) after it has
shown its title, so a first visit is not a blank screen for the seconds TensorFlow takes to load.
"""

import os

# Before TensorFlow starts (in the pages): by default it reserves all the memory of every GPU it sees, which the
# training runs that the Train page launches need. With growth on, the explorer takes only what its models use.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import streamlit as st  # noqa: E402

from capsnet.explorer import navigation, runtime  # noqa: E402

runtime.keep_keras_session()
st.set_page_config(page_title="CapsNet Explorer", page_icon="🧠", layout="wide")
navigation.route()
