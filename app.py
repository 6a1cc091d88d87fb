"""CapsNet Explorer: `streamlit run app.py`. The entry point of every page, through `st.navigation`.

Pages live in `app_pages/` (not `pages/`: a `pages/` folder makes Streamlit run the first script run of a fresh
server in its old file-based mode, where `/draw` is not a page and the user gets a "Page not found" dialog).

Nothing heavy is imported here: each page imports pandas, Plotly and TensorFlow at its own top (through
capsnet.app_support), after it has shown its title where it can, so a first visit is not a blank screen for the
seconds TensorFlow takes to load.
"""

import os

# Before TensorFlow starts (in the pages): by default it reserves all the memory of every GPU it sees, which the
# training runs that the Train page launches need. With growth on, the explorer takes only what its models use.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import streamlit as st  # noqa: E402

from capsnet.navigation import navigation_pages  # noqa: E402

st.set_page_config(page_title="CapsNet Explorer", page_icon="🧠", layout="wide")
st.navigation(navigation_pages()).run()
