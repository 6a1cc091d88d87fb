"""CapsNet Explorer: `streamlit run app.py`. The entry point of every page, through `st.navigation`.

Pages live in `app_pages/` (not `pages/`: a `pages/` folder makes Streamlit run the first script run of a fresh
server in its old file-based mode, where `/draw` is not a page and the user gets a "Page not found" dialog).
"""

import os

# Before TensorFlow starts (below): by default it reserves all the memory of every GPU it sees, which the training
# runs that the Train page launches need. With growth on, the explorer takes only what its models use.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

# Heavy imports at the top of the entry script: imported lazily, inside a fragment's rerun, they raced with other
# reruns in our trials (see capsnet.app_support).
import pandas as pd  # noqa: E402, F401
import plotly.graph_objects as go  # noqa: E402, F401
import streamlit as st  # noqa: E402
import tensorflow as tf  # noqa: E402, F401

from capsnet import app_support as ui  # noqa: E402

st.set_page_config(page_title="CapsNet Explorer", page_icon="🧠", layout="wide")
st.navigation(ui.navigation_pages()).run()
