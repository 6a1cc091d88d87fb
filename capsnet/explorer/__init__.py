"""The Streamlit side of CapsNet Explorer: everything the pages in pages/ compose. The core (capsnet/ outside this
folder) never imports it, nor Streamlit, Plotly or pandas.
"""
